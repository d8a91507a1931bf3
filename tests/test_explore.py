"""`aelab explore` end to end on tiny real runs, its pieces against known answers, and the
trainer's denoising mode (--noise) end to end."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from aelab.cli import main
from aelab.errors import AelabError
from aelab.apps import explore as explore_app
from aelab.apps.explore import (interpolation_codes, lerp, manifold_axes, manifold_codes,
                                nearest_codes, principal_directions)
from aelab.data.batches import sample_codes

FIGURES = ("latent_map.png", "interpolation.png", "traversal.png", "samples.png", "neighbours.png")
TILE = 28  # manifold.png draws each decoded image at one PNG pixel per image pixel


def _train(mnist_dir, run, *args):
    argv = ["train", *args, "--limit", "1024", "--epochs", "1", "--run-dir", str(run),
            "--data-dir", str(mnist_dir), "--device", "cpu"]
    assert main(argv) == 0
    return run


@pytest.fixture(scope="session")
def conv_run(mnist_dir, tmp_path_factory):
    return _train(mnist_dir, tmp_path_factory.mktemp("explore") / "conv", "conv")


@pytest.fixture(scope="session")
def vae2_run(mnist_dir, tmp_path_factory):
    return _train(mnist_dir, tmp_path_factory.mktemp("explore") / "vae2", "vae", "--latent-dim", "2")


def _image(path):
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("L"))


def _explore(run, mnist_dir, *args):
    return main(["explore", str(run), "--data-dir", str(mnist_dir), "--device", "cpu", *args])


def test_explore_conv_run_writes_five_figures(conv_run, mnist_dir, capsys):
    assert _explore(conv_run, mnist_dir, "--tsne-points", "300") == 0
    out = capsys.readouterr().out
    for name in FIGURES:
        path = conv_run / "explore" / name
        assert f"wrote {path}" in out
        img = _image(path)
        assert img.shape[0] > 250 and img.shape[1] > 400, name
        assert img.std() > 10, f"{name} is blank"
    # the map has two panels (PCA, t-SNE) side by side: wider than tall
    h, w = _image(conv_run / "explore" / "latent_map.png").shape
    assert w > 2 * h
    assert not (conv_run / "explore" / "manifold.png").exists()  # 64-number codes: no grid
    assert "manifold" not in out


def _manifold_tiles(path):
    """Tiles per side of a manifold.png, from its pixel size: n * TILE plus the margins."""
    h, w = _image(path).shape
    side = h - explore_app.BOTTOM - explore_app.TOP
    assert w == max(side, explore_app.MIN_WIDTH) + explore_app.LEFT + explore_app.RIGHT
    assert side % TILE == 0, (h, w)
    return side // TILE


def test_explore_vae_with_2d_codes_draws_them_directly(vae2_run, mnist_dir, tmp_path, capsys):
    out = tmp_path / "figs"
    assert _explore(vae2_run, mnist_dir, "--out", str(out), "--neighbours", "4") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted((*FIGURES, "manifold.png"))
    assert f"wrote {out / 'manifold.png'}" in capsys.readouterr().out
    h, w = _image(out / "latent_map.png").shape
    assert w < 2 * h  # one panel: the codes themselves, no projection
    assert not (vae2_run / "explore").exists()  # --out was honoured
    assert _manifold_tiles(out / "manifold.png") == explore_app.MANIFOLD_SIZE == 20
    assert _image(out / "manifold.png").std() > 10
    assert _image(out / "interpolation.png").shape[0] > 500  # six pairs, six rows


def test_explore_manifold_size_and_chosen_interpolation(vae2_run, mnist_dir, tmp_path):
    out = tmp_path / "figs"
    assert _explore(vae2_run, mnist_dir, "--out", str(out), "--tsne-points", "0",
                    "--manifold-size", "7", "--interpolate", "3", "9999") == 0
    assert _manifold_tiles(out / "manifold.png") == 7
    assert _image(out / "interpolation.png").shape[0] < 250  # the one pair asked for: one row


def test_explore_rejects_a_manifold_for_codes_not_of_size_2(conv_run, mnist_dir, capsys):
    assert _explore(conv_run, mnist_dir, "--manifold-size", "5") == 2
    err = capsys.readouterr().err
    assert "--manifold-size 5" in err and "64 numbers" in err and "needs 2" in err
    assert "Traceback" not in err


def test_explore_rejects_bad_options_and_missing_runs(conv_run, mnist_dir, tmp_path, capsys):
    assert _explore(conv_run, mnist_dir, "--tsne-points", "-1") == 2
    assert "--tsne-points" in capsys.readouterr().err
    assert _explore(tmp_path / "nope", mnist_dir) == 2
    assert "does not exist" in capsys.readouterr().err
    assert _explore(conv_run, mnist_dir, "--manifold-size", "1") == 2
    assert "--manifold-size must be >= 2" in capsys.readouterr().err


@pytest.mark.parametrize("pair", [("0", "10000"), ("-1", "5")])
def test_explore_rejects_test_indices_out_of_range(conv_run, mnist_dir, pair, capsys):
    assert _explore(conv_run, mnist_dir, "--interpolate", *pair) == 2
    err = capsys.readouterr().err
    assert f"--interpolate {pair[0]} {pair[1]}" in err
    assert "10,000 images" in err and "between 0 and 9999" in err
    assert "Traceback" not in err


# --- the pieces -----------------------------------------------------------------------


def test_principal_directions_recover_a_known_axis():
    g = torch.Generator().manual_seed(0)
    # variance 9 along (1, 1)/sqrt 2, variance 0.25 along (1, -1)/sqrt 2, mean (5, -2)
    e = torch.randn(20_000, 2, generator=g) * torch.tensor([3.0, 0.5])
    rot = torch.tensor([[1.0, 1.0], [1.0, -1.0]]) / 2**0.5
    mean, dirs, var = principal_directions(e @ rot + torch.tensor([5.0, -2.0]))
    assert torch.allclose(mean, torch.tensor([5.0, -2.0], dtype=torch.float64), atol=0.05)
    assert abs(abs(dirs[0] @ rot[0].double()) - 1) < 1e-3
    assert var[0].item() == pytest.approx(9, rel=0.05) and var[1].item() == pytest.approx(0.25, rel=0.05)


def test_autoencoder_samples_follow_the_codes_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.0, 0.0, 0.1]])
    codes = torch.randn(20_000, 3, generator=g) @ a.T + torch.tensor([1.0, 2.0, 3.0])
    z = sample_codes(codes, 20_000, variational=False, seed=1)
    assert torch.allclose(z.mean(0), codes.double().mean(0), atol=0.05)
    assert torch.allclose(z.T.cov(), codes.double().T.cov(), atol=0.08)  # full covariance


def test_vae_samples_come_from_the_standard_normal_prior():
    codes = torch.full((100, 4), 7.0)  # the codes are ignored: the prior is N(0, I)
    z = sample_codes(codes, 20_000, variational=True, seed=0)
    assert z.mean(0).abs().max() < 0.05
    assert torch.allclose(z.T.cov(), torch.eye(4, dtype=torch.float64), atol=0.05)


def test_nearest_codes_finds_the_closest_rows_in_order():
    codes = torch.tensor([[0.0, 0.0], [10.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    assert nearest_codes(torch.tensor([[0.1, 0.0], [9.0, 0.0]]), codes, 2).tolist() == [[0, 2], [1, 2]]


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_manifold_lattice_of_a_vae_is_the_priors_quantiles():
    codes = torch.full((100, 2), 7.0)  # ignored: the lattice comes from N(0, 1)
    z1, z2 = manifold_axes(codes, 20, variational=True)
    assert torch.equal(z1, z2)
    assert z1[0].item() == pytest.approx(-1.6448536, abs=1e-6)  # Keras: norm.ppf(0.05)
    probs = [_normal_cdf(v) for v in z1.tolist()]
    assert probs == pytest.approx(np.linspace(0.05, 0.95, 20).tolist(), abs=1e-9)


def test_manifold_lattice_of_an_autoencoder_spans_the_codes_percentiles():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(5000, 2, generator=g) * torch.tensor([1.0, 10.0]) + torch.tensor([3.0, -4.0])
    z1, z2 = manifold_axes(codes, 5, variational=False)
    for axis, col in ((z1, codes[:, 0]), (z2, codes[:, 1])):
        lo, hi = np.percentile(col.double().numpy(), [1, 99])
        assert axis.tolist() == pytest.approx(np.linspace(lo, hi, 5).tolist(), rel=1e-9)
    assert (z2[-1] - z2[0]) / (z1[-1] - z1[0]) == pytest.approx(10, rel=0.1)


def test_manifold_codes_tile_the_lattice_row_by_row_from_the_top():
    codes = torch.tensor([[0.0, 0.0], [1.0, 10.0], [2.0, 20.0]]).repeat(100, 1)
    z1, z2 = manifold_axes(codes, 3, variational=False)
    grid = manifold_codes(codes, 3, variational=False)  # (9, 2)
    assert grid.shape == (9, 2)
    assert grid[:3, 0].tolist() == z1.tolist()  # z1 rises along the top row
    assert grid[:3, 1].tolist() == [z2[2].item()] * 3  # whose z2 is the largest
    assert grid[::3, 1].tolist() == z2.flip(0).tolist()  # z2 falls down the rows


@pytest.mark.parametrize("fixture,variational", [("vae2_run", True), ("conv_run", False)])
def test_interpolation_runs_between_the_chosen_test_images(fixture, variational, mnist_dir,
                                                           request):
    from aelab.data import load_dataset
    from aelab.data.batches import encode_all
    from aelab.runs import load_run

    model = load_run(request.getfixturevalue(fixture)).model
    test_x = load_dataset("mnist", "test", data_dir=mnist_dir)[0]
    i, j = 3, 9999
    path = interpolation_codes(model, test_x, torch.tensor([[i, j]]), variational=variational)
    assert path.shape == (1, explore_app.N_STEPS, model.latent_dim)
    za, zb = encode_all(model, test_x[[i]])[0], encode_all(model, test_x[[j]])[0]
    assert not torch.allclose(za, zb, atol=1e-3)  # two different images, two different codes
    assert torch.allclose(path[0, 0], za, atol=1e-5) and torch.allclose(path[0, -1], zb, atol=1e-5)
    if not variational:  # a straight line: the middle step is the midpoint
        assert torch.allclose(path[0, explore_app.N_STEPS // 2], (za + zb) / 2, atol=1e-5)


def test_lerp_ends_at_its_inputs():
    a, b = torch.tensor([1.0, -1.0]), torch.tensor([3.0, 5.0])
    path = lerp(a, b, torch.linspace(0, 1, 3))
    assert torch.equal(path, torch.tensor([[1.0, -1.0], [2.0, 2.0], [3.0, 5.0]]))


def test_explore_function_rejects_nonsense_before_work(conv_run):
    from aelab.apps.explore import explore

    with pytest.raises(AelabError, match="neighbours"):
        explore(conv_run, neighbours=0)


# --- denoising (the trainer's --noise), end to end ------------------------------------


def test_denoising_run_and_its_noisy_evaluation(mnist_dir, tmp_path, capsys):
    run = tmp_path / "denoise"
    argv = ["train", "conv", "--noise", "gaussian:0.3", "--limit", "4096", "--epochs", "2",
            "--batch-size", "32", "--lr", "3e-3",
            "--run-dir", str(run), "--data-dir", str(mnist_dir), "--device", "cpu"]
    assert main(argv) == 0
    recon = _image(run / "recon_epoch02.png")
    assert recon.shape[0] > 250  # three rows: corrupted, denoised, clean
    capsys.readouterr()
    assert main(["eval", str(run), "--noise", "gaussian:0.3", "--data-dir", str(mnist_dir),
                 "--device", "cpu"]) == 0
    noisy = json.loads((run / "eval-noise-gaussian-0.3.json").read_text())
    assert noisy["noise"] == "gaussian:0.3" and noisy["n_images"] == 10_000
    # the denoised output is closer to the clean image than the corrupted input was
    from aelab.data import load_dataset
    from aelab.data.batches import to_float
    from aelab.data.batches import corrupt, epoch_generator

    x = to_float(load_dataset("mnist", "test", data_dir=mnist_dir)[0][:2000])
    corrupted_sse = (corrupt(x, "gaussian:0.3", epoch_generator(12345, 0)) - x).square().sum((1, 2, 3))
    assert noisy["sse_per_image"] < 0.8 * corrupted_sse.mean().item()
