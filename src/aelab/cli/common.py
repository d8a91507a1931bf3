"""What every command group shares: the --data-dir/--device flags, worded the same."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import DEVICES

CHECKPOINTS = ("best", "last")


def add_common_args(p: argparse.ArgumentParser, device: bool = True,
                    device_help: str = "where to compute (default: auto = cuda, else mps, else cpu)"
                    ) -> None:
    """--data-dir and --device, worded the same for every command."""
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset folder (default: $AELAB_DATA_DIR, else ./data)")
    if device:
        p.add_argument("--device", default=None, choices=DEVICES, help=device_help)


def add_checkpoint_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="best", choices=CHECKPOINTS,
                   help="which checkpoint (default: best)")
