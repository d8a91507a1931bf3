"""Datasets given by path (data/custom.py, data/cache.py): every layout built in tmp_path
from real MNIST digits, the seeded carved split, options and cards, the decoded-once cache,
and a clear DataError, with no cache left behind, for each kind of bad data."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from aelab import data
from aelab.data import cache, custom, load
from aelab.errors import DataError

N_TRAIN, N_TEST = 120, 60
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def digits(mnist_dir):
    x, y = data.load_dataset("mnist", "test", data_dir=mnist_dir, log=None)
    x, y = x.numpy(), y.numpy()
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN : N_TRAIN + N_TEST], y[N_TRAIN : N_TRAIN + N_TEST])


@pytest.fixture(autouse=True)
def _fresh_memo():
    custom._MEMO.clear()
    yield
    custom._MEMO.clear()


@pytest.fixture
def ddir(tmp_path) -> Path:
    """The data_dir whose cache/ the tests look into."""
    return tmp_path / "d"


def cache_files(ddir: Path) -> list[str]:
    folder = ddir / "cache"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def load_np(path, split, ddir, **kw):
    x, y = data.load_dataset(path, split, data_dir=ddir, log=kw.pop("log", None), **kw)
    return x.numpy(), y.numpy()


def make_idx(folder: Path, train, test=None, labels=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data.write_idx(folder / "train-images-idx3-ubyte.gz", train[0])
    if labels:
        data.write_idx(folder / "train-labels-idx1-ubyte.gz", train[1].astype(np.uint8))
    if test is not None:
        data.write_idx(folder / "t10k-images-idx3-ubyte", test[0])  # uncompressed works too
        if labels:
            data.write_idx(folder / "t10k-labels-idx1-ubyte", test[1].astype(np.uint8))
    return folder


# Image variants by index: how each is saved, and whether decoding gives the digit back exactly.
def save_variant(path: Path, x: np.ndarray, i: int) -> tuple[Path, str | None]:
    """Save digit x as variant i % 5; returns (file, the conversion it needs or None)."""
    kind = i % 5
    if kind == 1:  # colour
        Image.fromarray(np.stack([x] * 3, -1), "RGB").save(path.with_suffix(".png"))
        return path.with_suffix(".png"), "grey"
    if kind == 2:  # another size: 32x32, black margin
        Image.fromarray(np.pad(x, 2)).save(path.with_suffix(".png"))
        return path.with_suffix(".png"), "fitted"
    if kind == 3:  # dark on light
        Image.fromarray(255 - x).save(path.with_suffix(".png"))
        return path.with_suffix(".png"), "inverted"
    if kind == 4:  # white strokes on a transparent sheet
        rgba = np.dstack([np.full_like(x, 255)] * 3 + [x])
        Image.fromarray(rgba, "RGBA").save(path.with_suffix(".png"))
        return path.with_suffix(".png"), "alpha"
    suffix = ".bmp" if i % 10 == 0 else ".png"
    Image.fromarray(x).save(path.with_suffix(suffix))
    return path.with_suffix(suffix), None


def make_image_folder(root: Path, splits: dict, labelled=True) -> list:
    """splits: {subfolder ("" for the top): (x, y)}; returns [(subfolder, label, i, kind)].
    The variants mix sizes and transparency, so only fit_mnist=true reads them (fit_card)."""
    made = []
    for sub, (xs, ys) in splits.items():
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            folder = root / sub / (WORDS[y] if labelled else "")
            folder.mkdir(parents=True, exist_ok=True)
            _, kind = save_variant(folder / f"{i:04d}", x, i)
            made.append((sub, int(y), i, kind))
    return made


# --------------------------------------------------------------------------- registered names


def test_registered_names_are_unchanged(mnist_dir):
    assert data.is_registered("mnist") and data.is_registered("fashion-mnist")
    assert not data.is_registered("./mnist") and not data.is_registered(Path("mnist"))
    info = data.dataset_info("fashion-mnist")
    assert info["kind"] == "registered" and info["path"] is None
    assert info["class_names"][0] == "T-shirt/top" and len(info["class_names"]) == 10
    assert info["checksum"] == data.registry.dataset_checksum("fashion-mnist")
    assert data.dataset_info("mnist")["class_names"] == [str(d) for d in range(10)]
    assert data.dataset_checksum("mnist") == data.registry.dataset_checksum("mnist")
    x, y = data.load_dataset("mnist", "test", data_dir=mnist_dir, log=None)
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    with pytest.raises(DataError, match="registered dataset takes none"):
        data.load_dataset("mnist", "test", data_dir=mnist_dir, options={"transpose": True})
    with pytest.raises(TypeError):
        data.load_dataset("mnist", "test", data_dir=mnist_dir, mirros=[])  # typo


def test_a_missing_path_says_it_is_neither_name_nor_file(tmp_path, ddir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"not a registered dataset \(fashion-mnist, mnist, digits, "
                                        r".*mnist-32.*\) and no such file or folder"):
        data.load_dataset("cifar", data_dir=ddir, log=None)


# --------------------------------------------------------------------------- the layouts


def test_idx_folder(digits, tmp_path, ddir):
    folder = make_idx(tmp_path / "kmnist", *digits)
    for split, (x, y) in zip(("train", "test"), digits, strict=True):
        gx, gy = load_np(folder, split, ddir)
        assert gx.dtype == np.uint8 and gy.dtype == np.int64 and gx.shape == x.shape
        np.testing.assert_array_equal(gx, x)
        np.testing.assert_array_equal(gy, y)
    info = data.dataset_info(folder, ddir, log=None)
    assert (info["name"], info["kind"], info["path"]) == ("kmnist", "idx", str(folder))
    assert (info["n_train"], info["n_test"], info["has_labels"]) == (N_TRAIN, N_TEST, True)
    assert info["class_names"] == [str(d) for d in range(10)] and info["carved_test"] is None
    assert info["options"] == {"transpose": False, "split_seed": 0}
    assert len(info["checksum"]) == 16 and int(info["checksum"], 16) >= 0
    (file,) = cache_files(ddir)
    assert file.startswith("kmnist-") and file.endswith(".safetensors")


def test_prefixed_idx_files_and_qmnist_labels(digits, tmp_path, ddir):
    (x, y), (tx, ty) = digits
    folder = tmp_path / "qmnist"
    folder.mkdir()
    data.write_idx(folder / "qmnist-train-images-idx3-ubyte.gz", x)
    extended = np.stack([y, np.arange(len(y))], 1).astype(np.int32)  # (N, 2): class first
    data.write_idx(folder / "qmnist-train-labels-idx2-int.gz", extended)
    data.write_idx(folder / "qmnist-test-images-idx3-ubyte.gz", tx)
    data.write_idx(folder / "qmnist-test-labels-idx2-int.gz", np.stack([ty, ty], 1).astype(np.int32))
    np.testing.assert_array_equal(load_np(folder, "train", ddir)[1], y)
    np.testing.assert_array_equal(load_np(folder, "test", ddir)[1], ty)


def test_carved_split_is_seeded_disjoint_and_unlabelled(digits, tmp_path, ddir):
    (x, _), _ = digits
    folder = make_idx(tmp_path / "nolabels", (x, None), labels=False)
    msgs = []
    train_x, train_y = load_np(folder, "train", ddir, log=msgs.append)
    test_x, test_y = load_np(folder, "test", ddir)
    n_test = round(N_TRAIN / 6)
    assert (len(train_x), len(test_x)) == (N_TRAIN - n_test, n_test)
    assert (train_y == -1).all() and (test_y == -1).all() and train_y.dtype == np.int64
    order = np.random.default_rng(0).permutation(N_TRAIN)
    np.testing.assert_array_equal(test_x, x[np.sort(order[:n_test])])
    seen_train, seen_test = {a.tobytes() for a in train_x}, {a.tobytes() for a in test_x}
    assert not seen_train & seen_test and len(seen_train | seen_test) == N_TRAIN
    info = data.dataset_info(folder, ddir, log=None)
    assert info["carved_test"] == {"fraction": 1 / 6, "seed": 0, "n": n_test}
    assert not info["has_labels"] and info["class_names"] == []
    assert sum("set aside" in m for m in msgs) == 1

    other = load_np(folder, "test", ddir, options={"split_seed": 1})[0]
    assert {a.tobytes() for a in other} != seen_test
    assert data.dataset_info(folder, ddir, options={"split_seed": 1}, log=None)["carved_test"]["seed"] == 1
    custom._MEMO.clear()
    again = load_np(folder, "test", ddir, force=True)[0]  # rebuilt: the same split again
    np.testing.assert_array_equal(again, test_x)


def test_transpose_by_option_and_by_card(digits, tmp_path, ddir):
    (x, _), test = digits
    folder = make_idx(tmp_path / "emnist", digits[0], test)
    np.testing.assert_array_equal(load_np(folder, "train", ddir, options={"transpose": True})[0],
                                  x.transpose(0, 2, 1))
    (folder / "aelab-dataset.json").write_text(json.dumps(
        {"transpose": True, "class_names": WORDS}))
    np.testing.assert_array_equal(load_np(folder, "train", ddir)[0], x.transpose(0, 2, 1))
    assert data.dataset_info(folder, ddir, log=None)["class_names"] == WORDS
    # the caller's options override the card
    np.testing.assert_array_equal(load_np(folder, "train", ddir, options={"transpose": False})[0], x)
    with pytest.raises(DataError, match="unknown option"):
        load_np(folder, "train", ddir, options={"tranpose": True})
    with pytest.raises(DataError, match="must be true or false"):
        load_np(folder, "train", ddir, options={"transpose": "yes"})


def test_npz_file_and_npz_pairs(digits, tmp_path, ddir):
    (x, y), (tx, ty) = digits
    keras = tmp_path / "mnist.npz"
    np.savez(keras, x_train=x, y_train=y, x_test=tx, y_test=ty)
    np.testing.assert_array_equal(load_np(keras, "test", ddir)[0], tx)
    np.testing.assert_array_equal(load_np(keras, "train", ddir)[1], y)
    info = data.dataset_info(keras, ddir, log=None)
    assert (info["kind"], info["name"], info["n_test"]) == ("npz", "mnist.npz", N_TEST)

    bare = tmp_path / "bare.npz"
    np.savez(bare, x_train=x.reshape(-1, 784).astype(np.int32))  # whole numbers 0..255 are fine
    bx, by = load_np(bare, "train", ddir)
    assert len(bx) == N_TRAIN - 20 and (by == -1).all()

    pairs = tmp_path / "kmnist"
    pairs.mkdir()
    for name, arr in {"train-imgs": x, "train-labels": y, "test-imgs": tx, "test-labels": ty}.items():
        np.savez_compressed(pairs / f"kmnist-{name}.npz", arr_0=arr)
    px, py = load_np(pairs, "test", ddir)
    np.testing.assert_array_equal(px, tx)
    np.testing.assert_array_equal(py, ty)
    assert data.dataset_info(pairs, ddir, log=None)["kind"] == "npz-pairs"
    # The same data by another route decodes to the same checksum.
    assert data.dataset_checksum(pairs, ddir) == data.dataset_checksum(keras, ddir)


def fit_card(root: Path) -> Path:
    """The card that reads a folder as hand-drawn digits: fit_mnist=true."""
    (root / "aelab-dataset.json").write_text('{"fit_mnist": true}')
    return root


def test_image_folder_converts_and_counts(digits, tmp_path, ddir):
    root = tmp_path / "digits-png"
    made = make_image_folder(root, {"train": digits[0], "test": digits[1]})
    fit = {"fit_mnist": True}
    msgs = []
    x, y = load_np(root, "train", ddir, log=msgs.append, options=fit)
    info = data.dataset_info(root, ddir, log=None, options=fit)
    assert info["kind"] == "image-folder" and info["class_names"] == sorted(WORDS)
    assert (info["n_train"], info["n_test"], info["carved_test"]) == (N_TRAIN, N_TEST, None)
    assert info["image_shape"] == [1, 28, 28]
    assert info["options"] == {"transpose": False, "split_seed": 0, "fit_mnist": True, "grey": False}
    want = {k: sum(m[3] == k for m in made) for k in ("alpha", "fitted", "inverted")}
    want["grey"] = sum(m[3] in ("grey", "alpha") for m in made)  # RGBA is colour too
    assert info["conversions"] == {**want, "depth": 0, "opaque": 0, "resized": 0, "colour": 0}
    assert min(want.values()) > 0
    line = [m for m in msgs if "colour images to grey" in m]
    assert len(line) == 1 and f"fitted {want['fitted']} images of other sizes into 28x28" in line[0]
    assert f"inverted {want['inverted']} dark-on-light images" in line[0]

    # Files are read class by class (sorted names), then by file name.
    src_x, src_y = digits[0]
    rows = sorted((sorted(WORDS).index(WORDS[lbl]), i, kind) for sub, lbl, i, kind in made
                  if sub == "train")
    assert x.shape == (N_TRAIN, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [r[0] for r in rows])
    for k, (_, i, kind) in enumerate(rows):
        assert sorted(WORDS)[y[k]] == WORDS[src_y[i]]
        if kind != "fitted":  # every other conversion gives the digit back exactly
            np.testing.assert_array_equal(x[k], src_x[i])
        else:  # fitted: the 28x28 digit inside a 32x32 margin, scaled down by 28/32
            assert abs(int(x[k].astype(int).sum()) - int(src_x[i].astype(int).sum()) * 49 // 64) \
                < 0.1 * int(src_x[i].sum())


def test_class_folders_without_splits_and_flat_folders(digits, tmp_path, ddir):
    classes = tmp_path / "classes"
    make_image_folder(classes, {"": digits[1]})
    fit_card(classes)  # at the top, beside the class folders: not an image, and allowed
    info = data.dataset_info(classes, ddir, log=None)
    assert info["kind"] == "image-folder" and info["carved_test"]["n"] == 10
    assert info["n_train"] + info["n_test"] == N_TEST and info["has_labels"]

    flat = tmp_path / "flat"
    make_image_folder(flat, {"": digits[1]}, labelled=False)
    fit_card(flat)
    fx, fy = load_np(flat, "train", ddir)
    info = data.dataset_info(flat, ddir, log=None)
    assert info["kind"] == "flat-images" and not info["has_labels"] and info["class_names"] == []
    assert len(fx) == N_TEST - 10 and (fy == -1).all()


# --------------------------------------------------------------------------- the cache


def test_cache_is_reused_and_rebuilt_when_a_file_changes(digits, tmp_path, ddir, monkeypatch):
    folder = make_idx(tmp_path / "ds", *digits)
    reads = []
    real = custom.read_idx
    monkeypatch.setattr(custom, "read_idx", lambda p: reads.append(Path(p).name) or real(p))
    first = data.load_dataset(folder, "train", data_dir=ddir, log=None)
    checksum = data.dataset_checksum(folder, ddir)
    assert len(reads) == 4
    assert data.load_dataset(folder, "train", data_dir=ddir, log=None)[0] is first[0]  # memo
    custom._MEMO.clear()
    load_np(folder, "test", ddir)  # a new process, as it were: read from the cache file
    assert len(reads) == 4

    (file,) = cache_files(ddir)
    assert file.startswith("ds-") and file.endswith(".safetensors")
    with safe_open(str(ddir / "cache" / file), framework="np") as f:
        meta = json.loads(f.metadata()["aelab"])
    entry = next(m for m in meta["manifest"] if m["path"] == "t10k-labels-idx1-ubyte")
    blob = (folder / "t10k-labels-idx1-ubyte").read_bytes()
    assert entry["sha256"] == hashlib.sha256(blob).hexdigest() and entry["size"] == len(blob)

    target = folder / "t10k-labels-idx1-ubyte"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: rebuilt
    reads.clear()
    load_np(folder, "test", ddir)
    assert len(reads) == 4 and data.dataset_checksum(folder, ddir) == checksum  # same data

    flipped = (9 - digits[1][1]).astype(np.uint8)
    data.write_idx(target, flipped)  # modified: rebuilt with the new labels
    np.testing.assert_array_equal(load_np(folder, "test", ddir)[1], flipped)
    assert data.dataset_checksum(folder, ddir) != checksum

    (folder / "aelab-dataset.json").write_text('{"transpose": true}')  # a new file: rebuilt
    reads.clear()
    np.testing.assert_array_equal(load_np(folder, "train", ddir)[0], digits[0][0].transpose(0, 2, 1))
    assert len(reads) == 4 and cache_files(ddir) == [file]  # the same cache file, rewritten


def test_cache_is_keyed_by_options(digits, tmp_path, ddir):
    folder = make_idx(tmp_path / "ds", *digits)
    load_np(folder, "train", ddir)
    load_np(folder, "train", ddir, options={"transpose": True})
    assert len(cache_files(ddir)) == 2
    assert not [n for n in cache_files(ddir) if n.endswith(".tmp")]


# --------------------------------------------------------------------------- bad data


def _png(x) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "PNG")
    return buf.getvalue()


def bad_count(root, digits):
    (x, y), _ = digits
    make_idx(root, (x, y[:100]))
    return root, "train-labels-idx1-ubyte.gz"


def bad_empty_folder(root, digits):
    root.mkdir()
    return root, root.name


def bad_empty_split(root, digits):
    (root / "train" / "three").mkdir(parents=True)
    (root / "train" / "three" / "a.png").write_bytes(_png(digits[0][0][0]))
    (root / "test").mkdir()
    return root, str(root / "test")


def bad_truncated_image(root, digits):
    make_image_folder(root, {"": (digits[1][0][:12], digits[1][1][:12])})
    fit_card(root)
    victim = sorted(root.rglob("*.png"))[3]
    victim.write_bytes(victim.read_bytes()[:60])
    return root, victim.name


def bad_garbage_image(root, digits):
    make_image_folder(root, {"": (digits[1][0][:12], digits[1][1][:12])})
    fit_card(root)
    victim = sorted(root.rglob("*.png"))[0]
    victim.write_bytes(b"not an image at all")
    return root, victim.name


def _npz(root, **arrays):
    root.mkdir()
    np.savez(root / "set.npz", **arrays)
    return root / "set.npz", "set.npz"


def bad_float_npz(root, digits):
    return _npz(root, x_train=digits[0][0] / 255.0)


def bad_int32_npz(root, digits):
    return _npz(root, x_train=digits[0][0].astype(np.int32) * 2)


def bad_nan_npz(root, digits):
    x = digits[0][0].astype(np.float64)
    x[0, 0, 0] = np.nan
    return _npz(root, x_train=x)


def bad_object_npz(root, digits):
    return _npz(root, x_train=np.array([digits[0][0][0], "seven"], dtype=object))


def bad_npz_counts(root, digits):
    return _npz(root, x_train=digits[0][0], y_train=digits[0][1][:7])


def bad_truncated_npz(root, digits):
    path, name = _npz(root, x_train=digits[0][0])
    path.write_bytes(path.read_bytes()[:5000])
    return path, name


def bad_symlink_loop(root, digits):
    make_image_folder(root, {"train": (digits[1][0][:12], digits[1][1][:12])})
    link = root / "train" / WORDS[digits[1][1][0]] / "again"
    link.symlink_to(root / "train")
    return root, "again"


def bad_readme_only(root, digits):
    root.mkdir()
    (root / "README.md").write_text("# my digits\n")
    return root, root.name


def bad_text_file(root, digits):
    root.mkdir()
    (root / "notes.txt").write_text("hello")
    return root / "notes.txt", "notes.txt"


BAD = [bad_count, bad_empty_folder, bad_empty_split, bad_truncated_image, bad_garbage_image,
       bad_float_npz, bad_int32_npz, bad_nan_npz, bad_object_npz, bad_npz_counts,
       bad_truncated_npz, bad_symlink_loop, bad_readme_only, bad_text_file]
WORDING = {"bad_float_npz": "uint8", "bad_int32_npz": "outside 0..255", "bad_nan_npz": "NaN",
           "bad_object_npz": "dtype=object", "bad_count": "100 labels for the 120 images",
           "bad_symlink_loop": "symbolic link", "bad_truncated_image": "truncated",
           "bad_readme_only": "not a dataset", "bad_text_file": "not a dataset file",
           "bad_empty_split": "no PNG/JPEG/BMP images", "bad_npz_counts": "7 labels"}


@pytest.mark.parametrize("make", BAD, ids=lambda f: f.__name__)
def test_bad_data_is_a_data_error_naming_the_file(make, digits, tmp_path, ddir):
    path, names = make(tmp_path / "bad", digits)
    with pytest.raises(DataError) as e:
        data.load_dataset(path, "train", data_dir=ddir, log=None)
    assert names in str(e.value)
    assert WORDING.get(make.__name__, "") in str(e.value)
    assert cache_files(ddir) == []


@pytest.mark.parametrize("limit, said", [(500, 500), (100, 200)])
def test_decompression_bombs_are_refused(limit, said, digits, tmp_path, ddir, monkeypatch):
    # 784 pixels: over a limit of 500 Pillow only warns; over 2 * 100 it raises. Both refused.
    root = tmp_path / "bombs"
    root.mkdir()
    for i, x in enumerate(digits[1][0][:5]):
        Image.fromarray(x).save(root / f"{i}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DataError, match="decompression bomb") as e:
        data.load_dataset(root, "train", data_dir=ddir, log=None)
    assert "0.png" in str(e.value) and f"limit of {said} pixels" in str(e.value)
    assert cache_files(ddir) == []


def test_a_failed_rebuild_removes_the_stale_cache(digits, tmp_path, ddir):
    folder = make_idx(tmp_path / "ds", *digits)
    load_np(folder, "train", ddir)
    assert len(cache_files(ddir)) == 1
    data.write_idx(folder / "t10k-labels-idx1-ubyte", digits[1][1][:10].astype(np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: 10 labels"):
        load_np(folder, "train", ddir)
    assert cache_files(ddir) == []


def test_cache_checksum_covers_the_splits(digits):
    (x, y), (tx, ty) = digits
    one = cache.checksum({"train": (x, y), "test": (tx, ty)})
    assert one == cache.checksum({"train": (x.copy(), y.copy()), "test": (tx, ty)})
    assert one != cache.checksum({"train": (tx, ty), "test": (x, y)})
    assert load._PLUGGED["path"] is custom.open_path_dataset
