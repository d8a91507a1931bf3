"""The result groups: the registry (each group's JSON file, RESULTS.md section and rows
rendered from the committed JSON), presets, label probes, PCA rows, run reuse, and
`aelab results --quick` end to end on a few rows."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from aelab.cli import main
from aelab.config import TrainConfig
from aelab.data import load_dataset
from aelab.pca import basis as pca_basis
from aelab.pca import codes as pca_codes
from aelab.pca import sse as pca_sse
from aelab.models import build_model
from aelab.presets import PRESETS
from aelab.represent import knn_accuracy, probe_accuracy
from aelab.runtime import hardware
from aelab.results import GROUPS, read_rows, split_only
from aelab.results import reconstruction
from aelab.results.document import results_document
from aelab.results.learned import combine_seeds
from aelab.results.reconstruction import ROWS, VAL_SPLIT, targets_lines, training_time
from aelab.results.render import machines_lines, markdown_table
from aelab.results.training import ensure_trained, preset_config

LEARNED = [r for r in ROWS if r.preset is not None]
DOCS = Path(__file__).resolve().parents[1] / "docs"
JSON_FILES = {"reconstruction": "results.json", "vae": "results-vae.json",
              "anomaly": "results-anomaly.json", "denoise": "results-denoise.json",
              "generation": "results-generation.json"}
REQUIRED = {"name", "model", "latent_dim", "params", "sse_per_image", "sse_per_image_std",
            "mse_per_pixel", "psnr_db", "knn_accuracy", "probe_accuracy", "epochs",
            "train_seconds", "seeds", "preset", "hardware"}


# --- the groups -----------------------------------------------------------------------


def test_the_five_groups_in_the_order_of_results_md():
    assert list(GROUPS) == ["reconstruction", "vae", "anomaly", "denoise", "generation"]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_each_group_keeps_its_json_file(group):
    assert GROUPS[group].json_file == JSON_FILES[group]  # the committed docs/ file names


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_each_group_renders_its_committed_section_from_its_committed_json(group):
    """docs/RESULTS.md is generated: each group's section is what its JSON renders to."""
    rows = read_rows(DOCS, group)
    assert rows, f"docs/{JSON_FILES[group]} is missing or empty"
    section = GROUPS[group].section(rows, False)
    assert section.startswith("## ") and section in (DOCS / "RESULTS.md").read_text()


def test_results_md_is_rebuilt_from_the_committed_json_unchanged():
    assert results_document(DOCS, quick=False) == (DOCS / "RESULTS.md").read_text()


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_a_group_not_run_yet_says_how_to_run_it(group, tmp_path):
    md = results_document(tmp_path, quick=True)
    assert f"`aelab results --only {group}` writes `{JSON_FILES[group]}` and this section." in md
    assert "--quick run" in md


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_each_group_is_documented_with_its_json_file(group):
    """docs/training.md's table of groups names every registered group and its file."""
    text = (DOCS / "training.md").read_text()
    assert re.search(rf"^\| `{group}` \|.*\| `{re.escape(JSON_FILES[group])}` \|$", text, re.M), group


def test_markdown_table_aligns_columns_as_asked():
    assert markdown_table(["a", "b"], [["1", "2"]], "lr") == "| a | b |\n|---|---:|\n| 1 | 2 |"
    assert markdown_table(["a"], []) == "| a |\n|---|"
    with pytest.raises(ValueError, match="2 letters for 1 columns"):
        markdown_table(["a"], [], "lr")


def test_training_time_counts_each_run_once_from_the_rows():
    rows = [{"name": "pca5", "preset": None, "missing": False, "train_seconds": None},
            {"name": "a", "preset": "a", "missing": False, "train_seconds": 600.0},
            {"name": "b", "preset": "b", "missing": False, "train_seconds": 1200.0,
             "train_seconds_by_seed": [1100.0, 1200.0, 1300.0]},
            {"name": "b-refined", "preset": "b", "missing": False, "train_seconds": 1200.0,
             "train_seconds_by_seed": [1100.0, 1200.0, 1300.0]},  # the same runs as b
            {"name": "c", "preset": "c", "missing": True, "train_seconds": None}]
    text = training_time(rows)
    assert "trained for 70 min in all" in text and "the 3 seeds of `b` alone for 60 min" in text
    assert training_time(rows[:1]) == ""  # nothing trained: no sentence


# --- presets and rows -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config_whose_model_builds(name):
    cfg = TrainConfig.from_dict(PRESETS[name])
    assert build_model(cfg.model, **cfg.model_args).latent_dim >= 1


def test_rows_have_the_promised_code_sizes_seeds_and_honest_selection():
    sizes = {r.name: build_model(**_model(r.preset)).latent_dim for r in LEARNED}
    assert sizes == {"seed-linear": 5, "seed-conv": 64, "best-5": 5, "best-5-refined": 5,
                     "best-16": 16, "best-16-refined": 16, "hinton2006-modern": 30,
                     "best-30": 30, "best-30-refined": 30, "best-64": 64}
    assert {r.name: r.latent_dim for r in ROWS if r.preset is None} == \
        {"pca5": 5, "pca16": 16, "pca30": 30, "pca64": 64}
    refined = {r.name: (r.preset, r.refine, r.seeds) for r in ROWS if r.refine}
    assert refined == {"best-5-refined": ("best-5", 50, 1), "best-16-refined": ("best-16", 50, 1),
                       "best-30-refined": ("best-30", 50, 3)}  # the same runs, refined codes
    assert next(r for r in ROWS if r.name == "best-30").seeds == 3
    for r in LEARNED:
        if not r.name.startswith("seed-"):  # the seed rows keep the seed's exact settings
            assert PRESETS[r.preset]["val_split"] == VAL_SPLIT, r.name
    assert PRESETS["seed-linear"] == {"model": "linear"} and PRESETS["seed-conv"] == {"model": "conv"}
    assert PRESETS["hinton2006-modern"]["model_args"]["shape"] == "hinton2006"


def _model(preset):
    cfg = TrainConfig.from_dict(PRESETS[preset])
    return {"name": cfg.model, **cfg.model_args}


def test_quick_config_shrinks_a_preset_but_keeps_its_model():
    full, quick = preset_config("best-30", 2, quick=False), preset_config("best-30", 2, quick=True)
    assert full.seed == quick.seed == 2 and full.model_args == quick.model_args
    assert quick.epochs == 1 and quick.limit == 256 and 0 < quick.val_split <= 1000
    assert full.limit is None and full.val_split == VAL_SPLIT


# --- label probes and PCA codes -------------------------------------------------------


def test_probes_find_separable_labels_and_not_random_ones():
    g = np.random.default_rng(0)
    labels = g.integers(0, 10, 600)
    centres = g.normal(size=(10, 8)) * 5
    codes = (centres[labels] + g.normal(size=(600, 8))).astype(np.float32)
    args = (codes[:500], labels[:500], codes[500:], labels[500:])
    assert knn_accuracy(*args) > 0.95 and probe_accuracy(*args) > 0.95
    shuffled = (codes[:500], g.permutation(labels[:500]), codes[500:], labels[500:])
    assert knn_accuracy(*shuffled) < 0.35 and probe_accuracy(*shuffled) < 0.35


def test_pca_codes_reconstruct_with_exactly_pca_sse(mnist_dir):
    train_x, _ = load_dataset("mnist", "train", data_dir=mnist_dir)
    test_x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    basis = pca_basis(train_x[:2000])
    codes = torch.from_numpy(pca_codes(basis, test_x[:50], 12)).double()  # (50, 12)
    recon = codes @ basis["components"][:12] + basis["mean"]
    x = test_x[:50].reshape(50, -1).double() / 255
    sse = (recon - x).square().sum(1)
    assert torch.allclose(sse, pca_sse(basis, test_x[:50], 12), rtol=1e-4)


def test_combine_seeds_reports_the_spread_across_seeds():
    per_seed = [{"model": "mlp", "latent_dim": 30, "params": 9, "sse_per_image": s,
                 "sse_per_image_std": 1.0, "mse_per_pixel": s / 784, "knn_accuracy": 0.9,
                 "probe_accuracy": 0.8, "epoch": 3, "train_seconds": 10.0 * s, "run_dir": "r",
                 "hardware": "cpu A" if s < 4 else "cpu B", "eval_hardware": "cpu A"}
                for s in (2.0, 3.0, 4.0)]
    row = combine_seeds(per_seed)
    assert row["hardware"] == "cpu A; cpu B" and row["eval_hardware"] == "cpu A"
    assert row["train_seconds_by_seed"] == [20.0, 30.0, 40.0]
    assert row["sse_per_image"] == pytest.approx(3.0)
    assert row["sse_per_image_std"] == pytest.approx(1.0)  # sample std of 2, 3, 4
    assert row["sse_per_image_by_seed"] == [2.0, 3.0, 4.0]
    assert combine_seeds(per_seed[:1])["sse_per_image_std"] is None


def test_baseline_pca_prints_the_published_pca_number(mnist_dir, capsys):
    # exact PCA-30 on the full training set is Hinton & Salakhutdinov's 13.87
    assert main(["baseline", "pca", "--latent-dim", "30", "--represent-fit", "2000",
                 "--data-dir", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    sse = float(re.search(r"SSE/image ([\d.]+)", out).group(1))
    assert sse == pytest.approx(13.87, abs=0.005)
    assert "kNN (k=5)" in out and "linear probe" in out


# --- run reuse ------------------------------------------------------------------------


def _tiny(**kw):
    return TrainConfig(model="linear", epochs=1, limit=64, device="cpu", figure_every=10, **kw)


def test_finished_runs_are_reused_and_unfinished_ones_resumed(mnist_dir, tmp_path):
    run = tmp_path / "r"
    quiet = lambda *a: None  # noqa: E731
    ensure_trained(_tiny(), run, force=False, data_dir=mnist_dir, log=quiet)
    stamp = (run / "checkpoints" / "last.safetensors").stat().st_mtime_ns
    logs = []
    ensure_trained(_tiny(), run, force=False, data_dir=mnist_dir, log=logs.append)
    assert "reused" in logs[-1]
    assert (run / "checkpoints" / "last.safetensors").stat().st_mtime_ns == stamp
    # the same run asked for 2 epochs (as after an interrupted run) continues from epoch 1
    cfg2 = _tiny().replace(epochs=2)
    (run / "config.json").write_text(json.dumps(cfg2.to_dict()))
    ensure_trained(cfg2, run, force=False, data_dir=mnist_dir, log=logs.append)
    assert any("resuming after epoch 1 of 2" in line for line in logs)
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 2


def test_force_retrains_a_run_once_though_two_rows_use_it(tmp_path, monkeypatch):
    monkeypatch.setattr(reconstruction, "ROWS", [r for r in ROWS if r.name in ("best-5", "best-5-refined")])
    calls = []
    monkeypatch.setattr(reconstruction, "ensure_trained",
                        lambda cfg, run_dir, *, force, **_: calls.append((run_dir.name, force)))
    monkeypatch.setattr(reconstruction, "seed_result", lambda run_dir, **_: {
        "model": "mlp", "latent_dim": 5, "params": 1, "sse_per_image": 1.0, "sse_per_image_std": 0.1,
        "mse_per_pixel": 1 / 784, "knn_accuracy": 0.5, "probe_accuracy": 0.5, "epoch": 1,
        "train_seconds": 1.0, "run_dir": str(run_dir), "hardware": "X", "eval_hardware": "X"})
    reconstruction.collect(root=tmp_path, only=None, quick=True, force=True, log=lambda *_: None)
    assert calls == [("best-5-seed0", True), ("best-5-seed0", False)]  # the refined row reuses it


def test_changed_preset_is_refused_without_force(mnist_dir, tmp_path):
    from aelab.errors import AelabError

    run = tmp_path / "r"
    quiet = lambda *a: None  # noqa: E731
    ensure_trained(_tiny(), run, force=False, data_dir=mnist_dir, log=quiet)
    with pytest.raises(AelabError, match="other settings.*--force"):
        ensure_trained(_tiny(lr=0.01), run, force=False, data_dir=mnist_dir, log=quiet)
    ensure_trained(_tiny(lr=0.01), run, force=True, data_dir=mnist_dir, log=quiet)
    assert json.loads((run / "config.json").read_text())["lr"] == 0.01


# --- end to end -----------------------------------------------------------------------


@pytest.mark.slow
def test_results_quick_writes_the_table_json_and_figure(mnist_dir, tmp_path, capsys):
    out = tmp_path / "docs"
    # one of best-30's three seeds finished earlier: the row shows it as partial
    ensure_trained(preset_config("best-30", 0, quick=True, device="cpu"),
                   tmp_path / "runs" / "best-30-seed0", force=False, data_dir=mnist_dir)
    argv = ["results", "--quick", "--only", "seed-linear", "hinton2006-modern",
            "--runs-root", str(tmp_path / "runs"), "--out", str(out),
            "--data-dir", str(mnist_dir), "--device", "cpu"]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())
    by_name = {r["name"]: r for r in rows}
    for name in ("pca5", "pca16", "pca30", "pca64", "seed-linear", "hinton2006-modern"):
        assert set(by_name[name]) >= REQUIRED, name
        assert not by_name[name]["missing"]
    assert by_name["pca30"]["sse_per_image"] == pytest.approx(13.87, abs=0.01)
    assert 0.5 < by_name["pca30"]["knn_accuracy"] <= 1
    partial = by_name["best-30"]
    assert not partial["missing"] and (partial["seeds"], partial["seeds_planned"]) == (1, 3)
    assert partial["sse_per_image_by_seed"] == [partial["sse_per_image"]]
    assert by_name["best-64"]["missing"] and set(by_name["best-64"]) >= REQUIRED
    assert by_name["best-64"]["sse_per_image"] is None
    assert [r["sse_per_image"] for r in rows if r["model"] == "published"] == [3.00, 8.01, 13.87]
    assert [r["sse_per_image"] for r in rows if r["model"] == "pythae-ae"] == [7.28]
    refined = by_name["best-30-refined"]  # best-30's finished seed, its codes refined
    assert (refined["seeds"], refined["refine_steps"]) == (1, 50)
    assert refined["sse_per_image"] <= partial["sse_per_image"] + 1e-9
    assert (tmp_path / "runs" / "best-30-seed0" / "eval-refine-50.json").is_file()
    assert (tmp_path / "runs" / "hinton2006-modern-seed0" / "represent.json").is_file()
    md = (out / "RESULTS.md").read_text()
    assert "--quick run" in md and "| PCA, 30 numbers | `pca` | 30 |" in md and "not run yet" in md
    assert "| 1 of 3 (partial) | `best-30` |" in md
    assert "- best 64-number model: target ≤ 1.0, not run yet" in md
    assert re.search(r"- best 30-number model: target ≤ 2\.0 over 3 seeds, trained in ≤ 20 min; "
                     r"best [\d.]+ \(.*, 1 of 3 seeds\).*: \*\*missed\*\*", md)  # 1 seed of 3 trained
    for group in ("vae", "anomaly", "denoise"):  # not run: their sections say how
        assert f"`aelab results --only {group}` writes" in md
    assert (out / "img" / "compare30.png").stat().st_size > 10_000
    # a second call reuses the finished runs instead of training them again
    capsys.readouterr()
    assert main(argv) == 0
    assert "training" not in capsys.readouterr().out


@pytest.mark.slow
def test_results_land_in_the_named_folder_and_never_in_docs(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a user's folder, with a docs/ of its own
    (tmp_path / "docs").mkdir()
    argv = ["results", "--quick", "--only", "pca30", "--out", "named", "--data-dir", str(mnist_dir),
            "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "RESULTS.md and the groups' JSON files in named/" in out
    by_name = {r["name"]: r for r in json.loads((tmp_path / "named" / "results.json").read_text())}
    assert by_name["pca30"]["sse_per_image"] == pytest.approx(13.87, abs=0.01)
    assert "| PCA, 30 numbers | `pca` | 30 |" in (tmp_path / "named" / "RESULTS.md").read_text()
    assert (tmp_path / "named" / "img" / "compare30.png").is_file()
    assert list((tmp_path / "docs").iterdir()) == []
    assert {p.name for p in tmp_path.iterdir()} <= {"docs", "named", "runs"}


def test_results_default_folder_is_docs_only_at_the_root_of_the_checkout(tmp_path, monkeypatch):
    from aelab.data.registry import is_aelab_checkout
    from aelab.results import output_folders as results_folders

    assert is_aelab_checkout(Path(__file__).resolve().parents[1])  # `make results` keeps docs/RESULTS.md
    monkeypatch.chdir(tmp_path)
    assert results_folders(None, None, quick=False) == (Path("runs/results"), Path("aelab-results"))
    assert results_folders(None, None, quick=True) == (Path("runs/results-quick"),
                                                       Path("runs/results-quick/docs"))
    assert results_folders(Path("r"), Path("o"), quick=False) == (Path("r"), Path("o"))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert results_folders(None, None, quick=False)[1] == Path("aelab-results")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "aelab"\ndynamic = ["version"]\n')
    assert results_folders(None, None, quick=False)[1] == Path("docs")
    assert results_folders(None, None, quick=True)[1] == Path("runs/results-quick/docs")


def test_unknown_row_is_a_clear_error(capsys):
    assert main(["results", "--only", "best-31"]) == 2
    err = capsys.readouterr().err
    assert ("--only best-31: no such group or row; groups: reconstruction, vae, anomaly, denoise, "
            "generation") in err
    assert "reconstruction rows: pca5" in err


def test_only_takes_groups_and_rows():
    assert split_only(None) == dict.fromkeys(["reconstruction", "vae", "anomaly", "denoise",
                                              "generation"])
    assert split_only(["vae"]) == {"vae": None}
    # a row runs its group with that row alone trained, in the groups' order
    assert list(split_only(["denoise", "best-5"]).items()) == [("reconstruction", ["best-5"]),
                                                               ("denoise", None)]
    assert split_only(["reconstruction", "best-5"]) == {"reconstruction": None}


def test_rows_without_runs_keep_their_earlier_entry(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(reconstruction, "ROWS", [r for r in ROWS if r.name in ("best-5", "best-64")])
    earlier = [{"name": "best-64", "label": "best 64-number model", "preset": "best-64",
                "missing": False, "sse_per_image": 0.93, "hardware": "elsewhere"}]
    rows = reconstruction.collect(root=tmp_path, only=[], quick=False, force=False, data_dir=mnist_dir,
                                  log=lambda *_: None, previous=earlier)
    by_name = {r["name"]: r for r in rows}
    assert by_name["best-64"]["carried"] and by_name["best-64"]["sse_per_image"] == 0.93
    assert by_name["best-5"]["missing"]  # nothing earlier: not run yet


def test_runs_name_the_machine_of_their_epochs():
    from aelab.runs import NOT_RECORDED, trained_on

    assert trained_on([{"epoch": 1}]) == NOT_RECORDED  # a run from before it was recorded
    assert trained_on([{"hardware": "a"}, {"hardware": "a"}, {"hardware": "b"}]) == "a; b"  # resumed


def _target_row(preset, sse, seeds=1, planned=1, minutes=(5.0,), label=None):
    return {"name": label or preset, "label": label or preset, "preset": preset, "missing": False,
            "sse_per_image": sse, "seeds": seeds, "seeds_planned": planned,
            "train_seconds": 60 * sum(minutes) / len(minutes),
            "train_seconds_by_seed": [60 * m for m in minutes]}


def test_targets_need_every_planned_seed_and_the_time_limit():
    def verdict(preset, row):
        line = next(x for x in targets_lines([row]).splitlines() if x.startswith(f"- {preset}"))
        return line.rsplit("**", 2)[-2]

    assert verdict("best-5", _target_row("best-5", 12.7, minutes=(19.0,))) == "met"
    assert verdict("best-5", _target_row("best-5", 12.7, minutes=(31.0,))) == "missed"  # too slow
    assert verdict("best-5", _target_row("best-5", 13.5)) == "missed"
    assert verdict("best-30", _target_row("best-30", 1.3, 1, 3)) == "missed"  # 1 seed of 3
    assert verdict("best-30", _target_row("best-30", 1.3, 3, 3, (12.0, 13.0, 21.0))) == "missed"
    assert verdict("best-30", _target_row("best-30", 1.3, 3, 3, (12.0, 13.0, 14.0))) == "met"
    assert verdict("best-64", _target_row("best-64", 0.9, minutes=(99.0,))) == "met"  # no time limit


def test_machines_lines_group_rows_by_machine():
    rows = [{"name": "a", "hardware": "X"}, {"name": "b", "hardware": "Y"},
            {"name": "c", "hardware": "X"}, {"name": "d", "missing": True, "hardware": "Z"}]
    assert machines_lines(rows) == "  - X: `a`, `c`\n  - Y: `b`"


@pytest.mark.slow
def test_results_quick_task_groups_write_their_json_and_sections(mnist_dir, tmp_path):
    """--quick runs of the vae, anomaly and denoise groups: every row schema the issue
    names, the baselines and published anchors beside aelab's rows, one section each."""
    out = tmp_path / "docs"
    argv = ["results", "--quick", "--only", "vae", "anomaly", "denoise", "--runs-root",
            str(tmp_path / "runs"), "--out", str(out), "--data-dir", str(mnist_dir), "--device", "cpu"]
    assert main(argv) == 0
    vae = json.loads((out / "results-vae.json").read_text())
    keys = {"name", "model", "latent_dim", "params", "binarize", "iw_samples", "nll_nats",
            "neg_elbo_nats", "epochs", "train_seconds"}
    assert all(set(r) >= keys for r in vae)
    ours = next(r for r in vae if r["kind"] == "aelab")
    assert ours["binarize"] == "dynamic" and ours["iw_samples"] == 20
    aelab_rows = {r["name"]: r for r in vae if r["kind"] == "aelab"}
    assert set(aelab_rows) == {"vae-binarized", "iwae-binarized", "vamp-binarized"}
    assert all(r["nll_nats"] <= r["neg_elbo_nats"] + 1e-6 for r in aelab_rows.values())
    assert ours["nll_nats"] <= ours["neg_elbo_nats"] + 1e-6  # the IW bound is tighter than the ELBO
    assert any(r["name"] == "independent-pixels" for r in vae)
    assert [r["nll_nats"] for r in vae if r["kind"] == "published"][:1] == [86.76]
    anomaly = json.loads((out / "results-anomaly.json").read_text())
    for protocol in ("one-class", "leave-one-out"):
        rows = {r["method"]: r for r in anomaly if r["protocol"] == protocol}
        assert {"mlp-nap", "mlp-sse", "mlp-sap"} <= set(rows)
        assert ("pca-16" if protocol == "one-class" else "pca-8") in rows
        for r in rows.values():
            assert len(r["auc_by_digit"]) == 10 and all(0 <= a <= 1 for a in r["auc_by_digit"])
            assert r["auc_mean"] == pytest.approx(sum(r["auc_by_digit"]) / 10)
    assert any(r["method"] == "deep-svdd" for r in anomaly)
    denoise = json.loads((out / "results-denoise.json").read_text())
    for noise in ("gaussian:0.1", "gaussian:0.3", "gaussian:0.5", "masking:0.25", "masking:0.5"):
        methods = {r["method"] for r in denoise if r["noise"] == noise}
        assert {"noisy", "wiener", "conv"} <= methods, noise
    assert all(set(r) >= {"noise", "method", "psnr_db", "sse_per_image"} for r in denoise)
    md = (out / "RESULTS.md").read_text()
    for title in ("## VAE likelihood", "## Anomaly detection", "### one-class", "### leave-one-out",
                  "## Denoising", "Burda", "Deep One-Class", "Wiener filter"):
        assert title in md, title
    assert "`aelab results --only reconstruction` writes" in md  # not run: says how
    here = hardware()  # every trained row names the machine its runs recorded
    assert ours["hardware"] == here and ours["eval_hardware"] == here
    assert all(r["hardware"] == here for r in anomaly + denoise if r["kind"] == "aelab")
    assert f"Trained on: {here}" in md and f"  - {here}: one-class models, training" in md
    stamp = (out / "results-vae.json").stat().st_mtime_ns
    assert main([*argv[:3], "vae", *argv[6:]]) == 0  # finished runs and evaluations reused
    assert json.loads((out / "results-vae.json").read_text()) == vae
    assert (out / "results-vae.json").stat().st_mtime_ns >= stamp
