"""The anomaly group: one-class and leave-one-out detection for every digit, one model
recipe (ANOMALY) scored three ways, beside exact PCA fitted on the same images and Deep
SVDD's published AUCs. `aelab anomaly --preset results` reads ANOMALY from here, so the
command and the table cannot drift apart."""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

from ..apps import anomaly as detection
from ..runs import NOT_RECORDED
from .cache import read_cache, write_cache
from .registry import Plan, register_group
from .render import joined, machines_lines, markdown_table, minutes
from .training import QUICK

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
DIGITS = 10


def _anomaly_protocol(protocol: str, *, root: Path, quick: bool, force: bool, data_dir, device,
                      log) -> list[dict]:
    """Every digit in turn under `protocol`, trained into ROOT/anomaly-<protocol>/; reused
    from its anomaly.json when that was written with the same settings."""
    out = Path(root) / f"anomaly-{protocol}"
    settings = {**ANOMALY, "epochs": 1 if quick else ANOMALY["epochs"][protocol],
                "limit": QUICK["limit"] if quick else None, "protocol": protocol}
    done = out / "anomaly.json"
    fields = {"key_field": "settings", "value_field": "results"}  # the file apps.anomaly writes, keyed
    old = None if force else read_cache(done, settings, **fields)
    if old is not None and len(old) == DIGITS:
        log(f"{out}: finished, reused")
        return old
    if out.exists():
        shutil.rmtree(out)
    # None: every class of the dataset, as `aelab anomaly --digit all` asks (the same call)
    results = detection.anomaly(None, out, model=settings["model"],
                                epochs=settings["epochs"], limit=settings["limit"],
                                device=device or "auto", data_dir=data_dir, log=log, protocol=protocol,
                                model_args=settings["model_args"], train_options=settings["train_options"])
    write_cache(done, settings, results, **fields)
    return results


def _protocol_rows(protocol: str, res: list[dict]) -> list[dict]:
    """The model's rows (one per score) and exact PCA's, from the ten digits' results."""
    train_s = sum(r["train_seconds"] for r in res)
    hw = joined(r.get("hardware") or NOT_RECORDED for r in res)  # where the ten models trained
    scored = joined(r.get("scored_on") or NOT_RECORDED for r in res)
    rows = []
    for key, tag, what in SCORES:
        aucs = [r.get(key) for r in res]
        if None in aucs:
            continue
        rows.append({"method": f"{ANOMALY['model']}-{tag}", "protocol": protocol,
                     "auc_by_digit": aucs, "auc_mean": statistics.fmean(aucs),
                     "train_seconds": train_s, "score": what, "kind": "aelab",
                     "epochs": res[0]["epochs"], "model_args": ANOMALY["model_args"],
                     "primary": key == "auc", "hardware": hw, "scored_on": scored})
    pca = [r["pca_auc"] for r in res]
    rows.append({"method": f"pca-{res[0]['pca_k']}", "protocol": protocol, "auc_by_digit": pca,
                 "auc_mean": statistics.fmean(pca), "train_seconds": None,
                 "score": "squared error", "kind": "baseline", "hardware": scored})
    return rows


def _table(rows: list[dict]) -> str:
    head = ["method", "score", *map(str, range(DIGITS)), "mean", "train min"]
    cells = []
    for r in rows:
        name = r["method"] + (" (headline)" if r.get("primary") else "")
        if r["kind"] == "published":
            name = f"{r['method']} ({r['citation']})"
        cells.append([name, r["score"], *(f"{a:.3f}" for a in r["auc_by_digit"]),
                      f"**{r['auc_mean']:.3f}**", minutes(r.get("train_seconds"))])
    return markdown_table(head, cells, "ll" + "r" * (DIGITS + 2))


def _target(protocol: str, ours: dict, pca: dict) -> str:
    """Met or missed: the mean AUC, and on one-class every digit at least PCA's."""
    target = ANOMALY_TARGETS[protocol]
    below = [str(d) for d, (a, b) in enumerate(zip(ours["auc_by_digit"], pca["auc_by_digit"], strict=True))
             if a < b]
    one_class = protocol == "one-class"
    extra = ""
    if one_class:
        extra = (" and every digit at least PCA's: " +
                 ("yes" if not below else f"no (below on digit{'s' if len(below) > 1 else ''} "
                  f"{', '.join(below)})"))
    met = ours["auc_mean"] >= target and (not one_class or not below)
    every = " with every digit at least PCA" if one_class else ""
    return (f"Target: mean AUC at least {target:.2f}{every}: "
            f"{ours['auc_mean']:.3f}{extra}; **{'met' if met else 'missed'}**.\n")


def _machines(rows: list[dict]) -> str:
    ours = [r for r in rows if r.get("primary")]
    trained = [{"hardware": r["hardware"], "label": f"{r['protocol']} models, training"} for r in ours]
    scored = [{"hardware": r.get("scored_on"), "label": f"{r['protocol']}, scoring and PCA"} for r in ours]
    return machines_lines(trained + scored, lambda r: r["label"])


INTRO = """## Anomaly detection: one-class and leave-one-out

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
"""


def section(rows: list[dict], quick: bool = False) -> str:
    parts = [INTRO]
    for protocol in detection.PROTOCOLS:
        rs = [r for r in rows if r["protocol"] == protocol]
        if not rs:
            continue
        parts.append(f"### {protocol}\n\n{_table(rs)}\n")
        ours = next((r for r in rs if r.get("primary")), None)
        pca = next((r for r in rs if r["kind"] == "baseline"), None)
        if ours and pca:
            parts.append(_target(protocol, ours, pca))
    if any(r.get("primary") for r in rows):
        parts.append(f"Machines, as the runs recorded them:\n\n{_machines(rows)}\n")
    return "\n".join(parts)


@register_group("anomaly", json_file="results-anomaly.json", section=section,
                what="one-class and leave-one-out, exact PCA, Deep SVDD")
def anomaly_rows(plan: Plan, previous: list[dict]) -> list[dict]:
    """Both protocols, every class in turn: the model's scores and exact PCA's AUCs, then
    Deep SVDD's published AUCs."""
    rows = []
    for protocol in detection.PROTOCOLS:
        t0 = time.perf_counter()
        res = _anomaly_protocol(protocol, root=plan.root, quick=plan.quick, force=plan.force,
                                data_dir=plan.data_dir, device=plan.device, log=plan.log)
        rows += _protocol_rows(protocol, sorted(res, key=lambda r: r["holdout"]))
        plan.log(f"anomaly {protocol}: {time.perf_counter() - t0:.0f}s")
    rows.append({"method": "deep-svdd", "protocol": "one-class", "auc_by_digit": DEEP_SVDD,
                 "auc_mean": statistics.fmean(DEEP_SVDD), "train_seconds": None,
                 "score": "distance to the hypersphere centre", "kind": "published", "citation": RUFF})
    return rows
