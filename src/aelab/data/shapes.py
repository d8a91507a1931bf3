"""The image shapes aelab reads, and the one layout it keeps images in.

Images are uint8. A grey dataset is (N, H, W) (MNIST: (60000, 28, 28)); a colour one is
(N, 3, H, W). Its image shape, what every other part reads, is (C, H, W): (1, 28, 28) for
MNIST. Channels are 1 or 3; height and width each MIN_SIDE..MAX_SIDE (8..128), square or not.

An array of images (.npz, .npy, IDX, or images handed to a model) may come as:

- (N, H, W): grey;
- (N, 784): flat MNIST-sized images, read as (N, 28, 28);
- (N, H, W, C) or (N, C, H, W): which axis holds the channels is decided by its size. An axis
  of 4 or fewer can only be channels (a side is at least 8): channels-last when the last axis
  is that small and the second is not (e.g. (N, 32, 32, 3)), channels-first when the second
  is and the last is not ((N, 3, 32, 32)). When neither is ((N, 28, 28, 28)) the array is
  refused. When both are (e.g. (N, 3, 8, 3)) the layout must be given, "nhwc" or "nchw" (the
  option `layout`, which also overrides the rule); while sides are at least 8 such an array
  has a side under 8 either way, so it is refused with that said. 1-channel arrays become
  (N, H, W), 3-channel ones (N, 3, H, W); 2 channels and 4 (an alpha channel) are refused.

Nothing here imports torch; the functions take shapes (tuples) or numpy arrays.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["CHANNELS", "LAYOUTS", "MAX_SIDE", "MIN_SIDE", "ShapeError", "channels_last",
           "channels_problem", "check_sides", "dataset_layout", "dataset_shape", "fitted_size",
           "image_shape", "parse_size", "size_text"]

MIN_SIDE, MAX_SIDE = 8, 128
CHANNELS = (1, 3)
LAYOUTS = ("nhwc", "nchw")
MNIST_FLAT = 784  # (N, 784): the one flat layout read, as (N, 28, 28)
_SMALL = 4  # an axis this small is channels, never a side (sides are >= MIN_SIDE)


class ShapeError(ValueError):
    """A shape that is not images; the message says why, without naming the file (the
    caller adds that, and what to do)."""


def size_text(h: int, w: int) -> str:
    """32x32: height x width, the way the option `resize` is written."""
    return f"{h}x{w}"


def parse_size(value) -> tuple[int, int] | None:
    """"32x32" or "32X24" -> (32, 24) (height, width) when both are MIN_SIDE..MAX_SIDE; else None."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value) if isinstance(value, str) else None
    if m is None:
        return None
    h, w = int(m.group(1)), int(m.group(2))
    return (h, w) if MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE else None


def channels_problem(c: int) -> str | None:
    """What is wrong with `c` channels, or None for 1 or 3."""
    if c in CHANNELS:
        return None
    if c == 4:
        return "4 channels, the last an alpha channel; flatten it onto a background first"
    if c == 2:
        return "2 channels (grey and alpha?); give 1 (grey) or 3 (colour)"
    return f"{c} channels; give 1 (grey) or 3 (colour)"


def channels_last(shape: tuple, layout: str | None = None) -> bool:
    """For a 4-D shape: True when it is (N, H, W, C), False for (N, C, H, W); see the module
    docstring for the rule. Raises ShapeError when the shape does not tell and `layout`
    (nhwc or nchw) is not given."""
    if layout is not None:
        return layout == "nhwc"
    first, last = shape[1] <= _SMALL, shape[3] <= _SMALL
    if first != last:
        return last
    shape = tuple(shape)
    if not first:
        raise ShapeError(f"images of shape {shape}: neither the second nor the last axis is small "
                         "enough to hold the channels (1 or 3); give (N, H, W, C) or (N, C, H, W)")
    if min(shape[1], shape[3]) < MIN_SIDE:  # always, while MIN_SIDE > _SMALL
        raise ShapeError(f"images of shape {shape}: the second and the last axis could both hold "
                         f"the channels, and either way a side would be under {MIN_SIDE} pixels; "
                         f"give images of {MIN_SIDE} to {MAX_SIDE} pixels a side")
    raise ShapeError(f"images of shape {shape}: the second and the last axis could both hold the "
                     "channels; say which with the option layout=nhwc (N, H, W, C) or "
                     "layout=nchw (N, C, H, W)")


def dataset_shape(shape: tuple, layout: str | None = None) -> tuple[tuple[int, ...], str]:
    """The shape an array of images will have in the dataset layout, and how to get there:
    "as-is", "flat" (N, 784), "nhwc" or "nchw". Raises ShapeError for anything else
    (checks the channels, not the sides: see check_sides)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return shape, "as-is"
    if len(shape) == 2 and shape[1] == MNIST_FLAT:
        return (shape[0], 28, 28), "flat"
    if len(shape) == 2:
        raise ShapeError(f"flat images of {shape[1]} values (shape {shape}); only MNIST's (N, 784) "
                         "is read flat: give (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if len(shape) != 4:
        raise ShapeError(f"images of shape {shape}; give (N, H, W), (N, H, W, C) or (N, C, H, W)")
    last = channels_last(shape, layout)
    n, (c, h, w) = shape[0], ((shape[3], shape[1], shape[2]) if last else shape[1:])
    problem = channels_problem(c)
    if problem:
        raise ShapeError(f"images of shape {shape}: {problem}")
    return ((n, h, w) if c == 1 else (n, 3, h, w)), ("nhwc" if last else "nchw")


def dataset_layout(arr: np.ndarray, layout: str | None = None) -> np.ndarray:
    """An array of images -> the dataset layout: (N, H, W) grey or (N, 3, H, W) colour, a view
    where it can be. Raises ShapeError (see dataset_shape)."""
    shape, how = dataset_shape(arr.shape, layout)
    if how == "nhwc":
        arr = arr.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    return arr.reshape(shape)


def image_shape(shape: tuple) -> tuple[int, int, int]:
    """(C, H, W) of images in the dataset layout: (N, H, W) -> (1, H, W); (N, 3, H, W) -> (3, H, W)."""
    return (1, *shape[1:]) if len(shape) == 3 else tuple(shape[1:])


def check_sides(h: int, w: int) -> str | None:
    """What is wrong with images of h x w pixels, or None when each side is MIN_SIDE..MAX_SIDE."""
    if max(h, w) > MAX_SIDE:
        return f"images of {size_text(h, w)} pixels, larger than {MAX_SIDE} a side"
    if min(h, w) < MIN_SIDE:
        return f"images of {size_text(h, w)} pixels, smaller than {MIN_SIDE} a side"
    return None


def fitted_size(h: int, w: int) -> str:
    """A resize=HxW to suggest for images of h x w: the aspect kept, within the limits."""
    scale = min(1.0, MAX_SIDE / max(h, w)) if max(h, w) > MAX_SIDE else max(1.0, MIN_SIDE / min(h, w))
    fit = [min(MAX_SIDE, max(MIN_SIDE, round(s * scale))) for s in (h, w)]
    return size_text(*fit)
