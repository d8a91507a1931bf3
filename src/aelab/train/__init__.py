"""Training: one loop (trainer.py) calling one Step (step.py, whose `make_step` is the only
place that picks the step: autograd, or a hand-written CPU step from fast/), and the
torchrun helpers (distributed.py)."""

from .trainer import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult, resume, train

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "TrainingInterrupted", "resume", "train"]
