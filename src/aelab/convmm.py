"""Training forward pass for small convolutional autoencoders on CPU, with the convolutions
that are matrix products in disguise computed as matrix products.

The seed `conv` model's third convolution (32 channels, 7x7 kernel, 7x7 input: one output
pixel) and first transposed convolution (from a 1x1 code to 7x7) are linear layers: every
output sees the whole input. oneDNN runs them as convolutions, 0.53 and 0.89 ms a step
(forward and backward) at batch 64 on this project's 2-core CPU; as one matrix product each,
on the same memory, they take 0.25 and 0.31 ms. The other layers stay oneDNN's. Activations
are kept in NHWC order throughout, which is what channels_last tensors already are in
memory, so moving between the two costs nothing, and the weights are only permuted (small).

`plan(model)` accepts models that declare `convmm_forward = True` (their forward is exactly
decoder(encoder(x))) built from Conv2d, ConvTranspose2d, ReLU and Sigmoid; anything else
trains through the model's own forward. The parameters are the model's own, in their usual
layout, so checkpoints, evaluation and export are unchanged. tests/test_convmm.py checks
outputs and gradients against the model's own forward.
"""

from __future__ import annotations

import torch
from torch import nn

_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.ReLU, nn.Sigmoid)


def plan(model: nn.Module) -> list[nn.Module] | None:
    """The layers, in order, of a model this module can run; else None."""
    if not getattr(model, "convmm_forward", False):
        return None
    layers = [*model.encoder, *model.decoder]
    if not layers or any(type(m) not in _LAYERS for m in layers):
        return None
    return layers


def _pair(v) -> tuple:
    return v if isinstance(v, tuple) else (v, v)


def _conv_is_linear(m: nn.Conv2d, h: int, w: int) -> bool:
    """A convolution whose one kernel position covers the whole (unpadded) input."""
    return (_pair(m.kernel_size) == (h, w) and _pair(m.padding) == (0, 0) and m.groups == 1
            and _pair(m.dilation) == (1, 1) and m.bias is not None)


def _transpose_is_linear(m: nn.ConvTranspose2d, h: int, w: int) -> bool:
    """A transposed convolution from a single pixel: its output is the kernel times the input."""
    return (h == w == 1 and _pair(m.padding) == (0, 0) and _pair(m.output_padding) == (0, 0)
            and m.groups == 1 and _pair(m.dilation) == (1, 1) and m.bias is not None)


def forward(layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """The model's forward pass, (B, C, H, W) -> (B, C', H', W')."""
    h = x.permute(0, 2, 3, 1)  # NHWC: (B, H, W, C)
    for m in layers:
        b, hh, ww, c = h.shape
        if isinstance(m, nn.Conv2d) and _conv_is_linear(m, hh, ww):
            wm = m.weight.permute(0, 2, 3, 1).reshape(m.out_channels, hh * ww * c)  # (out, (y, x, c))
            h = torch.addmm(m.bias, h.reshape(b, hh * ww * c), wm.t()).view(b, 1, 1, m.out_channels)
        elif isinstance(m, nn.ConvTranspose2d) and _transpose_is_linear(m, hh, ww):
            kh, kw = _pair(m.kernel_size)
            o = m.out_channels
            wm = m.weight.permute(0, 2, 3, 1).reshape(c, kh * kw * o)  # (in, (y, x, out))
            h = torch.addmm(m.bias.repeat(kh * kw), h.reshape(b, c), wm).view(b, kh, kw, o)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            # oneDNN on a channels_last view of the same memory, and back
            h = m(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        else:
            h = m(h)  # ReLU, Sigmoid: elementwise
    return h.permute(0, 3, 1, 2)
