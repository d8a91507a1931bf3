"""The generation group: every family at 16 numbers on the `conv` backbone, one training
budget (presets gen-<family>), its samples scored by the Fréchet distance to the test set
(aelab.apps.generation) per sampler, beside the floor, the PCA+GMM baseline and the
independent-pixel ceiling measured in the same run, and the published FIDs with their
protocol. Writes results-generation.json, its RESULTS.md section and a sample grid per
family (img/generation/<family>.png).

Each family is a part (`--only gen-vae`); `--only inception` adds Inception-v3 FIDs (the
optional extra aelab[fid]) of the GMM samples, the floor and PCA+GMM to the finished rows
without training (`--only inception gen-rae`: that family's alone): about 20 minutes per
10,000 images on one CPU core, so a whole-group run scores with aelab's classifier only.
Scores are kept in each run's eval-generation.json (and RUNS_ROOT/generation-anchors.json)
per network, so a later run only computes what is missing.
"""

from __future__ import annotations

import time
from pathlib import Path


from ..apps import generation as gen
from ..apps.inception import inception_available
from ..errors import AelabError
from ..figures import draw_grid
from ..presets import GENERATION, GENERATION_FAMILIES
from ..runs import finished_epoch, load_run, read_metrics, train_seconds, trained_on
from ..runtime import hardware, resolve_device
from .cache import best_eval, read_cache, write_cache
from .learned import probe_sizes, run_representation
from .registry import Plan, register_group
from .render import cell, machines_lines, markdown_table, minutes
from .training import ensure_trained, preset_config, same_config

INCEPTION_PART = "inception"
# What `--only inception` scores with Inception-v3 (about 20 minutes per 10,000 images on one
# core of the 2-core CPU): each family's GMM samples, the floor and PCA+GMM.
INCEPTION_ANCHORS = ("floor", "pca-gmm")
QUICK_SAMPLES = 500  # --quick: samples per score (the protocol: 10,000)
TARGET_FLOOR_RATIO = 2.0  # the best family's distance within this factor of the floor's
GHOSH = ("Ghosh, Sajjadi, Vergari, Black & Schölkopf (2020), From Variational to "
         "Deterministic Autoencoders, ICLR, Table 1")
GHOSH_PROTOCOL = ("16 numbers; TensorFlow Inception-v3 pool3 FID (TTUR script), 10,000 "
                  "samples against the 10,000 test images, digits zero-padded to 32x32; GMM: 10 "
                  "full-covariance components on the training codes; prior column N(0, I) for "
                  "every model (the authors' code); their convnet, 100 epochs")
PYTHAE = ("Chadebec et al. (2022), pythae, NeurIPS Datasets & Benchmarks, "
          "examples/scripts/reproducibility")
PYTHAE_PROTOCOL = ("pythae's reproduction with the RAE authors' code; how its FID was computed "
                   "(network, samples, reference set) is not documented there")
# (label, FID of prior samples, FID of GMM samples, protocol, citation). Ghosh et al.'s
# MNIST rows as in their Table 1, checked against the GMM/N figures in the comments of the
# authors' configurations/config.py.
PUBLISHED = [
    ("VAE", 19.21, 17.66, GHOSH_PROTOCOL, GHOSH),
    ("WAE", 20.42, 9.39, GHOSH_PROTOCOL, GHOSH),
    ("RAE-GP", 22.21, 11.54, GHOSH_PROTOCOL, GHOSH),
    ("RAE-L2", 22.22, 8.69, GHOSH_PROTOCOL, GHOSH),
    ("RAE", 23.92, 9.81, GHOSH_PROTOCOL, GHOSH),
    ("AE", 58.73, 10.66, GHOSH_PROTOCOL, GHOSH),
    ("RAE-L2 (pythae)", None, 9.1, PYTHAE_PROTOCOL, PYTHAE),
    ("RAE-GP (pythae)", None, 9.7, PYTHAE_PROTOCOL, PYTHAE),
]


def preset_name(family: str) -> str:
    return "gen-" + family


PARTS = (*(preset_name(f) for f in GENERATION_FAMILIES), INCEPTION_PART)


def _networks(plan: Plan) -> tuple[str, ...]:
    """The feature networks this run scores with: the classifier, and Inception where the
    `inception` part was asked for (an error without the extra)."""
    if plan.only and INCEPTION_PART in plan.only:
        if not inception_available():
            raise AelabError("--only inception needs the optional extra: pip install 'aelab[fid]'")
        return ("classifier", "inception")
    return ("classifier",)


def _scores(path: Path, key: dict, wanted: dict[str, tuple[str, ...]], compute) -> dict:
    """{what: {network: distance}} kept in `path` for `key`; what is missing from it is
    computed by compute(what, networks) and added (the file rewritten atomically)."""
    have = read_cache(path, key) or {}
    for what, networks in wanted.items():
        missing = [n for n in networks if n not in have.get(what, {})]
        if missing:
            have.setdefault(what, {}).update(compute(what, tuple(missing)))
            write_cache(path, key, have)
    return have


def _inception_families(plan: Plan) -> set[str]:
    """The families whose GMM samples get Inception FIDs in this run: `--only inception`
    alone means every family; with family parts beside it (`--only inception gen-rae`),
    those."""
    if not plan.only or INCEPTION_PART not in plan.only:
        return set()
    named = {f for f in GENERATION_FAMILIES if preset_name(f) in plan.only}
    return named or set(GENERATION_FAMILIES)


def _family_row(family: str, plan: Plan, networks, n: int) -> dict | None:
    """Train (when asked) and score one family's preset run; None when not trained and
    not asked to train."""
    preset = preset_name(family)
    cfg = preset_config(preset, 0, plan.quick, plan.device)
    run_dir = Path(plan.root) / f"{preset}-seed0"
    train_now = plan.only is None or preset in plan.only
    if train_now:
        ensure_trained(cfg, run_dir, force=plan.force, data_dir=plan.data_dir, log=plan.log)
    elif finished_epoch(run_dir) < cfg.epochs or not same_config(run_dir, cfg):
        return None
    device = plan.device or "auto"
    t0 = time.perf_counter()
    ev = best_eval(run_dir, data_dir=plan.data_dir, device=device)
    n_fit, n_score = probe_sizes(plan.quick)
    rep = run_representation(run_dir, data_dir=plan.data_dir, device=device, n_fit=n_fit,
                             n_score=n_score)
    run = load_run(run_dir, "best", device=resolve_device(device), data_dir=plan.data_dir)
    names = [s for s in ("prior", "gmm") if s in run.samplers]
    plan.log(f"{run_dir}: {n:,} samples per sampler ({', '.join(names)}) scored by "
             f"{', '.join(networks)}")
    scored = gen.score_run(run, samplers_=names, n=n, networks=("classifier",),
                           data_dir=plan.data_dir, log=plan.log)
    scores = scored["distances"]
    if family in _inception_families(plan):  # GMM samples only: 20 CPU minutes per 10,000 images
        scored = gen.score_run(run, samplers_=["gmm"], n=n, networks=networks,
                               data_dir=plan.data_dir, log=plan.log)
        scores["gmm"] = scored["distances"]["gmm"]
    metrics = read_metrics(run_dir)
    return {
        "name": preset, "family": family, "label": f"`{family}`", "kind": "aelab",
        "model": cfg.model, "latent_dim": run.latent_dim, "params": ev["params"],
        "samplers": names, "default_sampler": run.default_sampler,
        "distances": {s: scores[s] for s in names},
        "sse_per_image": ev["sse_per_image"], "knn_accuracy": rep["knn_accuracy"],
        "epochs": cfg.epochs, "best_epoch": run.meta["epoch"],
        "train_seconds": train_seconds(metrics), "eval_seconds": round(time.perf_counter() - t0, 1),
        "score_seconds": {s: _seconds(scored.get("seconds", {}).get(s)) for s in names},
        "n_samples": n, "run_dir": str(run_dir), "hardware": trained_on(metrics),
        "eval_hardware": hardware()}


def _seconds(kept) -> dict:
    """{network: seconds} of one sampler's scores (a bare number: the classifier's, as
    files before per-network times kept it)."""
    return kept if isinstance(kept, dict) else {} if kept is None else {"classifier": kept}


def _anchor_rows(plan: Plan, networks, n: int) -> list[dict]:
    """The floor, PCA-16+GMM and the independent-pixel ceiling, kept in RUNS_ROOT."""
    path = Path(plan.root) / "generation-anchors.json"
    key = {"n_samples": n, "seeds": [gen.FLOOR_SEED, gen.BASELINE_SEED], "gmm": "models'"}
    seconds = {}

    def compute(name, nets):
        plan.log(f"generation anchor {name}: scored by {', '.join(nets)}")
        t0 = time.perf_counter()
        out = gen.score_anchor(name, nets, n=n, data_dir=plan.data_dir, log=plan.log)["distances"]
        seconds[name] = round(time.perf_counter() - t0, 1)
        return out

    wanted = {name: networks if name in INCEPTION_ANCHORS else ("classifier",)
              for name in gen.ANCHORS}
    scores = _scores(path, key, wanted, compute)
    rows = []
    for name, (label, what, _) in gen.ANCHORS.items():
        rows.append({"name": name, "label": label, "kind": "anchor", "what": what,
                     "samplers": ["gmm"] if name == "pca-gmm" else ["data"],
                     "distances": {"gmm" if name == "pca-gmm" else "data": scores[name]},
                     "latent_dim": 16 if name == "pca-gmm" else None, "n_samples": n,
                     "eval_seconds": seconds.get(name), "hardware": hardware()})
    return rows


def _published_rows() -> list[dict]:
    return [{"name": label, "label": label, "kind": "published", "latent_dim": 16,
             "fid": {"prior": prior, "gmm": gmm}, "protocol": protocol, "citation": cite}
            for label, prior, gmm, protocol, cite in PUBLISHED]


@register_group("generation", json_file="results-generation.json",
                section=lambda rows, quick=False: section(rows, quick), parts=PARTS,
                extras=lambda rows, out, plan: sample_grids(rows, out, plan),
                summary=lambda rows: summary(rows),
                what="every family at 16 numbers: Fréchet distance of samples, PCA+GMM, the floor")
def generation_rows(plan: Plan, previous: list[dict]) -> list[dict]:
    """The families (training those `plan.only` names, all when None), the anchors and
    the published rows; a family whose run is not here keeps its row from `previous`."""
    networks = _networks(plan)
    n = QUICK_SAMPLES if plan.quick else gen.N_SAMPLES
    if plan.only is not None and INCEPTION_PART in plan.only and len(plan.only) == 1:
        plan.log("inception: scoring the finished runs and the anchors (no training)")
    before = {r["name"]: r for r in previous if r.get("kind") == "aelab"}
    rows = []
    for family in GENERATION_FAMILIES:
        row = _family_row(family, plan, networks, n)
        if row is None and preset_name(family) in before:
            row = {**before[preset_name(family)], "carried": True}
        if row is not None:
            rows.append(row)
    return rows + _anchor_rows(plan, networks, n) + _published_rows()


# --- the section ---------------------------------------------------------------------


def _d(row: dict, sampler: str, network: str):
    return row.get("distances", {}).get(sampler, {}).get(network)


def _best_gmm(rows: list[dict]) -> dict | None:
    ours = [r for r in rows if r["kind"] == "aelab" and _d(r, "gmm", "classifier") is not None]
    return min(ours, key=lambda r: _d(r, "gmm", "classifier")) if ours else None


def _protocols(rows: list[dict]) -> list[str]:
    """The published rows' distinct protocols, in order (the table numbers them)."""
    return list(dict.fromkeys(r["protocol"] for r in rows if r["kind"] == "published"))


def _cells(r: dict, protocols: list[str]) -> list[str]:
    if r["kind"] == "published":
        fid = r["fid"]
        return [f"{r['label']} ({r['citation']})", "-", "-", cell(fid["prior"], ".2f"),
                cell(fid["gmm"], ".2f"), "-", "-", "-", "-",
                f"protocol ({protocols.index(r['protocol']) + 1})"]
    if r["kind"] == "anchor":
        s = r["samplers"][0]
        return [r["label"], "-", cell(_d(r, s, "classifier"), ".2f"), "-",
                cell(_d(r, s, "inception"), ".2f"), "-", "-", "-", "-", r["what"]]
    mark = " (carried)" if r.get("carried") else ""
    knn = r.get("knn_accuracy")
    return [r["label"] + mark, cell(_d(r, "prior", "classifier"), ".2f"),
            cell(_d(r, "gmm", "classifier"), ".2f"), cell(_d(r, "prior", "inception"), ".2f"),
            cell(_d(r, "gmm", "inception"), ".2f"), cell(r["sse_per_image"], ".2f"),
            "-" if knn is None else f"{100 * knn:.1f}", str(r["epochs"]),
            minutes(r["train_seconds"]), f"default sampler {r['default_sampler']}"]


def _targets(rows: list[dict]) -> str:
    anchors = {r["name"]: r for r in rows if r["kind"] == "anchor"}
    ours = [r for r in rows if r["kind"] == "aelab"]
    if not ours or "pca-gmm" not in anchors:
        return ""
    pca_d = _d(anchors["pca-gmm"], "gmm", "classifier")
    floor = _d(anchors["floor"], "data", "classifier")
    worse = [r["family"] for r in ours if _d(r, "gmm", "classifier") >= pca_d]
    best = _best_gmm(rows)
    ratio = _d(best, "gmm", "classifier") / floor if floor else float("inf")
    lines = [f"- Every family's GMM samples closer to the test set than PCA-16+GMM's "
             f"({pca_d:.2f}): **{'met' if not worse else 'missed'}**"
             + (f" ({', '.join(worse)} at or above it)" if worse else "") + ".",
             f"- The best family within {TARGET_FLOOR_RATIO:g}x of the floor ({floor:.2f}): "
             f"`{best['family']}` at {_d(best, 'gmm', 'classifier'):.2f}, {ratio:.1f}x, "
             f"**{'met' if ratio <= TARGET_FLOOR_RATIO else 'missed'}**."
             + ("" if ratio <= TARGET_FLOOR_RATIO else
                " The classifier's features tell real digits apart so sharply that two samples "
                "of the data are almost at 0; what separates the models from the data (blur, "
                "shapes between digits) registers far above it.")]
    with_fid = [r for r in ours if _d(r, "gmm", "inception") is not None]
    ghosh_best = min(g for _, _, g, _, c in PUBLISHED if c == GHOSH)
    if with_fid:
        b = min(with_fid, key=lambda r: _d(r, "gmm", "inception"))
        f = _d(b, "gmm", "inception")
        measured = ", ".join(f"`{r['family']}`" for r in with_fid)
        fl, pc = _d(anchors["floor"], "data", "inception"), _d(anchors["pca-gmm"], "gmm", "inception")
        lines.append(f"- Inception FID (GMM samples, measured for {measured}): the best "
                     f"(`{b['family']}`) {f:.2f} against Ghosh et al.'s best MNIST figure "
                     f"{ghosh_best:.2f}: **{'met' if f <= ghosh_best else 'missed'}**"
                     + (f"; the floor {fl:.2f}" if fl is not None else "")
                     + (f", PCA-16+GMM {pc:.2f}" if pc is not None else "")
                     + ". Not the same protocol: they zero-pad the digits to 32x32 and train "
                     "their own convnet for 100 epochs; here 28x28 digits and 20 epochs.")
    else:
        lines.append("- Inception FID: not measured in this run (`aelab results --only "
                     "inception` with `pip install 'aelab[fid]'`).")
    return "\n".join(lines)


SECTION = """## Generation: samples scored beside the floor and PCA+GMM

`aelab results --only generation`. Every family of aelab.models at 16 numbers on the `conv`
backbone, one budget for all ({budget}); {n:,} samples per sampler scored against the
10,000 test images by the Fréchet distance of Heusel et al. (2017) between Gaussians fitted
to features (`aelab eval RUN --generation` for one run). **FD**: the features of aelab's own
MNIST classifier (128 penultimate features; `aelab baseline classifier` retrains it); its
scale is not the papers'. **FID**: Inception-v3 pool3, the papers' network (optional
extra `aelab[fid]`, `aelab results --only inception`). Samplers: `prior` where the model
has one, `gmm` (10 full-covariance components fitted to the training codes, as Ghosh et
al.). Samples are the decoder's mean images. In the same run: the floor (10,000 training
images: two samples of the data are this far apart), PCA at 16 numbers with the same GMM
sampler decoded linearly, and independent pixels (the ceiling). Test SSE per image and kNN
accuracy (k=5) of the codes describe the same runs. Lower is better in every distance.

{table}

Targets:
{targets}

Published rows used TensorFlow's Inception-v3 and their own training (100 epochs and more);
they stand beside the FID columns only, and only where both were measured the same way.
Sample grids of each family (its default sampler, seed 0): {grids}.
Machines:
{machines}
"""


def section(rows: list[dict], quick: bool = False) -> str:
    head = ["model", "FD prior", "FD gmm", "FID prior", "FID gmm", "test SSE", "kNN %",
            "epochs", "train min", "notes"]
    n = next((r["n_samples"] for r in rows if r.get("n_samples")), gen.N_SAMPLES)
    budget = (f"Adam, one-cycle to {GENERATION['lr']:g}, batch {GENERATION['batch_size']}, "
              f"{GENERATION['epochs']} epochs, best checkpoint by validation MSE")
    if quick:
        budget += "; --quick: 1 epoch on 256 images"
    protocols = _protocols(rows)
    table = markdown_table(head, [_cells(r, protocols) for r in rows], "lrrrrrrrrl")
    table += "\n\nProtocols of the published rows: " + "; ".join(
        f"({i}) {p}" for i, p in enumerate(protocols, 1)) + "."
    ours = [r for r in rows if r["kind"] == "aelab"]
    train = sum(r.get("train_seconds") or 0 for r in ours)
    scoring = sum(t.get("classifier", 0) for r in ours for t in r.get("score_seconds", {}).values())
    machines = machines_lines([r for r in rows if r["kind"] == "aelab"],
                              name=lambda r: r["label"])
    grids = " · ".join(f"[{r['family']}](img/generation/{r['family']}.png)" for r in ours)
    text = SECTION.format(budget=budget, n=n, table=table, targets=_targets(rows) or "- not run",
                          machines=machines or "  - not run", grids=grids or "none yet")
    return text + (f"\nTraining the families: {train / 60:.0f} minutes in all; scoring their "
                   f"samples with the classifier: {scoring / 60:.1f} minutes (sampling and GMM fits "
                   "included).\n")


# --- the figures ---------------------------------------------------------------------


def sample_grids(rows: list[dict], out: Path, plan: Plan) -> list[Path]:
    """img/generation/<family>.png: 64 samples of each family's run (default sampler,
    seed 0). Rows carried from an earlier run whose folder is not here are skipped."""
    paths = []
    device = resolve_device(plan.device or "auto")
    for r in rows:
        if r["kind"] != "aelab" or not Path(r["run_dir"], "config.json").is_file():
            continue
        run = load_run(r["run_dir"], "best", device=device, data_dir=plan.data_dir)
        images = run.sample(64, sampler=run.default_sampler, seed=gen.SAMPLE_SEED)
        d = _d(r, run.default_sampler, "classifier")
        title = (f"{r['family']}: 64 samples, sampler {run.default_sampler}"
                 + ("" if d is None else f" (FD {d:.2f})"))
        paths.append(draw_grid(images, Path(out) / "img" / "generation" / f"{r['family']}.png", title))
    return paths


def summary(rows: list[dict]) -> str:
    """What `aelab results` prints after the group."""
    lines = []
    for r in rows:
        if r["kind"] == "published":
            continue
        ds = "  ".join(f"{s} {_d(r, s, 'classifier'):.2f}" for s in r["samplers"]
                       if _d(r, s, "classifier") is not None)
        lines.append(f"{r['name']:>16}  FD {ds}")
    return "\n".join(lines)

