"""Training configuration: one frozen dataclass, defaults in one place (the seed's settings)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import AelabError

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    """Everything needed to repeat a training run. Defaults are the seed tutorial's."""

    model: str = "linear"
    model_args: dict = field(default_factory=dict)
    dataset: str = "mnist"
    epochs: int = 13
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    device: str = "auto"
    limit: int | None = None  # train on the first N training images only
    figure_every: int = 4  # reconstruction figures after epochs 1, 1+k, 1+2k, ... and the last
    eval_batch_size: int = 1000

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


DEFAULTS = TrainConfig()
