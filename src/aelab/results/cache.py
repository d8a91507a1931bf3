"""What a result group measured once and reuses: a JSON file per measurement, kept with
the key it was computed for, and a run's own eval file when it scored the `best`
checkpoint with the settings asked for (a VAE's bound or code refinement takes minutes)."""

from __future__ import annotations

import json
from pathlib import Path

from .._io import atomic_write_json
from ..evaluate import REFINE_LR
from ..evaluate import evaluate_run
from ..runs import eval_file_name
from ..runtime import hardware


def read_cache(path: Path, key, *, key_field: str = "key", value_field: str = "value"):
    """The value kept in `path` for `key`, else None (no file, or one for another key).
    The field names are those of files written before this helper: keep them readable."""
    if not Path(path).is_file():
        return None
    old = json.loads(Path(path).read_text())
    return old.get(value_field) if old.get(key_field) == key else None


def write_cache(path: Path, key, value, *, key_field: str = "key", value_field: str = "value") -> None:
    atomic_write_json(path, {key_field: key, value_field: value})


def cached(path: Path, key, compute, **fields):
    """compute() once per `key`, kept in `path` as JSON."""
    value = read_cache(path, key, **fields)
    if value is None:
        value = compute()
        write_cache(path, key, value, **fields)
    return value


def on_this_machine(rows: list[dict]) -> list[dict]:
    """Rows computed here and now, each naming this machine."""
    here = hardware()
    return [{**r, "hardware": here} for r in rows]


def _reused_eval(run_dir: Path, name: str, **want) -> dict | None:
    """RUN_DIR/NAME (an eval file) if it scored the `best` checkpoint's current epoch with
    these settings (key=value as written in it), else None."""
    path = Path(run_dir) / name
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    best = json.loads((Path(run_dir) / "checkpoints" / "best.json").read_text())["epoch"]
    ok = old.get("checkpoint") == "best" and old.get("epoch") == best
    return old if ok and all(old.get(k) == v for k, v in want.items()) else None


def best_eval(run_dir: Path, *, data_dir=None, device: str = "auto", refine: int = 0,
              noise: str | None = None, iw_samples: int | None = None, log=None) -> dict:
    """evaluate_run of the `best` checkpoint with these settings, reused from its eval file
    when that scored the same checkpoint epoch the same way. `log`: evaluation progress
    (default: quiet)."""
    want = {"noise": noise, "refine_lr": REFINE_LR if refine else None}
    if iw_samples is not None:
        want["iw_samples"] = iw_samples
    old = _reused_eval(run_dir, eval_file_name(noise, refine_steps=refine), **want)
    if old is not None:
        return old
    if log is not None and iw_samples is not None:  # the bound takes minutes: say what runs
        log(f"{run_dir}: likelihood bound with {iw_samples} importance samples per test image")
    return evaluate_run(run_dir, "best", data_dir=data_dir, device=device, refine_steps=refine,
                        noise=noise, iw_samples=iw_samples, log=log or (lambda *_: None))
