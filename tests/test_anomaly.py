"""`aelab anomaly`: the AUC on cases with known answers, then the command end to end on
small slices of MNIST and Fashion-MNIST."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from aelab.apps.anomaly import format_table, roc_auc, score_holdout
from aelab.cli import main
from aelab.data import ensure_dataset, load_dataset
from aelab.errors import AelabError, DataError
from aelab.data.batches import reconstruction_sse


def test_roc_auc_known_answers():
    pos = np.array([0, 0, 0, 1, 1], dtype=bool)
    assert roc_auc([1, 2, 3, 10, 11], pos) == 1.0  # every positive above every negative
    assert roc_auc([10, 11, 12, 1, 2], pos) == 0.0  # exactly backwards
    assert roc_auc([5, 5, 5, 5, 5], pos) == 0.5  # ties count half
    assert roc_auc([1, 4, 3, 2, 5], pos) == pytest.approx(4 / 6)  # 4 of 6 pairs ordered


def test_roc_auc_needs_both_classes():
    with pytest.raises(AelabError, match="positives and negatives"):
        roc_auc([1.0, 2.0], [True, True])


class Zeros(nn.Module):
    """Reconstructs every image as black, so its error is the image's total squared ink."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # reconstruction_sse reads no parameters

    def forward(self, x):
        return torch.zeros_like(x)


def test_a_planted_outlier_class_is_found():
    # class 3: bright squares (lots of ink); all others: faint dots. A model that cannot
    # draw anything scores by ink, so it ranks every 3 first: AUC exactly 1.
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (300,), generator=g)
    images = torch.zeros(300, 28, 28, dtype=torch.uint8)
    images[:, 13:15, 13:15] = torch.randint(20, 60, (300, 1, 1), generator=g).to(torch.uint8)
    images[labels == 3, 6:22, 6:22] = 200
    scores = reconstruction_sse(Zeros(), images)
    result = score_holdout(scores, labels, 3)
    assert result["auc"] == 1.0
    assert result["n_positive"] == int((labels == 3).sum())
    assert result["mean_score_positive"] > result["mean_score_negative"]
    # a class drawn like all the others cannot be told apart by this score
    assert score_holdout(scores, labels, 5)["auc"] == pytest.approx(0.5, abs=0.1)


def test_table_has_a_row_per_class_and_the_mean():
    rows = [{"name": "0", "auc": 0.9, "mean_score_positive": 30.0, "mean_score_negative": 20.0},
            {"name": "1", "auc": 0.5, "mean_score_positive": 10.0, "mean_score_negative": 20.0}]
    table = format_table(rows).splitlines()
    assert len(table) == 5 and table[-1].startswith("| mean | 0.700 |")


# --- end to end ------------------------------------------------------------------------


def _anomaly(mnist_dir, out, *args):
    return main(["anomaly", *args, "--limit", "1024", "--epochs", "1", "--out", str(out),
                 "--data-dir", str(mnist_dir), "--device", "cpu"])


def _png_size(path):
    with Image.open(path) as im:
        im.load()
        return im.size


def test_anomaly_one_digit_end_to_end(mnist_dir, tmp_path, capsys):
    out = tmp_path / "anom"
    assert _anomaly(mnist_dir, out, "--protocol", "leave-one-out", "--holdout-digit", "0") == 0
    printed = capsys.readouterr().out
    assert "ROC AUC" in printed and str(out / "anomaly.md") in printed
    run = out / "holdout-0"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["exclude_digits"] == [0] and cfg["model"] == "conv" and cfg["limit"] == 1024
    summary = json.loads((run / "anomaly.json").read_text())
    assert summary["n_positive"] == 980 and summary["n_negative"] == 9020  # MNIST test zeros
    # zeros carry the most ink; a model that never saw one reconstructs them worst
    assert summary["auc"] > 0.7
    assert summary["protocol"] == "leave-one-out" and summary["pca_k"] == 8
    assert 0.5 < summary["pca_auc"] <= 1
    for png in ("roc.png", "scores.png"):
        w, h = _png_size(run / png)
        assert w > 300 and h > 200
    (result,) = json.loads((out / "anomaly.json").read_text())["results"]
    assert result["auc"] == summary["auc"]
    assert "| 0 |" in (out / "anomaly.md").read_text()


@pytest.mark.slow
def test_anomaly_all_digits_writes_the_table(mnist_dir, tmp_path):
    out = tmp_path / "all"
    assert main(["anomaly", "--protocol", "leave-one-out", "--holdout-digit", "all", "--limit", "256",
                 "--epochs", "1",
                 "--out", str(out), "--data-dir", str(mnist_dir), "--device", "cpu"]) == 0
    results = json.loads((out / "anomaly.json").read_text())["results"]
    assert [r["holdout"] for r in results] == list(range(10))
    assert all(0 <= r["auc"] <= 1 for r in results)
    assert len((out / "anomaly.md").read_text().splitlines()) == 2 + 10 + 1
    assert _png_size(out / "roc_all.png")[0] > 300


@pytest.fixture(scope="session")
def fashion_dir(mnist_dir):
    """Fashion-MNIST beside MNIST (copied from the Debian package where it is installed)."""
    try:
        ensure_dataset("fashion-mnist", mnist_dir)
    except DataError as e:
        pytest.skip(f"Fashion-MNIST is not available here: {e}")
    return mnist_dir


def test_anomaly_on_fashion_mnist(fashion_dir, tmp_path):
    out = tmp_path / "fashion"
    assert main(["anomaly", "--dataset", "fashion-mnist", "--protocol", "leave-one-out",
                 "--holdout-digit", "8", "--limit", "1024",
                 "--epochs", "1", "--out", str(out), "--data-dir", str(fashion_dir),
                 "--device", "cpu"]) == 0
    summary = json.loads((out / "holdout-8" / "anomaly.json").read_text())
    assert summary["dataset"] == "fashion-mnist" and summary["name"] == "Bag"
    assert summary["n_positive"] == 1000  # 1,000 test images per Fashion-MNIST class
    assert "| Bag |" in (out / "anomaly.md").read_text()


def test_anomaly_refuses_an_existing_run(mnist_dir, tmp_path, capsys):
    out = tmp_path / "again"
    (out / "holdout-3").mkdir(parents=True)
    (out / "holdout-3" / "config.json").write_text("{}")
    assert _anomaly(mnist_dir, out, "--holdout-digit", "3") == 2
    assert "already holds a run" in capsys.readouterr().err


def test_one_class_is_the_default_protocol_with_pca_on_the_same_images(mnist_dir, tmp_path, capsys):
    """Train on the ones alone; the other nine digits (every other test image) are the
    anomalies, for the model and for PCA-16 fitted on the same 1,024 training ones."""
    out = tmp_path / "oc"
    assert _anomaly(mnist_dir, out, "--digit", "1") == 0
    run = out / "holdout-1"
    cfg = json.loads((run / "config.json").read_text())
    assert sorted(cfg["exclude_digits"]) == [0, 2, 3, 4, 5, 6, 7, 8, 9]
    summary = json.loads((run / "anomaly.json").read_text())
    assert summary["protocol"] == "one-class" and summary["pca_k"] == 16
    assert summary["n_positive"] == 10_000 - 1135 and summary["n_negative"] == 1135  # test ones
    assert summary["auc"] > 0.9 and summary["pca_auc"] > 0.9  # a one is easy to tell apart
    table = (out / "anomaly.md").read_text()
    assert "| normal class | ROC AUC | PCA-16 AUC |" in table and "| 1 |" in table
    assert "one-class" in capsys.readouterr().out


def test_pca_scores_rank_an_unseen_class_as_anomalous(mnist_dir):
    from aelab.apps.anomaly import anomalies, pca_scores

    tx, ty = load_dataset("mnist", "train", data_dir=mnist_dir)
    sx, sy = load_dataset("mnist", "test", data_dir=mnist_dir)
    zeros = tx[ty == 0][:2000]
    scores = pca_scores(zeros, sx, 16)
    assert roc_auc(scores, anomalies(sy.numpy(), 0, "one-class")) > 0.95
    assert (anomalies(sy.numpy(), 0, "leave-one-out") == (sy.numpy() == 0)).all()
