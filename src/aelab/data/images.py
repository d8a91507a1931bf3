"""A person's own image files, made to look like MNIST digits (28x28, white on black)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import AelabError


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
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > 127):
        arr = 255 - arr
    return arr


def read_user_images(paths, invert: str = "auto") -> torch.Tensor:
    """uint8 tensor (N, 28, 28) from image files."""
    return torch.from_numpy(np.stack([read_user_image(p, invert) for p in paths]))
