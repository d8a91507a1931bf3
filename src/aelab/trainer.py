"""The trainer: the seed's loop (MSE, Adam, batch 64, 13 epochs), fast and restartable.

The whole dataset lives on the training device as one uint8 tensor; each batch is a
shuffled index into it, converted to float on the fly. There is no per-sample Dataset,
PIL or ToTensor step, and no host synchronisation inside an epoch.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F

from . import data as data_mod
from ._io import atomic_write_json, atomic_write_text
from .checkpoint import checkpoint_path, read_checkpoint, restore_training_state, save_checkpoint
from .config import TrainConfig
from .errors import AelabError
from .evaluate import reconstruction_sse, to_float
from .figures import image_rows, loss_curve
from .models import build_model, count_parameters


class TrainingDiverged(AelabError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(AelabError):
    """Ctrl-C: the last finished epoch is saved."""


@dataclass
class TrainResult:
    run_dir: Path
    metrics: list[dict]
    model: torch.nn.Module


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AelabError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise AelabError("--device mps: Apple's MPS backend is not available; use --device cpu")
    return torch.device(name)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Each epoch's shuffle depends only on (seed, epoch), so a resumed run reshuffles
    exactly as an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def new_run_dir(model: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, i = root / f"{model}-{stamp}", 1
    while path.exists():
        i += 1
        path = root / f"{model}-{stamp}-{i}"
    return path


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def figure_digits(test_labels: torch.Tensor) -> torch.Tensor:
    """Indices of the first test image of each digit: the same ten digits in every figure."""
    labels = test_labels.cpu()
    return torch.stack([(labels == d).nonzero()[0, 0] for d in labels.unique()])


class Trainer:
    """Trains one model on one device; knows nothing about which model it is."""

    def __init__(self, config: TrainConfig, run_dir: Path | None = None, *,
                 data_dir=None, log=print, progress: bool | None = None):
        self.config, self.log = config, log
        self.run_dir = Path(run_dir) if run_dir is not None else new_run_dir(config.model)
        self.device = resolve_device(config.device)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.data_dir = data_dir
        self.metrics: list[dict] = []
        self.best = math.inf

    # --- set-up -------------------------------------------------------------------------

    def _load_data(self) -> None:
        c = self.config
        train_x, _ = data_mod.load_dataset(c.dataset, "train", data_dir=self.data_dir, log=self.log)
        test_x, test_y = data_mod.load_dataset(c.dataset, "test", data_dir=self.data_dir, log=self.log)
        if c.limit is not None:
            train_x = train_x[: c.limit]
        self.train_x = train_x.to(self.device)  # (N, 28, 28) uint8, resident on the device
        self.test_x = test_x.to(self.device)
        self.test_y = test_y
        self.fig_idx = figure_digits(test_y)

    def _build(self) -> None:
        torch.manual_seed(self.config.seed)
        self.model = build_model(self.config.model, **self.config.model_args).to(self.device)
        self.optimizer = make_optimizer(self.model, self.config)

    def _meta(self, epoch: int) -> dict:
        c = self.config
        return {
            "model": {"name": c.model, "args": c.model_args},
            "latent_dim": int(self.model.latent_dim),
            "params": count_parameters(self.model),
            "config": c.to_dict(),
            "epoch": epoch,
            "metrics": self.metrics[-1] if self.metrics else {},
            "best": {"test_mse": self.best},
            "dataset": c.dataset,
            "data_checksum": data_mod.dataset_checksum(c.dataset),
            "n_train": len(self.train_x),
        }

    def _start_new(self) -> int:
        d = self.run_dir
        if (d / "config.json").exists() or checkpoint_path(d, "last").exists():
            raise AelabError(
                f"{d} already holds a run; continue it with `aelab train --resume {d}` "
                "or choose another --run-dir"
            )
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_json(d / "config.json", self.config.to_dict())
        return 1

    def _resume(self) -> int:
        tensors, meta = read_checkpoint(checkpoint_path(self.run_dir, "last"))
        restore_training_state(tensors, meta, self.model, self.optimizer)
        done = int(meta["epoch"])
        self.best = float(meta["best"]["test_mse"])
        self.metrics = [m for m in read_metrics(self.run_dir) if m["epoch"] <= done]
        atomic_write_json(self.run_dir / "config.json", self.config.to_dict())
        self.log(f"resuming {self.run_dir} after epoch {done} of {self.config.epochs}")
        return done + 1

    # --- the loop -----------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> float:
        """One pass over the shuffled training set; returns the mean loss per image."""
        model, opt, bs = self.model, self.optimizer, self.config.batch_size
        model.train()
        n = len(self.train_x)
        perm = torch.randperm(n, generator=epoch_generator(self.config.seed, epoch)).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        bar = _progress(self.progress, math.ceil(n / bs), epoch)
        for i in range(0, n, bs):
            x = to_float(self.train_x[perm[i : i + bs]])  # (B, 1, 28, 28)
            loss = F.mse_loss(model(x), x)  # mean over pixels, as in the seed
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(x)  # stays on the device: no sync per step
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        return loss_sum.item() / n

    def run(self, resume: bool = False) -> TrainResult:
        self._load_data()
        self._build()
        start = self._resume() if resume else self._start_new()
        c = self.config
        if start > c.epochs:
            self.log(f"{self.run_dir} already finished its {c.epochs} epochs; nothing to do "
                     "(pass --epochs N to train further)")
        for epoch in range(start, c.epochs + 1):
            try:
                self._one_epoch(epoch)
            except KeyboardInterrupt:
                raise TrainingInterrupted(
                    f"interrupted during epoch {epoch}; epoch {epoch - 1} is saved in "
                    f"{self.run_dir}. Continue with: aelab train --resume {self.run_dir}"
                ) from None
        if self.metrics:
            loss_curve(self.metrics, self.run_dir / "loss_curve.png",
                       title=f"{c.model} on {c.dataset}")
        return TrainResult(self.run_dir, self.metrics, self.model)

    def _one_epoch(self, epoch: int) -> None:
        c = self.config
        _sync(self.device)
        t0 = time.perf_counter()
        train_loss = self.train_epoch(epoch)  # .item() inside has synchronised the device
        seconds = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            last = checkpoint_path(self.run_dir, "last")
            kept = f"the last good checkpoint (epoch {epoch - 1}) is {last}" if epoch > 1 else \
                "no epoch finished, so no checkpoint was written"
            raise TrainingDiverged(
                f"the training loss became {train_loss} in epoch {epoch}; stopped. {kept}. "
                f"Try a smaller --lr (now {c.lr})."
            )
        test_mse = reconstruction_sse(self.model, self.test_x, c.eval_batch_size).mean().item() / 784
        record = {"epoch": epoch, "train_loss": train_loss, "test_mse": test_mse,
                  "epoch_seconds": seconds, "images_per_second": len(self.train_x) / seconds}
        self.metrics.append(record)
        self.log(f"epoch {epoch:3d}/{c.epochs}  train loss {train_loss:.6f} (mean over epoch)  "
                 f"test mse {test_mse:.6f}  {seconds:6.2f}s  {record['images_per_second']:,.0f} img/s")
        self._save(epoch, test_mse)
        if epoch in c.figure_epochs():
            self.draw_reconstructions(self.run_dir / f"recon_epoch{epoch:02d}.png", epoch)

    def _save(self, epoch: int, test_mse: float) -> None:
        write_metrics(self.run_dir, self.metrics)
        improved = test_mse < self.best
        if improved:
            self.best = test_mse
        meta = self._meta(epoch)
        save_checkpoint(self.run_dir / "checkpoints" / "last", self.model, meta, self.optimizer)
        if improved:
            save_checkpoint(self.run_dir / "checkpoints" / "best", self.model, meta)

    @torch.inference_mode()
    def draw_reconstructions(self, path: Path, epoch: int) -> Path:
        self.model.eval()
        x = to_float(self.test_x[self.fig_idx.to(self.device)])
        recon = self.model(x).float().cpu()[:, 0].numpy()
        rows = [("original", x.cpu()[:, 0].numpy()), ("reconstr.", recon)]
        return image_rows(rows, path, title=f"{self.config.model}, epoch {epoch}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress(enabled: bool, total: int, epoch: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}", leave=False, unit="batch", file=sys.stderr)


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(run_dir: Path, metrics: list[dict]) -> None:
    atomic_write_text(Path(run_dir) / "metrics.jsonl",
                      "".join(json.dumps(m, sort_keys=True) + "\n" for m in metrics))


def train(config: TrainConfig, run_dir=None, *, data_dir=None, log=print,
          progress: bool | None = None) -> TrainResult:
    """Train a new run; returns its folder, per-epoch metrics and the trained model."""
    return Trainer(config, run_dir, data_dir=data_dir, log=log, progress=progress).run()


def resume(run_dir, *, epochs: int | None = None, device: str | None = None, data_dir=None,
           log=print, progress: bool | None = None) -> TrainResult:
    """Continue a run after its last finished epoch (optionally to a new number of epochs)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise AelabError(f"{run_dir} is not a run folder ({cfg_path} is missing)")
    if not checkpoint_path(run_dir, "last").is_file():
        raise AelabError(f"{run_dir} has no checkpoint to resume from; start a new run instead")
    config = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    changes = {k: v for k, v in (("epochs", epochs), ("device", device)) if v is not None}
    config = config.replace(**changes)
    return Trainer(config, run_dir, data_dir=data_dir, log=log, progress=progress).run(resume=True)
