"""The seed tutorial's two autoencoders, exactly: `linear` (784-128-64-12-5 and back) and
`conv` (Conv2d 1-16-32-64, mirrored by ConvTranspose2d). Pure nn.Modules.

Both take 28x28 grey images (1, 28, 28) only, and take no `image_shape` argument (so that
their arguments, and the run folders that recorded them, stay the seed's):
`build_model(name, image_shape=...)` refuses any other shape for them in one line that names
the families, whose backbones (conv, mlp) take any shape."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .contract import ModelSpec
from .registry import register_model


def _mlp(sizes: list[int], last: nn.Module | None) -> nn.Sequential:
    """Linear layers with ReLU between them, and `last` (or nothing) after the final one."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if last is not None:
        layers.append(last)
    return nn.Sequential(*layers)


@register_model("linear")
class LinearAE(nn.Module):
    """The seed's fully connected autoencoder: 784-128-64-12-5 and back (219,941 parameters)."""

    # forward = decoder(encoder(x.flatten(1))): aelab.train.fast may train it (after checking)
    model_spec = ModelSpec(fast_path="dense")

    def __init__(self, hidden: tuple[int, ...] = (128, 64, 12), latent_dim: int = 5):
        super().__init__()
        self.latent_dim = latent_dim
        sizes = [28 * 28, *hidden, latent_dim]
        self.encoder = _mlp(sizes, last=None)  # the code itself has no activation
        self.decoder = _mlp(sizes[::-1], last=nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))  # (B, 784) -> (B, latent)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, 1, 28, 28)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@register_model("conv")
class ConvAE(nn.Module):
    """The seed's convolutional autoencoder: a 64x1x1 code (210,369 parameters)."""

    latent_dim = 64
    # forward = decoder(encoder(x)): aelab.train.fast may train it (after checking)
    model_spec = ModelSpec(fast_path="conv")

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1),  # (B, 16, 14, 14)
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),  # (B, 32, 7, 7)
            nn.ReLU(),
            nn.Conv2d(32, 64, 7),  # (B, 64, 1, 1)
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 7),  # (B, 32, 7, 7)
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1),  # (B, 16, 14, 14)
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),  # (B, 1, 28, 28)
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)  # (B, 64, 1, 1) -> (B, 64)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.view(-1, self.latent_dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

