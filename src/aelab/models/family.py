"""What every autoencoder family shares: a backbone (aelab.models.backbones), a code made
by its head, a decoder giving logits, and the reconstruction term of its loss.

A family is an objective; a backbone is a network. A family subclasses `FamilyAE`, declares
its loss terms in its ModelSpec and returns them per image from `loss_terms`, each in the
unit of the reconstruction term (nats for "bce"): a weight means the same for any dataset
size and any batch size (the mistake PyTorch-VAE's users report, a KL weight of
batch/dataset size, cannot be made here: nothing is divided by either).

Every family takes the images' shape as its argument `image_shape` [C, H, W] (default
[1, 28, 28]; its spec declares any_shape) and builds its backbone for it; nothing in a family
assumes 28x28 grey images.

The reconstruction term per image, summed over the C*H*W numbers x_i in [0, 1] of an image
(784 for 28x28 grey) with decoder logits l_i and means m_i = sigmoid(l_i):
  * recon="bce" (default): sum_i BCE(m_i, x_i), computed from the logits (exact and stable
    where m_i rounds to 0 or 1); for binary images -log p(x|z) of a Bernoulli decoder, as in
    the VAE family, so the families' numbers and weights compare;
  * recon="sse": sum_i (x_i - m_i)^2, the squared error of the Gaussian-decoder papers
    (Tolstikhin et al. 2018, Ghosh et al. 2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AelabError
from .backbones import DEFAULT_HIDDEN, build_backbone
from .contract import DEFAULT_IMAGE_SHAPE, ModelSpec, check_image_shape
from .registry import MODELS

RECONS = ("bce", "sse")


def family_names() -> list[str]:
    """The registered families (models built on FamilyAE), aliases left out, in
    registration order: what the benchmarks, the docs' table and the tests go through."""
    return [name for name, cls in MODELS.items() if isinstance(cls, type)
            and issubclass(cls, FamilyAE) and cls.alias_of is None]


def reconstruction(logits: torch.Tensor, x: torch.Tensor, recon: str) -> torch.Tensor:
    """The reconstruction term per image (B,) in float32: see the module docstring."""
    logits, x = logits.float(), x.float()
    if recon == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    else:
        per_pixel = (torch.sigmoid(logits) - x).square()
    return per_pixel.flatten(1).sum(1)


def weighted_mean(v: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The mean of v (B,) over images, each with its weight (B,) where given (the padded
    batches of --cuda-graphs give the padding weight 0): for the families' own steps."""
    return v.mean() if weights is None else (v * weights).sum() / weights.sum()


class FamilyAE(nn.Module):
    """A deterministic autoencoder on a backbone: code = head(encoder(x)), images =
    sigmoid(decoder(code)), for images of `image_shape` (C, H, W), its attribute, a tuple.
    Trained on the reconstruction term alone; the families add their terms (`extra_terms`)."""

    model_spec = ModelSpec(loss_terms={"recon": 1.0}, any_shape=True)
    alias_of: str | None = None  # a second name of a family (`vae-mlp` is `vae` on mlp)

    def __init__(self, latent_dim: int = 16, backbone: str = "conv", width: int = 1,
                 hidden=DEFAULT_HIDDEN, act: str = "relu", recon: str = "bce", *,
                 head_out: int | None = None, image_shape=DEFAULT_IMAGE_SHAPE):
        super().__init__()
        if recon not in RECONS:
            raise AelabError(f"recon={recon!r}: choose one of {', '.join(RECONS)}")
        self.image_shape = check_image_shape(image_shape)  # (C, H, W)
        self.encoder, self.head, self.decoder = build_backbone(
            backbone, latent_dim, head_out or latent_dim, width=width, hidden=hidden, act=act,
            image_shape=self.image_shape)
        self.latent_dim, self.backbone, self.recon = latent_dim, backbone, recon

    # --- the autoencoder interface ------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))  # (B, C, H, W) -> (B, L)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, L) -> (B, C, H, W)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    # --- the loss -----------------------------------------------------------------------

    def loss_terms(self, x_in: torch.Tensor, x: torch.Tensor,
                   autocast_bf16: bool = False) -> dict[str, torch.Tensor]:
        """{"recon": (B,), **extra_terms(...)}: the code of x_in, its reconstruction
        scored against the clean x. With autocast_bf16 the networks run in bfloat16, the
        terms in float32."""
        dev = x.device.type
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast_bf16):
            z = self.encode(x_in)
            logits = self.logits(z)
        return {"recon": reconstruction(logits, x, self.recon),
                **self.extra_terms(x_in, z.float(), logits)}

    def extra_terms(self, x_in: torch.Tensor, z: torch.Tensor,
                    logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """The family's own terms per image (B,), from the input, its code and its logits."""
        return {}
