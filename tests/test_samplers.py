"""Samplers (aelab.models.samplers) and `LoadedRun.sample`: the densities fitted to training
codes recover what they were fitted to and sample the same codes for the same seed; a run
samples its prior or a fitted density, saves a fitted one in RUN_DIR/samplers, reuses it
in a new process and fits it again when the checkpoint's weights change; `aelab sample`
writes the grid and the .npz.

`quick_fits()` makes the Gaussian mixture's EM cheap (fewer codes and steps: the saved file
records the settings): the serve tests use it and `prefit` too.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

import aelab._io as io_mod
from aelab.cli import main
from aelab.config import TrainConfig
from aelab.data.batches import gaussian_codes, principal_directions
from aelab.errors import AelabError
from aelab.models import ModelSpec, build_model, check_contract, samplers
from aelab.models.contract import prior_codes
from aelab.models.samplers import (CategoricalCodes, Gaussian, GaussianMixture, fit_categorical,
                                   fit_gaussian, fit_gmm)
from aelab.runs import LoadedRun, load_run, save_checkpoint


@contextmanager
def quick_fits():
    """EM on 2,000 codes for 20 steps, on one BLAS thread: a real fit in under a second.
    (Two BLAS threads on two cores that other work keeps busy made this fit 70 times
    slower: 11 s instead of 0.16 s. threadpoolctl comes with scikit-learn.)"""
    from threadpoolctl import threadpool_limits

    with pytest.MonkeyPatch.context() as mp, threadpool_limits(1):
        mp.setattr(samplers, "GMM_MAX_CODES", 2000)
        mp.setattr(samplers, "GMM_MAX_ITER", 20)
        yield


def prefit(run_dirs, data_dir) -> None:
    """Fit (quickly) and save every fitted sampler of these runs' best checkpoints, so a
    server started after reads them instead of fitting on its first request."""
    with quick_fits():
        for d in run_dirs:
            run = load_run(d, data_dir=data_dir)
            for name in run.samplers:
                run.fitted_sampler(name)


def train_tiny(tmp_path_factory, mnist_dir, name: str, model: str):
    """A real one-epoch run on 256 images (seconds), trained once per session."""
    from aelab.train import train

    run = tmp_path_factory.getbasetemp() / name
    if not (run / "checkpoints" / "best.safetensors").is_file():
        cfg = TrainConfig(model=model, epochs=1, limit=256, device="cpu")
        train(cfg, run, data_dir=mnist_dir, log=lambda _msg: None, progress=False)
    return run


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory, mnist_dir):
    return train_tiny(tmp_path_factory, mnist_dir, "handle-vae", "vae")


def fresh_copy(run_dir, to):
    """A copy of a run folder without the samplers other tests fitted in it."""
    return shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("samplers"))


@pytest.fixture
def conv_copy(seed_runs, tmp_path):
    """A copy of the session's conv run, free to change, nothing fitted yet."""
    return fresh_copy(seed_runs["conv"], tmp_path / "conv")


@pytest.fixture
def linear_copy(seed_runs, tmp_path):
    return fresh_copy(seed_runs["linear"], tmp_path / "linear")


@pytest.fixture
def fits(monkeypatch):
    """Quick fits, counted: the names of the samplers fitted during the test."""
    done = []
    real = samplers.fit

    def counted(model, name, codes):
        done.append(name)
        return real(model, name, codes)

    monkeypatch.setattr(samplers, "fit", counted)
    with quick_fits():
        yield done


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the densities ---------------------------------------------------------------------


def two_clusters(n: int = 1000) -> torch.Tensor:
    """60% of the codes around (10, -10) (sd 0.5), 40% around (-10, 10) (sd 1)."""
    g = gen(0)
    a = torch.randn(int(0.6 * n), 2, generator=g) * 0.5 + torch.tensor([10.0, -10.0])
    b = torch.randn(n - len(a), 2, generator=g) + torch.tensor([-10.0, 10.0])
    return torch.cat([a, b])[torch.randperm(n, generator=g)]


def test_gmm_recovers_two_separated_clusters():
    gmm = fit_gmm(two_clusters(), 2)
    order = gmm.means[:, 0].argsort(descending=True)  # the (10, -10) cluster first
    means, weights, chol = gmm.means[order], gmm.weights[order], gmm.chol[order]
    torch.testing.assert_close(means, torch.tensor([[10.0, -10.0], [-10.0, 10.0]], dtype=torch.float64),
                               atol=0.15, rtol=0)
    torch.testing.assert_close(weights, torch.tensor([0.6, 0.4], dtype=torch.float64), atol=1e-3, rtol=0)
    cov = chol @ chol.transpose(1, 2)  # (2, 2, 2)
    torch.testing.assert_close(cov.diagonal(dim1=1, dim2=2).sqrt(),
                               torch.tensor([[0.5, 0.5], [1.0, 1.0]], dtype=torch.float64), atol=0.1, rtol=0)
    z = gmm.sample(4000, gen(1))
    assert z.shape == (4000, 2) and abs((z[:, 0] > 0).double().mean().item() - 0.6) < 0.03
    assert z[z[:, 0] > 0].std(0).max() < 0.6  # each sample from one component, not between


def test_gmm_tensors_round_trip_through_safetensors_and_seeds_repeat():
    gmm = fit_gmm(two_clusters(), 2)
    blob = st_save(gmm.to_tensors())  # what the run folder stores: no pickle
    again = GaussianMixture.from_tensors(st_load(blob))
    a = gmm.sample(50, gen(7))
    torch.testing.assert_close(again.sample(50, gen(7)), a, rtol=0, atol=0)
    torch.testing.assert_close(gmm.sample(50, gen(7)), a, rtol=0, atol=0)
    assert not torch.equal(gmm.sample(50, gen(8)), a)
    with pytest.raises(AelabError, match="holds the tensors"):
        GaussianMixture.from_tensors({"weights": gmm.weights})
    with pytest.raises(AelabError, match="inconsistent"):
        GaussianMixture.from_tensors({**gmm.to_tensors(), "weights": torch.ones(3)})


def test_gmm_fits_a_subset_and_no_more_components_than_codes(monkeypatch):
    codes = two_clusters(1000)
    assert fit_gmm(codes[:4], 10).weights.shape == (4,)
    small = fit_gmm(codes, 2, max_codes=100)  # 100 of the 1,000: still the two clusters
    assert sorted(small.means[:, 0].round().tolist()) == [-10.0, 10.0]
    # the codes of the images fit_subset picks (what a run encodes) give the same fit
    monkeypatch.setattr(samplers, "GMM_MAX_CODES", 100)
    keep = samplers.fit_subset("gmm", len(codes))
    assert keep.shape == (100,) and samplers.fit_subset("gaussian", len(codes)) is None
    picked = fit_gmm(codes[keep], 2, max_codes=100)
    for name, t in small.to_tensors().items():
        torch.testing.assert_close(picked.to_tensors()[name], t, rtol=0, atol=0)
    with pytest.raises(AelabError, match="at least 2 codes"):
        fit_gmm(codes[:1])
    with pytest.raises(AelabError, match="NaN"):
        fit_gmm(torch.full((5, 2), float("nan")))


def test_gaussian_is_the_one_aelab_explore_samples():
    codes = two_clusters()
    g = fit_gaussian(codes)
    want = gaussian_codes(principal_directions(codes), 9, seed=5)  # explore's samples figure
    torch.testing.assert_close(g.sample(9, gen(5)), want, rtol=0, atol=1e-12)
    again = Gaussian.from_tensors(st_load(st_save(g.to_tensors())))
    torch.testing.assert_close(again.sample(9, gen(5)), want, rtol=0, atol=1e-12)


CODEBOOK = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [7.0, 7.0]])  # (4, D=2), sorted


def test_categorical_prior_keeps_each_positions_frequencies():
    # 3 positions of 2 numbers (L = 6); position 0: vector 0 three times in four, else 1;
    # position 1: always 2; position 2: 1 and 2 half each. Vector 3 is never seen.
    idx = torch.tensor([[0, 2, 1], [0, 2, 2], [0, 2, 1], [1, 2, 2]] * 25)  # (100, 3)
    codes = CODEBOOK[idx].reshape(100, 6)
    prior = fit_categorical(codes, 3)
    assert prior.vectors.tolist() == CODEBOOK[:3].tolist()  # the vectors seen, sorted
    torch.testing.assert_close(prior.frequencies, torch.tensor(
        [[0.75, 0.25, 0.0], [0.0, 0.0, 1.0], [0.0, 0.5, 0.5]], dtype=torch.float64))
    z = prior.sample(8000, gen(0)).view(8000, 3, 2)
    seen = (z[:, :, None, :] == CODEBOOK[:3]).all(-1)  # (n, 3, 3): which vector each is
    assert seen.any(-1).all()  # only vectors seen in training, never [7, 7]
    torch.testing.assert_close(seen.double().mean(0), prior.frequencies, atol=0.02, rtol=0)
    torch.testing.assert_close(prior.sample(5, gen(3)), prior.sample(5, gen(3)), rtol=0, atol=0)
    again = CategoricalCodes.from_tensors(st_load(st_save(prior.to_tensors())))
    torch.testing.assert_close(again.sample(5, gen(3)), prior.sample(5, gen(3)), rtol=0, atol=0)


def test_categorical_prior_refuses_codes_that_are_not_codebook_vectors(monkeypatch):
    with pytest.raises(AelabError, match="cannot be split into 4"):
        fit_categorical(torch.zeros(3, 6), 4)
    monkeypatch.setattr(samplers, "MAX_VECTORS", 50)
    with pytest.raises(AelabError, match="do not look like codebook vectors"):
        fit_categorical(torch.randn(100, 4), 2)


# --- which samplers a model offers -------------------------------------------------------


class TinyVQ(nn.Module):
    """A stand-in quantised model: 4 positions, each snapped to the nearest of 5 codebook
    vectors of 2 numbers (the last, far away, is never the nearest)."""

    model_spec = ModelSpec(kind="quantised")

    def __init__(self):
        super().__init__()
        self.latent_dim, self.code_groups = 8, 4
        g = gen(0)
        self.codebook = nn.Parameter(torch.tensor([[-0.3, -0.3], [0.3, -0.3], [-0.3, 0.3],
                                                   [0.3, 0.3], [50.0, 50.0]]))
        self.proj = nn.Parameter(torch.randn(784, 8, generator=g) * 0.05)
        self.out = nn.Parameter(torch.randn(8, 784, generator=g) * 0.05)

    def encode(self, x):
        z = (x.flatten(1) @ self.proj).view(-1, 2)  # (B * 4, 2)
        nearest = torch.cdist(z, self.codebook).argmin(1)  # (B * 4,)
        return self.codebook[nearest].view(len(x), 8)  # (B, 8)

    def decode(self, z):
        return torch.sigmoid(z @ self.out).view(-1, 1, 28, 28)

    def forward(self, x):
        return self.decode(self.encode(x))


def test_each_model_offers_the_samplers_its_spec_allows():
    assert samplers.offered(build_model("conv")) == ("gmm", "gaussian")
    assert samplers.offered(build_model("vae")) == ("prior", "gmm", "gaussian")
    vq = TinyVQ()
    check_contract(vq, "TinyVQ")  # the stand-in keeps the contract a quantised model keeps
    assert samplers.offered(vq) == ("prior", "gmm", "gaussian")
    assert samplers.is_fitted(vq, "prior") and not samplers.is_fitted(build_model("vae"), "prior")
    with pytest.raises(AelabError, match="ConvAE has no prior .* offers the samplers gmm, gaussian"):
        samplers.check_sampler(build_model("conv"), "prior")
    with pytest.raises(AelabError, match="no sampler 'pixelcnn'; this model offers the samplers "
                       "prior, gmm, gaussian"):
        samplers.check_sampler(vq, "pixelcnn")


# --- LoadedRun.sample ------------------------------------------------------------------


def test_a_vae_samples_its_prior_without_data_or_files(vae_run, tmp_path):
    run = load_run(vae_run, data_dir=tmp_path / "no-data-here")
    assert run.samplers == ("prior", "gmm", "gaussian") and run.default_sampler == "prior"
    a = run.sample(6, seed=4)
    z = prior_codes(run.model, 6, gen(4))  # (6, L): the prior's codes for that seed
    np.testing.assert_allclose(a, run.decode(z).numpy(), atol=1e-6)
    np.testing.assert_array_equal(a, run.sample(6, sampler="prior", seed=4))
    assert run.sampler_file("prior") is None and not (vae_run / "samplers").exists()


def test_a_conv_run_fits_a_gmm_saves_it_and_a_new_handle_reuses_it(conv_copy, mnist_dir, fits,
                                                                   tmp_path):
    run = load_run(conv_copy, data_dir=mnist_dir)
    assert run.default_sampler == "gmm"
    a = run.sample(5, seed=2)
    assert fits == ["gmm"] and a.shape == (5, 28, 28) and a.min() >= 0 and a.max() <= 1
    path = conv_copy / "samplers" / "gmm-best.safetensors"
    assert run.sampler_file("gmm") == path and path.is_file()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["weights_sha256"] == run.weights_id and meta["checkpoint"] == "best"
    assert meta["components"] == 10 and meta["training_images"] == 60_000
    assert meta["codes"] == meta["settings"]["max_codes"] == 2000 and meta["fit_seconds"] > 0
    mtime = path.stat().st_mtime_ns
    b = load_run(conv_copy, data_dir=tmp_path / "no-data").sample(5, seed=2)  # no data needed
    np.testing.assert_array_equal(a, b)
    assert fits == ["gmm"] and path.stat().st_mtime_ns == mtime  # read, not fitted again
    assert not np.array_equal(a, run.sample(5, seed=3))
    codes = run.sample_codes(5, seed=2)
    assert codes.shape == (5, 64) and codes.dtype == np.float32
    np.testing.assert_allclose(run.decode(codes), a, atol=1e-6)


def test_a_changed_checkpoint_is_fitted_again(conv_copy, mnist_dir, fits):
    run = load_run(conv_copy, data_dir=mnist_dir)
    before = run.sample(4, seed=0)
    with torch.no_grad():
        for p in run.model.parameters():
            p.mul_(1.01)  # new weights, saved as the best checkpoint
    save_checkpoint(conv_copy / "checkpoints" / "best", run.model, run.meta)
    fresh = load_run(conv_copy, data_dir=mnist_dir)
    assert fresh.weights_id != run.weights_id
    after = fresh.sample(4, seed=0)
    assert fits == ["gmm", "gmm"] and not np.array_equal(before, after)
    meta = json.loads((conv_copy / "samplers" / "gmm-best.json").read_text())
    assert meta["weights_sha256"] == fresh.weights_id  # overwritten
    load_run(conv_copy, "last", data_dir=mnist_dir).sample(2)  # each checkpoint its own fit
    assert fits == ["gmm"] * 3 and (conv_copy / "samplers" / "gmm-last.safetensors").is_file()


def test_a_read_only_run_folder_samples_from_memory_and_warns_once(linear_copy, mnist_dir, fits,
                                                                   monkeypatch):
    def read_only(*_a):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(io_mod.os, "replace", read_only)
    run = load_run(linear_copy, data_dir=mnist_dir)
    with pytest.warns(UserWarning, match="fitted in memory only") as caught:
        a = run.sample(3, sampler="gaussian", seed=1)
    assert len(caught) == 1 and "read-only" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, and the fit stays in memory
        np.testing.assert_array_equal(run.sample(3, sampler="gaussian", seed=1), a)
        run.sample(3, seed=1)  # another sampler, fitted in memory too
    assert fits == ["gaussian", "gmm"] and not list((linear_copy / "samplers").glob("*.safetensors"))


def test_a_quantised_models_prior_is_its_fitted_categorical_prior(tmp_path, mnist_dir, fits):
    run = LoadedRun(TinyVQ().eval(), TrainConfig(model="TinyVQ"), {}, tmp_path, data_dir=mnist_dir)
    assert run.default_sampler == "prior"
    codes = torch.from_numpy(run.sample_codes(200, seed=0)).view(200, 4, 2)
    book = run.model.codebook.detach()
    assert (codes[:, :, None, :] == book[:4]).all(-1).any(-1).all()  # codebook vectors only
    assert not (codes == book[4]).all(-1).any()  # never the vector no training code used
    assert fits == ["prior"]
    meta = json.loads((tmp_path / "samplers" / "prior-best.json").read_text())
    assert meta["density"] == "categorical" and meta["positions"] == 4
    again = LoadedRun(TinyVQ().eval(), TrainConfig(model="TinyVQ"), {}, tmp_path, data_dir=mnist_dir)
    np.testing.assert_array_equal(again.sample(7, seed=3), run.sample(7, seed=3))
    assert fits == ["prior"]  # the same weights: read from the file


def test_bad_requests_are_refused_before_any_fit(seed_runs, fits):
    run = load_run(seed_runs["conv"])
    for kwargs, says in [({"sampler": "prior"}, "ConvAE has no prior"),
                         ({"sampler": "nope"}, "no sampler 'nope'"),
                         ({"seed": -1}, "seed=-1"), ({"seed": 2.0}, "seed=2.0")]:
        with pytest.raises(AelabError, match=says):
            run.sample(2, **kwargs)
    with pytest.raises(AelabError, match="sample"):
        run.sample_codes(0)
    assert fits == []


# --- aelab sample ------------------------------------------------------------------------


def test_aelab_sample_writes_the_grid_and_the_npz(linear_copy, mnist_dir, tmp_path, capsys, fits):
    png, npz = tmp_path / "out" / "grid.png", tmp_path / "out" / "samples.npz"
    argv = ["sample", str(linear_copy), "--sampler", "gaussian", "--n", "10", "--seed", "3",
            "--out", str(png), "--npz", str(npz), "--data-dir", str(mnist_dir), "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {png}" in out and f"wrote {npz}" in out and "sampler gaussian" in out
    with Image.open(png) as im:
        assert im.size[0] >= 400 and im.size[1] > 2 * 28 * 2  # two rows of 8 at 2x
    with np.load(npz) as f:  # no pickle needed
        assert str(f["sampler"]) == "gaussian" and int(f["seed"]) == 3
        images, codes = f["images"], f["codes"]
    assert images.shape == (10, 28, 28) and images.dtype == np.float32 and codes.shape == (10, 5)
    run = load_run(linear_copy, data_dir=mnist_dir)
    np.testing.assert_allclose(images, run.sample(10, sampler="gaussian", seed=3), atol=1e-6)
    assert main(["sample", str(linear_copy), "--out", str(png), "--n", "4"]) == 0  # default: gmm
    assert "sampler gmm" in capsys.readouterr().out and fits == ["gaussian", "gmm"]


@pytest.mark.parametrize("args, says", [
    (["MISSING"], "does not exist"),
    (["CONV", "--sampler", "prior"], "ConvAE has no prior (its model_spec sampler is 'fitted'); "
                                     "this model offers the samplers gmm, gaussian"),
    (["CONV", "--n", "0"], "--n 0: give a number of images >= 1"),
    (["CONV", "--seed", "-3"], "seed=-3"),
])
def test_aelab_sample_errors_are_one_line_and_exit_2(seed_runs, tmp_path, capsys, args, says):
    paths = {"MISSING": str(tmp_path / "missing"), "CONV": str(seed_runs["conv"])}
    argv = ["sample", *[paths.get(a, a) for a in args], "--out", str(tmp_path / "x.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and not (tmp_path / "x.png").exists()
