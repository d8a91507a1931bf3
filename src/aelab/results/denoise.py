"""The denoise group: for each noise, the noisy input, the Wiener filter (plain and
clipped) and aelab's denoiser trained on that noise, on the same corrupted test inputs."""

from __future__ import annotations

import statistics
from pathlib import Path

from ..apps.denoise import EVAL_NOISE_SEED, FIT_NOISE_SEED
from ..apps.denoise import baselines as wiener_baselines
from ..presets import DENOISE_NOISES
from ..runs import NOT_RECORDED, read_metrics, trained_on
from .cache import best_eval, cached, on_this_machine
from .registry import Plan, register_group
from .render import joined, markdown_table
from ..runs import train_seconds
from .training import ensure_trained, preset_config

NOISES = DENOISE_NOISES
DENOISE_TARGET = ("gaussian:0.3", 3.0)  # dB above the Wiener filter


def denoise_preset(noise: str) -> str:
    return "denoise-" + noise.replace(":", "-")


def _baseline_rows(noise: str, plan: Plan) -> list[dict]:
    """The noisy input and the Wiener filter for one noise (cached in RUNS_ROOT)."""
    path = Path(plan.root) / f"wiener-{noise.replace(':', '-')}{'-quick' if plan.quick else ''}.json"
    key = {"noise": noise, "fit_seed": FIT_NOISE_SEED, "eval_seed": EVAL_NOISE_SEED}
    base = cached(path, key, lambda: on_this_machine(wiener_baselines(noise, data_dir=plan.data_dir,
                                                                      log=plan.log)))
    return [{**b, "kind": "baseline", "hardware": b.get("hardware", NOT_RECORDED)} for b in base]


def _model_row(noise: str, plan: Plan) -> dict:
    """The preset trained on `noise`, scored on the same corrupted test inputs."""
    preset = denoise_preset(noise)
    cfg = preset_config(preset, 0, plan.quick, plan.device)
    run_dir = Path(plan.root) / f"{preset}-seed0"
    ensure_trained(cfg, run_dir, force=plan.force, data_dir=plan.data_dir, log=plan.log)
    ev = best_eval(run_dir, noise=noise, data_dir=plan.data_dir, device=plan.device or "auto")
    metrics = read_metrics(run_dir)
    return {"noise": noise, "method": cfg.model, "psnr_db": ev["psnr_db_mean_per_image"],
            "sse_per_image": ev["sse_per_image"], "kind": "aelab", "preset": preset,
            "latent_dim": ev["latent_dim"], "params": ev["params"], "epochs": cfg.epochs,
            "train_seconds": train_seconds(metrics), "run_dir": str(run_dir),
            "hardware": trained_on(metrics), "eval_hardware": ev.get("hardware") or NOT_RECORDED}


def _table(rows: list[dict]) -> str:
    methods = [("noisy", "noisy input"), ("wiener", "Wiener filter"),
               ("wiener-clipped", "Wiener, clipped to [0, 1]")]
    methods += [(m, f"aelab `{m}`") for m in sorted({r["method"] for r in rows if r["kind"] == "aelab"})]
    cells = []
    for noise in NOISES:
        by = {r["method"]: r for r in rows if r["noise"] == noise}
        if by:
            cells.append([f"`{noise}`"] + [f"{by[m]['psnr_db']:.2f} dB / {by[m]['sse_per_image']:.2f}"
                                           if m in by else "-" for m, _ in methods])
    return markdown_table(["noise", *(label for _, label in methods)], cells, "l" + "r" * len(methods))


def _target(rows: list[dict]) -> str:
    noise, margin = DENOISE_TARGET
    by = {r["method"]: r for r in rows if r["noise"] == noise}
    ours = [r for r in rows if r["noise"] == noise and r["kind"] == "aelab"]
    if not ours or "wiener" not in by:
        return ""
    best = max(ours, key=lambda r: r["psnr_db"])
    gain = best["psnr_db"] - by["wiener"]["psnr_db"]
    clipped = (f" (and {best['psnr_db'] - by['wiener-clipped']['psnr_db']:+.2f} dB above the "
               "clipped filter)" if "wiener-clipped" in by else "")
    return (f"\nTarget at `{noise}`: at least {margin:.0f} dB above the Wiener filter "
            f"({by['wiener']['psnr_db']:.2f} dB): {best['psnr_db']:.2f} dB, {gain:+.2f} dB, "
            f"**{'met' if gain >= margin else 'missed'}**{clipped}.\n")


def _how_trained(rows: list[dict]) -> str:
    trained = [r for r in rows if r["kind"] == "aelab"]
    if not trained:
        return ""
    r = trained[0]
    mins = statistics.fmean(x["train_seconds"] for x in trained) / 60
    return (f"aelab's denoisers: one `{r['method']}` ({r['latent_dim']} numbers, {r['params']:,} "
            f"parameters) per noise, trained {r['epochs']} epochs on inputs corrupted afresh each "
            f"epoch (preset `denoise-<noise>`), {mins:.1f} minutes each on average. Trained on "
            f"(as the runs recorded it): {joined(x['hardware'] for x in trained)}.")


SECTION = """## Denoising: against the optimal linear filter

`aelab results --only denoise` (`aelab baseline wiener --noise SPEC`, `aelab eval --noise
SPEC`). Each cell: PSNR (the mean over the 10,000 test images of each image's own PSNR,
peak 1) / squared error per image against the clean image. `gaussian:S` adds N(0, S²)
noise clipped to [0, 1]; `masking:P` sets each pixel to 0 with probability P. The test
inputs are corrupted once with a fixed seed, the same for every method. The Wiener filter
is the exact least-squares linear estimate of the clean image from the corrupted one,
fitted on the 60,000 training images (one corruption each, another seed). {how}

{table}
{target}"""


def section(rows: list[dict], quick: bool = False) -> str:
    return SECTION.format(how=_how_trained(rows), table=_table(rows), target=_target(rows))


@register_group("denoise", json_file="results-denoise.json", section=section,
                what="five noises, the Wiener filter")
def denoise_rows(plan: Plan, previous: list[dict]) -> list[dict]:
    """For each noise: the noisy input, the Wiener filter (plain and clipped) and aelab's
    denoiser trained on that noise, on the same corrupted test inputs."""
    rows = []
    for noise in NOISES:
        rows += [*_baseline_rows(noise, plan), _model_row(noise, plan)]
        plan.log(f"denoise {noise}: " + ", ".join(f"{r['method']} {r['psnr_db']:.2f} dB"
                                                   for r in rows if r["noise"] == noise))
    return rows
