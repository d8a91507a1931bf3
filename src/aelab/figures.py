"""PNG figures drawn with matplotlib's object API (no pyplot, so no display is needed)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ._io import atomic_write_bytes

# matplotlib is imported inside the functions that draw: importing it costs more than the
# rest of the CLI's start-up apart from torch, and most commands never draw.


def new_figure(**kw):
    """A matplotlib Figure on the Agg canvas (no pyplot, no display)."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def save(fig, path: Path) -> Path:
    """Render `fig` to PNG and write it atomically to `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def as_display(images) -> np.ndarray:
    """Images as matplotlib shows them: float (n, H, W) grey or (n, H, W, 3) colour, from
    (n, H, W), (n, 1, H, W), (n, 3, H, W) or (n, H, W, 3), numpy or torch, in [0, 1]."""
    x = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, np.float32)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # (n, C, H, W) -> (n, H, W, C)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    return np.clip(x, 0, 1)


def _show(ax, image: np.ndarray, **kw) -> None:
    """One image, grey (H, W) through the grey colour map, colour (H, W, 3) as it is."""
    grey = dict(cmap="gray", vmin=0, vmax=1) if image.ndim == 2 else {}
    ax.imshow(image, **grey, **kw)


def image_rows(rows: list[tuple[str, np.ndarray]], path: Path, title: str = "") -> Path:
    """One row of images per (label, images) pair, e.g. originals over reconstructions.

    Each `images` is an array of images in [0, 1] in any layout as_display takes: grey
    (n, H, W) or colour (n, 3, H, W) / (n, H, W, 3).
    """
    rows = [(label, as_display(imgs)) for label, imgs in rows]
    n = max(len(imgs) for _, imgs in rows)
    fig = new_figure(figsize=(max(4.0, 1.0 * n), 1.1 * len(rows) + (0.4 if title else 0.1)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(imgs):
                _show(ax, imgs[c])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.12, right=0.99, bottom=0.02, top=0.85 if title else 0.98,
                        wspace=0.05, hspace=0.08)
    return save(fig, path)


GRID_MAX = 256  # images one grid draws (aelab sample's .npz keeps every one)


def tile(images: np.ndarray, cols: int, gap: int = 2) -> np.ndarray:
    """Images (n, H, W[, 3]) tiled row by row, `cols` a row, white lines `gap` wide between."""
    n, h, w = images.shape[:3]
    rows = math.ceil(n / cols)
    tiled = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, *images.shape[3:]), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        tiled[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = image
    return tiled


def draw_grid(images: np.ndarray, path: Path, title: str) -> Path:
    """The first GRID_MAX images (grey (n, H, W) or colour) as one tiled picture, rows of at
    least 8 and about square, white lines between the images, each image pixel 2 screen
    pixels for 28-pixel images (more for smaller ones, so that an 8x8 grid is not a speck)."""
    images = as_display(images)[:GRID_MAX]
    n = len(images)
    cols = min(n, max(8, math.ceil(math.sqrt(n))))
    tiled = tile(images, cols)
    scale = max(2.0, 56 / max(images.shape[1:3]))  # screen pixels per image pixel
    h, w = scale * tiled.shape[0] / 100, scale * tiled.shape[1] / 100  # inches at 100 dpi
    head = 0.35  # inches of title above
    fig = new_figure(figsize=(max(w, 4.0), h + head))
    ax = fig.add_axes((0, 0, 1, h / (h + head)))
    _show(ax, tiled, interpolation="nearest")
    ax.set_axis_off()
    fig.text(0.5, 1 - 0.5 * head / (h + head), title, ha="center", va="center", fontsize=9)
    return save(fig, path)


def loss_curve(metrics: list[dict], path: Path, title: str = "") -> Path:
    """Mean training loss and test MSE per epoch."""
    fig = new_figure(figsize=(6, 4))
    ax = fig.subplots()
    epochs = [m["epoch"] for m in metrics]
    ax.plot(epochs, [m["train_loss"] for m in metrics], "o-", label="train loss (epoch mean)")
    ax.plot(epochs, [m["test_mse"] for m in metrics], "s-", label="test MSE per pixel")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


def show(paths: list[Path]) -> None:
    """Open saved figures in a window, where a display exists (the train --show flag)."""
    import matplotlib.pyplot as plt  # only here: pyplot picks a GUI backend

    if plt.get_backend().lower() == "agg":
        print("--show: no display available; the figures are saved as PNG files")
        return
    for p in paths:
        plt.figure()
        plt.imshow(plt.imread(p))
        plt.axis("off")
    plt.show()
