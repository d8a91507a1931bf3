"""The fast CPU path: hand-written training steps and the pieces they are made of.

- dense.py: FusedDenseStep, for Linear/ReLU autoencoders ending in a Sigmoid (`linear`);
- conv.py: ConvStep, for Conv/ConvTranspose/ReLU autoencoders ending in a Sigmoid (`conv`);
- convmm.py: small convolutions as matrix products on NHWC memory (ConvStep's ops, and an
  autograd function the general step uses on the CPU);
- flat_adam.py: FlatAdam, Adam's update as one fused-kernel call over one flat vector.

Callers go through `aelab.train.step.make_step`, the one place that decides which step
trains a run; `fused_step` here says which hand-written step fits, or why none does.
"""

from __future__ import annotations

import torch
from torch import nn

from .conv import ConvStep, conv_plan
from .dense import FusedDenseStep, dense_plan
from .flat_adam import FlatAdam

__all__ = ["ConvStep", "FlatAdam", "FusedDenseStep", "conv_plan", "dense_plan", "fused_step",
           "unsupported"]


def unsupported(model: nn.Module, config, device: torch.device, distributed: bool) -> str | None:
    """Why no hand-written step can train this run (None: one can)."""
    if device.type != "cpu":
        return "the hand-written steps are written for the CPU"
    if not hasattr(torch, "_fused_adam_"):
        return "this PyTorch has no fused Adam kernel"
    if hasattr(model, "per_sample_loss"):
        return "the model has its own loss"
    if dense_plan(model) is None and conv_plan(model) is None:
        return "the model is not Linear or Conv/ReLU layers ending in a Sigmoid"
    if distributed or config.cuda_graphs or config.compile or config.precision != "fp32":
        return "distributed, compiled or bf16 training uses autograd"
    if config.loss not in ("mse", "bce") or config.optimizer not in ("adam", "adamw"):
        return "only MSE/BCE with Adam/AdamW"
    return None


def fused_step(model: nn.Module, optimizer, config, device: torch.device, distributed: bool,
               note=print):
    """(the hand-written step, None) where one covers this run, else (None, the reason)."""
    why = unsupported(model, config, device, distributed)
    if why is not None:
        return None, why
    cls = FusedDenseStep if dense_plan(model) is not None else ConvStep
    try:
        return cls(model, optimizer, config.loss, config.grad_clip, note=note), None
    except ValueError as e:  # e.g. a layout or shape the hand-written step cannot take
        return None, str(e)
