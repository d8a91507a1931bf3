"""One training step, and the one door that chooses it.

A Step is called with the model's input and the clean target, both (B, C, H, W) float32,
and optional per-image weights (B,) (the padded batches of --cuda-graphs); it does the
forward pass, the backward pass and the optimizer update, and returns, without
synchronising the device, the batch's mean loss as a 0-dim tensor where the model's loss is
its one term (a reconstruction loss), else a (1 + T,) tensor: the mean loss, then the batch
mean of each of the T loss terms its spec names (StepChoice.terms), e.g. [loss, recon, kl];
a model's own step adds the M monitors its spec names: (1 + T + M,).

`make_step` is the only place that decides how a run trains:
- a model whose spec declares `custom_step` trains through its own `make_step` (`custom`);
- with `fast` on (the default), a hand-written CPU step from aelab.train.fast where one
  covers the model and settings and computes the model's own forward, compared on a probe
  batch once, here (`fused-dense`, `fused-conv`);
- otherwise `autograd`: the loss through autograd (with, on the CPU and with `fast` on,
  small convolutions as matrix products where they too pass the comparison, and FlatAdam's
  one-call update), wrapped in DDP under torchrun and in torch.compile / CUDA graphs when
  asked.
`fast=False` (`aelab train --no-fast`) turns every hand-written path off at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..errors import AelabError
from ..models.contract import loss_weights, spec
from .distributed import Dist
from .fast import FlatAdam, convmm, fused_step, prove


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
    """The training loss's terms per image, (B, T) in the order of the model's spec
    (aelab.models.contract): those its `loss_terms(x_in, x)` returns (the VAE's recon and
    kl), or the one reconstruction term, mean over pixels, of `loss` ("mse" or "bce").
    Wrapping this (not the bare model) in DDP or torch.compile covers the whole loss.
    `convmm_layers` (from convmm.plan) computes the model through aelab's convolutions as
    matrix products (the same function; CPU, float32 only)."""

    def __init__(self, model: nn.Module, loss: str, precision: str, convmm_layers=None):
        super().__init__()
        self.model, self.loss = model, loss
        self.bf16 = precision == "bf16"
        self.layers = convmm_layers
        model_spec = spec(model)
        self.own, self.terms = model_spec.own_loss, model_spec.terms

    def forward(self, x_in: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.own:
            terms = self.model.loss_terms(x_in, x, autocast_bf16=self.bf16)
            return torch.stack([terms[name] for name in self.terms], 1)  # (B, T)
        if self.layers is not None:
            out = convmm.forward(self.layers, x_in)
            return self._per_image(out, x).unsqueeze(1)  # (B, 1)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(x_in)
        return self._per_image(out.float(), x).unsqueeze(1)  # the loss in float32 (BCE refuses autocast)

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
    one-call update over the same state where it applies, else torch.optim).
    `term_weights` (T,): the loss per image is the terms' weighted sum; None: the one term
    with weight 1 is the loss, and the step returns the loss alone."""

    name = "autograd"

    def __init__(self, objective, model: nn.Module, optimizer, grad_clip: float | None,
                 flat_adam: FlatAdam | None = None, term_weights: torch.Tensor | None = None):
        self.objective, self.model, self.optimizer = objective, model, optimizer
        self.grad_clip, self.adam = grad_clip, flat_adam
        self.term_weights = term_weights

    def __call__(self, x_in: torch.Tensor, x: torch.Tensor, weights=None) -> torch.Tensor:
        terms = self.objective(x_in, x)  # (B, T)
        w = self.term_weights
        per_image = terms[:, 0] if w is None else (terms * w).sum(1)  # (B,)
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
        if w is None:
            return loss.detach()
        terms = terms.detach()
        means = terms.mean(0) if weights is None else (terms * weights[:, None]).sum(0) / weights.sum()
        return torch.cat([loss.detach().view(1), means])  # (1 + T,)


class ModelStep:
    """The step a model makes for itself (its spec's custom_step): `model.make_step(optimizer,
    config)`, called as every step is and returning as every step does."""

    name = "custom"

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, x_in: torch.Tensor, x: torch.Tensor, weights=None) -> torch.Tensor:
        return self.inner(x_in, x, weights)


@dataclass
class StepChoice:
    """What make_step chose: the step, and what a run folder records about it."""

    step: object
    fast_refused: str | None  # why no hand-written step trains this run (None: one does)
    detail: str  # the parts of the step, for people
    terms: tuple[str, ...] = ("recon",)  # the model's loss terms (its spec's), in order
    loss_only: bool = True  # the step returns the loss alone: the one term, weight 1
    monitors: tuple[str, ...] = ()  # numbers a custom step reports after its terms (spec)

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def outputs(self) -> int:
        """How many numbers a step returns: 1 (the loss), or 1 + the number of terms."""
        if self.loss_only and not self.monitors:
            return 1
        return 1 + len(self.terms) + len(self.monitors)

    def term_means(self, means: list[float]) -> dict[str, float]:
        """{term: epoch mean} from the epoch means of what the step returns."""
        if self.loss_only and not self.monitors:
            return {self.terms[0]: means[0]}
        return dict(zip(self.terms, means[1 : 1 + len(self.terms)], strict=True))

    def monitor_means(self, means: list[float]) -> dict[str, float]:
        """{monitor: epoch mean} of the numbers a custom step reports after its terms."""
        return dict(zip(self.monitors, means[1 + len(self.terms) :], strict=True))

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
    weights = loss_weights(model)  # {term: weight}, in the spec's order
    terms = tuple(weights)
    loss_only = len(weights) == 1 and weights[terms[0]] == 1.0
    if spec(model).custom_step:
        return _model_step(model, optimizer, config, dist, terms, loss_only)
    if config.fast:
        step, refused = fused_step(model, optimizer, config, device, dist.enabled, note)
        if step is not None:
            return StepChoice(step, None, "hand-written forward, backward and FlatAdam update",
                              terms, loss_only)
    else:
        refused = "turned off (fast=false, aelab train --no-fast)"
    on_cpu = device.type == "cpu"
    fp32 = config.precision == "fp32"
    layers = convmm.plan(model) if config.fast and on_cpu and fp32 else None
    if layers is not None:  # convmm computes the model's forward only if it is that forward
        why = prove(model, lambda x: convmm.forward(layers, x))
        if why is not None:
            layers = None
            refused = refused if why in refused else f"{refused}; convmm: {why}"
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
    term_weights = None if loss_only else torch.tensor(list(weights.values()), device=device)
    step = AutogradStep(objective, model, optimizer, config.grad_clip, flat, term_weights)
    return StepChoice(step, refused, ", ".join(parts), terms, loss_only)


def _model_step(model: nn.Module, optimizer, config, dist: Dist, terms, loss_only) -> StepChoice:
    """A model that trains itself (spec custom_step): its own step, through this door."""
    name = type(model).__name__
    if dist.enabled:
        raise AelabError(f"model {name} makes its own training step (model_spec custom_step), "
                         "which aelab cannot spread over processes; train it in one process")
    step = ModelStep(model.make_step(optimizer, config))
    return StepChoice(step, "the model makes its own step (model_spec custom_step)",
                      f"the model's own step ({name}.make_step)", terms, loss_only,
                      spec(model).monitors)
