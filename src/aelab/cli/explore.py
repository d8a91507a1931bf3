"""aelab explore and aelab anomaly: looking inside trained models."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path

from ..apps import anomaly as anomaly_app
from ..apps import explore as explore_app
from ..results.anomaly import ANOMALY
from ..errors import AelabError
from ..models import MODELS
from .common import (add_checkpoint_arg, add_common_args, add_dataset_args, dataset_arg, json_object,
                     model_name)


# `aelab anomaly --preset NAME`: the settings of a result table, read from where that table
# is made, so the command and the table cannot drift apart
ANOMALY_PRESETS = {"results": ANOMALY}


def _preset_help(s: dict) -> str:
    """A preset as the flags it stands for."""
    epochs = ", ".join(f"{n} ({protocol})" for protocol, n in s["epochs"].items())
    return (f"the settings of `aelab results --only anomaly`, the README's figures: --model "
            f"{s['model']} --model-args '{json.dumps(s['model_args'])}' --train-options "
            f"'{json.dumps(s['train_options'])}' --epochs {epochs}")


def add_commands(sub) -> None:
    add_explore(sub)
    add_anomaly(sub)


def cmd_explore(a) -> int:
    t0 = time.perf_counter()
    paths = explore_app.explore(a.run_dir, a.out, which=a.checkpoint, dataset=dataset_arg(a.dataset),
                      dataset_options=a.dataset_options, data_dir=a.data_dir,
                      device=a.device or "auto", tsne_points=a.tsne_points,
                    neighbours=a.neighbours, seed=a.seed, manifold_size=a.manifold_size,
                    interpolate=a.interpolate)
    for p in paths:
        print(f"wrote {p}")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


def add_explore(sub) -> None:
    p = sub.add_parser("explore", help="latent-space figures for a trained run",
                       description=explore_app.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: RUN_DIR/explore)")
    add_checkpoint_arg(p)
    add_dataset_args(p, None, "images to look at", "the run's own dataset")
    p.add_argument("--tsne-points", type=int, default=explore_app.TSNE_POINTS,
                   help=f"random test images in the t-SNE panel; 0 draws PCA only "
                   f"(default: {explore_app.TSNE_POINTS})")
    p.add_argument("--neighbours", type=int, default=explore_app.N_NEIGHBOURS,
                   help=f"nearest training images per query (default: {explore_app.N_NEIGHBOURS})")
    p.add_argument("--interpolate", type=int, nargs=2, default=None, metavar=("I", "J"),
                   help="interpolate between test images I and J (indices into the test set, "
                   "from 0) (default: six seeded random pairs of different classes)")
    p.add_argument("--manifold-size", type=int, default=None, metavar="N",
                   help="tiles per side of manifold.png, the decoded 2-D lattice of codes; only "
                   f"for a model whose code has 2 numbers (default: {explore_app.MANIFOLD_SIZE} "
                   "for such a model, no grid for any other)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for subsamples, pairs, queries and random codes (default: 0)")
    add_common_args(p)
    p.set_defaults(func=cmd_explore)


def _anomaly_settings(a) -> dict:
    """model, model_args, train_options and epochs: the preset's (if any), then the flags
    given, which override it key by key."""
    preset = ANOMALY_PRESETS[a.preset] if a.preset else {}
    model_args = dict(preset.get("model_args", {}))
    if a.model_args is not None:
        model_args.update(json_object(a.model_args, "--model-args", '{"latent_dim": 8}'))
    if a.latent_dim is not None:
        model_args["latent_dim"] = a.latent_dim
    train_options = dict(preset.get("train_options", {}))
    if a.train_options is not None:
        train_options.update(json_object(a.train_options, "--train-options",
                                         '{"optimizer": "adamw", "lr": 0.003}'))
    default_epochs = preset.get("epochs", {}).get(a.protocol, anomaly_app.EPOCHS)
    epochs = a.epochs if a.epochs is not None else default_epochs
    return {"model": a.model or preset.get("model", "conv"), "model_args": model_args,
            "train_options": train_options, "epochs": epochs}


def _class_number(text: str) -> int:
    if not text.isdigit():
        raise AelabError(f"--holdout-digit {text!r}: give a class number (0 to 9 for MNIST) or all")
    return int(text)


def cmd_anomaly(a) -> int:
    digits = None if a.holdout_digit == "all" else [_class_number(a.holdout_digit)]
    s = _anomaly_settings(a)
    out = a.out or Path("runs") / f"anomaly-{s['model']}-{datetime.now():%Y%m%d-%H%M%S}"
    t0 = time.perf_counter()
    results = anomaly_app.anomaly(digits, out, dataset=dataset_arg(a.dataset),
                        dataset_options=a.dataset_options, seed=a.seed,
                        limit=a.limit, device=a.device or "auto", data_dir=a.data_dir,
                        protocol=a.protocol, pca_k=a.pca_k, **s)
    trained = "on one class" if a.protocol == "one-class" else "without one class"
    anomalous = "the other classes" if a.protocol == "one-class" else "the held-out class"
    preset = f" (preset {a.preset})" if a.preset else ""
    print(f"\n{s['model']}{preset} on {a.dataset}, {a.protocol}: {s['epochs']} epochs {trained} "
          f"each; score = RaPP NAP (squared error and SAP beside it); anomalies = {anomalous}; "
          "all test images scored")
    print(anomaly_app.format_table(results, markdown=False))
    print(f"wrote {out / 'anomaly.md'} and {out / 'anomaly.json'} "
          f"in {time.perf_counter() - t0:.0f}s")
    return 0


def add_anomaly(sub) -> None:
    p = sub.add_parser("anomaly", help="anomaly detection by an autoencoder's RaPP score (and "
                       "its reconstruction error), one-class or leave-one-out, beside exact PCA",
                       description=anomaly_app.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", default="one-class", choices=anomaly_app.PROTOCOLS,
                   help="one-class: train on the class alone, the other nine are anomalies "
                   "(Ruff et al. 2018); leave-one-out: train on the other nine, the class is "
                   "the anomaly (default: one-class)")
    p.add_argument("--holdout-digit", "--digit", dest="holdout_digit", required=True,
                   metavar="{0..9,all}",
                   help="the class the protocol singles out (one-class: the normal class; "
                   "leave-one-out: the held-out one); `all` takes each in turn (required)")
    p.add_argument("--pca-k", type=int, default=None, metavar="K",
                   help="components of the exact-PCA baseline scored beside the model "
                   f"(default: {anomaly_app.PCA_K['one-class']} for one-class, "
                   f"{anomaly_app.PCA_K['leave-one-out']} for leave-one-out)")
    p.add_argument("--preset", default=None, choices=sorted(ANOMALY_PRESETS),
                   help="; ".join(f"{name}: {_preset_help(s)}" for name, s in ANOMALY_PRESETS.items())
                   + "; flags given beside it override it (default: none, the quicker conv for "
                   f"{anomaly_app.EPOCHS} epochs)")
    p.add_argument("--model", default=None, type=model_name, metavar="MODEL",
                   help=f"a registered model ({', '.join(sorted(MODELS))}) or your own as "
                   "module:attr (default: conv, or the preset's)")
    p.add_argument("--latent-dim", type=int, default=None,
                   help="code size, for models that take one (default: the model's own)")
    p.add_argument("--model-args", default=None, metavar="JSON",
                   help='other model arguments as a JSON object, e.g. \'{"hidden": [256, 64]}\' '
                   "(default: {}, or the preset's)")
    p.add_argument("--train-options", default=None, metavar="JSON",
                   help="other training settings (TrainConfig fields) as a JSON object, e.g. "
                   '\'{"optimizer": "adamw", "schedule": "onecycle", "lr": 0.003}\'; not those '
                   "set by the flags here (model, epochs, seed, limit, device, dataset) or by the "
                   "protocol (exclude_digits) (default: {}, or the preset's)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs per class; {anomaly_app.EPOCHS} keeps `all` with conv to a few "
                   f"minutes on a laptop CPU (default: {anomaly_app.EPOCHS}, or the preset's)")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N remaining training images (default: all)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    add_dataset_args(p, "mnist", "what to train and score on")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: runs/anomaly-<model>-<timestamp>)")
    add_common_args(p)
    p.set_defaults(func=cmd_anomaly)
