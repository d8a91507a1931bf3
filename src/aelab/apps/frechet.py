"""The Fréchet distance between two Gaussians fitted to features: "FID" with aelab's own MNIST
classifier (apps/classifier.py) as the feature network instead of Inception.

Heusel, Ramsauer, Unterthiner, Nessler & Hochreiter, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium", NeurIPS 2017:

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

Protocol: features of 10,000 generated images against those of the 10,000 test images. The
estimate is biased upwards at small N (the covariances are noisy), so only distances computed
with the same N and the same feature network are comparable.
"""

from __future__ import annotations

import numpy as np
import torch


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) in float64 of features (N, D), a numpy array or tensor.
    The covariance is the unbiased (N - 1) one, as pytorch-fid computes it."""
    x = features.detach().cpu().double().numpy() if torch.is_tensor(features) else features
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """d^2 between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al., NeurIPS 2017), in float64.

    Tr((S1 S2)^{1/2}) is the sum of the square roots of the eigenvalues of
    sqrt(S1) S2 sqrt(S1): that matrix is similar to S1 S2 and symmetric PSD, so `eigh` gives
    real eigenvalues and the tiny negative ones rounding leaves are clipped to 0. Unlike
    scipy.linalg.sqrtm of the non-symmetric S1 S2 (pytorch-fid), this needs no eps offset
    for singular covariances and never returns complex values."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)  # symmetrised against rounding
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    d = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
    return max(d, 0.0)  # rounding can leave -1e-13 for identical inputs


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a PSD matrix; negative rounding eigenvalues count as 0."""
    eig, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(eig, 0, None))) @ vecs.T
