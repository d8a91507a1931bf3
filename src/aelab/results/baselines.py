"""Exact PCA at one code size (a row of the reconstruction table, and `aelab baseline
pca`), and the lines `aelab baseline` prints for PCA and the Wiener filter."""

from __future__ import annotations

from .. import data as data_mod
from .. import pca
from ..apps.denoise import baselines as wiener_baselines
from ..errors import AelabError
from ..evaluate import summarize
from ..represent import KNN_NEIGHBOURS, label_accuracies
from ..runtime import hardware

# `aelab baseline --help`: what each baseline measures
BASELINES_DESCRIPTION = (
    "pca: exact PCA (float64 eigenvectors of the training covariance, cached in the data folder) "
    "with K components: test squared error per image and kNN / linear-probe accuracy of labels "
    "from its codes. wiener: the optimal linear denoising filter fitted on the training set for "
    "--noise, beside the noisy input, on the test inputs `aelab eval --noise` uses: mean "
    "per-image PSNR and squared error per image.")


def label_subsets(n_fit: int | None, n_score: int | None) -> tuple[slice, slice]:
    """The training images the label probes are fitted on, the test images they score."""
    return slice(None, n_fit), slice(None, n_score)


def pca_row(k: int, *, dataset="mnist", data_dir=None, n_fit=None, n_score=None, log=print,
            options: dict | None = None) -> dict:
    """Exact PCA with k components, fitted on all training images (basis cached in the
    data folder): test reconstruction error and label accuracies of its codes (None for a
    dataset without labels)."""
    if not 1 <= k <= 784:
        raise AelabError(f"--latent-dim {k}: PCA of 28x28 images has 1 to 784 components")
    opts = dict(data_dir=data_dir, options=options, log=log)
    tx, ty = data_mod.load_dataset(dataset, "train", **opts)
    sx, sy = data_mod.load_dataset(dataset, "test", **opts)
    basis = pca.dataset_basis(dataset, **opts)
    out = summarize(pca.sse(basis, sx, k))
    out["sse_per_image_std_over_images"] = out.pop("sse_per_image_std")
    out["sse_per_image_std"] = None  # exact PCA has no seeds to vary
    fit, score = label_subsets(n_fit, n_score)
    if (ty >= 0).any():
        out.update(label_accuracies(pca.codes(basis, tx[fit], k), ty[fit].numpy(),
                                    pca.codes(basis, sx[score], k), sy[score].numpy()))
    else:
        out.update(knn_accuracy=None, probe_accuracy=None)
    # k components plus the mean: the numbers needed to encode and decode
    out.update(model="pca", latent_dim=k, params=(k + 1) * 784, epochs=None, train_seconds=None,
               hardware=hardware())
    return out


def pca_report(k: int, shown: str, *, dataset: str, data_dir=None, options=None, n_fit=None) -> str:
    """`aelab baseline pca`: pca_row (label probes fitted on the first `n_fit` training
    codes; None: all), as lines naming the dataset `shown`."""
    r = pca_row(k, dataset=dataset, data_dir=data_dir, n_fit=n_fit, options=options)
    lines = [f"exact PCA, {k} components, fitted on the {shown} training set "
             f"(basis cached in the data folder); {shown} test set:",
             f"  SSE/image {r['sse_per_image']:.3f} (std over images "
             f"{r['sse_per_image_std_over_images']:.3f})  MSE/pixel {r['mse_per_pixel']:.6f}  "
             f"PSNR {r['psnr_db']:.2f} dB"]
    if r["knn_accuracy"] is None:
        lines.append(f"  {shown} has no labels: no kNN or linear-probe accuracy")
    else:
        lines.append(f"  labels from the codes: kNN (k={KNN_NEIGHBOURS}) {100 * r['knn_accuracy']:.2f}%  "
                     f"linear probe {100 * r['probe_accuracy']:.2f}%")
    return "\n".join(lines)


def wiener_report(noise: str, shown: str, *, dataset: str, data_dir=None, options=None) -> str:
    """`aelab baseline wiener`: the noisy input and the Wiener filter for `noise`, as lines
    naming the dataset `shown`."""
    rows = wiener_baselines(noise, dataset, data_dir=data_dir, options=options)
    lines = [f"{shown} test set corrupted by {noise} (the inputs of `aelab eval --noise`); "
             "filter fitted on the training set:"]
    lines += [f"  {r['method']:>15}  PSNR {r['psnr_db']:6.2f} dB (mean per image)  "
              f"SSE/image {r['sse_per_image']:7.2f}" for r in rows]
    return "\n".join(lines)

