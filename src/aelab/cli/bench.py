"""aelab bench: training throughput against the seed's data path."""

from __future__ import annotations

import argparse

from ..apps import bench
from ..errors import AelabError
from .common import add_common_args, json_object


def add_commands(sub) -> None:
    p = sub.add_parser("bench", help="training throughput against the seed's data path",
                       description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["linear", "conv"],
                   help="models to measure (default: linear conv)")
    p.add_argument("--pairs", type=int, default=3, help="A/B pairs per model (default: 3)")
    p.add_argument("--epochs", type=int, default=1,
                   help="whole epochs per run, all timed (default: 1)")
    p.add_argument("--limit", type=int, default=None, help="training images (default: all 60,000)")
    p.add_argument("--aelab-options", default="{}",
                   help='extra TrainConfig fields for the aelab side as JSON, e.g. '
                   '\'{"precision": "bf16"}\' or \'{"fast": false}\' (default: {})')
    add_common_args(p, device_help="device for both sides (default: cpu)")
    p.set_defaults(func=cmd_bench, device="cpu")


def cmd_bench(a) -> int:
    json_object(a.aelab_options, "--aelab-options", '{"fast": false}')
    if a.pairs < 1 or a.epochs < 1:
        raise AelabError("--pairs and --epochs must be at least 1")
    return bench.run(a)
