"""Small convolutional autoencoders on CPU, with the convolutions that oneDNN runs slowly
at these sizes written as matrix products, in two forms: `forward` (autograd) and
`build_ops` (hand-written forward and backward, for aelab.fused.ConvStep).

The seed `conv` model's third convolution (32 channels, 7x7 kernel, 7x7 input: one output
pixel) and first transposed convolution (from a 1x1 code to 7x7) are linear layers: every
output sees the whole input. oneDNN runs them as convolutions, 0.53 and 0.89 ms a step
(forward and backward) at batch 64 on this project's 2-core CPU; as one matrix product each,
on the same memory, they take 0.25 and 0.31 ms.

Its last layer, a transposed convolution to one channel (1.8 million multiply-adds), takes
oneDNN about 1.0 ms a step in training. Here it is one matrix product from the 16 input
channels to k*k "planes" (one per kernel tap, each a whole (B, H, W) block), then col2im:
the planes summed into the output one stride phase at a time, each output pixel written by
one copy and the adds of its other taps. Its backward gathers the output gradient into
planes (im2col, k*k strided copies) and multiplies. 0.66 ms a step, measured inside
ConvStep. (The first layer, one input channel, is the same pattern in reverse, but there
oneDNN is as fast: 0.36 ms against 0.32, so it stays oneDNN's with the other layers.)

Activations are kept in NHWC order throughout, which is what channels_last tensors already
are in memory, so moving between the two costs nothing, and the weights are only permuted.

`plan(model)` accepts models that declare `convmm_forward = True` (their forward is exactly
decoder(encoder(x))) built from Conv2d, ConvTranspose2d, ReLU and Sigmoid; anything else
trains through the model's own forward. The parameters are the model's own, in their usual
layout, so checkpoints, evaluation and export are unchanged. tests/test_convmm.py checks
outputs and gradients against torch's own layers, for several kernel/stride/padding shapes.
"""

from __future__ import annotations

from typing import NamedTuple

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


def _plain(m: nn.Module) -> bool:
    """Zero padding given as numbers, no groups, no dilation."""
    return (m.padding_mode == "zeros" and not isinstance(m.padding, str) and m.groups == 1
            and _pair(m.dilation) == (1, 1))


def _transpose_one_channel_out(m: nn.Module) -> bool:
    return isinstance(m, nn.ConvTranspose2d) and m.out_channels == 1 and m.bias is not None and _plain(m)


_pads: dict[tuple, torch.Tensor] = {}


def im2col(x: torch.Tensor, k: tuple, stride: tuple, padding: tuple, out_hw: tuple) -> torch.Tensor:
    """(B, H, W) -> planes (kh*kw, B*H'*W'): planes[i*kw + j, (b, y, x)] is
    x[b, sy*y - py + i, sx*x - px + j], zero outside the image."""
    (kh, kw), (sy, sx), (py, px), (ho, wo) = k, stride, padding, out_hw
    b, h, w = x.shape
    hp, wp = max((ho - 1) * sy + kh, py + h), max((wo - 1) * sx + kw, px + w)
    key = (b, h, w, hp, wp, py, px, x.dtype, x.device)
    pad = _pads.get(key)
    if pad is None:  # only this interior is ever written: the border stays zero
        pad = _pads[key] = x.new_zeros(b, hp, wp)
    pad[:, py : py + h, px : px + w] = x
    planes = x.new_empty(kh, kw, b, ho, wo)
    planes.copy_(pad.as_strided((kh, kw, b, ho, wo), (wp, 1, hp * wp, sy * wp, sx)))
    return planes.view(kh * kw, b * ho * wo)


_col2im_plans: dict[tuple, list] = {}


def _col2im_plan(k, stride, padding, in_hw, out_hw, b: int) -> list:
    """col2im's copies and adds as (kind, source view, destination view) triples, each view
    (size, stride, offset) into the contiguous planes (kh, kw, B, H, W) and output (B, H', W').
    Worked out once per shape: the slicing arithmetic in Python costs more than the copies."""
    key = (k, stride, padding, in_hw, out_hw, b)
    if key in _col2im_plans:
        return _col2im_plans[key]
    (kh, kw), (sy, sx), (py, px), (h, w), (ho, wo) = k, stride, padding, in_hw, out_hw
    steps = []
    for ry in range(sy):
        for rx in range(sx):
            # outputs o = sy*Y + ry (and likewise in x): from taps i = ry + py (mod sy)
            n_y, n_x = len(range(ry, ho, sy)), len(range(rx, wo, sx))
            if n_y == 0 or n_x == 0:
                continue
            whole = ((b, n_y, n_x), (ho * wo, sy * wo, sx), ry * wo + rx)
            taps = []
            for i in range((ry + py) % sy, kh, sy):
                dy = (ry + py - i) // sy  # that tap reads input row Y + dy
                y0, y1 = max(0, -dy), min(n_y, h - dy)
                for j in range((rx + px) % sx, kw, sx):
                    dx = (rx + px - j) // sx
                    x0, x1 = max(0, -dx), min(n_x, w - dx)
                    if y0 < y1 and x0 < x1:
                        size = (b, y1 - y0, x1 - x0)
                        src = (size, (h * w, w, 1), (i * kw + j) * b * h * w + (y0 + dy) * w + x0 + dx)
                        dst = (size, (ho * wo, sy * wo, sx), (sy * y0 + ry) * wo + sx * x0 + rx)
                        taps.append(((y0, y1, x0, x1) == (0, n_y, 0, n_x), src, dst))
            taps.sort(key=lambda t: not t[0])  # a tap covering the whole phase first: a copy
            if not taps or not taps[0][0]:
                steps.append(("zero", None, whole))
            for n, (covers, src, dst) in enumerate(taps):
                steps.append(("copy" if n == 0 and covers else "add", src, dst))
    _col2im_plans[key] = steps
    return steps


def col2im(planes: torch.Tensor, k: tuple, stride: tuple, padding: tuple, in_hw: tuple,
           out_hw: tuple) -> torch.Tensor:
    """The adjoint of im2col: planes (kh*kw, B*H*W) -> (B, H', W'), where each plane [i, j]
    is added at out[b, sy*y - py + i, sx*x - px + j]. Worked one stride phase of the output
    at a time, so each output pixel is written by one copy and the adds of its other taps."""
    planes = planes.contiguous()
    b = planes.shape[1] // (in_hw[0] * in_hw[1])
    out = planes.new_empty(b, *out_hw)
    base = planes.storage_offset()
    for kind, src, (size, strides, offset) in _col2im_plan(k, stride, padding, in_hw, out_hw, b):
        dst = out.as_strided(size, strides, offset)
        if kind == "zero":
            dst.zero_()
        elif kind == "copy":
            dst.copy_(planes.as_strided(src[0], src[1], base + src[2]))
        else:
            dst.add_(planes.as_strided(src[0], src[1], base + src[2]))
    return out


class Geometry(NamedTuple):
    k: tuple  # kernel (kh, kw)
    stride: tuple
    padding: tuple
    in_hw: tuple  # the layer's input (H, W)
    out_hw: tuple  # its output (H', W')


def _geometry(m: nn.Module, hh: int, ww: int) -> Geometry:
    k, st, pd = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
    if isinstance(m, nn.ConvTranspose2d):
        op = _pair(m.output_padding)
        out = tuple((n - 1) * st[i] - 2 * pd[i] + k[i] + op[i] for i, n in enumerate((hh, ww)))
    else:
        out = tuple((n + 2 * pd[i] - k[i]) // st[i] + 1 for i, n in enumerate((hh, ww)))
    return Geometry(k, st, pd, (hh, ww), out)


# The arithmetic of a transposed convolution to one channel, shared by the autograd function
# below and the hand-written step (ConvStep). w2 is the weight as a (channels, kh*kw)
# matrix; gw/gb are optional tensors to write the weight and bias gradients into.

def one_out_forward(h, w2, bias, geo: Geometry) -> torch.Tensor:
    """ConvTranspose2d(C -> 1): (B*H*W, C) NHWC -> (B, H', W')."""
    out = col2im(torch.mm(w2.t(), h.t()), geo.k, geo.stride, geo.padding, geo.in_hw, geo.out_hw)
    return out.add_(bias)


def one_out_backward(g, h, w2, geo: Geometry, need_input: bool, gw=None, gb=None):
    """g: (B, H', W') -> d/d input (B*H*W, C) when need_input, else None."""
    planes = im2col(g, geo.k, geo.stride, geo.padding, geo.in_hw)  # (k*k, N)
    torch.mm(h.t(), planes.t(), out=gw)
    torch.sum(g.reshape(1, -1), 1, out=gb)  # gb: (1,)
    return torch.mm(planes.t(), w2.t()) if need_input else None


class _TransposeOneChannelOut(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, geo):
        out = one_out_forward(h, weight.reshape(weight.shape[0], -1), bias, geo)
        ctx.save_for_backward(h, weight)
        ctx.geo = geo
        return out

    @staticmethod
    def backward(ctx, g):
        h, weight = ctx.saved_tensors
        gw, gb = h.new_empty(weight.shape[0], ctx.geo.k[0] * ctx.geo.k[1]), g.new_empty(1)
        gh = one_out_backward(g.contiguous(), h, weight.reshape(weight.shape[0], -1), ctx.geo,
                              ctx.needs_input_grad[0], gw, gb)
        return gh, gw.view(weight.shape), gb, None


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
        elif _transpose_one_channel_out(m):
            geo = _geometry(m, hh, ww)
            out = _TransposeOneChannelOut.apply(h.reshape(b * hh * ww, c), m.weight, m.bias, geo)
            h = out.view(b, *geo.out_hw, 1)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            # oneDNN on a channels_last view of the same memory, and back
            h = m(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        else:
            h = m(h)  # ReLU, Sigmoid: elementwise
    return h.permute(0, 3, 1, 2)


# --- hand-written forward and backward, one object per layer (aelab.fused.ConvStep) ----------
#
# Each op reads and writes NHWC activations (B, H, W, C), keeps what its backward needs, and
# writes its parameters' gradients into their .grad tensors (every step overwrites them, so
# nothing needs zeroing). Weights are read through views of the parameters, made once: the
# optimizer updates them in place.

aten = torch.ops.aten


def _matrix(t: torch.Tensor, rows: int) -> torch.Tensor:
    """A weight (or its gradient) as a (rows, -1) matrix over its NHWC (channels_last)
    memory, as a view: writing into it writes the tensor."""
    m = t.permute(0, 2, 3, 1).reshape(rows, -1)
    if m.data_ptr() != t.data_ptr() or not m.is_contiguous():
        raise ValueError("weights must be channels_last (Trainer converts conv models)")
    return m


class _OneChannelOut:
    def __init__(self, m: nn.ConvTranspose2d, geo: Geometry):
        self.geo = geo
        self.w2, self.b = _matrix(m.weight.detach(), m.in_channels), m.bias.detach()
        self.gw, self.gb = _matrix(m.weight.grad, m.in_channels), m.bias.grad

    def forward(self, h):
        self.shape = h.shape
        self.h2 = h.reshape(-1, h.shape[-1])
        return one_out_forward(self.h2, self.w2, self.b, self.geo).unsqueeze(-1)

    def backward(self, g, need_input: bool):
        gh = one_out_backward(g.reshape(g.shape[:3]), self.h2, self.w2, self.geo, need_input,
                              self.gw, self.gb)
        return None if gh is None else gh.view(self.shape)


class _WholeInputConv:  # every output sees the whole input: a linear layer
    def __init__(self, m: nn.Conv2d, geo: Geometry):
        self.o = m.out_channels
        self.w2, self.b = _matrix(m.weight.detach(), self.o), m.bias.detach()  # (out, (y, x, c))
        self.gw, self.gb = _matrix(m.weight.grad, self.o), m.bias.grad

    def forward(self, h):
        self.shape = h.shape
        self.x2 = h.reshape(h.shape[0], -1)
        return torch.addmm(self.b, self.x2, self.w2.t()).view(h.shape[0], 1, 1, self.o)

    def backward(self, g, need_input: bool):
        g2 = g.reshape(g.shape[0], self.o)
        torch.mm(g2.t(), self.x2, out=self.gw)
        torch.sum(g2, 0, out=self.gb)
        return torch.mm(g2, self.w2).view(self.shape) if need_input else None


class _FromOnePixel:  # a transposed convolution of a 1x1 input: a linear layer
    def __init__(self, m: nn.ConvTranspose2d, geo: Geometry):
        self.out_shape = (*geo.out_hw, m.out_channels)
        self.w2, self.b = _matrix(m.weight.detach(), m.in_channels), m.bias.detach()  # (in, (y, x, out))
        self.gw, self.gb = _matrix(m.weight.grad, m.in_channels), m.bias.grad

    def forward(self, h):
        self.x2 = h.reshape(h.shape[0], -1)
        return torch.mm(self.x2, self.w2).view(h.shape[0], *self.out_shape).add_(self.b)

    def backward(self, g, need_input: bool):
        g2 = g.reshape(g.shape[0], -1)
        torch.mm(self.x2.t(), g2, out=self.gw)
        torch.sum(g.reshape(-1, self.out_shape[-1]), 0, out=self.gb)
        return torch.mm(g2, self.w2.t()).view(g.shape[0], 1, 1, -1) if need_input else None


class _OneDNN:  # any other convolution: ATen's (oneDNN) kernels on channels_last views
    def __init__(self, m: nn.Module, geo: Geometry):
        self.w, self.gw = m.weight.detach(), m.weight.grad
        self.b = None if m.bias is None else m.bias.detach()
        self.gb = None if m.bias is None else m.bias.grad
        self.transposed = isinstance(m, nn.ConvTranspose2d)
        out_pad = list(_pair(m.output_padding)) if self.transposed else [0, 0]
        self.args = (list(geo.stride), list(geo.padding), list(_pair(m.dilation)), self.transposed,
                     out_pad, m.groups)

    def forward(self, h):
        self.x = h.permute(0, 3, 1, 2)
        return aten.convolution(self.x, self.w, self.b, *self.args).permute(0, 2, 3, 1)

    def backward(self, g, need_input: bool):
        bias_sizes = None if self.b is None else list(self.b.shape)
        gi, gw, gb = aten.convolution_backward(g.permute(0, 3, 1, 2), self.x, self.w, bias_sizes,
                                               *self.args, [need_input, True, self.b is not None])
        self.gw.copy_(gw)
        if self.gb is not None:
            self.gb.copy_(gb)
        return gi.permute(0, 2, 3, 1) if need_input else None


class _ReLU:
    def forward(self, h):
        self.out = h.clamp_min(0)
        return self.out

    def backward(self, g, need_input: bool):
        return aten.threshold_backward(g, self.out, 0)


def build_ops(layers: list[nn.Module], in_shape: tuple) -> tuple[list, tuple]:
    """Hand-written ops for `layers` (a `plan` without its final Sigmoid) on inputs of
    NHWC shape (H, W, C), and the NHWC shape of their output. Raises ValueError where
    they do not apply: a Sigmoid before the end, weights that are not channels_last,
    parameters without .grad tensors, padding other than zeros, groups or dilation."""
    ops = []
    hh, ww, c = in_shape
    for m in layers:
        if isinstance(m, nn.ReLU):
            ops.append(_ReLU())
            continue
        if isinstance(m, nn.Sigmoid):
            raise ValueError("a Sigmoid before the last layer")
        if any(p.grad is None for p in m.parameters()):
            raise ValueError("parameters need .grad tensors to write into")
        if not _plain(m):
            raise ValueError(f"{m}: only zero padding given as numbers, no groups or dilation")
        geo = _geometry(m, hh, ww)
        if isinstance(m, nn.Conv2d) and _conv_is_linear(m, hh, ww):
            op = _WholeInputConv(m, geo)
        elif isinstance(m, nn.ConvTranspose2d) and _transpose_is_linear(m, hh, ww):
            op = _FromOnePixel(m, geo)
        elif _transpose_one_channel_out(m):
            op = _OneChannelOut(m, geo)
        else:
            op = _OneDNN(m, geo)
        ops.append(op)
        (hh, ww), c = geo.out_hw, m.out_channels
    return ops, (hh, ww, c)
