"""Three result groups of `aelab results` beside the reconstruction table: VAE likelihood on
binarized MNIST, anomaly detection on both protocols, and denoising against the Wiener
filter. Each group trains what it needs into RUNS_ROOT (finished runs reused), measures its
simple baseline in the same run on the same protocol, and returns a list of rows (the JSON
file's contents); `*_section` renders a group's rows as a section of docs/RESULTS.md.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

from .._io import atomic_write_json
from ..evaluate import evaluate_run
from ..presets import DENOISE_NOISES
from ..runs import NOT_RECORDED, eval_file_name, read_metrics, trained_on
from ..runtime import hardware
from . import anomaly as A
from . import denoise as D
from . import likelihood as LH
from .results import (QUICK, ensure_trained, joined, machines_lines, preset_config, reused_eval,
                      train_seconds)


def _cached(path: Path, key: dict, compute):
    """compute() once per `key`, kept in `path` as JSON."""
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("key") == key:
            return old["value"]
    value = compute()
    atomic_write_json(path, {"key": key, "value": value})
    return value


def _on_this_machine(rows: list[dict]) -> list[dict]:
    """Rows computed here and now, each naming this machine."""
    hw = hardware()
    return [{**r, "hardware": hw} for r in rows]


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


# --- VAE likelihood on binarized MNIST --------------------------------------------------

VAE_PRESET = "vae-binarized"
VAE_TARGET = (86.0, 30.0)  # nats, training minutes
BURDA = ("Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR, "
         "Table 1")
BURDA_PROTOCOL = "dynamic binarization; NLL by importance sampling, k=5000"
VAE_PUBLISHED = [
    ("VAE, 1 stochastic layer (784-200-200-50)", 86.76, BURDA_PROTOCOL, BURDA),
    ("IWAE k=50, 1 stochastic layer", 84.78, BURDA_PROTOCOL, BURDA),
    ("IWAE k=50, 2 stochastic layers", 82.90, BURDA_PROTOCOL, BURDA),
    ("pythae's VAE reproduction", 89.78, "binarized MNIST; importance sampling, 200 samples",
     "Chadebec et al. (2022), pythae, NeurIPS Datasets & Benchmarks, as reported by pythae"),
]


def vae_rows(*, root: Path, quick: bool, force: bool, data_dir=None, device=None, log=print) -> list[dict]:
    """Train the VAE preset on dynamically binarized MNIST, bound its test NLL with K=5000
    importance samples, and fit the exact-likelihood Bernoulli baselines on the same split."""
    cfg = preset_config(VAE_PRESET, 0, quick, device)
    run_dir = Path(root) / f"{VAE_PRESET}-seed0"
    ensure_trained(cfg, run_dir, force=force, data_dir=data_dir, log=log)
    k = 20 if quick else 5000
    ev = reused_eval(run_dir, eval_file_name(), iw_samples=k, noise=None)
    if ev is None:
        log(f"{run_dir}: likelihood bound with {k} importance samples per test image")
        ev = evaluate_run(run_dir, "best", data_dir=data_dir, device=device or "auto",
                          iw_samples=k, log=log)
    metrics = read_metrics(run_dir)
    epochs = [m["epoch_seconds"] for m in metrics]
    rows = [{
        "name": VAE_PRESET, "label": "aelab `vae-mlp` (preset `vae-binarized`)", "kind": "aelab",
        "model": ev["model"], "latent_dim": ev["latent_dim"], "params": ev["params"],
        "binarize": cfg.binarize, "iw_samples": k, "nll_nats": ev["iwae_nll_nats"],
        "neg_elbo_nats": ev["neg_elbo_nats"], "kl_nats": ev["kl_nats"], "epochs": cfg.epochs,
        "best_epoch": ev["epoch"], "train_seconds": sum(epochs),
        "epoch_seconds_median": statistics.median(epochs), "epoch_seconds_min": min(epochs),
        "protocol": "dynamic binarization (train); test binarized once, seed "
                    f"{LH.BINARIZE_TEST_SEED}; NLL bound by importance sampling, k={k}",
        "run_dir": str(run_dir), "hardware": trained_on(metrics),
        "eval_hardware": ev.get("hardware") or NOT_RECORDED}]
    comps = (1, 5) if quick else LH.COMPONENTS
    limit = QUICK["limit"] * 8 if quick else None
    key = {"components": list(comps), "limit": limit, "seed": LH.TRAIN_BINARIZE_SEED}
    base = _cached(Path(root) / ("likelihood-baselines-quick.json" if quick else "likelihood-baselines.json"),
                   key, lambda: _on_this_machine(LH.bernoulli_baselines(
                       data_dir=data_dir, components=comps, limit=limit, log=log)))
    for b in base:
        rows.append({**b, "label": b.get("label", b["name"]), "kind": "baseline", "latent_dim": None,
                     "neg_elbo_nats": None, "epochs": None,
                     "hardware": b.get("hardware", NOT_RECORDED)})
    for label, nats, protocol, cite in VAE_PUBLISHED:
        rows.append({"name": label, "label": label, "kind": "published", "model": "published",
                     "latent_dim": None, "params": None, "binarize": "dynamic", "iw_samples": None,
                     "nll_nats": nats, "neg_elbo_nats": None, "epochs": None, "train_seconds": None,
                     "protocol": protocol, "citation": cite})
    for label, nats, protocol in LH.PUBLISHED:  # the Bernoulli mixtures' own anchor
        rows.append({"name": label, "label": label, "kind": "published", "model": "published",
                     "latent_dim": None, "params": None, "binarize": "static", "iw_samples": None,
                     "nll_nats": nats, "neg_elbo_nats": None, "epochs": None, "train_seconds": None,
                     "protocol": protocol, "citation": "exact likelihood"})
    return rows


def _nats(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def vae_section(rows: list[dict]) -> str:
    head = ["model", "test NLL (nats)", "-ELBO", "estimator", "params", "epochs", "train min", "protocol"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        est = ("published" if r["kind"] == "published" else
               "exact" if r.get("iw_samples") is None else f"IWAE bound, k={r['iw_samples']}")
        label = r["label"] if r["kind"] != "published" else f"{r['label']} ({r['citation']})"
        params = "-" if r.get("params") is None else f"{r['params']:,}"
        lines.append("| " + " | ".join([label, _nats(r["nll_nats"]), _nats(r.get("neg_elbo_nats")),
                                         est, params, "-" if r.get("epochs") is None else str(r["epochs"]),
                                         _minutes(r.get("train_seconds")), r.get("protocol", "")]) + " |")
    ours = next((r for r in rows if r["kind"] == "aelab"), None)
    target = ""
    if ours is not None:
        nats, mins = VAE_TARGET
        met = ours["nll_nats"] <= nats and ours["train_seconds"] / 60 <= mins
        target = (f"\nTarget: at most {nats} nats with K=5000, trained in at most {mins:.0f} minutes "
                  f"on this CPU: {ours['nll_nats']:.2f} nats in {ours['train_seconds'] / 60:.1f} "
                  f"minutes, **{'met' if met else 'missed'}**. Trained on: {ours['hardware']}; "
                  f"bound computed on: {ours.get('eval_hardware', NOT_RECORDED)}.")
        med, fast = ours.get("epoch_seconds_median"), ours.get("epoch_seconds_min")
        if med and fast and med > 1.25 * fast:  # epochs this uneven: other load on the cores
            e = ours["epochs"]
            target += (f" Its epochs were uneven (other load on the machine or its host): the median "
                       f"took {med:.1f} s and the fastest {fast:.1f} s; at the fastest epoch's pace the "
                       f"{e} epochs would take {e * fast / 60:.0f} minutes (an extrapolation, "
                       "not a measurement).")
        target += "\n"
    return f"""## VAE likelihood on binarized MNIST

`aelab results --only vae`. Negative log-likelihood of the 10,000 test images in nats per
image (lower is better). aelab's VAE is trained on dynamically binarized MNIST (each
training image resampled as Bernoulli(pixel) every time it is drawn, `--binarize dynamic`)
and scored on the test set binarized once with seed {LH.BINARIZE_TEST_SEED}; its figure is the
importance-weighted bound of Burda et al. (an upper bound on the NLL; k=5000 as in their
Table 1), the -ELBO beside it. The anchors in the same run are exact likelihoods of
mixtures of products of Bernoullis fitted by EM on the training set (one component: every
pixel independent), scored on the same binarized test images.

{chr(10).join(lines)}
{target}"""


# --- anomaly detection -------------------------------------------------------------------

ANOMALY = {  # one model shape and training recipe for every class and both protocols
    "model": "mlp",
    "model_args": {"shape": "hinton2006", "latent_dim": 16, "norm": "batch", "act": "gelu"},
    "train_options": {"optimizer": "adamw", "schedule": "onecycle", "batch_size": 128, "lr": 3e-3,
                      "weight_decay": 1e-4, "loss": "bce"},
    "epochs": {"one-class": 30, "leave-one-out": 5},
}
ANOMALY_TARGETS = {"one-class": 0.97, "leave-one-out": 0.80}
RUFF = "Ruff et al. (2018), Deep One-Class Classification, ICML, Table 1 (one-class protocol)"
DEEP_SVDD = [0.980, 0.997, 0.917, 0.919, 0.949, 0.885, 0.983, 0.946, 0.939, 0.965]
SCORES = [("auc", "nap", "RaPP NAP"), ("auc_sse", "sse", "squared error"), ("auc_sap", "sap", "RaPP SAP")]


def _anomaly_protocol(protocol: str, *, root: Path, quick: bool, force: bool, data_dir, device,
                      log) -> list[dict]:
    out = Path(root) / f"anomaly-{protocol}"
    settings = {**ANOMALY, "epochs": 1 if quick else ANOMALY["epochs"][protocol],
                "limit": QUICK["limit"] if quick else None, "protocol": protocol}
    done = out / "anomaly.json"
    if done.is_file() and not force:
        old = json.loads(done.read_text())
        if old.get("settings") == settings and len(old.get("results", [])) == 10:
            log(f"{out}: finished, reused")
            return old["results"]
    if out.exists():
        shutil.rmtree(out)
    results = A.anomaly(list(range(10)), out, model=settings["model"], epochs=settings["epochs"],
                        limit=settings["limit"], device=device or "auto", data_dir=data_dir, log=log,
                        protocol=protocol, model_args=settings["model_args"],
                        train_options=settings["train_options"])
    atomic_write_json(done, {"results": results, "settings": settings})
    return results


def anomaly_rows(*, root: Path, quick: bool, force: bool, data_dir=None, device=None,
                 log=print) -> list[dict]:
    """Both protocols, every class in turn: the model's scores and exact PCA's AUCs."""
    rows = []
    for protocol in A.PROTOCOLS:
        t0 = time.perf_counter()
        res = sorted(_anomaly_protocol(protocol, root=root, quick=quick, force=force,
                                       data_dir=data_dir, device=device, log=log),
                     key=lambda r: r["holdout"])
        train_s = sum(r["train_seconds"] for r in res)
        hw = joined(r.get("hardware") or NOT_RECORDED for r in res)  # where the ten models trained
        scored = joined(r.get("scored_on") or NOT_RECORDED for r in res)
        for key, tag, what in SCORES:
            aucs = [r.get(key) for r in res]
            if None in aucs:
                continue
            rows.append({"method": f"{ANOMALY['model']}-{tag}", "protocol": protocol,
                         "auc_by_digit": aucs, "auc_mean": statistics.fmean(aucs),
                         "train_seconds": train_s, "score": what, "kind": "aelab",
                         "epochs": res[0]["epochs"], "model_args": ANOMALY["model_args"],
                         "primary": key == "auc", "hardware": hw, "scored_on": scored})
        k = res[0]["pca_k"]
        pca = [r["pca_auc"] for r in res]
        rows.append({"method": f"pca-{k}", "protocol": protocol, "auc_by_digit": pca,
                     "auc_mean": statistics.fmean(pca), "train_seconds": None,
                     "score": "squared error", "kind": "baseline", "hardware": scored})
        log(f"anomaly {protocol}: {time.perf_counter() - t0:.0f}s")
    rows.append({"method": "deep-svdd", "protocol": "one-class", "auc_by_digit": DEEP_SVDD,
                 "auc_mean": statistics.fmean(DEEP_SVDD), "train_seconds": None,
                 "score": "distance to the hypersphere centre", "kind": "published", "citation": RUFF})
    return rows


def anomaly_section(rows: list[dict]) -> str:
    parts = ["""## Anomaly detection: one-class and leave-one-out

`aelab results --only anomaly` (`aelab anomaly --protocol P --digit all` for one table).
ROC AUC for telling anomalies from normal images among all 10,000 test images (1.0:
perfect, 0.5: chance). **One-class** (the literature's protocol, Ruff et al. 2018): train on
the training images of one digit; the test images of the other nine are the anomalies.
**Leave-one-out**: train on nine digits; the tenth, never seen, is the anomaly. The model is
the same for every digit and protocol (Hinton-2006-shaped MLP, 16 numbers, batch norm,
GELU, AdamW with one-cycle); exact PCA is fitted on the same training images in the same
run. Each model is scored three ways: squared reconstruction error; RaPP (Kim et al., ICLR
2020), which compares the hidden activations of an image and of its reconstruction along
the encoder, SAP summing their squared differences and NAP normalising them by the SVD of
those differences over the training images. **NAP is the headline score**: it was chosen
before any test result was seen, from the paper, and its normalisation is fitted on the
training images alone; the other two are shown so that its effect can be read, not chosen.
"""]
    for protocol in A.PROTOCOLS:
        rs = [r for r in rows if r["protocol"] == protocol]
        if not rs:
            continue
        head = ["method", "score", *map(str, range(10)), "mean", "train min"]
        lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * 12]
        for r in rs:
            name = r["method"] + (" (headline)" if r.get("primary") else "")
            if r["kind"] == "published":
                name = f"{r['method']} ({r['citation']})"
            cells = [name, r["score"], *(f"{a:.3f}" for a in r["auc_by_digit"]), f"**{r['auc_mean']:.3f}**",
                     _minutes(r.get("train_seconds"))]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append(f"### {protocol}\n\n" + "\n".join(lines) + "\n")
        ours = next((r for r in rs if r.get("primary")), None)
        pca = next((r for r in rs if r["kind"] == "baseline"), None)
        if ours and pca:
            target = ANOMALY_TARGETS[protocol]
            below = [str(d) for d, (a, b) in enumerate(zip(ours["auc_by_digit"], pca["auc_by_digit"],
                                                           strict=True)) if a < b]
            extra = ""
            if protocol == "one-class":
                extra = (" and every digit at least PCA's: " +
                         ("yes" if not below else f"no (below on digit{'s' if len(below) > 1 else ''} "
                          f"{', '.join(below)})"))
            met = ours["auc_mean"] >= target and (protocol != "one-class" or not below)
            every = " with every digit at least PCA" if protocol == "one-class" else ""
            parts.append(f"Target: mean AUC at least {target:.2f}{every}: "
                         f"{ours['auc_mean']:.3f}{extra}; **{'met' if met else 'missed'}**.\n")
    ours = [r for r in rows if r.get("primary")]
    if ours:
        trained = [{"hardware": r["hardware"], "label": f"{r['protocol']} models, training"} for r in ours]
        scored = [{"hardware": r.get("scored_on"), "label": f"{r['protocol']}, scoring and PCA"}
                  for r in ours]
        listed = machines_lines(trained + scored, lambda r: r["label"])
        parts.append(f"Machines, as the runs recorded them:\n\n{listed}\n")
    return "\n".join(parts)


# --- denoising --------------------------------------------------------------------------

NOISES = DENOISE_NOISES
DENOISE_TARGET = ("gaussian:0.3", 3.0)  # dB above the Wiener filter


def denoise_preset(noise: str) -> str:
    return "denoise-" + noise.replace(":", "-")


def denoise_rows(*, root: Path, quick: bool, force: bool, data_dir=None, device=None,
                 log=print) -> list[dict]:
    """For each noise: the noisy input, the Wiener filter (plain and clipped) and aelab's
    denoiser trained on that noise, on the same corrupted test inputs."""
    rows = []
    for noise in NOISES:
        base = _cached(Path(root) / f"wiener-{noise.replace(':', '-')}{'-quick' if quick else ''}.json",
                       {"noise": noise, "fit_seed": D.FIT_NOISE_SEED, "eval_seed": D.EVAL_NOISE_SEED},
                       lambda noise=noise: _on_this_machine(D.baselines(noise, data_dir=data_dir, log=log)))
        rows += [{**b, "kind": "baseline", "hardware": b.get("hardware", NOT_RECORDED)} for b in base]
        preset = denoise_preset(noise)
        cfg = preset_config(preset, 0, quick, device)
        run_dir = Path(root) / f"{preset}-seed0"
        ensure_trained(cfg, run_dir, force=force, data_dir=data_dir, log=log)
        name = eval_file_name(noise)
        ev = reused_eval(run_dir, name, noise=noise) or evaluate_run(
            run_dir, "best", data_dir=data_dir, device=device or "auto", noise=noise,
            log=lambda *_: None)
        rows.append({"noise": noise, "method": cfg.model, "psnr_db": ev["psnr_db_mean_per_image"],
                     "sse_per_image": ev["sse_per_image"], "kind": "aelab", "preset": preset,
                     "latent_dim": ev["latent_dim"], "params": ev["params"], "epochs": cfg.epochs,
                     "train_seconds": train_seconds(run_dir),
                     "run_dir": str(run_dir), "hardware": trained_on(read_metrics(run_dir)),
                     "eval_hardware": ev.get("hardware") or NOT_RECORDED})
        log(f"denoise {noise}: " + ", ".join(f"{r['method']} {r['psnr_db']:.2f} dB"
                                              for r in rows if r["noise"] == noise))
    return rows


def denoise_section(rows: list[dict]) -> str:
    methods = [("noisy", "noisy input"), ("wiener", "Wiener filter"),
               ("wiener-clipped", "Wiener, clipped to [0, 1]")]
    models = sorted({r["method"] for r in rows if r["kind"] == "aelab"})
    methods += [(m, f"aelab `{m}`") for m in models]
    head = ["noise", *(label for _, label in methods)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(methods)]
    for noise in NOISES:
        by = {r["method"]: r for r in rows if r["noise"] == noise}
        if not by:
            continue
        cells = [f"`{noise}`"] + [f"{by[m]['psnr_db']:.2f} dB / {by[m]['sse_per_image']:.2f}"
                                  if m in by else "-" for m, _ in methods]
        lines.append("| " + " | ".join(cells) + " |")
    noise, margin = DENOISE_TARGET
    by = {r["method"]: r for r in rows if r["noise"] == noise}
    target = ""
    ours = [r for r in rows if r["noise"] == noise and r["kind"] == "aelab"]
    if ours and "wiener" in by:
        best = max(ours, key=lambda r: r["psnr_db"])
        gain = best["psnr_db"] - by["wiener"]["psnr_db"]
        target = (f"\nTarget at `{noise}`: at least {margin:.0f} dB above the Wiener filter "
                  f"({by['wiener']['psnr_db']:.2f} dB): {best['psnr_db']:.2f} dB, {gain:+.2f} dB, "
                  f"**{'met' if gain >= margin else 'missed'}**" +
                  (f" (and {best['psnr_db'] - by['wiener-clipped']['psnr_db']:+.2f} dB above the "
                   "clipped filter)" if "wiener-clipped" in by else "") + ".\n")
    trained = [r for r in rows if r["kind"] == "aelab"]
    how = ""
    if trained:
        r = trained[0]
        mins = statistics.fmean(x["train_seconds"] for x in trained) / 60
        how = (f"aelab's denoisers: one `{r['method']}` ({r['latent_dim']} numbers, {r['params']:,} "
               f"parameters) per noise, trained {r['epochs']} epochs on inputs corrupted afresh each "
               f"epoch (preset `denoise-<noise>`), {mins:.1f} minutes each on average. Trained on "
               f"(as the runs recorded it): {joined(x['hardware'] for x in trained)}.")
    return f"""## Denoising: against the optimal linear filter

`aelab results --only denoise` (`aelab baseline wiener --noise SPEC`, `aelab eval --noise
SPEC`). Each cell: PSNR (the mean over the 10,000 test images of each image's own PSNR,
peak 1) / squared error per image against the clean image. `gaussian:S` adds N(0, S²)
noise clipped to [0, 1]; `masking:P` sets each pixel to 0 with probability P. The test
inputs are corrupted once with a fixed seed, the same for every method. The Wiener filter
is the exact least-squares linear estimate of the clean image from the corrupted one,
fitted on the 60,000 training images (one corruption each, another seed). {how}

{chr(10).join(lines)}
{target}"""
