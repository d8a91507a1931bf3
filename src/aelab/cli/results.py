"""aelab results and aelab baseline: the result groups of aelab.results, and one baseline alone."""

from __future__ import annotations

from pathlib import Path

from .. import results
from ..apps.classifier import CLASSIFIER_FILE, CLASSIFIER_SHA256, EPOCHS, SEED, train_classifier
from ..errors import AelabError
from .common import add_common_args, add_dataset_args, dataset_arg


def cmd_results(a) -> int:
    root, out = results.output_folders(a.runs_root, a.out, a.quick)
    results.run(a.only, out, root=root, quick=a.quick, force=a.force, data_dir=a.data_dir, device=a.device)
    return 0


def cmd_baseline(a) -> int:
    if a.method == "classifier":
        return _classifier(a)
    data = dict(dataset=dataset_arg(a.dataset), data_dir=a.data_dir, options=a.dataset_options)
    if a.method == "pca":
        if a.noise is not None:
            raise AelabError("--noise is for `aelab baseline wiener`; PCA scores clean images")
        print(results.pca_report(a.latent_dim, a.dataset, n_fit=a.represent_fit, **data))
    elif a.noise is None:
        raise AelabError("aelab baseline wiener needs --noise, e.g. --noise gaussian:0.3")
    else:
        print(results.wiener_report(a.noise, a.dataset, **data))
    return 0


def _classifier(a) -> int:
    if a.noise is not None or a.dataset_options or (a.dataset or "mnist") != "mnist":
        raise AelabError("aelab baseline classifier trains on MNIST alone and takes no --noise "
                         "or --dataset")
    info = train_classifier(a.out, data_dir=a.data_dir, epochs=a.epochs, seed=a.seed)
    print(f"test accuracy {info['test_accuracy']:.2%} in {info['seconds']:.0f} s, "
          f"{info['params']:,} parameters")
    print(f"wrote {a.out} ({info['bytes']:,} bytes) and its .json; sha256 {info['sha256']}")
    if info["sha256"] == CLASSIFIER_SHA256:
        print(f"identical to the shipped weights, {CLASSIFIER_FILE}")
    else:  # another CPU, torch, thread count or recipe: another feature network
        print(f"not the shipped weights (sha256 {CLASSIFIER_SHA256[:12]}...): Fréchet distances "
              "with it are not comparable to those in aelab's docs/RESULTS.md; to replace them, "
              f"copy the file over {CLASSIFIER_FILE} and set CLASSIFIER_SHA256 in "
              "aelab/apps/classifier.py")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("results", help="train and evaluate the results groups; write RESULTS.md",
                       description=results.description())
    p.add_argument("--quick", action="store_true", help="CI-sized: 1 epoch on 256 images, label probes "
                   "on 2,000/1,000 codes; writes to runs/results-quick/ and never to docs/ (default: off)")
    p.add_argument("--only", nargs="+", default=None, metavar="GROUP|ROW",
                   help=f"run only these groups ({', '.join(results.GROUPS)}), or only these rows of the "
                   "reconstruction table (its other rows appear if already finished) (default: every group)")
    p.add_argument("--force", action="store_true", help="retrain the selected rows' runs even if finished "
                   "(default: reuse them)")
    p.add_argument("--runs-root", type=Path, default=None, help="where the run folders go "
                   "(default: runs/results, or runs/results-quick with --quick)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for RESULTS.md, the groups' JSON files and img/ (default: docs/ at the root "
                   f"of an aelab checkout, as `make results` runs; elsewhere ./{results.RESULTS_FOLDER}; "
                   "RUNS_ROOT/docs with --quick)")
    add_common_args(p, device_help="where to train and evaluate (default: each preset's own, auto)")
    p.set_defaults(func=cmd_results)
    p = sub.add_parser("baseline", help="exact PCA at a code size, the Wiener filter for a noise, "
                       "or retrain the MNIST classifier of the Fréchet distance",
                       description=results.BASELINES_DESCRIPTION + " classifier: retrain aelab's "
                       "MNIST classifier, whose features the Fréchet distance compares; prints its "
                       "test accuracy and sha256.")
    p.add_argument("method", choices=["pca", "wiener", "classifier"], help="the baseline")
    p.add_argument("--noise", default=None, metavar="SPEC",
                   help="wiener: the corruption, gaussian:SIGMA or masking:P (required there)")
    p.add_argument("--latent-dim", type=int, default=30, help="number of components (default: 30)")
    add_dataset_args(p, "mnist", "fit on its training split, score its test split")
    p.add_argument("--represent-fit", type=int, default=None, metavar="N",
                   help="fit the label probes on the first N training codes (default: all)")
    p.add_argument("--out", type=Path, default=Path("mnist_classifier.safetensors"), metavar="PATH",
                   help="classifier: where to write the weights, a .json beside them "
                   "(default: ./mnist_classifier.safetensors)")
    p.add_argument("--epochs", type=int, default=EPOCHS,
                   help=f"classifier: training epochs (default: {EPOCHS})")
    p.add_argument("--seed", type=int, default=SEED, help=f"classifier: random seed (default: {SEED})")
    add_common_args(p, device=False)
    p.set_defaults(func=cmd_baseline)
