"""Variational autoencoders (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014):
`vae` shaped like `conv`, `vae-mlp` fully connected; registered on import.

Pure nn.Module: no I/O, no device logic. Their ModelSpec declares them variational, sampled
from the prior, trained on two loss terms per image (`loss_terms`: reconstruction and KL,
the negative ELBO their sum with KL weighted by beta) and with likelihood figures for
`aelab eval` (`extra_metrics`: negative ELBO and the importance-weighted bound of Burda et
al. 2016 on the test set).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AelabError
from .backbones import DEFAULT_HIDDEN
from .contract import DEFAULT_IMAGE_SHAPE, ModelSpec
from .family import FamilyAE
from .registry import register_model

LOG_2PI = math.log(2 * math.pi)
LIKELIHOODS = ("bernoulli", "gaussian")


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, (B, L) -> (B,), in float32.

    Closed form, Kingma & Welling (2014), Appendix B:
        -KL = 1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2).
    """
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dimension: (..., L) -> (...)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).square() * torch.exp(-logvar)).sum(-1)


def log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_k exp(log_w[:, k]), stably: (B, k) -> (B,)."""
    return torch.logsumexp(log_w, dim=1) - math.log(log_w.shape[1])


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between codes a, b (L,) at fractions t (T,) -> (T, L).

    Shoemake (1985), recommended for Gaussian latents by White ("Sampling Generative
    Networks", 2016): p(t) = sin((1-t) w)/sin w * a + sin(t w)/sin w * b, w the angle
    between a and b. Nearly parallel codes fall back to the straight line (sin w ~ 0).
    """
    cos = F.cosine_similarity(a, b, dim=0).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    t = t[:, None]  # (T, 1)
    if omega.abs() < 1e-4:
        return (1 - t) * a + t * b
    s = torch.sin(omega)
    return torch.sin((1 - t) * omega) / s * a + torch.sin(t * omega) / s * b


class VAE(FamilyAE):
    """The variational autoencoder family on a backbone (`backbone="conv"`, the `conv`
    model's shape at 28x28, or `"mlp"`) for images of `image_shape` (C, H, W) (default
    (1, 28, 28)), code of `latent_dim` numbers (default 20).

    The backbone's head gives the mean and log-variance of q(z|x) (log-variance clamped to
    [logvar_min, logvar_max]); the decoder gives logits and `decode` their sigmoid.
    `forward(x)` is deterministic: decode(mean of q(z|x)).

    Loss per image, in nats (`loss_terms`): -ELBO = reconstruction + beta * KL, with
    KL(q(z|x) || N(0, I)) in closed form (Kingma & Welling, ICLR 2014). beta=1 is the true
    ELBO; beta > 1 is the beta-VAE of Higgins et al. (ICLR 2017), which trades
    reconstruction for a code closer to the prior (preset `beta-vae`: beta=4).
    Reconstruction, summed over the C*H*W numbers x_i in [0, 1] of an image of `image_shape`
    (784 for the default 28x28 grey; not binarised) with decoder output m_i:
      * likelihood="bernoulli" (default): sum_i BCE(m_i, x_i)
          = -sum_i [x_i log m_i + (1 - x_i) log(1 - m_i)];
      * likelihood="gaussian": sum_i [(x_i - m_i)^2 / (2 sigma^2) + log sigma + log(2 pi)/2],
        the negative log density of N(m_i, sigma^2); sigma is fixed (default 0.1) or, with
        sigma="learned", one scalar learned with the network (initialised to 0.1). With a
        fixed sigma this is squared error weighted by 1/(2 sigma^2) plus a constant
        C*H*W * (log sigma + log(2 pi)/2) (= -1084.8 nats for sigma=0.1 at 28x28 grey):
        densities, not probabilities, so the numbers are not comparable with the Bernoulli
        ones.
    """

    # explore samples from the prior and interpolates on the sphere; the trainer minimises
    # recon + beta * kl per image and logs both; aelab eval adds the likelihood bounds
    model_spec = ModelSpec(kind="variational", sampler="prior",
                           loss_terms={"recon": 1.0, "kl": "beta"}, likelihood=True, any_shape=True)

    def __init__(self, latent_dim: int = 20, backbone: str = "conv", width: int = 1,
                 hidden=DEFAULT_HIDDEN, act: str = "relu", beta: float = 1.0,
                 likelihood: str = "bernoulli", sigma: float | str = 0.1,
                 logvar_min: float = -10.0, logvar_max: float = 10.0,
                 image_shape=DEFAULT_IMAGE_SHAPE):
        _check_args(beta, likelihood, sigma, logvar_min, logvar_max)
        super().__init__(latent_dim, backbone, width, hidden, act, head_out=2 * latent_dim,
                         image_shape=image_shape)
        self.beta, self.likelihood = float(beta), likelihood
        self.logvar_range = (float(logvar_min), float(logvar_max))
        self.fixed_sigma = None if sigma == "learned" else float(sigma)
        if likelihood == "gaussian" and sigma == "learned":
            self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))

    # --- the autoencoder interface ------------------------------------------------------

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x): mean and clamped log-variance, (B, C, H, W) -> 2 x (B, L)."""
        mu, logvar = self.head(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(*self.logvar_range)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]  # the mean code (B, L)

    # --- likelihood ---------------------------------------------------------------------

    def recon_nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per image in nats, summed over pixels: (..., C, H, W) -> (...)."""
        logits, x = logits.float(), x.float()
        if self.likelihood == "bernoulli":
            # from logits: exact and stable where sigmoid would round to 0 or 1
            per_pixel = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                           reduction="none")
        else:
            log_sigma = self.log_sigma.float() if self.fixed_sigma is None else \
                torch.tensor(math.log(self.fixed_sigma), device=x.device)
            sq = (x - torch.sigmoid(logits)).square()
            per_pixel = sq * torch.exp(-2 * log_sigma) / 2 + log_sigma + LOG_2PI / 2
        return per_pixel.flatten(-3).sum(-1)

    def loss_terms(self, x_in: torch.Tensor, x: torch.Tensor,
                   autocast_bf16: bool = False) -> dict[str, torch.Tensor]:
        """The negative ELBO's terms per image, each (B,) in nats: "recon" = -log p(x|z) for
        one reparameterised sample z ~ q(z|x_in), "kl" = KL(q(z|x_in) || N(0, I)). The
        trainer minimises recon + beta * kl (the model_spec's weights).

        x_in: the (possibly corrupted) input, x: the clean target, both (B, C, H, W).
        With autocast_bf16 the networks run in bfloat16; sampling, KL and likelihood in float32.
        """
        dev = x.device.type
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast_bf16):
            mu, logvar = self.posterior(x_in)
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterisation trick
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast_bf16):
            logits = self.logits(z)
        return {"recon": self.recon_nll(logits, x), "kl": kl_standard_normal(mu, logvar)}

    # --- evaluation ---------------------------------------------------------------------

    def log_weights(self, x: torch.Tensor, k: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k | x) for k samples z_k ~ q(z|x) per image: (B, k).

        Their mean over k estimates the ELBO (beta=1); their log-mean-exp is the IWAE bound.
        """
        mu, logvar = (t.float() for t in self.posterior(x))  # (B, L)
        return self._log_weights(x, mu, logvar, k, gen)

    def _log_weights(self, x, mu, logvar, k, gen) -> torch.Tensor:
        eps = torch.randn((k, *mu.shape), generator=gen, device=mu.device)  # (k, B, L)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.logits(z.flatten(0, 1)).view(k, *x.shape)  # (k, B, C, H, W)
        log_px_z = -self.recon_nll(logits, x)  # (k, B); x (B, C, H, W) broadcasts over k
        zero = torch.zeros((), device=z.device)
        log_pz = log_normal(z, zero, zero)
        log_qz = log_normal(z, mu, logvar)
        return (log_px_z + log_pz - log_qz).T  # (B, k)

    def iwae_bound(self, x: torch.Tensor, k: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """log p(x) >= log (1/k) sum_k w_k per image (B,): Burda, Grosse & Salakhutdinov,
        "Importance Weighted Autoencoders" (ICLR 2016). k=1 is the ELBO estimate;
        the bound tightens as k grows."""
        return log_mean_exp(self.log_weights(x, k, gen))

    def extra_metrics(self, images_u8: torch.Tensor, iw_samples: int = 100, seed: int = 0,
                      images_per_chunk: int | None = None, progress=None) -> dict:
        """Test-set likelihood figures in nats per image, for `aelab eval` (call under
        inference mode), from uint8 images (N, H, W) (grey) or (N, C, H, W) of the model's
        image_shape. Fixed seed, so repeated evaluations agree. Chunks of
        images_per_chunk x iw_samples decodes (default: about 10,000 decodes a chunk) keep
        memory small; `progress(done, total)` is called after each chunk."""
        if images_per_chunk is None:
            images_per_chunk = max(1, min(50, 10_000 // iw_samples))
        was_training = self.training
        self.eval()
        with torch.inference_mode(False):  # so the re-laid-out weights stay normal tensors
            # NHWC weights let oneDNN pick its fast (transposed) convolution kernels, as the
            # trainer does: ~2x faster on CPU. Layout only; no number changes.
            self.to(memory_format=torch.channels_last)
        gen = torch.Generator(device=images_u8.device).manual_seed(seed)
        sums = torch.zeros(4, dtype=torch.float64)
        for i in range(0, len(images_u8), images_per_chunk):
            x = self._as_images(images_u8[i : i + images_per_chunk])  # (b, C, H, W)
            sums += self._chunk_metrics(x, iw_samples, gen)
            if progress is not None:
                progress(min(i + images_per_chunk, len(images_u8)), len(images_u8))
        self.train(was_training)
        n = max(len(images_u8), 1)
        neg_elbo, kl, rec, iwae = (sums / n).tolist()
        return {"neg_elbo_nats": neg_elbo, "kl_nats": kl, "recon_nats": rec,
                "iwae_nll_nats": iwae, "iw_samples": iw_samples, "likelihood": self.likelihood,
                "beta": self.beta}

    def _as_images(self, chunk_u8: torch.Tensor) -> torch.Tensor:
        """uint8 images (b, H, W) or (b, C, H, W) -> floats (b, C, H, W) in [0, 1]."""
        c, h, w = self.image_shape
        if tuple(chunk_u8.shape[1:]) not in {(c, h, w), (h, w) if c == 1 else (c, h, w)}:
            raise AelabError(f"images of shape {tuple(chunk_u8.shape[1:])} for a model of "
                             f"image_shape {list(self.image_shape)}: give (N, {h}, {w}) grey or "
                             f"(N, {c}, {h}, {w}) images, the shape it was trained on")
        return chunk_u8.reshape(len(chunk_u8), c, h, w).float().div(255)

    def _chunk_metrics(self, x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
        """Sums over a chunk of: -ELBO (beta=1, closed-form KL), KL, reconstruction, -IWAE."""
        mu, logvar = (t.float() for t in self.posterior(x))
        eps = torch.randn(mu.shape, generator=gen, device=mu.device)
        rec = self.recon_nll(self.logits(mu + torch.exp(0.5 * logvar) * eps), x)
        kl = kl_standard_normal(mu, logvar)
        iwae = -log_mean_exp(self._log_weights(x, mu, logvar, k, gen))
        return torch.stack([(rec + kl).sum(), kl.sum(), rec.sum(), iwae.sum()]).double().cpu()


@register_model("vae")
class ConvVAE(VAE):
    """`vae`: the VAE family, by default on the `conv` backbone with 20 numbers (see VAE)."""


@register_model("vae-mlp")
class MLPVAE(VAE):
    """`vae-mlp`: the VAE family on the `mlp` backbone, with the shape of the likelihood
    literature's baselines as its defaults: Burda, Grosse & Salakhutdinov (2016) use
    784-200-200-(50) with tanh for a VAE with one stochastic layer. The same as
    `vae --model-args '{"backbone": "mlp", "latent_dim": 50, "hidden": [200, 200],
    "act": "tanh"}'`; its own name so that run folders trained under it still load.

    A fully connected decoder costs ~latent*h + h*h + h*C*H*W multiply-adds per sample, so the
    5000-sample likelihood bound over the 10,000 test images takes minutes on a laptop CPU
    where a convolutional one takes hours.
    """

    alias_of = "vae"

    def __init__(self, latent_dim: int = 50, backbone: str = "mlp", width: int = 1,
                 hidden=(200, 200), act: str = "tanh", beta: float = 1.0,
                 likelihood: str = "bernoulli", sigma: float | str = 0.1,
                 logvar_min: float = -10.0, logvar_max: float = 10.0,
                 image_shape=DEFAULT_IMAGE_SHAPE):
        super().__init__(latent_dim, backbone, width, hidden, act, beta, likelihood, sigma,
                         logvar_min, logvar_max, image_shape=image_shape)


def _check_args(beta, likelihood, sigma, logvar_min, logvar_max) -> None:
    """Reject model arguments that would train silently wrong, before any work."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (beta >= 0):
        raise AelabError(f"beta={beta!r} must be a number >= 0")
    if likelihood not in LIKELIHOODS:
        raise AelabError(f"likelihood={likelihood!r}: choose one of {', '.join(LIKELIHOODS)}")
    if sigma != "learned" and not (isinstance(sigma, (int, float)) and sigma > 0):
        raise AelabError(f"sigma={sigma!r} must be a number > 0 or \"learned\"")
    if not logvar_min < logvar_max:
        raise AelabError(f"logvar_min={logvar_min} must be below logvar_max={logvar_max}")
