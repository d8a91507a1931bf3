"""Trainer options beyond the seed, through the Python API on small real data."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from aelab.config import TrainConfig
from aelab.errors import AelabError
from aelab.data.batches import corrupt
from aelab.train import Trainer, train
from aelab.train.step import AutogradStep, Objective
from aelab.train.trainer import lr_factor
from aelab.models import build_model
from aelab.data import load_dataset


def _cfg(**kw):
    base = dict(model="linear", epochs=1, limit=512, device="cpu")
    return TrainConfig(**{**base, **kw})


def _quiet(*_a, **_k):
    pass


def test_val_split_selects_best_on_validation_not_test(mnist_dir, tmp_path):
    r = train(_cfg(epochs=2, val_split=1000), tmp_path / "r", data_dir=mnist_dir, log=_quiet)
    assert all("val_mse" in m for m in r.metrics)
    meta = json.loads((tmp_path / "r" / "checkpoints" / "best.json").read_text())
    assert meta["best"]["metric"] == "val_mse"
    assert meta["best"]["value"] == min(m["val_mse"] for m in r.metrics)


def test_exclude_digits_leaves_them_out(mnist_dir, tmp_path):
    t = Trainer(_cfg(limit=None, exclude_digits=[9]), tmp_path / "r", data_dir=mnist_dir, log=_quiet)
    t._load_data()
    assert len(t.train_x) == 60000 - 5949  # MNIST has 5,949 training nines


def test_padded_batch_step_equals_the_ragged_batch():
    """The --cuda-graphs padding (weight-0 repeats) must not change the optimisation step."""
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(build_model("linear"))
    steps = [AutogradStep(Objective(m, "mse", "fp32"), m, torch.optim.SGD(m.parameters(), lr=0.5), None)
             for m in models]
    x = torch.rand(5, 1, 28, 28)
    xp = torch.cat([x, x[:3]])
    w = torch.tensor([1.0] * 5 + [0.0] * 3)
    ragged, padded = steps[0](x, x), steps[1](xp, xp, w)
    assert torch.allclose(ragged, padded, atol=1e-7)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-7)
    assert not torch.equal(models[0].encoder[0].weight, build_model("linear").encoder[0].weight)


def test_schedules():
    assert lr_factor("constant", 5, 10) == 1.0
    assert lr_factor("cosine", 0, 11) == pytest.approx(1.0)
    assert lr_factor("cosine", 10, 11) == pytest.approx(0.0, abs=1e-12)
    peak = [lr_factor("onecycle", s, 101) for s in range(101)]
    assert peak[0] == pytest.approx(1 / 25) and max(peak) == pytest.approx(1.0)
    assert peak.index(max(peak)) == 30 and peak[-1] < 1e-4


@pytest.mark.parametrize("noise", ["gaussian:0.3", "masking:0.5"])
def test_noise_corrupts_and_stays_in_range(noise):
    x = torch.rand(64, 1, 28, 28)
    y = corrupt(x, noise, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert (y - x).abs().mean() > 0.05
    if noise.startswith("masking"):
        assert ((y == 0).float().mean() - 0.5).abs() < 0.05


def test_bad_noise_is_a_clear_error():
    with pytest.raises(AelabError, match="gaussian:SIGMA"):
        _cfg(noise="salt:2")


@pytest.mark.parametrize("kw", [dict(loss="bce", optimizer="adamw", schedule="onecycle", grad_clip=1.0),
                                dict(noise="masking:0.5"), dict(precision="bf16")])
def test_options_train_and_lower_the_loss(mnist_dir, tmp_path, kw):
    r = train(_cfg(epochs=2, **kw), tmp_path / "r", data_dir=mnist_dir, log=_quiet)
    assert r.metrics[1]["test_mse"] < r.metrics[0]["test_mse"]


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_compile_trains_the_same_as_eager_on_cpu(mnist_dir, tmp_path):
    # --compile wraps the whole loss (convmm's forward, with its autograd function)
    cfg = _cfg(model="conv", limit=256, figure_every=100)
    eager = train(cfg.replace(fast=False), tmp_path / "eager", data_dir=mnist_dir, log=_quiet)
    t = Trainer(cfg.replace(compile=True), tmp_path / "compiled", data_dir=mnist_dir, log=_quiet)
    t.run()
    assert t.choice.name == "autograd" and "compiled" in t.choice.fast_refused
    assert t.choice.step.objective._orig_mod.layers is not None  # convmm under compile
    assert t.metrics[0]["test_mse"] == pytest.approx(eager.metrics[0]["test_mse"], rel=1e-3)


def test_cuda_graphs_needs_cuda(tmp_path):
    with pytest.raises(AelabError, match="CUDA"):
        Trainer(_cfg(cuda_graphs=True), tmp_path / "r", log=_quiet)


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(mnist_dir, tmp_path):
    """torchrun, 2 processes, gloo: batch 64 per rank is the single-process batch of 128.
    Tolerance: test MSE within 1e-4 relative (only the all-reduce's summation order differs)."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    args = ["train", "linear", "--epochs", "2", "--limit", "2048", "--device", "cpu",
            "--data-dir", str(mnist_dir)]
    p = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "aelab", *args,
                        "--run-dir", str(tmp_path / "ddp")], capture_output=True, text=True,
                       timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("run folder:") == 1 and p.stdout.count("epoch   2/2") == 1
    single = train(_cfg(epochs=2, limit=2048, batch_size=128), tmp_path / "one",
                   data_dir=mnist_dir, log=_quiet)
    ddp = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in ddp] == [1, 2]  # written once, by rank 0
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == [
        "best.json", "best.safetensors", "last.json", "last.safetensors"]
    assert ddp[-1]["test_mse"] == pytest.approx(single.metrics[-1]["test_mse"], rel=1e-4)


@pytest.mark.slow
def test_ddp_of_a_conv_model_keeps_gradient_strides_on_the_fast_path(mnist_dir, tmp_path):
    """channels_last weights of size 1 in a channel (the first convolution's [16, 1, 3, 3])
    once got gradients with other strides than DDP's buckets: a warning per process and a
    copy per step. Their strides are made plain before DDP is built."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    p = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "aelab", "train",
                        "conv", "--epochs", "1", "--limit", "512", "--device", "cpu",
                        "--data-dir", str(mnist_dir), "--run-dir", str(tmp_path / "ddp")],
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Grad strides do not match" not in p.stderr


def _flushed_on_every_thread() -> bool | None:
    """True if every compute thread flushes subnormals, False if none does, None if mixed:
    a matrix product of subnormal-making numbers is split over PyTorch's OpenMP threads."""
    a = torch.full((512, 512), 1e-20)
    zeros = int(((a @ a) == 0).sum())
    return True if zeros == a.numel() else False if zeros == 0 else None


@pytest.mark.parametrize("caller_flushes", [False, True])
def test_train_flushes_subnormals_while_it_trains_and_gives_the_setting_back(
        caller_flushes, mnist_dir, tmp_path, monkeypatch):
    """The library needs no prepare_process() for the command's speed (Adam's moments decay
    into subnormals, which x86 handles slowly) and leaves the caller's setting as it was,
    on the compute threads too (each thread has its own; the pool is running already)."""
    import aelab.train.trainer as trainer_mod
    from aelab.runtime import denormals_flushed, set_flush_denormal

    seen, real = [], trainer_mod.Trainer.train_epoch

    def recording(self, epoch):
        seen.append(_flushed_on_every_thread())
        return real(self, epoch)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", recording)
    before = _flushed_on_every_thread()
    if not set_flush_denormal(bool(before)):
        pytest.skip("this CPU cannot flush subnormals (not x86 with SSE3)")
    torch.set_flush_denormal(caller_flushes)  # as a caller would: its own thread only
    try:
        train(_cfg(epochs=2), tmp_path / "r", data_dir=mnist_dir, log=_quiet)
        assert denormals_flushed() == caller_flushes  # the caller's own thread
        if not caller_flushes:
            assert _flushed_on_every_thread() is False
    finally:
        set_flush_denormal(bool(before))
    assert seen == [True, True]


def test_class_limits_come_from_the_dataset_not_from_mnist(mnist_dir, tmp_path):
    """A 12-class dataset may leave out class 11 and hold out more than MNIST's 60,000 images'
    worth of nothing: the limits are the dataset's own sizes and class count."""
    import numpy as np

    x, _ = (t.numpy() for t in load_dataset("mnist", "train", data_dir=mnist_dir))
    images, labels = x[:1200], np.arange(1200) % 12  # classes 0..11
    quiet = {"log": _quiet, "progress": False}
    r = train(_cfg(limit=None, exclude_digits=[11]), tmp_path / "twelve", images=images,
              labels=labels, test_images=x[:120], test_labels=np.arange(120) % 12, **quiet)
    assert r.metrics[-1]["epoch"] == 1
    with pytest.raises(AelabError, match="has classes 0 to 9"):
        train(_cfg(exclude_digits=[11]), tmp_path / "mnist", data_dir=mnist_dir, **quiet)
    with pytest.raises(AelabError, match="has only"):
        train(_cfg(val_split=70_000), tmp_path / "big", data_dir=mnist_dir, **quiet)
    TrainConfig(val_split=70_000)  # valid for a dataset that large
