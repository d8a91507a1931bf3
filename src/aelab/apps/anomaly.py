"""`aelab anomaly`: anomaly detection with an autoencoder's RaPP score, on two protocols.

- one-class (the default, the literature's: Ruff et al. 2018, Deep SVDD): for each class d,
  train on the training images of d alone; the test images of the other nine classes are
  the anomalies (the positives).
- leave-one-out: for each class d, train on the other nine classes; the test images of d,
  never seen in training, are the anomalies.

Every test image (all 10,000) gets three scores from the trained model, and the table gives
the area under the ROC curve of each for telling anomalies from normal images (1.0: every
anomaly scores higher than every normal image; 0.5: chance), beside exact PCA fitted on the
same training images and scored by its squared error (PCA_K components: 16 for one-class, 8
for leave-one-out), in the same run:

- RaPP NAP (Kim et al., "RaPP: Novelty Detection with Reconstruction along Projection
  Pathway", ICLR 2020), the primary score. The image x and its reconstruction x^ = model(x)
  are both passed through the encoder; d(x) = concat_i (h_i(x) - h_i(x^)) over the pathway
  h_0 = x, h_1, ..., h_l = code. NAP(x) = ||((d(x) - mu) V) / S||^2, with mu the mean of d
  and D - mu = U S V^T the thin SVD of the differences of (a seeded random subset of at most
  NAP_FIT_IMAGES of) the training images of the normal classes; only the components with
  S_k > S_max * max(N, dim) * eps(float32) are kept (numpy's matrix_rank cutoff: below it a
  singular value is float32 rounding noise, and dividing by it would amplify that noise).
- squared reconstruction error (SSE, summed over the 784 pixels).
- RaPP SAP = sum_i ||h_i(x) - h_i(x^)||^2, the unnormalised version of NAP.

NAP is the declared primary score (summary["auc"], the first AUC column): it was fixed before
looking at any test result, and its normalisation is fitted on training images only, never on
test images or test labels. SSE and SAP are reported beside it so that its effect can be
read, not so that the best of the three can be picked afterwards.

The pathway: for a model whose `encoder` is an nn.Sequential (aelab's own: linear, conv, mlp,
convnet, vae, vae-mlp), h_1..h_(l-1) are the outputs of the encoder's children that are an
activation function (ReLU, GELU, Tanh, ...) or a block ending in one (convnet's
conv-norm-activation), caught with forward hooks while `model.encode(x)` runs, and h_l is
the code `model.encode(x)`; any other model (encode/decode only) has the pathway [x, code].
NAP's features are kept to at most NAP_MAX_DIM (2,600) numbers, so that the SVD stays within
a few tens of seconds on two CPU cores: while the layers add up to more, the largest (the earliest
among equals) is average-pooled to half its size, a (C, H, W) feature map spatially to
(C, ceil(H/2), ceil(W/2)), a flat layer to half its features; this depends on the layer
shapes alone, so it is the same for every image and run (summary["nap_layers"] records it;
conv: 784 + 16x7x7 + 32x4x4 + 64 = 2,144 numbers). SAP uses the layers unpooled.

Output folder (--out): holdout-D/ per class (a normal run folder, plus roc.png,
scores.png and anomaly.json), and anomaly.json + anomaly.md with the table of AUCs
(and roc_all.png when all ten classes are taken in turn).
"""

# matplotlib and scikit-learn are imported inside the functions that draw or score.

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import pca
from .._io import atomic_write_json, atomic_write_text
from ..config import TrainConfig
from ..data import dataset_info, load_dataset
from ..data.batches import reconstruction_sse, to_float
from ..errors import AelabError
from ..figures import save
from ..models.contract import encoder_layers
from ..runs import trained_on, train_seconds
from ..runtime import hardware
from ..train import train
from .explore import class_names

EPOCHS = 3
PROTOCOLS = ("one-class", "leave-one-out")
PCA_K = {"one-class": 16, "leave-one-out": 8}  # the PCA anchors of the results table
NAP_FIT_IMAGES = 10_000  # at most this many training images fit NAP's mean and SVD
# NAP's features at most: the thin SVD of 10,000 x 2,560 float32 took 26 s on two busy CPU
# cores (8,192 would take minutes); 2,600 keeps the Hinton-shaped mlp (784 + 1000 + 500 + 250
# + code) unpooled for codes up to 66
NAP_MAX_DIM = 2600
NAP_BATCH = 500
SCORE = ("RaPP NAP (Kim et al. 2020), the declared primary score: fixed before looking at any "
         "test result, its normalisation (mean and SVD of the pathway differences) fitted on "
         "training images of the normal classes only, never on test images or labels; squared "
         "error (auc_sse) and RaPP SAP (auc_sap) beside it")
# TrainConfig fields the protocol sets itself, and where a user sets them instead
PROTOCOL_FIELDS = {"model": "--model", "model_args": "--model-args or --latent-dim",
                   "dataset": "--dataset", "dataset_options": "--dataset-option",
                   "epochs": "--epochs", "seed": "--seed", "limit": "--limit",
                   "device": "--device", "exclude_digits": "--protocol and --holdout-digit"}
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
               nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
               nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid, nn.Tanhshrink)


# --- RaPP: reconstruction along the projection pathway (Kim et al. 2020) --------------


def _ends_in_activation(m: nn.Module) -> bool:
    """An activation function, or a Sequential block that ends in one (conv-norm-act)."""
    if isinstance(m, ACTIVATIONS):
        return True
    return isinstance(m, nn.Sequential) and len(m) > 0 and _ends_in_activation(m[-1])


def _device(model) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def pathway(model, x: torch.Tensor) -> list[torch.Tensor]:
    """RaPP's projection pathway of a batch x (B, 1, 28, 28): [h_0 = x, h_1, ..., code],
    each (B, ...) float32. h_1.. are the outputs of the `encoder` Sequential's children that
    end in an activation, caught while `model.encode(x)` runs; without such an encoder (or
    if encode never runs it) the pathway is [x, code]."""
    blocks = [m for m in encoder_layers(model) if _ends_in_activation(m)]
    hidden: list[torch.Tensor] = []

    def keep(_module, _inputs, out):
        hidden.append(out.detach().float().clone())  # a copy: a later in-place op cannot change it

    handles = [m.register_forward_hook(keep) for m in blocks]
    try:
        code = model.encode(x)
    finally:
        for h in handles:
            h.remove()
    if not torch.is_tensor(code):
        raise AelabError(f"RaPP needs model.encode(x) to return a tensor (the code); "
                         f"{type(model).__name__}.encode returned {type(code).__name__}")
    return [x.float(), *hidden, code.float()]


def _reconstruct(model, x: torch.Tensor) -> torch.Tensor:
    """model(x) as float32 in the shape of x (B, 1, 28, 28): the second input of the pathway."""
    out = model(x)
    if not torch.is_tensor(out) or out.numel() != x.numel():
        what = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise AelabError(f"RaPP passes the reconstruction back through the encoder, but "
                         f"{type(model).__name__}(x) of x {tuple(x.shape)} returned {what}")
    return out.float().reshape(x.shape)


def pool_plan(shapes: list[tuple[int, ...]], max_dim: int = NAP_MAX_DIM) -> list[tuple[int, ...]]:
    """Per-layer feature shapes (no batch axis) adding up to at most `max_dim` numbers. A
    (C, H, W) map stays one while H*W > 1, anything else is flat (F,). While the total is
    over, the largest layer (the earliest among equals) is halved: spatially to
    (C, ceil(H/2), ceil(W/2)), or a flat one to ceil(F/2) features. Shapes alone decide."""
    plan = [s if len(s) == 3 and s[1] * s[2] > 1 else (math.prod(s),) for s in shapes]
    while sum(math.prod(s) for s in plan) > max_dim:
        i = max(range(len(plan)), key=lambda j: (math.prod(plan[j]), -j))
        s = plan[i]
        if math.prod(s) == 1:
            raise AelabError(f"RaPP: {len(plan)} layers cannot fit in {max_dim} features")
        if len(s) == 3:
            s = (s[0], -(-s[1] // 2), -(-s[2] // 2))
            plan[i] = s if s[1] * s[2] > 1 else (s[0],)
        else:
            plan[i] = (-(-s[0] // 2),)
    return plan


def _reduce(h: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A layer's batch (B, ...) average-pooled to `shape` (see pool_plan), flattened:
    (B, prod(shape)). Pooling is linear, so pooling the difference of two layers is the
    difference of the pooled layers."""
    if len(shape) == 3 and tuple(h.shape[1:]) != shape:
        h = F.adaptive_avg_pool2d(h, shape[1:])  # (B, C, H, W) -> (B, C, h, w)
    elif len(shape) == 1 and h[0].numel() != shape[0]:
        h = F.adaptive_avg_pool1d(h.reshape(len(h), 1, -1), shape[0])  # (B, 1, F) -> (B, 1, f)
    return h.reshape(len(h), -1)


@torch.inference_mode()
def rapp_features(model, images_u8: torch.Tensor, plan: list | None = None, *,
                  max_dim: int = NAP_MAX_DIM, batch_size: int = NAP_BATCH):
    """RaPP's pathway differences of uint8 images (N, 28, 28), in batches on the model's
    device, float32, model in eval mode. Returns d (N, dim) float32 on that device, its
    layers reduced to `plan` (made from the first batch's shapes when None: pool_plan);
    SAP (N,) float64 numpy, from the unreduced layers; and the plan."""
    if len(images_u8) == 0:
        raise AelabError("RaPP needs at least one image to score")
    was_training = model.training
    model.eval()
    dev = _device(model)
    ds, saps = [], []
    try:
        for i in range(0, len(images_u8), batch_size):
            x = to_float(images_u8[i : i + batch_size].to(dev))  # (B, 1, 28, 28)
            hx, hr = pathway(model, x), pathway(model, _reconstruct(model, x))
            diffs = [a - b for a, b in zip(hx, hr, strict=True)]
            if plan is None:
                plan = pool_plan([tuple(t.shape[1:]) for t in diffs], max_dim)
            if len(plan) != len(diffs):
                raise AelabError(f"RaPP: the encoder's pathway changed from {len(plan)} layers "
                                 f"to {len(diffs)} between batches; it must be the same for all")
            saps.append(sum(t.flatten(1).square().sum(1) for t in diffs).double().cpu())
            ds.append(torch.cat([_reduce(t, s) for t, s in zip(diffs, plan, strict=True)], 1))
    finally:
        model.train(was_training)
    return torch.cat(ds), torch.cat(saps).numpy(), plan


@dataclass(frozen=True)
class NAP:
    """NAP's normalisation, fitted on training differences d (N, dim): their mean (dim,),
    the right singular vectors kept (dim, r) and their singular values (r,)."""

    mean: torch.Tensor
    v: torch.Tensor
    s: torch.Tensor
    n_fit: int
    dim: int


def fit_nap(d: torch.Tensor) -> NAP:
    """Kim et al. (2020), Sec. 3.3: D - mean = U S V^T, the thin SVD in float32; keeps the
    components with S_k > S_max * max(N, dim) * eps(float32) (numpy's matrix_rank cutoff)."""
    d = d.float()
    n, dim = d.shape
    if n < 2:
        raise AelabError(f"NAP is fitted on the differences of at least 2 training images, got {n}")
    if not torch.isfinite(d).all():
        raise AelabError("RaPP: the model's activations on the training images are not finite "
                         "(NaN or inf); its training diverged: try a lower learning rate")
    mean = d.mean(0)
    centred = d - mean if d.device.type != "mps" else (d - mean).cpu()  # no SVD on Apple GPUs
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # (k,), (k, dim); k = min(N, dim)
    keep = s > s.max() * max(n, dim) * torch.finfo(torch.float32).eps
    return NAP(mean=mean, v=vh[keep].T.contiguous().to(d.device), s=s[keep].to(d.device),
               n_fit=n, dim=dim)


def nap_scores(fit: NAP, d: torch.Tensor) -> np.ndarray:
    """NAP(x) = ||((d(x) - mean) V) / S||^2 for d (N, dim): (N,) float64 numpy. With no
    component kept (every training difference the same) every score is 0."""
    z = (d.float() - fit.mean) @ fit.v / fit.s  # (N, r)
    return z.square().sum(1).double().cpu().numpy()


def rapp_scores(model, train_u8: torch.Tensor, test_u8: torch.Tensor, *, seed: int = 0,
                max_fit: int = NAP_FIT_IMAGES, max_dim: int = NAP_MAX_DIM):
    """NAP and SAP (N,) of every test image, NAP fitted on a random subset (seeded by
    `seed`) of at most `max_fit` training images; returns (nap, sap, facts about the fit)."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(train_u8), generator=g)[:max_fit].sort().values
    d_train, _, plan = rapp_features(model, train_u8[pick], max_dim=max_dim)
    fit = fit_nap(d_train)
    del d_train
    d_test, sap, _ = rapp_features(model, test_u8, plan)
    info = {"nap_fit_images": fit.n_fit, "nap_dim": fit.dim, "nap_rank": len(fit.s),
            "nap_layers": [list(s) for s in plan]}
    return nap_scores(fit, d_test), sap, info


# --- scoring --------------------------------------------------------------------------


def roc_auc(scores, is_positive) -> float:
    """Area under the ROC curve of `scores` (N,) for boolean labels (N,); ties count half."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(is_positive, dtype=bool)
    if y.all() or not y.any():
        raise AelabError(f"an AUC needs positives and negatives; got {int(y.sum())} positives "
                         f"among {len(y)} test images")
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def anomalies(labels, digit: int, protocol: str = "leave-one-out") -> np.ndarray:
    """Which test images are the anomalies: class `digit` (leave-one-out), or every class
    but `digit` (one-class)."""
    is_digit = np.asarray(labels) == digit
    return ~is_digit if protocol == "one-class" else is_digit


def score_holdout(scores, labels, digit: int, protocol: str = "leave-one-out") -> dict:
    """Summary of per-image anomaly scores (N,) for class `digit` under `protocol`."""
    s, y = np.asarray(scores, dtype=np.float64), anomalies(labels, digit, protocol)
    return {"holdout": digit, "protocol": protocol, "auc": roc_auc(s, y), "n_positive": int(y.sum()),
            "n_negative": int((~y).sum()), "mean_score_positive": float(s[y].mean()),
            "mean_score_negative": float(s[~y].mean())}


# --- figures --------------------------------------------------------------------------


def roc_figure(curves: list[tuple[str, object, object]], path: Path, title: str = "") -> Path:
    """ROC curves: one (label, false positive rates, true positive rates) per line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    for label, fpr, tpr in curves:
        ax.plot(fpr, tpr, lw=1.3, label=label)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def score_histogram(scores, is_positive, path: Path, *, positive: str, title: str = "") -> Path:
    """Histograms (as densities) of the squared reconstruction errors of anomalies and
    normal test images, log bins: the errors are skewed, spanning a decade or more."""
    from matplotlib.figure import Figure

    s, y = np.asarray(scores, dtype=np.float64), np.asarray(is_positive, dtype=bool)
    lo, hi = max(s.min(), 1e-6), max(s.max(), 2e-6)
    bins = np.geomspace(lo, hi, 60)
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    ax.hist(s[~y], bins=bins, density=True, alpha=0.6, label="normal test images")
    ax.hist(s[y], bins=bins, density=True, alpha=0.6, label=f"anomalies ({positive})")
    ax.set_xscale("log")
    ax.set_xlabel("squared reconstruction error (SSE, 784 pixels; not NAP)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


# --- one held-out class ---------------------------------------------------------------


def pca_scores(train_u8, test_u8, k: int) -> np.ndarray:
    """Exact PCA fitted on the training images: each test image's squared error (N,)."""
    return pca.sse(pca.fit(train_u8), test_u8, k).numpy()


def train_config(model: str, *, dataset: str, epochs: int, seed: int, limit: int | None,
                 device: str, excluded: list[int], dataset_options: dict | None = None,
                 model_args: dict | None = None, train_options: dict | None = None) -> TrainConfig:
    """The protocol's TrainConfig for one class; `train_options` sets any other field (e.g.
    {"optimizer": "adamw", "lr": 3e-3}), checked by TrainConfig itself."""
    if train_options is not None and not isinstance(train_options, dict):
        raise AelabError(f"train options must be a JSON object of TrainConfig fields, e.g. "
                         f'{{"optimizer": "adamw", "lr": 0.003}}; got {train_options!r}')
    options = dict(train_options or {})
    taken = [k for k in PROTOCOL_FIELDS if k in options]
    if taken:
        where = "; ".join(f"{k}: {PROTOCOL_FIELDS[k]}" for k in taken)
        raise AelabError(f"train options {taken} are set by the anomaly protocol itself, not "
                         f"by train options ({where}); leave them out")
    return TrainConfig.from_dict({"figure_every": epochs, **options, "model": model,
                                  "model_args": {} if model_args is None else model_args,
                                  "dataset": dataset, "dataset_options": dataset_options or {},
                                  "epochs": epochs, "seed": seed, "limit": limit, "device": device,
                                  "exclude_digits": list(excluded)})


def run_label(digit: int, protocol: str) -> str:
    """What a class's run is called in the log: one-class trains on `digit` alone, its
    normal class ("normal 9"); leave-one-out trains without it ("holdout 9")."""
    return f"normal {digit}" if protocol == "one-class" else f"holdout {digit}"


def holdout_run(digit: int, out: Path, *, model: str, dataset: str, epochs: int, seed: int,
                limit: int | None, device: str, data_dir=None, log=print,
                dataset_options: dict | None = None, protocol: str = "leave-one-out",
                n_classes: int = 10, pca_k: int | None = None, model_args: dict | None = None,
                train_options: dict | None = None) -> dict:
    """Train on the protocol's normal classes for `digit`, score the whole test set with the
    model (RaPP NAP, squared error, RaPP SAP) and with exact PCA on the same training images,
    write figures; returns the summary (with NAP's ROC curve's points under "roc")."""
    from sklearn.metrics import roc_curve

    others = [d for d in range(n_classes) if d != digit]
    excluded = others if protocol == "one-class" else [digit]
    cfg = train_config(model, dataset=dataset, epochs=epochs, seed=seed, limit=limit,
                       device=device, excluded=excluded, dataset_options=dataset_options,
                       model_args=model_args, train_options=train_options)
    run_dir = out / f"holdout-{digit}"
    tag = run_label(digit, protocol)
    result = train(cfg, run_dir, data_dir=data_dir, log=lambda m: log(f"[{tag}] {m}"),
                   progress=False)
    opts = dict(data_dir=data_dir, options=dataset_options, log=log)
    test_x, test_y = load_dataset(dataset, "test", **opts)
    train_x, train_y = load_dataset(dataset, "train", **opts)
    normal = torch.from_numpy(~np.isin(train_y.numpy(), excluded))
    fit_x = train_x[normal][:limit] if limit else train_x[normal]  # the images the model saw
    is_anomaly = anomalies(test_y.numpy(), digit, protocol)
    t0 = time.perf_counter()
    sse = reconstruction_sse(result.model, test_x.to(_device(result.model))).numpy()  # (N,) float64
    nap, sap, nap_info = rapp_scores(result.model, fit_x, test_x, seed=seed)
    summary = score_holdout(nap, test_y.numpy(), digit, protocol)  # the primary score: NAP
    summary.update(auc_sse=roc_auc(sse, is_anomaly), auc_sap=roc_auc(sap, is_anomaly),
                   mean_error_positive=float(sse[is_anomaly].mean()),
                   mean_error_negative=float(sse[~is_anomaly].mean()), **nap_info,
                   score_seconds=time.perf_counter() - t0)
    k = pca_k if pca_k is not None else PCA_K[protocol]
    summary.update(pca_k=k, pca_auc=roc_auc(pca_scores(fit_x, test_x, k), is_anomaly))
    names = class_names(dataset, data_dir=data_dir, options=dataset_options)
    name = names[digit] if digit < len(names) else str(digit)
    summary.update(name=name, run_dir=str(run_dir), model=model, model_args=cfg.model_args,
                   dataset=dataset, epochs=epochs, seed=seed, limit=limit, score=SCORE,
                   train_seconds=train_seconds(result.metrics),
                   hardware=trained_on(result.metrics), scored_on=hardware())
    fpr, tpr, _ = roc_curve(is_anomaly, nap)
    how = f"trained on {name} only" if protocol == "one-class" else f"trained without {name}"
    title = (f"{model} {how}: NAP AUC {summary['auc']:.3f}\n(SSE {summary['auc_sse']:.3f}, "
             f"SAP {summary['auc_sap']:.3f}, PCA-{k} {summary['pca_auc']:.3f})")
    label = f"normal: {name}" if protocol == "one-class" else f"held out {name}"
    sse_fpr, sse_tpr, _ = roc_curve(is_anomaly, sse)
    roc_figure([(f"{label}, RaPP NAP", fpr, tpr), (f"{label}, squared error", sse_fpr, sse_tpr)],
               run_dir / "roc.png", title=title)
    positive = f"all but {name}" if protocol == "one-class" else f"held out: {name}"
    score_histogram(sse, is_anomaly, run_dir / "scores.png", positive=positive, title=title)
    atomic_write_json(run_dir / "anomaly.json", summary)
    return dict(summary, roc=(fpr, tpr))


# --- the whole command ----------------------------------------------------------------


def _aucs(r: dict) -> dict:
    """NAP, SSE and SAP AUCs of a summary (None where absent). A summary from before RaPP
    (no auc_sse) held the squared error's AUC under "auc"."""
    if "auc_sse" not in r:
        return {"nap": None, "sse": r.get("auc"), "sap": None, "pca": r.get("pca_auc")}
    return {"nap": r.get("auc"), "sse": r["auc_sse"], "sap": r.get("auc_sap"), "pca": r.get("pca_auc")}


def format_table(results: list[dict], markdown: bool = True) -> str:
    """One row per class: the AUCs of RaPP NAP (the primary score), squared error, RaPP SAP
    and exact PCA on the same protocol, and the mean squared errors of anomalies and normal
    images; then the means. A value a summary lacks shows as "-"."""
    protocol = results[0].get("protocol", "leave-one-out") if results else "leave-one-out"
    first = "normal class" if protocol == "one-class" else "held out"
    k = results[0].get("pca_k") if results else None
    header = [first, "RaPP NAP AUC", "SSE AUC", "SAP AUC", f"PCA-{k} AUC" if k else "PCA AUC",
              "mean error, anomalies", "mean error, normal"]

    def cell(v, fmt=".3f"):
        return "-" if v is None else format(v, fmt)

    table = [_aucs(r) for r in results]
    rows = [[r["name"], *(cell(v) for v in a.values()),
             cell(r.get("mean_error_positive", r.get("mean_score_positive")), ".2f"),
             cell(r.get("mean_error_negative", r.get("mean_score_negative")), ".2f")]
            for r, a in zip(results, table, strict=True)]
    if len(results) > 1:
        means = [None if any(a[c] is None for a in table) else sum(a[c] for a in table) / len(table)
                 for c in ("nap", "sse", "sap", "pca")]
        rows.append(["mean", *map(cell, means), "", ""])
    if not markdown:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
                         for r in [header, *rows])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def anomaly(holdouts: list[int] | None, out: Path, *, model: str = "conv", dataset: str = "mnist",
            epochs: int = EPOCHS, seed: int = 0, limit: int | None = None, device: str = "auto",
            data_dir=None, log=print, dataset_options: dict | None = None,
            protocol: str = "one-class", pca_k: int | None = None, model_args: dict | None = None,
            train_options: dict | None = None) -> list[dict]:
    """Take each class in `holdouts` (None: every class of the dataset) in turn under
    `protocol`; writes out/anomaly.json, out/anomaly.md
    (and out/roc_all.png for several classes); returns the per-class summaries.
    `model_args` go to the model; `train_options` are other TrainConfig fields."""
    if epochs < 1:
        raise AelabError(f"--epochs {epochs}: train for at least one epoch")
    if protocol not in PROTOCOLS:
        raise AelabError(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    # every option checked before any data is read or any class trained
    train_config(model, dataset=dataset, epochs=epochs, seed=seed, limit=limit, device=device,
                 excluded=[], dataset_options=dataset_options, model_args=model_args,
                 train_options=train_options)
    info = dataset_info(dataset, data_dir=data_dir, options=dataset_options, log=log)
    if not info["has_labels"]:
        raise AelabError(f"anomaly detection holds one class out, and {info['name']} has no "
                         "labels; give a dataset with classes (e.g. an image folder with one "
                         "subfolder per class)")
    if holdouts is None:  # every class of the dataset in turn
        holdouts = list(range(len(info["class_names"])))
    missing = [d for d in holdouts if d >= len(info["class_names"])]
    if missing:
        raise AelabError(f"--holdout-digit {missing[0]}: {info['name']} has classes 0 to "
                         f"{len(info['class_names']) - 1}")
    results = []
    for d in holdouts:
        t0 = time.perf_counter()
        r = holdout_run(d, out, model=model, dataset=dataset, epochs=epochs, seed=seed,
                        limit=limit, device=device, data_dir=data_dir, log=log,
                        dataset_options=dataset_options, protocol=protocol,
                        n_classes=len(info["class_names"]), pca_k=pca_k, model_args=model_args,
                        train_options=train_options)
        r["seconds"] = time.perf_counter() - t0
        log(f"{protocol}, class {r['name']}: ROC AUC of RaPP NAP {r['auc']:.4f}, squared error "
            f"{r['auc_sse']:.4f}, SAP {r['auc_sap']:.4f}, PCA-{r['pca_k']} {r['pca_auc']:.4f}  "
            f"({r['seconds']:.0f}s)")
        results.append(r)
    curves = [(f"{r['name']}: {r['auc']:.3f}", *r.pop("roc")) for r in results]
    if len(results) > 1:
        roc_figure(curves, out / "roc_all.png",
                   title=f"{model} on {info['name']}, {protocol}: RaPP NAP")
    atomic_write_json(out / "anomaly.json", {"results": results})
    atomic_write_text(out / "anomaly.md", format_table(results) + "\n")
    return results
