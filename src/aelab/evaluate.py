"""Reconstruction error on the test set, and the exact PCA baseline at the same code size.

The headline metric is the one of Hinton & Salakhutdinov (Science 2006, Fig. 2): squared
error summed over the 784 pixels (in [0, 1]) of each image, averaged over the 10,000 test
images. PCA with 30 components scores 13.87 on it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from . import data as data_mod
from . import pca
from ._io import atomic_write_json
from .config import parse_noise
from .data.batches import (
    BINARIZE_TEST_SEED,
    REFINE_LR,
    binarize_u8,
    corrupt,
    refined_sse,
    epoch_generator,
    reconstruction_sse,
    to_float,
)
from .errors import AelabError
from .models import count_parameters
from .runs import eval_file_name, load_run, read_metrics
from .runtime import hardware, resolve_device

__all__ = ["evaluate_run", "format_table", "reconstruction_sse", "summarize", "to_float"]

PIXELS = 28 * 28


def summarize(sse: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
    """Turn per-image squared errors into the metrics every table reports."""
    sse_mean = sse.mean().item()
    mse = sse_mean / PIXELS
    out = {
        "sse_per_image": sse_mean,
        "sse_per_image_std": sse.std().item() if len(sse) > 1 else 0.0,
        "mse_per_pixel": mse,
        # pixels are in [0, 1], so the peak signal is 1
        "psnr_db": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf"),
        # the denoising literature's PSNR: each image's own, then the mean over images
        # (an exact reconstruction counts as 120 dB)
        "psnr_db_mean_per_image": (10 * torch.log10(PIXELS / sse.double().clamp(min=PIXELS * 1e-12)))
        .mean().item() if len(sse) else float("nan"),
        "n_images": len(sse),
    }
    if labels is not None and (labels >= 0).any():  # -1: an unlabelled dataset
        labels = labels.cpu()
        out["sse_per_image_by_digit"] = {
            str(int(d)): sse[labels == d].mean().item() for d in labels[labels >= 0].unique()
        }
    return out


# --- a whole run ----------------------------------------------------------------------


def evaluate_run(run_dir, which: str = "best", *, data_dir=None, device: str = "auto",
                 noise: str | None = None, log=print, dataset: str | None = None,
                 dataset_options: dict | None = None, iw_samples: int | None = None,
                 refine_steps: int = 0) -> dict:
    """Test-set metrics of a run folder's checkpoint, with PCA at the same code size;
    written to RUN_DIR/eval.json (RUN_DIR/eval-noise-<spec>.json with `noise`) and returned.

    noise: corrupt the test inputs ("gaussian:0.3", "masking:0.5"; fixed seed) and score
    the reconstructions against the clean images. Models with an `extra_metrics(images)`
    method (the VAE's likelihood bounds) add their own entries.

    dataset (and its options): evaluate on other data than the run was trained on (a
    registered name or a path), written to RUN_DIR/eval-on-<name>.json. A warning goes to
    stderr whenever the data differs from the training data (its checksum).

    A run trained on binarized images (binarize "dynamic" or "static") is scored on the
    test set binarized once with BINARIZE_TEST_SEED, as in the likelihood literature.
    iw_samples: importance samples for a VAE's likelihood bound (default: 5000, the
    papers' K, for a binarized run; else 100).

    refine_steps: refine each test image's code by that many gradient steps through the
    frozen decoder before scoring (aelab.data.batches.refined_sse), written to
    RUN_DIR/eval-refine-<steps>.json."""
    if refine_steps < 0:
        raise AelabError(f"--refine-steps {refine_steps}: give 0 or more")
    if refine_steps and noise is not None:
        raise AelabError("--refine-steps fits the code to the input image, so it cannot be "
                         "combined with --noise (it would fit the noise); use one or the other")
    dev = resolve_device(device)
    run = load_run(run_dir, which, device=dev)
    other = dataset is not None and dataset != run.config.dataset
    ds = dataset if other else run.config.dataset
    opts = dict(data_dir=data_dir, options=(dataset_options if other else run.config.dataset_options),
                log=log)
    test_x, test_y = data_mod.load_dataset(ds, "test", **opts)
    info = data_mod.dataset_info(ds, **opts)
    binarized = run.config.binarize != "none"
    if binarized:
        test_x = binarize_u8(test_x, BINARIZE_TEST_SEED)
    iw_k = iw_samples if iw_samples is not None else (5000 if binarized else 100)
    if iw_k < 1:
        raise AelabError(f"--iw-samples {iw_k}: give at least 1")
    trained = run.meta.get("data_checksum")
    if trained is not None and info["checksum"] != trained:
        why = "another dataset than" if other else "data that differs from"
        print(f"warning: evaluating {run.run_dir} on {why} the data it was trained on "
              f"({ds}: checksum {info['checksum']}, trained on {trained})", file=sys.stderr)
    corrupt_fn = None
    if noise is not None:
        parse_noise(noise)  # a bad spec fails before any work
        gen = epoch_generator(12345, 0, dev)
        corrupt_fn = lambda x: corrupt(x, noise, gen)  # noqa: E731
    if refine_steps:
        sse = refined_sse(run.model, test_x.to(dev), refine_steps, run.config.eval_batch_size)
    else:
        sse = reconstruction_sse(run.model, test_x.to(dev), run.config.eval_batch_size, corrupt_fn)
    result = summarize(sse, test_y)
    if hasattr(run.model, "extra_metrics"):
        step = max(1, len(test_x) // 10)

        def progress(done, total):
            if done // step != (done - 1) // step or done == total:  # about every 10%
                log(f"  likelihood bound, {iw_k} importance samples: {done:,}/{total:,} images")

        with torch.inference_mode():
            result.update(run.model.extra_metrics(test_x.to(dev), iw_samples=iw_k, progress=progress))
        result["binarize"] = run.config.binarize
    k = int(run.model.latent_dim)
    result["pca_sse_per_image"] = pca.test_sse(ds, k, **opts).mean().item()
    metrics = read_metrics(run.run_dir)
    result.update(
        run_dir=str(run.run_dir), checkpoint=which, model=run.config.model, latent_dim=k,
        params=count_parameters(run.model), epoch=run.meta["epoch"], dataset=ds,
        data_checksum=info["checksum"], trained_data_checksum=trained, step=run.meta.get("step"),
        train_seconds=sum(m["epoch_seconds"] for m in metrics if m["epoch"] <= run.meta["epoch"]),
        noise=noise, refine_steps=refine_steps, refine_lr=REFINE_LR if refine_steps else None,
        hardware=hardware(),
    )
    name = eval_file_name(noise, info["name"] if other else None, refine_steps)
    atomic_write_json(Path(run.run_dir) / name, result)
    result["eval_file"] = str(Path(run.run_dir) / name)
    return result


COLUMNS = [  # (header, key, format)
    ("model", "model", "{}"),
    ("latent", "latent_dim", "{}"),
    ("params", "params", "{:,}"),
    ("test MSE/pixel", "mse_per_pixel", "{:.5f}"),
    ("SSE/image", "sse_per_image", "{:.2f}"),
    ("PCA SSE/image (same k)", "pca_sse_per_image", "{:.2f}"),
    ("PSNR dB", "psnr_db", "{:.2f}"),
    ("train time s", "train_seconds", "{:.1f}"),
]


VAE_COLUMNS = [  # shown when any result has them (a VAE's likelihood figures, nats/image)
    ("-ELBO nats", "neg_elbo_nats", "{:.2f}"),
    ("KL nats", "kl_nats", "{:.2f}"),
    ("NLL bound nats (K)", "iwae_nll_nats", "{:.2f}"),
]


def format_table(results: list[dict], markdown: bool = False) -> str:
    """The comparison table printed by `aelab eval` and `make demo`; a VAE's -ELBO, KL and
    importance-weighted NLL bound (with its K) join it when present."""
    columns = list(COLUMNS)
    if any("iwae_nll_nats" in r for r in results):
        columns += VAE_COLUMNS
    header = [h for h, _, _ in columns]

    def cell(r, key, fmt):
        if key not in r:
            return "-"
        text = fmt.format(r[key])
        return f"{text} ({r['iw_samples']})" if key == "iwae_nll_nats" else text

    rows = [[cell(r, key, fmt) for _, key, fmt in columns] for r in results]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt_row(cells):
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))

    lines = [fmt_row(header), fmt_row(["-" * w for w in widths])]
    return "\n".join(lines + [fmt_row(r) for r in rows])
