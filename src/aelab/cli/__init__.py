"""The `aelab` command: a thin shell over the package's Python API, and the only place in
the package that parses arguments. One module per command group:

- train.py: data, train, eval, reconstruct, demo; sample.py: sample;
- explore.py: explore, anomaly;
- results.py: results, baseline;
- serve.py: serve; export.py: export; bench.py: bench.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import AelabError
from ..runtime import prepare_process
from ..train import TrainingInterrupted
from . import bench, explore, export, results, sample, serve, train
from .common import add_common_args

__all__ = ["add_common_args", "build_parser", "main"]

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
GROUPS = (train, sample, bench, serve, export, explore, results)  # the order of `aelab --help`


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="aelab", description="An autoencoder lab for MNIST-family images.")
    ap.add_argument("--version", action="version", version=f"aelab {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        prepare_process()  # before any thread starts: see aelab.runtime
        return args.func(args)
    except AelabError as e:
        print(f"aelab {args.command}: error: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED if isinstance(e, TrainingInterrupted) else EXIT_ERROR
    except KeyboardInterrupt:
        print(f"aelab {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
