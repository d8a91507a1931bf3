"""The registered datasets and their image shapes: mnist and fashion-mnist as they were, and
the packaged ones (data/packaged.py) built offline into a data folder: what each holds,
checked against its source; builds deterministic; the patch sets' train/test regions
disjoint; a damaged build rebuilt; a missing package one DataError; `aelab data --list`.

Every packaged dataset is built once per module into one tmp data folder (a few seconds
each), with MNIST's verified files linked in from the `mnist_dir` fixture."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import numpy as np
import pytest

from aelab import data
from aelab.cli import main
from aelab.data import cache, packaged
from aelab.errors import DataError

PACKAGED = sorted(data.PACKAGED)


def _quiet(_msg):
    pass


@pytest.fixture(scope="module")
def built(tmp_path_factory, mnist_dir) -> Path:
    """A data folder with MNIST's files linked in and every packaged dataset built."""
    root = tmp_path_factory.mktemp("data")
    (root / "mnist").mkdir()
    for fs in data.DATASETS["mnist"].files:
        src = next(p for p in (mnist_dir / "mnist" / fs.name, mnist_dir / "mnist" / fs.raw_name)
                   if p.is_file())
        (root / "mnist" / src.name).symlink_to(src)
    for name in PACKAGED:
        data.ensure_dataset(name, root, log=None)
    return root


@pytest.fixture(autouse=True)
def _fresh_memo():
    packaged._MEMO.clear()
    yield
    packaged._MEMO.clear()


def arrays(name, root) -> dict:
    return {s: tuple(t.numpy() for t in data.load_dataset(name, s, root, log=None))
            for s in cache.SPLITS}


# --------------------------------------------------------------------------- every dataset


@pytest.mark.parametrize("name", [*sorted(data.DATASETS), *PACKAGED])
def test_every_registered_dataset_states_its_image_shape(name, built):
    info = data.dataset_info(name, built, log=None)
    assert data.is_registered(name)
    c, h, w = info["image_shape"]
    assert c in (1, 3) and 8 <= h <= 128 and 8 <= w <= 128
    if name in data.PACKAGED:
        spec = data.PACKAGED[name]
        assert info["image_shape"] == list(spec.image_shape) and info["kind"] == "packaged"
        assert (info["n_train"], info["n_test"]) == (spec.n_train, spec.n_test)
        assert info["source"] == spec.source and info["licence"] == spec.licence
        x, y = data.load_dataset(name, "test", built, log=None)
        assert x.shape == ((spec.n_test, h, w) if c == 1 else (spec.n_test, 3, h, w))
        assert str(x.dtype) == "torch.uint8" and y.shape == (spec.n_test,)
        assert info["checksum"] == cache.checksum(arrays(name, built))
        assert data.dataset_checksum(name, built) == info["checksum"]
    else:
        assert info["image_shape"] == [1, 28, 28] and info["kind"] == "registered"
    with pytest.raises(DataError, match="registered dataset takes none"):
        data.dataset_info(name, built, options={"grey": True})


# --------------------------------------------------------------------------- each dataset


def test_mnist_32_is_mnist_padded(built, mnist_dir):
    got = arrays("mnist-32", built)
    for split, n in (("train", 60000), ("test", 10000)):
        x, y = got[split]
        mx, my = (t.numpy() for t in data.load_dataset("mnist", split, mnist_dir, log=None))
        assert x.shape == (n, 32, 32) and x.dtype == np.uint8
        np.testing.assert_array_equal(y, my)
        for i in (0, 1, 2, n // 2, n - 1):
            np.testing.assert_array_equal(x[i], np.pad(mx[i], 2))
        assert not x[:, :2].any() and not x[:, -2:].any() and not x[:, :, :2].any()
        np.testing.assert_array_equal(x[:, 2:30, 2:30], mx)
    # a function of MNIST's official bytes only: this holds on every machine
    assert data.dataset_info("mnist-32", built, log=None)["checksum"] == "33414d7deaca8b56"


def test_digits_is_scikit_learns_scaled(built):
    from sklearn.datasets import load_digits

    d = load_digits()
    got = arrays("digits", built)
    (x, y), (tx, ty) = got["train"], got["test"]
    assert x.shape == (1497, 8, 8) and tx.shape == (300, 8, 8) and len(x) + len(tx) == 1797
    assert x.min() == 0 and x.max() == 255 and x.dtype == np.uint8
    assert set(np.unique(np.concatenate([x, tx]))) <= {round(k * 255 / 16) for k in range(17)}
    picks = cache.carve(1797, 0)  # the test split: a seeded 1/6, seed 0
    np.testing.assert_array_equal(tx, np.rint(d.images[picks["test"]] * 255 / 16))
    np.testing.assert_array_equal(ty, d.target[picks["test"]])
    np.testing.assert_array_equal(y, d.target[picks["train"]])
    info = data.dataset_info("digits", built, log=None)
    assert info["class_names"] == [str(k) for k in range(10)]
    assert info["carved_test"] == {"fraction": 1 / 6, "seed": 0, "n": 300}
    assert info["checksum"] == "ff30d1f9dc6ca892"


def test_lfw_faces_is_scikit_images_subset(built):
    raw = np.load(packaged._skimage_file("lfw_subset.npy"), allow_pickle=False)
    got = arrays("lfw-faces", built)
    (x, y), (tx, ty) = got["train"], got["test"]
    assert x.shape == (167, 25, 25) and tx.shape == (33, 25, 25)
    picks = cache.carve(200, 0)
    np.testing.assert_array_equal(x, np.rint(raw[picks["train"]] * 255))
    np.testing.assert_array_equal(ty, (picks["test"] >= 100).astype(np.int64))  # 100 faces first
    np.testing.assert_array_equal(y, (picks["train"] >= 100).astype(np.int64))
    info = data.dataset_info("lfw-faces", built, log=None)
    assert info["class_names"] == ["face", "non-face"] and info["has_labels"]
    assert info["checksum"] == "c0a467fe4ff73c63"


@pytest.mark.parametrize("name, photos, side, colour", [
    ("patches-16-colour", packaged.COLOUR_PHOTOS, 16, True),
    ("patches-8-grey", packaged.GREY_PHOTOS, 8, False)])
def test_patches_come_from_disjoint_regions(name, photos, side, colour, built):
    got = arrays(name, built)
    images = [packaged._photo(p, colour) for p in photos]
    where = packaged.patch_positions([im.shape[:2] for im in images], side)
    for split, n in (("train", 60000), ("test", 10000)):
        x, y = got[split]
        assert x.shape == ((n, 3, side, side) if colour else (n, side, side)) and (y == -1).all()
        cut = set()
        for im, corners in zip(images, where[split], strict=True):
            first_test_row = packaged.held_out_from(im.shape[0], side)
            rows = corners[:, 0]
            if split == "train":
                assert (rows + side <= first_test_row).all()  # wholly above the held-out rows
            else:
                assert (rows >= first_test_row).all()
            assert len({tuple(c) for c in corners}) == len(corners)  # distinct positions
            for r, c in corners:
                patch = im[r : r + side, c : c + side]
                cut.add((patch.transpose(2, 0, 1) if colour else patch).tobytes())
        # the split holds exactly the patches at its positions (shuffled)
        assert {p.tobytes() for p in x} == cut


def test_builds_are_deterministic_and_offline(built, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    for name in ("patches-16-colour", "patches-8-grey", "lfw-faces", "digits"):
        msgs = []
        again = data.dataset_info(name, tmp_path, log=msgs.append)
        assert any(m.startswith(f"building {name}") for m in msgs)
        assert again["checksum"] == data.dataset_info(name, built, log=None)["checksum"]
        assert (tmp_path / name / f"{name}.safetensors").read_bytes() == \
            (built / name / f"{name}.safetensors").read_bytes()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_damaged_build_is_rebuilt_and_force_rebuilds(built, tmp_path):
    data.ensure_dataset("digits", tmp_path, log=None)
    file = tmp_path / "digits" / "digits.safetensors"
    blob = bytearray(file.read_bytes())
    blob[-100] ^= 0xFF  # a pixel of the last split, not the header
    file.write_bytes(bytes(blob))
    packaged._MEMO.clear()
    msgs = []
    x, _ = data.load_dataset("digits", "test", tmp_path, log=msgs.append)
    assert any("does not match the checksum" in m for m in msgs)
    assert any(m.startswith("building digits") for m in msgs)
    np.testing.assert_array_equal(x.numpy(), arrays("digits", built)["test"][0])
    msgs.clear()
    data.load_dataset("digits", "test", tmp_path, log=msgs.append)
    assert msgs == []  # built once: read from the file (memoised) since
    data.ensure_dataset("digits", tmp_path, force=True, log=msgs.append)
    assert any(m.startswith("building digits") for m in msgs)


def test_a_missing_package_says_how_to_install_it(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "skimage" else real(name, *a))
    for name in ("lfw-faces", "patches-8-grey"):
        with pytest.raises(DataError) as e:
            data.load_dataset(name, "train", tmp_path, log=None)
        assert "\n" not in str(e.value) and "pip install 'aelab[images]'" in str(e.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_the_names_and_the_unknown_name():
    assert data.registered_names()[:2] == ["fashion-mnist", "mnist"]
    assert {"mnist-32", "digits", "lfw-faces", "patches-16-colour", "patches-8-grey"} <= set(PACKAGED)
    with pytest.raises(DataError, match="choose one of fashion-mnist, mnist; or one built here: digits"):
        data.ensure_dataset("cifar", log=None)


# --------------------------------------------------------------------------- the CLI


def test_cli_lists_and_builds(built, capsys):
    assert main(["data", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(data.registered_names())
    by_name = {line.split()[0]: line for line in lines}
    assert "1x28x28" in by_name["mnist"] and "60,000 train" in by_name["mnist"]
    assert "3x16x16" in by_name["patches-16-colour"] and "10,000 test" in by_name["patches-16-colour"]
    assert "licence: CC BY 4.0" in by_name["digits"] and "1,497 train" in by_name["digits"]
    assert main(["data", "lfw-faces", "--data-dir", str(built)]) == 0
    assert f"lfw-faces: built and verified in {built / 'lfw-faces'}" in capsys.readouterr().out
