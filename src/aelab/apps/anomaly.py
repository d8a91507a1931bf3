"""`aelab anomaly`: anomaly detection by reconstruction error, one class held out.

For each held-out class d: train a model on the training images of the other nine classes,
score every test image by its reconstruction error (squared error summed over the 784
pixels), and measure how well that score ranks the test images of d (the positives, never
seen in training) above the others: the area under the ROC curve (1.0: every held-out
image scores higher than every other; 0.5: no better than chance).

Output folder (--out): holdout-D/ per class (a normal run folder, plus roc.png,
scores.png and anomaly.json), and anomaly.json + anomaly.md with the table of AUCs
(and roc_all.png when all ten classes are held out in turn).
"""

# matplotlib and scikit-learn are imported inside the functions that draw or score.

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from ..config import TrainConfig
from ..data import dataset_info, load_dataset
from ..data.batches import reconstruction_sse
from ..errors import AelabError
from ..figures import save
from ..train import train
from .explore import class_names

EPOCHS = 3


# --- scoring --------------------------------------------------------------------------


def roc_auc(scores, is_positive) -> float:
    """Area under the ROC curve of `scores` (N,) for boolean labels (N,); ties count half."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(is_positive, dtype=bool)
    if y.all() or not y.any():
        raise AelabError(f"an AUC needs positives and negatives; got {int(y.sum())} positives "
                         f"among {len(y)} test images")
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def score_holdout(scores, labels, digit: int) -> dict:
    """Summary of per-image anomaly scores (N,) when class `digit` is the anomaly."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels) == digit
    return {"holdout": digit, "auc": roc_auc(s, y), "n_positive": int(y.sum()),
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
    ax.hist(s[~y], bins=bins, density=True, alpha=0.6, label="other test images")
    ax.hist(s[y], bins=bins, density=True, alpha=0.6, label=f"held out: {positive}")
    ax.set_xscale("log")
    ax.set_xlabel("reconstruction error (squared error summed over 784 pixels)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


# --- one held-out class ---------------------------------------------------------------


def holdout_run(digit: int, out: Path, *, model: str, dataset: str, epochs: int, seed: int,
                limit: int | None, device: str, data_dir=None, log=print,
                dataset_options: dict | None = None) -> dict:
    """Train without class `digit`, score the test set, write figures; returns the summary
    (with the ROC curve's points under "roc")."""
    from sklearn.metrics import roc_curve

    cfg = TrainConfig(model=model, dataset=dataset, dataset_options=dataset_options or {},
                      epochs=epochs, seed=seed, limit=limit, device=device,
                      exclude_digits=[digit], figure_every=epochs)
    run_dir = out / f"holdout-{digit}"
    result = train(cfg, run_dir, data_dir=data_dir, log=lambda m: log(f"[holdout {digit}] {m}"),
                   progress=False)
    test_x, test_y = load_dataset(dataset, "test", data_dir=data_dir, options=dataset_options, log=log)
    dev = next(result.model.parameters()).device
    scores = reconstruction_sse(result.model, test_x.to(dev)).numpy()  # (N,) float64
    summary = score_holdout(scores, test_y.numpy(), digit)
    names = class_names(dataset, data_dir=data_dir, options=dataset_options)
    name = names[digit] if digit < len(names) else str(digit)
    summary.update(name=name, run_dir=str(run_dir), model=model, dataset=dataset, epochs=epochs,
                   seed=seed, limit=limit, score="reconstruction squared error per image")
    fpr, tpr, _ = roc_curve(test_y.numpy() == digit, scores)
    title = f"{model} trained without {name}: AUC {summary['auc']:.3f}"
    roc_figure([(f"held out {name}", fpr, tpr)], run_dir / "roc.png", title=title)
    score_histogram(scores, test_y.numpy() == digit, run_dir / "scores.png", positive=name,
                    title=title)
    atomic_write_json(run_dir / "anomaly.json", summary)
    return dict(summary, roc=(fpr, tpr))


# --- the whole command ----------------------------------------------------------------


def format_table(results: list[dict], markdown: bool = True) -> str:
    """One row per held-out class: AUC and the mean scores of both groups; then the mean AUC."""
    header = ["held out", "ROC AUC", "mean error, held out", "mean error, others"]
    rows = [[r["name"], f"{r['auc']:.3f}", f"{r['mean_score_positive']:.2f}",
             f"{r['mean_score_negative']:.2f}"] for r in results]
    if len(results) > 1:
        rows.append(["mean", f"{sum(r['auc'] for r in results) / len(results):.3f}", "", ""])
    if not markdown:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
                         for r in [header, *rows])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def anomaly(holdouts: list[int], out: Path, *, model: str = "conv", dataset: str = "mnist",
            epochs: int = EPOCHS, seed: int = 0, limit: int | None = None, device: str = "auto",
            data_dir=None, log=print, dataset_options: dict | None = None) -> list[dict]:
    """Hold out each class in turn; writes out/anomaly.json, out/anomaly.md (and
    out/roc_all.png for several classes); returns the per-class summaries."""
    if epochs < 1:
        raise AelabError(f"--epochs {epochs}: train for at least one epoch")
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
                        dataset_options=dataset_options)
        r["seconds"] = time.perf_counter() - t0
        log(f"held out {r['name']}: ROC AUC {r['auc']:.4f}  ({r['seconds']:.0f}s)")
        results.append(r)
    curves = [(f"{r['name']}: {r['auc']:.3f}", *r.pop("roc")) for r in results]
    if len(results) > 1:
        roc_figure(curves, out / "roc_all.png", title=f"{model} on {dataset}, one class held out")
    atomic_write_json(out / "anomaly.json", {"results": results})
    atomic_write_text(out / "anomaly.md", format_table(results) + "\n")
    return results
