"""`aelab explore` end to end on tiny real runs, its pieces against known answers, and the
trainer's denoising mode (--noise) end to end."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aelab.cli import main
from aelab.errors import AelabError
from aelab.apps.explore import lerp, nearest_codes, principal_directions, sample_codes

FIGURES = ("latent_map.png", "interpolation.png", "traversal.png", "samples.png", "neighbours.png")


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


def test_explore_vae_with_2d_codes_draws_them_directly(vae2_run, mnist_dir, tmp_path, capsys):
    out = tmp_path / "figs"
    assert _explore(vae2_run, mnist_dir, "--out", str(out), "--neighbours", "4") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FIGURES)
    h, w = _image(out / "latent_map.png").shape
    assert w < 2 * h  # one panel: the codes themselves, no projection
    assert not (vae2_run / "explore").exists()  # --out was honoured


def test_explore_rejects_bad_options_and_missing_runs(conv_run, mnist_dir, tmp_path, capsys):
    assert _explore(conv_run, mnist_dir, "--tsne-points", "-1") == 2
    assert "--tsne-points" in capsys.readouterr().err
    assert _explore(tmp_path / "nope", mnist_dir) == 2
    assert "does not exist" in capsys.readouterr().err


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
