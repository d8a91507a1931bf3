"""Image files: as they are, or made to look like MNIST digits (28x28 uint8, a light digit
on black).

decode_image: one file of an image-folder dataset as it is: uint8 (H, W) when grey (mode L,
or RGB with R == G == B everywhere), (H, W, 3) when colour; `grey` converts colour to grey.
resize: one such image to a given height x width (Pillow's LANCZOS, which averages over the
area it shrinks).
decode_digit: one file of an image-folder dataset with the option fit_mnist, fitted into
28x28 grey keeping its aspect ratio, light on dark.
Both name each conversion they made, so a dataset build can count them (describe_conversions
says them in one line).
read_user_image: one file a person hands the CLI, made MNIST-like by to_mnist (cropped to
its ink, 20 px on its longer side, centred by mass in 28x28).
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import AelabError, DataError

SIZE = 28
BOX = 20  # MNIST's digits were scaled to fit 20x20 before centring in 28x28
INK = 5  # levels above the background that count as ink (the web explorer's 0.02 of 255)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_FORMATS = ("PNG", "JPEG", "BMP")  # the only decoders Pillow may use for a dataset file
_GREY_MODES = {"1", "L", "LA", "La", "I", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}

# What decode_digit may do to an image -> how a build log says it, in this order.
CONVERSIONS = {
    "grey": "converted {n} colour images to grey",
    "alpha": "composited {n} transparent images over a plain background",
    "depth": "scaled {n} 16-bit images to 8 bits",
    "fitted": "fitted {n} images of other sizes into 28x28",
    "inverted": "inverted {n} dark-on-light images",
    "opaque": "dropped the alpha channel of {n} fully opaque images",
    "resized": "resized {n} images",
    "colour": "gave {n} grey images three equal channels, as the others are colour",
}
ALPHA_HINT = "flatten it onto a background first, or pass --grey (the option grey=true)"


def _border(arr: np.ndarray) -> np.ndarray:
    return np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])


def _light_border(arr: np.ndarray) -> bool:
    """A mostly light border means a dark digit on paper: MNIST's digits are light on black."""
    return bool(_border(arr).mean() > 127)


def to_mnist(arr: np.ndarray) -> np.ndarray:
    """A light digit on a dark background, uint8 (H, W) -> uint8 (28, 28), as MNIST was made
    (LeCun et al., the MNIST page): crop to the ink's bounding box, scale its longer side to
    BOX (20) px keeping the aspect ratio, and paste it into 28x28 with its centre of mass on
    pixel (14, 14) (the web explorer's canvas does the same: serve/static/app.js, toMnist).

    Before that, the background (the median of the border) is subtracted and the brightest
    pixel scaled to 255, as on every MNIST digit (254 or 255), so that grey paper in a photo
    becomes MNIST's black; ink is what stands above the border's 95th percentile (at least
    INK levels), the rest is set to 0. The shift is whole pixels, as MNIST's was, and is
    reduced where centring would push ink off the field. Raises AelabError for a blank image.
    """
    from PIL import Image

    x = np.clip(arr.astype(np.float64) - np.median(_border(arr)), 0, None)
    if x.max() < INK:
        raise AelabError("no digit found: no pixel is brighter than the background")
    x *= 255 / x.max()
    ink = x > max(INK, np.percentile(_border(x), 95))
    if not ink.any():  # the brightest pixels are all on the border: a frame, not a digit
        raise AelabError("no digit found: nothing inside stands out from the border")
    x[~ink] = 0
    rows, cols = np.nonzero(ink.any(1))[0], np.nonzero(ink.any(0))[0]
    box = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (h, w) around the ink
    scale = BOX / max(box.shape)
    nh, nw = (max(1, round(n * scale)) for n in box.shape)
    small = np.asarray(Image.fromarray(box.astype(np.float32)).resize(
        (nw, nh), Image.Resampling.LANCZOS)).clip(0, 255)  # (nh, nw)
    # centre of mass in pixel indices: MNIST's test digits average (13.99, 14.01)
    cy, cx = (float((small.sum(axis) * np.arange(n)).sum() / small.sum())
              for axis, n in ((1, nh), (0, nw)))
    # whole pixels, halves rounded up: a 20x10 block's centre (9.5, 4.5) lands on (14.5, 14.5)
    top = min(max(math.floor(SIZE // 2 - cy + 0.5), 0), SIZE - nh)
    left = min(max(math.floor(SIZE // 2 - cx + 0.5), 0), SIZE - nw)
    out = np.zeros((SIZE, SIZE), np.uint8)
    out[top : top + nh, left : left + nw] = np.rint(small).astype(np.uint8)
    return out


def read_user_image(path, invert: str = "auto") -> np.ndarray:
    """Read one image file as uint8 (28, 28), light digit on a dark background.

    `invert`: "auto" flips an image whose border is mostly light (a dark digit on paper),
    "yes" always flips, "no" never does. An image of another size is then made MNIST-like
    by to_mnist (cropped to its ink, 20 px on its longer side, centred by mass), with a
    warning; a 28x28 image is taken to be in MNIST's format already and kept as it is.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib

    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"), dtype=np.uint8).copy()  # (H, W)
    except FileNotFoundError:
        raise AelabError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise AelabError(f"cannot read {path} as an image ({e}); give a PNG or JPEG file") from None
    if invert == "yes" or (invert == "auto" and _light_border(arr)):
        arr = 255 - arr
    if arr.shape == (SIZE, SIZE):
        return arr
    h, w = arr.shape
    warnings.warn(f"{path}: {w}x{h} image resized to 28x28 as MNIST was: the ink cropped, "
                  f"scaled to {BOX} px on its longer side, centred by mass", stacklevel=2)
    try:
        return to_mnist(arr)
    except AelabError as e:
        raise AelabError(f"{path}: {e} (invert={invert!r}); give an image of one digit on a "
                         "plain background, flipped with --invert yes if it is dark on light "
                         "and its border is not") from None


def read_user_images(paths, invert: str = "auto"):
    """uint8 tensor (N, 28, 28) from image files."""
    import torch  # here, not at import time: torch is slow to import

    return torch.from_numpy(np.stack([read_user_image(p, invert) for p in paths]))


# --------------------------------------------------------------------------- datasets


def _composite(im) -> np.ndarray:
    """Grey (H, W) uint8 of an image with transparency, laid over a plain background.

    The background is white (the page a digit is usually drawn on), except when the visible
    strokes are themselves light (a white digit on a transparent sheet): then it is black,
    so that the digit does not vanish.
    """
    la = np.asarray(im.convert("RGBA").convert("LA"), dtype=np.float64)  # (H, W, 2)
    grey, alpha = la[..., 0], la[..., 1] / 255
    ink = (grey * alpha).sum() / max(alpha.sum(), 1e-9)  # mean grey of what is visible
    background = 0.0 if ink > 127 else 255.0
    return np.rint(grey * alpha + background * (1 - alpha)).astype(np.uint8)


def _to_grey(im) -> tuple[np.ndarray, list[str]]:
    """(H, W) uint8 grey pixels of a Pillow image, and the conversions that took."""
    done = [] if im.mode in _GREY_MODES or im.mode.startswith("I;16") else ["grey"]
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        return _composite(im), [*done, "alpha"]
    if im.mode.startswith("I;16") or im.mode == "I":
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them.
        wide = np.asarray(im, dtype=np.float64)
        return np.rint(np.clip(wide, 0, 65535) / 257).astype(np.uint8), [*done, "depth"]
    return np.asarray(im.convert("L"), dtype=np.uint8).copy(), done


def _fit(arr: np.ndarray) -> np.ndarray:
    """(H, W) -> (28, 28): scaled so the longer side is 28, centred, padded with the
    image's own background (the median of its border)."""
    from PIL import Image

    h, w = arr.shape
    scale = SIZE / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(Image.fromarray(arr).resize((nw, nh), Image.Resampling.LANCZOS))
    out = np.full((SIZE, SIZE), int(np.median(_border(arr))), np.uint8)
    top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
    out[top : top + nh, left : left + nw] = small
    return out


def _open(blob: bytes, path: Path, read):
    """read(image) of a file decoded with Pillow (PNG, JPEG or BMP only); a decompression
    bomb is an error, even one only over Pillow's warning limit (Image.MAX_IMAGE_PIXELS)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob), formats=_FORMATS) as im:
                im.load()
                return read(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: refused as a possible decompression bomb ({e}); shrink the "
                        "image or remove it from the dataset") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read as PNG, JPEG or BMP; "
                        "replace it with a good copy or remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot decode the image ({e}); it may be truncated or "
                        "damaged: replace it with a good copy or remove it") from None


def _has_alpha(im) -> bool:
    return im.mode in _ALPHA_MODES or "transparency" in im.info


def _as_they_are(im, path: Path) -> tuple[np.ndarray, list[str]]:
    """(H, W) grey or (H, W, 3) colour uint8 pixels of a Pillow image, and the conversions
    that took. An alpha channel that hides nothing (255 everywhere) is dropped; one that does
    is a DataError, since which background to lay it over is the owner's call."""
    done = []
    if _has_alpha(im):
        if np.asarray(im.convert("RGBA"))[..., 3].min() < 255:
            raise DataError(f"{path}: has an alpha channel; {ALPHA_HINT}")
        im = im.convert("L" if im.mode in _GREY_MODES else "RGB")
        done.append("opaque")
    if im.mode in _GREY_MODES or im.mode.startswith("I;16"):
        arr, more = _to_grey(im)
        return arr, done + more
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0].copy(), done  # grey saved as RGB
    return rgb.copy(), done


def decode_image(blob: bytes, path: Path, grey: bool = False) -> tuple[np.ndarray, list[str]]:
    """The bytes of one image file -> (uint8 (H, W) grey or (H, W, 3) colour, as the file has
    it; the keys of CONVERSIONS it needed).

    grey: colour becomes grey (ITU-R 601 luma) and transparency is composited over a plain
    background, as decode_digit does; without it an image with transparency is a DataError.
    16-bit grey is scaled to 8 bits. Raises DataError naming `path` for anything Pillow cannot
    decode, or a decompression bomb.
    """
    return _open(blob, path, _to_grey if grey else lambda im: _as_they_are(im, path))


def resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) -> (h, w) or (h, w, 3) for size (h, w): Pillow's LANCZOS,
    whose filter widens with the scale, so shrinking averages over each output pixel's area.
    The aspect ratio follows the size given."""
    from PIL import Image

    h, w = size
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)


def decode_digit(blob: bytes, path: Path) -> tuple[np.ndarray, list[str]]:
    """The bytes of one image file -> (uint8 (28, 28), light digit on dark; the keys of
    CONVERSIONS it needed).

    Colour becomes grey (ITU-R 601 luma); transparency is composited over white (over black
    when the visible strokes are light; see _composite); 16-bit grey is scaled to 8 bits;
    other sizes are fitted into 28x28 keeping the aspect ratio, centred on the image's own
    background; a mostly light border (mean > 127) means dark on light, which is inverted.
    Raises DataError naming `path` for anything Pillow cannot decode, or a decompression bomb.
    """
    arr, done = _open(blob, path, _to_grey)
    if arr.shape != (SIZE, SIZE):
        arr = _fit(arr)
        done.append("fitted")
    if _light_border(arr):
        arr = 255 - arr
        done.append("inverted")
    return arr, done


def describe_conversions(counts: dict[str, int]) -> str:
    """One line for a build log, e.g. "converted 12 colour images to grey, inverted 3
    dark-on-light images"; "" when nothing was converted."""
    return ", ".join(text.format(n=counts[key]) for key, text in CONVERSIONS.items()
                     if counts.get(key))
