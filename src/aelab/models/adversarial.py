"""The adversarial autoencoder (Makhzani, Shlens, Jaitly, Goodfellow & Frey, "Adversarial
Autoencoders", ICLR workshop 2016): `aae`, a deterministic code matched to N(0, I) by a
discriminator instead of a KL term; registered on import.

Pure nn.Module plus the step it trains itself with (its spec's custom_step): per batch,
the autoencoder minimises reconstruction plus the generator's adversarial loss while the
discriminator learns to tell prior samples from codes (the paper's section 2 runs these as
a reconstruction phase and a regularisation phase; see AdversarialStep). Both updates go
through the one optimizer the trainer builds over every parameter, so its state is in the
checkpoint and a resumed run is the uninterrupted one bit for bit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AelabError
from .backbones import DEFAULT_HIDDEN
from .contract import DEFAULT_IMAGE_SHAPE, ModelSpec
from .family import FamilyAE, reconstruction, weighted_mean
from .registry import register_model


def discriminator(latent_dim: int, hidden: int) -> nn.Sequential:
    """D: codes (B, L) -> logits (B, 1) that the code is a prior sample; two hidden ReLU
    layers, as the paper's MNIST networks."""
    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


@register_model("aae")
class AAE(FamilyAE):
    """The adversarial autoencoder on a backbone (`backbone="conv"` or `"mlp"`), a
    deterministic code of `latent_dim` numbers pushed towards N(0, I) by a discriminator
    (`disc_hidden` units per hidden layer, the submodule `discriminator`), for images of
    `image_shape` (C, H, W) (default (1, 28, 28)).

    Loss per image, in the unit of the reconstruction (nats for recon="bce"): recon +
    lam * adversarial, adversarial = -log D(z) = softplus(-logit D(z)), the non-saturating
    generator loss of Goodfellow et al. (2014). Why lam=1: for the best discriminator,
    logit D(z) = log p(z) - log q(z) (p the prior, q the codes' distribution), so while D
    tells codes apart the term is log q(z) - log p(z), whose mean over codes is KL(q || p):
    lam=1 weighs matching the prior as the VAE's ELBO weighs its KL (beta=1).
    The discriminator is trained on softplus(-logit D(p)) + softplus(logit D(z)) per
    image (BCE with logits, prior samples p ~ N(0, I) labelled 1, codes 0), reported as the
    monitor "disc_loss" (2 ln 2 = 1.386 when D cannot tell them apart).
    """

    model_spec = ModelSpec(kind="deterministic", sampler="prior",
                           loss_terms={"recon": 1.0, "adversarial": "lam"}, custom_step=True,
                           monitors=("disc_loss",), any_shape=True)

    def __init__(self, latent_dim: int = 16, backbone: str = "conv", width: int = 1,
                 hidden=DEFAULT_HIDDEN, act: str = "relu", recon: str = "bce",
                 lam: float = 1.0, disc_hidden: int = 512, image_shape=DEFAULT_IMAGE_SHAPE):
        _check_args(lam, disc_hidden)
        super().__init__(latent_dim, backbone, width, hidden, act, recon, image_shape=image_shape)
        self.lam = float(lam)
        self.discriminator = discriminator(latent_dim, disc_hidden)

    def disc_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.discriminator(z).squeeze(1)  # (B, L) -> (B,)

    def loss_terms(self, x_in: torch.Tensor, x: torch.Tensor,
                   autocast_bf16: bool = False) -> dict[str, torch.Tensor]:
        """{"recon", "adversarial"} per image (B,): the reconstruction of the code of x_in
        scored against x, and the generator's loss -log D(code). No update here."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            z = self.encode(x_in)
            logits = self.logits(z)
            d = self.disc_logits(z)
        return {"recon": reconstruction(logits, x, self.recon),
                "adversarial": F.softplus(-d.float())}

    def make_step(self, optimizer, config) -> AdversarialStep:
        return AdversarialStep(self, optimizer, config.grad_clip, config.precision == "bf16")


def _check_args(lam, disc_hidden) -> None:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) \
            or lam < 0:
        raise AelabError(f"lam={lam!r} must be a finite number >= 0 (the adversarial term's "
                         "weight; 1 weighs it as a VAE weighs its KL)")
    if isinstance(disc_hidden, bool) or not isinstance(disc_hidden, int) or disc_hidden < 1:
        raise AelabError(f"disc_hidden={disc_hidden!r} must be a whole number >= 1 (units in "
                         "each of the discriminator's two hidden layers)")


class AdversarialStep:
    """One batch: the autoencoder (encoder, head, decoder) minimises recon + lam *
    adversarial, with the discriminator as it stands, and the discriminator minimises its
    loss on the same codes (detached) and as many prior samples, together, one update of the
    one optimizer: every parameter takes one Adam step per batch, with its own moments, as
    with pythae's two optimisers. (The paper's three updates per batch, reconstruction then
    discriminator then generator, through one optimizer would give the encoder two steps
    that share their Adam moments; in trials that made the game swing: the discriminator's
    loss went 0.08, 16.8, 2.7 in successive epochs.) Returns (4,): [recon + lam *
    adversarial, recon, adversarial, disc_loss], batch means before the update."""

    def __init__(self, model: AAE, optimizer, grad_clip: float | None, bf16: bool):
        self.model, self.optimizer, self.grad_clip, self.bf16 = model, optimizer, grad_clip, bf16
        self.ae_params = [*model.encoder.parameters(), *model.head.parameters(),
                          *model.decoder.parameters()]
        self.disc_params = list(model.discriminator.parameters())
        _check_optimizer_covers(model, optimizer)

    def __call__(self, x_in: torch.Tensor, x: torch.Tensor, weights=None) -> torch.Tensor:
        m = self.model
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            z = m.encode(x_in)  # (B, L)
            logits = m.logits(z)
            prior = torch.randn(z.shape, device=z.device)  # the global RNG: restored on resume
            d_gen = m.disc_logits(z).float()  # the generator's view: gradients reach the encoder
            d_real, d_fake = m.disc_logits(prior).float(), m.disc_logits(z.detach()).float()
        recon = weighted_mean(reconstruction(logits, x, m.recon), weights)
        adversarial = weighted_mean(F.softplus(-d_gen), weights)
        # the discriminator: prior samples are labelled 1, codes 0 (BCE with logits)
        disc = weighted_mean(F.softplus(-d_real) + F.softplus(d_fake), weights)
        self.optimizer.zero_grad(set_to_none=True)
        # each loss into its own parameters: the autoencoder's does not train D, and D's
        # (on detached codes) does not reach the encoder
        (recon + m.lam * adversarial).backward(inputs=self.ae_params)
        disc.backward(inputs=self.disc_params)
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.ae_params, self.grad_clip)
            nn.utils.clip_grad_norm_(self.disc_params, self.grad_clip)
        self.optimizer.step()
        parts = torch.stack([recon, adversarial, disc]).detach()
        return torch.cat([(parts[0] + m.lam * parts[1]).view(1), parts])  # (4,)


def _check_optimizer_covers(model: nn.Module, optimizer) -> None:
    """The one optimizer must hold every parameter (its state is what a checkpoint saves)."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in model.named_parameters() if id(p) not in held]
    if missing:
        raise AelabError(f"{type(model).__name__}'s step updates every parameter through the "
                         f"one optimizer it is given, which lacks {', '.join(missing[:3])}"
                         f"{' ...' if len(missing) > 3 else ''}; build it over model.parameters()")
