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


def image_rows(rows: list[tuple[str, np.ndarray]], path: Path, title: str = "") -> Path:
    """One row of 28x28 images per (label, images) pair, e.g. originals over reconstructions.

    Each `images` is an array (n, 28, 28) with values in [0, 1].
    """
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
                ax.imshow(np.clip(imgs[c], 0, 1), cmap="gray", vmin=0, vmax=1)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.12, right=0.99, bottom=0.02, top=0.85 if title else 0.98,
                        wspace=0.05, hspace=0.08)
    return save(fig, path)


GRID_MAX = 256  # images one grid draws (aelab sample's .npz keeps every one)


def draw_grid(images: np.ndarray, path: Path, title: str) -> Path:
    """The first GRID_MAX images (n, 28, 28) as one tiled picture, rows of at least 8 and
    about square, 2 screen pixels per image pixel, white lines between the images."""
    images = images[:GRID_MAX]
    n, gap = len(images), 2
    cols = min(n, max(8, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    tiled = np.ones((rows * (28 + gap) - gap, cols * (28 + gap) - gap), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        tiled[r * (28 + gap) : r * (28 + gap) + 28, c * (28 + gap) : c * (28 + gap) + 28] = image
    h, w = 2 * tiled.shape[0] / 100, 2 * tiled.shape[1] / 100  # inches at 100 dpi
    head = 0.35  # inches of title above
    fig = new_figure(figsize=(max(w, 4.0), h + head))
    ax = fig.add_axes((0, 0, 1, h / (h + head)))
    ax.imshow(np.clip(tiled, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
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
