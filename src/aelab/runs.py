"""Run folders: where a run's config, metrics, checkpoints and evaluations live.

One folder per run (`runs/<model>-<timestamp>/` by default):

- `config.json`: the TrainConfig, plus `step` and `fast_refused` (which training step ran
  and why a fast one was not used), written when training starts;
- `metrics.jsonl`: one JSON line per finished epoch;
- `checkpoints/{last,best}.safetensors` (+ `.json`): the checkpoints below;
- `eval.json`, `eval-noise-<spec>.json`: what `aelab eval` wrote (`eval_file_name`);
- `samplers/<sampler>-<checkpoint>.safetensors` (+ `.json`): densities fitted to a
  checkpoint's training codes for `LoadedRun.sample` (aelab.models.samplers), written on
  first use and fitted again when the checkpoint's weights change (`save_sampler`).

Checkpoints are self-describing and pickle-free: one safetensors file plus a readable JSON copy.

`checkpoints/last.safetensors` holds the model weights (keys `model.*`), the optimizer's
tensors (`optim.*`) and RNG state (`rng.*`); its header metadata carries the whole JSON
description (model name and arguments, training config, epoch, metrics, data checksum,
package version), so the one file is the single source of truth and is written atomically.
`last.json` beside it is the same JSON for people and tools.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from . import __version__
from ._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .config import TrainConfig
from .data import load_dataset
from .data.batches import as_images, encode_all, images_to_float
from .errors import AelabError
from .models import model_record, rebuild_model, spec
from .models.contract import image_shape
from .models import samplers
from .runtime import resolve_device

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


def train_seconds(metrics: list[dict]) -> float:
    """Seconds of training over a run's epochs (metrics.jsonl's lines), without the
    per-epoch evaluation: each epoch's `epoch_seconds` times its training alone."""
    return sum(m["epoch_seconds"] for m in metrics)


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


# --- fitted samplers ------------------------------------------------------------------

SAMPLER_FORMAT = 1


def sampler_path(run_dir: Path, sampler: str, which: str) -> Path:
    """RUN_DIR/samplers/<sampler>-<checkpoint>.safetensors."""
    return Path(run_dir) / "samplers" / f"{sampler}-{which}.safetensors"


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict's names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_sampler(path: Path, density, meta: dict) -> None:
    """A fitted density's tensors to `path` (safetensors, its header holding `meta` as
    JSON), then the same JSON beside it for people; both written atomically."""
    meta = dict(meta, format_version=SAMPLER_FORMAT, aelab_version=__version__)
    blob = st_save(density.to_tensors(), metadata={"aelab": json.dumps(meta)})
    atomic_write_bytes(path, blob)
    atomic_write_json(Path(path).with_suffix(".json"), meta)


def read_sampler(path: Path):
    """(density, meta) saved by save_sampler, or None where the file is missing, unreadable
    or of another format (the caller fits it again). Never unpickles anything."""
    if not Path(path).is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["aelab"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (no __iter__)
        if meta.get("format_version") != SAMPLER_FORMAT:
            return None
        return samplers.DENSITIES[meta["density"]].from_tensors(tensors), meta
    except Exception:  # a truncated or foreign file, a density of another version: refit
        return None


@dataclass
class LoadedRun:
    """A trained model rebuilt from a run folder, with its training config and checkpoint
    meta; and a handle for people: `encode`, `decode`, `reconstruct` and `sample`.

    Images go in as numpy arrays or torch tensors, uint8 (0..255) or float in [0, 1], of the
    run's `image_shape` (C, H, W) in any layout `data.batches.as_images` takes for it (for
    MNIST: (N, 28, 28), (N, 1, 28, 28), (N, 784), one image (28, 28) or (784,)); colour
    images come out (N, 3, H, W), grey ones (N, H, W); on any device; what comes out is
    numpy for numpy in, and a torch tensor on the input's device for torch in. Out-of-range
    floats (0..255 ones included), other dtypes and shapes raise AelabError. The model runs in eval mode under
    torch.inference_mode, `batch_size` images at a time, on its own device; the results are
    float32.
    """

    model: torch.nn.Module
    config: TrainConfig
    meta: dict
    run_dir: Path
    data_dir: Path | None = None  # where the run's dataset lives (fitted samplers)
    batch_size: int = 1000
    checkpoint: str = "best"  # which checkpoint of run_dir the weights came from
    # fitted samplers by name, read from RUN_DIR/samplers or fitted on first use; the codes
    # of the whole training split, once encoded; the weights' digest that names the fits
    _fitted: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _train_codes: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    _weights_id: str | None = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)
    _warned: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters(), torch.empty(0)).device

    @property
    def latent_dim(self) -> int:
        return int(self.model.latent_dim)

    @property
    def variational(self) -> bool:
        """Whether the model's spec samples it from its prior N(0, I) (a VAE's sampler
        "prior"), rather than from a Gaussian fitted to its training codes."""
        return spec(self.model).sampler == "prior"

    @property
    def samplers(self) -> tuple[str, ...]:
        """The samplers this run offers (aelab.models.samplers.SAMPLERS), the default first:
        "prior" where the model has one, then "gmm" and "gaussian"."""
        return samplers.offered(self.model)

    @property
    def default_sampler(self) -> str:
        return self.samplers[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the model takes and makes (the run's dataset's)."""
        return image_shape(self.model)

    def encode(self, images):
        """Codes of images: float32 (N, latent_dim), or (latent_dim,) for one image."""
        x = as_images(images, self.image_shape)  # (N, H, W) grey or (N, 3, H, W)
        codes = self._batched(lambda b: self.model.encode(images_to_float(b)), x,
                              (len(x), self.latent_dim), _device_of(images))
        return _like(images, codes[0] if _one_image(images) else codes)

    def reconstruct(self, images):
        """The model's reconstructions of images (its forward pass), float32 in the shape
        the images came in (uint8 in: floats in [0, 1] out, not uint8)."""
        x = as_images(images, self.image_shape)  # (N, H, W) grey or (N, 3, H, W)
        out = self._batched(lambda b: self.model(images_to_float(b)), x,
                            (len(x), *self.image_shape), _device_of(images))  # (N, C, H, W)
        if tuple(images.shape[-3:]) == (*self.image_shape[1:], 3):  # channels last came in
            out = out.permute(0, 2, 3, 1)
        return _like(images, out.reshape(images.shape))

    def decode(self, codes):
        """Images decoded from codes (N, latent_dim) or one code (latent_dim,): float32
        (N, H, W) or (H, W) grey, (N, 3, H, W) or (3, H, W) colour; numpy for numpy codes,
        else a tensor on the codes' device."""
        z = _as_codes(codes, self.latent_dim)  # (N, L)
        images = self._decode(z, _device_of(codes))
        return _like(codes, images[0] if codes.ndim == 1 else images)

    def sample(self, n: int, *, sampler: str | None = None, seed: int = 0, as_numpy: bool = True):
        """n images (n, H, W) grey or (n, 3, H, W) colour, float32, decoded from random
        codes (`sample_codes`); the same sampler and seed give the same images, in this
        process or another. numpy by default; as_numpy=False gives a tensor on the model's device."""
        codes = self.sample_codes(n, sampler=sampler, seed=seed, as_numpy=False)
        images = self._decode(codes, self.device)
        return images.cpu().numpy() if as_numpy else images

    def sample_codes(self, n: int, *, sampler: str | None = None, seed: int = 0,
                     as_numpy: bool = True):
        """n random codes (n, latent_dim) float32 from `sampler`, one of `self.samplers`
        (default: the first: "prior" where the model has one, else "gmm"). A fitted sampler
        is fitted to the codes of the run's training split on first use and saved in
        RUN_DIR/samplers (`fitted_sampler`). numpy by default; as_numpy=False gives a tensor
        on the model's device."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise AelabError(f"sample(n={n!r}): give a whole number of images >= 1")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise AelabError(f"sample(seed={seed!r}): give a whole number from 0 to 2**63 - 1")
        name = samplers.check_sampler(self.model, sampler)
        codes = samplers.draw(self.model, self.fitted_sampler(name), n, seed)  # (n, L)
        return codes.numpy() if as_numpy else codes.to(self.device)

    def fitted_sampler(self, sampler: str):
        """The density of a fitted sampler (aelab.models.samplers.DENSITIES), None for the
        model's own prior. Read from `sampler_file(sampler)` when that was fitted to these
        weights (`weights_id`); else fitted now and saved there, replacing a fit to other
        weights (in memory only, with one warning, where the run folder cannot be written).
        Thread-safe: one fit per handle."""
        name = samplers.check_sampler(self.model, sampler)
        if not samplers.is_fitted(self.model, name):
            return None
        with self._lock:
            if name not in self._fitted:
                self._fitted[name] = self._read_or_fit(name)
            return self._fitted[name]

    def sampler_file(self, sampler: str) -> Path | None:
        """Where the fitted sampler is kept (None for the model's own prior)."""
        name = samplers.check_sampler(self.model, sampler)
        if not samplers.is_fitted(self.model, name):
            return None
        return sampler_path(self.run_dir, name, self.checkpoint)

    @property
    def weights_id(self) -> str:
        """sha256 of the model's weights (names, dtypes, shapes and bytes of its state
        dict): what a saved sampler was fitted to. Computed once per handle."""
        if self._weights_id is None:
            self._weights_id = weights_sha256(self.model)
        return self._weights_id

    def _read_or_fit(self, name: str):
        path = sampler_path(self.run_dir, name, self.checkpoint)
        want = {"sampler": name, "weights_sha256": self.weights_id}
        saved = read_sampler(path)
        if saved is not None and all(saved[1].get(k) == v for k, v in want.items()):
            return saved[0]  # fitted to these weights (delete the file to fit it again)
        codes, n_train = self._fit_codes(name)  # (N, L)
        t0 = time.perf_counter()
        density = samplers.fit(self.model, name, codes)
        meta = {**want, **density.info(), "density": density.name, "checkpoint": self.checkpoint,
                "settings": samplers.fit_settings(self.model, name),
                "epoch": self.meta.get("epoch"), "dataset": self.config.dataset,
                "training_images": n_train, "codes": len(codes),
                "fit_seconds": round(time.perf_counter() - t0, 3)}
        try:
            save_sampler(path, density, meta)
        except OSError as e:  # a read-only run folder: sample all the same
            if not self._warned:
                self._warned = True
                warnings.warn(f"{e}; the {name} sampler was fitted in memory only and is "
                              "fitted again by the next process", stacklevel=4)
        return density

    def _fit_codes(self, name: str) -> tuple[torch.Tensor, int]:
        """The codes (N, L) float32 on the CPU that sampler `name` is fitted to, of the run's
        training split (all of them, encoded once per handle, or the subset the sampler
        uses, encoded alone), and how many training images there are."""
        train_x, _ = load_dataset(self.config.dataset, "train", self.data_dir,
                                  options=self.config.dataset_options, log=_quiet)
        keep = samplers.fit_subset(name, len(train_x))
        if self._train_codes is None and keep is None:
            self._train_codes = encode_all(self.model, train_x, self.batch_size)
        if self._train_codes is not None:
            return (self._train_codes if keep is None else self._train_codes[keep]), len(train_x)
        return encode_all(self.model, train_x[keep], self.batch_size), len(train_x)

    def _decode(self, z: torch.Tensor, out_device) -> torch.Tensor:
        """Codes (N, L) -> images float32 on out_device, (N, H, W) grey or (N, 3, H, W)."""
        out = self._batched(lambda b: self.model.decode(b.float()), z, (len(z), *self.image_shape),
                            out_device)
        return out[:, 0] if self.image_shape[0] == 1 else out

    def _batched(self, fn, inputs: torch.Tensor, shape: tuple, out_device) -> torch.Tensor:
        """fn over inputs (N, ...) in batches on the model's device, model in eval mode;
        the results fill a float32 tensor of `shape` on out_device. It is made outside
        inference mode, so callers may use it in autograd."""
        out = torch.empty(shape, dtype=torch.float32, device=out_device)
        dev, was_training = self.device, self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for i in range(0, len(inputs), self.batch_size):
                    y = fn(inputs[i : i + self.batch_size].to(dev))
                    out[i : i + len(y)] = y.reshape(len(y), *shape[1:])
        finally:
            self.model.train(was_training)
        return out


def _quiet(*_a) -> None:
    pass


def _one_image(images) -> bool:
    """One image rather than a batch: (28, 28) or (784,), as people hand MNIST digits over."""
    return tuple(images.shape) in ((28, 28), (784,))


def _device_of(array) -> torch.device:
    return array.device if torch.is_tensor(array) else torch.device("cpu")


def _like(given, result: torch.Tensor):
    """numpy if `given` was numpy, else the tensor (already on given's device)."""
    return result if torch.is_tensor(given) else result.numpy()


def _as_codes(codes, latent_dim: int) -> torch.Tensor:
    """Codes (N, L) or one code (L,), numpy or torch, real numbers -> a tensor (N, L)."""
    if isinstance(codes, np.ndarray):
        if codes.dtype.kind not in "uif":  # not strings, objects, complex or bool
            raise AelabError(f"got codes of dtype {codes.dtype}; give real numbers (float)")
        codes = torch.from_numpy(np.require(codes, dtype=np.float64, requirements="CW"))
    elif not torch.is_tensor(codes):
        raise AelabError(f"got codes as {type(codes).__name__}; give a numpy array or a torch "
                         "tensor")
    elif codes.is_complex() or codes.dtype == torch.bool:
        raise AelabError(f"got codes of dtype {str(codes.dtype).removeprefix('torch.')}; "
                         "give real numbers (float)")
    if codes.dim() not in (1, 2) or codes.shape[-1] != latent_dim or len(codes) == 0:
        raise AelabError(f"got codes of shape {tuple(codes.shape)}; this model's codes are "
                         f"(N, {latent_dim}) or one code ({latent_dim},)")
    if not torch.isfinite(codes).all():
        raise AelabError("got codes with NaN or infinite values; give finite numbers")
    return codes.reshape(-1, latent_dim)


def checkpoint_path(run_dir: Path, which: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{which}.safetensors"


def load_run(run_dir, which: str = "best", device: str | torch.device = "cpu", *,
             data_dir=None) -> LoadedRun:
    """Rebuild the model of a run folder from its checkpoint alone (`best` or `last`), on
    `device` ("auto": CUDA, then MPS, then the CPU). `data_dir`: where the run's dataset
    lives, for fitting a sampler to its training codes (default: aelab's data folder)."""
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise AelabError(f"checkpoint must be 'best' or 'last', not {which!r}")
    device = resolve_device(device)
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
    return LoadedRun(model, TrainConfig.from_dict(meta["config"]), meta, run_dir,
                     data_dir=Path(data_dir) if data_dir is not None else None, checkpoint=which)
