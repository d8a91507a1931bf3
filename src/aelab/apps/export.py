"""Export a run's encoder and decoder to ONNX, for runtimes without PyTorch.

`encoder.onnx`: input `image` (B, C, H, W) float32 in [0, 1] -> output `code` (B, D).
`decoder.onnx`: input `code` (B, D) -> output `image` (B, C, H, W) in [0, 1].
(C, H, W) is the run's image shape ((1, 28, 28) for MNIST), kept in the files' metadata.
The batch axis is dynamic. Each file carries the model name, code size, run and package
version in its metadata, so it describes itself. onnx is imported inside the functions
that need it: it is an optional extra, and slow to import.
"""

from __future__ import annotations

import inspect
import io
import warnings
from pathlib import Path

import torch

from .. import __version__
from .._io import atomic_write_bytes
from ..errors import AelabError
from ..runs import load_run

FORMATS = ("onnx",)
DEFAULT_OPSET = 17  # understood by every onnxruntime of the last few years


def _halves(model):
    """The encoder and decoder as modules whose forward is `encode` / `decode`."""
    class Half(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.model, self.fn = model, fn

        def forward(self, x):
            return getattr(self.model, self.fn)(x)

    return Half("encode").eval(), Half("decode").eval()


def _export_kwargs() -> dict:
    """Use the TorchScript exporter: it needs only `onnx`, while the dynamo exporter (the
    default since torch 2.9) needs `onnxscript` too. Torch before 2.5 has no `dynamo` flag."""
    params = inspect.signature(torch.onnx.export).parameters
    return {"dynamo": False} if "dynamo" in params else {}


def onnx_bytes(module, example, in_name: str, out_name: str, opset: int) -> bytes:
    """One module as an ONNX model with a dynamic batch axis on its input and output."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # torch 2.9+ warns that this exporter is deprecated; the reason we use it is above
        warnings.filterwarnings("ignore", message=".*(legacy TorchScript|will be removed).*")
        with torch.no_grad():
            torch.onnx.export(module, (example,), buf, input_names=[in_name], output_names=[out_name],
                              dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True, **_export_kwargs())
    return buf.getvalue()


def _with_metadata(blob: bytes, meta: dict) -> bytes:
    import onnx

    proto = onnx.load_model_from_string(blob)
    onnx.checker.check_model(proto)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    return proto.SerializeToString()


def onnx_error() -> type:
    import onnx.checker

    return onnx.checker.ValidationError


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise AelabError("ONNX export needs the export extra: pip install 'aelab[export]'") from None


def export_onnx(run_dir, out_dir=None, which: str = "best", opset: int = DEFAULT_OPSET) -> list[Path]:
    """Write encoder.onnx and decoder.onnx for a run; returns their paths."""
    _require_onnx()
    run = load_run(run_dir, which, device="cpu")
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / "onnx"
    dim = int(run.model.latent_dim)
    meta = {"aelab_model": run.config.model, "latent_dim": dim, "run": Path(run_dir).resolve().name,
            "checkpoint": which, "epoch": run.meta.get("epoch"), "aelab_version": __version__,
            "image_shape": list(run.image_shape)}
    encoder, decoder = _halves(run.model)
    parts = [("encoder", encoder, torch.rand(2, *run.image_shape), "image", "code"),
             ("decoder", decoder, torch.randn(2, dim), "code", "image")]
    paths = []
    for name, module, example, in_name, out_name in parts:
        try:
            blob = _with_metadata(onnx_bytes(module, example, in_name, out_name, opset),
                                  {**meta, "part": name})
        except (RuntimeError, ValueError, onnx_error()) as e:
            raise AelabError(f"exporting the {name} of {run_dir} with opset {opset} failed "
                             f"({str(e).strip().splitlines()[0]}); "
                             f"the default --opset {DEFAULT_OPSET} is known to work") from None
        atomic_write_bytes(out_dir / f"{name}.onnx", blob)
        paths.append(out_dir / f"{name}.onnx")
    return paths
