"""Backbones: the networks the autoencoder families share, so that families are compared on
the same network (pythae's `BaseEncoder`/`BaseDecoder`, with aelab's two shapes).

A backbone is three nn.Modules: `encoder` (images (B, 1, 28, 28) -> features (B, F)),
`head` (a Linear, features -> the numbers the family needs: a code, or a mean and a
log-variance) and `decoder` (codes (B, L) -> logits (B, 1, 28, 28); the family's `decode`
takes their sigmoid).

- `conv`: the seed's convolutional encoder and decoder (Conv2d 1-16-32-64, the last 7x7
  down to 1x1, mirrored by ConvTranspose2d), a Linear head from its 64 features, and a
  Linear(latent, 64)-ReLU into the decoder. `width` multiplies every channel count.
- `mlp`: fully connected, Flatten then Linear-act for each of `hidden`, mirrored.

Both lay their layers out as `vae` and `vae-mlp` always have (encoder.*, head.*,
decoder.*), so run folders trained before the families existed still load.
"""

from __future__ import annotations

from torch import nn

from ..errors import AelabError
from .activations import activation, check_activation

BACKBONES = ("conv", "mlp")
DEFAULT_HIDDEN = (512, 256)  # mlp: 784-512-256-L, mirrored


def check_backbone(backbone: str, latent_dim, width, hidden, act: str) -> list[int]:
    """Reject arguments that would build a wrong network, before any work; the hidden
    widths as a list."""
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
                   hidden=DEFAULT_HIDDEN, act: str = "relu"):
    """(encoder, head, decoder) of `backbone` for a code of `latent_dim` numbers, the head
    giving `head_out` numbers (latent_dim for a code, 2 * latent_dim for a mean and a
    log-variance). `width` applies to conv, `hidden` to mlp; `act` to both."""
    hidden = check_backbone(backbone, latent_dim, width, hidden, act)
    if backbone == "conv":
        return _conv(latent_dim, head_out, width, act)
    return _mlp(latent_dim, head_out, hidden, act)


def _conv(latent_dim: int, head_out: int, width: int, act: str):
    c1, c2, c3 = 16 * width, 32 * width, 64 * width
    encoder = nn.Sequential(
        nn.Conv2d(1, c1, 3, stride=2, padding=1),  # (B, c1, 14, 14)
        activation(act),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1),  # (B, c2, 7, 7)
        activation(act),
        nn.Conv2d(c2, c3, 7),  # (B, c3, 1, 1)
        activation(act),
        nn.Flatten(),  # (B, c3)
    )
    head = nn.Linear(c3, head_out)
    decoder = nn.Sequential(
        nn.Linear(latent_dim, c3),
        activation(act),
        nn.Unflatten(1, (c3, 1, 1)),  # (B, c3, 1, 1)
        nn.ConvTranspose2d(c3, c2, 7),  # (B, c2, 7, 7)
        activation(act),
        nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1),  # (B, c1, 14, 14)
        activation(act),
        nn.ConvTranspose2d(c1, 1, 3, stride=2, padding=1, output_padding=1),  # (B, 1, 28, 28) logits
    )
    return encoder, head, decoder


def _mlp(latent_dim: int, head_out: int, hidden: list[int], act: str):
    layers: list[nn.Module] = [nn.Flatten()]  # (B, 784)
    for n_in, n_out in zip([784, *hidden[:-1]], hidden, strict=True):
        layers += [nn.Linear(n_in, n_out), activation(act)]
    encoder = nn.Sequential(*layers)
    head = nn.Linear(hidden[-1], head_out)
    rev = hidden[::-1]
    layers = []
    for n_in, n_out in zip([latent_dim, *rev[:-1]], rev, strict=True):
        layers += [nn.Linear(n_in, n_out), activation(act)]
    layers += [nn.Linear(rev[-1], 784), nn.Unflatten(1, (1, 28, 28))]  # logits
    return encoder, head, nn.Sequential(*layers)
