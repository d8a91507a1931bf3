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
