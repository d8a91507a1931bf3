"""Run folders: where a run's config, metrics, checkpoints and evaluations live.

One folder per run (`runs/<model>-<timestamp>/` by default):

- `config.json`: the TrainConfig, plus `step` and `fast_refused` (which training step ran
  and why a fast one was not used), written when training starts;
- `metrics.jsonl`: one JSON line per finished epoch;
- `checkpoints/{last,best}.safetensors` (+ `.json`): the checkpoints below;
- `eval.json`, `eval-noise-<spec>.json`: what `aelab eval` wrote (`eval_file_name`).

Checkpoints are self-describing and pickle-free: one safetensors file plus a readable JSON copy.

`checkpoints/last.safetensors` holds the model weights (keys `model.*`), the optimizer's
tensors (`optim.*`) and RNG state (`rng.*`); its header metadata carries the whole JSON
description (model name and arguments, training config, epoch, metrics, data checksum,
package version), so the one file is the single source of truth and is written atomically.
`last.json` beside it is the same JSON for people and tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from . import __version__
from ._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .config import TrainConfig
from .errors import AelabError
from .models import model_record, rebuild_model

FORMAT_VERSION = 1
# Keys of config.json that describe how the run was trained, not what to train.
STEP_KEYS = ("step", "step_detail", "fast_refused")


# --- the folder -----------------------------------------------------------------------


def new_run_dir(model: str, root: Path = Path("runs")) -> Path:
    """runs/<model>-<timestamp>, with -2, -3... if that folder exists already."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    model = model.replace(":", "-").replace("/", "-")  # mymodels:TinyAE -> mymodels-TinyAE
    path, i = root / f"{model}-{stamp}", 1
    while path.exists():
        i += 1
        path = root / f"{model}-{stamp}-{i}"
    return path


def write_config(run_dir: Path, config: TrainConfig, step: dict | None = None) -> None:
    """RUN_DIR/config.json: the config, and (once chosen) the step that trains it."""
    atomic_write_json(Path(run_dir) / "config.json", {**config.to_dict(), **(step or {})})


def read_config(run_dir: Path) -> TrainConfig:
    """The TrainConfig in RUN_DIR/config.json (older folders lack newer keys: defaults)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise AelabError(f"{run_dir} is not a run folder ({path} is missing)")
    d = json.loads(path.read_text())
    return TrainConfig.from_dict({k: v for k, v in d.items() if k not in STEP_KEYS})


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


NOT_RECORDED = "not recorded (trained before aelab kept the machine of each epoch)"


def trained_on(metrics: list[dict]) -> str:
    """The machine(s) a run's epochs were trained on, from its metrics records."""
    seen = list(dict.fromkeys(m.get("hardware") or NOT_RECORDED for m in metrics))
    return "; ".join(seen) if seen else NOT_RECORDED


def write_metrics(run_dir: Path, metrics: list[dict]) -> None:
    atomic_write_text(Path(run_dir) / "metrics.jsonl",
                      "".join(json.dumps(m, sort_keys=True) + "\n" for m in metrics))


def eval_file_name(noise: str | None = None, dataset: str | None = None, refine_steps: int = 0) -> str:
    """eval.json; eval-noise-gaussian-0.3.json for `aelab eval --noise gaussian:0.3`;
    eval-on-kmnist.json (or eval-on-kmnist-noise-...) for another dataset than the run's;
    eval-refine-50.json for `aelab eval --refine-steps 50`."""
    stem = "eval" if dataset is None else f"eval-on-{_safe_name(dataset)}"
    stem += f"-refine-{refine_steps}" if refine_steps else ""
    return f"{stem}.json" if noise is None else f"{stem}-noise-{noise.replace(':', '-')}.json"


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)


def finished_epoch(run_dir: Path) -> int:
    """The last saved epoch of a run folder (0 if none)."""
    meta = Path(run_dir) / "checkpoints" / "last.json"
    return json.loads(meta.read_text())["epoch"] if meta.is_file() else 0


# --- checkpoints ----------------------------------------------------------------------


def _optimizer_to_tensors(sd: dict) -> tuple[dict, dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and plain JSON values."""
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                # a copy: state may be views of shared storage (FlatAdam shares the
                # step counts), which safetensors refuses to write
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().clone(
                    memory_format=torch.contiguous_format)
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_tensors(tensors: dict, info: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in info["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": info["param_groups"]}


def _rng_tensors() -> dict:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    return out


def save_checkpoint(stem: Path, model: torch.nn.Module, meta: dict, optimizer=None) -> None:
    """Write `stem`.safetensors (atomically) and then `stem`.json."""
    # copies: parameters may be views of one shared buffer (FlatAdam), which safetensors
    # refuses to write
    tensors = {f"model.{k}": v.detach().cpu().clone(memory_format=torch.contiguous_format)
               for k, v in model.state_dict().items()}
    if "model" in meta and "source" not in meta["model"]:  # where to import the model from
        meta = dict(meta, model={**meta["model"], **model_record(meta["model"]["name"])})
    meta = dict(meta, format_version=FORMAT_VERSION, aelab_version=__version__,
                torch_version=torch.__version__)
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _optimizer_to_tensors(optimizer.state_dict())
        tensors.update(opt_tensors)
        tensors.update(_rng_tensors())
    blob = st_save(tensors, metadata={"aelab": json.dumps(meta)})
    stem = Path(stem)
    atomic_write_bytes(stem.with_suffix(".safetensors"), blob)
    atomic_write_json(stem.with_suffix(".json"), meta)


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    """Read a checkpoint file: (tensors, meta). Never unpickles anything."""
    path = Path(path)
    if not path.is_file():
        raise AelabError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["aelab"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:  # safetensors raises its own error types; all mean 'unreadable'
        raise AelabError(
            f"{path} is not a readable aelab checkpoint ({type(e).__name__}: {e}); "
            "it may be truncated or from another tool"
        ) from None
    return tensors, meta


def model_state(tensors: dict) -> dict:
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def restore_training_state(tensors: dict, meta: dict, model, optimizer) -> None:
    """Load weights, optimizer state and RNG state saved by save_checkpoint."""
    model.load_state_dict(model_state(tensors))
    optimizer.load_state_dict(_optimizer_from_tensors(tensors, meta["optimizer"]))
    _match_param_layouts(optimizer)
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def _match_param_layouts(optimizer) -> None:
    """Give each restored state tensor its parameter's memory layout. Checkpoints store
    contiguous tensors, but a channels_last model's parameters are NHWC, and fused
    optimizers walk parameter and state memory in step: mismatched strides would pair
    the wrong elements."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape:
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


@dataclass
class LoadedRun:
    """A trained model rebuilt from a run folder, with its training config and checkpoint meta."""

    model: torch.nn.Module
    config: TrainConfig
    meta: dict
    run_dir: Path


def checkpoint_path(run_dir: Path, which: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{which}.safetensors"


def load_run(run_dir, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of a run folder from its checkpoint alone (`best` or `last`)."""
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise AelabError(f"checkpoint must be 'best' or 'last', not {which!r}")
    path = checkpoint_path(run_dir, which)
    if not path.is_file():
        hint = "is this a run folder written by `aelab train`?"
        if not run_dir.is_dir():
            raise AelabError(f"run folder {run_dir} does not exist")
        raise AelabError(f"no checkpoint {which!r} in {run_dir} ({path} is missing); {hint}")
    tensors, meta = read_checkpoint(path)
    model = rebuild_model(meta["model"])  # imports the model's code again; never unpickles
    try:
        model.load_state_dict(model_state(tensors))
    except RuntimeError as e:
        raise AelabError(f"{path}: weights do not fit model {meta['model']['name']!r}: {e}") from None
    model.to(device).eval()
    return LoadedRun(model, TrainConfig.from_dict(meta["config"]), meta, run_dir)
