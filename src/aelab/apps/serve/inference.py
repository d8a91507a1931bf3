"""The models served and what the page needs of them: inference on single images and codes,
the latent map (test codes in 2-D) and the slider directions, computed once at start-up,
the test images behind the map, and decoded samples from each model's samplers. Each model
takes and makes images of its run's shape (C, H, W); the API carries them flat, C*H*W
numbers, channels first, row-major."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...data import is_registered, load_dataset
from ...data.batches import encode_all, to_float
from ...errors import AelabError
from ...runs import load_run
from . import MAP_SIZE
from .schemas import ImageEnd, RequestError, image_text, shape_name

MAX_SLIDERS = 8  # above this many code numbers the sliders follow principal directions
IMAGE_DIGITS = 4  # decimals sent per pixel: finer than one 8-bit grey level (1/255)
ENCODE_CHUNK = 500  # test images encoded at once: 10,000 at once take hundreds of MB


@dataclass
class Projection:
    """A k-dimensional view of the codes: code = mean + coords @ axes (axes orthonormal)."""

    kind: str  # "code": the code's own axes; "pca": principal directions of the test codes
    mean: torch.Tensor  # (D,)
    axes: torch.Tensor  # (k, D)
    explained: list | None  # fraction of the codes' variance along each axis (pca only)

    def coords(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes - self.mean) @ self.axes.T  # (N, D) -> (N, k)


def project_codes(codes: torch.Tensor, k: int) -> Projection:
    """The codes themselves when they have at most k numbers, else their top-k PCA."""
    n_dim = codes.shape[1]
    if n_dim <= k:
        return Projection("code", torch.zeros(n_dim), torch.eye(n_dim), None)
    mean = codes.mean(0)
    _, s, vh = torch.linalg.svd(codes - mean, full_matrices=False)
    axes = vh[:k]
    # SVD signs are arbitrary; fix them so the map and sliders do not flip between restarts
    signs = axes.gather(1, axes.abs().argmax(1, keepdim=True)).sign()
    var = s.square()
    return Projection("pca", mean, axes * signs, (var[:k] / var.sum()).tolist())


def unique_ids(run_dirs) -> list[str]:
    """Each run's folder name, with -2, -3, ... added where names repeat."""
    ids: list[str] = []
    for d in run_dirs:
        base = Path(d).resolve().name or "run"
        name, n = base, 1
        while name in ids:
            n += 1
            name = f"{base}-{n}"
        ids.append(name)
    return ids


def pixels_out(images: torch.Tensor) -> np.ndarray:
    """(..., C, H, W) tensor -> float32 array (..., C*H*W), channels first and row-major,
    rounded to IMAGE_DIGITS decimals."""
    return np.round(images.reshape(*images.shape[:-3], -1).numpy(), IMAGE_DIGITS)


def images_shape(images_u8: torch.Tensor) -> tuple[int, int, int]:
    """(C, H, W) of dataset images: uint8 (N, H, W) grey or (N, 3, H, W) colour."""
    return (1, *images_u8.shape[1:]) if images_u8.ndim == 3 else tuple(images_u8.shape[1:])


class Model:
    """One loaded run: inference on single images and codes, plus its map and slider data."""

    def __init__(self, model_id: str, run, images_u8: torch.Tensor, labels: torch.Tensor):
        self.id, self.run, self.net = model_id, run, run.model
        self.latent_dim = int(run.model.latent_dim)
        self.image_shape = tuple(run.image_shape)  # (C, H, W)
        self.pixels = math.prod(self.image_shape)  # an image's numbers in the API: C*H*W
        self.test_images, self.test_labels = images_u8, labels  # the map's points, in order
        codes = encode_all(self.net, images_u8, batch_size=ENCODE_CHUNK)
        self.sliders = project_codes(codes, MAX_SLIDERS)
        self.plane = project_codes(codes, 2)
        self.map_json = self._map_json(self.plane.coords(codes), labels)
        self.directions_json = self._directions_json(self.sliders.coords(codes))

    def info(self) -> dict:
        meta = self.run.meta
        return {"id": self.id, "model": self.run.config.model,
                "dataset": _dataset_name(self.run.config.dataset), "latent_dim": self.latent_dim,
                "epoch": meta.get("epoch"),
                "test_mse": (meta.get("metrics") or {}).get("test_mse"),
                "sliders": {"kind": self.sliders.kind, "count": int(self.sliders.axes.shape[0])},
                "map": {"kind": self.plane.kind}, "samplers": list(self.run.samplers),
                "image_shape": list(self.image_shape), "test_images": len(self.test_images)}

    def test_image(self, index: int) -> dict:
        """Test image `index` (the latent map's point `index`), as the API sends images."""
        if not 0 <= index < len(self.test_images):
            raise RequestError(f"model {self.id!r} has {len(self.test_images)} test images: "
                               f"give an index from 0 to {len(self.test_images) - 1}", status=404)
        image = to_float(self.test_images[index : index + 1])[0]  # (C, H, W)
        return {"model": self.id, "index": index, "label": int(self.test_labels[index]),
                "image": pixels_out(image)}

    def _map_json(self, xy: torch.Tensor, labels: torch.Tensor) -> dict:
        if xy.shape[1] < 2:  # a 1-number code: the map is a line
            xy = torch.cat([xy, torch.zeros(len(xy), 2 - xy.shape[1])], 1)
        lo, hi = xy.min(0).values, xy.max(0).values
        return {"model": self.id, "kind": self.plane.kind, "explained": self.plane.explained,
                "bounds": [lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item()],
                "points": xy.numpy().round(4), "labels": labels.numpy()}

    def _directions_json(self, coords: torch.Tensor) -> dict:
        lo, hi = coords.min(0).values, coords.max(0).values
        pad = 0.1 * (hi - lo)
        return {"model": self.id, "kind": self.sliders.kind, "mean": self.sliders.mean.numpy(),
                "directions": self.sliders.axes.contiguous().numpy(),
                "low": (lo - pad).numpy(), "high": (hi + pad).numpy(),
                "explained": self.sliders.explained}

    def _code(self, code: np.ndarray) -> torch.Tensor:
        if code.size != self.latent_dim:
            raise RequestError(f"code has {code.size} numbers but model {self.id!r} takes "
                               f"{self.latent_dim}", loc=("body", "code"))
        return torch.from_numpy(code)

    def encode(self, pixels: np.ndarray) -> torch.Tensor:
        """C*H*W numbers, channels first and row-major (the request models checked them)
        -> the code (D,)."""
        if pixels.size != self.pixels:  # an image checked for another model's shape
            raise RequestError(f"model {self.id!r} takes images of {image_text(self.image_shape)}; "
                               f"got {pixels.size} numbers", loc=("body", "image"))
        with torch.inference_mode():
            return self.net.encode(torch.from_numpy(pixels).view(1, *self.image_shape))[0]

    def decode_many(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, D) -> images (B, C, H, W) in [0, 1]."""
        with torch.inference_mode():  # sanitised so a response can never hold NaN
            images = self.net.decode(codes).float().reshape(len(codes), *self.image_shape)
            return torch.nan_to_num(images, 0.0).clamp(0, 1)

    def decode(self, code: np.ndarray) -> torch.Tensor:
        return self.decode_many(self._code(code).view(1, -1))[0]

    def reconstruct(self, pixels: np.ndarray) -> dict:
        code = self.encode(pixels)
        image = self.decode_many(code.view(1, -1))[0]
        return {"model": self.id, "code": code.numpy(), "image": pixels_out(image)}

    def sample(self, sampler: str, n: int, seed: int) -> dict:
        """n decoded random codes: LoadedRun.sample_codes, so a fitted sampler is fitted
        here on first use (seconds or more: call it off the event loop) and then kept in
        the run folder."""
        codes = self.run.sample_codes(n, sampler=sampler, seed=seed, as_numpy=False)  # (n, D)
        return {"model": self.id, "sampler": sampler, "seed": seed, "codes": codes.numpy(),
                "images": pixels_out(self.decode_many(codes))}

    def plane_code(self, point: np.ndarray) -> torch.Tensor:
        k = self.plane.axes.shape[0]
        return self.plane.mean + torch.from_numpy(point[:k]) @ self.plane.axes  # (D,)

    def endpoint_code(self, end) -> torch.Tensor:
        """`end`: a schemas.ImageEnd (encoded first) or a code end (its .code)."""
        return self.encode(end.image) if isinstance(end, ImageEnd) else self._code(end.code)

    def interpolate(self, start, end, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.endpoint_code(start), self.endpoint_code(end)
        t = torch.linspace(0, 1, steps).view(-1, 1)
        codes = (1 - t) * a + t * b  # (steps, D)
        return codes, self.decode_many(codes)


class Explorer:
    """The models served, by id, fixed at start-up."""

    def __init__(self, models: list[Model]):
        self.models = {m.id: m for m in models}

    def get(self, model_id: str) -> Model:
        """The model `model_id`; the API's request models have already checked that it is
        one of these (a RequestError here is a 422 all the same)."""
        if model_id not in self.models:
            raise RequestError(f"unknown model {model_id[:100]!r}; loaded models: "
                               f"{', '.join(self.models)}", loc=("body", "model"))
        return self.models[model_id]


def _dataset_name(dataset: str) -> str:
    """A registered name as it is; a dataset given by path by its last part only (no file
    paths leave the server)."""
    return dataset if is_registered(dataset) else Path(dataset).name


def load_explorer(run_dirs, checkpoint: str = "best", data_dir=None,
                  map_size: int = MAP_SIZE, dataset: str | None = None,
                  dataset_options: dict | None = None) -> Explorer:
    """Load every run and its test-set slice; AelabError says which run or dataset failed."""
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise AelabError("give at least one run folder to serve")
    if not 10 <= map_size <= 10_000:
        raise AelabError(f"map size {map_size}: use 10 to 10,000 test images")
    test_sets: dict = {}
    models = []
    for model_id, d in zip(unique_ids(run_dirs), run_dirs, strict=True):
        run = load_run(d, checkpoint, device="cpu", data_dir=data_dir)  # data: fitted samplers
        name, options = ((dataset, dataset_options) if dataset is not None
                         else (run.config.dataset, run.config.dataset_options))
        key = (name, json.dumps(options or {}, sort_keys=True))
        if key not in test_sets:
            x, y = load_dataset(name, "test", data_dir=data_dir, options=options)
            test_sets[key] = (x[:map_size], y[:map_size])
        shape = images_shape(test_sets[key][0])
        if shape != tuple(run.image_shape):
            raise AelabError(f"{d}: the model takes {shape_name(run.image_shape)} images but "
                             f"the test images of {_dataset_name(name)} are {shape_name(shape)}: "
                             "serve it with a dataset of its own shape (or its own, without "
                             "--dataset)")
        models.append(Model(model_id, run, *test_sets[key]))
    return Explorer(models)
