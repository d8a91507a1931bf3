"""The library's `train()` with no preparation against the `aelab` command, epoch by epoch.

    python benchmarks/library_speed.py [--pairs 2] [--epochs 6] [--model linear] [--limit N]

Each run is a fresh process, and the variants take turns within each pair:

- `library`: `aelab.train(TrainConfig(...))` in a plain Python process, nothing prepared;
- `cli`: `aelab train` (which calls `aelab.runtime.prepare_process()` first);
- `library, no flush`: the library with its subnormal flushing switched off (the behaviour
  before it flushed for its training): what the flushing is worth on this CPU.

It prints the median seconds of each epoch over the pairs, the last epoch over the first,
the median epoch over the command's, whether the process's flush-denormal setting after
`train()` equals the one before, and how many of the final Adam moments are subnormal
(the numbers that make x86 slow when they are not flushed). Timings depend on the CPU
(Intel parts pay far more for subnormals than AMD ones), so the CPU model is printed too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aelab.runtime import cpu_model

# A child process: train with the library and report what the benchmark needs as JSON.
LIBRARY = r"""
import contextlib, json, sys
import aelab, aelab.train.trainer as trainer
from aelab.runtime import denormals_flushed
args = json.loads(sys.argv[1])
if args["no_flush"]:
    trainer.flushing_denormals = contextlib.nullcontext
before = denormals_flushed()
cfg = aelab.TrainConfig(model=args["model"], epochs=args["epochs"], limit=args["limit"], device="cpu")
r = aelab.train(cfg, args["run_dir"], data_dir=args["data_dir"], log=lambda m: None, progress=False)
print(json.dumps({"before": before, "after": denormals_flushed()}))
"""

SUBNORMAL = 1.1754944e-38  # the smallest normal float32


def run_variant(variant: str, a, root: Path, i: int) -> dict:
    run_dir = root / f"{variant.replace(' ', '').replace(',', '-')}-{i}"
    flags = {"model": a.model, "epochs": a.epochs, "limit": a.limit, "run_dir": str(run_dir),
             "data_dir": a.data_dir, "no_flush": variant == "library, no flush"}
    if variant == "cli":
        cmd = [sys.executable, "-m", "aelab", "train", a.model, "--epochs", str(a.epochs),
               "--run-dir", str(run_dir), "--device", "cpu"]
        cmd += ["--limit", str(a.limit)] if a.limit else []
        cmd += ["--data-dir", a.data_dir] if a.data_dir else []
    else:
        cmd = [sys.executable, "-c", LIBRARY, json.dumps(flags)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{variant} failed:\n{p.stderr[-2000:]}")
    state = json.loads(p.stdout.splitlines()[-1]) if variant != "cli" else {}
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"epochs": [m["epoch_seconds"] for m in metrics], **state,
            "subnormal": _subnormal_moments(run_dir)}


def _subnormal_moments(run_dir: Path) -> tuple[int, int]:
    """(subnormal, total) Adam moments in the run's last checkpoint."""
    from safetensors.torch import load_file

    tensors = load_file(str(run_dir / "checkpoints" / "last.safetensors"))
    moments = [t for k, t in tensors.items() if k.startswith("optim.") and t.is_floating_point()
               and t.dim() > 0]
    small = sum(int(((t != 0) & (t.abs() < SUBNORMAL)).sum()) for t in moments)
    return small, sum(t.numel() for t in moments)


VARIANTS = ("library", "cli", "library, no flush")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=2, help="rounds of all variants (default 2)")
    ap.add_argument("--epochs", type=int, default=6, help="epochs per run (default 6)")
    ap.add_argument("--model", default="linear", help="registered model (default linear)")
    ap.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    ap.add_argument("--data-dir", default=None, help="aelab's data folder (default: aelab's own)")
    a = ap.parse_args(argv)
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.pairs):
            order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
            for v in order:
                results[v].append(run_variant(v, a, Path(tmp), i))
    print(report(results, a))
    return 0


def report(results: dict, a) -> str:
    med = {v: [statistics.median(r["epochs"][e] for r in rs) for e in range(a.epochs)]
           for v, rs in results.items()}
    cli_epoch = statistics.median(med["cli"])
    lines = [f"{a.model}, {a.epochs} epochs, {a.limit or 'all'} training images, "
             f"{a.pairs} pair(s); CPU: {cpu_model()}",
             "", "| variant | " + " | ".join(f"epoch {e + 1} s" for e in range(a.epochs))
             + " | last / first | median epoch / cli's | flush setting kept | subnormal Adam moments |",
             "|---|" + "---:|" * (a.epochs + 4)]
    for v, rs in results.items():
        kept = ("-" if v == "cli" else
                "yes" if all(r["before"] == r["after"] for r in rs) else "NO")
        small, total = rs[-1]["subnormal"]
        lines.append(f"| {v} | " + " | ".join(f"{s:.2f}" for s in med[v])
                     + f" | {med[v][-1] / med[v][0]:.2f} | {statistics.median(med[v]) / cli_epoch:.2f}"
                     + f" | {kept} | {small:,} of {total:,} |")
    lib = med["library"]
    ok = (lib[-1] / lib[0] <= 1.3 and statistics.median(lib) / cli_epoch <= 1.3
          and all(r["before"] == r["after"] for r in results["library"]))
    lines += ["", f"target (library's last epoch <= 1.3x its first and its median epoch <= 1.3x "
              f"the command's; flush setting restored): {'met' if ok else 'MISSED'}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
