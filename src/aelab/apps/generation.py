"""Scoring generated images: the Fréchet distance of samples to the test set.

The protocol of Heusel et al. (NeurIPS 2017), as the MNIST papers use it: N_SAMPLES = 10,000
samples against the 10,000 test images, each set summarised by the mean and covariance of
its features, and the Fréchet distance between the two Gaussians (aelab.apps.frechet, in
float64). Lower is better; 0 only for identical statistics. Two feature networks:

- "classifier" (the default): the 128 penultimate-layer features of aelab's own MNIST
  classifier (aelab.apps.classifier: shipped with the package, its sha256 checked at load).
  Scores 10,000 images in seconds on a CPU. Its numbers are not on the scale of the papers'
  FID: compare them only with each other.
- "inception": Inception-v3's 2048 pool3 features, the papers' FID, where the optional extra
  `aelab[fid]` is installed (aelab.apps.inception). Minutes per 10,000 images on a CPU.

Beside a model's samples, the same run measures the anchors every generation table needs:

- the floor: 10,000 training images (a seeded random subset) against the test set. Two
  samples of the data itself are this far apart; no model can be expected below it.
- PCA+GMM: the training images' PCA codes at the same code size, the same GMM sampler the
  models use (aelab.models.samplers.fit_gmm), decoded linearly and clipped to [0, 1]. The
  simple baseline every generative model must beat.
- independent pixels: each pixel a Bernoulli draw with its mean over the training images.
  The ceiling: what knowing nothing but the mean image gives.

Samples are the decoder's mean images (never binarized), as in Ghosh et al. (2020), rounded
to 8-bit grey levels as saving them to PNG files would (`to_uint8`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from .. import data as data_mod
from .. import pca
from .._io import atomic_write_bytes, atomic_write_json
from ..data.batches import to_float
from ..errors import AelabError
from ..models import samplers
from ..runtime import hardware
from .classifier import CLASSIFIER_SHA256, classifier_features
from .frechet import frechet_distance, gaussian_stats
from .inception import INCEPTION_SHA256, inception_available, inception_features

N_SAMPLES = 10_000  # samples scored against the 10,000 test images
SAMPLE_SEED = 0  # the seed of the samples' codes
FLOOR_SEED = 0  # the seed of the 10,000 training images of the floor
BASELINE_SEED = 0  # the seed of the baselines' random draws
NETWORKS = ("classifier", "inception")
DATASET = "mnist"  # the classifier knows MNIST digits only


def check_networks(networks) -> tuple[str, ...]:
    """The feature networks asked for, checked: known names, and `inception` installed."""
    networks = tuple(dict.fromkeys(networks))
    unknown = [n for n in networks if n not in NETWORKS]
    if unknown or not networks:
        raise AelabError(f"feature network {', '.join(unknown) or '(none)'}: choose from "
                         f"{', '.join(NETWORKS)}")
    if "inception" in networks and not inception_available():
        raise AelabError("the inception feature network needs the optional extra: "
                         "pip install 'aelab[fid]'")
    return networks


def features(images: torch.Tensor, network: str) -> np.ndarray:
    """Features (N, D) float64 of float images (N, 28, 28) or (N, 1, 28, 28) in [0, 1]."""
    if network == "classifier":
        return classifier_features(images)
    if network == "inception":
        return inception_features(images)
    raise AelabError(f"feature network {network!r}: choose from {', '.join(NETWORKS)}")


_TEST_STATS: dict = {}  # (network, data folder) -> (mu, sigma) of the test images, per process
NETWORK_SHA256 = {"classifier": CLASSIFIER_SHA256, "inception": INCEPTION_SHA256}


def test_statistics(network: str, *, data_dir=None, log=print) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the features of the 10,000 MNIST test images: once per
    process, and kept in the dataset's folder for the network's weights (Inception's take
    about 20 CPU minutes)."""
    key = (network, str(data_dir))
    if key not in _TEST_STATS:
        folder = Path(data_mod.ensure_dataset(DATASET, data_dir, log=log))
        checksum = data_mod.dataset_info(DATASET, data_dir=data_dir, log=log)["checksum"]
        path = folder / f"fid-test-{network}.safetensors"
        meta = {"network": network, "weights_sha256": NETWORK_SHA256[network],
                "dataset_checksum": str(checksum)}
        _TEST_STATS[key] = _read_stats(path, meta)
        if _TEST_STATS[key] is None:
            test_x, _ = data_mod.load_dataset(DATASET, "test", data_dir=data_dir, log=log)
            mu, sigma = gaussian_stats(features(test_x, network))
            atomic_write_bytes(path, st_save({"mu": torch.from_numpy(mu),
                                              "sigma": torch.from_numpy(sigma)}, metadata=meta))
            _TEST_STATS[key] = (mu, sigma)
    return _TEST_STATS[key]


def _read_stats(path: Path, meta: dict):
    """(mu, sigma) kept in `path` for these weights and data, else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}) != meta:
                return None
            return f.get_tensor("mu").numpy(), f.get_tensor("sigma").numpy()
    except Exception:  # a damaged file is computed again
        return None


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images as 8-bit grey levels (N, 28, 28), rounded: what saving samples as PNG files
    (the papers' protocol) keeps of them. uint8 images pass through."""
    if images.dtype == torch.uint8:
        return images.reshape(len(images), 28, 28)
    return images.reshape(len(images), 28, 28).clamp(0, 1).mul(255).round().to(torch.uint8)


def distances(images: torch.Tensor, networks=("classifier",), *, data_dir=None,
              log=print) -> dict[str, float]:
    """{network: Fréchet distance of `images` to the test images}: float images in [0, 1]
    (rounded to 8 bits first) or uint8, (N, 28, 28) or (N, 1, 28, 28)."""
    if len(images) < 2:
        raise AelabError("a Fréchet distance needs at least 2 images (the protocol: 10,000)")
    images = to_uint8(images)
    out = {}
    for net in networks:
        mu, sigma = gaussian_stats(features(images, net))
        out[net] = frechet_distance(mu, sigma, *test_statistics(net, data_dir=data_dir, log=log))
    return out


def _check_run(run) -> None:
    if run.config.dataset != DATASET:
        raise AelabError(f"{run.run_dir} was trained on {run.config.dataset}: the generation "
                         "protocol scores MNIST samples against the MNIST test set (its feature "
                         "network is an MNIST classifier)")


def eval_file(run_dir, checkpoint: str = "best") -> Path:
    """Where a run's generation scores are kept: RUN_DIR/eval-generation.json (the best
    checkpoint) or eval-generation-<checkpoint>.json."""
    suffix = "" if checkpoint == "best" else f"-{checkpoint}"
    return Path(run_dir) / f"eval-generation{suffix}.json"


def score_run(run, *, samplers_=None, n: int = N_SAMPLES, seed: int = SAMPLE_SEED,
              networks=("classifier",), data_dir=None, log=print) -> dict:
    """The Fréchet distance of n samples of a loaded run (aelab.load) to the test images,
    per sampler and network, kept in `eval_file`: a later call computes only what is
    missing there for the same weights, n and seed. `samplers_`: the samplers to score
    (default: "prior" where the run has one, and "gmm"). Returns the file's contents:
    {"key", "distances": {sampler: {network: distance}}, "seconds": {sampler: {network:
    seconds}}, "hardware", ...}."""
    _check_run(run)
    networks = check_networks(networks)
    names = list(dict.fromkeys(samplers_ or [s for s in ("prior", "gmm") if s in run.samplers]))
    for s in names:
        samplers.check_sampler(run.model, s)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise AelabError(f"--n-samples {n!r}: give at least 2 (the protocol: {N_SAMPLES:,})")
    key = {"checkpoint": run.checkpoint, "epoch": run.meta.get("epoch"),
           "weights_sha256": run.weights_id, "n_samples": n, "seed": seed}
    path = eval_file(run.run_dir, run.checkpoint)
    kept = _read_json(path)
    kept = kept if kept.get("key") == key else {"key": key}
    dist, secs = kept.setdefault("distances", {}), kept.setdefault("seconds", {})
    for s in names:
        missing = [net for net in networks if net not in dist.get(s, {})]
        if not missing:
            continue
        t0 = time.perf_counter()
        images = torch.from_numpy(run.sample(n, sampler=s, seed=seed))
        if not isinstance(secs.get(s, {}), dict):  # files before per-network times: classifier
            secs[s] = {"classifier": secs[s]}
        for net in missing:  # the sampling (and a first fit) counts with the first network
            dist.setdefault(s, {}).update(distances(images, [net], data_dir=data_dir, log=log))
            secs.setdefault(s, {})[net] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            kept.update(model=run.config.model, latent_dim=run.latent_dim, hardware=hardware(),
                        protocol=PROTOCOL)
            atomic_write_json(path, kept)
        log(f"  {s}: " + "  ".join(f"{net} {d:.3f}" for net, d in dist[s].items()))
    return {**kept, "distances": {s: dist[s] for s in names}}


PROTOCOL = (f"{N_SAMPLES:,} samples (decoder means) against the 10,000 MNIST test images; "
            "Fréchet distance between Gaussians fitted to features (Heusel et al. 2017)")


def _read_json(path: Path) -> dict:
    try:
        out = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


# --- the anchors -----------------------------------------------------------------------


def floor_images(*, n: int = N_SAMPLES, seed: int = FLOOR_SEED, data_dir=None, log=print) -> torch.Tensor:
    """n training images (a seeded random subset), float (n, 1, 28, 28)."""
    train_x, _ = data_mod.load_dataset(DATASET, "train", data_dir=data_dir, log=log)
    keep = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:n]
    return to_float(train_x[keep])


def pca_gmm_images(k: int = 16, *, n: int = N_SAMPLES, seed: int = BASELINE_SEED, data_dir=None,
                   log=print) -> torch.Tensor:
    """n samples of the PCA+GMM baseline: the GMM sampler (samplers.fit_gmm, the models'
    settings) fitted to the training images' k PCA codes, decoded linearly, clipped to
    [0, 1]: (n, 1, 28, 28)."""
    train_x, _ = data_mod.load_dataset(DATASET, "train", data_dir=data_dir, log=log)
    basis = pca.dataset_basis(DATASET, data_dir=data_dir, log=log)
    codes = torch.from_numpy(pca.codes(basis, train_x, k))
    density = samplers.fit_gmm(codes)
    z = density.sample(n, torch.Generator().manual_seed(seed)).double()  # (n, k)
    x = basis["mean"] + z @ basis["components"][:k]  # (n, 784)
    return x.clamp(0, 1).float().view(n, 1, 28, 28)


def bernoulli_images(*, n: int = N_SAMPLES, seed: int = BASELINE_SEED, data_dir=None,
                     log=print) -> torch.Tensor:
    """n images of independent pixels, each Bernoulli(its training mean): (n, 1, 28, 28)."""
    train_x, _ = data_mod.load_dataset(DATASET, "train", data_dir=data_dir, log=log)
    p = to_float(train_x).mean(0)  # (1, 28, 28)
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(p.expand(n, 1, 28, 28), generator=g)


ANCHORS = {
    "floor": ("training images (floor)", "10,000 training images, a seeded random subset",
              floor_images),
    "pca-gmm": ("PCA-16 + GMM", "PCA codes at 16 numbers, the models' GMM sampler, decoded "
                "linearly and clipped to [0, 1]", pca_gmm_images),
    "bernoulli": ("independent pixels (ceiling)", "each pixel Bernoulli(its training mean)",
                  bernoulli_images),
}


def score_anchor(name: str, networks=("classifier",), *, n: int = N_SAMPLES, k: int = 16,
                 data_dir=None, log=print) -> dict:
    """The Fréchet distance of one anchor (ANCHORS) to the test set, per network; `k`: the
    code size of PCA+GMM."""
    label, what, make = ANCHORS[name]
    t0 = time.perf_counter()
    extra = {"k": k} if name == "pca-gmm" else {}
    images = make(n=n, data_dir=data_dir, log=log, **extra)
    scores = distances(images, check_networks(networks), data_dir=data_dir, log=log)
    return {"name": name, "label": label, "what": what, "distances": scores, "n_samples": n,
            "seconds": round(time.perf_counter() - t0, 2), "hardware": hardware()}

