"""`aelab explore RUN_DIR`: look inside a trained model's code space.

Writes five PNGs into RUN_DIR/explore/ (or --out), six for a model whose code has 2 numbers:

* latent_map.png: the test codes in 2-D, coloured by class. Codes of size 2 are drawn as
  they are; larger ones are projected by PCA (all test images) and by t-SNE (a random
  subsample, since t-SNE costs O(n log n) per iteration).
* interpolation.png: decoded codes on the path between pairs of test images (seeded random
  pairs, or the two chosen with --interpolate I J): straight lines for an autoencoder, great
  circles (slerp) for a VAE, whose codes concentrate on a shell.
* traversal.png: the mean training code moved from -3 to +3 standard deviations along each
  code dimension (codes of size <= 8) or along the top 8 principal directions of the codes.
* samples.png: decoded random codes from the run's default sampler (as `aelab sample`): the
  prior where the family has one (a VAE's N(0, I), the VampPrior's mixture, a VQ-VAE's
  fitted categorical), else a Gaussian mixture fitted to the training codes.
* neighbours.png: a few test images and their nearest training images by code distance.
* manifold.png (codes of 2 numbers only): an N x N grid (--manifold-size, default 20) of
  images decoded from a regular 2-D lattice of codes: the standard normal's quantiles at
  5%..95% for a VAE (as in Keras's VAE example), for an autoencoder evenly spaced values from
  the 1st to the 99th percentile of each code number over the training codes.
"""

# matplotlib and scikit-learn are imported inside the functions that draw or fit.

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.distributions import Normal

from ..data import dataset_info, load_dataset
# the code statistics are shared with the run handle (aelab.load(run).sample)
from ..data.batches import encode_all, principal_directions, to_float
from ..errors import AelabError
from ..figures import as_display, image_rows, new_figure, save
from ..models import spec
from ..models.vae import slerp
from ..runs import load_run
from ..runtime import resolve_device

TSNE_POINTS = 2000
N_NEIGHBOURS = 8
N_QUERIES = 6
MAX_TRAVERSE = 8  # code dimensions drawn one by one; beyond this, principal directions
TRAVERSE_SIGMAS = 3.0
N_STEPS = 9
MANIFOLD_SIZE = 20  # tiles per side of manifold.png
PRIOR_QUANTILES = (0.05, 0.95)  # the VAE's lattice: N(0, 1) quantiles, as Keras's example
CODE_PERCENTILES = (1.0, 99.0)  # an autoencoder's lattice: this range of the training codes
DECODE_BATCH = 1000


def class_names(dataset: str, *, data_dir=None, options=None) -> list[str]:
    """Names for the labels in legends and tables ([] for a dataset without labels)."""
    return list(dataset_info(dataset, data_dir=data_dir, options=options, log=_quiet)["class_names"])


def _quiet(*_a) -> None:
    pass


def _name(names: list[str], label) -> str:
    """A label's name; unlabelled images (-1) and labels beyond the names have none."""
    i = int(label)
    return names[i] if 0 <= i < len(names) else ("" if i < 0 else str(i))


# --- codes ----------------------------------------------------------------------------


def decode_np(model, z):
    """Codes (n, L) -> images as numpy in [0, 1], as figures show them: (n, H, W) grey or
    (n, H, W, 3) colour."""
    dev = next(model.parameters()).device
    with torch.inference_mode():
        return as_display(model.decode(z.float().to(dev)).float().cpu())


def lerp(a, b, t):
    """Straight line between codes a, b (L,) at fractions t (T,) -> (T, L)."""
    t = t[:, None]
    return (1 - t) * a + t * b


# --- figures --------------------------------------------------------------------------


def _scatter_panel(ax, xy, labels, title: str) -> None:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    labels = np.asarray(labels)
    colours = cmap(labels % 10) if (labels >= 0).any() else "tab:gray"  # unlabelled: one colour
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=2, alpha=0.6, linewidths=0)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(fig, names) -> None:
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    cmap = colormaps["tab10"]
    handles = [Line2D([], [], ls="", marker="o", color=cmap(i), label=n) for i, n in enumerate(names)]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)


def latent_map(codes, labels, names, path: Path, *, tsne_points: int, seed: int,
               title: str = "") -> Path:
    """Test codes (N, L) in 2-D, one colour per class: as they are when L = 2, else PCA of
    all N and t-SNE of a seeded random subsample of tsne_points (0: PCA only)."""
    from matplotlib.figure import Figure

    z, y = codes.numpy(), labels.numpy()
    panels = []
    if z.shape[1] <= 2:
        xy = z if z.shape[1] == 2 else np.c_[z, np.random.default_rng(seed).uniform(-1, 1, len(z))]
        panels.append((xy, y, "codes as they are" + (" (y: jitter)" if z.shape[1] == 1 else "")))
    else:
        panels.append(_pca_panel(z, y))
        if tsne_points > 0:
            panels.append(_tsne_panel(z, y, tsne_points, seed))
    fig = Figure(figsize=(4.2 * len(panels) + 1.4, 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (xy, lab, sub) in zip(axes, panels, strict=True):
        _scatter_panel(ax, xy, lab, sub)
    if names:
        _legend(fig, names[:10])  # tab10: the colours repeat beyond ten classes
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=1 - 1.4 / fig.get_figwidth(), bottom=0.03, top=0.86,
                        wspace=0.05)
    return save(fig, path)


def _pca_panel(z, y):
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2)
    xy = pca.fit_transform(z)  # (N, 2)
    share = pca.explained_variance_ratio_.sum()
    return xy, y, f"PCA, {len(z):,} images ({share:.0%} of code variance)"


def _tsne_panel(z, y, n: int, seed: int):
    from sklearn.manifold import TSNE

    idx = np.random.default_rng(seed).choice(len(z), size=min(n, len(z)), replace=False)
    perplexity = min(30.0, (len(idx) - 1) / 3)  # t-SNE needs perplexity < n
    xy = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(z[idx])
    return xy, y[idx], f"t-SNE, {len(idx):,} random images"


def interpolation_codes(model, test_x, pairs, *, variational: bool):
    """Codes (P, N_STEPS, L) on the path from the code of test image a to that of b, both
    ends included, for each pair (a, b) of indices into test_x in pairs (P, 2): a great circle
    (slerp) for a VAE, a straight line otherwise."""
    path_fn = slerp if variational else lerp
    codes = encode_all(model, test_x[pairs.flatten()]).view(len(pairs), 2, -1)  # (P, 2, L)
    t = torch.linspace(0, 1, N_STEPS)
    return torch.stack([path_fn(za, zb, t) for za, zb in codes])


def interpolation_figure(model, test_x, test_y, names, path: Path, *, variational: bool,
                         seed: int, pair: tuple[int, int] | None = None, title: str = "") -> Path:
    """Rows: test image a, decoded codes from a to b (N_STEPS points incl. ends), image b;
    six seeded pairs, or the one pair (a, b) of test indices given."""
    pairs = _pairs(test_y, 6, seed) if pair is None else torch.tensor([pair])
    paths = interpolation_codes(model, test_x, pairs, variational=variational)
    rows = []
    for (ia, ib), codes in zip(pairs.tolist(), paths, strict=True):
        ends = as_display(to_float(test_x[[ia, ib]]))
        label = f"{_name(names, test_y[ia])} > {_name(names, test_y[ib])}"
        rows.append((label, np.concatenate([ends[:1], decode_np(model, codes), ends[1:]])))
    kind = "slerp" if variational else "linear"
    which = "" if pair is None else f" from test image {pair[0]} to test image {pair[1]}"
    head = f"{kind} interpolation{which}; first and last columns: the test images"
    return image_rows(rows, path, title=f"{title}: {head}" if title else head)


def check_pair(pair, n_test: int, dataset: str) -> None:
    """Both indices of --interpolate I J within the test set, or an error saying its size."""
    if any(not 0 <= i < n_test for i in pair):
        raise AelabError(f"--interpolate {pair[0]} {pair[1]}: the {dataset} test set has "
                         f"{n_test:,} images, so an index must be between 0 and {n_test - 1}")


def _pairs(labels, n: int, seed: int):
    """n seeded pairs of test indices whose labels differ: (n, 2)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n:
        a, b = torch.randint(len(labels), (2,), generator=g).tolist()
        if a != b and (labels[a] != labels[b] or labels[a] < 0):  # unlabelled: any two
            out.append((a, b))
    return torch.tensor(out)


def traversal_figure(model, train_codes, path: Path, title: str = "") -> Path:
    """Rows: the mean code + s * std along one direction, s from -3 to +3."""
    L = train_codes.shape[1]
    mean, dirs, var = principal_directions(train_codes)
    if L <= MAX_TRAVERSE:  # each code dimension by itself
        dirs, std = torch.eye(L, dtype=torch.float64), train_codes.double().std(0)
        names = [f"z{j + 1}" for j in range(L)]
    else:
        dirs, std = dirs[:MAX_TRAVERSE], var[:MAX_TRAVERSE].sqrt()
        names = [f"PC{j + 1}" for j in range(MAX_TRAVERSE)]
    s = torch.linspace(-TRAVERSE_SIGMAS, TRAVERSE_SIGMAS, N_STEPS, dtype=torch.float64)
    rows = [(name, decode_np(model, mean + s[:, None] * sd * d))
            for name, d, sd in zip(names, dirs, std, strict=True)]
    how = "code dimension" if L <= MAX_TRAVERSE else f"principal direction (of {L})"
    head = f"mean code moved -3 to +3 std along each {how}"
    return image_rows(rows, path, title=f"{title}: {head}" if title else head)


SAMPLER_NAMES = {"prior": "the model's prior", "gmm": "a Gaussian mixture fitted to the "
                 "training codes", "gaussian": "a Gaussian fitted to the training codes"}


def samples_figure(run, path: Path, *, seed: int, title: str = "", rows: int = 6,
                   cols: int = 12) -> Path:
    """Decoded random codes from the run's default sampler (LoadedRun.sample: the prior
    where the model has one, else a Gaussian mixture fitted to its training codes)."""
    sampler = run.default_sampler
    imgs = as_display(run.sample(rows * cols, sampler=sampler, seed=seed))
    imgs = imgs.reshape(rows, cols, *imgs.shape[1:])  # (rows, cols, H, W[, 3])
    head = f"decoded random codes from {SAMPLER_NAMES.get(sampler, sampler)} (sampler {sampler})"
    return image_rows([("", r) for r in imgs], path, title=f"{title}: {head}" if title else head)


def nearest_codes(queries, codes, k: int):
    """Indices (Q, k) of the k rows of codes (N, L) nearest to each query (Q, L) in
    Euclidean distance, closest first."""
    dist = torch.cdist(queries.double(), codes.double())  # (Q, N)
    return dist.topk(min(k, len(codes)), largest=False).indices


def neighbours_figure(test_x, test_y, test_codes, train_x, train_y, train_codes, names,
                      path: Path, *, k: int, seed: int, title: str = "") -> Path:
    """Rows: a test image, then its k nearest training images by Euclidean code distance."""
    g = torch.Generator().manual_seed(seed)
    queries = torch.randperm(len(test_x), generator=g)[:N_QUERIES]
    nearest = nearest_codes(test_codes[queries], train_codes, k)  # (Q, k)
    rows = []
    for q, nn_idx in zip(queries.tolist(), nearest, strict=True):
        same = int((train_y[nn_idx] == test_y[q]).sum())
        imgs = as_display(torch.cat([test_x[q : q + 1], train_x[nn_idx]]).float().div(255))
        caption = f"{_name(names, test_y[q])}: {same}/{k}" if test_y[q] >= 0 else ""
        rows.append((caption, np.asarray(imgs)))
    head = f"test image (left) and its {k} nearest training images in code space"
    return image_rows(rows, path, title=f"{title}: {head}" if title else head)


def manifold_axes(train_codes, n: int, *, variational: bool):
    """The lattice's values along z1 and z2, (2, n) float64, increasing: for a VAE the
    standard normal's quantiles at n even probabilities from 5% to 95% (Keras's VAE example);
    for an autoencoder n evenly spaced values from the 1st to the 99th percentile of that
    number over the training codes (N, 2)."""
    if variational:
        q = torch.linspace(*PRIOR_QUANTILES, n, dtype=torch.float64)
        return Normal(0.0, 1.0).icdf(q).expand(2, n)
    q = torch.tensor(CODE_PERCENTILES, dtype=torch.float64) / 100
    lo, hi = torch.quantile(train_codes.double(), q, dim=0)  # (2,) each
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    return lo[:, None] + t * (hi - lo)[:, None]


def lattice(z1, z2):
    """Codes (n * n, 2) in the order the figure tiles them, row by row from the top: z2
    falls down the rows (largest on top, as on a plot), z1 rises along each row. E.g. n = 2:
    (z1[0], z2[1]), (z1[1], z2[1]), (z1[0], z2[0]), (z1[1], z2[0])."""
    g2, g1 = torch.meshgrid(z2.flip(0), z1, indexing="ij")  # (n, n) each
    return torch.stack([g1, g2], dim=-1).reshape(-1, 2)


def manifold_codes(train_codes, n: int, *, variational: bool):
    """The (n * n, 2) codes that manifold.png decodes (manifold_axes, tiled by lattice)."""
    return lattice(*manifold_axes(train_codes, n, variational=variational))


def manifold_figure(model, train_codes, path: Path, *, n: int, variational: bool,
                    title: str = "") -> Path:
    """The n x n decoded lattice as one image, one image pixel per PNG pixel, its rows and
    columns labelled with their code values."""
    z1, z2 = manifold_axes(train_codes, n, variational=variational)
    codes = lattice(z1, z2)
    imgs = np.concatenate([decode_np(model, c) for c in codes.split(DECODE_BATCH)])
    h, w, rest = imgs.shape[1], imgs.shape[2], imgs.shape[3:]  # rest: (3,) for colour
    tiled = imgs.reshape(n, n, h, w, *rest).swapaxes(1, 2).reshape(n * h, n * w, *rest)  # (row, y, col, x)
    ax = _pixel_axes(n * w, n * h, title, _manifold_head(variational))
    grey = dict(cmap="gray", vmin=0, vmax=1) if not rest else {}
    ax.imshow(np.clip(tiled, 0, 1), **grey, interpolation="nearest")
    ax.set_xticks(np.arange(n) * w + (w - 1) / 2, [f"{v:.2f}" for v in z1.tolist()],
                  rotation=90, fontsize=7)
    ax.set_yticks(np.arange(n) * h + (h - 1) / 2, [f"{v:.2f}" for v in z2.flip(0).tolist()],
                  fontsize=7)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    return save(ax.figure, path)


def _manifold_head(variational: bool) -> str:
    if variational:
        lo, hi = PRIOR_QUANTILES
        return f"decoded codes at the prior N(0, I)'s {lo:.0%} to {hi:.0%} quantiles"
    lo, hi = CODE_PERCENTILES
    return f"decoded codes evenly spaced between percentiles {lo:g} and {hi:g} of the training codes"


# manifold.png's margins in pixels (at save's 100 dpi): tick labels and axis names on the
# left and below, two lines of title above; narrow grids are centred in MIN_WIDTH
LEFT, RIGHT, BOTTOM, TOP, MIN_WIDTH = 70, 20, 60, 50, 560


def _pixel_axes(width: int, height: int, title: str, head: str):
    """Axes width x height PNG pixels in a new figure with the margins above."""
    fig_w, fig_h = max(width, MIN_WIDTH) + LEFT + RIGHT, height + BOTTOM + TOP
    fig = new_figure(figsize=(fig_w / 100, fig_h / 100))
    x0 = LEFT + (max(width, MIN_WIDTH) - width) / 2
    ax = fig.add_axes((x0 / fig_w, BOTTOM / fig_h, width / fig_w, height / fig_h))
    fig.suptitle(f"{title}\n{head}" if title else head, fontsize=9)
    return ax


# --- the command ----------------------------------------------------------------------


def explore(run_dir, out: Path | None = None, *, which: str = "best", dataset: str | None = None,
            data_dir=None, device: str = "auto", tsne_points: int = TSNE_POINTS,
            neighbours: int = N_NEIGHBOURS, seed: int = 0, log=print,
            dataset_options: dict | None = None, manifold_size: int | None = None,
            interpolate: tuple[int, int] | None = None) -> list[Path]:
    """Draw the five figures for a run folder's checkpoint, and the manifold grid for a
    2-number code; returns their paths. Without labels the latent map has one colour and the
    neighbours no label agreement. manifold_size None: MANIFOLD_SIZE where the code has 2
    numbers, no grid otherwise; a number asks for the grid, an error for any other code.
    interpolate: two test indices to interpolate between, instead of six seeded pairs."""
    if tsne_points < 0 or neighbours < 1:
        raise AelabError(f"--tsne-points must be >= 0 (got {tsne_points}) and --neighbours "
                         f">= 1 (got {neighbours})")
    if manifold_size is not None and manifold_size < 2:
        raise AelabError(f"--manifold-size must be >= 2 (got {manifold_size})")
    run = load_run(run_dir, which, device=resolve_device(device), data_dir=data_dir)
    grid = _manifold_size(run.model, manifold_size)
    if dataset is None:
        ds, options = run.config.dataset, run.config.dataset_options
    else:
        ds, options = dataset, dataset_options
    out = Path(out) if out is not None else Path(run_dir) / "explore"
    opts = dict(data_dir=data_dir, options=options, log=log)
    train_x, train_y = load_dataset(ds, "train", **opts)
    test_x, test_y = load_dataset(ds, "test", **opts)
    info = dataset_info(ds, **opts)
    if interpolate is not None:
        check_pair(interpolate, len(test_x), info["name"])
    if not info["has_labels"]:
        log(f"{ds} has no labels: the latent map is drawn in one colour, and the nearest "
            "neighbours without label agreement")
    model, names = run.model, list(info["class_names"])
    # NHWC lets oneDNN pick its fast convolution kernels, as the trainer does (layout only)
    model.to(memory_format=torch.channels_last)
    variational = spec(model).sampler == "prior"  # codes ~ N(0, I): sample it, slerp in it
    title = f"{run.config.model} ({Path(run_dir).name}, {info['name']})"
    train_codes, test_codes = encode_all(model, train_x), encode_all(model, test_x)
    paths = [
        latent_map(test_codes, test_y, names, out / "latent_map.png", tsne_points=tsne_points,
                   seed=seed, title=title),
        interpolation_figure(model, test_x, test_y, names, out / "interpolation.png",
                             variational=variational, seed=seed, pair=interpolate, title=title),
        traversal_figure(model, train_codes, out / "traversal.png", title=title),
        samples_figure(run, out / "samples.png", seed=seed, title=title),
        neighbours_figure(test_x, test_y, test_codes, train_x, train_y, train_codes,
                          names, out / "neighbours.png", k=neighbours, seed=seed, title=title),
    ]
    if grid:
        paths.append(manifold_figure(model, train_codes, out / "manifold.png", n=grid,
                                     variational=variational, title=title))
    return paths


def _manifold_size(model, asked: int | None) -> int:
    """Tiles per side of manifold.png, 0 for none: only a 2-number code has the grid."""
    L = int(model.latent_dim)
    if L == 2:
        return MANIFOLD_SIZE if asked is None else asked
    if asked is not None:
        raise AelabError(f"--manifold-size {asked}: this model's code has {L} numbers and the "
                         "manifold grid needs 2 (train one with --latent-dim 2)")
    return 0
