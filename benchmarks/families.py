"""Training images per second of every autoencoder family, beside the plain `conv` autoencoder.

    python benchmarks/families.py [--pairs 3] [--limit 6400] [--latent-dim 16]
                                  [--families sparse,aae] [--backbone conv]

Each round trains every model once, in turn (`aelab train NAME --epochs 2`, a fresh
process each, on the first `--limit` MNIST training images), and reads the second epoch's
images per second from its metrics.jsonl (the first warms up). The anchors run in every
round beside the families: the seed's `conv` autoencoder through its default step (the
hand-written one) and through autograd (`--no-fast`, the path every family takes), and the
plain `vae`. It prints the median over the rounds, each family's ratio to `conv` through
autograd, whether it reaches the issue's 10,000 img/s, and the CPU model: figures from
another CPU do not compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aelab.models.family import family_names
from aelab.runtime import cpu_model

TARGET = 10_000  # img/s, conv backbone, 16 numbers, on the 2-core CPU (issue 20)
# (label, model, extra `aelab train` arguments); the families are added after these
ANCHORS = [("conv (hand-written step)", "conv", []), ("conv (autograd)", "conv", ["--no-fast"])]


def runs(a) -> list[tuple[str, str, list[str]]]:
    families = a.families.split(",") if a.families else family_names()
    unknown = sorted(set(families) - set(family_names()))
    if unknown:
        sys.exit(f"unknown families {unknown}; choose from {', '.join(family_names())}")
    out = list(ANCHORS)
    for name in families:
        args = {"latent_dim": a.latent_dim, "backbone": a.backbone}
        out.append((name, name, ["--model-args", json.dumps(args)]))
    return out


def train_once(model: str, extra: list[str], a, run_dir: Path) -> float:
    """Images per second of the second epoch of a fresh `aelab train`."""
    cmd = [sys.executable, "-m", "aelab", "train", model, "--epochs", "2", "--limit", str(a.limit),
           "--run-dir", str(run_dir), "--device", "cpu", *extra]
    cmd += ["--data-dir", a.data_dir] if a.data_dir else []
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{model} failed:\n{p.stderr[-2000:]}")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return metrics[-1]["images_per_second"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3, help="rounds over every model (default 3)")
    ap.add_argument("--limit", type=int, default=6400, help="training images per epoch (default 6400)")
    ap.add_argument("--latent-dim", type=int, default=16, help="code size of the families (default 16)")
    ap.add_argument("--backbone", default="conv", choices=("conv", "mlp"))
    ap.add_argument("--families", default=None, help="comma-separated families (default: all)")
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args()
    todo = runs(a)
    speeds: dict[str, list[float]] = {label: [] for label, _, _ in todo}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.pairs):
            for i, (label, model, extra) in enumerate(todo):
                speeds[label].append(train_once(model, extra, a, Path(tmp) / f"{r}-{i}"))
    base = statistics.median(speeds["conv (autograd)"])
    print(f"CPU: {cpu_model()}; {a.pairs} rounds, {a.limit} images an epoch, families on the "
          f"{a.backbone} backbone with {a.latent_dim} numbers; median of the second epochs")
    print()
    print(f"| model | img/s | / conv (autograd) | >= {TARGET:,} |")
    print("|---|---:|---:|:---:|")
    for label, _, _ in todo:
        v = statistics.median(speeds[label])
        meets = "" if label.startswith("conv") else ("yes" if v >= TARGET else "no")
        print(f"| {label} | {v:,.0f} | {v / base:.2f}x | {meets} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
