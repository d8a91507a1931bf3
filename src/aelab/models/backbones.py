"""Backbones: the networks the autoencoder families share, so that families are compared on
the same network (pythae's `BaseEncoder`/`BaseDecoder`, with aelab's two shapes), built for
the dataset's image shape (C, H, W) (`image_shape`, default (1, 28, 28); any shape that
aelab.models.contract.check_image_shape allows: 1 or 3 channels, sides of 8 to 128).

A backbone is three nn.Modules: `encoder` (images (B, C, H, W) -> features (B, F)),
`head` (a Linear, features -> the numbers the family needs: a code, or a mean and a
log-variance) and `decoder` (codes (B, L) -> logits (B, C, H, W); the family's `decode`
takes their sigmoid).

- `conv`: stride-2 stages, then one convolution down to 1x1, mirrored (`conv_sizes`):
  * each stage is a 3x3 Conv2d, stride 2, padding 1, taking a side n to ceil(n / 2); stages
    follow one another while the shorter side is 8 or more, so the map ends with its shorter
    side between 4 and 7 (any side of 8 or more is halved at least once);
  * a last Conv2d whose kernel is that whole map (h x w, not square where the image is
    not) makes it 1x1: F features;
  * channels: C in, 16 after the first stage, doubling at each stage, F twice the last
    stage's; `width` multiplies every one but C;
  * the decoder mirrors it exactly: Linear(L, F)-act, a ConvTranspose2d with the same
    h x w kernel, then a 3x3 stride-2 ConvTranspose2d per stage, each with output_padding
    n - (2 ceil(n / 2) - 1), 1 for an even side n and 0 for an odd one, so that every map
    has the size of the encoder's, and the last is (B, C, H, W).
  Examples (width 1): 1x28x28 (the seed's network exactly): 28 -> 14 -> 7, a 7x7 kernel,
  channels 1-16-32-64, F = 64. 1x8x8: 8 -> 4, a 4x4 kernel, 1-16-32. 1x25x25 (odd):
  25 -> 13 -> 7, a 7x7 kernel, 1-16-32-64; the decoder's output_padding is 0 at both
  stages (7 -> 13 -> 25). 3x32x32: 32 -> 16 -> 8 -> 4, a 4x4 kernel, 3-16-32-64-128.
  3x20x12: 20x12 -> 10x6 (6 < 8: one stage), a 10x6 kernel, 3-16-32. 128x128: five
  stages to 4x4, F = 512.
- `mlp`: fully connected, Flatten then Linear-act for each of `hidden`, mirrored; C * H * W
  numbers in and out (784 for 28x28 grey), Unflatten to (C, H, W) at the end.

With the default shape both lay their layers out as `vae` and `vae-mlp` always have
(encoder.*, head.*, decoder.*, the same names, shapes and counts), so run folders trained
before the families existed, or before images had a shape, still load.
"""

from __future__ import annotations

import itertools

from torch import nn

from ..errors import AelabError
from .activations import activation, check_activation
from .contract import DEFAULT_IMAGE_SHAPE, check_image_shape

BACKBONES = ("conv", "mlp")
DEFAULT_HIDDEN = (512, 256)  # mlp: (C*H*W)-512-256-L, mirrored
CONV_CHANNELS = 16  # the conv backbone's first stage, doubling at each one after it
CONV_MIN_SIDE = 8  # the conv backbone halves the map while its shorter side is at least this


def check_backbone(backbone: str, latent_dim, width, hidden, act: str) -> list[int]:
    """Reject arguments that would build a wrong network, before any work; the hidden
    widths as a list. (The image shape is checked by contract.check_image_shape.)"""
    if backbone not in BACKBONES:
        raise AelabError(f"backbone={backbone!r}: choose one of {', '.join(BACKBONES)}")
    if isinstance(latent_dim, bool) or not (isinstance(latent_dim, int) and latent_dim >= 1):
        raise AelabError(f"latent_dim={latent_dim!r} must be a whole number >= 1")
    if isinstance(width, bool) or not (isinstance(width, int) and width >= 1):
        raise AelabError(f"width={width!r} must be a whole number >= 1")
    hidden = list(hidden)
    if not hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                             for h in hidden):
        raise AelabError(f"hidden={hidden!r} must be a non-empty list of whole numbers >= 1")
    check_activation(act)
    return hidden


def build_backbone(backbone: str, latent_dim: int, head_out: int, *, width: int = 1,
                   hidden=DEFAULT_HIDDEN, act: str = "relu", image_shape=DEFAULT_IMAGE_SHAPE):
    """(encoder, head, decoder) of `backbone` for images of `image_shape` (C, H, W) and a
    code of `latent_dim` numbers, the head giving `head_out` numbers (latent_dim for a
    code, 2 * latent_dim for a mean and a log-variance). `width` applies to conv, `hidden`
    to mlp; `act` to both."""
    hidden = check_backbone(backbone, latent_dim, width, hidden, act)
    shape = check_image_shape(image_shape)
    if backbone == "conv":
        return _conv(latent_dim, head_out, width, act, shape)
    return _mlp(latent_dim, head_out, hidden, act, shape)


def conv_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """The map sizes (h, w) of the conv backbone, the image's first: each stride-2 stage
    gives ceil(n / 2) per side, while the shorter side is at least CONV_MIN_SIDE.
    (28, 28) -> [(28, 28), (14, 14), (7, 7)]; (25, 25) -> [(25, 25), (13, 13), (7, 7)];
    (20, 12) -> [(20, 12), (10, 6)]."""
    sizes = [(height, width)]
    while min(sizes[-1]) >= CONV_MIN_SIDE:
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))  # 3x3, stride 2, padding 1
    return sizes


def _conv(latent_dim: int, head_out: int, width: int, act: str, shape: tuple[int, int, int]):
    sizes = conv_sizes(*shape[1:])  # [(H, W), ..., (h, w)]: the image, then one per stage
    # channels [C, 16, 32, ...] (times width), one per entry of sizes; F twice the last
    chans = [shape[0], *(CONV_CHANNELS * width * 2**i for i in range(len(sizes) - 1))]
    feats = 2 * chans[-1]  # F: 64 at 28x28
    encoder: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(chans):  # (B, c_in, n, n) -> (B, c_out, ceil(n/2), ..)
        encoder += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), activation(act)]
    encoder += [nn.Conv2d(chans[-1], feats, sizes[-1]), activation(act),  # (B, F, 1, 1)
                nn.Flatten()]  # (B, F)
    head = nn.Linear(feats, head_out)  # built between the two: a seed gives the same weights
    decoder: list[nn.Module] = [nn.Linear(latent_dim, feats), activation(act),
                                nn.Unflatten(1, (feats, 1, 1)),  # (B, F, 1, 1)
                                nn.ConvTranspose2d(feats, chans[-1], sizes[-1])]  # (B, c, h, w)
    for i in range(len(sizes) - 1, 0, -1):  # (B, chans[i], *sizes[i]) -> (B, chans[i-1], *sizes[i-1])
        decoder += [activation(act), _up(chans[i], chans[i - 1], sizes[i], sizes[i - 1])]
    return nn.Sequential(*encoder), head, nn.Sequential(*decoder)  # the decoder gives logits


def _up(c_in: int, c_out: int, small: tuple[int, int], big: tuple[int, int]) -> nn.ConvTranspose2d:
    """The 3x3 stride-2 ConvTranspose2d that undoes one stage exactly: a side m becomes
    2m - 1 + output_padding, so output_padding = n - (2m - 1) for the stage's input side n:
    1 where n is even (14 -> 7 -> 14), 0 where it is odd (25 -> 13 -> 25)."""
    pad = tuple(n - (2 * m - 1) for n, m in zip(big, small, strict=True))
    return nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=pad)


def _mlp(latent_dim: int, head_out: int, hidden: list[int], act: str, shape: tuple[int, int, int]):
    pixels = shape[0] * shape[1] * shape[2]  # C*H*W: 784 at 28x28 grey
    layers: list[nn.Module] = [nn.Flatten()]  # (B, C*H*W)
    for n_in, n_out in zip([pixels, *hidden[:-1]], hidden, strict=True):
        layers += [nn.Linear(n_in, n_out), activation(act)]
    encoder = nn.Sequential(*layers)
    head = nn.Linear(hidden[-1], head_out)
    rev = hidden[::-1]
    layers = []
    for n_in, n_out in zip([latent_dim, *rev[:-1]], rev, strict=True):
        layers += [nn.Linear(n_in, n_out), activation(act)]
    layers += [nn.Linear(rev[-1], pixels), nn.Unflatten(1, shape)]  # logits (B, C, H, W)
    return encoder, head, nn.Sequential(*layers)
