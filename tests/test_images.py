"""User images for `aelab reconstruct --images`: made MNIST-like the way MNIST was made
(crop to the ink, longer side 20 px, aspect kept, centre of mass on pixel (14, 14)),
checked against hand-made answers."""

import warnings

import numpy as np
import pytest
from PIL import Image

from aelab.data import load_dataset
from aelab.data.images import read_user_image, to_mnist
from aelab.errors import AelabError


def _centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    m, i = img.astype(np.float64), np.arange(img.shape[0])
    return float((m.sum(1) * i).sum() / m.sum()), float((m.sum(0) * i).sum() / m.sum())


def _read(path, **kw) -> tuple[np.ndarray, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = read_user_image(path, **kw)
    return img, [str(w.message) for w in caught]


def test_a_wide_bar_stays_wide():
    """240x20 -> 20x2 (the longer side to 20, the aspect kept); stretching made it 28x6."""
    page = np.zeros((100, 300), np.uint8)
    page[40:60, 30:270] = 255
    expected = np.zeros((28, 28), np.uint8)
    expected[14:16, 5:25] = 255  # centre of mass (0.5, 9.5) in the box -> (14.5, 14.5)
    np.testing.assert_array_equal(to_mnist(page), expected)


def test_an_off_centre_block_is_scaled_and_centred_by_mass():
    """A 40x18 block in a corner: halved to 20x9, its centre (9.5, 4) moved to (14.5, 14)."""
    page = np.zeros((150, 100), np.uint8)
    page[5:45, 70:88] = 255
    expected = np.zeros((28, 28), np.uint8)
    expected[5:25, 10:19] = 255
    np.testing.assert_array_equal(to_mnist(page), expected)


def test_an_off_centre_disc_ends_up_centred_by_mass():
    yy, xx = np.mgrid[:200, :260]
    page = np.where((yy - 40) ** 2 + (xx - 200) ** 2 < 25**2, 255, 0).astype(np.uint8)
    out = to_mnist(page)
    rows, cols = np.nonzero(out)
    assert np.ptp(rows) + 1 == 20 and np.ptp(cols) + 1 == 20  # fitted into the 20x20 box
    cy, cx = _centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_a_photo_of_a_dark_digit_on_grey_paper(tmp_path):
    """Inverted, the paper's grey taken off (MNIST's background is 0), the ink fitted."""
    page = np.full((90, 60), 200, np.uint8)  # grey paper
    page[20:70, 25:35] = 40  # a dark stroke, 50x10
    Image.fromarray(page).save(tmp_path / "photo.png")
    img, caught = _read(tmp_path / "photo.png")
    expected = np.zeros((28, 28), np.uint8)
    expected[5:25, 13:17] = 255  # 50x10 -> 20x4, centre (9.5, 1.5) -> (14.5, 14.5)
    np.testing.assert_array_equal(img, expected)
    assert caught and "60x90 image resized to 28x28" in caught[0]


def test_a_blank_image_is_a_clear_error(tmp_path):
    Image.fromarray(np.full((40, 50), 255, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(AelabError, match=r"blank\.png: no digit found.*--invert"):
        _read(tmp_path / "blank.png")


def test_an_mnist_digit_passes_through(mnist_dir, tmp_path):
    """A 28x28 file is taken as MNIST-shaped and kept exactly. The recipe itself would
    change MNIST's digits only slightly (they were made by it): every pixel within 10
    levels (254 -> 255, faint pixels <= 5 dropped) for almost all, a one-pixel shift where
    their centre of mass sat on a half pixel."""
    x, _ = load_dataset("mnist", "test", data_dir=mnist_dir, log=None)
    digits = x[:300].numpy()
    Image.fromarray(digits[0]).save(tmp_path / "seven.png")
    img, caught = _read(tmp_path / "seven.png")
    np.testing.assert_array_equal(img, digits[0])
    assert caught == []
    diffs = np.array([np.abs(to_mnist(d).astype(int) - d).max() for d in digits])
    assert (diffs <= 10).mean() >= 0.98
    for d in digits[:50]:
        cy, cx = _centre_of_mass(to_mnist(d))
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
