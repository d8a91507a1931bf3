"""Variational families beyond the VAE: `iwae` (k importance samples in the objective) and
`vamp` (a learned mixture prior); registered on import. The beta-VAE is `vae` with its
`beta` argument (preset `beta-vae`).

Both subclass aelab.models.vae.VAE: the same backbones and arguments (`image_shape`
included), q(z|x) a diagonal
Gaussian from the backbone's head, a Bernoulli (or Gaussian) decoder, per-image terms in
nats, and `extra_metrics` (negative ELBO and the importance-weighted bound) for `aelab eval`.
Pure nn.Modules: no I/O, no device logic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AelabError
from .backbones import DEFAULT_HIDDEN
from .contract import DEFAULT_IMAGE_SHAPE, ModelSpec
from .registry import register_model
from .vae import VAE, log_mean_exp, log_normal

PSEUDO_INIT = (0.05, 0.01)  # mean, std of the pseudo-inputs' initial pixels (see VampVAE)
MIXTURE_CHUNK = 2**20  # numbers per (rows, K, L) block in log_mixture: 4 MiB in float32


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AelabError(f"{name}={value!r} must be a whole number >= 1")
    return value


def log_mixture(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k N(z; mu_k, diag(exp(logvar_k))), the log-density of an equally weighted
    mixture of K diagonal Gaussians: z (..., L), mu and logvar (K, L) -> (...), in float32.

    Computed over blocks of rows so that the (rows, K, L) differences stay small: a
    likelihood chunk of 10,000 codes against K=500 components of L=16 would otherwise hold
    80 million numbers at once.
    """
    K, L = mu.shape
    flat = z.float().reshape(-1, L)  # (N, L)
    rows = max(1, MIXTURE_CHUNK // (K * L))
    parts = [torch.logsumexp(log_normal(block[:, None, :], mu, logvar), dim=1)  # (rows,)
             for block in flat.split(rows)]
    return (torch.cat(parts) - math.log(K)).view(z.shape[:-1])


def decode_log_weights(model: VAE, x: torch.Tensor, z: torch.Tensor, mu: torch.Tensor,
                       logvar: torch.Tensor, log_prior, autocast_bf16: bool = False):
    """The two parts of log w = log p(x|z) + log p(z) - log q(z|x) for codes z (k, B, L)
    drawn from q(z|x) = N(mu, diag(exp(logvar))) (B, L): -log p(x|z) and
    log q(z|x) - log p(z), each (k, B) in float32. The k x B codes are decoded in one call."""
    k, B = z.shape[:2]
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
        logits = model.logits(z.flatten(0, 1))  # (k*B, C, H, W)
    nll = model.recon_nll(logits.view(k, B, *logits.shape[1:]), x)  # (k, B); x broadcasts over k
    return nll, log_normal(z, mu, logvar) - log_prior(z)


def _standard_normal(z: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros((), device=z.device)
    return log_normal(z, zero, zero)  # log N(z; 0, I): (..., L) -> (...)


@register_model("iwae")
class IWAE(VAE):
    """`iwae`: the importance-weighted autoencoder of Burda, Grosse & Salakhutdinov,
    "Importance Weighted Autoencoders" (ICLR 2016): the VAE's networks trained on the
    k-sample bound

        L_k = E[log (1/k) sum_k w_k],  w_k = p(x, z_k) / q(z_k|x),  z_k ~ q(z|x) independent,

    which is the ELBO for k=1 and tightens towards log p(x) as k grows. The k codes per image
    are reparameterised (z_k = mu + sigma * eps_k) and decoded in one call of B*k codes.

    Terms per image, with log w_k = -a_k - b_k, a_k = -log p(x|z_k),
    b_k = log q(z_k|x) - log p(z_k), and the self-normalised weights
    w~ = softmax_k(log w), held constant (detached):
      recon = sum_k w~_k a_k,  kl = sum_k w~_k b_k,  gap = log k - H(w~) (no gradient),
    H(w~) = -sum_k w~_k log w~_k. Since log w~_k = log w_k - logsumexp_j log w_j,
    recon + kl + gap = -logsumexp_k log w_k + log k = -log (1/k) sum_k w_k exactly, so the
    logged loss is the negative IWAE bound in nats; and its gradient is
    -sum_k w~_k grad log w_k, the IWAE gradient (eq. 14 of the paper), because w~ and gap
    carry none. kl is a weighted Monte Carlo estimate, not the closed form; gap is in
    [0, log k], 0 for k=1.

    Arguments (the VAE's, see aelab.models.vae.VAE): latent_dim (16), backbone ("conv" or
    "mlp"), width (1), hidden ((512, 256)), act ("relu"), k (5: the paper trains with k=5
    and k=50; k=1 is a VAE with a Monte Carlo KL), beta (1.0: weights kl; other values give
    no bound), likelihood ("bernoulli"), sigma (0.1), logvar_min (-10), logvar_max (10),
    image_shape ((1, 28, 28)). `aelab eval`'s likelihood figures are the VAE's (standard
    normal prior).
    """

    model_spec = ModelSpec(kind="variational", sampler="prior",
                           loss_terms={"recon": 1.0, "kl": "beta", "gap": 1.0}, likelihood=True,
                           any_shape=True)

    def __init__(self, latent_dim: int = 16, backbone: str = "conv", width: int = 1,
                 hidden=DEFAULT_HIDDEN, act: str = "relu", k: int = 5, beta: float = 1.0,
                 likelihood: str = "bernoulli", sigma: float | str = 0.1,
                 logvar_min: float = -10.0, logvar_max: float = 10.0,
                 image_shape=DEFAULT_IMAGE_SHAPE):
        self.k = _whole("k", k)
        super().__init__(latent_dim, backbone, width, hidden, act, beta, likelihood, sigma,
                         logvar_min, logvar_max, image_shape=image_shape)

    def loss_terms(self, x_in: torch.Tensor, x: torch.Tensor,
                   autocast_bf16: bool = False) -> dict[str, torch.Tensor]:
        """recon, kl and gap per image, each (B,) in nats (see the class docstring): their sum
        is -log (1/k) sum_k w_k for k fresh draws eps ~ N(0, I) of shape (k, B, L) from the
        global generator."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            mu, logvar = self.posterior(x_in)
        mu, logvar = mu.float(), logvar.float()  # (B, L)
        eps = torch.randn((self.k, *mu.shape), device=mu.device)  # (k, B, L)
        z = mu + torch.exp(0.5 * logvar) * eps  # reparameterisation trick
        nll, log_ratio = decode_log_weights(self, x, z, mu, logvar, _standard_normal,
                                            autocast_bf16)  # (k, B) each
        log_wn = torch.log_softmax(-(nll + log_ratio), dim=0).detach()  # log w~, (k, B)
        wn = log_wn.exp()
        gap = math.log(self.k) + (wn * log_wn).sum(0)  # log k - H(w~), a constant
        return {"recon": (wn * nll).sum(0), "kl": (wn * log_ratio).sum(0), "gap": gap}


@register_model("vamp")
class VampVAE(VAE):
    """`vamp`: a VAE with the VampPrior of Tomczak & Welling, "VAE with a VampPrior"
    (AISTATS 2018): the prior is the mixture of the posteriors of K learned pseudo-inputs,

        p(z) = (1/K) sum_k q(z | u_k),  u_k (C, H, W) in [0, 1], learned with the network.

    Pseudo-inputs: images of the model's image_shape, u = hardtanh(U, 0, 1) of an
    unconstrained parameter `pseudo_raw` (K, C, H, W), as in the authors' code
    (github.com/jmtomczak/vae_vampprior, whose final version maps K one-hot rows through a
    bias-free Linear then Hardtanh(0, 1): the same thing), initialised U ~ N(0.05, 0.01):
    near-black images like MNIST's background. The authors' script defaults to mean -0.05;
    every such pixel starts below 0, where hardtanh passes no gradient, so the pseudo-inputs
    would stay black: +0.05 lets them learn.

    Loss per image, in nats: recon = -log p(x|z) and kl = log q(z|x) - log p(z) for one
    reparameterised z ~ q(z|x), the same z (the KL to a mixture has no closed form, so kl
    is this one-sample Monte Carlo estimate, as in the paper; it can be negative for an
    image, its expectation cannot). Cost: every step encodes the K pseudo-inputs beside the
    batch (one encoder call on B + K images; with K=500 and batch 64 the encoder sees 9x
    the images), and log p(z) compares each code with K components.

    Sampling (`prior_sample`): a pseudo-input uniformly, then a code from its posterior.
    `aelab eval`'s bounds use this prior: the importance weights p(x|z) p(z) / q(z|x) with
    the mixture's log p(z), and the negative ELBO with the one-sample kl.

    Arguments (the VAE's, see aelab.models.vae.VAE): latent_dim (16), backbone ("conv" or
    "mlp"), width (1), hidden ((512, 256)), act ("relu"), pseudo_inputs (K, 500: the
    paper's MNIST setting), beta (1.0), likelihood ("bernoulli"), sigma (0.1),
    logvar_min (-10), logvar_max (10), image_shape ((1, 28, 28)).
    """

    def __init__(self, latent_dim: int = 16, backbone: str = "conv", width: int = 1,
                 hidden=DEFAULT_HIDDEN, act: str = "relu", pseudo_inputs: int = 500,
                 beta: float = 1.0, likelihood: str = "bernoulli", sigma: float | str = 0.1,
                 logvar_min: float = -10.0, logvar_max: float = 10.0,
                 image_shape=DEFAULT_IMAGE_SHAPE):
        K = _whole("pseudo_inputs", pseudo_inputs)
        super().__init__(latent_dim, backbone, width, hidden, act, beta, likelihood, sigma,
                         logvar_min, logvar_max, image_shape=image_shape)
        # (K, C, H, W)
        self.pseudo_raw = nn.Parameter(torch.empty(K, *self.image_shape).normal_(*PSEUDO_INIT))

    # --- the prior ----------------------------------------------------------------------

    def pseudo_images(self) -> torch.Tensor:
        """The pseudo-inputs u_k in [0, 1]: (K, C, H, W)."""
        return F.hardtanh(self.pseudo_raw, 0.0, 1.0)

    def prior_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and log-variances of the K mixture components q(z|u_k): 2 x (K, L) float32."""
        mu, logvar = self.posterior(self.pseudo_images())
        return mu.float(), logvar.float()

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) under the VampPrior: (..., L) -> (...)."""
        return log_mixture(z, *self.prior_components())

    def prior_sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n codes (n, L) float32 from p(z): a pseudo-input k uniformly, then z ~ q(z|u_k);
        every random number from `generator` (on its device), so one seed gives one sample."""
        with torch.no_grad():
            mu, logvar = self.prior_components()  # (K, L)
        idx = torch.randint(len(mu), (n,), generator=generator, device=generator.device)
        eps = torch.randn((n, self.latent_dim), generator=generator, device=generator.device)
        idx, eps = idx.to(mu.device), eps.to(mu.device)
        return mu[idx] + torch.exp(0.5 * logvar[idx]) * eps  # (n, L)

    # --- the loss -----------------------------------------------------------------------

    def loss_terms(self, x_in: torch.Tensor, x: torch.Tensor,
                   autocast_bf16: bool = False) -> dict[str, torch.Tensor]:
        """recon = -log p(x|z) and kl = log q(z|x_in) - log p(z) for one reparameterised
        z ~ q(z|x_in), each (B,) in nats; the batch and the pseudo-inputs in one encoder call."""
        B = len(x_in)
        both = torch.cat([x_in, self.pseudo_images().to(x_in.dtype)])  # (B + K, C, H, W)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            mu_all, logvar_all = self.posterior(both)
        mu_all, logvar_all = mu_all.float(), logvar_all.float()  # (B + K, L)
        mu, logvar = mu_all[:B], logvar_all[:B]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterisation trick
        nll, kl = decode_log_weights(
            self, x, z[None], mu, logvar,
            lambda c: log_mixture(c, mu_all[B:], logvar_all[B:]), autocast_bf16)
        return {"recon": nll[0], "kl": kl[0]}

    # --- evaluation: the VAE's figures with this prior ----------------------------------

    def _log_weights(self, x, mu, logvar, k, gen) -> torch.Tensor:
        """log w (B, k) with the VampPrior's log p(z); the VAE's draws from `gen`."""
        return self._weights(x, mu, logvar, k, gen, self.prior_components())

    def _weights(self, x, mu, logvar, k, gen, components) -> torch.Tensor:
        eps = torch.randn((k, *mu.shape), generator=gen, device=mu.device)  # (k, B, L)
        z = mu + torch.exp(0.5 * logvar) * eps
        nll, log_ratio = decode_log_weights(self, x, z, mu, logvar,
                                            lambda c: log_mixture(c, *components))
        return -(nll + log_ratio).T  # (B, k)

    def _chunk_metrics(self, x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
        """Sums over a chunk of: -ELBO (beta=1, one-sample kl), kl, reconstruction, -IWAE."""
        mu, logvar = (t.float() for t in self.posterior(x))
        components = self.prior_components()
        eps = torch.randn(mu.shape, generator=gen, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        rec = self.recon_nll(self.logits(z), x)
        kl = log_normal(z, mu, logvar) - log_mixture(z, *components)
        iwae = -log_mean_exp(self._weights(x, mu, logvar, k, gen, components))
        return torch.stack([(rec + kl).sum(), kl.sum(), rec.sum(), iwae.sum()]).double().cpu()
