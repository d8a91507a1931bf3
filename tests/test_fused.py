"""The hand-written steps (aelab.train.fast) must train exactly what autograd trains, and
make_step is the one door that picks them, says which it picked, and can be shut."""

import json

import pytest
import torch
from safetensors.torch import load_file

from aelab.config import TrainConfig
from aelab.train.fast import (
    ConvStep,
    FusedDenseStep,
    conv_plan,
    dense_plan,
    flat_adam,
    fused_step,
    unsupported,
)
from aelab.models import build_model
from aelab.train import Trainer, train


def _pair(model="linear", optimizer="adam", **model_args):
    models, opts = [], []
    for _ in range(2):
        torch.manual_seed(3)
        m = build_model(model, **model_args)
        if model == "conv":
            m = m.to(memory_format=torch.channels_last)  # as the Trainer makes it
        cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
        models.append(m)
        opts.append(cls(m.parameters(), lr=3e-3, weight_decay=1e-3))
    return models, opts


@pytest.mark.parametrize("model", ["linear", "conv"])
@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_steps_equal_autograd(model, loss, optimizer, grad_clip):
    (ma, mb), (oa, ob) = _pair(model, optimizer=optimizer)
    cfg = TrainConfig(model=model, loss=loss, optimizer=optimizer, grad_clip=grad_clip)
    fused, why = fused_step(mb, ob, cfg, torch.device("cpu"), False)
    assert why is None and type(fused) is (FusedDenseStep if model == "linear" else ConvStep)
    g = torch.Generator().manual_seed(0)
    for batch in (64, 64, 17, 64):  # a ragged batch in between: buffers per batch size
        x = torch.rand(batch, 1, 28, 28, generator=g)
        x_in = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)  # denoising input
        out = ma(x_in)
        if loss == "bce":
            ref = torch.nn.functional.binary_cross_entropy(out, x, reduction="none")
        else:
            ref = (out - x).square()
        ref = ref.flatten(1).mean(1).mean()
        oa.zero_grad()
        ref.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(ma.parameters(), grad_clip)
        oa.step()
        got = fused(x_in, x)
        assert got.shape == () and torch.allclose(got, ref.detach(), rtol=1e-5, atol=1e-7)
    # Gradients agree to ~1e-6 relative; where one is near zero, Adam's division by its own
    # scale turns that into up to ~1e-3 of a 3e-3 step for the conv's summation orders.
    atol = 1e-6 if model == "linear" else 1e-5
    for (name, pa), pb in zip(ma.named_parameters(), mb.parameters(), strict=True):
        assert torch.allclose(pa, pb, rtol=1e-4, atol=atol), name
        assert torch.allclose(oa.state[pa]["exp_avg_sq"], ob.state[pb]["exp_avg_sq"], rtol=1e-3, atol=1e-12)
        assert float(ob.state[pb]["step"]) == 4.0


def test_plan_accepts_only_plain_dense_models():
    assert len(dense_plan(build_model("linear"))) == 8
    assert len(dense_plan(build_model("mlp", norm="none", act="relu", latent_dim=4))) == 8
    assert dense_plan(build_model("mlp")) is None  # batch norm and GELU
    assert dense_plan(build_model("conv")) is None
    assert len(conv_plan(build_model("conv"))) == 11
    assert conv_plan(build_model("linear")) is None
    assert conv_plan(build_model("convnet", latent_dim=8)) is None  # batch norm and GELU
    cfg = TrainConfig(model="linear", device="cpu")
    assert unsupported(build_model("linear"), cfg, torch.device("cpu"), False) is None
    assert unsupported(build_model("conv"), cfg, torch.device("cpu"), False) is None
    assert unsupported(build_model("linear"), cfg.replace(precision="bf16"), torch.device("cpu"), False)
    assert unsupported(build_model("linear"), cfg, torch.device("cpu"), True)  # DDP: autograd
    assert unsupported(build_model("convnet", latent_dim=8), cfg, torch.device("cpu"), False)


def test_conv_step_refuses_weights_that_are_not_channels_last():
    m = build_model("conv")  # NCHW weights: the ops' matrix views would be copies
    with pytest.raises(ValueError, match="channels_last"):
        ConvStep(m, torch.optim.Adam(m.parameters()), "mse")


@pytest.mark.parametrize("model", ["linear", "conv"])
def test_training_run_equals_autograd_run_and_resumes(model, mnist_dir, tmp_path):
    cfg = TrainConfig(model=model, epochs=2, limit=640, device="cpu", figure_every=100)
    quiet = dict(data_dir=mnist_dir, log=lambda _m: None, progress=False)
    fast = train(cfg, tmp_path / "fused", **quiet)
    slow = train(cfg.replace(fast=False), tmp_path / "autograd", **quiet)
    for a, b in zip(fast.metrics, slow.metrics, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["test_mse"] == pytest.approx(b["test_mse"], rel=1e-4)
    # the checkpoint (with the fused step's shared step counts) loads and resumes
    t = Trainer(cfg.replace(epochs=3), tmp_path / "fused", **quiet)
    t.run(resume=True)
    assert t.choice.name == ("fused-dense" if model == "linear" else "fused-conv")
    assert [m["epoch"] for m in t.metrics] == [1, 2, 3]
    state = load_file(tmp_path / "fused" / "checkpoints" / "last.safetensors")
    steps = {float(v) for k, v in state.items() if k.endswith(".step")}
    assert steps == {30.0}  # 3 epochs of 10 batches, every parameter


def test_models_outside_the_plans_still_use_autograd(mnist_dir, tmp_path):
    cfg = TrainConfig(model="convnet", model_args={"latent_dim": 8}, epochs=1, limit=128,
                      device="cpu", figure_every=100)
    t = Trainer(cfg, tmp_path / "c", data_dir=mnist_dir, log=lambda _m: None, progress=False)
    t.run()
    assert t.choice.name == "autograd" and "Linear or Conv/ReLU" in t.choice.fast_refused
    assert t.choice.step.adam is not None  # autograd, with FlatAdam's one-call update


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_flat_adam_equals_torch_optim_on_a_channels_last_conv_model(optimizer):
    from aelab.train.fast import FlatAdam

    cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    models, opts = [], []
    for _ in range(2):
        torch.manual_seed(5)
        m = build_model("conv").to(memory_format=torch.channels_last)
        models.append(m)
        opts.append(cls(m.parameters(), lr=3e-3, weight_decay=1e-3))
    flat = FlatAdam(opts[1])
    assert models[1].encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.rand(8, 1, 28, 28, generator=g)
        opts[0].zero_grad()
        (models[0](x) - x).square().mean().backward()
        opts[0].step()
        flat.zero_grad()
        (models[1](x) - x).square().mean().backward()  # accumulates into the flat buffer
        flat.step()
    for pa, pb in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(pa, pb, rtol=1e-5, atol=1e-7)
    assert float(opts[1].state[models[1].encoder[0].weight]["step"]) == 3.0


@pytest.mark.parametrize("model", ["linear", "conv"])
def test_the_step_is_printed_once_and_recorded_in_the_run(model, mnist_dir, tmp_path):
    cfg = TrainConfig(model=model, epochs=1, limit=128, device="cpu", figure_every=100)
    logs = []
    train(cfg, tmp_path / "r", data_dir=mnist_dir, log=logs.append, progress=False)
    name = "fused-dense" if model == "linear" else "fused-conv"
    assert [m for m in logs if m.startswith("step:")] == [
        f"step: {name}: hand-written forward, backward and FlatAdam update"]
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    meta = json.loads((tmp_path / "r" / "checkpoints" / "last.json").read_text())
    for d in (saved, meta):
        assert d["step"] == name and d["fast_refused"] is None


def test_no_fast_turns_every_hand_written_path_off(mnist_dir, tmp_path):
    cfg = TrainConfig(model="conv", epochs=1, limit=128, device="cpu", figure_every=100, fast=False)
    t = Trainer(cfg, tmp_path / "r", data_dir=mnist_dir, log=lambda _m: None, progress=False)
    t.run()
    step = t.choice.step
    assert t.choice.name == "autograd" and "--no-fast" in t.choice.fast_refused
    assert step.adam is None and step.objective.layers is None  # no FlatAdam, no convmm
    assert not any(type(p).__name__ == "FlatAdam" for p in vars(step).values())
    meta = json.loads((tmp_path / "r" / "checkpoints" / "last.json").read_text())
    assert meta["step"] == "autograd" and meta["config"]["fast"] is False
    assert "torch.optim update" in meta["step_detail"]


@pytest.mark.parametrize("model", ["linear", "convnet"])
def test_a_failing_fused_adam_kernel_falls_back_to_torch_optim(model, mnist_dir, tmp_path, monkeypatch):
    """A PyTorch whose private kernel changed: training goes on through torch.optim, with
    one note, and matches a run that used torch.optim from the start."""
    def changed_signature(*_a, **_kw):
        raise TypeError("_fused_adam_() got an unexpected keyword argument 'beta1'")

    args = {"latent_dim": 8} if model == "convnet" else {}
    cfg = TrainConfig(model=model, model_args=args, epochs=2, limit=256, device="cpu",
                      figure_every=100)
    quiet = dict(data_dir=mnist_dir, progress=False)
    ref = train(cfg.replace(fast=False), tmp_path / "ref", log=lambda _m: None, **quiet)
    monkeypatch.setattr(flat_adam, "_call_kernel", changed_signature)
    logs = []
    t = Trainer(cfg, tmp_path / "r", log=logs.append, **quiet)
    t.run()
    notes = [m for m in logs if "fused Adam kernel failed" in m]
    assert len(notes) == 1 and "TypeError" in notes[0] and "torch.optim" in notes[0]
    for a, b in zip(t.metrics, ref.metrics, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    meta = json.loads((tmp_path / "r" / "checkpoints" / "last.json").read_text())
    assert "fused kernel failed" in meta["step_detail"]
    # the saved state resumes, each parameter with its own step count
    t2 = Trainer(cfg.replace(epochs=3), tmp_path / "r", log=lambda _m: None, **quiet)
    t2.run(resume=True)
    assert [m["epoch"] for m in t2.metrics] == [1, 2, 3]
