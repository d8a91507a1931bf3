"""Exact-likelihood baselines for binarized MNIST: the anchors beside a VAE's bound.

A VAE's test negative log-likelihood (nats per image) is only a bound, estimated by
importance sampling; these models give log p(x) exactly, so a table can say how far the
VAE is from simple density models fitted and scored in the same run on the same images.

Models, over the D = 784 binary pixels x in {0, 1}^D:

- independent pixels (K = 1): p(x) = prod_d p_d^x_d (1 - p_d)^(1 - x_d);
- a mixture of K products of Bernoullis (Bishop 2006, PRML sec. 9.3.3):
  p(x) = sum_k pi_k prod_d p_kd^x_d (1 - p_kd)^(1 - x_d), fitted by EM.

Both are fitted as MAP estimates rather than maximum likelihood, so that no pixel
probability is exactly 0 or 1 (one unseen pixel value in a test image would otherwise
cost infinitely many nats): a symmetric Beta(1 + alpha, 1 + alpha) prior on every p_kd
and a symmetric Dirichlet(1 + alpha) prior on the weights pi give the M step

    p_kd = (sum_n r_nk x_nd + alpha) / (N_k + 2 alpha),  pi_k = (N_k + alpha) / (N + K alpha),

with N_k = sum_n r_nk (alpha = 1 is Laplace's add-one rule). EM on this penalised
objective, log-likelihood + log prior, never decreases it (Dempster, Laird & Rubin 1977).

Protocol: the training images are binarized once (Bernoulli of the grey values) with
TRAIN_BINARIZE_SEED, and the 10,000 test images once with data.batches.BINARIZE_TEST_SEED,
through the same binarize_u8 that `aelab evaluate` uses for a binarized run: the test
images are the very 0/1 images the VAE bounds are computed on. The scores are exact
(no importance samples). A published figure (PUBLISHED) used another static binarization
(Salakhutdinov & Murray 2008), another train/validation split, and model selection on a
validation set, so it is a guide, not a like-for-like comparison.
"""

from __future__ import annotations

import time

import torch

from ..data import load_dataset
from ..data.batches import BINARIZE_TEST_SEED, binarize_u8
from ..errors import AelabError

# The training images' one static binarization; any seed but BINARIZE_TEST_SEED (20160201).
TRAIN_BINARIZE_SEED = 20080601
COMPONENTS = (1, 10, 100)
BINARIZE = "static-train/fixed-test"

# (label, test NLL in nats, protocol). From Larochelle & Murray, "The Neural Autoregressive
# Distribution Estimator", AISTATS 2011, results table for binarized MNIST (repeated in
# Germain et al. 2015, MADE, and Uria et al. 2016, NADE, JMLR): a mixture of multivariate
# Bernoullis scores 137.64 nats. The number of components is not restated here: check the
# paper before quoting one.
PUBLISHED = [
    ("mixture of Bernoullis (Larochelle & Murray 2011)", 137.64,
     "binarized MNIST of Salakhutdinov & Murray 2008 (one fixed stochastic binarization), "
     "exact NLL on the 10,000 test images"),
]


# --- checks ---------------------------------------------------------------------------


def _check_binary(x, what: str) -> torch.Tensor:
    """x as a (N, D) floating tensor of 0s and 1s, or an AelabError saying what is wrong."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise AelabError(f"{what}: expected a (N, D) tensor of 0s and 1s, got {shape}; "
                         "flatten images with x.flatten(1)")
    if not x.is_floating_point():
        x = x.double()
    if not ((x == 0) | (x == 1)).all():
        bad = x[(x != 0) & (x != 1)][:3].tolist()
        raise AelabError(f"{what}: the pixels must be exactly 0 or 1, found {bad}; "
                         "binarize first (data.batches.binarize_u8, then divide by 255)")
    return x


def _check_args(n: int, components: int, iters: int, alpha: float) -> None:
    if components < 1:
        raise AelabError(f"components={components}: a mixture needs at least 1 component")
    if components > n:
        raise AelabError(f"components={components} but only {n} training images: each "
                         "component starts from a different training image")
    if iters < 0:
        raise AelabError(f"iters={iters}: give 0 or more EM iterations")
    if not alpha > 0:
        raise AelabError(f"alpha={alpha}: the smoothing must be > 0, else a pixel "
                         "probability can be exactly 0 or 1 and a test image cost infinity")


# --- the model ------------------------------------------------------------------------


def _params(counts: torch.Tensor, nk: torch.Tensor, alpha: float) -> dict:
    """The M step (MAP, see the module docstring) from sufficient statistics:
    counts (K, D) = sum_n r_nk x_nd and nk (K,) = sum_n r_nk, in float64."""
    p = (counts + alpha) / (nk[:, None] + 2 * alpha)  # (K, D), strictly inside (0, 1)
    w = (nk + alpha) / (nk.sum() + len(nk) * alpha)  # (K,)
    return {"log_p": p.log(), "log_1mp": torch.log1p(-p), "log_weights": w.log()}


def _log_joint(model: dict, x: torch.Tensor) -> torch.Tensor:
    """log pi_k + log p(x | k) for images x (B, D): (B, K) in x's dtype. One matrix product:
    x @ log p.T + (1 - x) @ log(1 - p).T = x @ (log p - log(1 - p)).T + sum_d log(1 - p)."""
    lp, l1 = model["log_p"].to(x.dtype), model["log_1mp"].to(x.dtype)
    return torch.addmm(l1.sum(1) + model["log_weights"].to(x.dtype), x, (lp - l1).T)


def _log_prior(model: dict, alpha: float) -> float:
    """log Beta(1 + alpha, 1 + alpha) of every p_kd + log Dirichlet(1 + alpha) of the
    weights, up to their constants: what EM's MAP objective adds to the log-likelihood."""
    return alpha * ((model["log_p"] + model["log_1mp"]).sum() + model["log_weights"].sum()).item()


def _e_step(model: dict, x: torch.Tensor, batch: int):
    """Sufficient statistics at the current parameters, in chunks of `batch` images so the
    (B, K) responsibilities stay small: (counts (K, D), nk (K,), total log-likelihood)."""
    k, d = model["log_p"].shape
    counts = torch.zeros(k, d, dtype=torch.float64)
    nk = torch.zeros(k, dtype=torch.float64)
    total = 0.0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        joint = _log_joint(model, xb)  # (B, K)
        lse = torch.logsumexp(joint, 1)  # (B,) log p(x)
        r = (joint - lse[:, None]).exp_()  # (B, K) responsibilities
        counts += (r.T @ xb).double()
        nk += r.sum(0).double()
        total += lse.double().sum().item()
    return counts, nk, total


def fit_mixture(train_bin: torch.Tensor, components: int, *, iters: int = 30, seed: int = 0,
                alpha: float = 1.0, batch: int = 10_000, log=print) -> dict:
    """A mixture of `components` products of Bernoullis, MAP-fitted by EM on binary
    training images train_bin (N, D) of 0s and 1s (any D; float32 runs the E step faster,
    float64 more exactly).

    Initialisation (deterministic in `seed`): component k is the M step of one training
    image, drawn without replacement, alone (p_k = (x + alpha) / (1 + 2 alpha), equal
    weights). components=1 is the independent-pixel model, in closed form (no EM).

    Returns {"log_p", "log_1mp": (K, D), "log_weights": (K,)} as float64 tensors, and
    "history": the mean training log-likelihood per image (nats) at the initial
    parameters and after each EM iteration (the last one is the returned model's),
    "objective": the same plus the log prior / N, which EM never decreases.
    """
    x = _check_binary(train_bin, "training images")
    n = len(x)
    _check_args(n, components, iters, alpha)
    if components == 1:
        model = _params(x.double().sum(0, keepdim=True), torch.tensor([float(n)]), alpha)
        iters = 0
    else:
        gen = torch.Generator().manual_seed(seed)
        seeds = torch.randperm(n, generator=gen)[:components]
        model = _params(x[seeds].double(), torch.ones(components, dtype=torch.float64), alpha)
    history, objective = [], []
    for it in range(iters + 1):
        counts, nk, total = _e_step(model, x, batch)
        history.append(total / n)
        objective.append((total + _log_prior(model, alpha)) / n)
        if it % 10 == 0 or it == iters:
            log(f"  K={components} EM iteration {it}/{iters}: train log-likelihood "
                f"{history[-1]:.2f} nats/image")
        if it < iters:
            model = _params(counts, nk, alpha)
    return {**model, "history": history, "objective": objective, "alpha": alpha,
            "iters": iters, "seed": seed}


@torch.no_grad()
def mixture_nll(model: dict, test_bin: torch.Tensor, batch: int = 10_000) -> torch.Tensor:
    """Exact -log p(x) in nats of each binary image x in test_bin (N, D): (N,) float64."""
    x = _check_binary(test_bin, "test images").double()
    d = model["log_p"].shape[1]
    if x.shape[1] != d:
        raise AelabError(f"test images have {x.shape[1]} pixels, the model {d}")
    out = [-torch.logsumexp(_log_joint(model, x[i : i + batch]), 1)
           for i in range(0, len(x), batch)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def n_params(components: int, pixels: int) -> int:
    """Free parameters: K * D pixel probabilities and K - 1 weights."""
    return components * pixels + components - 1


# --- the baselines table --------------------------------------------------------------


def _binary(images_u8: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> one static binarization as float32 (N, 784) of 0/1."""
    return binarize_u8(images_u8, seed).flatten(1).float().div_(255.0)


def bernoulli_baselines(*, dataset: str = "mnist", data_dir=None, options: dict | None = None,
                        components=COMPONENTS, iters: int = 30, alpha: float = 1.0,
                        seed: int = 0, train_seed: int = TRAIN_BINARIZE_SEED,
                        limit: int | None = None, log=print) -> list[dict]:
    """Fit each mixture in `components` on the training images binarized once with
    `train_seed` (the first `limit` of them, if given) and score it exactly on the test
    images binarized with BINARIZE_TEST_SEED, as `aelab evaluate` does for a binarized run.
    One row per model; nll_nats is the mean over the test images."""
    if train_seed == BINARIZE_TEST_SEED:
        raise AelabError(f"train_seed {train_seed} is the test set's binarization seed: "
                         "the training images would share the test images' noise")
    train_u8, _ = load_dataset(dataset, "train", data_dir=data_dir, options=options, log=log)
    test_u8, _ = load_dataset(dataset, "test", data_dir=data_dir, options=options, log=log)
    train = _binary(train_u8[:limit] if limit is not None else train_u8, train_seed)
    test = _binary(test_u8, BINARIZE_TEST_SEED)
    rows = []
    for k in components:
        t0 = time.perf_counter()
        model = fit_mixture(train, int(k), iters=iters, seed=seed, alpha=alpha, log=log)
        seconds = time.perf_counter() - t0
        name = "independent-pixels" if k == 1 else f"bernoulli-mixture-{k}"
        rows.append({
            "name": name, "model": name, "components": int(k),
            "params": n_params(int(k), train.shape[1]),
            "nll_nats": mixture_nll(model, test).mean().item(),
            "train_nll_nats": -model["history"][-1], "train_seconds": seconds,
            "iw_samples": None, "binarize": BINARIZE, "train_seed": train_seed,
            "test_seed": BINARIZE_TEST_SEED, "n_train": len(train), "n_test": len(test),
            "em_iters": model["iters"], "alpha": alpha, "dataset": dataset,
        })
        log(f"{name}: {rows[-1]['nll_nats']:.2f} nats/test image (exact), {seconds:.1f} s")
    return rows
