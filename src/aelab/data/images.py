"""Image files made to look like MNIST digits (28x28 uint8, a light digit on black).

read_user_image: one file a person hands the CLI (stretched to 28x28 with a warning).
decode_digit: one file of an image-folder dataset, fitted into 28x28 keeping its aspect
ratio; it also names each conversion it made, so a dataset build can count them
(describe_conversions says them in one line).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from ..errors import AelabError, DataError

SIZE = 28
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
}


def _border(arr: np.ndarray) -> np.ndarray:
    return np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])


def _light_border(arr: np.ndarray) -> bool:
    """A mostly light border means a dark digit on paper: MNIST's digits are light on black."""
    return bool(_border(arr).mean() > 127)


def read_user_image(path, invert: str = "auto") -> np.ndarray:
    """Read one image file as uint8 (28, 28), light digit on a dark background.

    Other sizes are resized with a warning. `invert`: "auto" flips an image whose border is
    mostly light (a dark digit on paper), "yes" always flips, "no" never does.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            if im.size != (28, 28):
                warnings.warn(f"{path}: {im.size[0]}x{im.size[1]} image resized to 28x28",
                              stacklevel=2)
                im = im.resize((28, 28), Image.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise AelabError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise AelabError(f"cannot read {path} as an image ({e}); give a PNG or JPEG file") from None
    if invert == "yes" or (invert == "auto" and _light_border(arr)):
        arr = 255 - arr
    return arr


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


def _open_grey(blob: bytes, path: Path):
    """Decode with Pillow (PNG, JPEG or BMP only); a decompression bomb is an error, even
    one only over Pillow's warning limit (Image.MAX_IMAGE_PIXELS)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob), formats=_FORMATS) as im:
                im.load()
                return _to_grey(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: refused as a possible decompression bomb ({e}); shrink the "
                        "image or remove it from the dataset") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read as PNG, JPEG or BMP; "
                        "replace it with a good copy or remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot decode the image ({e}); it may be truncated or "
                        "damaged: replace it with a good copy or remove it") from None


def decode_digit(blob: bytes, path: Path) -> tuple[np.ndarray, list[str]]:
    """The bytes of one image file -> (uint8 (28, 28), light digit on dark; the keys of
    CONVERSIONS it needed).

    Colour becomes grey (ITU-R 601 luma); transparency is composited over white (over black
    when the visible strokes are light; see _composite); 16-bit grey is scaled to 8 bits;
    other sizes are fitted into 28x28 keeping the aspect ratio, centred on the image's own
    background; a mostly light border (mean > 127) means dark on light, which is inverted.
    Raises DataError naming `path` for anything Pillow cannot decode, or a decompression bomb.
    """
    arr, done = _open_grey(blob, path)
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
