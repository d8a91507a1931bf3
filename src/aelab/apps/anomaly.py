"""`aelab anomaly`: anomaly detection by reconstruction error, on two protocols.

- one-class (the default, the literature's: Ruff et al. 2018, Deep SVDD): for each class d,
  train on the training images of d alone; the test images of the other nine classes are
  the anomalies (the positives).
- leave-one-out: for each class d, train on the other nine classes; the test images of d,
  never seen in training, are the anomalies.

Every test image (all 10,000) is scored by its reconstruction error (squared error summed
over the 784 pixels), and the table gives the area under the ROC curve of that score for
telling anomalies from normal images (1.0: every anomaly scores higher than every normal
image; 0.5: chance), beside exact PCA fitted on the same training images and scored the
same way (PCA_K components: 16 for one-class, 8 for leave-one-out), in the same run.

Output folder (--out): holdout-D/ per class (a normal run folder, plus roc.png,
scores.png and anomaly.json), and anomaly.json + anomaly.md with the table of AUCs
(and roc_all.png when all ten classes are taken in turn).
"""

# matplotlib and scikit-learn are imported inside the functions that draw or score.

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .. import pca
from .._io import atomic_write_json, atomic_write_text
from ..config import TrainConfig
from ..data import dataset_info, load_dataset
from ..data.batches import reconstruction_sse
from ..errors import AelabError
from ..figures import save
from ..train import train
from .explore import class_names

EPOCHS = 3
PROTOCOLS = ("one-class", "leave-one-out")
PCA_K = {"one-class": 16, "leave-one-out": 8}  # the PCA baselines the figures use


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
    """Histograms (as densities) of the scores of held-out and other test images, log bins:
    reconstruction errors are skewed, spanning a decade or more."""
    from matplotlib.figure import Figure

    s, y = np.asarray(scores, dtype=np.float64), np.asarray(is_positive, dtype=bool)
    lo, hi = max(s.min(), 1e-6), max(s.max(), 2e-6)
    bins = np.geomspace(lo, hi, 60)
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    ax.hist(s[~y], bins=bins, density=True, alpha=0.6, label="normal test images")
    ax.hist(s[y], bins=bins, density=True, alpha=0.6, label=f"anomalies ({positive})")
    ax.set_xscale("log")
    ax.set_xlabel("reconstruction error (squared error summed over 784 pixels)")
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


def holdout_run(digit: int, out: Path, *, model: str, dataset: str, epochs: int, seed: int,
                limit: int | None, device: str, data_dir=None, log=print,
                dataset_options: dict | None = None, protocol: str = "leave-one-out",
                n_classes: int = 10, pca_k: int | None = None) -> dict:
    """Train on the protocol's normal classes for `digit`, score the whole test set with the
    model and with exact PCA on the same training images, write figures; returns the
    summary (with the ROC curve's points under "roc")."""
    from sklearn.metrics import roc_curve

    others = [d for d in range(n_classes) if d != digit]
    excluded = others if protocol == "one-class" else [digit]
    cfg = TrainConfig(model=model, dataset=dataset, dataset_options=dataset_options or {},
                      epochs=epochs, seed=seed, limit=limit, device=device,
                      exclude_digits=excluded, figure_every=epochs)
    run_dir = out / f"holdout-{digit}"
    result = train(cfg, run_dir, data_dir=data_dir, log=lambda m: log(f"[holdout {digit}] {m}"),
                   progress=False)
    opts = dict(data_dir=data_dir, options=dataset_options, log=log)
    test_x, test_y = load_dataset(dataset, "test", **opts)
    dev = next(result.model.parameters()).device
    scores = reconstruction_sse(result.model, test_x.to(dev)).numpy()  # (N,) float64
    summary = score_holdout(scores, test_y.numpy(), digit, protocol)
    # PCA on the same protocol: the same training images the model saw
    train_x, train_y = load_dataset(dataset, "train", **opts)
    normal = ~np.isin(train_y.numpy(), excluded)
    pca_train = train_x[torch.from_numpy(normal)][:limit] if limit else train_x[torch.from_numpy(normal)]
    k = pca_k if pca_k is not None else PCA_K[protocol]
    is_anomaly = anomalies(test_y.numpy(), digit, protocol)
    summary.update(pca_k=k, pca_auc=roc_auc(pca_scores(pca_train, test_x, k), is_anomaly))
    names = class_names(dataset, data_dir=data_dir, options=dataset_options)
    name = names[digit] if digit < len(names) else str(digit)
    summary.update(name=name, run_dir=str(run_dir), model=model, dataset=dataset, epochs=epochs,
                   seed=seed, limit=limit, score="reconstruction squared error per image",
                   train_seconds=sum(m["epoch_seconds"] for m in result.metrics))
    fpr, tpr, _ = roc_curve(is_anomaly, scores)
    how = f"trained on {name} only" if protocol == "one-class" else f"trained without {name}"
    title = f"{model} {how}: AUC {summary['auc']:.3f} (PCA-{k} {summary['pca_auc']:.3f})"
    label = f"normal: {name}" if protocol == "one-class" else f"held out {name}"
    roc_figure([(label, fpr, tpr)], run_dir / "roc.png", title=title)
    positive = f"all but {name}" if protocol == "one-class" else f"held out: {name}"
    score_histogram(scores, is_anomaly, run_dir / "scores.png", positive=positive, title=title)
    atomic_write_json(run_dir / "anomaly.json", summary)
    return dict(summary, roc=(fpr, tpr))


# --- the whole command ----------------------------------------------------------------


def format_table(results: list[dict], markdown: bool = True) -> str:
    """One row per class: the model's AUC, exact PCA's on the same protocol, and the mean
    scores of anomalies and normal images; then the means."""
    protocol = results[0].get("protocol", "leave-one-out") if results else "leave-one-out"
    first = "normal class" if protocol == "one-class" else "held out"
    k = results[0].get("pca_k") if results else None
    header = [first, "ROC AUC", f"PCA-{k} AUC" if k else "PCA AUC", "mean error, anomalies",
              "mean error, normal"]

    def pca_cell(r):
        return f"{r['pca_auc']:.3f}" if r.get("pca_auc") is not None else "-"

    rows = [[r["name"], f"{r['auc']:.3f}", pca_cell(r), f"{r['mean_score_positive']:.2f}",
             f"{r['mean_score_negative']:.2f}"] for r in results]
    if len(results) > 1:
        mean = sum(r["auc"] for r in results) / len(results)
        pcas = [r["pca_auc"] for r in results if r.get("pca_auc") is not None]
        pca_mean = f"{sum(pcas) / len(pcas):.3f}" if len(pcas) == len(results) else "-"
        rows.append(["mean", f"{mean:.3f}", pca_mean, "", ""])
    if not markdown:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
                         for r in [header, *rows])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def anomaly(holdouts: list[int], out: Path, *, model: str = "conv", dataset: str = "mnist",
            epochs: int = EPOCHS, seed: int = 0, limit: int | None = None, device: str = "auto",
            data_dir=None, log=print, dataset_options: dict | None = None,
            protocol: str = "one-class", pca_k: int | None = None) -> list[dict]:
    """Take each class in turn under `protocol`; writes out/anomaly.json, out/anomaly.md
    (and out/roc_all.png for several classes); returns the per-class summaries."""
    if epochs < 1:
        raise AelabError(f"--epochs {epochs}: train for at least one epoch")
    if protocol not in PROTOCOLS:
        raise AelabError(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    info = dataset_info(dataset, data_dir=data_dir, options=dataset_options, log=log)
    if not info["has_labels"]:
        raise AelabError(f"anomaly detection holds one class out, and {info['name']} has no "
                         "labels; give a dataset with classes (e.g. an image folder with one "
                         "subfolder per class)")
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
                        n_classes=len(info["class_names"]), pca_k=pca_k)
        r["seconds"] = time.perf_counter() - t0
        log(f"{protocol}, class {r['name']}: ROC AUC {r['auc']:.4f}, PCA-{r['pca_k']} "
            f"{r['pca_auc']:.4f}  ({r['seconds']:.0f}s)")
        results.append(r)
    curves = [(f"{r['name']}: {r['auc']:.3f}", *r.pop("roc")) for r in results]
    if len(results) > 1:
        roc_figure(curves, out / "roc_all.png", title=f"{model} on {info['name']}, {protocol}")
    atomic_write_json(out / "anomaly.json", {"results": results})
    atomic_write_text(out / "anomaly.md", format_table(results) + "\n")
    return results
