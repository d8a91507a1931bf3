"""Small convolutional autoencoders on CPU, with convolutions computed as matrix products
where oneDNN is slow at these sizes, in two forms: `forward` (under autograd) and
`build_ops` (hand-written forward and backward per layer, for aelab.train.fast.conv.ConvStep).

Layer by layer for the seed `conv` (the measured times per layer, beside oneDNN's, are in
docs/performance.md, from benchmarks/conv_layers.py; they depend on the CPU, so none are
written here):

- its 7x7 convolution of a 7x7 input and its transposed convolution of the 1x1 code are
  linear layers (every output sees the whole input): one matrix product each on the same
  NHWC memory;
- its last layer, a transposed convolution to one channel: one matrix product into k*k tap
  "planes" (each a whole (B, H, W) block), then col2im, which sums the planes into the
  output one stride phase at a time, each output pixel written by one copy and the adds of
  its other taps; backward gathers the output gradient into planes (im2col: one strided
  copy) and multiplies;
- in build_ops only, its other three layers, 3x3 with stride 2: im2col + one product
  (convolutions) or one product + col2im (the transposed one), with the channels innermost
  so the products read the NHWC weights as they are (the first layer's one input channel
  takes the taps-first planes).

col2im's copies and adds are worked out once per shape as strided views (`_col2im_plan`):
done with Python slicing every step, their bookkeeping cost more than the copies, which is
what made an earlier im2col/col2im attempt slower than oneDNN. Activations are kept in
NHWC order throughout, which is what channels_last tensors already are in memory, so moving
between the two costs nothing.

`plan(model)` accepts models whose spec hints fast_path="conv" (their forward is
decoder(encoder(x))) built from Conv2d, ConvTranspose2d, ReLU and Sigmoid; make_step then
compares `forward` with the model's own on a probe batch (aelab.train.fast.proof) before it
trains through it. Anything else trains through the model's own forward. The parameters
are the model's own, in their usual layout, so checkpoints, evaluation and export are
unchanged. tests/test_convmm.py checks outputs and gradients against torch's own layers,
for several kernel/stride/padding shapes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ...models.contract import fast_path, layer_stack

_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.ReLU, nn.Sigmoid)


def plan(model: nn.Module) -> list[nn.Module] | None:
    """The layers, in order, of a model this module can run; else None."""
    if fast_path(model)[0] != "conv":
        return None
    layers = layer_stack(model)
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


# Planes come in two layouts. One channel (the seed's last layer): "taps first", planes
# (kh*kw, B*H*W), so each tap's copy runs along whole image rows. Several channels: "pixels
# first", planes (B*H*W, kh*kw*C) with the channels innermost, which is what a matrix product
# with an NHWC (channels_last) weight reads and writes.

_pads: dict[tuple, torch.Tensor] = {}


def _padded(x: torch.Tensor, hp: int, wp: int, py: int, px: int) -> torch.Tensor:
    """x (B, H, W, C) inside a zero border, in a buffer kept per shape: only this interior
    is ever written, so the border stays zero."""
    b, h, w, c = x.shape
    key = (b, h, w, c, hp, wp, py, px, x.dtype, x.device)
    pad = _pads.get(key)
    if pad is None:
        pad = _pads[key] = x.new_zeros(b, hp, wp, c)
    pad[:, py : py + h, px : px + w] = x
    return pad


def im2col(x: torch.Tensor, k: tuple, stride: tuple, padding: tuple, out_hw: tuple) -> torch.Tensor:
    """The kernel's view of x at every output position, zero outside the image:
    (B, H, W) -> (kh*kw, B*H'*W') with [i*kw + j, (b, y, x)] = x[b, sy*y - py + i, sx*x - px + j];
    (B, H, W, C) -> (B*H'*W', kh*kw*C) with [(b, y, x), (i*kw + j)*C + c] = x[..., c]."""
    (kh, kw), (sy, sx), (py, px), (ho, wo) = k, stride, padding, out_hw
    one = x.dim() == 3
    xc = x.unsqueeze(-1) if one else x
    b, h, w, c = xc.shape
    hp, wp = max((ho - 1) * sy + kh, py + h), max((wo - 1) * sx + kw, px + w)
    pad = _padded(xc, hp, wp, py, px)
    rows, cols = hp * wp * c, wp * c
    if one:
        planes = x.new_empty(kh, kw, b, ho, wo)
        planes.copy_(pad.as_strided((kh, kw, b, ho, wo), (wp, 1, rows, sy * wp, sx)))
        return planes.view(kh * kw, b * ho * wo)
    planes = x.new_empty(b, ho, wo, kh, kw, c)
    planes.copy_(pad.as_strided((b, ho, wo, kh, kw, c), (rows, sy * cols, sx * c, cols, c, 1)))
    return planes.view(b * ho * wo, kh * kw * c)


_col2im_plans: dict[tuple, list] = {}


def _col2im_plan(k, stride, padding, in_hw, out_hw, b: int, c: int, taps_first: bool) -> list:
    """col2im's copies and adds as (kind, source view, destination view) triples, each view
    (size, stride, offset) of shape (B, rows, columns, C) into the contiguous planes and
    output (B, H', W', C). Worked out once per shape: the slicing arithmetic in Python costs
    more than the copies."""
    key = (k, stride, padding, in_hw, out_hw, b, c, taps_first)
    if key in _col2im_plans:
        return _col2im_plans[key]
    (kh, kw), (sy, sx), (py, px), (h, w), (ho, wo) = k, stride, padding, in_hw, out_hw
    taps = kh * kw
    if taps_first:  # (kh*kw, B, H, W), one channel
        tap_step, src_strides = b * h * w, (h * w, w, 1, 1)
    else:  # (B, H, W, kh*kw, C)
        tap_step, src_strides = c, (h * w * taps * c, w * taps * c, taps * c, 1)
    out_strides = (ho * wo * c, sy * wo * c, sx * c, 1)
    steps = []
    for ry in range(sy):
        for rx in range(sx):
            # outputs o = sy*Y + ry (and likewise in x): from taps i = ry + py (mod sy)
            n_y, n_x = len(range(ry, ho, sy)), len(range(rx, wo, sx))
            if n_y == 0 or n_x == 0:
                continue
            whole = ((b, n_y, n_x, c), out_strides, (ry * wo + rx) * c)
            found = []
            for i in range((ry + py) % sy, kh, sy):
                dy = (ry + py - i) // sy  # that tap reads input row Y + dy
                y0, y1 = max(0, -dy), min(n_y, h - dy)
                for j in range((rx + px) % sx, kw, sx):
                    dx = (rx + px - j) // sx
                    x0, x1 = max(0, -dx), min(n_x, w - dx)
                    if y0 < y1 and x0 < x1:
                        size = (b, y1 - y0, x1 - x0, c)
                        at = (y0 + dy) * src_strides[1] + (x0 + dx) * src_strides[2]
                        src = (size, src_strides, (i * kw + j) * tap_step + at)
                        dst = (size, out_strides, ((sy * y0 + ry) * wo + sx * x0 + rx) * c)
                        found.append(((y0, y1, x0, x1) == (0, n_y, 0, n_x), src, dst))
            found.sort(key=lambda t: not t[0])  # a tap covering the whole phase first: a copy
            if not found or not found[0][0]:
                steps.append(("zero", None, whole))
            for n, (covers, src, dst) in enumerate(found):
                steps.append(("copy" if n == 0 and covers else "add", src, dst))
    _col2im_plans[key] = steps
    return steps


def col2im(planes: torch.Tensor, k: tuple, stride: tuple, padding: tuple, in_hw: tuple,
           out_hw: tuple, channels: int | None = None) -> torch.Tensor:
    """The adjoint of im2col: each tap (i, j) of planes over the (H, W) grid is added at
    out[b, sy*y - py + i, sx*x - px + j]. channels None: (kh*kw, B*H*W) -> (B, H', W');
    else (B*H*W, kh*kw*C) -> (B, H', W', C). Worked one stride phase of the output at a
    time, so each output pixel is written by one copy and the adds of its other taps."""
    planes = planes.contiguous()
    taps_first = channels is None
    n = planes.shape[1] if taps_first else planes.shape[0]
    b, c = n // (in_hw[0] * in_hw[1]), 1 if taps_first else channels
    out = planes.new_empty(b, *out_hw, c)
    base = planes.storage_offset()
    for kind, src, (size, strides, offset) in _col2im_plan(k, stride, padding, in_hw, out_hw, b, c,
                                                           taps_first):
        dst = out.as_strided(size, strides, offset)
        if kind == "zero":
            dst.zero_()
        elif kind == "copy":
            dst.copy_(planes.as_strided(src[0], src[1], base + src[2]))
        else:
            dst.add_(planes.as_strided(src[0], src[1], base + src[2]))
    return out.squeeze(-1) if taps_first else out


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


# --- hand-written forward and backward, one object per layer (aelab.train.fast.conv.ConvStep) ----------
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


class _Conv:  # a plain convolution: im2col and one matrix product
    def __init__(self, m: nn.Conv2d, geo: Geometry):
        self.geo, self.cin, self.cout = geo, m.in_channels, m.out_channels
        self.w2, self.gw = _matrix(m.weight.detach(), self.cout), _matrix(m.weight.grad, self.cout)
        self.b, self.gb = m.bias.detach(), m.bias.grad
        self.one = self.cin == 1  # one input channel: planes taps first, used transposed

    def forward(self, h):
        geo = self.geo
        x = h.reshape(h.shape[:3]) if self.one else h
        self.planes = im2col(x, geo.k, geo.stride, geo.padding, geo.out_hw)
        a = self.planes.t() if self.one else self.planes  # (N, kh*kw*Cin)
        return torch.addmm(self.b, a, self.w2.t()).view(h.shape[0], *geo.out_hw, self.cout)

    def backward(self, g, need_input: bool):
        geo, g2 = self.geo, g.reshape(-1, self.cout)
        torch.mm(g2.t(), self.planes.t() if self.one else self.planes, out=self.gw)
        torch.sum(g2, 0, out=self.gb)
        if not need_input:
            return None
        if self.one:
            gx = col2im(torch.mm(self.w2.t(), g2.t()), geo.k, geo.stride, geo.padding, geo.out_hw,
                        geo.in_hw)
            return gx.unsqueeze(-1)
        return col2im(torch.mm(g2, self.w2), geo.k, geo.stride, geo.padding, geo.out_hw, geo.in_hw,
                      self.cin)


class _Transposed:  # a plain transposed convolution to several channels: a product and col2im
    def __init__(self, m: nn.ConvTranspose2d, geo: Geometry):
        self.geo, self.cin, self.cout = geo, m.in_channels, m.out_channels
        self.w2, self.gw = _matrix(m.weight.detach(), self.cin), _matrix(m.weight.grad, self.cin)
        self.b, self.gb = m.bias.detach(), m.bias.grad

    def forward(self, h):
        geo = self.geo
        self.shape = h.shape
        self.h2 = h.reshape(-1, self.cin)
        out = col2im(torch.mm(self.h2, self.w2), geo.k, geo.stride, geo.padding, geo.in_hw,
                     geo.out_hw, self.cout)
        return out.add_(self.b)

    def backward(self, g, need_input: bool):
        geo = self.geo
        planes = im2col(g, geo.k, geo.stride, geo.padding, geo.in_hw)  # (N, kh*kw*Cout)
        torch.mm(self.h2.t(), planes, out=self.gw)
        torch.sum(g.reshape(-1, self.cout), 0, out=self.gb)
        return torch.mm(planes, self.w2.t()).view(self.shape) if need_input else None


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


def build_ops(layers: list[nn.Module], in_shape: tuple, onednn: bool = False) -> tuple[list, tuple]:
    """Hand-written ops for `layers` (a `plan` without its final Sigmoid) on inputs of
    NHWC shape (H, W, C), and the NHWC shape of their output. Raises ValueError where
    they do not apply: a Sigmoid before the end, weights that are not channels_last,
    parameters without .grad tensors, padding other than zeros, groups or dilation.
    onednn=True runs every convolution on oneDNN (what benchmarks/conv_layers.py compares)."""
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
        if onednn:
            op = _OneDNN(m, geo)
        elif isinstance(m, nn.Conv2d) and _conv_is_linear(m, hh, ww):
            op = _WholeInputConv(m, geo)
        elif isinstance(m, nn.ConvTranspose2d) and _transpose_is_linear(m, hh, ww):
            op = _FromOnePixel(m, geo)
        elif _transpose_one_channel_out(m):
            op = _OneChannelOut(m, geo)
        elif m.bias is None:
            op = _OneDNN(m, geo)
        elif isinstance(m, nn.Conv2d):
            op = _Conv(m, geo)
        else:
            op = _Transposed(m, geo)
        ops.append(op)
        (hh, ww), c = geo.out_hw, m.out_channels
    return ops, (hh, ww, c)
