"""One training step, and the one door that chooses it.

A Step is called with the model's input and the clean target, both (B, 1, 28, 28) float32,
and optional per-image weights (B,) (the padded batches of --cuda-graphs); it does the
forward pass, the backward pass and the optimizer update, and returns the batch's mean
loss as a 0-dim tensor without synchronising the device.

`make_step` is the only place that decides how a run trains:
- with `fast` on (the default), a hand-written CPU step from aelab.train.fast where one
  covers the model and settings (`fused-dense`, `fused-conv`);
- otherwise `autograd`: the loss through autograd (with, on the CPU and with `fast` on,
  small convolutions as matrix products and FlatAdam's one-call update), wrapped in DDP
  under torchrun and in torch.compile / CUDA graphs when asked.
`fast=False` (`aelab train --no-fast`) turns every hand-written path off at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .distributed import Dist
from .fast import FlatAdam, convmm, fused_step


def _plain_strides_where_layouts_agree(model: nn.Module) -> None:
    """Give NCHW strides to the 4-d parameters whose channels_last memory is the same as
    NCHW's (a channel or spatial size of 1, like the first convolution's [16, 1, 3, 3]).
    Their gradients come back with NCHW strides, and DDP builds its buckets after the
    parameters' strides: a mismatch warned "Grad strides do not match bucket view
    strides" in every process and copied each such gradient, every step."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 4 and p.is_contiguous() and p.stride() != _nchw_strides(p.shape):
                p.data = p.data.clone(memory_format=torch.contiguous_format)


def _nchw_strides(shape) -> tuple:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


class Objective(nn.Module):
    """Per-image training loss (B,). A model may define its own `per_sample_loss(x_in, x)`
    (the VAE's negative ELBO); otherwise it is the reconstruction loss, mean over pixels.
    Wrapping this (not the bare model) in DDP or torch.compile covers the whole loss.
    `convmm_layers` (from convmm.plan) computes the model through aelab's convolutions as
    matrix products (the same function; CPU, float32 only)."""

    def __init__(self, model: nn.Module, loss: str, precision: str, convmm_layers=None):
        super().__init__()
        self.model, self.loss = model, loss
        self.bf16 = precision == "bf16"
        self.layers = convmm_layers

    def forward(self, x_in: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "per_sample_loss"):
            return self.model.per_sample_loss(x_in, x, autocast_bf16=self.bf16)
        if self.layers is not None:
            out = convmm.forward(self.layers, x_in)
            return self._per_image(out, x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(x_in)
        return self._per_image(out.float(), x)  # the loss in float32 (BCE refuses autocast)

    def _per_image(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.loss == "bce":
            per_pixel = F.binary_cross_entropy(out, x, reduction="none")
        else:
            per_pixel = (out - x).square()
        return per_pixel.flatten(1).mean(1)


def make_optimizer(model: nn.Module, config, device: torch.device):
    """Adam(W) with the fused kernel where this torch has it for the device: one pass over
    all parameters per step (measured 1.4x faster steps for `linear` on CPU than foreach)."""
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    kw = dict(lr=config.lr, weight_decay=config.weight_decay)
    if device.type in ("cuda", "cpu"):
        try:
            return cls(model.parameters(), fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):  # older torch: no fused kernel on CPU
            pass
    return cls(model.parameters(), **kw)


class AutogradStep:
    """The general step: Objective through autograd, then the optimizer (FlatAdam's
    one-call update over the same state where it applies, else torch.optim)."""

    name = "autograd"

    def __init__(self, objective, model: nn.Module, optimizer, grad_clip: float | None,
                 flat_adam: FlatAdam | None = None):
        self.objective, self.model, self.optimizer = objective, model, optimizer
        self.grad_clip, self.adam = grad_clip, flat_adam

    def __call__(self, x_in: torch.Tensor, x: torch.Tensor, weights=None) -> torch.Tensor:
        per_image = self.objective(x_in, x)  # (B,)
        loss = per_image.mean() if weights is None else (per_image * weights).sum() / weights.sum()
        if self.adam is not None:  # grads accumulate into the zeroed flat buffer
            self.adam.zero_grad()
        else:
            self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.adam is not None:
            self.adam.step()
        else:
            self.optimizer.step()
        return loss.detach()


@dataclass
class StepChoice:
    """What make_step chose: the step, and what a run folder records about it."""

    step: object
    fast_refused: str | None  # why no hand-written step trains this run (None: one does)
    detail: str  # the parts of the step, for people

    @property
    def name(self) -> str:
        return self.step.name

    def record(self) -> dict:
        """The keys config.json and checkpoint metadata carry (aelab.runs.STEP_KEYS)."""
        adam = getattr(self.step, "adam", None)
        detail = self.detail
        if adam is not None and adam.fallback is not None:
            detail += f"; torch.optim after the fused kernel failed ({adam.fallback})"
        return {"step": self.name, "step_detail": detail, "fast_refused": self.fast_refused}


def make_step(model: nn.Module, optimizer, config, device: torch.device, dist: Dist,
              note=print) -> StepChoice:
    """The one door: the step that trains this run. Called after a resume has restored
    the optimizer's state, which a hand-written step or FlatAdam takes over."""
    if config.fast:
        step, refused = fused_step(model, optimizer, config, device, dist.enabled, note)
        if step is not None:
            return StepChoice(step, None, "hand-written forward, backward and FlatAdam update")
    else:
        refused = "turned off (fast=false, aelab train --no-fast)"
    on_cpu = device.type == "cpu"
    fp32 = config.precision == "fp32"
    layers = convmm.plan(model) if config.fast and on_cpu and fp32 else None
    objective = Objective(model, config.loss, config.precision, layers)
    if dist.enabled:
        _plain_strides_where_layouts_agree(model)
        objective = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None)
    if config.cuda_graphs:
        # reduce-overhead = CUDA graphs; every batch has the same shape (see Trainer.batches)
        objective = torch.compile(objective, mode="reduce-overhead")
    elif config.compile:
        objective = torch.compile(objective)
    flat = None
    if config.fast and on_cpu and not dist.enabled:
        try:
            flat = FlatAdam(optimizer, note)
        except ValueError:  # e.g. a parameter layout it cannot flatten: torch.optim
            flat = None
    parts = ["autograd"]
    if layers is not None:
        parts.append("convolutions as matrix products (convmm)")
    parts.append("FlatAdam update" if flat is not None else "torch.optim update")
    if dist.enabled:
        parts.append(f"DDP over {dist.world} processes")
    if config.cuda_graphs or config.compile:
        parts.append("CUDA graphs" if config.cuda_graphs else "torch.compile")
    return StepChoice(AutogradStep(objective, model, optimizer, config.grad_clip, flat),
                      refused, ", ".join(parts))
