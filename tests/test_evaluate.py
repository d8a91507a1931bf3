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


def test_table_has_a_row_per_result():
    r = {"model": "m", "latent_dim": 5, "params": 1234, "mse_per_pixel": 0.1, "sse_per_image": 78.4,
         "pca_sse_per_image": 80.0, "psnr_db": 10.0, "train_seconds": 3.0}
    text = format_table([r, dict(r, model="n")])
    assert len(text.splitlines()) == 4 and "1,234" in text
    assert format_table([r], markdown=True).startswith("| model |")


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
    from aelab.data.batches import reconstruction_sse, refined_sse, to_float

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
