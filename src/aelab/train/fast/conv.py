"""The hand-written training step for plain convolutional autoencoders on CPU.

ConvStep trains Conv2d/ConvTranspose2d/ReLU models ending in a Sigmoid (the seed's `conv`)
with one hand-written op per layer from aelab.train.fast.convmm: about 3.4 ms per `conv`
step, where autograd over convmm.forward with FlatAdam takes about 4.8 ms. The results
equal the autograd path's to float rounding (tests/test_fused.py).
"""

from __future__ import annotations

import torch
from torch import nn

from . import convmm
from .dense import loss_constants, sigmoid_loss_backward
from .flat_adam import FlatAdam


def conv_plan(model: nn.Module) -> list[nn.Module] | None:
    """The layers of a small conv autoencoder that ConvStep can train (convmm's plan,
    ending in its only Sigmoid); else None."""
    layers = convmm.plan(model)
    if not layers or not isinstance(layers[-1], nn.Sigmoid):
        return None
    if any(isinstance(m, nn.Sigmoid) for m in layers[:-1]):
        return None
    return layers


def forward_ops(ops: list, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ConvStep's forward pass through its ops: x (B, 1, H, W) -> (the last op's output
    NHWC (B, H, W, 1), the reconstructions sigmoid of it, (B, H*W)). ConvStep trains with
    exactly this function, and `conv_forward` runs it for make_step's comparison."""
    h = x.permute(0, 2, 3, 1)  # NHWC
    for op in ops:
        h = op.forward(h)
    return h, h.sigmoid().view(x.shape[0], -1)  # one channel: NHWC and NCHW are the same memory


@torch.no_grad()
def conv_forward(layers: list[nn.Module], x: torch.Tensor, image_shape: tuple = (28, 28, 1)) -> torch.Tensor:
    """The hand-written forward of a conv_plan model: x (B, 1, 28, 28) -> (B, 1, 28, 28).
    The ops bind the parameters' .grad tensors: where there are none, zero ones are lent for
    the call and taken back, so the model is left as it was."""
    params = [p for m in layers for p in m.parameters()]
    lent = [p for p in params if p.grad is None]
    try:
        for p in lent:
            p.grad = torch.zeros_like(p)
        ops, _ = convmm.build_ops(layers[:-1], image_shape)
        return forward_ops(ops, x)[1].view(x.shape)
    finally:
        for p in lent:
            p.grad = None


class ConvStep:
    """One training step (forward, backward, optimizer) of a `conv_plan` model, such as the
    seed's `conv`, on 28x28 images: convmm's ops for each layer (matrix products,
    with im2col/col2im where the kernel slides), the loss as in FusedDenseStep, and
    FlatAdam. Against autograd over the same ops it saves
    the graph, the separate weight-gradient accumulation and the optimizer's bookkeeping.
    Same calling convention as FusedDenseStep."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: str,
                 grad_clip: float | None = None, image_shape: tuple = (28, 28, 1), note=print):
        layers = conv_plan(model)
        if layers is None:
            raise ValueError("model is not a plain conv autoencoder")
        (group,) = optimizer.param_groups
        if {id(p) for p in model.parameters()} != {id(p) for p in group["params"]}:
            raise ValueError("the optimizer must hold exactly the model's parameters")
        for p in model.parameters():  # build_ops checks layouts before FlatAdam rebinds them
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        _, out_shape = convmm.build_ops(layers[:-1], image_shape)
        if tuple(out_shape) != tuple(image_shape):
            raise ValueError(f"the model maps {image_shape} to {out_shape}")
        self.adam = FlatAdam(optimizer, note)
        self.ops, _ = convmm.build_ops(layers[:-1], image_shape)  # views of the flat buffers
        self.loss, self.grad_clip = loss, grad_clip
        self._constants: dict[int, tuple] = {}

    name = "fused-conv"

    @torch.no_grad()
    def __call__(self, x_in: torch.Tensor, x: torch.Tensor, weights=None) -> torch.Tensor:
        assert weights is None, "padded (weighted) batches go through the autograd step"
        batch = x.shape[0]
        if batch not in self._constants:
            self._constants[batch] = loss_constants(x[0].numel() * batch)
        h, y = forward_ops(self.ops, x_in)
        g = torch.empty_like(y)
        loss = sigmoid_loss_backward(y, x.reshape(batch, -1), self.loss, g, g.view(-1),
                                     *self._constants[batch])
        g = g.view(h.shape)
        for i in range(len(self.ops) - 1, -1, -1):
            g = self.ops[i].backward(g, i > 0)
        if self.grad_clip is not None:
            self.adam.clip_grad_norm(self.grad_clip)
        self.adam.step()
        return loss
