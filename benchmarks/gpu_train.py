"""The seed settings (batch 64, 13 epochs) on a GPU: total training seconds per variant.

    python benchmarks/gpu_train.py [--device cuda] [--epochs 13] [--variants eager bf16 graphs]

Prints one row per (model, variant): the step that trained (as the run's config.json
records it), the sum of the epochs' training seconds (what the
targets are about: conv <= 3 s, linear <= 2 s for 13 epochs on an H200), that sum's
speed-up over the eager variant of the same model in the same run, images per second, the
test MSE after the last epoch (speed must not cost quality), and the time of the first
epoch separately (it includes torch.compile's and CUDA-graph capture's warm-up). Then, for
the fastest variant, a profile of a few steps: how many kernels one step launches and how
much of the step's wall time the GPU is busy, which says whether kernel launches or
arithmetic limit it. Runs on the CPU too (--device cpu) for a dry run; there the variants
that need CUDA are left out unless named.

It uses aelab's public API only (`aelab.train`, `aelab.Trainer.prepare`), and imports the
package from this checkout's src/ when run from it, so a GPU machine's own python3 needs
only aelab's dependencies (torch 2.1 or later). A variant that fails prints its error in its
row (its traceback on stderr), the others still run, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
VARIANTS = {  # name -> TrainConfig fields
    "eager": {},
    "bf16": {"precision": "bf16"},
    "compile": {"compile": True},
    "graphs": {"cuda_graphs": True},
    "graphs-bf16": {"cuda_graphs": True, "precision": "bf16"},
}
BATCH = 64  # the seed's, and TrainConfig's default


def run_one(model: str, variant: str, a) -> dict:
    import aelab

    _reset_compiler()  # each variant compiles afresh: its first epoch shows its own warm-up
    cfg = aelab.TrainConfig(model=model, epochs=a.epochs, device=a.device, limit=a.limit,
                            figure_every=10**6, **VARIANTS[variant])
    with tempfile.TemporaryDirectory() as d:
        r = aelab.train(cfg, f"{d}/run", data_dir=a.data_dir, log=lambda *x: None, progress=False)
        step = json.loads((r.run_dir / "config.json").read_text())["step"]  # which one trained
    secs = [m["epoch_seconds"] for m in r.metrics]  # each timed between device synchronisations
    n = r.metrics[0]["images_per_second"] * secs[0]  # images per epoch
    return {"model": model, "variant": variant, "step": step, "total_s": sum(secs), "first_s": secs[0],
            "rest_median_s": statistics.median(secs[1:]) if len(secs) > 1 else secs[0],
            "img_s": n * len(secs) / sum(secs), "test_mse": r.metrics[-1]["test_mse"]}


def profile_steps(model: str, variant: str, a) -> str:
    """Kernels per step and GPU busy fraction, from torch.profiler over one epoch of
    `a.profile_steps` steps, after one such epoch of warm-up (compiling, graph capture)."""
    from torch.profiler import ProfilerActivity, profile

    import aelab
    from aelab.runtime import flushing_denormals

    _reset_compiler()
    cfg = aelab.TrainConfig(model=model, epochs=2, device=a.device, limit=BATCH * a.profile_steps,
                            figure_every=10**6, **VARIANTS[variant])
    cuda = a.device == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with tempfile.TemporaryDirectory() as d, flushing_denormals():  # as train() runs
        t = aelab.Trainer(cfg, f"{d}/run", data_dir=a.data_dir, log=lambda *x: None, progress=False)
        t.prepare()
        t.train_epoch(1)  # warm-up; ends with .item(), as the profiled epoch does
        with profile(activities=acts) as prof:
            _sync(cuda)
            t0 = time.perf_counter()
            t.train_epoch(2)
            wall = time.perf_counter() - t0
    n_steps = t.steps_per_epoch()
    # kernels (and copies) are the events that ran on the GPU; the CPU ops that launched
    # them also carry their time, so summing every event would count it twice
    on_gpu = [e for e in prof.key_averages() if str(getattr(e, "device_type", "")).endswith("CUDA")]
    gpu_us = sum(_self_gpu_us(e) for e in on_gpu)
    kernels = sum(e.count for e in on_gpu)
    return (f"{model}/{variant}: {n_steps} steps in {wall * 1e3:.1f} ms "
            f"({wall / n_steps * 1e6:.0f} us/step); GPU busy {gpu_us / 1e3:.1f} ms "
            f"({gpu_us / 1e6 / wall:.0%} of wall); ~{kernels / n_steps:.0f} GPU kernels/step")


def _row(r: dict, eager_s: float | None) -> str:
    ratio = f"{eager_s / r['total_s']:.2f}" if eager_s else "-"
    return (f"| {r['model']} | {r['variant']} | {r['step']} | {r['total_s']:.3f} | {ratio} | "
            f"{r['first_s']:.3f} | {r['rest_median_s']:.4f} | {r['img_s']:,.0f} | {r['test_mse']:.5f} |")


def warm_up(a) -> None:
    """A discarded 4-step run of each model, so that the first row does not pay alone for
    the device's start (CUDA context, cuBLAS and cuDNN handles; oneDNN's on the CPU)."""
    tiny = argparse.Namespace(**{**vars(a), "epochs": 1, "limit": 4 * BATCH})
    for model in a.models:
        try:
            run_one(model, "eager", tiny)
        except Exception:  # its rows will say what is wrong
            pass


def _self_gpu_us(event) -> float:
    # torch >= 2.4 calls it device time, and warns on the older cuda name
    if hasattr(event, "self_device_time_total"):
        return event.self_device_time_total
    return event.self_cuda_time_total


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _reset_compiler() -> None:
    """Forget earlier compilations: each new model would otherwise count as a recompile of
    the same code, and past torch._dynamo's limit (8) it silently runs eagerly."""
    import torch

    reset = getattr(getattr(torch, "compiler", None), "reset", None)  # torch >= 2.1
    if reset is not None:
        reset()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="(default: cuda)")
    p.add_argument("--epochs", type=int, default=13, help="(default: 13, the seed's)")
    p.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    p.add_argument("--models", nargs="+", default=["linear", "conv"], help="(default: linear conv)")
    p.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                   help=f"(default: {' '.join(VARIANTS)}; on the CPU those without CUDA graphs)")
    p.add_argument("--data-dir", default=None, help="(default: aelab's data folder, see docs/data.md)")
    p.add_argument("--profile-steps", type=int, default=30,
                   help="steps in the profiled epoch (default: 30)")
    p.add_argument("--no-profile", action="store_true", help="skip the kernel profile")
    a = p.parse_args(argv)
    if a.variants is None:
        a.variants = [v for v in VARIANTS if a.device == "cuda" or "cuda_graphs" not in VARIANTS[v]]
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    if SRC.is_dir():  # this checkout's aelab, not another installed one
        sys.path.insert(0, str(SRC))
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
        sys.exit(f"--device cuda: no CUDA GPU is visible to PyTorch {torch.__version__} ({built}); "
                 "use a machine with one, or --device cpu for a dry run")
    name = torch.cuda.get_device_name() if a.device == "cuda" else a.device
    print(f"torch {torch.__version__}, {name}; batch {BATCH}, {a.epochs} epochs, "
          f"{a.limit or 'all'} training images", flush=True)
    warm_up(a)
    best, failed = table(a)
    for model, (_, variant) in best.items() if not a.no_profile else ():
        try:
            print(profile_steps(model, variant, a), flush=True)
        except Exception as e:
            print(f"{model}/{variant}: profile failed: {_error(e)}", flush=True)
            failed += 1
    if failed:
        print(f"{failed} of the runs above failed; their tracebacks are on stderr", flush=True)
    return 1 if failed else 0


def table(a) -> tuple[dict[str, tuple[float, str]], int]:
    """Prints the table; returns each model's fastest (total seconds, variant) and the
    number of runs that failed."""
    print("| model | variant | step | train s (sum of epochs) | x eager | first epoch s "
          "| later epoch median s | img/s | test MSE |\n|---|---|---|---:|---:|---:|---:|---:|---:|",
          flush=True)
    best: dict[str, tuple[float, str]] = {}
    failed = 0
    for model in a.models:
        eager = None
        for variant in a.variants:
            try:
                r = run_one(model, variant, a)
            except Exception as e:
                print(f"| {model} | {variant} | failed: {_error(e)} |||||||", flush=True)
                failed += 1
                continue
            eager = r["total_s"] if variant == "eager" else eager
            print(_row(r, eager), flush=True)
            best[model] = min(best.get(model, (float("inf"), "")), (r["total_s"], variant))
    return best, failed


def _error(e: Exception) -> str:
    """One line for a table cell; the whole traceback goes to stderr."""
    traceback.print_exc()
    return f"{type(e).__name__}: {' '.join(str(e).split())[:120]}".replace("|", "/")


if __name__ == "__main__":
    sys.exit(main())
