"""aelab's own MNIST classifier: the feature network of the Fréchet distance (apps/frechet.py).

Inception was trained on ImageNet photographs, not 28x28 digits, so samples are scored with a small
convnet trained here: its 128-d penultimate layer gives the features. The weights ship inside
the package (CLASSIFIER_FILE, safetensors, checked against CLASSIFIER_SHA256 on load), so every
score is computed with the very same network; `aelab baseline classifier` retrains it with the
recipe below (deterministic: a fixed seed and data order; bit-identical weights need the same
CPU kind, torch version and thread count, since convolution kernels round by those).
"""

from __future__ import annotations

import hashlib
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from .._io import atomic_write_bytes, atomic_write_json
from ..data import load_dataset
from ..data.batches import as_images, epoch_generator, images_to_float, to_float
from ..errors import AelabError
from ..runtime import cpu_model, flushing_denormals

CLASSIFIER_FILE = Path(__file__).parent / "weights" / "mnist_classifier.safetensors"
CLASSIFIER_SHA256 = "e55f1f6f2b5a1d96c578378810ef6197fc8020e2db9732fdc6d26e6799ddd345"
FEATURE_DIM = 128

# The training recipe: AdamW under a one-cycle schedule, batch 128, random shifts of up to
# SHIFT pixels; all 60,000 training images, measured on the 10,000 test images.
EPOCHS = 8
BATCH_SIZE = 128
MAX_LR = 3e-3
WEIGHT_DECAY = 5e-4
SHIFT = 2
SEED = 0
RETRAIN = "reinstall aelab or retrain with `aelab baseline classifier`"

_MNIST_MEAN, _MNIST_STD = 0.1307, 0.3081  # pixel statistics of the MNIST training set


class MnistClassifier(nn.Module):
    """conv5-32, pool, conv5-64, pool, conv3-128, global average pool -> 128 features -> 10."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Float images (N, 1, 28, 28) in [0, 1] -> (N, 128), the Fréchet features."""
        h = self.body((x - _MNIST_MEAN) / _MNIST_STD)  # (N, 128, 7, 7)
        return h.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, 10) logits


# --- loading the shipped weights --------------------------------------------------------

_CACHE: dict[str, MnistClassifier] = {}  # sha256 -> model, verified once per process


def load_classifier(path=None, sha256: str | None = None) -> MnistClassifier:
    """The classifier in eval mode, from the shipped file or `path`, refused unless the file's
    sha256 is `sha256` (default: CLASSIFIER_SHA256, the shipped weights). Safetensors only,
    never a pickle. The file is hashed on every call; the model is built once per content."""
    path = Path(path) if path is not None else CLASSIFIER_FILE
    expected = sha256 or CLASSIFIER_SHA256
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AelabError(f"cannot read the classifier weights {path}: {e.strerror or e}; {RETRAIN}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise AelabError(f"the classifier weights {path} have sha256 {digest[:12]}..., expected "
                         f"{expected[:12]}... (corrupt, or another network); {RETRAIN}")
    if digest not in _CACHE:
        model = MnistClassifier()
        try:
            model.load_state_dict(load_safetensors(data))
        except (SafetensorError, RuntimeError) as e:  # right hash, wrong contents: a bad constant
            raise AelabError(f"the classifier weights {path} do not fit MnistClassifier ({e}); "
                             f"{RETRAIN}") from None
        _CACHE[digest] = model.eval().requires_grad_(False)
    return _CACHE[digest]


@torch.inference_mode()
def classifier_features(images, batch_size: int = 1000) -> np.ndarray:
    """Features (N, 128) float64 of the shipped classifier, for images as aelab takes them:
    uint8 0..255 or float in [0, 1], (N, 28, 28) or (N, 1, 28, 28), numpy or torch."""
    model = load_classifier()
    x = as_images(images).cpu()  # (N, 28, 28)
    out = [model.features(images_to_float(x[i : i + batch_size])).double()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


@torch.inference_mode()
def accuracy(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1000) -> float:
    """Fraction of uint8 images (N, 28, 28) classified as their labels; model left as it was."""
    was_training = model.training
    model.eval()
    correct = sum((model(to_float(images_u8[i : i + batch_size])).argmax(1)
                   == labels[i : i + batch_size]).sum().item()
                  for i in range(0, len(images_u8), batch_size))
    model.train(was_training)
    return correct / len(images_u8)


# --- training -------------------------------------------------------------------------


def shift(x: torch.Tensor, gen: torch.Generator, pixels: int = SHIFT) -> torch.Tensor:
    """Each image (B, 1, 28, 28) moved by its own random offset of up to `pixels` along each
    axis, zeros shifted in: a crop of the zero-padded batch at offsets in 0..2*pixels."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4)  # (B, 1, 28 + 2p, 28 + 2p)
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, b, 1), generator=gen)  # (B, 1) each
    rows, cols = dy + torch.arange(h), dx + torch.arange(w)  # (B, 28): the kept rows / columns
    return padded[torch.arange(b)[:, None, None], 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def _train_epoch(model, opt, sched, images_u8, labels, gen) -> float:
    """One pass in a shuffled order drawn from `gen`; returns the mean training loss."""
    model.train()
    order = torch.randperm(len(images_u8), generator=gen)
    total = 0.0
    for i in range(0, len(order), BATCH_SIZE):
        idx = order[i : i + BATCH_SIZE]
        loss = F.cross_entropy(model(shift(to_float(images_u8[idx]), gen)), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
    return total / len(order)


def train_classifier(out_path, *, data_dir=None, epochs: int = EPOCHS, seed: int = SEED,
                     limit: int | None = None, log=print) -> dict:
    """Train MnistClassifier with the recipe above on the MNIST training images and measure it
    on the test images (the first `limit` of each, for tests); write its weights to `out_path`
    (safetensors) and a JSON beside it (recipe, test accuracy, time, machine); returns that
    JSON's contents."""
    if epochs < 1:
        raise AelabError(f"invalid epochs={epochs}: must be a whole number >= 1 (the recipe uses {EPOCHS})")
    if limit is not None and limit < BATCH_SIZE:
        raise AelabError(f"invalid limit={limit}: give at least one batch ({BATCH_SIZE} images)")
    out_path = Path(out_path)
    train_x, train_y = load_dataset("mnist", "train", data_dir=data_dir, log=log)
    test_x, test_y = load_dataset("mnist", "test", data_dir=data_dir, log=log)
    train_x, train_y, test_x, test_y = train_x[:limit], train_y[:limit], test_x[:limit], test_y[:limit]
    with torch.random.fork_rng():  # the initial weights depend on the seed alone
        torch.manual_seed(seed)
        model = MnistClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=MAX_LR, weight_decay=WEIGHT_DECAY)
    steps = epochs * -(-len(train_x) // BATCH_SIZE)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=MAX_LR, total_steps=steps)
    start = time.perf_counter()
    epoch_seconds = []
    with flushing_denormals():  # speed, and the same bytes as under the `aelab` command
        for epoch in range(epochs):
            t0 = time.perf_counter()
            loss = _train_epoch(model, opt, sched, train_x, train_y, epoch_generator(seed, epoch))
            epoch_seconds.append(round(time.perf_counter() - t0, 1))
            acc = accuracy(model, test_x, test_y)
            log(f"epoch {epoch + 1:2d}/{epochs}  train loss {loss:.4f}  test accuracy {acc:.2%}  "
                f"{epoch_seconds[-1]:.0f} s")
    seconds = time.perf_counter() - start
    data = save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()})
    atomic_write_bytes(out_path, data)
    info = {"test_accuracy": acc, "test_images": len(test_x), "seconds": round(seconds, 1),
            "epoch_seconds": epoch_seconds, "params": sum(p.numel() for p in model.parameters()),
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "recipe": {"epochs": epochs, "batch_size": BATCH_SIZE, "optimizer": "AdamW",
                       "schedule": "OneCycleLR", "max_lr": MAX_LR, "weight_decay": WEIGHT_DECAY,
                       "shift_pixels": SHIFT, "seed": seed, "train_images": len(train_x)},
            "cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}
    atomic_write_json(out_path.with_suffix(".json"), info)
    return info
