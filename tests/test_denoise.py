"""The Wiener-filter denoising baseline: the closed form on a Gaussian signal, the same
test inputs as `aelab eval --noise`, and the command."""

from __future__ import annotations

import pytest
import torch

from aelab.apps import denoise as D
from aelab.cli import main
from aelab.data import load_dataset
from aelab.data.batches import corrupt, epoch_generator, reconstruction_sse, to_float


def _gaussian_signal(n: int, seed: int) -> torch.Tensor:
    """uint8 'images' 0.5 + a rank-3 Gaussian signal, far from 0 and 1 so the noise's
    clipping to [0, 1] never acts: additive noise, where the Wiener filter has a closed form."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(3, 784, generator=torch.Generator().manual_seed(0))
    x = 0.5 + 0.04 * torch.randn(n, 3, generator=g) @ basis / 3  # (n, 784)
    assert x.min() > 0.1 and x.max() < 0.9
    return (x * 255).round().to(torch.uint8).view(n, 28, 28)


def test_the_fitted_filter_is_the_closed_form_wiener_filter():
    sigma = 0.02
    train, test = _gaussian_signal(20_000, 1), _gaussian_signal(2_000, 2)
    f = D.fit_wiener(train, f"gaussian:{sigma}")
    # closed form for y = x + n, n ~ N(0, sigma^2 I) independent of x:
    # x_hat = m + C (C + sigma^2 I)^-1 (y - m), with C the covariance of the clean images
    x = to_float(train).flatten(1).double()
    m, c = x.mean(0), torch.cov(x.T, correction=0)
    w_true = c @ torch.linalg.inv(c + sigma**2 * torch.eye(784, dtype=torch.float64))
    clean = to_float(test)
    noisy = D.corrupted(test, f"gaussian:{sigma}", 7)
    closed = ((noisy.flatten(1).double() - m) @ w_true.T + m).view(noisy.shape)
    fitted, ideal = D.scores(D.apply_wiener(f, noisy), clean), D.scores(closed, clean)
    noisy_score = D.scores(noisy, clean)
    assert fitted["sse_per_image"] == pytest.approx(ideal["sse_per_image"], rel=0.05)
    assert fitted["sse_per_image"] < 0.5 * noisy_score["sse_per_image"]
    assert fitted["psnr_db"] > noisy_score["psnr_db"] + 3


def test_the_test_inputs_are_those_of_aelab_eval(mnist_dir):
    """A model that returns its input scores, under evaluate's corruption, the noisy row."""
    x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    x = x[:2500]
    gen = epoch_generator(D.EVAL_NOISE_SEED, 0)
    sse = reconstruction_sse(torch.nn.Identity(), x, 1000, lambda b: corrupt(b, "masking:0.5", gen))
    noisy = D.scores(D.corrupted(x, "masking:0.5", D.EVAL_NOISE_SEED), to_float(x))
    assert sse.mean().item() == pytest.approx(noisy["sse_per_image"], rel=1e-6)  # float32 sums


def test_wiener_beats_the_noisy_input_on_mnist_and_clipping_only_helps(mnist_dir, capsys):
    assert main(["baseline", "wiener", "--noise", "gaussian:0.3", "--data-dir", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: float(line.split()[2]) for line in out.splitlines()[1:]}
    assert rows["noisy"] == pytest.approx(13.33, abs=0.01)  # the noisy-input figure
    assert rows["wiener"] == pytest.approx(20.03, abs=0.05)
    assert rows["wiener-clipped"] > rows["wiener"] > rows["noisy"] + 6
    assert main(["baseline", "wiener", "--data-dir", str(mnist_dir)]) == 2
    assert "needs --noise" in capsys.readouterr().err
