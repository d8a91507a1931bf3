"""The VAE: its loss terms against independent references, its bounds, and training on real data."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from aelab.cli import main
from aelab.data import load_dataset
from aelab.errors import AelabError
from aelab.models import build_model
from aelab.models.vae import kl_standard_normal, log_mean_exp, slerp


def _images(n=6, seed=0):
    """Grey images in [0, 1] that look a little like digits: a bright blob, dark border."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centres = 10 + 8 * torch.rand(n, 2, generator=g)
    d2 = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2
    return torch.exp(-d2 / 20).unsqueeze(1)  # (n, 1, 28, 28)


def _neg_elbo(m, x_in, x, **kw):
    """The loss the trainer minimises per image (B,): recon + beta * kl (the model_spec's
    weights); beta=1: the negative ELBO."""
    terms = m.loss_terms(x_in, x, **kw)
    return terms["recon"] + m.beta * terms["kl"]


# --- the KL term ----------------------------------------------------------------------


def test_kl_closed_form_on_hand_picked_values():
    # KL = 1/2 sum (sigma^2 + mu^2 - 1 - log sigma^2): 0 for N(0, 1); for mu=(1, 2),
    # sigma^2=(1, 4): 1/2 [(1 + 1 - 1 - 0) + (4 + 4 - 1 - log 4)] = 4 - log 2
    mu = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    logvar = torch.tensor([[0.0, 0.0], [0.0, math.log(4.0)]])
    kl = kl_standard_normal(mu, logvar)
    assert kl[0].item() == pytest.approx(0.0, abs=1e-7)
    assert kl[1].item() == pytest.approx(4 - math.log(2), rel=1e-6)


def test_kl_matches_a_monte_carlo_estimate():
    mu, logvar = torch.tensor([[0.5, -1.5, 0.0]]), torch.tensor([[-1.0, 0.7, 2.0]])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    torch.manual_seed(0)
    z = q.sample((400_000,))  # (S, 1, 3)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    assert kl_standard_normal(mu, logvar).item() == pytest.approx(mc.item(), abs=0.02)


def test_kl_and_loss_stay_float32_under_bf16_autocast():
    torch.manual_seed(0)
    m = build_model("vae")
    x = _images(8)
    assert kl_standard_normal(torch.ones(2, 3, dtype=torch.bfloat16),
                              torch.zeros(2, 3, dtype=torch.bfloat16)).dtype == torch.float32
    torch.manual_seed(1)
    fp32 = _neg_elbo(m, x, x)
    torch.manual_seed(1)
    bf16 = _neg_elbo(m, x, x, autocast_bf16=True)
    assert bf16.dtype == torch.float32 and bf16.shape == (8,)
    assert torch.allclose(bf16, fp32, rtol=0.02)  # bf16 networks, same sample: close


# --- the likelihood -------------------------------------------------------------------


def test_bernoulli_reconstruction_is_bce_summed_over_pixels():
    m = build_model("vae")
    x, logits = _images(3), torch.randn(3, 1, 28, 28)
    ref = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(m.recon_nll(logits, x), ref, rtol=1e-5)


@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_gaussian_reconstruction_is_the_normal_negative_log_density(sigma):
    m = build_model("vae", likelihood="gaussian", sigma=sigma)
    x, logits = _images(3), torch.randn(3, 1, 28, 28)
    ref = -torch.distributions.Normal(torch.sigmoid(logits), sigma).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(m.recon_nll(logits, x), ref, rtol=1e-5)


def test_learned_sigma_is_a_trained_parameter():
    torch.manual_seed(0)
    m = build_model("vae", likelihood="gaussian", sigma="learned")
    x = _images(8)
    _neg_elbo(m, x, x).mean().backward()
    assert m.log_sigma.grad is not None and m.log_sigma.grad.abs() > 0
    assert m.log_sigma.item() == pytest.approx(math.log(0.1))


def test_bad_model_arguments_are_clear_errors():
    with pytest.raises(AelabError, match="likelihood='laplace'"):
        build_model("vae", likelihood="laplace")
    with pytest.raises(AelabError, match="sigma"):
        build_model("vae", likelihood="gaussian", sigma=-1)


# --- deterministic forward, interpolation ---------------------------------------------


def test_forward_is_deterministic_even_in_training_mode():
    torch.manual_seed(0)
    m = build_model("vae").train()
    x = _images(4)
    assert torch.equal(m(x), m(x))
    assert torch.equal(m(x), m.decode(m.encode(x)))


def test_slerp_ends_at_its_inputs_and_keeps_the_radius():
    a, b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], a, atol=1e-6) and torch.allclose(path[-1], b, atol=1e-6)
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0), atol=1e-5)  # on the circle
    assert torch.allclose(path[2], torch.tensor([1.0, 1.0, 0.0]) * 3 / math.sqrt(2), atol=1e-5)
    same = slerp(a, a * 2, torch.tensor([0.0, 0.5, 1.0]))  # parallel: the straight line
    assert torch.allclose(same, torch.stack([a, 1.5 * a, 2 * a]))


# --- the bounds -----------------------------------------------------------------------


def test_log_mean_exp_divides_by_k():
    lw = torch.tensor([[0.0, math.log(3.0)], [5.0, 5.0]])
    assert torch.allclose(log_mean_exp(lw), torch.tensor([math.log(2.0), 5.0]))


def test_iwae_with_one_sample_is_the_elbo_in_expectation():
    torch.manual_seed(0)
    m = build_model("vae", latent_dim=4).eval()
    x = _images(2)
    s = 4000
    with torch.no_grad():
        # with the same draw, the k=1 bound is that draw's log weight
        one = m.iwae_bound(x, 1, torch.Generator().manual_seed(1))
        first = m.log_weights(x, 1, torch.Generator().manual_seed(1))[:, 0]
        log_w = m.log_weights(x, s, torch.Generator().manual_seed(1))  # (2, S): S draws of k=1
        torch.manual_seed(2)
        neg_elbo = _neg_elbo(m, x.repeat(s, 1, 1, 1), x.repeat(s, 1, 1, 1)).view(s, 2)
    assert torch.allclose(one, first)
    # E[log w] = ELBO, and the training loss (closed-form KL) estimates -ELBO: they agree
    se = (log_w.var(1) / s + neg_elbo.var(0) / s).sqrt()
    assert ((log_w.mean(1) + neg_elbo.mean(0)).abs() < 4 * se).all()


# --- training and evaluating on real MNIST --------------------------------------------


@pytest.fixture(scope="session")
def vae_run(mnist_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("vae") / "run"
    argv = ["train", "vae", "--latent-dim", "8", "--epochs", "3", "--limit", "2048",
            "--batch-size", "128", "--run-dir", str(run), "--data-dir", str(mnist_dir),
            "--device", "cpu"]
    assert main(argv) == 0
    return run


def test_negative_elbo_falls_during_training(vae_run):
    metrics = [json.loads(line) for line in (vae_run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["train_loss"] for m in metrics]
    assert losses[0] > losses[1] > losses[2]
    assert 100 < losses[-1] < 400  # nats per image: BCE summed over 784 pixels plus KL


def test_every_epoch_logs_recon_and_kl_whose_sum_is_the_loss(vae_run):
    metrics = [json.loads(line) for line in (vae_run / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:  # beta = 1: the loss is the negative ELBO, recon + kl
        assert m["loss_recon"] > 0 and m["loss_kl"] > 0
        assert m["train_loss"] == pytest.approx(m["loss_recon"] + m["loss_kl"], rel=1e-5)
    assert metrics[-1]["loss_recon"] < metrics[0]["loss_recon"]


def test_resume_gives_the_weights_and_metrics_of_an_uninterrupted_run(mnist_dir, tmp_path):
    """Bit for bit: the reparameterisation noise, like the batches, comes from seeded state."""
    from safetensors.torch import load_file

    def run(folder, *extra):
        return main(["train", *extra, "--data-dir", str(mnist_dir)]) if extra[0] == "--resume" \
            else main(["train", "vae", "--latent-dim", "4", "--limit", "256", "--seed", "7",
                       "--device", "cpu", "--figure-every", "100", "--run-dir", str(folder),
                       "--data-dir", str(mnist_dir), *extra])

    a, b = tmp_path / "a", tmp_path / "b"
    assert run(a, "--epochs", "2") == 0 and run(b, "--epochs", "1") == 0
    assert run(b, "--resume", str(b), "--epochs", "2") == 0
    wa, wb = (load_file(d / "checkpoints" / "last.safetensors") for d in (a, b))
    assert wa.keys() == wb.keys()
    for k in wa:
        if not k.startswith("rng."):
            assert torch.equal(wa[k], wb[k]), k
    ma, mb = ([json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b))
    for key in ("train_loss", "loss_recon", "loss_kl", "test_mse"):
        assert [m[key] for m in ma] == [m[key] for m in mb], key


def test_extra_metrics_are_repeatable_and_ordered(vae_run, mnist_dir):
    from aelab.runs import load_run

    model = load_run(vae_run).model
    test_x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    untrained = build_model("vae", latent_dim=8)
    with torch.inference_mode():
        a = model.extra_metrics(test_x[:200])
        b = model.extra_metrics(test_x[:200])
        before = untrained.extra_metrics(test_x[:200], iw_samples=10)
    assert a == b  # fixed generator seed
    assert a["iw_samples"] == 100
    assert a["iwae_nll_nats"] <= a["neg_elbo_nats"]
    assert a["neg_elbo_nats"] == pytest.approx(a["recon_nats"] + a["kl_nats"], rel=1e-6)
    assert a["kl_nats"] > 0
    assert a["neg_elbo_nats"] < before["neg_elbo_nats"] - 100  # training helped a lot


def test_more_importance_samples_tighten_the_bound(vae_run, mnist_dir):
    from aelab.runs import load_run

    model = load_run(vae_run).model
    test_x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    x = test_x[:20].unsqueeze(1).float() / 255
    with torch.inference_mode():
        elbo = model.log_weights(x, 100, torch.Generator().manual_seed(0)).mean(1)  # (20,)
        k100 = model.iwae_bound(x, 100, torch.Generator().manual_seed(1))
    # log p(x) >= IWAE_100 >= IWAE_1 = ELBO; a trained model's gap is a few nats per image
    assert (k100 - elbo).mean() > 0.5


@pytest.mark.slow
def test_eval_reports_the_likelihood_bounds(vae_run, mnist_dir, capsys):
    assert main(["eval", str(vae_run), "--data-dir", str(mnist_dir), "--device", "cpu"]) == 0
    result = json.loads((vae_run / "eval.json").read_text())
    assert result["iw_samples"] >= 100 and result["n_images"] == 10_000
    assert 0 < result["iwae_nll_nats"] <= result["neg_elbo_nats"] < 400
