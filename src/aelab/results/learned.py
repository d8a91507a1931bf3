"""A learned row of the reconstruction table from its preset's run folders: each seed's
test scores (the `best` checkpoint) and label probes on its codes, then one row from the
seeds."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .. import data as data_mod
from ..data.batches import encode_all
from ..represent import label_accuracies
from ..runs import NOT_RECORDED, load_run, read_metrics, trained_on
from ..runtime import resolve_device
from .baselines import label_subsets
from .cache import best_eval, cached
from .render import joined
from ..runs import train_seconds

QUICK_REPRESENT = (2000, 1000)  # --quick: training codes fitted, test codes scored


def probe_sizes(quick: bool) -> tuple[int | None, int | None]:
    """(training codes the label probes fit, test codes they score); None: all."""
    return QUICK_REPRESENT if quick else (None, None)


def run_representation(run_dir: Path, *, data_dir=None, device="auto", n_fit=None, n_score=None) -> dict:
    """kNN and linear-probe accuracy from the `best` checkpoint's codes; cached in
    RUN_DIR/represent.json for that checkpoint's epoch."""
    run = load_run(run_dir, "best", device=resolve_device(device))
    key = {"epoch": run.meta["epoch"], "n_fit": n_fit, "n_score": n_score}

    def compute():
        fit, score = label_subsets(n_fit, n_score)
        tx, ty = data_mod.load_dataset(run.config.dataset, "train", data_dir=data_dir)
        sx, sy = data_mod.load_dataset(run.config.dataset, "test", data_dir=data_dir)
        return label_accuracies(encode_all(run.model, tx[fit]).numpy(), ty[fit].numpy(),
                                encode_all(run.model, sx[score]).numpy(), sy[score].numpy())

    return cached(Path(run_dir) / "represent.json", key, compute, value_field="accuracy")


def seed_result(run_dir: Path, *, data_dir, device, quick, refine: int = 0) -> dict:
    """One seed's row: its test scores (codes refined with `refine` steps), label probes,
    training time and the machines that measured them."""
    ev = best_eval(run_dir, refine=refine, data_dir=data_dir, device=device)
    n_fit, n_score = probe_sizes(quick)
    ev.update(run_representation(run_dir, data_dir=data_dir, device=device, n_fit=n_fit, n_score=n_score))
    metrics = read_metrics(run_dir)
    ev["train_seconds"] = train_seconds(metrics)  # all epochs
    ev["eval_hardware"] = ev.pop("hardware", None) or NOT_RECORDED  # the eval file's machine
    ev["hardware"] = trained_on(metrics)  # the machine(s) the time was measured on
    return ev


def combine_seeds(per_seed: list[dict]) -> dict:
    """One row from several seeds: means, and the standard deviation across seeds of the
    test SSE per image (None for a single seed). The spread over images is kept apart."""
    def mean(key):
        return statistics.fmean(r[key] for r in per_seed)

    sse = [r["sse_per_image"] for r in per_seed]
    mse = mean("mse_per_pixel")
    first = per_seed[0]
    return {
        "model": first["model"], "latent_dim": first["latent_dim"], "params": first["params"],
        "sse_per_image": statistics.fmean(sse),
        "sse_per_image_std": statistics.stdev(sse) if len(sse) > 1 else None,
        "sse_per_image_std_over_images": mean("sse_per_image_std"),
        "sse_per_image_by_seed": sse,
        "mse_per_pixel": mse, "psnr_db": 10 * math.log10(1.0 / mse),
        "knn_accuracy": mean("knn_accuracy"), "probe_accuracy": mean("probe_accuracy"),
        "best_epochs": [r["epoch"] for r in per_seed], "train_seconds": mean("train_seconds"),
        "train_seconds_by_seed": [r["train_seconds"] for r in per_seed],
        "run_dirs": [r["run_dir"] for r in per_seed],
        "hardware": joined(r["hardware"] for r in per_seed),
        "eval_hardware": joined(r["eval_hardware"] for r in per_seed),
    }
