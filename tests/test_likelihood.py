"""The exact-likelihood baselines: mixtures of Bernoullis checked against brute force, the
closed form for K = 1, EM's monotone objective, and the table on real (binarized) MNIST."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from aelab.apps.likelihood import (
    TRAIN_BINARIZE_SEED,
    bernoulli_baselines,
    fit_mixture,
    mixture_nll,
    n_params,
)
from aelab.data.batches import BINARIZE_TEST_SEED
from aelab.errors import AelabError

QUIET = {"log": lambda _msg: None}


def _planted(n: int = 400, seed: int = 0):
    """Two well-separated components over D = 12 pixels: mostly-on on the first half or
    on the second half; returns (images (n, 12) float64, which component drew each)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=gen) < 0.3  # (n,) component 1 with probability 0.3
    half = torch.tensor([0.9] * 6 + [0.1] * 6, dtype=torch.float64)
    p = torch.where(z[:, None], half.flip(0), half)  # (n, 12)
    return (torch.rand(n, 12, generator=gen, dtype=torch.float64) < p).double(), z


def _all_images(d: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)


def test_nll_is_the_brute_force_log_probability_and_sums_to_one():
    x, _ = _planted()
    model = fit_mixture(x[:, :4], 3, iters=5, **QUIET)  # D = 4: all 16 images enumerable
    every = _all_images(4)  # (16, 4)
    p = model["log_p"].exp()
    w = model["log_weights"].exp()
    # p(x) = sum_k w_k prod_d p_kd^x_d (1 - p_kd)^(1 - x_d), written out term by term
    brute = torch.tensor([sum(w[k] * math.prod(p[k, d] if v else 1 - p[k, d]
                                               for d, v in enumerate(img))
                              for k in range(3)).item() for img in every.tolist()],
                         dtype=torch.float64)
    nll = mixture_nll(model, every)
    assert nll.dtype == torch.float64 and nll.shape == (16,)
    assert torch.allclose(nll, -brute.log(), atol=1e-12)
    assert (-nll).exp().sum().item() == pytest.approx(1.0, abs=1e-12)


def test_one_component_is_the_smoothed_pixel_means():
    x, _ = _planted()
    for alpha in (1.0, 0.5):
        model = fit_mixture(x, 1, alpha=alpha, **QUIET)
        expected = (x.sum(0) + alpha) / (len(x) + 2 * alpha)
        assert torch.allclose(model["log_p"][0].exp(), expected, atol=1e-12)
        assert torch.allclose(model["log_1mp"][0].exp(), 1 - expected, atol=1e-12)
        assert model["log_weights"].tolist() == [0.0]
        # the independent-pixel log-likelihood, summed pixel by pixel
        direct = (x * expected.log() + (1 - x) * (1 - expected).log()).sum(1)
        assert torch.allclose(mixture_nll(model, x), -direct, atol=1e-10)


def test_no_pixel_probability_is_0_or_1():
    x = torch.zeros(50, 6, dtype=torch.float64)  # every pixel always off
    model = fit_mixture(x, 2, iters=3, **QUIET)
    assert torch.isfinite(mixture_nll(model, torch.ones(1, 6, dtype=torch.float64))).all()


def test_em_never_decreases_the_objective_and_finds_the_planted_components():
    x, z = _planted()
    model = fit_mixture(x, 2, iters=20, seed=1, **QUIET)
    obj = model["objective"]
    assert len(obj) == 21 and len(model["history"]) == 21
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(obj)), obj
    assert obj[-1] > obj[0] + 0.1  # EM did something
    # the two components are the two halves, whichever order they came out in
    p = model["log_p"].exp()
    k1 = int(p[:, 6:].mean(1).argmax())  # the component that has the second half on
    assert p[k1, 6:].min() > 0.75 and p[k1, :6].max() < 0.25
    assert p[1 - k1, :6].min() > 0.75 and p[1 - k1, 6:].max() < 0.25
    assert model["log_weights"][k1].exp().item() == pytest.approx(z.double().mean().item(),
                                                                  abs=0.02)
    # a better fit than independent pixels, on images it did not see
    held_out, _ = _planted(seed=7)
    indep = fit_mixture(x, 1, **QUIET)
    assert mixture_nll(model, held_out).mean() < mixture_nll(indep, held_out).mean() - 1


def test_fit_is_deterministic_in_the_seed():
    x, _ = _planted()
    a, b = (fit_mixture(x, 3, iters=2, seed=5, **QUIET) for _ in range(2))
    c = fit_mixture(x, 3, iters=2, seed=6, **QUIET)
    assert torch.equal(a["log_p"], b["log_p"]) and not torch.equal(a["log_p"], c["log_p"])


@pytest.mark.parametrize(("x", "kw", "match"), [
    (torch.rand(10, 4), {}, "exactly 0 or 1"),
    (torch.ones(10, 2, 2), {}, r"\(N, D\)"),
    (torch.ones(10, 4), {"components": 0}, "at least 1 component"),
    (torch.ones(3, 4), {"components": 5}, "only 3 training images"),
    (torch.ones(10, 4), {"alpha": 0.0}, "must be > 0"),
])
def test_bad_arguments_are_aelab_errors(x, kw, match):
    with pytest.raises(AelabError, match=match):
        fit_mixture(x, **{"components": 2, **kw}, **QUIET)


def test_scoring_checks_its_images():
    model = fit_mixture(torch.ones(10, 4), 1, **QUIET)
    with pytest.raises(AelabError, match="5 pixels, the model 4"):
        mixture_nll(model, torch.ones(2, 5))
    with pytest.raises(AelabError, match="exactly 0 or 1"):
        mixture_nll(model, torch.full((2, 4), 255.0))


def test_baselines_table_on_mnist(mnist_dir):
    assert TRAIN_BINARIZE_SEED != BINARIZE_TEST_SEED
    rows = bernoulli_baselines(data_dir=mnist_dir, components=(1, 10), iters=5, limit=2000,
                               **QUIET)
    assert [r["name"] for r in rows] == ["independent-pixels", "bernoulli-mixture-10"]
    for r in rows:
        assert {"name", "model", "components", "params", "nll_nats", "train_seconds",
                "iw_samples", "binarize"} <= set(r)
        assert r["iw_samples"] is None and r["n_test"] == 10_000 and r["n_train"] == 2000
        assert r["params"] == n_params(r["components"], 784)
    indep, mix = rows
    assert 190 < indep["nll_nats"] < 225  # about 206 on all 60,000 training images
    assert mix["nll_nats"] < indep["nll_nats"] - 20
