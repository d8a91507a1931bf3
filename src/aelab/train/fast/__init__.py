"""The fast CPU path: hand-written training steps and the pieces they are made of.

- dense.py: FusedDenseStep, for Linear/ReLU autoencoders ending in a Sigmoid (`linear`);
- conv.py: ConvStep, for Conv/ConvTranspose/ReLU autoencoders ending in a Sigmoid (`conv`);
- convmm.py: small convolutions as matrix products on NHWC memory (ConvStep's ops, and an
  autograd function the general step uses on the CPU);
- flat_adam.py: FlatAdam, Adam's update as one fused-kernel call over one flat vector;
- proof.py: `prove`, the comparison of a hand-written forward with the model's own.

Callers go through `aelab.train.step.make_step`, the one place that decides which step
trains a run; `fused_step` here says which hand-written step fits, or why none does. A
model's spec (aelab.models.contract) may hint at a layout (fast_path); the hint is never
trusted: the layers are checked, and the hand-written forward must equal model(x) on a
probe batch, before a hand-written step is used.
"""

from __future__ import annotations

import torch
from torch import nn

from ...models.contract import fast_path, spec
from .conv import ConvStep, conv_forward, conv_plan
from .dense import FusedDenseStep, dense_forward, dense_plan
from .flat_adam import FlatAdam
from .proof import prove

__all__ = ["ConvStep", "FlatAdam", "FusedDenseStep", "conv_plan", "dense_plan", "fused_step",
           "prove", "unsupported"]

NOT_A_STACK = "the model is not Linear or Conv/ReLU layers ending in a Sigmoid"


def unsupported(model: nn.Module, config, device: torch.device, distributed: bool) -> str | None:
    """Why no hand-written step can train this run, from its settings and the model's
    structure (None: one can, if its forward also passes `prove`)."""
    if device.type != "cpu":
        return "the hand-written steps are written for the CPU"
    if not hasattr(torch, "_fused_adam_"):  # PyTorch's, not the model's
        return "this PyTorch has no fused Adam kernel"
    if spec(model).own_loss:
        return "the model has its own loss terms"
    hint, voided = fast_path(model)
    if voided is not None:
        return f"the hand-written layout its model_spec declares does not hold: {voided}"
    if dense_plan(model) is None and conv_plan(model) is None:
        return NOT_A_STACK if hint is None else f"{NOT_A_STACK} (its model_spec says fast_path={hint!r})"
    if distributed or config.cuda_graphs or config.compile or config.precision != "fp32":
        return "distributed, compiled or bf16 training uses autograd"
    if config.loss not in ("mse", "bce") or config.optimizer not in ("adam", "adamw"):
        return "only MSE/BCE with Adam/AdamW"
    return None


def fused_step(model: nn.Module, optimizer, config, device: torch.device, distributed: bool,
               note=print):
    """(the hand-written step, None) where one covers this run and computes the model's own
    forward (checked on a probe batch, before anything is changed), else (None, the reason)."""
    why = unsupported(model, config, device, distributed)
    if why is not None:
        return None, why
    plan = dense_plan(model)
    if plan is not None:
        cls, why = FusedDenseStep, prove(model, lambda x: dense_forward(plan, x))
    else:
        layers = conv_plan(model)
        cls, why = ConvStep, prove(model, lambda x: conv_forward(layers, x))
    if why is not None:
        return None, why
    try:
        return cls(model, optimizer, config.loss, config.grad_clip, note=note), None
    except ValueError as e:  # e.g. a layout or shape the hand-written step cannot take
        return None, str(e)
