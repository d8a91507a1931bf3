"""The regularised families (aelab.models.regularised): each loss term against a hand
computation on a tiny case, bad arguments refused, and each family trainable on both
backbones. The checks every family gets are generated in tests/test_families.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from aelab.errors import AelabError
from aelab.models import build_model, spec
from aelab.models.contract import loss_weights
from aelab.models.regularised import decoder_weight_norm, kl_sparsity, mmd_imq

SMALL = {"latent_dim": 3, "hidden": [16, 8]}  # the mlp's widths; conv ignores hidden


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def set_head(model, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Give the model's head known numbers: code = weight @ features + bias."""
    with torch.no_grad():
        model.head.weight.copy_(weight)
        model.head.bias.copy_(bias)


# --- sparse ---------------------------------------------------------------------------


def test_sparse_l1_is_the_sum_of_absolute_codes():
    torch.manual_seed(0)
    model = build_model("sparse", backbone="mlp", weight=0.5, **SMALL)
    bias = torch.tensor([0.5, -2.0, 0.0])
    set_head(model, torch.zeros(3, 8), bias)  # every image's code is the bias
    terms = model.loss_terms(images(), images())
    assert torch.allclose(terms["sparsity"], torch.full((4,), 2.5))
    assert loss_weights(model)["sparsity"] == 0.5  # the trainer's 0.5 * 2.5 per image
    model.head.weight.data.normal_()  # codes that differ per image: sum_j |z_j| per row
    x = images()
    assert torch.allclose(model.loss_terms(x, x)["sparsity"], model.encode(x).abs().sum(1))


def numpy_kl(rho: float, rho_hat) -> float:
    r = np.asarray(rho_hat, dtype=np.float64)
    return float(np.sum(rho * np.log(rho / r) + (1 - rho) * np.log((1 - rho) / (1 - r))))


def test_kl_sparsity_matches_the_formula_of_ngs_notes():
    rho_hat = [0.05, 0.2, 0.01, 0.9]
    got = kl_sparsity(torch.tensor(rho_hat), 0.05)
    assert math.isclose(float(got), numpy_kl(0.05, rho_hat), rel_tol=1e-5)
    assert float(kl_sparsity(torch.full((3,), 0.3), 0.3)) == pytest.approx(0, abs=1e-6)
    assert math.isfinite(float(kl_sparsity(torch.tensor([0.0, 1.0]), 0.05)))  # clamped


def test_sparse_kl_codes_are_sigmoids_and_the_penalty_uses_their_batch_mean():
    torch.manual_seed(0)
    model = build_model("sparse", backbone="mlp", penalty="kl", rho=0.1, **SMALL)
    assert model.weight == 3.0  # the kl default
    rho_hat = torch.tensor([0.1, 0.4, 0.02])
    set_head(model, torch.zeros(3, 8), torch.logit(rho_hat))  # every code is rho_hat
    x = images()
    assert torch.allclose(model.encode(x), rho_hat.expand(4, 3), atol=1e-6)
    term = model.loss_terms(x, x)["sparsity"]
    assert torch.allclose(term, torch.full((4,), numpy_kl(0.1, rho_hat.tolist())), rtol=1e-5)
    model.head.weight.data.normal_()  # codes differ per image: the batch mean is rho_hat
    z = model.encode(x)
    assert z.min() > 0 and z.max() < 1
    expected = numpy_kl(0.1, z.mean(0).tolist())
    assert torch.allclose(model.loss_terms(x, x)["sparsity"], torch.full((4,), expected), rtol=1e-5)


# --- contractive ----------------------------------------------------------------------


def linear_contractive(weight: torch.Tensor):
    """A contractive model whose encoder is code = weight @ flat(x) + bias."""
    model = build_model("contractive", backbone="mlp", **SMALL)
    model.encoder = nn.Sequential(nn.Flatten())  # (B, 784)
    model.head = nn.Linear(784, 3)
    with torch.no_grad():
        model.head.weight.copy_(weight)
    return model


def test_contractive_term_of_a_linear_encoder_is_its_squared_frobenius_norm():
    torch.manual_seed(0)
    w = torch.randn(3, 784) * 0.1
    model = linear_contractive(w)
    x = images()
    terms = model.loss_terms(x, x)
    assert torch.allclose(terms["contractive"], w.square().sum().expand(4), rtol=1e-5)
    # the term trains: d ||W||_F^2 / dW = 2W
    terms["contractive"].mean().backward()
    assert torch.allclose(model.head.weight.grad, 2 * w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backbone", ["mlp", "conv"])
def test_contractive_term_matches_the_jacobian_of_each_image(backbone):
    torch.manual_seed(0)
    model = build_model("contractive", backbone=backbone, act="tanh", **SMALL)
    x = images(3)
    term = model.loss_terms(x, x)["contractive"]
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda xi: model.encode(xi[None])[0], x[b])
        assert jac.shape == (3, 1, 28, 28)
        assert torch.allclose(term[b], jac.square().sum(), rtol=1e-4)
    with torch.no_grad():  # the contract check's mode: the same numbers, no graph
        again = model.loss_terms(x, x)["contractive"]
    assert torch.allclose(again, term.detach()) and not again.requires_grad


# --- rae ------------------------------------------------------------------------------


def test_rae_code_term_is_half_the_squared_norm_of_the_code():
    torch.manual_seed(0)
    model = build_model("rae", backbone="mlp", **SMALL)
    set_head(model, torch.zeros(3, 8), torch.tensor([1.0, -2.0, 3.0]))
    terms = model.loss_terms(images(), images())
    assert torch.allclose(terms["code"], torch.full((4,), 7.0))  # (1 + 4 + 9) / 2


def test_rae_l2_term_is_the_sum_of_squared_decoder_weights_biases_left_out():
    torch.manual_seed(0)
    model = build_model("rae", backbone="mlp", **SMALL)
    by_hand = sum(float((p.detach().double() ** 2).sum()) for name, p in model.decoder.named_parameters()
                  if name.endswith("weight"))
    terms = model.loss_terms(images(), images())
    assert torch.allclose(terms["decoder"], torch.full((4,), by_hand, dtype=torch.float32))
    with torch.no_grad():
        for name, p in model.decoder.named_parameters():
            if name.endswith("bias"):
                p.add_(1.0)
    assert float(decoder_weight_norm(model.decoder).detach()) == pytest.approx(by_hand, rel=1e-6)
    assert float(decoder_weight_norm(model.encoder).detach()) > 0  # a module's kernels, any module


@pytest.mark.parametrize("backbone", ["mlp", "conv"])
def test_rae_gp_term_is_the_squared_gradient_of_the_summed_image_per_image(backbone):
    torch.manual_seed(0)
    model = build_model("rae", backbone=backbone, variant="gp", **SMALL)
    x = images(3)
    term = model.loss_terms(x, x)["decoder"]
    z = model.encode(x).detach()
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda zb: model.decode(zb[None]), z[b])
        assert jac.shape == (1, 1, 28, 28, 3)
        grad = jac.sum((0, 1, 2, 3))  # d(sum_i m_i)/dz: J^T 1, (L,)
        assert torch.allclose(term[b], grad.square().sum(), rtol=1e-4)
    with torch.no_grad():
        assert torch.allclose(model.loss_terms(x, x)["decoder"], term.detach(), rtol=1e-5)


# --- wae ------------------------------------------------------------------------------

SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def mmd_by_loops(q: np.ndarray, p: np.ndarray) -> float:
    """The U-statistic with the IMQ kernel summed over SCALES, C = 2 L, pair by pair."""
    c = 2.0 * q.shape[1]

    def k(a, b):
        d2 = float(np.sum((a - b) ** 2))
        return sum(s * c / (s * c + d2) for s in SCALES)

    n, m = len(q), len(p)
    qq = sum(k(q[i], q[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    pp = sum(k(p[i], p[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    qp = sum(k(q[i], p[j]) for i in range(n) for j in range(m)) / (n * m)
    return qq + pp - 2 * qp


def test_mmd_matches_a_double_loop_over_pairs():
    rng = np.random.default_rng(0)
    q = rng.normal(0.5, 1.0, (5, 3))
    p = rng.normal(size=(6, 3))
    exact = mmd_by_loops(q, p)
    assert float(mmd_imq(torch.tensor(q), torch.tensor(p))) == pytest.approx(exact, rel=1e-12)
    # in float32 the three means (about 7 each) cancel to a small difference: absolute error
    got = mmd_imq(torch.tensor(q, dtype=torch.float32), torch.tensor(p, dtype=torch.float32))
    assert float(got) == pytest.approx(exact, abs=1e-5)
    one = torch.zeros(1, 3)
    assert float(mmd_imq(one, torch.zeros(4, 3))) == 0.0  # nothing to estimate


def test_mmd_of_two_samples_of_one_distribution_is_zero_in_expectation():
    g = torch.Generator().manual_seed(0)
    same = [float(mmd_imq(torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)))
            for _ in range(200)]
    shifted = [float(mmd_imq(torch.randn(32, 8, generator=g) + 1, torch.randn(32, 8, generator=g)))
               for _ in range(20)]
    assert abs(np.mean(same)) < 3 * np.std(same) / math.sqrt(len(same))  # unbiased
    assert min(shifted) > 10 * np.std(same)


def test_wae_term_is_the_mmd_to_prior_samples_from_the_global_rng():
    torch.manual_seed(0)
    model = build_model("wae", backbone="mlp", **SMALL)
    assert (spec(model).kind, spec(model).sampler) == ("deterministic", "prior")
    x = images(5)
    torch.manual_seed(7)
    term = model.loss_terms(x, x)["mmd"]
    torch.manual_seed(7)
    z = model.encode(x)
    expected = mmd_by_loops(z.detach().double().numpy(), torch.randn_like(z).double().numpy())
    assert torch.allclose(term, torch.full((5,), expected, dtype=torch.float32), atol=1e-5)


# --- arguments --------------------------------------------------------------------------


@pytest.mark.parametrize("name,kw,match", [
    ("sparse", {"weight": -1}, "weight=-1 must be a finite number >= 0"),
    ("sparse", {"rho": 1.0}, "rho=1.0 must be a number strictly between 0 and 1"),
    ("sparse", {"rho": 0}, "rho=0 must be a number strictly between 0 and 1"),
    ("sparse", {"penalty": "l2"}, "penalty='l2': choose one of l1, kl"),
    ("contractive", {"weight": float("nan")}, "weight=nan must be a finite number >= 0"),
    ("rae", {"beta": -0.1}, "beta=-0.1 must be a finite number >= 0"),
    ("rae", {"lam": "big"}, "lam='big' must be a finite number >= 0"),
    ("rae", {"variant": "spectral"}, "variant='spectral': choose one of l2, gp"),
    ("wae", {"lam": float("inf")}, "lam=inf must be a finite number >= 0"),
    ("wae", {"recon": "l1"}, "recon='l1': choose one of bce, sse"),
])
def test_a_bad_argument_is_a_clear_error(name, kw, match):
    with pytest.raises(AelabError, match=match):
        build_model(name, **kw)


# --- training ---------------------------------------------------------------------------

VARIANTS = [("sparse", {}), ("sparse", {"penalty": "kl"}), ("contractive", {}), ("rae", {}),
            ("rae", {"variant": "gp"}), ("wae", {})]
CASES = [(name, kw, b) for name, kw in VARIANTS for b in ("conv", "mlp")]
IDS = [f"{name}-{'-'.join(map(str, kw.values())) or 'default'}-{b}" for name, kw, b in CASES]


def total_loss(model, x) -> torch.Tensor:
    """The training loss: the weighted sum of the terms per image, mean over the batch."""
    terms = model.loss_terms(x, x)
    return sum(w * terms[name] for name, w in loss_weights(model).items()).mean()


@pytest.mark.parametrize("name,kw,backbone", CASES, ids=IDS)
def test_the_loss_reaches_every_parameter(name, kw, backbone):
    torch.manual_seed(0)
    model = build_model(name, backbone=backbone, **kw, **SMALL)
    total_loss(model, images(8)).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,kw,backbone", CASES, ids=IDS)
def test_twenty_adam_steps_lower_the_loss_on_a_fixed_batch(name, kw, backbone):
    torch.manual_seed(0)
    model = build_model(name, backbone=backbone, **kw, **SMALL)
    x = images(32, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def fixed_loss() -> float:  # the same prior draws (wae) every time
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(5)
            return float(total_loss(model, x))

    before = fixed_loss()
    for _ in range(20):
        opt.zero_grad()
        total_loss(model, x).backward()
        opt.step()
    assert fixed_loss() < before


@pytest.mark.parametrize("name,kw", [("contractive", {}), ("rae", {"variant": "gp"})])
def test_gradient_terms_under_bf16_autocast_agree_with_float32(name, kw):
    """The gradient-based terms run their networks in bfloat16 like any other (8 bits of
    mantissa: a loose tolerance), and come back in float32."""
    torch.manual_seed(0)
    model = build_model(name, backbone="conv", **kw, **SMALL)
    x = images(4)
    full = model.loss_terms(x, x)
    half = model.loss_terms(x, x, autocast_bf16=True)
    for term in full:
        assert half[term].dtype == torch.float32
        assert torch.allclose(half[term], full[term], rtol=0.25), term
