"""Training configuration: one frozen dataclass, defaults in one place (the seed's settings)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import AelabError

DEVICES = ("auto", "cpu", "cuda", "mps")
LOSSES = ("mse", "bce")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
PRECISIONS = ("fp32", "bf16")
NOISES = ("gaussian", "masking")
BINARIZE = ("none", "dynamic", "static")


@dataclass(frozen=True)
class TrainConfig:
    """Everything needed to repeat a training run. Defaults are the seed tutorial's."""

    model: str = "linear"
    model_args: dict = field(default_factory=dict)
    dataset: str = "mnist"  # a registered name, or a path (aelab.data.load_dataset)
    dataset_options: dict = field(default_factory=dict)  # for a path, e.g. {"transpose": True}
    epochs: int = 13
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    device: str = "auto"
    limit: int | None = None  # train on the first N training images only
    figure_every: int = 4  # reconstruction figures after epochs 1, 1+k, 1+2k, ... and the last
    eval_batch_size: int = 1000
    # Beyond the seed: all off by default, so the defaults stay the tutorial's.
    loss: str = "mse"  # reconstruction loss, mean over pixels; evaluation always reports MSE
    optimizer: str = "adam"
    schedule: str = "constant"  # learning rate per step: constant, cosine to 0, or one-cycle
    grad_clip: float | None = None  # clip the global gradient norm to this
    val_split: int = 0  # hold out the last N training images; `best` is then chosen on them
    binarize: str = "none"  # "dynamic": Bernoulli(pixel) resampled per draw; "static": once
    noise: str | None = None  # denoising: "gaussian:SIGMA" or "masking:P" corrupts the input
    exclude_digits: list = field(default_factory=list)  # leave these labels out of training
    precision: str = "fp32"  # "bf16": autocast forward passes to bfloat16
    compile: bool = False  # torch.compile the model
    cuda_graphs: bool = False  # CUDA only: fixed-shape steps captured as CUDA graphs
    fast: bool = True  # the hand-written CPU paths (aelab.train.fast); False: plain autograd
    tensorboard: bool = False  # also write RUN_DIR/tensorboard/ event files (optional package)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        def bad(name, why):
            raise AelabError(f"invalid {name}={getattr(self, name)!r}: {why}")

        for name in ("epochs", "batch_size", "figure_every", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "must be a whole number >= 1")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            bad("limit", "must be a whole number >= 1, or omitted for the whole training set")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            bad("lr", "must be a finite number > 0")
        wd = self.weight_decay
        if not (isinstance(wd, (int, float)) and math.isfinite(wd) and wd >= 0):
            bad("weight_decay", "must be a finite number >= 0")
        if self.device not in DEVICES:
            bad("device", f"choose one of {', '.join(DEVICES)}")
        if not isinstance(self.model_args, dict):
            bad("model_args", "must be a JSON object")
        if not isinstance(self.dataset, str) or not self.dataset:
            bad("dataset", "must be a registered name (mnist, fashion-mnist) or a path")
        if not isinstance(self.dataset_options, dict):
            bad("dataset_options", "must be a JSON object, e.g. {\"transpose\": true}")
        for name, choices in (("loss", LOSSES), ("optimizer", OPTIMIZERS),
                              ("schedule", SCHEDULES), ("precision", PRECISIONS),
                              ("binarize", BINARIZE)):
            if getattr(self, name) not in choices:
                bad(name, f"choose one of {', '.join(choices)}")
        for name in ("compile", "cuda_graphs", "fast", "tensorboard"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be true or false")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            bad("grad_clip", "must be a finite number > 0, or omitted")
        # the upper limits depend on the dataset: the trainer checks them against its sizes
        if not isinstance(self.val_split, int) or isinstance(self.val_split, bool) or self.val_split < 0:
            bad("val_split", "must be a whole number of images, 0 or more")
        if self.noise is not None:
            parse_noise(self.noise)
        if any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in self.exclude_digits):
            bad("exclude_digits", "must be class numbers 0 or more (0 to 9 for MNIST)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Rebuild from JSON; unknown keys are an error, not silently ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AelabError(
                f"unknown training config keys {unknown}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def figure_epochs(self) -> list[int]:
        """The seed drew figures every 4 epochs: after epochs 1, 5, 9 and 13 by default."""
        epochs = set(range(1, self.epochs + 1, self.figure_every))
        epochs.add(self.epochs)
        return sorted(epochs)


def parse_noise(spec: str) -> tuple[str, float]:
    """'gaussian:0.3' -> ("gaussian", 0.3): additive N(0, 0.3^2) noise, clipped to [0, 1];
    'masking:0.5' -> ("masking", 0.5): each pixel set to 0 with probability 0.5."""
    kind, _, value = spec.partition(":")
    try:
        amount = float(value)
    except ValueError:
        amount = math.nan
    if kind not in NOISES or not math.isfinite(amount) or amount <= 0 or \
            (kind == "masking" and amount >= 1):
        raise AelabError(f"invalid noise {spec!r}: use gaussian:SIGMA (SIGMA > 0) or "
                         "masking:P (0 < P < 1), e.g. gaussian:0.3")
    return kind, amount


DEFAULTS = TrainConfig()
