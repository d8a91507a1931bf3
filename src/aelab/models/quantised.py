"""The vector-quantised autoencoder (van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete
Representation Learning", NeurIPS 2017): `vqvae`, a code made of codebook vectors, the
codebook learnt by exponential moving averages; registered on import.

Pure nn.Module plus the step it trains itself with (its spec's custom_step): an autograd
update of the networks (reconstruction through the straight-through estimator, and the
commitment term), then the codebook's moving averages, outside the gradient. The codebook
and its averages are buffers, so they are in every checkpoint and a resumed run is the
uninterrupted one bit for bit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AelabError
from .family import weighted_mean
from .backbones import DEFAULT_HIDDEN
from .contract import DEFAULT_IMAGE_SHAPE, ModelSpec
from .family import FamilyAE, reconstruction
from .registry import register_model


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The index of the nearest codebook entry (squared Euclidean distance) for each
    vector: z (N, D), codebook (K, D) -> (N,) int64."""
    dist = (z.square().sum(1, keepdim=True) - 2 * z @ codebook.T
            + codebook.square().sum(1))  # (N, K)
    return dist.argmin(1)


def ema_codebook(count: torch.Tensor, total: torch.Tensor, steps: torch.Tensor,
                 z: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor | None,
                 decay: float, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One update of the codebook's moving averages, in place; returns (the new codebook
    (K, D), the batch's use of each entry (K,)).

    count (K,), total (K, D), steps (): the averages' hidden states and the number of
    updates so far; z (N, D) the encoder's vectors, idx (N,) their entries, weights (N,)
    or None. Van den Oord et al. (2017), appendix A.1, as sonnet's VectorQuantizerEMA
    (v2) computes it:
        N_i <- decay N_i + (1 - decay) n_i,   m_i <- decay m_i + (1 - decay) sum_{idx_j = i} z_j
    both debiased (hidden states from 0, divided by 1 - decay^t, Adam's correction), then
    Laplace smoothing of the counts, N_i' = (N_i + eps) / (n + K eps) * n with n = sum N_i,
    so that an entry no vector chose divides by a number > 0, and e_i = m_i / N_i'.
    """
    k = count.shape[0]
    onehot = F.one_hot(idx, k).to(z.dtype)  # (N, K)
    if weights is not None:
        onehot = onehot * weights[:, None]
    used = onehot.sum(0)  # (K,)
    steps.add_(1)
    count.lerp_(used, 1 - decay)  # decay * count + (1 - decay) * used
    total.lerp_(onehot.T @ z, 1 - decay)  # (K, D)
    debias = 1 - decay ** steps.to(z.dtype)
    n_avg, m_avg = count / debias, total / debias
    n = n_avg.sum()
    smoothed = (n_avg + eps) / (n + k * eps) * n  # (K,)
    return m_avg / smoothed[:, None], used


def usage(used: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity, distinct entries) of a batch's use of the codebook, used (K,): the
    perplexity exp(-sum_i p_i ln p_i), p_i = used_i / sum(used), is the number of
    equally used entries that would give the same entropy."""
    p = used / used.sum()
    return torch.exp(-torch.special.xlogy(p, p).sum()), (used > 0).sum().to(used.dtype)


@register_model("vqvae")
class VQVAE(FamilyAE):
    """The VQ-VAE on a backbone (`backbone="conv"` or `"mlp"`): the head's code (B,
    latent_dim) is cut into `code_groups = latent_dim // dim` vectors of `dim` numbers,
    each replaced by its nearest entry of a codebook of `codes` entries; for images of
    `image_shape` (C, H, W) (default (1, 28, 28)).

    Defaults: latent_dim 16, dim 4: 4 positions; codes=512, the paper's K (its ImageNet and
    CIFAR models), which gives a code 4 ln 512 = 25 nats (36 bits), about the KL a
    16-number VAE spends on MNIST, from a codebook small enough that a categorical prior
    over each position is fitted from the training codes. beta=0.25, decay=0.99 and
    epsilon=1e-5: the paper's and sonnet's.

    `encode` gives the quantised code, its numbers codebook entries exactly (and the
    straight-through gradient: e + (z - sg(z))); `decode` takes such codes; `forward` is
    their composition. Loss per image (`loss_terms`): recon + beta * commitment,
    commitment = ||z_e - sg(e)||^2 summed over the code (the paper's equation 3 without its
    codebook term, which the moving averages replace).

    Dead codes: like the paper and sonnet, nothing revives them. An entry no vector has
    chosen has average sum 0 and so sits at the origin (all such entries coincide there,
    and the lowest index among them wins a tie), from where it comes back into use if the
    encoder puts a vector nearer the origin than any used entry. The step reports the
    batch's perplexity and its number of distinct entries ("used_codes", per batch, not
    a running count), so a collapsing codebook shows in metrics.jsonl.
    """

    model_spec = ModelSpec(kind="quantised", sampler="fitted",
                           loss_terms={"recon": 1.0, "commitment": "beta"}, custom_step=True,
                           monitors=("perplexity", "used_codes"), any_shape=True)

    def __init__(self, latent_dim: int = 16, backbone: str = "conv", width: int = 1,
                 hidden=DEFAULT_HIDDEN, act: str = "relu", recon: str = "bce", dim: int = 4,
                 codes: int = 512, beta: float = 0.25, decay: float = 0.99,
                 epsilon: float = 1e-5, image_shape=DEFAULT_IMAGE_SHAPE):
        _check_args(latent_dim, dim, codes, beta, decay, epsilon)
        super().__init__(latent_dim, backbone, width, hidden, act, recon, image_shape=image_shape)
        self.dim, self.code_groups = dim, latent_dim // dim
        self.beta, self.decay, self.epsilon = float(beta), float(decay), float(epsilon)
        # sonnet's VarianceScaling(distribution="uniform"): U(-sqrt(3 / dim), sqrt(3 / dim))
        limit = math.sqrt(3 / dim)
        self.register_buffer("codebook", torch.empty(codes, dim).uniform_(-limit, limit))
        self.register_buffer("ema_count", torch.zeros(codes))  # hidden state of N_i
        self.register_buffer("ema_sum", torch.zeros(codes, dim))  # hidden state of m_i
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.int64))

    # --- the autoencoder interface ------------------------------------------------------

    def quantise(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codebook vectors (B, L), their entries (B, G)) for codes z_e (B, L) in float32.
        The code of one image, L = G * dim: [z_0 .. z_{dim-1} | z_dim .. | ...], G vectors."""
        b = z_e.shape[0]
        idx = nearest_codes(z_e.reshape(b * self.code_groups, self.dim), self.codebook)
        return self.codebook[idx].reshape(b, self.latent_dim), idx.view(b, self.code_groups)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z_e = self.head(self.encoder(x)).float()  # (B, L)
        z_q, _ = self.quantise(z_e)
        return straight_through(z_q, z_e)

    # --- the loss -----------------------------------------------------------------------

    def loss_terms(self, x_in: torch.Tensor, x: torch.Tensor,
                   autocast_bf16: bool = False) -> dict[str, torch.Tensor]:
        """{"recon", "commitment"} per image (B,); the codebook is not updated here."""
        return self.forward_terms(x_in, x, autocast_bf16)[0]

    def forward_terms(self, x_in: torch.Tensor, x: torch.Tensor, autocast_bf16: bool = False):
        """(the loss terms per image, the encoder's codes z_e (B, L) detached, their
        entries (B, G)): what the step needs for the update and the moving averages."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            z_e = self.head(self.encoder(x_in))
        z_e = z_e.float()
        z_q, idx = self.quantise(z_e.detach())  # a buffer: z_q is sg(e)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            logits = self.logits(straight_through(z_q, z_e))
        terms = {"recon": reconstruction(logits, x, self.recon),
                 "commitment": (z_e - z_q).square().sum(1)}
        return terms, z_e.detach(), idx

    def make_step(self, optimizer, config) -> QuantisedStep:
        return QuantisedStep(self, optimizer, config.grad_clip, config.precision == "bf16")

    @torch.no_grad()
    def update_codebook(self, z_e: torch.Tensor, idx: torch.Tensor,
                        weights: torch.Tensor | None) -> torch.Tensor:
        """The moving-average update (ema_codebook) from a batch's codes z_e (B, L), their
        entries (B, G) and per-image weights (B,) or None; returns the batch's use of each
        entry (K,)."""
        w = None if weights is None else weights.float().repeat_interleave(self.code_groups)
        new, used = ema_codebook(self.ema_count, self.ema_sum, self.ema_steps,
                                 z_e.reshape(-1, self.dim), idx.reshape(-1), w,
                                 self.decay, self.epsilon)
        self.codebook.copy_(new)
        return used


def straight_through(z_q: torch.Tensor, z_e: torch.Tensor) -> torch.Tensor:
    """z_q's values exactly (z_e - z_e is 0 for every finite number) with z_e's gradient:
    the straight-through estimator, van den Oord et al. (2017), section 3.2."""
    return z_q + (z_e - z_e.detach())


def _check_args(latent_dim, dim, codes, beta, decay, epsilon) -> None:
    for name, v in (("dim", dim), ("codes", codes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise AelabError(f"{name}={v!r} must be a whole number >= 1")
    if isinstance(latent_dim, int) and latent_dim % dim:
        raise AelabError(f"dim={dim} must divide latent_dim={latent_dim}: the code is cut into "
                         f"latent_dim // dim vectors of dim numbers")
    for name, v, ok, what in (("beta", beta, lambda v: v >= 0, ">= 0"),
                              ("decay", decay, lambda v: 0 < v < 1, "in (0, 1)"),
                              ("epsilon", epsilon, lambda v: v > 0, "> 0")):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not ok(v):
            raise AelabError(f"{name}={v!r} must be a finite number {what}")


class QuantisedStep:
    """One batch: an autograd update of the networks on recon + beta * commitment, then the
    codebook's moving averages from the same batch's codes (the codebook the loss used).
    Returns (5,): [loss, recon, commitment, perplexity, used_codes], batch means."""

    def __init__(self, model: VQVAE, optimizer, grad_clip: float | None, bf16: bool):
        self.model, self.optimizer, self.grad_clip, self.bf16 = model, optimizer, grad_clip, bf16

    def __call__(self, x_in: torch.Tensor, x: torch.Tensor, weights=None) -> torch.Tensor:
        m = self.model
        terms, z_e, idx = m.forward_terms(x_in, x, self.bf16)
        recon = weighted_mean(terms["recon"], weights)
        commitment = weighted_mean(terms["commitment"], weights)
        loss = recon + m.beta * commitment
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(m.parameters(), self.grad_clip)
        self.optimizer.step()
        perplexity, distinct = usage(m.update_codebook(z_e, idx, weights))
        return torch.stack([loss, recon, commitment, perplexity, distinct]).detach()
