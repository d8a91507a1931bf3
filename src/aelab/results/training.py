"""Training the presets a result group needs: one run folder per preset and seed, a
finished run reused, an interrupted one resumed, a changed preset refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..config import TrainConfig
from ..errors import AelabError
from ..presets import PRESETS
from ..runs import finished_epoch, read_config
from ..train import resume, train

# --quick: every code path on a CI-sized budget (its outputs never replace docs/)
QUICK = {"epochs": 1, "limit": 256, "val_split": 1000}


def preset_config(preset: str, seed: int, quick: bool, device: str | None = None) -> TrainConfig:
    """The TrainConfig of one seed of a preset (shrunk to QUICK with `quick`)."""
    if preset not in PRESETS:
        raise AelabError(f"no preset {preset!r} in aelab.presets; known: {', '.join(sorted(PRESETS))}")
    d = {**PRESETS[preset], "seed": seed, "figure_every": 1000}  # one figure, the last epoch
    if quick:
        d.update(QUICK, val_split=min(d.get("val_split", 0), QUICK["val_split"]))
    if device is not None:
        d["device"] = device
    return TrainConfig.from_dict(d)


def same_config(run_dir: Path, config: TrainConfig) -> bool:
    """Whether RUN_DIR was trained with `config` (compared as JSON values; any device).
    Folders from before a config key existed read it as its default."""
    old = read_config(run_dir).replace(device=config.device).to_dict()
    return json.loads(json.dumps(old)) == json.loads(json.dumps(config.to_dict()))


def ensure_trained(config: TrainConfig, run_dir: Path, *, force: bool, data_dir=None, log=print) -> Path:
    """Train `config` into `run_dir`, reuse it when finished, resume it when interrupted."""
    run_dir = Path(run_dir)
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    if (run_dir / "config.json").is_file():
        if not same_config(run_dir, config):
            raise AelabError(f"{run_dir} was trained with other settings than its preset now has; "
                             "retrain it with `aelab results --force` (or move the folder away)")
        done = finished_epoch(run_dir)
        if done >= config.epochs:
            log(f"{run_dir}: finished ({done} epochs), reused")
            return run_dir
        if done == 0:  # stopped inside its first epoch: nothing worth keeping
            shutil.rmtree(run_dir)
        else:
            log(f"{run_dir}: resuming after epoch {done} of {config.epochs}")
            return resume(run_dir, device=config.device, data_dir=data_dir, log=log).run_dir
    log(f"{run_dir}: training {config.model} for {config.epochs} epochs")
    return train(config, run_dir, data_dir=data_dir, log=log).run_dir


