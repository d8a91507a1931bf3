"""Images of any size and colour through the data layer, on small synthetic data: the layout
rules for arrays (data/shapes.py) in .npz, .npy and IDX files; image folders as they are
(colour, grey, non-square) and with the options resize, grey and fit_mnist; a one-line
DataError for each kind of bad input, with nothing left in the cache; a cache of the older
version rebuilt; and the float batches of data/batches.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from aelab import data
from aelab.data import batches, cache, custom, shapes
from aelab.errors import AelabError, DataError


def pixels(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(autouse=True)
def _fresh_memo():
    custom._MEMO.clear()
    yield
    custom._MEMO.clear()


@pytest.fixture
def ddir(tmp_path) -> Path:
    return tmp_path / "d"


def load_np(path, split, ddir, **kw):
    x, y = data.load_dataset(path, split, data_dir=ddir, log=kw.pop("log", None), **kw)
    return x.numpy(), y.numpy()


def leftovers(ddir: Path) -> list[str]:
    """What a failed build left in the data folder: cache files, temp files."""
    return sorted(p.name for p in ddir.rglob("*") if p.is_file()) if ddir.exists() else []


def save_png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path)
    return path


# --------------------------------------------------------------------------- array layouts

# (stored shape, layout option, what the dataset holds, made from the stored array x)
LAYOUTS = {
    "nhw": ((6, 16, 24), None, lambda x: x),
    "flat-784": ((6, 784), None, lambda x: x.reshape(6, 28, 28)),
    "nhwc-colour": ((6, 16, 24, 3), None, lambda x: x.transpose(0, 3, 1, 2)),
    "nchw-colour": ((6, 3, 16, 24), None, lambda x: x),
    "nhwc-grey": ((6, 16, 24, 1), None, lambda x: x[..., 0]),
    "nchw-grey": ((6, 1, 16, 24), None, lambda x: x[:, 0]),
    "nhwc-by-option": ((6, 16, 24, 3), "nhwc", lambda x: x.transpose(0, 3, 1, 2)),
    "nchw-by-option": ((6, 3, 16, 24), "nchw", lambda x: x),
}


@pytest.mark.parametrize("case", sorted(LAYOUTS))
def test_npz_and_npy_layouts(case, tmp_path, ddir):
    shape, layout, expect = LAYOUTS[case]
    x, tx = pixels(shape, 1), pixels(shape, 2)
    opts = {"layout": layout} if layout else None
    npz = tmp_path / "set.npz"
    np.savez(npz, x_train=x, y_train=np.arange(6) % 2, x_test=tx, y_test=np.arange(6) % 2)
    got, labels = load_np(npz, "train", ddir, options=opts)
    np.testing.assert_array_equal(got, expect(x))
    np.testing.assert_array_equal(load_np(npz, "test", ddir, options=opts)[0], expect(tx))
    np.testing.assert_array_equal(labels, np.arange(6) % 2)
    info = data.dataset_info(npz, ddir, options=opts, log=None)
    assert info["image_shape"] == list(shapes.image_shape(expect(x).shape))

    npy = tmp_path / "images.npy"
    np.save(npy, x)
    picks = cache.carve(6, 0)  # no test split: 1/6 carved, as for any dataset without one
    for split in ("train", "test"):
        got, labels = load_np(npy, split, ddir, options=opts)
        np.testing.assert_array_equal(got, expect(x)[picks[split]])
        assert (labels == -1).all()
    info = data.dataset_info(npy, ddir, options=opts, log=None)
    assert (info["kind"], info["has_labels"], info["n_test"]) == ("npy", False, 1)


def test_the_rule_for_4d_arrays():
    assert shapes.dataset_shape((5, 32, 32, 3)) == ((5, 3, 32, 32), "nhwc")
    assert shapes.dataset_shape((5, 3, 32, 20)) == ((5, 3, 32, 20), "nchw")
    assert shapes.dataset_shape((5, 1, 8, 128)) == ((5, 8, 128), "nchw")
    with pytest.raises(shapes.ShapeError, match="both hold the channels.*under 8 pixels"):
        shapes.dataset_shape((5, 3, 8, 3))
    with pytest.raises(shapes.ShapeError, match="neither the second nor the last"):
        shapes.dataset_shape((5, 28, 28, 28))
    # the option overrides the rule: forced the wrong way, the channels are wrong
    with pytest.raises(shapes.ShapeError, match=": 24 channels; give 1"):
        shapes.dataset_shape((5, 3, 16, 24), "nhwc")
    assert shapes.parse_size("32x24") == (32, 24) and shapes.parse_size(" 8X8 ") == (8, 8)
    assert shapes.parse_size("7x8") is None and shapes.parse_size("129x8") is None
    assert shapes.parse_size("32") is None and shapes.parse_size(32) is None
    assert shapes.fitted_size(512, 384) == "128x96" and shapes.fitted_size(4, 6) == "8x12"


def test_idx_of_other_sizes_and_colour(tmp_path, ddir):
    grey, colour = tmp_path / "grey32", tmp_path / "colour"
    x, tx = pixels((12, 32, 32), 3), pixels((6, 32, 32), 4)
    grey.mkdir()
    data.write_idx(grey / "train-images-idx3-ubyte.gz", x)
    data.write_idx(grey / "train-labels-idx1-ubyte.gz", np.arange(12, dtype=np.uint8) % 3)
    data.write_idx(grey / "t10k-images-idx3-ubyte.gz", tx)
    data.write_idx(grey / "t10k-labels-idx1-ubyte.gz", np.arange(6, dtype=np.uint8) % 3)
    np.testing.assert_array_equal(load_np(grey, "train", ddir)[0], x)
    assert data.dataset_info(grey, ddir, log=None)["image_shape"] == [1, 32, 32]

    c = pixels((12, 20, 24, 3), 5)  # IDX allows 4 dimensions: (N, H, W, 3)
    colour.mkdir()
    data.write_idx(colour / "train-images-idx3-ubyte", c)
    got, labels = load_np(colour, "train", ddir)
    assert np.concatenate([got, load_np(colour, "test", ddir)[0]]).shape == (12, 3, 20, 24)
    assert (labels == -1).all()
    np.testing.assert_array_equal(got, c.transpose(0, 3, 1, 2)[cache.carve(12, 0)["train"]])
    info = data.dataset_info(colour, ddir, log=None)
    assert info["image_shape"] == [3, 20, 24] and not info["has_labels"]


def test_grey_resize_and_transpose_on_arrays(tmp_path, ddir):
    x = pixels((6, 3, 16, 24), 6)
    npz = tmp_path / "c.npz"
    np.savez(npz, x_train=x, x_test=x[:2])
    grey, _ = load_np(npz, "train", ddir, options={"grey": True})
    want = np.stack([np.asarray(Image.fromarray(img.transpose(1, 2, 0)).convert("L")) for img in x])
    np.testing.assert_array_equal(grey, want)  # ITU-R 601 luma, exactly as Pillow's
    info = data.dataset_info(npz, ddir, options={"grey": True}, log=None)
    assert info["image_shape"] == [1, 16, 24] and info["conversions"]["grey"] == 8

    small, _ = load_np(npz, "train", ddir, options={"resize": "8x12"})
    assert small.shape == (6, 3, 8, 12)
    want = np.asarray(Image.fromarray(x[0].transpose(1, 2, 0)).resize((12, 8), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(small[0], want.transpose(2, 0, 1))
    # resize first, then transpose: rows and columns of each image swapped, channels kept
    flipped, _ = load_np(npz, "train", ddir, options={"resize": "8x12", "transpose": True})
    np.testing.assert_array_equal(flipped, small.transpose(0, 1, 3, 2))
    assert data.dataset_info(npz, ddir, options={"transpose": True}, log=None)["image_shape"] == [3, 24, 16]


# --------------------------------------------------------------------------- image folders


def test_colour_image_folder(tmp_path, ddir):
    root = tmp_path / "pets"
    made = {"train": [], "test": []}
    for split, n in (("train", 6), ("test", 3)):
        for i in range(n):
            cls = ("cat", "dog")[i % 2]
            img = pixels((32, 32, 3), 10 * i + len(split))
            if split == "train" and i == 4:  # one grey image among colour ones
                img = np.repeat(img[..., :1], 3, axis=2)
                save_png(root / split / cls / f"{i}.png", img[..., 0], "L")
            else:
                save_png(root / split / cls / f"{i}.png", img)
            made[split].append((cls, i, img))
    msgs = []
    x, y = load_np(root, "train", ddir, log=msgs.append)
    info = data.dataset_info(root, ddir, log=None)
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.uint8
    assert info["image_shape"] == [3, 32, 32] and info["class_names"] == ["cat", "dog"]
    assert (info["n_train"], info["n_test"], info["kind"]) == (6, 3, "image-folder")
    # read class by class (sorted), then by file name: cat 0, 2, 4, then dog 1, 3, 5
    rows = sorted(made["train"], key=lambda m: (m[0], m[1]))
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1])
    for k, (_, _, img) in enumerate(rows):
        np.testing.assert_array_equal(x[k], img.transpose(2, 0, 1))
    assert info["conversions"]["colour"] == 1 and any("three equal channels" in m for m in msgs)
    assert load_np(root, "test", ddir)[0].shape == (3, 3, 32, 32)


def test_grey_folder_stays_nhw_and_keeps_its_pixels(tmp_path, ddir):
    root = tmp_path / "scans"
    want = []
    for i in range(7):
        img = pixels((20, 24), i)
        if i % 2:  # grey saved as RGB: still grey
            save_png(root / f"{i}.png", np.stack([img] * 3, -1))
        else:
            save_png(root / f"{i}.bmp", img)  # any of PNG, JPEG, BMP
        want.append(img)
    # dark-on-light and of any size: kept as they are, not fitted or inverted (that is fit_mnist)
    (root / "README.md").write_text("scans; the top folder may hold other files")
    info = data.dataset_info(root, ddir, log=None)
    assert info["image_shape"] == [1, 20, 24] and info["kind"] == "flat-images"
    assert info["options"] == {"transpose": False, "split_seed": 0, "fit_mnist": False, "grey": False}
    assert sum(info["conversions"].values()) == 0
    both = np.concatenate([load_np(root, "train", ddir)[0], load_np(root, "test", ddir)[0]])
    assert both.shape == (7, 20, 24)
    picks = cache.carve(7, 0)
    np.testing.assert_array_equal(both, np.stack(want)[np.concatenate([picks["train"], picks["test"]])])


def test_resize_grey_and_fit_mnist_options(tmp_path, ddir):
    root = tmp_path / "mixed"
    imgs = [pixels((40, 30, 3), 1), pixels((28, 28, 3), 2), pixels((64, 64), 3)]
    for i, img in enumerate(imgs):
        save_png(root / f"{i}.png", img)
    with pytest.raises(DataError, match="resize="):  # mixed sizes, by default
        load_np(root, "train", ddir)

    x, _ = load_np(root, "train", ddir, options={"resize": "16x12", "split_seed": 3})
    info = data.dataset_info(root, ddir, options={"resize": "16x12", "split_seed": 3}, log=None)
    assert info["image_shape"] == [3, 16, 12] and info["conversions"]["resized"] == 3
    train = cache.carve(3, 3)["train"]
    for k, i in enumerate(train):
        img = imgs[i] if imgs[i].ndim == 3 else np.stack([imgs[i]] * 3, -1)
        want = np.asarray(Image.fromarray(imgs[i]).resize((12, 16), Image.Resampling.LANCZOS))
        want = want if want.ndim == 3 else np.stack([want] * 3, -1)
        np.testing.assert_array_equal(x[k], want.transpose(2, 0, 1), err_msg=f"{img.shape}")

    opts = {"resize": "16x16", "grey": True}
    g, _ = load_np(root, "train", ddir, options=opts)
    info = data.dataset_info(root, ddir, options=opts, log=None)
    assert g.ndim == 3 and info["image_shape"] == [1, 16, 16] and info["conversions"]["grey"] == 2

    x, _ = load_np(root, "train", ddir, options={"fit_mnist": True})
    info = data.dataset_info(root, ddir, options={"fit_mnist": True}, log=None)
    assert x.shape[1:] == (28, 28) and info["image_shape"] == [1, 28, 28]
    assert info["conversions"]["fitted"] == 2 and info["conversions"]["grey"] == 2


def test_transparency_composited_by_grey_and_opaque_alpha_dropped(tmp_path, ddir):
    root = tmp_path / "alpha"
    rgb = pixels((16, 16, 3), 7)
    save_png(root / "a.png", np.dstack([rgb, np.full((16, 16), 255, np.uint8)]), "RGBA")  # opaque
    save_png(root / "b.png", rgb)
    both = np.concatenate([load_np(root, s, ddir)[0] for s in ("train", "test")])
    info = data.dataset_info(root, ddir, log=None)
    assert info["image_shape"] == [3, 16, 16] and info["conversions"]["opaque"] == 1
    np.testing.assert_array_equal(both, np.stack([rgb.transpose(2, 0, 1)] * 2))  # alpha dropped
    see_through = np.dstack([rgb, np.full((16, 16), 100, np.uint8)])
    save_png(root / "a.png", see_through, "RGBA")
    with pytest.raises(DataError, match="a.png: has an alpha channel"):
        load_np(root, "train", ddir)
    g = data.dataset_info(root, ddir, options={"grey": True}, log=None)
    assert g["image_shape"] == [1, 16, 16] and g["conversions"]["alpha"] == 1


# --------------------------------------------------------------------------- bad input


def _npz(root: Path, **arrays) -> tuple[Path, str]:
    root.mkdir()
    np.savez(root / "set.npz", **arrays)
    return root / "set.npz", "set.npz"


def _folder(root: Path, images: dict[str, np.ndarray]) -> Path:
    for name, img in images.items():
        save_png(root / name, img, "LA" if img.ndim == 3 and img.shape[2] == 2 else None)
    return root


def npz_alpha(root):
    return _npz(root, x_train=pixels((4, 16, 16, 4))), "4 channels, the last an alpha channel; flatten it"


def npz_two_channels(root):
    return _npz(root, x_train=pixels((4, 2, 16, 16))), "(4, 2, 16, 16): 2 channels (grey and alpha?); give 1"


def npz_no_images(root):
    return _npz(root, x_train=np.zeros((0, 16, 16), np.uint8)), "no images"


def npz_too_large(root):
    return _npz(root, x_train=pixels((3, 130, 140))), \
        "130x140 pixels, larger than 128 a side; resize the images, e.g. --resize"


def npz_too_small(root):
    return _npz(root, x_train=pixels((3, 6, 40))), "6x40 pixels, smaller than 8 a side"


def npz_ambiguous(root):
    return _npz(root, x_train=pixels((3, 3, 9, 3))), "could both hold the channels"


def npz_splits_differ(root):
    return _npz(root, x_train=pixels((4, 16, 16)), x_test=pixels((4, 3, 16, 16))), \
        "train images are 16x16 grey but the test images 16x16 colour"


def npz_label_count(root):
    return _npz(root, x_train=pixels((4, 16, 16)), y_train=np.arange(3)), "3 labels for the 4 images"


def npy_no_images(root):
    root.mkdir()
    np.save(root / "x.npy", np.zeros((0, 3, 16, 16), np.uint8))
    return (root / "x.npy", "x.npy"), "no images"


def npy_objects(root):
    root.mkdir()
    np.save(root / "x.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    return (root / "x.npy", "x.npy"), "dtype=object"


def idx_alpha(root):
    root.mkdir()
    data.write_idx(root / "train-images-idx3-ubyte", pixels((4, 16, 16, 4)))
    return (root, "train-images-idx3-ubyte"), "an alpha channel"


def folder_rgba(root):
    rgba = np.dstack([pixels((16, 16, 3)), np.full((16, 16), 9, np.uint8)])
    _folder(root, {"a/0.png": pixels((16, 16)), "a/1.png": rgba})
    return (root, "1.png"), "has an alpha channel; flatten it onto a background first, or pass"


def folder_la(root):
    la = np.dstack([pixels((16, 16)), np.zeros((16, 16), np.uint8)])
    _folder(root, {"0.png": pixels((16, 16)), "1.png": la})
    return (root, "1.png"), "has an alpha channel"


def folder_mixed_sizes(root):
    _folder(root, {"a/0.png": pixels((16, 16)), "a/1.png": pixels((16, 16)), "b/2.png": pixels((20, 16))})
    return (root, "0.png: 16x16 but"), \
        ("2.png: 20x16 (height x width); the images of a dataset must share one size: resize them, "
         "e.g. --resize")


def folder_too_large(root):
    _folder(root, {"0.png": pixels((200, 150))})
    return (root, "0.png"), \
        "larger than 128 a side; resize the images, e.g. --resize 128x96"


def folder_not_an_image(root):
    _folder(root, {"train/a/0.png": pixels((16, 16)), "train/b/1.png": pixels((16, 16))})
    (root / "train" / "b" / "notes.txt").write_text("hello")
    return (root, "notes.txt"), "not a PNG/JPEG/BMP image, in the image folders"


def folder_test_class_not_trained(root):
    _folder(root, {"train/a/0.png": pixels((16, 16)), "train/b/1.png": pixels((16, 16)),
                   "test/a/2.png": pixels((16, 16)), "test/c/3.png": pixels((16, 16))})
    return (root, str(Path("test") / "c")), "lacks (it has a, b); the labels would not match"


def option_fit_mnist_on_arrays(root):
    path, name = _npz(root, x_train=pixels((4, 16, 16)))
    (root / "aelab-dataset.json").write_text(json.dumps({"fit_mnist": True}))
    return (path, name), "the option fit_mnist is for image-folder, flat-images datasets"


def option_layout_on_images(root):
    _folder(root, {"0.png": pixels((16, 16)), "1.png": pixels((16, 16))})
    (root / "aelab-dataset.json").write_text(json.dumps({"layout": "nhwc"}))
    return (root, str(root)), "the option layout is for idx, npz, npy, npz-pairs"


def option_fit_mnist_and_resize(root):
    _folder(root, {"0.png": pixels((16, 16)), "1.png": pixels((16, 16))})
    (root / "aelab-dataset.json").write_text(json.dumps({"fit_mnist": True, "resize": "32x32"}))
    return (root, str(root)), "cannot go with it"


def option_bad_resize(root):
    _folder(root, {"0.png": pixels((16, 16)), "1.png": pixels((16, 16))})
    (root / "aelab-dataset.json").write_text(json.dumps({"resize": "32"}))
    return (root, "aelab-dataset.json"), 'option resize=\'32\' must be "HxW"'


BAD = [npz_alpha, npz_two_channels, npz_no_images, npz_too_large, npz_too_small, npz_ambiguous,
       npz_splits_differ, npz_label_count, npy_no_images, npy_objects, idx_alpha, folder_rgba,
       folder_la, folder_mixed_sizes, folder_too_large, folder_not_an_image,
       folder_test_class_not_trained, option_fit_mnist_on_arrays, option_layout_on_images,
       option_fit_mnist_and_resize, option_bad_resize]


@pytest.mark.parametrize("make", BAD, ids=lambda f: f.__name__)
def test_bad_input_is_one_line_naming_the_file_and_leaves_nothing(make, tmp_path, ddir):
    (path, names), says = make(tmp_path / "bad")
    with pytest.raises(DataError) as e:
        data.load_dataset(path, "train", data_dir=ddir, log=None)
    message = str(e.value)
    assert "\n" not in message and names in message and says in message, message
    assert leftovers(ddir) == []  # no cache, no temp file


def test_a_failed_rebuild_leaves_no_cache_and_no_temp_files(tmp_path, ddir):
    root = _folder(tmp_path / "ok", {"0.png": pixels((16, 16)), "1.png": pixels((16, 16))})
    load_np(root, "train", ddir)
    assert len(leftovers(ddir)) == 1
    save_png(root / "2.png", pixels((16, 20)))  # a new file of another size: rebuilt, and fails
    with pytest.raises(DataError, match="16x20"):
        load_np(root, "train", ddir)
    assert leftovers(ddir) == []


# --------------------------------------------------------------------------- the cache


def test_a_cache_of_the_older_version_is_rebuilt(tmp_path, ddir):
    folder = tmp_path / "idx"
    folder.mkdir()
    x, y = pixels((12, 28, 28), 8), np.arange(12, dtype=np.uint8) % 10
    data.write_idx(folder / "train-images-idx3-ubyte", x)
    data.write_idx(folder / "train-labels-idx1-ubyte", y)
    info = data.dataset_info(folder, ddir, log=None)
    (file,) = (ddir / "cache").iterdir()
    with safe_open(str(file), framework="np") as f:
        meta = json.loads(f.metadata()["aelab"])
    meta["version"] = 1  # as the code before image shapes wrote it
    del meta["info"]["image_shape"]
    save_file(load_file(str(file)), str(file), metadata={"aelab": json.dumps(meta)})
    custom._MEMO.clear()
    msgs = []
    again = data.dataset_info(folder, ddir, log=msgs.append)
    assert any("decoding" in m for m in msgs) and again == info and again["image_shape"] == [1, 28, 28]
    assert cache.read_meta(file)["version"] == cache.VERSION == 2


def test_checksum_of_mnist_like_data_is_what_it_always_was():
    """Runs record the checksum; for (N, 28, 28) data it must not change with image shapes."""
    splits = {"train": (pixels((5, 28, 28), 1), np.arange(5)), "test": (pixels((2, 28, 28), 2), np.arange(2))}
    h = hashlib.sha256()
    for split in ("train", "test"):
        images, labels = splits[split]
        h.update(f"{split} {images.shape} {labels.shape}\n".encode())
        h.update(images.tobytes())
        h.update(labels.astype("<i8").tobytes())
    assert cache.checksum(splits) == h.hexdigest()[:16]
    colour = {s: (np.repeat(x[:, None], 3, 1), y) for s, (x, y) in splits.items()}
    assert cache.checksum(colour) != cache.checksum(splits)


# --------------------------------------------------------------------------- float batches


def test_to_float_keeps_the_channels():
    grey, colour = torch.from_numpy(pixels((4, 9, 12))), torch.from_numpy(pixels((4, 3, 9, 12)))
    g, c = batches.to_float(grey), batches.to_float(colour)
    assert g.shape == (4, 1, 9, 12) and c.shape == (4, 3, 9, 12) and c.dtype == torch.float32
    torch.testing.assert_close(g[:, 0] * 255, grey.float())
    torch.testing.assert_close(c * 255, colour.float())
    assert batches.image_shape(grey.shape) == (1, 9, 12) and batches.image_shape(colour.shape) == (3, 9, 12)


AS_IMAGES = {  # what a person hands over -> what as_images gives, from x
    "nhw": ((5, 16, 24), lambda x: x),
    "nhwc": ((5, 16, 24, 3), lambda x: x.transpose(0, 3, 1, 2)),
    "nchw": ((5, 3, 16, 24), lambda x: x),
    "nhwc-1": ((5, 16, 24, 1), lambda x: x[..., 0]),
    "nchw-1": ((5, 1, 16, 24), lambda x: x[:, 0]),
    "flat-784": ((5, 784), lambda x: x.reshape(5, 28, 28)),
    "one-28x28": ((28, 28), lambda x: x[None]),
    "one-784": ((784,), lambda x: x.reshape(1, 28, 28)),
}


@pytest.mark.parametrize("case", sorted(AS_IMAGES))
@pytest.mark.parametrize("kind", ["numpy-uint8", "torch-float"])
def test_as_images_layouts(case, kind):
    shape, expect = AS_IMAGES[case]
    x = pixels(shape, 4)
    given = x if kind == "numpy-uint8" else torch.from_numpy(x).float() / 255
    got = batches.as_images(given)
    want = torch.from_numpy(np.ascontiguousarray(expect(x)))
    assert got.dtype == (torch.uint8 if kind == "numpy-uint8" else torch.float32)
    torch.testing.assert_close(got if kind == "numpy-uint8" else (got * 255).round().to(torch.uint8), want)
    batch = batches.images_to_float(got)
    c = 1 if want.ndim == 3 else 3
    assert batch.shape == (want.shape[0], c, *want.shape[-2:]) and batch.dtype == torch.float32


def test_as_images_with_an_image_shape():
    assert batches.layouts_text((1, 28, 28)) == batches.IMAGE_LAYOUTS
    with pytest.raises(AelabError) as e:
        batches.as_images(np.zeros((2, 27, 28), np.uint8), image_shape=(1, 28, 28))
    assert str(e.value) == f"got images of shape (2, 27, 28); give {batches.IMAGE_LAYOUTS}"
    x = torch.from_numpy(pixels((4, 16, 16, 3)))
    nchw = batches.as_images(x, image_shape=(3, 16, 16))
    assert nchw.shape == (4, 3, 16, 16) and nchw.data_ptr() == x.data_ptr()  # a view
    flat = batches.as_images(x.permute(0, 3, 1, 2).reshape(4, 768), image_shape=(3, 16, 16))
    torch.testing.assert_close(flat, nchw)
    one = batches.as_images(pixels((16, 16, 3)), image_shape=(3, 16, 16))
    assert one.shape == (1, 3, 16, 16)
    with pytest.raises(AelabError, match=r"shape \(4, 16, 16\); give \(N, 3, 16, 16\)"):
        batches.as_images(pixels((4, 16, 16)), image_shape=(3, 16, 16))


@pytest.mark.parametrize("shape, says", [
    ((2, 4, 4), "4x4 pixels, smaller than 8"), ((2, 200, 20), "larger than 128"),
    ((2, 16, 16, 4), "alpha channel"), ((2, 2, 16, 16), "2 channels"),
    ((0, 16, 16), "no images"), ((2, 3, 9, 3), "both hold the channels"), ((2, 30), "flat images of 30")])
def test_as_images_refuses(shape, says):
    with pytest.raises(AelabError, match=says) as e:
        batches.as_images(np.zeros(shape, np.uint8))
    assert "\n" not in str(e.value)


def test_resize_and_grey_flags_are_the_dataset_options(tmp_path):
    """`--resize HxW` and `--grey` on every command that takes --dataset, and on `aelab
    data`, are short for --dataset-option resize=HxW and grey=true."""
    from aelab.cli import build_parser

    parser = build_parser()
    for argv in (["data", "x", "--resize", "16x12", "--grey"],
                 ["train", "vae", "--dataset", "x", "--resize", "16x12", "--grey"],
                 ["explore", "r", "--dataset", "x", "--grey", "--resize", "16x12"]):
        a = parser.parse_args(argv)
        assert a.dataset_options == {"resize": "16x12", "grey": True}, argv
    a = parser.parse_args(["train", "vae", "--dataset-option", "split_seed=3", "--grey"])
    assert a.dataset_options == {"split_seed": 3, "grey": True}
