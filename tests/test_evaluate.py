import math

import pytest
import torch

from aelab.data import load_dataset
from aelab.evaluate import format_table, summarize
from aelab.pca import test_sse as pca_for


def test_pca_30_reproduces_the_published_13_87(mnist_dir):
    """Hinton & Salakhutdinov (Science 2006, Fig. 2): PCA with 30 components, 13.87."""
    assert pca_for("mnist", 30, data_dir=mnist_dir).mean().item() == pytest.approx(13.87, abs=0.01)


def test_pca_error_falls_with_more_components_and_vanishes_at_784(mnist_dir):
    errs = [pca_for("mnist", k, data_dir=mnist_dir).mean().item() for k in (5, 30, 64, 784)]
    assert errs[0] > errs[1] > errs[2] > errs[3]
    assert errs[3] < 1e-9


def test_summarize_by_digit_and_psnr():
    sse = torch.tensor([784 * 0.01, 784 * 0.03], dtype=torch.float64)
    s = summarize(sse, torch.tensor([3, 7]))
    assert s["mse_per_pixel"] == pytest.approx(0.02)
    assert s["psnr_db"] == pytest.approx(10 * math.log10(50))
    assert s["sse_per_image_by_digit"] == {"3": pytest.approx(7.84), "7": pytest.approx(23.52)}


ROW = {"model": "conv", "latent_dim": 5, "params": 1234, "mse_per_pixel": 0.1, "sse_per_image": 78.4,
       "pca_sse_per_image": 80.0, "psnr_db": 10.0, "train_seconds": 3.0}


def test_table_has_a_row_per_result():
    text = format_table([ROW, dict(ROW, model="n")])
    assert len(text.splitlines()) == 4 and "1,234" in text
    assert format_table([ROW], markdown=True).startswith("| run | model |")


def test_table_names_each_run_by_its_folder(tmp_path):
    """Three runs of one model read "conv" three times unless a column says which run."""
    dirs = [tmp_path / "a" / "conv", tmp_path / "b" / "conv", tmp_path / "wide"]
    rows = [dict(ROW, run_dir=str(d), checkpoint="best") for d in dirs]
    text = format_table(rows).splitlines()
    assert text[0].split()[:2] == ["run", "model"]
    assert [line.split()[0] for line in text[2:]] == ["a/conv", "b/conv", "wide"]
    md = format_table(rows, markdown=True).splitlines()
    assert [line.split(" | ")[0] for line in md[2:]] == ["| a/conv", "| b/conv", "| wide"]


def test_run_labels_are_unique():
    from aelab.evaluate import run_labels

    assert run_labels([{"run_dir": "/x/a/b/conv"}, {"run_dir": "/x/c/b/conv"},
                       {"run_dir": "/x/c/d/conv"}]) == ["a/b/conv", "c/b/conv", "d/conv"]
    # one folder twice: its checkpoints, else a number
    assert run_labels([{"run_dir": "/r", "checkpoint": "best"},
                       {"run_dir": "/r", "checkpoint": "last"}]) == ["r (best)", "r (last)"]
    assert run_labels([{"run_dir": "/r"}, {"run_dir": "/r"}, {}]) == ["r", "r #2", "-"]


# --- a checkpoint file for a run folder -----------------------------------------------


def test_a_checkpoint_file_names_its_run_and_checkpoint(tmp_path):
    from aelab.errors import AelabError
    from aelab.evaluate import run_and_checkpoint

    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    ck = run / "checkpoints"
    assert run_and_checkpoint(run) == (run, "best")
    assert run_and_checkpoint(run, "last") == (run, "last")
    assert run_and_checkpoint(ck / "best.safetensors") == (run, "best")
    assert run_and_checkpoint(ck / "last.safetensors") == (run, "last")
    assert run_and_checkpoint(ck / "last.json", "last") == (run, "last")
    assert run_and_checkpoint(ck) == (run, "best")
    with pytest.raises(AelabError, match="'last' checkpoint but --checkpoint says 'best'"):
        run_and_checkpoint(ck / "last.safetensors", "best")
    with pytest.raises(AelabError, match="give the run folder"):
        run_and_checkpoint(run / "config.json")


# --- the likelihood bound's time estimate ---------------------------------------------


def test_bound_progress_estimates_the_total_from_the_first_seconds():
    from aelab.evaluate import BoundProgress

    now = [100.0]
    lines = []
    p = BoundProgress(5000, lines.append, clock=lambda: now[0])
    now[0] += 10.0  # the first chunk of 2 images: 10 s of one-off costs, not in the rate
    p(2, 10_000)
    assert lines == []
    for done in range(4, 22, 2):  # then 0.36 s per chunk of 2 images
        now[0] += 0.36
        p(done, 10_000)
    # timed on images 3..20: 0.18 s an image; 13.24 s so far + 9,980 x 0.18 s = 30.2 min
    assert lines == ["IWAE bound with k=5000 on 10,000 test images: about 30 min on this machine "
                     "(measured on the first 20 images); --iw-samples K for a quicker, looser bound"]
    for done in range(22, 1002, 2):
        now[0] += 0.36
        p(done, 10_000)
    assert lines[-1] == ("  likelihood bound, 5000 importance samples: 1,000/10,000 images "
                         "(about 27 min left)")
    assert len(lines) == 2


def test_a_short_bound_says_no_more_than_its_progress():
    from aelab.evaluate import BoundProgress

    lines = []
    p = BoundProgress(10, lines.append, clock=lambda: 0.0)
    p(50, 50)
    assert lines == ["  likelihood bound, 10 importance samples: 50/50 images"]


def test_eval_of_a_vae_prints_the_estimate_before_the_bound_runs_long(mnist_dir, tmp_path,
                                                                       monkeypatch, capsys):
    import aelab.evaluate
    from aelab.cli import main

    run = tmp_path / "vae"
    assert main(["train", "vae", "--epochs", "1", "--limit", "64", "--run-dir", str(run),
                 "--data-dir", str(mnist_dir), "--device", "cpu"]) == 0
    monkeypatch.setattr(aelab.evaluate, "ESTIMATE_AFTER_S", 0.0)  # estimate after chunk 2
    capsys.readouterr()
    assert main(["eval", str(run), "--iw-samples", "1", "--data-dir", str(mnist_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    estimate = [i for i, line in enumerate(out) if "about" in line and "on this machine" in line]
    first_progress = next(i for i, line in enumerate(out) if "1,000/10,000 images" in line)
    assert len(estimate) == 1 and estimate[0] < first_progress
    assert out[estimate[0]].startswith("IWAE bound with k=1 on 10,000 test images: about ")
    assert "(measured on the first 100 images)" in out[estimate[0]]


# --- PCA under noise ------------------------------------------------------------------


def test_pca_of_noisy_inputs_is_scored_against_the_clean_images(mnist_dir):
    from aelab import pca
    from aelab.data.batches import to_float

    x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    x = x[:300]
    b = pca.dataset_basis("mnist", data_dir=mnist_dir)
    clean = to_float(x)
    noisy = (clean + 0.3 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert torch.allclose(pca.sse(b, x, 30, clean), pca.sse(b, x, 30))  # clean inputs: as before
    # all 784 components reproduce the input itself: the error is the noise's own
    noise_sse = (noisy - clean).double().flatten(1).square().sum(1)
    assert torch.allclose(pca.sse(b, x, 784, noisy), noise_sse)
    # with 30 components PCA removes about half the error, yet does worse than on clean inputs
    ours = pca.sse(b, x, 30, noisy).mean()
    assert pca.sse(b, x, 30).mean() < ours < 0.6 * noise_sse.mean()


def test_eval_noise_puts_pca_of_the_same_noisy_inputs_in_the_table(seed_runs, mnist_dir, monkeypatch,
                                                                     capsys):
    import json

    import aelab.evaluate
    from aelab import pca
    from aelab.cli import main
    from aelab.data.batches import to_float

    def blank_left_half(x, noise, gen):  # a known corruption, in place of the seeded noise
        out = x.clone()
        out[..., :14] = 0
        return out

    monkeypatch.setattr(aelab.evaluate, "corrupt", blank_left_half)
    run = seed_runs["linear"]
    assert main(["eval", str(run), "--noise", "masking:0.5", "--data-dir", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    ev = json.loads((run / "eval-noise-masking-0.5.json").read_text())
    x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    inputs = to_float(x)
    inputs[..., :14] = 0
    expected = pca.sse(pca.dataset_basis("mnist", data_dir=mnist_dir), x, 5, inputs).mean().item()
    assert ev["pca_sse_per_image"] == pytest.approx(expected, rel=1e-9)
    assert ev["pca_sse_per_image"] > 34.91 + 5  # not the clean-input PCA (34.91 at k=5)
    assert ev["pca_input"] == "noisy (masking:0.5)"
    assert "PCA SSE/image (same k, same noisy input)" in out
    assert "PCA reconstructs the same corrupted inputs" in out


def test_dataset_tensors(mnist_dir):
    x, y = load_dataset("mnist", "test", data_dir=mnist_dir)
    assert x.dtype == torch.uint8 and x.shape == (10000, 28, 28) and y.dtype == torch.int64


# --- code refinement ------------------------------------------------------------------


class _LinearAE(torch.nn.Module):
    """decode(z) = z W^T with orthonormal W (784, k): the best code of x is W^T x (PCA's
    projection). The encoder is deliberately poor: half that code plus an offset."""

    def __init__(self, images, k=6):
        super().__init__()
        _, _, vh = torch.linalg.svd(images.flatten(1).float() / 255, full_matrices=False)
        self.w = torch.nn.Parameter(vh[:k].T.contiguous())  # (784, k), orthonormal columns
        self.latent_dim = k

    def encode(self, x):
        return 0.5 * x.flatten(1) @ self.w + 0.1

    def decode(self, z):
        return (z @ self.w.T).view(-1, 1, 28, 28)

    def forward(self, x):
        return self.decode(self.encode(x))


def test_refinement_reaches_the_best_code_of_a_linear_decoder(mnist_dir):
    from aelab.data.batches import reconstruction_sse, to_float
    from aelab.evaluate import refined_sse

    x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    x = x[:200]
    model = _LinearAE(x)
    flat = to_float(x).flatten(1).double()
    w = model.w.detach().double()
    best = (flat - flat @ w @ w.T).square().sum(1)  # least squares: the projection's error
    plain = reconstruction_sse(model, x)
    refined = refined_sse(model, x, steps=200, batch_size=64)
    assert (refined <= plain + 1e-6).all()  # never worse than the encoder's code
    assert plain.mean() > 1.2 * best.mean()  # the encoder is far from the optimum ...
    gap_before, gap_after = (plain.mean() - best.mean()).item(), (refined.mean() - best.mean()).item()
    assert 0 <= gap_after < 0.05 * gap_before  # ... refinement closes 95% of the gap
    assert refined_sse(model, x, steps=0).allclose(plain.float().double(), rtol=1e-5)
    assert all(p.requires_grad for p in model.parameters())  # the model is left as it was


def test_eval_refine_steps_writes_its_own_file_and_refuses_noise(seed_runs, mnist_dir, capsys):
    import json

    from aelab.cli import main

    run = seed_runs["linear"]
    assert main(["eval", str(run), "--refine-steps", "3", "--data-dir", str(mnist_dir)]) == 0
    refined = json.loads((run / "eval-refine-3.json").read_text())
    assert refined["refine_steps"] == 3 and "psnr_db_mean_per_image" in refined
    assert main(["eval", str(run), "--data-dir", str(mnist_dir)]) == 0
    plain = json.loads((run / "eval.json").read_text())
    assert refined["sse_per_image"] <= plain["sse_per_image"] + 1e-9
    capsys.readouterr()
    assert main(["eval", str(run), "--refine-steps", "3", "--noise", "gaussian:0.3",
                 "--data-dir", str(mnist_dir)]) == 2
    assert "--refine-steps" in capsys.readouterr().err
    assert main(["eval", str(run), "--refine-steps", "-1", "--data-dir", str(mnist_dir)]) == 2


def test_per_image_psnr_is_the_mean_of_each_images_psnr():
    sse = torch.tensor([784 * 0.01, 784 * 0.0001], dtype=torch.float64)
    s = summarize(sse)
    assert s["psnr_db_mean_per_image"] == pytest.approx((20 + 40) / 2)
    assert s["psnr_db"] == pytest.approx(10 * math.log10(1 / 0.00505))
