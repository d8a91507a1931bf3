"""Denoising baselines on the protocol of `aelab eval --noise`: the noisy input itself and
the optimal linear (Wiener) filter, scored as PSNR (the mean over test images of each
image's PSNR) and squared error per image against the clean images.

The Wiener filter here is the exact least-squares linear estimate of the clean image x
from the corrupted one y, fitted on the training set with one corruption of each image:
x_hat = m_x + C_xy C_yy^-1 (y - m_y), with the means and covariances of the 60,000 pairs
in float64 (Wiener 1949; for additive noise on a Gaussian signal it is the MMSE estimator).
Two rows: "wiener", the linear filter itself, and "wiener-clipped", its output clipped to
[0, 1] (the range of every clean image, so clipping can only lower the error). The test
images are corrupted exactly as `aelab eval --noise` corrupts them.
"""

from __future__ import annotations

import torch

from .. import data as data_mod
from ..config import parse_noise
from ..data.batches import corrupt, epoch_generator, to_float

EVAL_NOISE_SEED = 12345  # aelab.evaluate.evaluate_run corrupts its test inputs with this seed
FIT_NOISE_SEED = 54321  # the training pairs' corruption (never the test set's)
RIDGE = 1e-8  # pixels that are always 0 make C_yy singular; this keeps the solve exact elsewhere


def corrupted(images_u8: torch.Tensor, noise: str, seed: int, batch_size: int = 1000) -> torch.Tensor:
    """The images (N, 28, 28) as float (N, 1, 28, 28), corrupted batch by batch with one
    generator seeded `seed`: the same inputs `aelab eval --noise` gives a model."""
    parse_noise(noise)
    gen = epoch_generator(seed, 0, images_u8.device)
    return torch.cat([corrupt(to_float(images_u8[i : i + batch_size]), noise, gen)
                      for i in range(0, len(images_u8), batch_size)])


def fit_wiener(train_u8: torch.Tensor, noise: str, seed: int = FIT_NOISE_SEED,
               batch_size: int = 10_000) -> dict:
    """The linear filter {"weight" (784, 784), "bias" (784,)} with x_hat = y @ weight.T + bias."""
    n, d = len(train_u8), train_u8[0].numel()
    sx, sy = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    sxy = torch.zeros(d, d, dtype=torch.float64)
    syy = torch.zeros(d, d, dtype=torch.float64)
    gen = epoch_generator(seed, 0)
    for i in range(0, n, batch_size):
        x = to_float(train_u8[i : i + batch_size])
        y = corrupt(x, noise, gen).flatten(1).double()  # (B, 784)
        x = x.flatten(1).double()
        sx += x.sum(0)
        sy += y.sum(0)
        sxy += x.T @ y
        syy += y.T @ y
    mx, my = sx / n, sy / n
    cxy = sxy / n - torch.outer(mx, my)
    cyy = syy / n - torch.outer(my, my) + RIDGE * torch.eye(d, dtype=torch.float64)
    weight = torch.linalg.solve(cyy, cxy.T).T  # C_xy C_yy^-1 (C_yy is symmetric)
    return {"weight": weight, "bias": mx - weight @ my}


def apply_wiener(f: dict, noisy: torch.Tensor, clip: bool = False) -> torch.Tensor:
    """Filtered images (N, 1, 28, 28) from corrupted ones of the same shape (float64)."""
    out = (noisy.flatten(1).double() @ f["weight"].T + f["bias"]).view(noisy.shape)
    return out.clamp_(0, 1) if clip else out


def scores(images: torch.Tensor, clean: torch.Tensor) -> dict:
    """Mean per-image PSNR (dB, peak 1) and mean squared error per image (summed over pixels)."""
    sse = (images.double() - clean.double()).square().flatten(1).sum(1)  # (N,)
    mse = sse / clean[0].numel()
    psnr = 10 * torch.log10(1.0 / mse.clamp(min=1e-12))
    return {"psnr_db": psnr.mean().item(), "sse_per_image": sse.mean().item()}


def baselines(noise: str, dataset: str = "mnist", *, data_dir=None, options=None,
              log=print) -> list[dict]:
    """Rows for the noisy input and the Wiener filter (plain and clipped) on the test set,
    for one noise ("gaussian:0.3", "masking:0.5", ...)."""
    opts = dict(data_dir=data_dir, options=options, log=log)
    train_x, _ = data_mod.load_dataset(dataset, "train", **opts)
    test_x, _ = data_mod.load_dataset(dataset, "test", **opts)
    clean = to_float(test_x)
    noisy = corrupted(test_x, noise, EVAL_NOISE_SEED)
    f = fit_wiener(train_x, noise)
    filtered = apply_wiener(f, noisy)
    return [{"noise": noise, "method": "noisy", **scores(noisy, clean)},
            {"noise": noise, "method": "wiener", **scores(filtered, clean)},
            {"noise": noise, "method": "wiener-clipped", **scores(filtered.clamp(0, 1), clean)}]
