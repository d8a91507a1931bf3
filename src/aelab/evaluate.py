"""Reconstruction error on the test set, and the exact PCA baseline at the same code size.

The headline metric is the one of Hinton & Salakhutdinov (Science 2006, Fig. 2): squared
error summed over the 784 pixels (in [0, 1]) of each image, averaged over the 10,000 test
images. PCA with 30 components scores 13.87 on it.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from . import data as data_mod
from . import pca
from ._io import atomic_write_json
from .config import parse_noise
from .data.batches import (
    BINARIZE_TEST_SEED,
    binarize_u8,
    corrupt,
    epoch_generator,
    reconstruction_sse,
    to_float,
)
from .errors import AelabError
from .models import count_parameters, spec
from .models.contract import image_shape
from .runs import eval_file_name, load_run, read_metrics, train_seconds
from .runtime import hardware, resolve_device

__all__ = ["evaluate_run", "format_table", "reconstruction_sse", "run_and_checkpoint", "summarize",
           "to_float"]

PIXELS = 28 * 28  # MNIST's; an image of shape (C, H, W) has C * H * W numbers


def summarize(sse: torch.Tensor, labels: torch.Tensor | None = None, *, pixels: int = PIXELS) -> dict:
    """Turn per-image squared errors into the metrics every table reports. `pixels`: the
    numbers per image (C * H * W), so that MSE and PSNR are per pixel and channel."""
    sse_mean = sse.mean().item()
    mse = sse_mean / pixels
    out = {
        "sse_per_image": sse_mean,
        "sse_per_image_std": sse.std().item() if len(sse) > 1 else 0.0,
        "mse_per_pixel": mse,
        # pixels are in [0, 1], so the peak signal is 1
        "psnr_db": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf"),
        # the denoising literature's PSNR: each image's own, then the mean over images
        # (an exact reconstruction counts as 120 dB)
        "psnr_db_mean_per_image": (10 * torch.log10(pixels / sse.double().clamp(min=pixels * 1e-12)))
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

CHECKPOINT_SUFFIXES = (".safetensors", ".json")


def run_and_checkpoint(path, which: str | None = None) -> tuple[Path, str]:
    """(run folder, checkpoint) named by `path`: a run folder, its checkpoints/ folder, or a
    checkpoint file in it (RUN/checkpoints/best.safetensors, last.json, ...). `which`
    (best or last) is the default, and must agree with a checkpoint file's name."""
    path = Path(path)
    if path.name == "checkpoints" and path.is_dir() and (path.parent / "config.json").is_file():
        return path.parent, which or "best"
    named = path.stem if path.suffix in CHECKPOINT_SUFFIXES else None
    if path.parent.name != "checkpoints" or named not in ("best", "last"):
        if path.is_file():
            raise AelabError(f"{path} is a file; give the run folder (the folder holding "
                             "config.json and checkpoints/), or one of its checkpoints, "
                             "RUN_DIR/checkpoints/best.safetensors or last.safetensors")
        return path, which or "best"
    if which is not None and which != named:
        raise AelabError(f"{path} is the {named!r} checkpoint but --checkpoint says {which!r}; "
                         "drop one of them")
    return path.parent.parent, named


def evaluate_run(run_dir, which: str | None = None, *, data_dir=None, device: str = "auto",
                 noise: str | None = None, log=print, dataset: str | None = None,
                 dataset_options: dict | None = None, iw_samples: int | None = None,
                 refine_steps: int = 0) -> dict:
    """Test-set metrics of a run folder's checkpoint, with PCA at the same code size;
    written to RUN_DIR/eval.json (RUN_DIR/eval-noise-<spec>.json with `noise`) and returned.

    run_dir may also name a checkpoint file (RUN_DIR/checkpoints/last.safetensors); which:
    best or last (default: the file's, else best); see run_and_checkpoint.

    noise: corrupt the test inputs ("gaussian:0.3", "masking:0.5"; fixed seed) and score
    the reconstructions against the clean images; PCA projects the same corrupted inputs
    (pca_sse_per_image is then denoising by PCA, like for like). Models with an
    `extra_metrics(images)` method (the VAE's likelihood bounds) add their own entries.

    dataset (and its options): evaluate on other data than the run was trained on (a
    registered name or a path), written to RUN_DIR/eval-on-<name>.json. A warning goes to
    stderr whenever the data differs from the training data (its checksum).

    A run trained on binarized images (binarize "dynamic" or "static") is scored on the
    test set binarized once with BINARIZE_TEST_SEED, as in the likelihood literature.
    iw_samples: importance samples for a VAE's likelihood bound (default: 5000, the
    papers' K, for a binarized run; else 100). Its estimated time is logged a few
    seconds in (BoundProgress).

    refine_steps: refine each test image's code by that many gradient steps through the
    frozen decoder before scoring (refined_sse, below), written to
    RUN_DIR/eval-refine-<steps>.json."""
    if refine_steps < 0:
        raise AelabError(f"--refine-steps {refine_steps}: give 0 or more")
    if refine_steps and noise is not None:
        raise AelabError("--refine-steps fits the code to the input image, so it cannot be "
                         "combined with --noise (it would fit the noise); use one or the other")
    run_dir, which = run_and_checkpoint(run_dir, which)
    dev = resolve_device(device)
    run = load_run(run_dir, which, device=dev)
    ds, opts, other, test_x, test_y, info = _test_data(run, dataset, dataset_options, data_dir, log)
    binarized = run.config.binarize != "none"
    iw_k = iw_samples if iw_samples is not None else (5000 if binarized else 100)
    if iw_k < 1:
        raise AelabError(f"--iw-samples {iw_k}: give at least 1")
    corrupt_fn, noisy = _noisy_inputs(noise, dev)
    if refine_steps:
        sse = refined_sse(run.model, test_x.to(dev), refine_steps, run.config.eval_batch_size)
    else:
        sse = reconstruction_sse(run.model, test_x.to(dev), run.config.eval_batch_size, corrupt_fn)
    result = summarize(sse, test_y, pixels=math.prod(image_shape(run.model)))
    if spec(run.model).likelihood:  # a VAE: its likelihood bounds
        result.update(_likelihood_metrics(run.model, test_x.to(dev), iw_k, log))
        result["binarize"] = run.config.binarize
    k = int(run.model.latent_dim)
    result["pca_sse_per_image"] = _pca_sse(ds, opts, test_x, k, noisy)
    result["pca_input"] = "clean" if noise is None else f"noisy ({noise})"
    trained = run.meta.get("data_checksum")
    metrics = read_metrics(run.run_dir)
    result.update(
        run_dir=str(run.run_dir), checkpoint=which, model=run.config.model, latent_dim=k,
        params=count_parameters(run.model), epoch=run.meta["epoch"], dataset=ds,
        data_checksum=info["checksum"], trained_data_checksum=trained, step=run.meta.get("step"),
        train_seconds=train_seconds([m for m in metrics if m["epoch"] <= run.meta["epoch"]]),
        noise=noise, refine_steps=refine_steps, refine_lr=REFINE_LR if refine_steps else None,
        hardware=hardware(),
    )
    name = eval_file_name(noise, info["name"] if other else None, refine_steps)
    atomic_write_json(Path(run.run_dir) / name, result)
    result["eval_file"] = str(Path(run.run_dir) / name)
    return result


def _test_data(run, dataset, dataset_options, data_dir, log):
    """The test images to score the run on: its own dataset's, or `dataset`'s (binarized
    once when the run trained on binarized images); warns when they differ from the data
    it was trained on. Returns (name, load options, other, images, labels, info)."""
    other = dataset is not None and dataset != run.config.dataset
    ds = dataset if other else run.config.dataset
    opts = dict(data_dir=data_dir, options=(dataset_options if other else run.config.dataset_options),
                log=log)
    test_x, test_y = data_mod.load_dataset(ds, "test", **opts)
    info = data_mod.dataset_info(ds, **opts)
    if run.config.binarize != "none":
        test_x = binarize_u8(test_x, BINARIZE_TEST_SEED)
    trained = run.meta.get("data_checksum")
    if trained is not None and info["checksum"] != trained:
        why = "another dataset than" if other else "data that differs from"
        print(f"warning: evaluating {run.run_dir} on {why} the data it was trained on "
              f"({ds}: checksum {info['checksum']}, trained on {trained})", file=sys.stderr)
    return ds, opts, other, test_x, test_y, info


def _noisy_inputs(noise: str | None, device) -> tuple:
    """(corrupt function or None, the list it appends each corrupted batch to), so that PCA
    sees the very inputs the model saw; a bad spec fails before any work."""
    if noise is None:
        return None, []
    parse_noise(noise)
    gen, noisy = epoch_generator(12345, 0, device), []

    def corrupt_fn(x):
        noisy.append(corrupt(x, noise, gen))
        return noisy[-1]

    return corrupt_fn, noisy


def _pca_sse(ds: str, opts: dict, test_x, k: int, noisy: list) -> float:
    """Exact PCA's SSE per image at k components: of the clean test images, or (noisy
    inputs given) of the model's noisy inputs (N, 1, 28, 28) projected on the clean training
    images' components, scored against the clean images."""
    if not noisy:
        return pca.test_sse(ds, k, **opts).mean().item()
    basis = pca.dataset_basis(ds, **opts)
    return pca.sse(basis, test_x, k, torch.cat(noisy).cpu()).mean().item()


# --- a VAE's likelihood bound, with an estimate of its time ----------------------------

ESTIMATE_AFTER_S = 3.0  # seconds of the bound timed before its total time is estimated


def _likelihood_metrics(model, images_u8, k: int, log) -> dict:
    """model.extra_metrics (a VAE's -ELBO, KL and IWAE bound) with progress and an estimate."""
    log(f"IWAE bound with k={k} on {len(images_u8):,} test images: timing the first images")
    progress = BoundProgress(k, log)
    with torch.inference_mode():
        return model.extra_metrics(images_u8, iw_samples=k, progress=progress)


def duration(seconds: float) -> str:
    """45 -> '45 s', 1860 -> '31 min', 9000 -> '2.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


class BoundProgress:
    """progress(done, total) for the importance-weighted bound, which runs in chunks: once
    ESTIMATE_AFTER_S seconds past the first chunk are timed, log the estimated total time
    (the first chunk is left out of the rate: it pays one-off costs such as the weights'
    re-layout); then progress, with the time left at the rate so far, about every 10%."""

    def __init__(self, k: int, log=print, clock=time.perf_counter):
        self.k, self.log, self.clock = k, log, clock
        self.start = clock()
        self.first: tuple[int, float] | None = None  # (images, time) after the first chunk
        self.estimated = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self.first is None:
            self.first = (done, now)
        timed = done - self.first[0]  # images since the first chunk
        rate = (now - self.first[1]) / max(timed, 1)  # seconds per image
        if not self.estimated and timed and now - self.first[1] >= ESTIMATE_AFTER_S and done < total:
            self.estimated = True
            self.log(self.estimate(done, total, now - self.start + rate * (total - done)))
        step = max(1, total // 10)
        if done // step != (done - 1) // step or done == total:  # about every 10%
            left = f" (about {duration(rate * (total - done))} left)" \
                if self.estimated and done < total else ""
            self.log(f"  likelihood bound, {self.k} importance samples: {done:,}/{total:,} images{left}")

    def estimate(self, done: int, total: int, seconds: float) -> str:
        text = (f"IWAE bound with k={self.k} on {total:,} test images: about {duration(seconds)} "
                f"on this machine (measured on the first {done:,} images)")
        if seconds >= 60:
            text += "; --iw-samples K for a quicker, looser bound"
        return text


# --- the table ------------------------------------------------------------------------

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


def run_labels(results: list[dict]) -> list[str]:
    """A name per result for the table's run column: its run folder's name; where two
    share one, enough parent folders to tell them apart (a/conv, b/conv), then the
    checkpoint (conv (last)), then a number (conv #2)."""
    paths = [Path(r["run_dir"]).absolute().parts if r.get("run_dir") else ("-",) for r in results]
    labels = [p[-1] for p in paths]
    for depth in range(2, max(map(len, paths)) + 1):  # only where the folders differ
        clash = {x for x in labels if len({p for y, p in zip(labels, paths, strict=True) if y == x}) > 1}
        labels = [str(Path(*p[-depth:])) if x in clash else x for x, p in zip(labels, paths, strict=True)]
    clash = {x for x in labels if labels.count(x) > 1 and x != "-"}
    labels = [f"{x} ({r['checkpoint']})" if x in clash and r.get("checkpoint") else x
              for x, r in zip(labels, results, strict=True)]
    seen: dict[str, int] = {}
    for i, x in enumerate(labels):
        seen[x] = seen.get(x, 0) + 1
        labels[i] = f"{x} #{seen[x]}" if seen[x] > 1 and x != "-" else x
    return labels


def format_table(results: list[dict], markdown: bool = False) -> str:
    """The comparison table printed by `aelab eval` and `make demo`, a row per run named by
    its folder; a VAE's -ELBO, KL and importance-weighted NLL bound (with its K) join it
    when present. Under --noise the PCA column is PCA applied to the same noisy inputs."""
    columns = list(COLUMNS)
    if any(r.get("noise") for r in results):
        columns = [("PCA SSE/image (same k, same noisy input)", *c[1:]) if c[1] == "pca_sse_per_image"
                   else c for c in columns]
    if any("iwae_nll_nats" in r for r in results):
        columns += VAE_COLUMNS
    header = ["run"] + [h for h, _, _ in columns]

    def cell(r, key, fmt):
        if key not in r:
            return "-"
        text = fmt.format(r[key])
        return f"{text} ({r['iw_samples']})" if key == "iwae_nll_nats" else text

    rows = [[name] + [cell(r, key, fmt) for _, key, fmt in columns]
            for name, r in zip(run_labels(results), results, strict=True)]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt_row(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # names left, numbers right
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    lines = [fmt_row(header), fmt_row(["-" * w for w in widths])]
    return "\n".join(lines + [fmt_row(r) for r in rows])


# --- code refinement: a better code for each test image, through the frozen decoder -------

REFINE_LR = 0.1  # Adam's step, in units of each code dimension's spread over the batch


def refined_sse(model, images_u8: torch.Tensor, steps: int, batch_size: int = 1000,
                lr: float = REFINE_LR) -> torch.Tensor:
    """Per-image squared error (N,) float64 on the CPU after refining each image's code.

    Code refinement ("semi-amortised" encoding: Kim et al., ICML 2018; the amortisation gap
    of Cremer et al., ICML 2018): start from the encoder's code z0 = encode(x) and take
    `steps` Adam steps on z alone to lower ||decode(z) - x||^2, the decoder frozen. The
    code keeps its size; only the encoder's answer is improved, by the decoder's own
    gradient, as PCA's projection is the best code for its linear decoder. Steps are scaled
    per code dimension by that dimension's spread in the batch (so one setting fits every
    model), and decay on a cosine to zero. Adam is elementwise and the loss a sum over
    images, so each image is refined independently of its batch. The best code seen per
    image is kept, so the error never exceeds the encoder's (steps=0)."""
    if steps < 0:
        raise AelabError(f"--refine-steps {steps}: give 0 or more")
    was_training = model.training
    model.eval()
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    out = []
    try:
        for i in range(0, len(images_u8), batch_size):
            x = to_float(images_u8[i : i + batch_size])
            with torch.no_grad():
                z0 = model.encode(x).float()
                scale = _code_scale(z0)
            u = torch.zeros_like(z0, requires_grad=True)  # z = z0 + u * scale
            opt = torch.optim.Adam([u], lr=lr)
            best = torch.full((len(x),), float("inf"), device=x.device)
            for t in range(steps + 1):
                err = (model.decode(z0 + u * scale).float() - x).square().flatten(1).sum(1)  # (B,)
                best = torch.minimum(best, err.detach())
                if t == steps:
                    break
                for g in opt.param_groups:
                    g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t / steps))
                opt.zero_grad(set_to_none=True)
                err.sum().backward()
                opt.step()
            out.append(best.double().cpu())
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _code_scale(z: torch.Tensor) -> torch.Tensor:
    """Each code dimension's spread over the batch (1, L); a dimension that does not vary
    takes the spread of all the codes, and codes that are all equal take 1."""
    overall = z.std().item() if z.numel() > 1 else 0.0
    fallback = overall if overall > 1e-6 else 1.0
    per_dim = z.std(0, keepdim=True) if len(z) > 1 else torch.zeros_like(z[:1])
    return torch.where(per_dim > 1e-6, per_dim, torch.full_like(per_dim, fallback))
