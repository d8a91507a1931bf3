"""What every command group shares: --data-dir, --device, --checkpoint and --dataset,
worded the same everywhere."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from ..config import DEVICES
from ..data.registry import is_registered, registered_names
from ..errors import AelabError
from ..models import MODELS

CHECKPOINTS = ("best", "last")
DATA_DIR_DEFAULT = ("$AELAB_DATA_DIR, else ./data at the root of an aelab checkout, else a "
                    "per-user folder such as ~/.local/share/aelab")


# Commands whose packages are an optional extra (pyproject.toml): command -> (extra, what
# the message calls it, the modules the command imports from it).
EXTRAS = {
    "serve": ("serve", "server", ("fastapi", "uvicorn", "orjson")),
    "export": ("export", "export", ("onnx",)),
}


def require_extra(command: str) -> None:
    """Stop `aelab COMMAND` with the line that installs its extra when one of the extra's
    packages cannot be imported (imported here: the command needs them next anyway)."""
    extra, what, modules = EXTRAS[command]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise AelabError(f"{e.name or module} is not installed; aelab {command} needs the "
                             f"{what} extra: pip install 'aelab[{extra}]'") from None


def add_common_args(p: argparse.ArgumentParser, device: bool = True,
                    device_help: str = "where to compute (default: auto = cuda, else mps, else cpu)"
                    ) -> None:
    """--data-dir and --device, worded the same for every command."""
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"dataset folder (default: {DATA_DIR_DEFAULT})")
    if device:
        p.add_argument("--device", default=None, choices=DEVICES, help=device_help)


def add_checkpoint_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="best", choices=CHECKPOINTS,
                   help="which checkpoint (default: best)")


def _option_value(text: str):
    """'true' -> True, '3' -> 3, '0.5' -> 0.5, anything else stays a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class KeyValues(argparse.Action):
    """--dataset-option KEY=VALUE, repeatable, collected into one dict."""

    def __call__(self, parser, namespace, value, option_string=None):
        key, sep, text = value.partition("=")
        if not sep or not key:
            parser.error(f"{option_string} {value!r}: give KEY=VALUE, e.g. transpose=true")
        options = dict(getattr(namespace, self.dest) or {})
        options[key.strip()] = _option_value(text.strip())
        setattr(namespace, self.dest, options)


class DatasetOption(argparse.Action):
    """A flag that is short for one --dataset-option: `--resize 32x32` is
    `--dataset-option resize=32x32`, `--grey` is `--dataset-option grey=true`."""

    def __init__(self, option_strings, dest, key: str, **kwargs):
        self.key = key
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        options = dict(getattr(namespace, self.dest) or {})
        options[self.key] = value if isinstance(value, str) else True  # --grey takes no value
        setattr(namespace, self.dest, options)


def add_shape_flags(p: argparse.ArgumentParser) -> None:
    """--resize HxW and --grey, for a dataset given by path (see docs/data.md)."""
    p.add_argument("--resize", dest="dataset_options", action=DatasetOption, key="resize",
                   metavar="HxW", help="resize every image of a dataset given by path to HxW, "
                   "e.g. 32x32 (the same as --dataset-option resize=HxW; default: keep sizes)")
    p.add_argument("--grey", dest="dataset_options", action=DatasetOption, key="grey", nargs=0,
                   help="convert a dataset given by path to grey (the same as --dataset-option "
                   "grey=true; default: keep its colour)")


def add_dataset_args(p: argparse.ArgumentParser, default: str | None, what: str,
                     default_text: str | None = None) -> None:
    """--dataset NAME|PATH and --dataset-option KEY=VALUE, worded the same everywhere."""
    names = ", ".join(registered_names())
    p.add_argument("--dataset", default=default, metavar="NAME|PATH",
                   help=f"{what}: a registered name ({names}) or a path: a folder of MNIST-named "
                   "IDX files (KMNIST, EMNIST, QMNIST), an .npz file, or a folder of images "
                   f"(default: {default_text or default})")
    p.add_argument("--dataset-option", dest="dataset_options", action=KeyValues, default=None,
                   metavar="KEY=VALUE",
                   help="an option for a dataset given by path, e.g. transpose=true for EMNIST; "
                   "repeatable (default: none, or the aelab-dataset.json card beside the files)")
    add_shape_flags(p)


def dataset_arg(dataset: str | None) -> str | None:
    """A --dataset value: a registered name as it is, a path made absolute (so that a run
    records where its data is, whatever folder it is evaluated from later)."""
    if dataset is None or is_registered(dataset):
        return dataset
    return str(Path(dataset).expanduser().absolute())


def model_name(value: str) -> str:
    """argparse type of MODEL: a registered name, or a module:attr reference to import."""
    if value in MODELS or ":" in value:
        return value
    raise argparse.ArgumentTypeError(
        f"unknown model {value!r}; choose one of {', '.join(sorted(MODELS))}, or give your own "
        "as module:attr (e.g. mymodels:TinyAE for class TinyAE in ./mymodels.py)")


def json_object(text: str, flag: str, example: str) -> dict:
    """A flag's JSON object value, or an AelabError saying what is wrong with it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise AelabError(f"{flag} is not valid JSON ({e}); e.g. '{example}'") from None
    if not isinstance(value, dict):
        raise AelabError(f"{flag} must be a JSON object, e.g. '{example}'")
    return value
