"""Images as the models see them: uint8 tensors turned into float batches, corrupted
copies for denoising, per-epoch random generators, and batched reconstruction error.

Everything here works on one uint8 tensor resident on the compute device, in the dataset
layout (data/shapes.py): (N, H, W) for grey images, (N, 3, H, W) for colour; the float
batches the models see are always (B, C, H, W). No per-sample Dataset or PIL step is
involved. `as_images` checks images as a person hands them over (numpy or torch, uint8 or
float, several layouts); the code section at the end fits and samples the Gaussians that
random codes are drawn from.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import parse_noise
from ..errors import AelabError
from .shapes import ShapeError, check_sides, dataset_shape
from .shapes import image_shape as image_shape  # (C, H, W) of images in the dataset layout


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) -> float (B, 1, H, W) in [0, 1]; uint8 (B, 3, H, W) -> float (B, 3, H, W)."""
    x = images_u8.unsqueeze(1) if images_u8.ndim == 3 else images_u8
    return x.float().div_(255.0)


# --- images as people hand them over ----------------------------------------------------

IMAGE_LAYOUTS = "(N, 28, 28), (N, 1, 28, 28), (N, 784), or one image (28, 28) or (784,)"  # MNIST's
ANY_LAYOUTS = ("(N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3 and sides 8 to 128, "
               "(N, 784), or one image (28, 28) or (784,)")
_NUMPY_FLOATS = (np.float16, np.float32, np.float64)  # the float dtypes torch.from_numpy takes
EXPECTED = "give uint8 images (0..255) or floats in [0, 1]"


def layouts_text(shape: tuple | None) -> str:
    """The layouts as_images takes for images of `shape` (C, H, W), or for any shape (None);
    for (1, 28, 28) exactly IMAGE_LAYOUTS."""
    if shape is None:
        return ANY_LAYOUTS
    c, h, w = shape
    if c == 1:
        return f"(N, {h}, {w}), (N, 1, {h}, {w}), (N, {h * w}), or one image ({h}, {w}) or ({h * w},)"
    return (f"(N, 3, {h}, {w}), (N, {h}, {w}, 3), (N, {3 * h * w}), or one image (3, {h}, {w}), "
            f"({h}, {w}, 3) or ({3 * h * w},)")


def _per_image(shape: tuple) -> dict[tuple, str]:
    """What may follow N for images of `shape` (C, H, W) -> how to read it."""
    c, h, w = shape
    if c == 1:
        return {(h, w): "as-is", (1, h, w): "nchw", (h, w, 1): "nhwc", (h * w,): "flat"}
    return {(3, h, w): "nchw", (h, w, 3): "nhwc", (3 * h * w,): "flat"}


def _read_shape(shape: tuple, want: tuple | None) -> tuple[int, tuple, str]:
    """(N, the dataset-layout shape, how) of images of `shape`, expected to be of `want`
    (C, H, W) or of any shape (None); AelabError saying what is taken otherwise."""
    given = f"got images of shape {shape}; give {layouts_text(want)}"
    if want is None:
        if shape in ((28, 28), (784,)):  # one MNIST-sized image
            return 1, (1, 28, 28), "flat"
        try:
            out, how = dataset_shape(shape)
        except ShapeError as e:
            raise AelabError(f"got {e}; give {layouts_text(None)}") from None
        problem = check_sides(*out[-2:])
        if problem:
            raise AelabError(f"got {problem} (shape {shape}); give {layouts_text(None)}")
        return out[0], out, how
    per, flat = _per_image(want), want[1:] if want[0] == 1 else want
    if shape in per:  # one image
        return 1, (1, *flat), per[shape]
    if len(shape) >= 2 and shape[1:] in per:
        return shape[0], (shape[0], *flat), per[shape[1:]]
    raise AelabError(given)


def as_images(images, image_shape: tuple | None = None) -> torch.Tensor:
    """Images as a person may hand them over -> a torch tensor in the dataset layout, (N, H, W)
    grey or (N, 3, H, W) colour, of their own dtype (uint8, or float in [0, 1]) on their own
    device; a view of them where possible.

    Takes a numpy array or torch tensor: with `image_shape` (C, H, W) given, in any of
    layouts_text(image_shape) (for MNIST's (1, 28, 28): IMAGE_LAYOUTS); without it, in any of
    ANY_LAYOUTS (see data/shapes.py for how channels-first and -last are told apart). Raises
    AelabError saying what was given and what is expected (floats in 0..255 are refused, not
    saturated)."""
    x = _as_tensor(images)
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise AelabError(f"got images of dtype {_dtype_name(images)}; {EXPECTED}")
    shape = tuple(x.shape)
    want = None if image_shape is None else tuple(int(s) for s in image_shape)
    n, out, how = _read_shape(shape, want)
    if n == 0:
        raise AelabError(f"got no images (shape {shape}); give at least one")
    if x.is_floating_point():
        _check_range(x)
    if how == "nhwc":
        x = x.reshape(n, *shape[-3:]).permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W), a view
    return x.reshape(out)


def _as_tensor(images) -> torch.Tensor:
    """A torch tensor sharing memory with numpy `images` where torch can (a copy of a
    read-only, reversed or long-double array); a tensor as it is."""
    if torch.is_tensor(images):
        return images
    if not isinstance(images, np.ndarray):
        raise AelabError(f"got images as {type(images).__name__}; give a numpy array or a "
                         "torch tensor (np.asarray(images) makes one)")
    if images.dtype.kind == "f" and images.dtype not in _NUMPY_FLOATS:
        images = images.astype(np.float64)
    if images.dtype != np.uint8 and images.dtype.kind != "f":  # strings, objects, complex...
        raise AelabError(f"got images of dtype {images.dtype}; {EXPECTED}")
    return torch.from_numpy(np.require(images, requirements="CW"))


def _dtype_name(images) -> str:
    return str(images.dtype).removeprefix("torch.")


def _check_range(x: torch.Tensor) -> None:
    lo, hi = (v.item() for v in torch.aminmax(x))
    if math.isnan(lo) or math.isnan(hi):
        raise AelabError(f"got float images with NaN values; {EXPECTED}")
    if hi > 1:
        raise AelabError(f"got float values up to {hi:g}; give uint8 images or floats in "
                         "[0, 1] (divide by 255)")
    if lo < 0:
        raise AelabError(f"got float values down to {lo:g}; give uint8 images or floats in [0, 1]")


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """Checked images (B, H, W) or (B, 3, H, W), uint8 or float in [0, 1] -> float32
    (B, C, H, W) in [0, 1]."""
    if images.dtype == torch.uint8:
        return to_float(images)
    return (images.unsqueeze(1) if images.ndim == 3 else images).float()


def epoch_generator(seed: int, epoch: int, device="cpu") -> torch.Generator:
    """Each epoch's randomness depends only on (seed, epoch), so a resumed run reshuffles
    exactly as an uninterrupted one would."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def corrupt(x: torch.Tensor, noise: str | None, gen: torch.Generator) -> torch.Tensor:
    """The denoising input: a corrupted copy of clean images x (B, C, H, W) in [0, 1]."""
    if noise is None:
        return x
    kind, amount = parse_noise(noise)
    if kind == "gaussian":
        noisy = x + amount * torch.randn(x.shape, generator=gen, device=x.device)
        return noisy.clamp_(0, 1)
    keep = torch.rand(x.shape, generator=gen, device=x.device) >= amount
    return x * keep


def figure_digits(test_labels: torch.Tensor, n_unlabelled: int = 10) -> torch.Tensor:
    """Indices of the first test image of each class: the same images in every figure.
    Unlabelled data (labels -1) shows its first `n_unlabelled` test images instead; so does
    data with more than 20 classes (its first image of each of the first 20)."""
    labels = test_labels.cpu()
    classes = labels[labels >= 0].unique()[:20]
    if len(classes) == 0:
        return torch.arange(min(n_unlabelled, len(labels)))
    return torch.stack([(labels == d).nonzero()[0, 0] for d in classes])


@torch.inference_mode()
def reconstruction_sse(model, images_u8: torch.Tensor, batch_size: int = 1000,
                       corrupt_fn=None) -> torch.Tensor:
    """Per-image squared error summed over pixels, (N,) float64 on the CPU.

    The model and the images must be on the same device; the model is put in eval mode.
    `corrupt_fn(x)`, if given, makes the model's input; the error is against the clean x.
    """
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(images_u8), batch_size):
        x = to_float(images_u8[i : i + batch_size])
        x_in = corrupt_fn(x) if corrupt_fn is not None else x
        err = (model(x_in).float() - x).square().flatten(1).sum(1)  # (B,)
        out.append(err.double().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.inference_mode()
def encode_all(model, images_u8: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Codes of uint8 images (N, H, W) or (N, 3, H, W) -> (N, latent_dim) float32 on the CPU, model in
    eval mode. Each batch of images is moved to the model's device."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    codes = [model.encode(to_float(images_u8[i : i + batch_size].to(dev))).float().cpu()
             for i in range(0, len(images_u8), batch_size)]
    model.train(was_training)
    return torch.cat(codes) if codes else torch.zeros(0, int(model.latent_dim))


# Binarized MNIST, as in the likelihood literature (e.g. Burda, Grosse & Salakhutdinov 2016):
# each pixel becomes 1 with probability equal to its grey value. "dynamic" resamples every
# training image each time it is drawn; the test set is binarized once with this seed, so
# every evaluation of every run sees the same 0/1 test images.
BINARIZE_TEST_SEED = 20160201


def binarize(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Bernoulli(x) samples of float images x in [0, 1], as float 0/1 of x's shape."""
    return (torch.rand(x.shape, generator=gen, device=x.device) < x).to(x.dtype)


def binarize_u8(images_u8: torch.Tensor, seed: int, batch_size: int = 10_000) -> torch.Tensor:
    """uint8 images (N, H, W) binarized once with `seed`: a uint8 tensor of 0 and 255 (so
    to_float gives exactly 0 and 1). Batched in a fixed order, so the result depends only on
    the images and the seed."""
    gen = torch.Generator(device=images_u8.device).manual_seed(seed)
    out = torch.empty_like(images_u8)
    for i in range(0, len(images_u8), batch_size):
        x = images_u8[i : i + batch_size].float().div_(255.0)
        out[i : i + batch_size] = binarize(x, gen).mul_(255).to(torch.uint8)
    return out


# --- codes: a Gaussian fitted to them, and random codes drawn from one -------------------


def principal_directions(codes: torch.Tensor):
    """Mean (L,), principal directions (L, L) as rows, and their variances (L,), largest
    first: the eigen-decomposition of the codes' covariance, in float64."""
    c = codes.double()
    mean = c.mean(0)
    centred = c - mean
    cov = centred.T @ centred / max(len(c) - 1, 1)  # (L, L)
    var, vecs = torch.linalg.eigh(cov)  # ascending
    order = var.argsort(descending=True)
    return mean, vecs[:, order].T, var[order].clamp(min=0)


def standard_normal(latent_dim: int):
    """N(0, I), a VAE's prior, as (mean, directions, variances) like principal_directions."""
    return (torch.zeros(latent_dim, dtype=torch.float64), torch.eye(latent_dim, dtype=torch.float64),
            torch.ones(latent_dim, dtype=torch.float64))


def gaussian_codes(gaussian, n: int, seed: int) -> torch.Tensor:
    """n codes (n, L) float64 on the CPU drawn from a Gaussian given as (mean, directions,
    variances); sampling through the eigen-decomposition copes with a singular covariance.
    The same seed gives the same codes."""
    mean, dirs, var = gaussian
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    return mean + (eps * var.sqrt()) @ dirs  # covariance dirs.T diag(var) dirs


def sample_codes(train_codes: torch.Tensor, n: int, *, variational: bool, seed: int) -> torch.Tensor:
    """n random codes (n, L): N(0, I) for a VAE's prior, else a Gaussian with the training
    codes' mean and full covariance."""
    L = train_codes.shape[1]
    return gaussian_codes(standard_normal(L) if variational else principal_directions(train_codes),
                          n, seed)
