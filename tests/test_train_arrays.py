"""train() on arrays already in memory: saved in the run as its dataset, recorded like any
other (checksum, sizes), and found again by resume and eval."""

import json

import numpy as np
import pytest
import torch

import aelab
from aelab.data import load_dataset
from aelab.errors import AelabError

QUIET = {"log": lambda _m: None, "progress": False}


@pytest.fixture(scope="module")
def digits(mnist_dir):
    x, y = load_dataset("mnist", "train", data_dir=mnist_dir)
    tx, ty = load_dataset("mnist", "test", data_dir=mnist_dir)
    return x[:600].numpy(), y[:600].numpy(), tx[:200].numpy(), ty[:200].numpy()


def test_arrays_train_a_run_that_records_them_and_resumes(digits, mnist_dir, tmp_path):
    x, y, tx, ty = digits
    run = tmp_path / "r"
    cfg = aelab.TrainConfig(model="linear", epochs=1, device="cpu")
    result = aelab.train(cfg, run, images=x, labels=y, test_images=tx, test_labels=ty,
                         data_dir=mnist_dir, **QUIET)
    saved = np.load(run / "dataset.npz")
    assert np.array_equal(saved["x_train"], x) and np.array_equal(saved["y_test"], ty)
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == str((run / "dataset.npz").absolute())
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["n_train"] == 600 and meta["data_checksum"]
    assert meta["dataset_info"]["n_test"] == 200 and meta["dataset_info"]["has_labels"]
    assert len(result.metrics) == 1
    aelab.resume(run, epochs=2, data_dir=mnist_dir, **QUIET)
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 2
    metrics = aelab.evaluate_run(run, data_dir=mnist_dir, device="cpu")
    assert metrics["n_images"] == 200


def test_float_images_without_labels_are_stored_as_uint8_with_a_test_split_set_aside(
        digits, mnist_dir, tmp_path):
    x = digits[0]
    floats = torch.from_numpy(x).float() / 255  # a torch tensor of floats in [0, 1]
    run = tmp_path / "r"
    aelab.train(aelab.TrainConfig(model="linear", epochs=1, device="cpu"), run, images=floats,
                data_dir=mnist_dir, **QUIET)
    with np.load(run / "dataset.npz") as saved:
        assert np.array_equal(saved["x_train"], x) and set(saved.files) == {"x_train"}
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["dataset_info"]["carved_test"]["n"] == 100  # 1/6 of 600
    assert meta["n_train"] == 500


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"images": np.full((10, 28, 28), 255.0)}, "images: got float values up to 255"),
    ({"images": np.zeros((10, 2, 28, 28), np.uint8)}, "images: got images of shape"),
    ({"images": np.zeros((10, 28, 28), np.uint8), "labels": np.zeros(9, np.int64)}, "labels: give 10"),
    ({"images": np.zeros((10, 28, 28), np.uint8), "labels": np.full(10, 0.5)}, "whole numbers"),
    ({"labels": np.zeros(10, np.int64)}, "give images too"),
    ({"images": np.zeros((10, 28, 28), np.uint8), "test_labels": np.zeros(3, np.int64)},
     "test_labels without test_images"),
])
def test_bad_arrays_are_clear_errors_that_write_nothing(kwargs, message, tmp_path):
    run = tmp_path / "r"
    with pytest.raises(AelabError, match=message):
        aelab.train(aelab.TrainConfig(model="linear", epochs=1), run, **kwargs, **QUIET)
    assert not run.exists()


def test_arrays_and_a_named_dataset_together_are_refused(tmp_path):
    cfg = aelab.TrainConfig(model="linear", epochs=1, dataset="fashion-mnist")
    with pytest.raises(AelabError, match="either images= or config.dataset"):
        aelab.train(cfg, tmp_path / "r", images=np.zeros((10, 28, 28), np.uint8), **QUIET)
