"""Modern autoencoders for the results table; registered on import (aelab.models imports this).

- `mlp`: fully connected, any widths; the named shape `hinton2006` is the 784-1000-500-250-30
  network of Hinton & Salakhutdinov (Science 2006, Fig. 2), here with a linear code and,
  optionally, batch norm and GELU so that plain gradient descent trains it (the paper needed
  RBM pre-training).
- `convnet`: strided convolutions down to 7x7, a linear code of any size, and transposed
  convolutions back up; batch or group norm and GELU/SiLU throughout.

Both take 28x28 grey images (1, 28, 28) only and no `image_shape` argument:
`build_model(name, image_shape=...)` refuses any other shape for them in one line that names
the families, whose backbones (conv, mlp) take any shape.

Pure nn.Modules: no I/O, no device logic, no training code.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ..errors import AelabError
from .activations import activation
from .contract import ModelSpec
from .registry import register_model

# Named hidden widths for `mlp` (encoder side; the decoder mirrors them).
MLP_SHAPES: dict[str, tuple[int, ...]] = {
    "hinton2006": (1000, 500, 250),  # Hinton & Salakhutdinov (2006), Fig. 2, with a 30-number code
}

def _choose(kind: str, name: str, table: dict):
    if name not in table:
        raise AelabError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name]


def _norm1d(name: str, width: int) -> nn.Module | None:
    table = {"batch": lambda: nn.BatchNorm1d(width), "none": lambda: None}
    return _choose("norm for mlp", name, table)()


def _norm2d(name: str, channels: int) -> nn.Module | None:
    # GroupNorm with groups of 8 channels or fewer; works with any batch size, even 1
    groups = max(1, channels // 8)
    table = {"batch": lambda: nn.BatchNorm2d(channels),
             "group": lambda: nn.GroupNorm(groups, channels), "none": lambda: None}
    return _choose("norm for convnet", name, table)()


def _dense(a: int, b: int, norm: str, act: str) -> list[nn.Module]:
    """Linear -> [BatchNorm] -> activation. No bias before a norm: it would be subtracted
    away again (and get no gradient)."""
    norm_layer = _norm1d(norm, b)
    return [nn.Linear(a, b, bias=norm_layer is None), *([norm_layer] if norm_layer else []),
            activation(act)]


@register_model("mlp")
class MLPAE(nn.Module):
    """784 -> hidden... -> latent_dim (linear code) -> reversed hidden... -> 784 (Sigmoid).

    `shape` names a width preset from MLP_SHAPES; `hidden` gives widths directly instead.
    The default is the `hinton2006` shape, 30 numbers, batch norm and GELU (2,840,814
    parameters; 2,837,314 with norm="none", the paper's own count)."""

    # forward = decoder(encoder(x.flatten(1))): with norm "none" and act "relu", a plain
    # Linear/ReLU stack that aelab.train.fast may train (after checking that it is)
    model_spec = ModelSpec(fast_path="dense")

    def __init__(self, latent_dim: int = 30, hidden: list[int] | None = None,
                 shape: str = "hinton2006", norm: str = "batch", act: str = "gelu"):
        super().__init__()
        widths = list(hidden) if hidden is not None else list(_choose("mlp shape", shape, MLP_SHAPES))
        if latent_dim < 1 or any(w < 1 for w in widths):
            raise AelabError(f"mlp: latent_dim {latent_dim} and hidden widths {widths} must be >= 1")
        self.latent_dim = latent_dim
        sizes = [28 * 28, *widths]
        enc = [layer for a, b in itertools.pairwise(sizes) for layer in _dense(a, b, norm, act)]
        self.encoder = nn.Sequential(*enc, nn.Linear(sizes[-1], latent_dim))  # linear code
        back = [latent_dim, *widths[::-1]]
        dec = [layer for a, b in itertools.pairwise(back) for layer in _dense(a, b, norm, act)]
        self.decoder = nn.Sequential(*dec, nn.Linear(back[-1], 28 * 28), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))  # (B, 784) -> (B, latent)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, 1, 28, 28)  # (B, 784) -> (B, 1, 28, 28)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _conv(a: int, b: int, norm: str, act: str, *, stride: int = 1, up: bool = False) -> nn.Sequential:
    """3x3 conv (stride 2 halves the size) or a 4x4 stride-2 transposed conv (doubles it),
    then norm and activation."""
    norm_layer = _norm2d(norm, b)
    bias = norm_layer is None
    conv = (nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=bias) if up
            else nn.Conv2d(a, b, 3, stride=stride, padding=1, bias=bias))
    return nn.Sequential(conv, *([norm_layer] if norm_layer else []),
                         activation(act))


class _Residual(nn.Module):
    """x + f(x) with f two 3x3 conv-norm-act layers at constant shape (He et al., 2016)."""

    def __init__(self, channels: int, norm: str, act: str):
        super().__init__()
        self.f = nn.Sequential(_conv(channels, channels, norm, act), _conv(channels, channels, norm, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


@register_model("convnet")
class ConvNetAE(nn.Module):
    """Convolutional autoencoder with a linear code of any size.

    Encoder: (B,1,28,28) -> 3x3 conv c0 -> stride 2 -> (B,c1,14,14) -> stride 2 -> (B,c2,7,7)
    -> flatten -> linear -> (B, latent_dim). `blocks` residual blocks follow each stride.
    Decoder mirrors it with 4x4 stride-2 transposed convolutions and ends in a Sigmoid."""

    def __init__(self, latent_dim: int = 30, channels: list[int] | tuple[int, ...] = (32, 64, 128),
                 blocks: int = 0, norm: str = "batch", act: str = "gelu"):
        super().__init__()
        if len(channels) != 3 or min(channels) < 1 or latent_dim < 1 or blocks < 0:
            raise AelabError(f"convnet: channels must be 3 widths >= 1 (got {list(channels)}), "
                             f"latent_dim >= 1 (got {latent_dim}), blocks >= 0 (got {blocks})")
        c0, c1, c2 = channels
        self.latent_dim, self.top = latent_dim, c2

        def res(c):
            return [_Residual(c, norm, act) for _ in range(blocks)]

        self.encoder = nn.Sequential(
            _conv(1, c0, norm, act),  # (B, c0, 28, 28)
            _conv(c0, c1, norm, act, stride=2), *res(c1),  # (B, c1, 14, 14)
            _conv(c1, c2, norm, act, stride=2), *res(c2),  # (B, c2, 7, 7)
            nn.Flatten(), nn.Linear(c2 * 49, latent_dim),  # (B, latent): the linear code
        )
        norm_layer = _norm2d(norm, c2)
        # (B, c2 * 49), reshaped to (B, c2, 7, 7); no bias before a norm
        self.expand = nn.Linear(latent_dim, c2 * 49, bias=norm_layer is None)
        self.decoder = nn.Sequential(
            *([norm_layer] if norm_layer else []), activation(act),
            *res(c2),
            _conv(c2, c1, norm, act, up=True), *res(c1),  # (B, c1, 14, 14)
            _conv(c1, c0, norm, act, up=True),  # (B, c0, 28, 28)
            nn.Conv2d(c0, 1, 3, padding=1), nn.Sigmoid(),  # (B, 1, 28, 28)
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.expand(z).view(-1, self.top, 7, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
