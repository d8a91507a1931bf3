"""Samplers: where the codes of random images come from. Pure functions and small classes
on tensors; no file I/O (aelab.runs fits them on a run's training codes and keeps them in
the run folder, `RUN_DIR/samplers/`).

SAMPLERS is the registry that `aelab sample --sampler`, `LoadedRun.sample(sampler=)` and the
JSON API offer, each model the names that make sense for it (`offered`, first the default):

- "prior": the model's own prior. A model whose spec's sampler is "prior" draws from it
  (`contract.prior_codes`: a VAE's N(0, I), a VampPrior's mixture). A "quantised" model's
  prior is a categorical prior fitted to its training codes (`CategoricalCodes`): for each
  position, the codebook vectors seen there and how often. Its limits: positions are drawn
  independently (the VQ-VAE paper, van den Oord et al. 2017, fits an autoregressive
  PixelCNN over them instead, which keeps the digit's shape together), and only vectors
  seen in training can come out.
- "gmm": the ex-post density estimate of Ghosh et al., "From Variational to Deterministic
  Autoencoders" (ICLR 2020): a Gaussian mixture with full covariances fitted to the training
  codes (scikit-learn's EM), sampled here with torch (`GaussianMixture`). The default of a
  model without a prior.
- "gaussian": one Gaussian with the training codes' mean and full covariance (`Gaussian`),
  sampled through its eigen-decomposition, so a singular covariance is fine.

DEFAULT_RULE says in words which sampler a run uses when none is named (`default_sampler`);
the pages quote it, and tests/test_docs_truth.py checks both against each other.

A fitted density is a frozen dataclass of float tensors with `sample(n, generator)` -> (n, L),
`to_tensors()` / `from_tensors()` (for safetensors: no pickle) and `info()` (JSON numbers);
DENSITIES maps the name it is saved under to its class. The same generator seed gives the
same codes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from ..errors import AelabError
from .contract import code_groups, prior_codes, spec

SAMPLERS = {
    "prior": "the model's own prior (a VAE's N(0, I)); for a quantised model a categorical "
             "prior fitted to its training codes, one position at a time",
    "gmm": "a Gaussian mixture (10 full-covariance components) fitted to the training codes "
           "(Ghosh et al., ICLR 2020)",
    "gaussian": "one Gaussian with the training codes' mean and full covariance",
}
# What `aelab sample`, `aelab explore`, run.sample() and the explorer draw from by default.
DEFAULT_RULE = "the model's prior where it has one, else `gmm`"
FIT_SEED = 0  # the seed of every fit (k-means initialisation, the subset of codes)
GMM_COMPONENTS = 10  # as Ghosh et al.
# EM's cost grows with N * K * L^2 per step: for codes of 64 numbers a step over 10,000 of
# them takes about 0.1 s on one CPU core, and 100 steps (scikit-learn's default) suffice
GMM_MAX_CODES = 10_000
GMM_REG_COVAR = 1e-6  # added to each covariance's diagonal, relative to the codes' variance
GMM_MAX_ITER = 100
MAX_VECTORS = 65_536  # distinct vectors a categorical prior keeps; more: not quantised codes


# --- which samplers a model offers -----------------------------------------------------


def _prior_source(model: nn.Module) -> str | None:
    """Where "prior" codes come from: "fitted" (a quantised model's categorical prior),
    "model" (its spec's prior, prior_codes) or None (it has no prior)."""
    s = spec(model)
    if s.kind == "quantised":
        return "fitted"
    return "model" if s.sampler == "prior" else None


def offered(model: nn.Module) -> tuple[str, ...]:
    """The samplers this model offers, its default first: ("prior", "gmm", "gaussian") for
    a model with a prior (its spec's, or a quantised model's fitted one), else ("gmm",
    "gaussian")."""
    names = ("gmm", "gaussian")
    return names if _prior_source(model) is None else ("prior", *names)


def default_sampler(model: nn.Module) -> str:
    return offered(model)[0]


def check_sampler(model: nn.Module, name: str | None) -> str:
    """The sampler to use: `name`, or the model's default for None; AelabError naming the
    samplers the model offers for one it has not."""
    choices = offered(model)
    if name is None:
        return choices[0]
    if name in choices:
        return name
    if name == "prior":
        why = (f"{type(model).__name__} has no prior (its model_spec sampler is "
               f"{spec(model).sampler!r})")
    else:
        why = f"there is no sampler {name!r}"
    raise AelabError(f"{why}; this model offers the samplers {', '.join(choices)}")


def is_fitted(model: nn.Module, name: str) -> bool:
    """Whether sampler `name` is a density fitted to training codes (else the model's own
    prior, which needs no data)."""
    return not (name == "prior" and _prior_source(model) == "model")


def fit_settings(model: nn.Module, name: str) -> dict:
    """What a fit of sampler `name` depends on besides the codes (recorded with it)."""
    if name == "gmm":
        return {"components": GMM_COMPONENTS, "max_codes": GMM_MAX_CODES, "seed": FIT_SEED,
                "reg_covar": GMM_REG_COVAR, "max_iter": GMM_MAX_ITER}
    if name == "prior":
        return {"code_groups": code_groups(model)}
    return {}


def fit_subset(name: str, n: int) -> torch.Tensor | None:
    """Which of n training codes a fit of sampler `name` uses: the indices of a seeded
    random GMM_MAX_CODES of them for "gmm" where there are more (fit_gmm picks the same
    ones), else None: all. A caller may encode just those images."""
    return _subset(n, GMM_MAX_CODES, FIT_SEED) if name == "gmm" else None


def _subset(n: int, most: int, seed: int) -> torch.Tensor | None:
    if n <= most:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:most]


def fit(model: nn.Module, name: str, codes: torch.Tensor):
    """The density of fitted sampler `name` over the model's training codes (N, L) (for
    "gmm", all of them or those `fit_subset` picks: the same fit)."""
    if name == "gmm":
        return fit_gmm(codes, GMM_COMPONENTS, seed=FIT_SEED, max_codes=GMM_MAX_CODES,
                       reg_covar=GMM_REG_COVAR, max_iter=GMM_MAX_ITER)
    if name == "gaussian":
        return fit_gaussian(codes)
    if name == "prior" and _prior_source(model) == "fitted":
        return fit_categorical(codes, code_groups(model))
    raise AelabError(f"sampler {name!r} of {type(model).__name__} is not fitted to codes")


def draw(model: nn.Module, density, n: int, seed: int) -> torch.Tensor:
    """n codes (n, L) float32 on the CPU: from `density` (a fitted one), or from the model's
    own prior where density is None. The same seed gives the same codes."""
    g = torch.Generator().manual_seed(seed)
    codes = prior_codes(model, n, g) if density is None else density.sample(n, g)
    return codes.float()


# --- the densities ---------------------------------------------------------------------


class _Tensors:
    """to_tensors / from_tensors for a dataclass whose fields are all tensors."""

    name: ClassVar[str]

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).detach().cpu().contiguous() for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]):
        names = [f.name for f in fields(cls)]
        if set(tensors) != set(names):
            raise AelabError(f"a saved {cls.name} sampler holds the tensors {sorted(tensors)}, "
                             f"not {sorted(names)}")
        density = cls(**{k: tensors[k] for k in names})
        density.check()
        return density

    def check(self) -> None:
        pass


def _shape_error(name: str, what: str) -> AelabError:
    return AelabError(f"a saved {name} sampler is inconsistent: {what}")


@dataclass(frozen=True, eq=False)
class GaussianMixture(_Tensors):
    """K Gaussians over codes of L numbers; component k has probability weights[k], mean
    means[k] and covariance chol[k] @ chol[k].T."""

    weights: torch.Tensor  # (K,) float64, summing to 1
    means: torch.Tensor  # (K, L) float64
    chol: torch.Tensor  # (K, L, L) float64, lower-triangular Cholesky factors
    name: ClassVar[str] = "gmm"

    def check(self) -> None:
        k, dim = self.means.shape
        if self.weights.shape != (k,) or self.chol.shape != (k, dim, dim):
            raise _shape_error(self.name, f"weights {tuple(self.weights.shape)}, means "
                               f"{tuple(self.means.shape)}, chol {tuple(self.chol.shape)}")

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        z = self.means[comp]  # (n, L)
        for k in comp.unique().tolist():  # z = mean + chol @ eps, one component at a time
            rows = comp == k
            z[rows] += eps[rows] @ self.chol[k].T
        return z

    def info(self) -> dict:
        return {"components": int(self.weights.shape[0])}


@dataclass(frozen=True, eq=False)
class Gaussian(_Tensors):
    """One Gaussian as its eigen-decomposition: covariance directions.T diag(variances)
    directions."""

    mean: torch.Tensor  # (L,) float64
    directions: torch.Tensor  # (L, L) float64, orthonormal rows, largest variance first
    variances: torch.Tensor  # (L,) float64, >= 0
    name: ClassVar[str] = "gaussian"

    def check(self) -> None:
        dim = self.mean.shape[0]
        if self.directions.shape != (dim, dim) or self.variances.shape != (dim,):
            raise _shape_error(self.name, f"mean {tuple(self.mean.shape)}, directions "
                               f"{tuple(self.directions.shape)}")

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        eps = torch.randn(n, len(self.mean), generator=generator, dtype=torch.float64)
        return self.mean + (eps * self.variances.sqrt()) @ self.directions  # (n, L)

    def info(self) -> dict:
        return {"components": 1}


@dataclass(frozen=True, eq=False)
class CategoricalCodes(_Tensors):
    """A categorical prior over quantised codes of G positions: the code of an image is G
    vectors of D numbers side by side (L = G * D), each drawn independently from the
    vectors seen at that position in training, as often as they were seen there."""

    vectors: torch.Tensor  # (V, D): the distinct vectors seen at any position
    counts: torch.Tensor  # (G, V) float64: how often each was seen at each position
    name: ClassVar[str] = "categorical"

    def check(self) -> None:
        if self.counts.dim() != 2 or self.counts.shape[1] != self.vectors.shape[0]:
            raise _shape_error(self.name, f"vectors {tuple(self.vectors.shape)}, counts "
                               f"{tuple(self.counts.shape)}")

    @property
    def frequencies(self) -> torch.Tensor:
        """(G, V): each position's probabilities over the vectors."""
        return self.counts / self.counts.sum(1, keepdim=True)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.multinomial(self.counts, n, replacement=True, generator=generator)  # (G, n)
        return self.vectors[idx.T].reshape(n, -1)  # (n, G, D) -> (n, G * D)

    def info(self) -> dict:
        return {"components": int(self.vectors.shape[0]), "positions": int(self.counts.shape[0])}


DENSITIES = {cls.name: cls for cls in (GaussianMixture, Gaussian, CategoricalCodes)}


# --- fitting ---------------------------------------------------------------------------


def _check_codes(codes: torch.Tensor, least: int = 1) -> torch.Tensor:
    if codes.dim() != 2 or len(codes) < least:
        raise AelabError(f"fitting a sampler needs at least {least} codes (N, L); got shape "
                         f"{tuple(codes.shape)}")
    if not torch.isfinite(codes).all():
        raise AelabError("the training codes hold NaN or infinite values; no sampler can be "
                         "fitted to them")
    return codes.detach().cpu()


def fit_gaussian(codes: torch.Tensor) -> Gaussian:
    """The Gaussian with the codes' mean and full covariance (N - 1 normalised), in float64."""
    c = _check_codes(codes).double()
    mean = c.mean(0)
    centred = c - mean
    cov = centred.T @ centred / max(len(c) - 1, 1)  # (L, L)
    var, vecs = torch.linalg.eigh(cov)  # ascending
    order = var.argsort(descending=True)
    return Gaussian(mean, vecs[:, order].T.contiguous(), var[order].clamp(min=0))


def fit_gmm(codes: torch.Tensor, components: int = GMM_COMPONENTS, *, seed: int = FIT_SEED,
            max_codes: int = GMM_MAX_CODES, n_init: int = 1,
            reg_covar: float = GMM_REG_COVAR, max_iter: int = GMM_MAX_ITER) -> GaussianMixture:
    """A mixture of `components` full-covariance Gaussians fitted to codes (N, L) by
    scikit-learn's EM (k-means initialisation, `seed`), on a random `max_codes` of them
    where there are more. The codes are centred and scaled to a mean variance of 1 for the
    fit, so `reg_covar` is relative to their spread."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as EM
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    c = _check_codes(codes, least=2).double()
    keep = _subset(len(c), max_codes, seed)
    c = c if keep is None else c[keep]
    centre = c.mean(0)
    scale = (c - centre).square().mean().sqrt().item()  # the root of the mean variance
    scale = scale if scale > 0 and math.isfinite(scale) else 1.0
    em = EM(min(components, len(c)), covariance_type="full", reg_covar=reg_covar,
            max_iter=max_iter, n_init=n_init, random_state=seed)
    # one BLAS thread: EM's small matrix products gain nothing from more, and on busy
    # cores threads waiting for each other made a 0.3 s fit take 20 s (2-core AMD EPYC)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter steps are still a fit
        em.fit(((c - centre) / scale).numpy())
    chol = torch.linalg.cholesky(torch.from_numpy(em.covariances_))  # (K, L, L)
    return GaussianMixture(torch.from_numpy(em.weights_).clone(),
                           torch.from_numpy(em.means_) * scale + centre, chol * scale)


def fit_categorical(codes: torch.Tensor, groups: int) -> CategoricalCodes:
    """The categorical prior of quantised codes (N, L) made of `groups` vectors of L/groups
    numbers side by side: the distinct vectors seen, and how often at each position."""
    c = _check_codes(codes)
    n, dim = c.shape
    if groups < 1 or dim % groups:
        raise AelabError(f"codes of {dim} numbers cannot be split into {groups} codebook vectors")
    # e.g. N=2 images, G=3 positions: rows 0..5 are (image 0, pos 0), (0, 1), (0, 2), (1, 0), ...
    flat = c.reshape(n * groups, dim // groups)  # (N * G, D)
    vectors, which = torch.unique(flat, dim=0, return_inverse=True)  # (V, D), (N * G,)
    if len(vectors) > MAX_VECTORS:
        raise AelabError(f"the training codes hold {len(vectors):,} distinct vectors of "
                         f"{dim // groups} numbers (over {MAX_VECTORS:,}): they do not look "
                         "like codebook vectors of a quantised model")
    position = torch.arange(n * groups) % groups  # (N * G,)
    counts = torch.zeros(groups, len(vectors), dtype=torch.float64)
    counts.index_put_((position, which), torch.ones(n * groups, dtype=torch.float64),
                      accumulate=True)
    return CategoricalCodes(vectors.contiguous(), counts)
