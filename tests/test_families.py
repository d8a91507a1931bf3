"""Every registered family on every backbone, generated from the registry: a family added
tomorrow is tested by these without a line here. Each family's own terms are checked
against hand computations in tests/test_families_*.py."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from aelab.cli import main
from aelab.config import TrainConfig
from aelab.models import build_model, model_record, rebuild_model, spec
from aelab.models.backbones import BACKBONES
from aelab.models.contract import check_contract, loss_weights, prior_codes
from aelab.models.family import family_names
from aelab.models.registry import MODELS, model_arguments
from aelab.runs import load_run
from aelab.train.distributed import Dist
from aelab.train.step import make_optimizer, make_step

FAMILIES = family_names()
# small networks, so that every case runs in a moment (arguments a family does not take are
# left out for it)
SMALL = {"latent_dim": 4, "hidden": [32, 16], "pseudo_inputs": 10, "k": 3, "codes": 16}
CASES = [(f, b) for f in FAMILIES for b in BACKBONES]


def small_args(family: str, backbone: str) -> dict:
    takes = model_arguments(MODELS[family]) or {}
    args = {k: v for k, v in SMALL.items() if k in takes}
    return {**args, "backbone": backbone}


def build(family: str, backbone: str):
    torch.manual_seed(0)
    return build_model(family, **small_args(family, backbone))


def batch(n: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_the_issue_families_are_registered():
    expected = {"sparse", "contractive", "rae", "vae", "iwae", "vamp", "wae", "aae", "vqvae"}
    assert expected <= set(FAMILIES)
    assert "vae-mlp" not in FAMILIES  # an alias: vae on the mlp backbone


@pytest.mark.parametrize("family,backbone", CASES)
def test_shapes_and_contract(family, backbone):
    model = build(family, backbone)
    check_contract(model, family)
    x = batch(8)
    z = model.encode(x)
    assert z.shape == (8, model.latent_dim)
    assert model.decode(z).shape == (8, 1, 28, 28)
    out = model(x)
    assert out.shape == (8, 1, 28, 28) and out.min() >= 0 and out.max() <= 1


def _loss(model, x) -> float:
    """The weighted training loss on x, with the same random draws every time."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(5)
        terms = model.loss_terms(x, x)
        return float(sum(w * terms[n] for n, w in loss_weights(model).items()).mean())


def _steps(model, n: int):
    config = TrainConfig(model="x", lr=1e-3, weight_decay=0.0, fast=False)
    opt = make_optimizer(model, config, torch.device("cpu"))
    choice = make_step(model, opt, config, torch.device("cpu"), Dist(), note=lambda *a: None)
    x = batch()
    model.train()
    outs = [choice.step(x, x) for _ in range(n)]
    return choice, outs


@pytest.mark.parametrize("family,backbone", CASES)
def test_one_step_reaches_every_parameter(family, backbone):
    model = build(family, backbone)
    before = {k: v.clone() for k, v in model.named_parameters()}
    choice, outs = _steps(model, 1)
    s = spec(model)
    assert outs[0].numel() == choice.outputs == 1 + len(s.terms) + len(s.monitors) or \
        (choice.outputs == 1 and outs[0].numel() == 1)
    unchanged = [k for k, v in model.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged, f"no gradient reached {unchanged}"


@pytest.mark.parametrize("family,backbone", CASES)
def test_steps_lower_the_loss_on_a_fixed_batch(family, backbone):
    model = build(family, backbone)
    x = batch()
    first = _loss(model, x)
    _steps(model, 20)
    weights = loss_weights(model)
    if family == "aae":  # the adversarial term is a game, not a descent: its recon falls
        weights = {"recon": 1.0}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(5)
        terms = model.loss_terms(x, x)
    after = float(sum(w * terms[n] for n, w in weights.items()).mean())
    if family == "aae":
        with torch.no_grad():
            fresh = build(family, backbone)
            torch.manual_seed(5)
            first = float(fresh.loss_terms(x, x)["recon"].mean())
    assert after < first


@pytest.mark.parametrize("family,backbone", CASES)
def test_save_and_load_give_the_same_model(family, backbone, tmp_path):
    model = build(family, backbone).eval()
    _steps(model, 2)
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors")
    record = {**model_record(family), "name": family, "args": small_args(family, backbone)}
    again = rebuild_model(json.loads(json.dumps(record))).eval()
    again.load_state_dict(load_file(tmp_path / "m.safetensors"))
    x = batch(8)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
        assert torch.equal(model.encode(x), again.encode(x))


@pytest.mark.parametrize("family,backbone", CASES)
def test_prior_samples_are_images(family, backbone):
    model = build(family, backbone).eval()
    if spec(model).sampler != "prior":
        pytest.skip("sampled from a density fitted to its codes: tests/test_samplers.py")
    a = prior_codes(model, 16, torch.Generator().manual_seed(3))
    b = prior_codes(model, 16, torch.Generator().manual_seed(3))
    assert a.shape == (16, model.latent_dim) and torch.equal(a, b)
    with torch.no_grad():
        images = model.decode(a)
    assert images.shape == (16, 1, 28, 28) and images.min() >= 0 and images.max() <= 1


def _train(mnist_dir, run, family, *extra) -> int:
    args = json.dumps({k: v for k, v in small_args(family, "conv").items() if k != "backbone"})
    return main(["train", family, "--run-dir", str(run), "--limit", "256", "--seed", "3",
                 "--model-args", args, "--data-dir", str(mnist_dir), *extra])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_train_resume_bit_for_bit_sample_explore_and_serve(family, mnist_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(mnist_dir, a, family, "--epochs", "2") == 0
    assert _train(mnist_dir, b, family, "--epochs", "1") == 0
    assert main(["train", "--resume", str(b), "--epochs", "2", "--data-dir", str(mnist_dir)]) == 0
    wa = load_file(a / "checkpoints" / "last.safetensors")
    wb = load_file(b / "checkpoints" / "last.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        if not k.startswith("rng."):
            assert torch.equal(wa[k], wb[k]), k
    metrics = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    model = load_run(a, "last").model
    for term in spec(model).terms:  # every term is logged, every epoch
        assert all(f"loss_{term}" in m for m in metrics)
    for monitor in spec(model).monitors:
        assert all(monitor in m for m in metrics)
    images = load_run(a, data_dir=mnist_dir).sample(8, seed=1)
    assert images.shape == (8, 28, 28) and images.min() >= 0 and images.max() <= 1
