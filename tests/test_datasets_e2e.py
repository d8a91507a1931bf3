"""Every kind of dataset given by path, end to end through the CLI: train -> eval ->
explore -> serve, built from real MNIST digits (some RGB, some 32x32, some dark on light:
the image folders carry a card with fit_mnist=true, which fits them into MNIST's 28x28)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from aelab.cli import main
from aelab.data import load_dataset
from aelab.data.idx import write_idx

N_TRAIN, N_TEST = 240, 60


@pytest.fixture(scope="module")
def digits(mnist_dir):
    x, y = load_dataset("mnist", "test", data_dir=mnist_dir)
    x, y = x.numpy(), y.numpy()
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN : N_TRAIN + N_TEST], y[N_TRAIN : N_TRAIN + N_TEST])


def _idx_folder(root, digits):
    """KMNIST/EMNIST style: MNIST-named IDX files, gzipped; stored transposed with a card."""
    (tx, ty), (sx, sy) = digits
    root.mkdir()
    for name, arr in (("train-images-idx3-ubyte", tx.transpose(0, 2, 1)), ("train-labels-idx1-ubyte", ty),
                      ("t10k-images-idx3-ubyte", sx.transpose(0, 2, 1)), ("t10k-labels-idx1-ubyte", sy)):
        write_idx(root / name, arr.astype(np.uint8))
        (root / f"{name}.gz").write_bytes(gzip.compress((root / name).read_bytes()))
        (root / name).unlink()
    (root / "aelab-dataset.json").write_text(json.dumps({"transpose": True}))
    return root, True, 10


def _keras_npz(root, digits):
    (tx, ty), (sx, sy) = digits
    root.mkdir()
    path = root / "mnist.npz"
    np.savez(path, x_train=tx, y_train=ty.astype(np.uint8), x_test=sx, y_test=sy.astype(np.uint8))
    return path, True, 10


def _kmnist_pairs(root, digits):
    (tx, ty), (sx, sy) = digits
    root.mkdir()
    for name, arr in (("train-imgs", tx), ("train-labels", ty), ("test-imgs", sx), ("test-labels", sy)):
        np.savez_compressed(root / f"kmnist-{name}.npz", arr_0=arr.astype(np.uint8))
    return root, True, 10


def _save_png(path, img, i):
    from PIL import Image

    if i % 3 == 1:  # RGB
        Image.fromarray(np.stack([img] * 3, -1), "RGB").save(path)
    elif i % 3 == 2:  # 32x32, dark digit on light paper
        Image.fromarray(255 - np.pad(img, 2), "L").save(path)
    else:
        Image.fromarray(img, "L").save(path)


def _fit_mnist_card(root):
    """Mixed sizes and dark-on-light digits: read the way MNIST was made (fit_mnist)."""
    (root / "aelab-dataset.json").write_text(json.dumps({"fit_mnist": True}))


def _image_folder(root, digits):
    """ImageFolder layout with three classes (digits 0, 1, 2) named by folder."""
    for split, (x, y) in zip(("train", "test"), digits, strict=True):
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            if label > 2:
                continue
            folder = root / split / ["zero", "one", "two"][label]
            folder.mkdir(parents=True, exist_ok=True)
            _save_png(folder / f"{i:04d}.png", img, i)
    _fit_mnist_card(root)
    return root, True, 3


def _flat_images(root, digits):
    """No labels and no test split: a flat folder of images."""
    root.mkdir()
    for i, img in enumerate(digits[0][0][:150]):
        _save_png(root / f"scan{i:04d}.png", img, i)
    _fit_mnist_card(root)
    return root, False, 0


KINDS = {"idx": _idx_folder, "npz": _keras_npz, "npz-pairs": _kmnist_pairs,
         "image-folder": _image_folder, "flat-images": _flat_images}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_train_eval_explore_serve_on_a_dataset_by_path(kind, digits, tmp_path, capsys):
    path, labelled, n_classes = KINDS[kind](tmp_path / "ds", digits)
    data_dir, run = tmp_path / "data", tmp_path / "run"
    common = ["--data-dir", str(data_dir)]
    assert main(["data", str(path), *common]) == 0
    out = capsys.readouterr().out
    assert f"({kind})" in out and ("no labels" in out) == (not labelled)

    assert main(["train", "linear", "--dataset", str(path), "--epochs", "1", "--run-dir", str(run),
                 *common]) == 0
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    info = meta["dataset_info"]
    assert meta["dataset"] == str(path.absolute()) and info["kind"] == kind
    assert info["has_labels"] == labelled and len(info["class_names"]) == n_classes
    assert meta["data_checksum"] == info["checksum"] and len(info["checksum"]) == 16
    if kind == "flat-images":
        assert info["carved_test"]["n"] == info["n_test"] == 25  # 1/6 of 150
    if kind == "image-folder":
        assert info["class_names"] == ["one", "two", "zero"]  # sorted folder names
        assert sum(info["conversions"].values()) > 0

    capsys.readouterr()
    assert main(["eval", str(run), *common]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["dataset"] == str(path.absolute()) and ev["n_images"] == info["n_test"]
    assert ev["sse_per_image"] > 0 and ev["pca_sse_per_image"] > 0
    assert ("sse_per_image_by_digit" in ev) == labelled
    assert "warning" not in capsys.readouterr().err

    assert main(["explore", str(run), "--tsne-points", "0", "--neighbours", "3", *common]) == 0
    assert len(list((run / "explore").glob("*.png"))) == 5

    from fastapi.testclient import TestClient

    from aelab.apps.serve import create_app

    with TestClient(create_app([run], data_dir=data_dir, map_size=20)) as client:
        models = client.get("/api/models").json()
        assert models[0]["dataset"] == path.name  # no file paths leave the server
        m = client.get("/api/map", params={"model": models[0]["id"]}).json()
        assert len(m["labels"]) == 20 and (min(m["labels"]) >= 0) == labelled


def test_eval_warns_when_the_data_changed_since_training(digits, tmp_path, capsys):
    path, _, _ = _keras_npz(tmp_path / "ds", digits)
    data_dir, run = tmp_path / "data", tmp_path / "run"
    common = ["--data-dir", str(data_dir)]
    assert main(["train", "linear", "--dataset", str(path), "--epochs", "1", "--run-dir", str(run),
                 *common]) == 0
    (tx, ty), (sx, sy) = digits
    np.savez(path, x_train=tx, y_train=ty.astype(np.uint8), x_test=sx[::-1].copy(), y_test=sy[::-1].copy())
    capsys.readouterr()
    assert main(["eval", str(run), *common]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "differs from the data it was trained on" in err


def test_anomaly_and_exclude_digits_say_plainly_that_they_need_labels(digits, tmp_path, capsys):
    path, _, _ = _flat_images(tmp_path / "ds", digits)
    common = ["--data-dir", str(tmp_path / "data")]
    assert main(["anomaly", "--holdout-digit", "1", "--dataset", str(path), "--epochs", "1",
                 "--out", str(tmp_path / "a"), *common]) == 2
    assert "has no labels" in capsys.readouterr().err
    assert main(["train", "linear", "--dataset", str(path), "--exclude-digits", "1",
                 "--run-dir", str(tmp_path / "r"), *common]) == 2
    assert "needs labels" in capsys.readouterr().err
