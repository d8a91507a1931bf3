"""aelab export: a run's encoder and decoder as ONNX files."""

from __future__ import annotations

from pathlib import Path

from ..apps import export
from ..errors import AelabError
from .common import add_checkpoint_arg, require_extra


def add_commands(sub) -> None:
    p = sub.add_parser(
        "export", help="export a run's encoder and decoder (ONNX)",
        description="Write encoder.onnx (image (B,1,28,28) in [0,1] -> code (B,D)) and "
        "decoder.onnx (code -> image) with a dynamic batch axis, for onnxruntime and others.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder written by `aelab train`")
    p.add_argument("--format", required=True, choices=export.FORMATS, help="file format (required; onnx)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for the files (default: RUN_DIR/onnx)")
    add_checkpoint_arg(p)
    p.add_argument("--opset", type=int, default=export.DEFAULT_OPSET,
                   help=f"ONNX opset version (default: {export.DEFAULT_OPSET})")
    p.set_defaults(func=cmd_export)


def cmd_export(a) -> int:
    require_extra("export")
    if a.format not in export.FORMATS:  # argparse checks too; this guards calls from Python
        raise AelabError(f"format {a.format!r}: choose one of {', '.join(export.FORMATS)}")
    for path in export.export_onnx(a.run_dir, a.out, a.checkpoint, a.opset):
        print(f"wrote {path}")
    return 0
