"""The seed settings (batch 64, 13 epochs) on a GPU: total training seconds per variant.

    python benchmarks/gpu_train.py [--device cuda] [--epochs 13] [--variants eager bf16 graphs]

Prints one row per (model, variant): the sum of the epochs' training seconds (what the
targets are about: conv <= 3 s, linear <= 2 s for 13 epochs on an H200), images per
second, the test MSE after the last epoch (speed must not cost quality), and the time of
the first epoch separately (it includes torch.compile's and CUDA-graph capture's warm-up).
Then, for the fastest variant, a profile of a few steps: how many kernels one step
launches and how much of the step's wall time the GPU is busy, which says whether kernel
launches or arithmetic limit it. Runs on the CPU too (--device cpu) for a dry run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

VARIANTS = {  # name -> TrainConfig fields
    "eager": {},
    "bf16": {"precision": "bf16"},
    "compile": {"compile": True},
    "graphs": {"cuda_graphs": True},
    "graphs-bf16": {"cuda_graphs": True, "precision": "bf16"},
}


def run_one(model: str, variant: str, a) -> dict:
    from aelab.config import TrainConfig
    from aelab.trainer import train

    cfg = TrainConfig(model=model, epochs=a.epochs, device=a.device, limit=a.limit,
                      figure_every=10**6, **VARIANTS[variant])
    with tempfile.TemporaryDirectory() as d:
        r = train(cfg, f"{d}/run", data_dir=a.data_dir, log=lambda *x: None, progress=False)
    secs = [m["epoch_seconds"] for m in r.metrics]
    n = r.metrics[0]["images_per_second"] * secs[0]
    return {"model": model, "variant": variant, "total_s": sum(secs), "first_s": secs[0],
            "rest_median_s": statistics.median(secs[1:]) if len(secs) > 1 else secs[0],
            "img_s": n * len(secs) / sum(secs), "test_mse": r.metrics[-1]["test_mse"]}


def profile_steps(model: str, variant: str, a, steps: int = 20) -> str:
    """Kernels per step and GPU busy fraction, from torch.profiler over `steps` steps."""
    from torch.profiler import ProfilerActivity, profile

    from aelab.config import TrainConfig
    from aelab.trainer import Trainer

    cfg = TrainConfig(model=model, epochs=1, device=a.device, figure_every=10**6,
                      **VARIANTS[variant])
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(cfg, f"{d}/run", data_dir=a.data_dir, log=lambda *x: None, progress=False)
        t._load_data()
        t._build()
        t.train_x = t.train_x[: 64 * (steps + 10)]
        t.train_epoch(1)  # warm-up: compile, capture
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device == "cuda" else [])
        with profile(activities=acts) as prof:
            t0 = time.perf_counter()
            t.train_epoch(2)
            wall = time.perf_counter() - t0
    n_steps = len(t.train_x) // 64
    events = prof.key_averages()
    gpu_us = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0))
                 for e in events)
    kernels = sum(e.count for e in events
                  if getattr(e, "device_type", None) is not None and str(e.device_type).endswith("CUDA"))
    return (f"{model}/{variant}: {n_steps} steps in {wall * 1e3:.1f} ms "
            f"({wall / n_steps * 1e6:.0f} us/step); GPU busy {gpu_us / 1e3:.1f} ms "
            f"({gpu_us / 1e6 / wall:.0%} of wall); ~{kernels / max(n_steps, 1):.0f} GPU kernels/step")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="(default: cuda)")
    p.add_argument("--epochs", type=int, default=13, help="(default: 13, the seed's)")
    p.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    p.add_argument("--models", nargs="+", default=["linear", "conv"], help="(default: linear conv)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help=f"(default: {' '.join(VARIANTS)})")
    p.add_argument("--data-dir", default=None, help="(default: $AELAB_DATA_DIR or ./data)")
    p.add_argument("--no-profile", action="store_true", help="skip the kernel profile")
    a = p.parse_args(argv)
    import torch

    name = torch.cuda.get_device_name() if a.device == "cuda" else a.device
    print(f"torch {torch.__version__}, {name}; batch 64, {a.epochs} epochs", flush=True)
    print("| model | variant | train s (sum of epochs) | first epoch s | later epoch median s "
          "| img/s | test MSE |\n|---|---|---:|---:|---:|---:|---:|", flush=True)
    best: dict[str, tuple[float, str]] = {}
    for model in a.models:
        for variant in a.variants:
            try:
                r = run_one(model, variant, a)
            except Exception as e:
                print(f"| {model} | {variant} | failed: {type(e).__name__}: {str(e)[:120]} |||||",
                      flush=True)
                continue
            print(f"| {model} | {variant} | {r['total_s']:.2f} | {r['first_s']:.2f} | "
                  f"{r['rest_median_s']:.3f} | {r['img_s']:,.0f} | {r['test_mse']:.5f} |", flush=True)
            best[model] = min(best.get(model, (float("inf"), "")), (r["total_s"], variant))
    if not a.no_profile:
        for model, (_, variant) in best.items():
            print(profile_steps(model, variant, a), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
