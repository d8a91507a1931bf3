"""aelab results and aelab baseline: the results table, and exact PCA at one code size."""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_json, atomic_write_text
from ..apps import denoise
from ..apps import results as R
from ..apps import tasks as T
from ..data.registry import is_aelab_checkout
from ..errors import AelabError
from .common import add_common_args, add_dataset_args, dataset_arg


RESULTS_FOLDER = Path("aelab-results")  # the default --out outside an aelab checkout


def results_folders(runs_root: Path | None, out: Path | None, quick: bool) -> tuple[Path, Path]:
    """(RUNS_ROOT, OUT): the flags, else runs/results[-quick] in this folder, and for OUT
    RUNS_ROOT/docs with --quick (never docs/), docs/ at the root of an aelab checkout, else
    ./aelab-results (a folder of its own: nobody's docs/ gets overwritten)."""
    root = runs_root or Path("runs/results-quick" if quick else "runs/results")
    if out is None and quick:
        out = root / "docs"
    elif out is None:
        out = Path("docs") if is_aelab_checkout(Path(".")) else RESULTS_FOLDER
    return root, out


def cmd_results(a) -> int:
    root, out = results_folders(a.runs_root, a.out, a.quick)
    print(f"runs in {root}/; RESULTS.md and the groups' JSON files in {out}/")
    groups, rows_only = R.split_only(a.only)
    common = dict(root=root, quick=a.quick, force=a.force, data_dir=a.data_dir, device=a.device)
    for group in groups:
        print(f"=== {group}")
        if group == "reconstruction":
            rows = R.collect(**common, only=rows_only, previous=R.read_rows(out, group))
            R.write_reconstruction(rows, out, data_dir=a.data_dir, device=a.device or "auto")
            for r in rows:
                sse = "not run yet" if r["missing"] else R.sse_cell(r)
                print(f"{r['name']:>18}  test SSE/image {sse}")
        else:
            rows = getattr(T, f"{group}_rows")(**common)
            atomic_write_json(out / R.JSON_FILES[group], rows)
            print(getattr(T, f"{group}_section")(rows))
    sections = {}
    for group in R.GROUPS:
        rows = R.read_rows(out, group)
        if not rows:
            continue
        if group == "reconstruction":
            sections[group] = R.reconstruction_section([r for r in rows if "preset" in r], a.quick)
        else:
            sections[group] = getattr(T, f"{group}_section")(rows)
    atomic_write_text(out / "RESULTS.md", R.results_document(sections, a.quick))
    written = ", ".join(str(out / R.JSON_FILES[g]) for g in groups)
    print(f"wrote {out / 'RESULTS.md'} and {written}")
    return 0


def cmd_baseline(a) -> int:
    if a.method == "wiener":
        return _wiener(a)
    if a.noise is not None:
        raise AelabError("--noise is for `aelab baseline wiener`; PCA scores clean images")
    n_fit, n_score = (None, None) if a.represent_fit is None else (a.represent_fit, None)
    r = R.pca_row(a.latent_dim, dataset=dataset_arg(a.dataset), data_dir=a.data_dir, n_fit=n_fit,
                  n_score=n_score, options=a.dataset_options)
    print(f"exact PCA, {a.latent_dim} components, fitted on the {a.dataset} training set "
          f"(basis cached in the data folder); {a.dataset} test set:")
    print(f"  SSE/image {r['sse_per_image']:.3f} (std over images {r['sse_per_image_std_over_images']:.3f})  "
          f"MSE/pixel {r['mse_per_pixel']:.6f}  PSNR {r['psnr_db']:.2f} dB")
    if r["knn_accuracy"] is None:
        print(f"  {a.dataset} has no labels: no kNN or linear-probe accuracy")
    else:
        print(f"  labels from the codes: kNN (k=5) {100 * r['knn_accuracy']:.2f}%  "
              f"linear probe {100 * r['probe_accuracy']:.2f}%")
    return 0


def _wiener(a) -> int:
    if a.noise is None:
        raise AelabError("aelab baseline wiener needs --noise, e.g. --noise gaussian:0.3")
    rows = denoise.baselines(a.noise, dataset_arg(a.dataset), data_dir=a.data_dir,
                             options=a.dataset_options)
    print(f"{a.dataset} test set corrupted by {a.noise} (the inputs of `aelab eval --noise`); "
          "filter fitted on the training set:")
    for r in rows:
        print(f"  {r['method']:>15}  PSNR {r['psnr_db']:6.2f} dB (mean per image)  "
              f"SSE/image {r['sse_per_image']:7.2f}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "results", help="train and evaluate the results groups; write RESULTS.md",
        description="Four groups, each with its simple baseline measured in the same run and "
        "the published figures beside it: reconstruction (the presets of the reconstruction "
        "table, exact PCA, Hinton & Salakhutdinov 2006), vae (likelihood on binarized MNIST, "
        "Bernoulli mixtures, Burda et al. 2016), anomaly (one-class and leave-one-out, exact "
        "PCA, Deep SVDD), denoise (five noises, the Wiener filter). Runs go to "
        "RUNS_ROOT/<preset>-seed<k>/ (finished runs reused, interrupted ones resumed); each "
        "group writes its JSON file, and RESULTS.md is rebuilt from all of them. "
        "Reconstruction rows: " + ", ".join(r.name for r in R.ROWS))
    p.add_argument("--quick", action="store_true",
                   help="CI-sized: 1 epoch on 256 images, label probes on 2,000/1,000 codes; "
                   "writes to runs/results-quick/ and never to docs/ (default: off)")
    p.add_argument("--only", nargs="+", default=None, metavar="GROUP|ROW",
                   help=f"run only these groups ({', '.join(R.GROUPS)}), or only these rows of "
                   "the reconstruction table (its other rows appear if already finished) "
                   "(default: every group)")
    p.add_argument("--force", action="store_true",
                   help="retrain the selected rows' runs even if finished (default: reuse them)")
    p.add_argument("--runs-root", type=Path, default=None,
                   help="where the run folders go (default: runs/results, or "
                   "runs/results-quick with --quick)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for RESULTS.md, the groups' JSON files and img/ (default: docs/ "
                   "at the root of an aelab checkout, as `make results` runs; elsewhere "
                   f"./{RESULTS_FOLDER}; RUNS_ROOT/docs with --quick)")
    add_common_args(p, device_help="where to train and evaluate (default: each preset's own, auto)")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("baseline", help="exact PCA at a code size, or the Wiener filter for a noise",
                       description="pca: exact PCA (float64 eigenvectors of the training "
                       "covariance, cached in the data folder) with K components: test squared "
                       "error per image and kNN / linear-probe accuracy of labels from its codes. "
                       "wiener: the optimal linear denoising filter fitted on the training set "
                       "for --noise, beside the noisy input, on the test inputs `aelab eval "
                       "--noise` uses: mean per-image PSNR and squared error per image.")
    p.add_argument("method", choices=["pca", "wiener"], help="the baseline")
    p.add_argument("--noise", default=None, metavar="SPEC",
                   help="wiener: the corruption, gaussian:SIGMA or masking:P (required there)")
    p.add_argument("--latent-dim", type=int, default=30, help="number of components (default: 30)")
    add_dataset_args(p, "mnist", "fit on its training split, score its test split")
    p.add_argument("--represent-fit", type=int, default=None, metavar="N",
                   help="fit the label probes on the first N training codes (default: all)")
    add_common_args(p, device=False)
    p.set_defaults(func=cmd_baseline)
