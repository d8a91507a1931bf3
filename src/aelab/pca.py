"""Exact PCA, the baseline every table stands beside: one fit, one cache, one scorer.

The basis of a dataset's 60,000 training images is the eigenvectors of their covariance
in float64, largest first (`fit`), cached once per dataset as safetensors in its data
folder (`dataset_basis`). Reconstruction error (`sse`) and codes (`codes`) with k
components come from the same basis, so `aelab eval`, `aelab baseline pca` and
`aelab results` report the same PCA numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from . import data as data_mod
from ._io import atomic_write_bytes

CACHE_NAME = "pca-basis.safetensors"


def fit(train_u8: torch.Tensor) -> dict:
    """Exact PCA in float64: the eigenvectors of the training covariance, largest first."""
    x = train_u8.reshape(len(train_u8), -1).double().div_(255.0)  # (N, 784)
    mean = x.mean(0)
    x -= mean
    cov = x.T @ x / len(x)  # (784, 784)
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    order = eigvals.argsort(descending=True)
    return {"mean": mean, "components": eigvecs[:, order].T.contiguous(),
            "eigenvalues": eigvals[order].contiguous()}


def basis(train_u8: torch.Tensor, cache: Path | None = None, key: str = "") -> dict:
    """The full PCA basis of the training images, cached as safetensors (keyed by `key`)."""
    if cache is not None and Path(cache).is_file():
        try:
            with safe_open(str(cache), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("key") == key and meta.get("n") == str(len(train_u8)):
                    return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        except Exception:  # a damaged cache is just refitted
            pass
    b = fit(train_u8.cpu())
    if cache is not None:
        atomic_write_bytes(cache, st_save(b, metadata={"key": key, "n": str(len(train_u8))}))
    return b


def dataset_basis(dataset: str, *, data_dir=None, options=None, log=print) -> dict:
    """The PCA basis of a dataset's whole training split, cached in its data folder (a
    dataset given by path: in the data folder's cache/, keyed by its checksum)."""
    train_x, _ = data_mod.load_dataset(dataset, "train", data_dir=data_dir, options=options, log=log)
    info = data_mod.dataset_info(dataset, data_dir=data_dir, options=options, log=log)
    if info["path"] is None:
        cache = Path(data_mod.ensure_dataset(dataset, data_dir, log=log)) / CACHE_NAME
    else:
        root = Path(data_dir) if data_dir is not None else data_mod.default_data_dir()
        cache = root / "cache" / f"pca-{info['checksum']}.safetensors"
    return basis(train_x, cache, key=info["checksum"])


def sse(b: dict, images_u8: torch.Tensor, k: int, inputs: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image squared error of the best rank-k linear reconstruction, (N,) float64.

    inputs: what is projected and reconstructed instead of the images themselves, floats
    in [0, 1] of the same count (e.g. noisy copies, (N, 1, 28, 28)); the error is still
    against images_u8, so this scores PCA as a denoiser."""
    x = images_u8.reshape(len(images_u8), -1).double().div(255.0) - b["mean"]  # (N, 784)
    x_in = x if inputs is None else inputs.reshape(len(inputs), -1).double() - b["mean"]
    w = b["components"][:k]  # (k, 784)
    recon = (x_in @ w.T) @ w
    return (recon - x).square().sum(1)


def codes(b: dict, images_u8: torch.Tensor, k: int) -> np.ndarray:
    """PCA codes (N, k): centred images projected on the first k components."""
    x = images_u8.reshape(len(images_u8), -1).double().div(255.0) - b["mean"]  # (N, 784)
    return (x @ b["components"][:k].T).float().numpy()


def test_sse(dataset: str, k: int, *, data_dir=None, options=None, log=print) -> torch.Tensor:
    """Per-test-image squared error of exact PCA with k components (basis cached on disk)."""
    test_x, _ = data_mod.load_dataset(dataset, "test", data_dir=data_dir, options=options, log=log)
    return sse(dataset_basis(dataset, data_dir=data_dir, options=options, log=log), test_x, k)
