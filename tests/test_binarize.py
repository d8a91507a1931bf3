"""Binarized MNIST and the importance-weighted likelihood bound: the protocol of the
likelihood tables (Burda, Grosse & Salakhutdinov 2016), checked in quick form."""

from __future__ import annotations

import json
import math

import pytest
import torch

from aelab.cli import main
from aelab.data import load_dataset
from aelab.data.batches import BINARIZE_TEST_SEED, binarize, binarize_u8, epoch_generator, to_float
from aelab.evaluate import evaluate_run, format_table
from aelab.models import build_model
from aelab.models.vae import ConvVAE, log_normal


def test_binarize_u8_is_seeded_bernoulli_of_the_grey_values(mnist_dir):
    x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    a, b = binarize_u8(x, BINARIZE_TEST_SEED), binarize_u8(x, BINARIZE_TEST_SEED)
    assert torch.equal(a, b) and a.dtype == torch.uint8
    assert set(a.unique().tolist()) == {0, 255}
    assert not torch.equal(a, binarize_u8(x, 1))
    # E[Bernoulli(p)] = p: the mean pixel is kept (10,000 x 784 draws)
    assert to_float(a).mean().item() == pytest.approx(to_float(x).mean().item(), abs=2e-3)
    # black and white pixels stay as they are
    assert torch.equal(a[x == 0], x[x == 0]) and torch.equal(a[x == 255], x[x == 255])


def test_dynamic_binarization_draws_a_new_sample_each_epoch():
    x = torch.full((8, 1, 28, 28), 0.5)
    e1, e1b, e2 = (binarize(x, epoch_generator(3, e)) for e in (1, 1, 2))
    assert torch.equal(e1, e1b) and not torch.equal(e1, e2)  # resumable, and fresh per epoch
    assert set(e1.unique().tolist()) == {0.0, 1.0}


def _exact_log_px(model: ConvVAE, x: torch.Tensor, grid: int = 20001, span: float = 10.0):
    """log p(x) = log integral p(x|z) N(z; 0, 1) dz for a 1-number code, by summing the
    integrand on a fine grid (trapezoid weights, here plain Riemann: the tails vanish)."""
    z = torch.linspace(-span, span, grid).unsqueeze(1)  # (G, 1)
    with torch.no_grad():
        logits = model.logits(z)  # (G, 1, 28, 28)
        log_px_z = -model.recon_nll(logits.unsqueeze(1).expand(grid, len(x), 1, 28, 28), x)  # (G, B)
    zero = torch.zeros(())
    log_pz = log_normal(z.unsqueeze(1), zero, zero)  # (G, 1)
    dz = 2 * span / (grid - 1)
    return torch.logsumexp(log_px_z + log_pz, dim=0) + math.log(dz)  # (B,)


def test_the_iw_bound_approaches_the_exact_likelihood_of_a_one_number_vae(mnist_dir):
    """Burda et al.'s Theorem 1 on a model whose marginal can be summed: with a 1-number
    code, log p(x) is a 1-D integral. E[IWAE_K] <= log p(x), rising with K towards it."""
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=1).eval()
    with torch.no_grad():  # a decoder that depends on z, and q(z|x) = the prior N(0, 1)
        model.decoder[0].weight.mul_(3.0)
        model.head.weight.zero_()
        model.head.bias.zero_()
    x_u8, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    x = to_float(binarize_u8(x_u8[:4], BINARIZE_TEST_SEED))  # (4, 1, 28, 28) of 0/1
    exact = _exact_log_px(model, x)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the expectation over 6 independent estimates
        mean = {k: torch.stack([model.iwae_bound(x, k, gen) for _ in range(6)]).mean(0)
                for k in (1, 50, 5000)}
    assert (mean[1] < mean[50]).all() and (mean[50] < mean[5000]).all()
    assert (mean[5000] <= exact + 0.05).all()
    gap = {k: exact - m for k, m in mean.items()}
    assert gap[5000].max() < 1.0 and gap[5000].mean() < 0.25 * gap[1].mean()


def test_extra_metrics_report_the_bound_and_stream_progress(mnist_dir):
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=2)
    x_u8, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    seen = []
    with torch.inference_mode():
        m = model.extra_metrics(binarize_u8(x_u8[:30], 0), iw_samples=700,
                                progress=lambda d, t: seen.append((d, t)))
    assert m["iw_samples"] == 700 and seen[-1] == (30, 30) and len(seen) == 3  # 14 images a chunk
    assert m["iwae_nll_nats"] <= m["neg_elbo_nats"] + 1.0  # -IWAE <= -ELBO (noise aside)


def test_a_binarized_vae_run_trains_and_evaluates_with_the_papers_k_by_default(
        mnist_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--binarize", "dynamic", "--epochs", "1", "--limit", "256",
                 "--latent-dim", "4", "--run-dir", str(run), "--data-dir", str(mnist_dir)]) == 0
    assert json.loads((run / "config.json").read_text())["binarize"] == "dynamic"
    calls = []
    real = ConvVAE.extra_metrics

    def spy(self, images, iw_samples=100, **kw):
        calls.append((iw_samples, set(images.unique().tolist())))
        return real(self, images[:20], iw_samples=min(iw_samples, 20), **kw)

    monkeypatch.setattr(ConvVAE, "extra_metrics", spy)
    ev = evaluate_run(run, data_dir=mnist_dir, log=lambda _m: None)
    assert calls[-1] == (5000, {0, 255})  # K = 5000 on the once-binarized test set
    assert ev["binarize"] == "dynamic"
    monkeypatch.setattr(ConvVAE, "extra_metrics", real)
    capsys.readouterr()
    assert main(["eval", str(run), "--iw-samples", "10", "--data-dir", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert "-ELBO nats" in out and "NLL bound nats (K)" in out and "(10)" in out
    ev = json.loads((run / "eval.json").read_text())
    assert ev["iw_samples"] == 10 and ev["iwae_nll_nats"] > 0


def test_static_binarization_and_the_table_without_a_vae(mnist_dir, tmp_path):
    run = tmp_path / "lin"
    assert main(["train", "linear", "--binarize", "static", "--epochs", "1", "--limit", "128",
                 "--run-dir", str(run), "--data-dir", str(mnist_dir)]) == 0
    ev = evaluate_run(run, data_dir=mnist_dir, log=lambda _m: None)
    assert "iwae_nll_nats" not in ev and "NLL bound" not in format_table([ev])
    assert build_model("linear") is not None
