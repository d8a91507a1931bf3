"""The variational families (`iwae`, `vamp`) and the beta-VAE preset: their terms against
direct computations of the formulas in their papers, their gradients, and short training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from aelab.models import build_model
from aelab.models.contract import loss_weights, prior_codes, spec
from aelab.models.vae import VAE, kl_standard_normal
from aelab.models.variational import log_mixture
from aelab.presets import PRESETS

TINY = {"backbone": "mlp", "hidden": [8], "latent_dim": 2}


def _images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _blobs(n: int = 32, seed: int = 7) -> torch.Tensor:
    """Images that look a little like digits: a bright blob on a dark ground (n, 1, 28, 28)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centres = 10 + 8 * torch.rand(n, 2, generator=g)
    d2 = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2
    return torch.exp(-d2 / 20).unsqueeze(1)


def _binary(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(_images(n, seed), generator=torch.Generator().manual_seed(seed + 1))


def _loss(model, x, seed: int = 5) -> torch.Tensor:
    """The trainer's per-image loss (B,): the terms' weighted sum, with fixed draws."""
    torch.manual_seed(seed)
    terms = model.loss_terms(x, x)
    return sum(w * terms[n] for n, w in loss_weights(model).items())


def _direct_log_w(model, x, eps, log_prior) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) from torch.distributions, for the
    codes z_k = mu + sigma * eps_k, eps (k, B, L): (k, B)."""
    mu, logvar = model.posterior(x)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    z = mu + (0.5 * logvar).exp() * eps  # (k, B, L)
    logits = model.decoder(z.flatten(0, 1)).view(*z.shape[:2], 1, 28, 28)
    log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                 reduction="none").flatten(2).sum(2)
    return log_px + log_prior(z) - q.log_prob(z)


def _standard(z):
    return Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1).log_prob(z)


def _train(model, steps: int = 20) -> tuple[float, float]:
    """(loss before, loss after) `steps` Adam steps on one fixed batch of 32."""
    x = _blobs(32)
    with torch.no_grad():
        before = _loss(model, x).mean().item()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        _loss(model, x, seed=torch.randint(10**6, ()).item()).mean().backward()
        opt.step()
    with torch.no_grad():
        after = _loss(model, x).mean().item()
    return before, after


def _all_parameters_get_gradients(model) -> None:
    _loss(model, _images(8)).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# --- iwae -------------------------------------------------------------------------------


def test_iwae_declares_three_terms_and_defaults():
    m = build_model("iwae")
    assert (m.k, m.latent_dim, m.backbone) == (5, 16, "conv")
    s = spec(m)
    assert (s.kind, s.sampler, s.terms, s.likelihood) == (
        "variational", "prior", ("recon", "kl", "gap"), True)
    assert loss_weights(m) == {"recon": 1.0, "kl": 1.0, "gap": 1.0}


@pytest.mark.parametrize("k", [0, 2.0, True])
def test_iwae_rejects_a_bad_k(k):
    with pytest.raises(Exception, match="k="):
        build_model("iwae", k=k)


def test_iwae_with_one_sample_is_the_vae_with_a_monte_carlo_kl():
    iwae = build_model("iwae", k=1, latent_dim=8)
    vae = build_model("vae", latent_dim=8)
    vae.load_state_dict(iwae.state_dict())
    x = _images(6)
    with torch.no_grad():
        torch.manual_seed(3)
        t_iwae = iwae.loss_terms(x, x)
        torch.manual_seed(3)
        t_vae = vae.loss_terms(x, x)
        torch.manual_seed(3)
        eps = torch.randn(6, 8)  # the same draw both took
        mu, logvar = vae.posterior(x)
    assert torch.equal(t_iwae["recon"], t_vae["recon"])  # same z, same decoder
    assert torch.equal(t_iwae["gap"], torch.zeros(6))  # log 1 - H(1) = 0
    # kl = log q(z|x) - log N(z; 0, I) = 1/2 sum_j (z_j^2 - eps_j^2 - logvar_j) for
    # z = mu + sigma eps; its expectation is the closed form the VAE uses
    z = mu + (0.5 * logvar).exp() * eps
    assert torch.allclose(t_iwae["kl"], 0.5 * (z.square() - eps.square() - logvar).sum(1),
                          atol=1e-4)
    assert not torch.allclose(t_iwae["kl"], t_vae["kl"])
    many = x[:1].expand(4000, -1, -1, -1)
    with torch.no_grad():
        torch.manual_seed(4)
        mc = iwae.loss_terms(many, many)["kl"]
    closed = kl_standard_normal(*vae.posterior(x[:1]))
    assert abs(mc.mean() - closed).item() < 4 * mc.std().item() / math.sqrt(4000)


def test_iwae_terms_sum_to_the_negative_bound():
    torch.manual_seed(0)
    m = build_model("iwae", k=7, latent_dim=4)
    x = _binary(5)
    with torch.no_grad():
        torch.manual_seed(11)
        terms = m.loss_terms(x, x)
        torch.manual_seed(11)
        log_w = _direct_log_w(m, x, torch.randn(7, 5, 4), _standard)  # (k, B)
    neg_bound = -(torch.logsumexp(log_w, 0) - math.log(7))
    assert torch.allclose(terms["recon"] + terms["kl"] + terms["gap"], neg_bound, rtol=1e-5)
    assert (terms["gap"] >= -1e-6).all() and (terms["gap"] <= math.log(7) + 1e-6).all()
    assert (terms["gap"] > 1e-3).any()  # a real gap: the decomposition is not the ELBO's
    # the bound is at least the k-sample ELBO estimate (Jensen), on the same draws
    assert (neg_bound <= -log_w.mean(0) + 1e-4).all()


def test_iwae_gradient_is_the_importance_weighted_gradient():
    torch.manual_seed(0)
    m = build_model("iwae", k=6, **TINY)
    x = _binary(4)

    def grads(loss_fn):
        m.zero_grad()
        torch.manual_seed(2)
        loss_fn().backward()
        return torch.cat([p.grad.flatten() for p in m.parameters()])

    ours = grads(lambda: _loss(m, x, seed=2).mean())
    direct = grads(lambda: -(torch.logsumexp(_direct_log_w(m, x, torch.randn(6, 4, 2),
                                                           _standard), 0) - math.log(6)).mean())
    elbo = grads(lambda: -_direct_log_w(m, x, torch.randn(6, 4, 2), _standard).mean())
    # float32: the two sum 784 pixels' terms of ~500 nats in different orders
    assert (ours - direct).norm() < 1e-4 * direct.norm()
    assert (ours - elbo).norm() > 0.1 * elbo.norm()  # the check tells the gradients apart


def test_iwae_decodes_all_samples_in_one_call():
    m = build_model("iwae", k=5, latent_dim=4)
    seen = []
    m.decoder.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    with torch.no_grad():
        m.loss_terms(_images(3), _images(3))
    assert seen == [(15, 4)]


@pytest.mark.parametrize("backbone", ["conv", "mlp"])
def test_iwae_trains_on_both_backbones(backbone):
    torch.manual_seed(0)
    m = build_model("iwae", backbone=backbone, hidden=[64, 32])
    x = _images(8)
    assert m.encode(x).shape == (8, 16) and m(x).shape == (8, 1, 28, 28)
    assert all(t.shape == (8,) for t in m.loss_terms(x, x).values())
    _all_parameters_get_gradients(m)
    before, after = _train(m)
    assert after < before - 10  # nats per image


# --- vamp -------------------------------------------------------------------------------


def test_vamp_defaults_and_pseudo_inputs():
    m = build_model("vamp")
    assert (m.latent_dim, m.backbone) == (16, "conv")
    assert m.pseudo_raw.shape == (500, 1, 28, 28)
    u = m.pseudo_images()
    assert u.min() >= 0 and u.max() <= 1
    assert 0.0 < u.mean().item() < 0.1  # initialised near black, inside hardtanh's slope
    assert spec(m).sampler == "prior" and spec(m).terms == ("recon", "kl")
    with pytest.raises(Exception, match="pseudo_inputs="):
        build_model("vamp", pseudo_inputs=0)


def test_log_mixture_is_the_logsumexp_over_components():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    z = torch.randn(4, 5, 2, generator=g)
    comp = Normal(mu, (0.5 * logvar).exp())  # (K, L)
    direct = torch.logsumexp(comp.log_prob(z[..., None, :]).sum(-1), -1) - math.log(3)
    assert torch.allclose(log_mixture(z, mu, logvar), direct, atol=1e-5)
    # by hand for one code: (1/3) sum_k prod_j N(z_j; mu_kj, var_kj)
    p = sum(math.prod(math.exp(-(z[0, 0, j] - mu[c, j]) ** 2 / (2 * logvar[c, j].exp()))
                      / math.sqrt(2 * math.pi * logvar[c, j].exp()) for j in range(2))
            for c in range(3)) / 3
    assert log_mixture(z, mu, logvar)[0, 0].item() == pytest.approx(math.log(p), rel=1e-5)


def test_log_mixture_gives_the_same_numbers_in_blocks(monkeypatch):
    import aelab.models.variational as variational

    g = torch.Generator().manual_seed(1)
    mu, logvar, z = (torch.randn(*s, generator=g) for s in [(7, 3), (7, 3), (50, 3)])
    whole = log_mixture(z, mu, logvar)
    monkeypatch.setattr(variational, "MIXTURE_CHUNK", 7 * 3 * 4)  # blocks of 4 rows
    assert torch.allclose(log_mixture(z, mu, logvar), whole, atol=1e-6)


def test_vamp_log_prior_is_the_mixture_of_the_pseudo_posteriors():
    torch.manual_seed(0)
    m = build_model("vamp", pseudo_inputs=3, **TINY)
    z = torch.randn(10, 2)
    with torch.no_grad():
        mu, logvar = m.posterior(m.pseudo_images())  # (3, 2)
        mix = MixtureSameFamily(Categorical(torch.ones(3)),
                                Independent(Normal(mu, (0.5 * logvar).exp()), 1))
        assert torch.allclose(m.log_prior(z), mix.log_prob(z), atol=1e-5)


def test_vamp_prior_samples_are_reproducible_and_come_from_the_mixture():
    torch.manual_seed(0)
    m = build_model("vamp", pseudo_inputs=3, **TINY)
    a = prior_codes(m, 7, torch.Generator().manual_seed(4))
    b = m.prior_sample(7, torch.Generator().manual_seed(4))
    c = m.prior_sample(7, torch.Generator().manual_seed(5))
    assert a.shape == (7, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    # many samples: their mean and variance are the mixture's
    with torch.no_grad():
        mu, logvar = m.prior_components()
        many = m.prior_sample(60_000, torch.Generator().manual_seed(6))
    mean = mu.mean(0)
    var = (logvar.exp() + mu.square()).mean(0) - mean.square()
    assert torch.allclose(many.mean(0), mean, atol=0.03)
    assert torch.allclose(many.var(0), var, rtol=0.05, atol=1e-3)


def test_vamp_likelihood_bound_uses_the_vamp_prior():
    torch.manual_seed(0)
    m = build_model("vamp", pseudo_inputs=3, **TINY)
    x = _binary(4)
    with torch.no_grad():
        bound = m.iwae_bound(x, 9, torch.Generator().manual_seed(1))
        mu, logvar = m.posterior(x)
        standard = log_mean(VAE._log_weights(m, x, mu, logvar, 9, torch.Generator().manual_seed(1)))
        eps = torch.randn(9, 4, 2, generator=torch.Generator().manual_seed(1))
        direct = log_mean(_direct_log_w(m, x, eps, m.log_prior).T)
    assert torch.allclose(bound, direct, rtol=1e-5)
    assert (bound - standard).abs().min() > 1e-3


def log_mean(log_w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_w, 1) - math.log(log_w.shape[1])  # (B, k) -> (B,)


def test_vamp_eval_figures_use_the_vamp_prior():
    torch.manual_seed(0)
    m = build_model("vamp", pseudo_inputs=3, **TINY)
    images = (_binary(6) * 255).to(torch.uint8).squeeze(1)  # (6, 28, 28)
    with torch.inference_mode():
        got = m.extra_metrics(images, iw_samples=5, seed=2)
    x = images.unsqueeze(1).float() / 255
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # the draws extra_metrics makes: one for the ELBO, then k
        mu, logvar = m.posterior(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)
        kl = Independent(Normal(mu, (0.5 * logvar).exp()), 1).log_prob(z) - m.log_prior(z)
        iwae = -log_mean(_direct_log_w(m, x, torch.randn(5, 6, 2, generator=gen), m.log_prior).T)
    assert got["kl_nats"] == pytest.approx(kl.mean().item(), rel=1e-4, abs=1e-4)
    assert got["iwae_nll_nats"] == pytest.approx(iwae.mean().item(), rel=1e-5)
    assert got["neg_elbo_nats"] == pytest.approx(got["recon_nats"] + got["kl_nats"], rel=1e-6)


def test_vamp_kl_term_is_one_sample_against_the_mixture():
    torch.manual_seed(0)
    m = build_model("vamp", pseudo_inputs=3, **TINY)
    x = _images(5)
    with torch.no_grad():
        torch.manual_seed(8)
        terms = m.loss_terms(x, x)
        torch.manual_seed(8)
        log_w = _direct_log_w(m, x, torch.randn(1, 5, 2), m.log_prior)[0]
    assert torch.allclose(terms["recon"] + terms["kl"], -log_w, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["conv", "mlp"])
def test_vamp_trains_on_both_backbones(backbone):
    torch.manual_seed(0)
    m = build_model("vamp", backbone=backbone, hidden=[64, 32], pseudo_inputs=50)
    x = _images(8)
    assert m.encode(x).shape == (8, 16) and m(x).shape == (8, 1, 28, 28)
    _all_parameters_get_gradients(m)  # the pseudo-inputs included
    before, after = _train(m)
    assert after < before - 10


def test_vamp_pseudo_inputs_move_when_trained():
    torch.manual_seed(0)
    m = build_model("vamp", pseudo_inputs=5, **TINY)
    start = m.pseudo_images().detach().clone()
    _train(m, steps=3)
    assert not torch.equal(m.pseudo_images(), start)


# --- the beta-VAE preset ----------------------------------------------------------------


def test_beta_vae_preset_builds_a_vae_with_beta_4():
    preset = PRESETS["beta-vae"]
    m = build_model(preset["model"], **preset["model_args"])
    assert type(m).registry_name == "vae"
    assert (m.beta, m.latent_dim) == (4.0, 16)
    assert loss_weights(m) == {"recon": 1.0, "kl": 4.0}
