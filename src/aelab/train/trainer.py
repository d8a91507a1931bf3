"""The trainer: the seed's loop (MSE, Adam, batch 64, 13 epochs), fast and restartable.

The whole dataset lives on the training device as one uint8 tensor; each batch is a
shuffled index into it, converted to float on the fly. There is no per-sample Dataset,
PIL or ToTensor step, and no host synchronisation inside an epoch.

One loop: set-up in one place (`_set_up`: data, model and optimizer, start or resume, the
step), then per epoch `train_epoch`, the metrics record, the epoch line, and the hooks of
train/hooks.py (checkpoints, TensorBoard, figures; the loss curve after the last).
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import data as data_mod
from .._io import atomic_write_bytes, make_dirs
from ..config import TrainConfig
from ..data.batches import (
    BINARIZE_TEST_SEED,
    as_images,
    binarize,
    binarize_u8,
    corrupt,
    epoch_generator,
    figure_digits,
    reconstruction_sse,
    to_float,
)
from ..errors import AelabError
from ..figures import image_rows
from ..models import build_model, count_parameters, model_record, rebuild_model
from ..models.contract import DEFAULT_IMAGE_SHAPE
from ..models.contract import image_shape as model_image_shape
from ..runs import (
    checkpoint_path,
    new_run_dir,
    read_checkpoint,
    read_config,
    read_metrics,
    restore_training_state,
    write_config,
)
from ..runtime import flushing_denormals, hardware, resolve_device
from . import distributed
from .hooks import default_hooks
from .lock import RunLock
from .step import StepChoice, make_optimizer, make_step
from .tensorboard import open_log


class TrainingDiverged(AelabError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(AelabError):
    """Ctrl-C: the last finished epoch is saved."""


@dataclass
class TrainResult:
    run_dir: Path
    metrics: list[dict]
    model: nn.Module


def uses_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Learning-rate multiplier at optimizer step `step` of `total` (stateless, so resuming
    needs no scheduler state). One-cycle follows Smith & Topin (2017) as in PyTorch's
    OneCycleLR defaults: 30% cosine warm-up from lr/25, then cosine down to lr/25e4."""
    t = min(step / max(total - 1, 1), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "onecycle":
        start, end, warm = 1 / 25, 1 / 25e4, 0.3
        if t < warm:
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * t / warm))
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))
    return 1.0


def _quiet(*_args, **_kw) -> None:
    pass


class Trainer:
    """Trains one model on one device (or one rank of several); knows nothing about which
    model it is beyond `build_model(name)` and what it declares (aelab.models.contract)."""

    def __init__(self, config: TrainConfig, run_dir: Path | None = None, *,
                 data_dir=None, log=print, progress: bool | None = None):
        self.config = config
        self.choice: StepChoice | None = None  # the step that trains this run (make_step)
        self.dist = distributed.from_env()
        self.log = log if self.dist.is_main else _quiet
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if config.cuda_graphs and self.device.type != "cuda":
            raise AelabError("--cuda-graphs needs a CUDA device; drop it or use --device cuda")
        distributed.init(self.dist, self.device)
        name = str(run_dir) if run_dir is not None else str(new_run_dir(config.model))
        self.run_dir = Path(distributed.broadcast_str(name, self.dist))
        isatty = sys.stderr.isatty() if progress is None else progress
        self.progress = isatty and self.dist.is_main
        self.data_dir = data_dir
        # Everything a run holds, set up by _set_up (data, model, step) and run (hooks):
        self.train_x = self.val_x = self.test_x = None  # uint8 (N, 28, 28) on the device
        self.fig_idx = self.dataset_info = None  # figure digits; the dataset's description
        self.model = self.optimizer = None
        self.tb = None  # TensorBoard log (or its no-op stand-in)
        self.hooks: list = []  # what runs after each epoch (train/hooks.py)
        self.metrics: list[dict] = []  # one record per finished epoch
        self.best = math.inf  # the best selection metric so far
        self.images_seen, self.term_means = 0, {}  # of the last epoch (train_epoch)
        self.monitor_means: dict[str, float] = {}

    # --- set-up -------------------------------------------------------------------------

    def _load_data(self) -> None:
        c, log = self.config, self.log
        opts = dict(data_dir=self.data_dir, options=c.dataset_options, log=log)
        train_x, train_y = data_mod.load_dataset(c.dataset, "train", **opts)
        test_x, test_y = data_mod.load_dataset(c.dataset, "test", **opts)
        self.dataset_info = info = data_mod.dataset_info(c.dataset, **opts)
        if info["path"] is not None:  # a dataset by path: say what was found, once
            classes = f"{len(info['class_names'])} classes" if info["has_labels"] else "no labels"
            carved = info["carved_test"]
            split = (f"; test split carved: {carved['n']} images ({carved['fraction']:.3g}, seed "
                     f"{carved['seed']})" if carved else "")
            log(f"dataset {info['path']} ({info['kind']}): {info['n_train']:,} training and "
                f"{info['n_test']:,} test images, {classes}{split}")
        if c.val_split >= len(train_x):
            raise AelabError(f"--val-split {c.val_split}: {c.dataset} has only {len(train_x)} "
                             "training images; hold out fewer")
        if c.exclude_digits and not self.dataset_info["has_labels"]:
            raise AelabError(f"--exclude-digits needs labels, and {c.dataset} has none")
        n_classes = len(self.dataset_info["class_names"])
        if any(d >= n_classes for d in c.exclude_digits):
            raise AelabError(f"--exclude-digits {max(c.exclude_digits)}: {c.dataset} has classes "
                             f"0 to {n_classes - 1}")
        val_x = val_y = None
        if c.val_split:  # the last N training images: model selection never sees the test set
            train_x, val_x = train_x[: -c.val_split], train_x[-c.val_split :]
            train_y, val_y = train_y[: -c.val_split], train_y[-c.val_split :]
        if c.exclude_digits:
            excluded = torch.tensor(c.exclude_digits)
            keep = ~torch.isin(train_y, excluded)
            train_x = train_x[keep]
            if val_x is not None:
                val_x = val_x[~torch.isin(val_y, excluded)]
        if c.limit is not None:
            train_x = train_x[: c.limit]
        if c.binarize != "none":  # held-out images binarized once, with a seed the docs state
            test_x = binarize_u8(test_x, BINARIZE_TEST_SEED)
            val_x = binarize_u8(val_x, BINARIZE_TEST_SEED + 1) if val_x is not None else None
        if c.binarize == "static":  # one fixed binarization of the training images
            train_x = binarize_u8(train_x, c.seed + 3)
        self.train_x = train_x.to(self.device)  # uint8 (N, H, W) grey or (N, 3, H, W), on the device
        self.val_x = val_x.to(self.device) if val_x is not None else None
        self.test_x = test_x.to(self.device)
        self.fig_idx = figure_digits(test_y)

    def _build(self, resume: bool = False) -> None:
        c = self.config
        torch.manual_seed(c.seed)
        if resume:  # as its checkpoint describes it: a user's module is checked for changes
            record = json.loads(checkpoint_path(self.run_dir, "last").with_suffix(".json").read_text())
            model = rebuild_model(record["model"])
        else:
            model = build_model(c.model, image_shape=self._image_shape(), **self._model_args())
        self.model = model.to(self.device)
        if uses_convolutions(self.model):
            # NHWC weights let oneDNN/cuDNN pick their fast convolution kernels
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.model, c, self.device)

    def _image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the dataset's images: the shape every model of this run is built for."""
        return tuple(self.dataset_info.get("image_shape") or DEFAULT_IMAGE_SHAPE)

    def _model_args(self) -> dict:
        """The config's model arguments; an image_shape among them must be the dataset's."""
        args = dict(self.config.model_args)
        given = args.pop("image_shape", None)
        if given is not None and tuple(given) != self._image_shape():
            raise AelabError(f"model_args image_shape={list(given)} but {self.config.dataset}'s "
                             f"images are {list(self._image_shape())}; leave image_shape out: "
                             "the model takes the dataset's")
        return args

    def _recorded_args(self) -> dict:
        """The arguments that rebuild this model: the config's, with the image shape where the
        model took one other than (1, 28, 28) (old runs, without it, load at 28x28)."""
        args = self._model_args()
        shape = model_image_shape(self.model)
        return args if shape == DEFAULT_IMAGE_SHAPE else {**args, "image_shape": list(shape)}

    def checkpoint_meta(self, epoch: int) -> dict:
        """The description every checkpoint of this run carries (see aelab.runs)."""
        c = self.config
        return {
            "model": {"name": c.model, "args": self._recorded_args(), **model_record(c.model)},
            "image_shape": list(model_image_shape(self.model)),
            "latent_dim": int(self.model.latent_dim),
            "params": count_parameters(self.model),
            "config": c.to_dict(),
            "epoch": epoch,
            "metrics": self.metrics[-1] if self.metrics else {},
            "best": {"metric": self.selection_metric, "value": self.best},
            "dataset": c.dataset,
            "data_checksum": self.dataset_info["checksum"],
            "dataset_info": self.dataset_info,
            "n_train": len(self.train_x),
            "world_size": self.dist.world,
            **(self.choice.record() if self.choice is not None else {}),
        }

    @property
    def selection_metric(self) -> str:
        return "val_mse" if self.val_x is not None else "test_mse"

    def _start_new(self, restart: bool = False) -> int:
        """Epoch 1 of a new run; `restart`: of a run whose first epoch never finished."""
        d = self.run_dir
        if self.dist.is_main:
            if checkpoint_path(d, "last").exists():
                raise AelabError(
                    f"{d} already holds a run; continue it with `aelab train --resume {d}` "
                    "or choose another --run-dir"
                )
            if (d / "config.json").exists() and not restart:
                raise AelabError(
                    f"{d} already holds a run that has not finished its first epoch (it was "
                    f"interrupted); continue it with `aelab train --resume {d}`, which starts "
                    "it from epoch 1, or choose another --run-dir"
                )
            if restart:
                self.log(f"{d}: no epoch of this run finished before; starting at epoch 1")
            write_config(d, self.config)
        distributed.barrier(self.dist)
        return 1

    def _resume(self) -> int:
        tensors, meta = read_checkpoint(checkpoint_path(self.run_dir, "last"))
        restore_training_state(tensors, meta, self.model, self.optimizer)
        done = int(meta["epoch"])
        self.best = float(meta["best"]["value"])
        self.metrics = [m for m in read_metrics(self.run_dir) if m["epoch"] <= done]
        self.log(f"resuming {self.run_dir} after epoch {done} of {self.config.epochs}")
        return done + 1

    # --- the loop -----------------------------------------------------------------------

    def steps_per_epoch(self) -> int:
        n = len(self.train_x) // self.dist.world
        return math.ceil(n / self.config.batch_size)

    def batches(self, epoch: int):
        """(indices, weights, real count) for each step of an epoch. Weights are None except with
        --cuda-graphs, where the ragged last batch is padded to full size with weight-0
        repeats of the epoch's first images: shapes stay fixed, and the weighted mean loss
        (so the step) equals that of the ragged batch."""
        bs = self.config.batch_size
        perm = torch.randperm(len(self.train_x), generator=epoch_generator(self.config.seed, epoch))
        perm = distributed.shard(perm, self.dist).to(self.device)
        for i in range(0, len(perm), bs):
            idx = perm[i : i + bs]
            if self.config.cuda_graphs:
                pad = bs - len(idx)
                w = torch.ones(bs, device=self.device)
                if pad:
                    idx = torch.cat([idx, perm[:pad]])
                    w[bs - pad :] = 0
                yield idx, w, bs - pad
            else:
                yield idx, None, len(idx)

    def train_epoch(self, epoch: int) -> float:
        """One pass over the shuffled training set; returns the mean loss per image, and
        leaves each loss term's mean per image in `self.term_means` ({"recon": ...})."""
        c, opt, step = self.config, self.optimizer, self.choice.step
        self.model.train()
        noise_gen = epoch_generator(c.seed + 1, epoch, self.device) if c.noise else None
        dynamic = epoch_generator(c.seed + 3, epoch, self.device) if c.binarize == "dynamic" else None
        # the sums over images of what the step returns: [loss] or [loss, *terms]
        sums = torch.zeros(self.choice.outputs, device=self.device)
        seen, total_steps = 0, self.steps_per_epoch() * c.epochs
        step0 = (epoch - 1) * self.steps_per_epoch()
        bar = _progress(self.progress, self.steps_per_epoch(), epoch)
        mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
        for s, (idx, w, n_real) in enumerate(self.batches(epoch)):
            if c.cuda_graphs and mark_step is not None:
                mark_step()  # a new iteration: the previous step's graph outputs may be reused
            if c.schedule != "constant":
                for group in opt.param_groups:
                    group["lr"] = c.lr * lr_factor(c.schedule, step0 + s, total_steps)
            x = to_float(torch.index_select(self.train_x, 0, idx))  # (B, C, H, W)
            if dynamic is not None:  # a fresh Bernoulli(pixel) sample of each image drawn
                x = binarize(x, dynamic)
            x_in = corrupt(x, c.noise, noise_gen)
            out = step(x_in, x, w)  # forward, backward and the update: (), or (1 + T,)
            sums.add_(out, alpha=n_real)  # stays on the device: no sync per step
            seen += n_real
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        counts = torch.tensor([float(seen)], device=self.device)
        totals = distributed.all_reduce_sum(torch.cat([sums, counts]), self.dist)  # over every rank
        means = (totals[:-1] / totals[-1]).tolist()  # the one sync of the epoch
        self.images_seen = int(totals[-1].item())
        self.term_means = self.choice.term_means(means)
        self.monitor_means = self.choice.monitor_means(means)
        return means[0]

    def run(self, resume: bool = False, restart: bool = False) -> TrainResult:
        """Train from epoch 1, or after the last saved epoch (`resume`), or from epoch 1 in a
        folder whose first epoch never finished (`restart`). Subnormals are flushed for the
        training alone (see aelab.runtime); the run folder is locked to this process."""
        self.tb, lock = None, None
        created = not self.run_dir.exists()
        try:
            with flushing_denormals():
                # before anything is written: a missing tensorboard package leaves no run folder
                self.tb = open_log(self.run_dir, self.config.tensorboard, self.dist.is_main)
                self.hooks = default_hooks(self.tb) if self.dist.is_main else []
                lock = self._lock()
                start = self._set_up(resume, restart)
                self._loop(start)
        finally:
            if self.tb is not None:
                self.tb.close()
            self._unlock(lock, created)
            distributed.shutdown(self.dist)
        return TrainResult(self.run_dir, self.metrics, self.model)

    def prepare(self, resume: bool = False, restart: bool = False) -> int:
        """What run() does before its first epoch, without training: load the data, build
        the model and optimizer (restored from the last checkpoint with `resume`), write the
        run's config.json and choose the step. Returns the first epoch to train; after it,
        `train_epoch(epoch)` trains one (benchmarks/gpu_train.py profiles steps this way).
        Like run(), it locks the run folder and flushes subnormals while it works; it
        returns with the lock released, and a folder it made but wrote nothing into
        removed."""
        created, lock = not self.run_dir.exists(), None
        try:
            with flushing_denormals():
                lock = self._lock()
                return self._set_up(resume, restart)
        finally:
            self._unlock(lock, created)

    def _set_up(self, resume: bool, restart: bool) -> int:
        self._load_data()
        self._build(resume)
        start = self._resume() if resume else self._start_new(restart)
        self._choose_step()
        return start

    def _lock(self) -> RunLock | None:
        if not self.dist.is_main:  # rank 0 alone writes the folder
            return None
        # a full disk or a file in the way: an error naming it
        return RunLock.acquire(make_dirs(self.run_dir), log=self.log)

    def _unlock(self, lock: RunLock | None, created: bool) -> None:
        if lock is not None:
            lock.release()
            if created:  # stopped before anything was written: leave no empty folder
                _remove_if_empty(self.run_dir)

    def _loop(self, start: int) -> None:
        c = self.config
        if start > c.epochs:
            self.log(f"{self.run_dir} already finished its {c.epochs} epochs; nothing to do "
                     "(pass --epochs N to train further)")
        for epoch in range(start, c.epochs + 1):
            try:
                self._one_epoch(epoch)
            except KeyboardInterrupt:
                saved = (f"epoch {epoch - 1} is saved in {self.run_dir}" if epoch > 1 else
                         f"no epoch had finished, so {self.run_dir} holds only its config; "
                         "resuming starts it at epoch 1")
                raise TrainingInterrupted(
                    f"interrupted during epoch {epoch}; {saved}. "
                    f"Continue with: aelab train --resume {self.run_dir}"
                ) from None
        for hook in self.hooks:
            hook.train_end(self)

    def _choose_step(self) -> None:
        """make_step, once, after a resume has restored the optimizer state (which a
        hand-written step takes over); says which step trains and records it."""
        self.choice = make_step(self.model, self.optimizer, self.config, self.device, self.dist,
                                note=self.log)
        rec = self.choice.record()
        refused = f" (no hand-written step: {rec['fast_refused']})" if rec["fast_refused"] else ""
        self.log(f"step: {rec['step']}: {rec['step_detail']}{refused}")
        if self.dist.is_main:
            write_config(self.run_dir, self.config, rec)

    def _mse(self, images: torch.Tensor) -> float:
        sse = reconstruction_sse(self.model, images, self.config.eval_batch_size)
        return sse.mean().item() / math.prod(model_image_shape(self.model))  # per pixel and channel

    def _one_epoch(self, epoch: int) -> None:
        c = self.config
        _sync(self.device)
        t0 = time.perf_counter()
        train_loss = self.train_epoch(epoch)  # its .item() has synchronised the device
        seconds = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            last = checkpoint_path(self.run_dir, "last")
            kept = (f"the last good checkpoint (epoch {epoch - 1}) is {last}" if epoch > 1
                    else "no epoch finished, so no checkpoint was written")
            raise TrainingDiverged(
                f"the training loss became {train_loss} in epoch {epoch}; stopped. {kept}. "
                f"Try a smaller --lr (now {c.lr})."
            )
        terms = {f"loss_{name}": value for name, value in self.term_means.items()}
        record = {"epoch": epoch, "train_loss": train_loss, **terms, **self.monitor_means,
                  "test_mse": self._mse(self.test_x),
                  "epoch_seconds": seconds, "images_per_second": self.images_seen / seconds,
                  "hardware": hardware()}  # per epoch: a resumed run may change machines
        val = ""
        if self.val_x is not None:
            record["val_mse"] = self._mse(self.val_x)
            val = f"  val mse {record['val_mse']:.6f}"
        self.metrics.append(record)
        # the terms where they say more than the loss (several, or one weighted)
        parts = "" if self.choice.loss_only else ": " + ", ".join(
            f"{name} {value:.6f}" for name, value in self.term_means.items())
        monitors = ", ".join(f"{name} {value:.4g}" for name, value in self.monitor_means.items())
        if monitors:
            parts = f"{parts}, {monitors}" if parts else f": {monitors}"
        self.log(f"epoch {epoch:3d}/{c.epochs}  train loss {train_loss:.6f} (mean over epoch"
                 f"{parts}){val}  test mse {record['test_mse']:.6f}  {seconds:6.2f}s  "
                 f"{record['images_per_second']:,.0f} img/s")
        for hook in self.hooks:  # checkpoints, TensorBoard, figures (main rank only)
            hook.epoch_end(self, epoch, record)

    @torch.inference_mode()
    def draw_reconstructions(self, path: Path, epoch: int) -> Path:
        self.model.eval()
        x = to_float(self.test_x[self.fig_idx.to(self.device)])  # (n, C, H, W)
        rows = [("original", x.cpu())]
        if self.config.noise:
            gen = epoch_generator(self.config.seed + 2, 0, self.device)
            x_in = corrupt(x, self.config.noise, gen)
            rows = [("corrupted", x_in.cpu())]
        else:
            x_in = x
        recon = self.model(x_in).float().cpu()
        label = "denoised" if self.config.noise else "reconstr."
        rows.append((label, recon))
        if self.config.noise:
            rows.append(("clean", x.cpu()))
        return image_rows(rows, path, title=f"{self.config.model}, epoch {epoch}")


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (or already gone): keep it
        pass


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress(enabled: bool, total: int, epoch: int):
    if not enabled:
        return None
    return tqdm(total=total, desc=f"epoch {epoch}", leave=False, unit="batch", file=sys.stderr)


def train(config: TrainConfig, run_dir=None, *, images=None, labels=None, test_images=None,
          test_labels=None, data_dir=None, log=print, progress: bool | None = None) -> TrainResult:
    """Train a new run; returns its folder, per-epoch metrics and the trained model. Needs
    no process preparation: the speed settings are made for the training and undone after.

    images (labels, test_images, test_labels): a dataset held in memory, instead of
    config.dataset: numpy arrays or tensors as `aelab.load(run).reconstruct` takes them
    (uint8, or floats in [0, 1] stored as round(255 x)) and integer labels. They are saved
    as RUN_DIR/dataset.npz, which becomes the run's dataset (checksum, sizes and all), so
    `--resume`, eval and explore find it again; without test images 1/6 are set aside."""
    if images is not None:
        run_dir = Path(run_dir) if run_dir is not None else new_run_dir(config.model)
        config = config.replace(dataset=str(_save_arrays(config, run_dir, images, labels,
                                                         test_images, test_labels)))
    elif any(a is not None for a in (labels, test_images, test_labels)):
        raise AelabError("labels, test_images and test_labels go with images=; give images too")
    return Trainer(config, run_dir, data_dir=data_dir, log=log, progress=progress).run()


def _save_arrays(config: TrainConfig, run_dir: Path, images, labels, test_images,
                 test_labels) -> Path:
    """Check the arrays and write them as RUN_DIR/dataset.npz (x_train, y_train, x_test,
    y_test: data/custom.py's format) before the run starts; returns its absolute path."""
    if config.dataset != TrainConfig().dataset:
        raise AelabError(f"give either images= or config.dataset ({config.dataset!r}), not both")
    if (test_labels is not None) and test_images is None:
        raise AelabError("test_labels without test_images; give both or neither")
    if (labels is None) != (test_labels is None) and test_images is not None:
        raise AelabError("labels for one split only: give labels and test_labels, or neither")
    arrays = {"x_train": _stored_u8(images, "images")}
    if labels is not None:
        arrays["y_train"] = _labels(labels, len(arrays["x_train"]), "labels")
    if test_images is not None:
        arrays["x_test"] = _stored_u8(test_images, "test_images")
        if test_labels is not None:
            arrays["y_test"] = _labels(test_labels, len(arrays["x_test"]), "test_labels")
    path = Path(run_dir) / "dataset.npz"
    if (Path(run_dir) / "config.json").exists() or path.exists():
        raise AelabError(f"{run_dir} already holds a run; choose another run folder")
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())  # the folder is made, or an error names it
    return path.absolute()


def _stored_u8(images, what: str) -> np.ndarray:
    try:
        x = as_images(images)
    except AelabError as e:
        raise AelabError(f"{what}: {e}") from None
    if x.dtype != torch.uint8:  # floats in [0, 1], as every aelab dataset: 256 levels
        x = x.double().mul(255).round().to(torch.uint8)
    return x.cpu().numpy()


def _labels(labels, n: int, what: str) -> np.ndarray:
    y = labels.cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if y.dtype.kind not in "iu" or y.shape != (n,) or (n and y.min() < 0):
        raise AelabError(f"{what}: give {n} whole numbers >= 0, one class per image (got "
                         f"{y.dtype} of shape {y.shape})")
    return y.astype(np.int64)


def resume(run_dir, *, epochs: int | None = None, device: str | None = None, data_dir=None,
           log=print, progress: bool | None = None) -> TrainResult:
    """Continue a run after its last finished epoch (optionally to a new number of epochs)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AelabError(f"run folder {run_dir} does not exist; give a folder written by `aelab train`")
    config = read_config(run_dir)
    changes = {k: v for k, v in (("epochs", epochs), ("device", device)) if v is not None}
    config = config.replace(**changes)
    saved = checkpoint_path(run_dir, "last").is_file()  # none: stopped inside epoch 1
    trainer = Trainer(config, run_dir, data_dir=data_dir, log=log, progress=progress)
    return trainer.run(resume=saved, restart=not saved)
