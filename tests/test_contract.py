"""The declared model contract (aelab.models.contract): what a model says it is, read through
one function; declarations a model does not keep are clear errors; a model that trains
itself comes through make_step; a hand-written step trains a model only where its forward
is the model's own; and every loss term is logged."""

import json

import pytest
import torch
from torch import nn

from aelab.config import TrainConfig
from aelab.errors import AelabError
from aelab.models import MODELS, ModelSpec, build_model, check_contract, spec
from aelab.models.contract import fast_path, loss_weights
from aelab.models.seed import ConvAE, LinearAE
from aelab.train import Trainer
from aelab.train.distributed import Dist
from aelab.train.fast import fused_step, prove
from aelab.train.fast.conv import conv_forward, conv_plan
from aelab.train.step import AutogradStep, Objective, make_step

CPU = torch.device("cpu")


def _quiet(*_a, **_k):
    pass


# --- models for the tests (built by reference: "test_contract:Name") ---------------------


class Plain(nn.Module):
    """A user's model that declares nothing."""

    latent_dim = 2

    def __init__(self):
        super().__init__()
        self.enc, self.dec = nn.Linear(784, 2), nn.Linear(2, 784)

    def encode(self, x):
        return self.enc(x.flatten(1))  # (B, 2)

    def decode(self, z):
        return torch.sigmoid(self.dec(z)).view(-1, 1, 28, 28)

    def forward(self, x):
        return self.decode(self.encode(x))


class TwoTerms(Plain):
    """Deterministic, with a second (weighted) term: the code's squared length."""

    model_spec = ModelSpec(loss_terms={"recon": 1.0, "code": "code_weight"})
    code_weight = 0.01

    def loss_terms(self, x_in, x, autocast_bf16=False):
        z = self.encode(x_in)
        recon = (self.decode(z) - x).square().flatten(1).mean(1)
        return {"recon": recon, "code": z.square().sum(1)}


class EmaCentre(TwoTerms):
    """Trains itself (custom_step): an autograd step on recon, then the centre of the codes
    kept as a moving average outside the gradient, as a VQ-VAE's EMA codebook is."""

    model_spec = ModelSpec(loss_terms={"recon": 1.0, "code": 0.0}, custom_step=True)

    def __init__(self):
        super().__init__()
        self.register_buffer("centre", torch.zeros(2))

    def loss_terms(self, x_in, x, autocast_bf16=False):
        terms = super().loss_terms(x_in, x)
        terms["code"] = (self.encode(x_in) - self.centre).square().sum(1)
        return terms

    def make_step(self, optimizer, config):
        return _EmaStep(self, optimizer)


class _EmaStep:
    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer

    def __call__(self, x_in, x, weights=None):
        terms = self.model.loss_terms(x_in, x)
        loss = terms["recon"].mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():  # the update no gradient makes
            self.model.centre.lerp_(self.model.encode(x_in).mean(0), 0.5)
        return torch.stack([loss, terms["recon"].mean(), terms["code"].mean()]).detach()


class ClampedConv(ConvAE):
    """Overrides forward: the `conv` hint it inherits no longer holds."""

    def forward(self, x):
        return super().forward(x).clamp(0.1, 0.9)


class NoisyLinear(LinearAE):
    def forward(self, x):
        return super().forward(x) + 0.01 * torch.randn_like(x)


class DeclaredButShrunk(nn.Module):
    """Declares the conv layout itself (so no override gives it away), but its forward is
    not decoder(encoder(x)): only the comparison on the probe batch can tell."""

    model_spec = ModelSpec(fast_path="conv")
    latent_dim = 64

    def __init__(self):
        super().__init__()
        seed = ConvAE()
        self.encoder, self.decoder = seed.encoder, seed.decoder

    def encode(self, x):
        return self.encoder(x).flatten(1)

    def decode(self, z):
        return self.decoder(z.view(-1, 64, 1, 1))

    def forward(self, x):
        return 0.9 * self.decoder(self.encoder(x)) + 0.05


# models that declare what they do not do
class SaysVariational(Plain):
    model_spec = ModelSpec(kind="variational", sampler="prior")


class MissingTerm(TwoTerms):
    model_spec = ModelSpec(loss_terms={"recon": 1.0, "code": 1.0, "kl": 1.0})


class NoLossTerms(Plain):
    model_spec = ModelSpec(loss_terms={"recon": 1.0})


class NoMakeStep(Plain):
    model_spec = ModelSpec(custom_step=True)


class NoExtraMetrics(Plain):
    model_spec = ModelSpec(likelihood=True)


class BadWeight(TwoTerms):
    code_weight = "big"


class WrongShape(TwoTerms):
    def loss_terms(self, x_in, x, autocast_bf16=False):
        terms = super().loss_terms(x_in, x)
        return {**terms, "code": terms["code"].sum()}  # a batch total, not per image


class NotASpec(Plain):
    model_spec = "variational"


# --- spec: the one reader ---------------------------------------------------------------


def test_a_model_that_declares_nothing_is_a_deterministic_autoencoder():
    s = spec(Plain())
    assert s == ModelSpec() and s.kind == "deterministic" and s.sampler == "fitted"
    assert s.terms == ("recon",) and not s.own_loss and not s.custom_step
    assert loss_weights(Plain()) == {"recon": 1.0}
    assert fast_path(Plain()) == (None, None)


def test_the_builtin_models_declare_what_they_are():
    assert spec(build_model("linear")).fast_path == "dense"
    assert spec(build_model("conv")).fast_path == "conv"
    vae = build_model("vae", beta=0.5)
    s = spec(vae)
    assert (s.kind, s.sampler, s.terms, s.likelihood) == ("variational", "prior", ("recon", "kl"), True)
    assert loss_weights(vae) == {"recon": 1.0, "kl": 0.5}  # beta, read from the model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_keeps_its_declarations(name):
    """check_contract covers the spec: the terms it declares come back, one per image."""
    torch.manual_seed(0)
    model = build_model(name)
    check_contract(model, name)
    s = spec(model)
    if s.own_loss:
        x = torch.rand(3, 1, 28, 28)
        terms = model.loss_terms(x, x)
        assert list(terms) == list(s.terms) and all(t.shape == (3,) for t in terms.values())


@pytest.mark.parametrize("kw,match", [
    ({"kind": "variatonal"}, "kind='variatonal': choose one of deterministic, variational, quantised"),
    ({"sampler": "gaussian"}, "sampler='gaussian': choose one of prior, fitted"),
    ({"fast_path": "cuda"}, "fast_path='cuda': choose one of dense, conv"),
    ({"loss_terms": {}}, "at least one term"),
    ({"loss_terms": {"Recon": 1.0}}, "loss term 'Recon'"),
    ({"loss_terms": {"recon": None}}, "its weight None must be a number"),
])
def test_a_spec_with_a_bad_value_is_a_clear_error(kw, match):
    with pytest.raises(AelabError, match=match):
        ModelSpec(**kw)


def test_a_spec_is_frozen():
    s = ModelSpec(loss_terms={"recon": 1.0})
    with pytest.raises(TypeError):
        s.loss_terms["kl"] = 1.0  # a read-only mapping
    with pytest.raises(AttributeError):
        s.kind = "variational"


@pytest.mark.parametrize("cls,match", [
    (SaysVariational, "declares kind 'variational' but no 'kl' loss term"),
    (MissingTerm, r"returned the terms \['code', 'recon'\]; "
                  r"its model_spec declares \['code', 'kl', 'recon'\]"),
    (NoLossTerms, "declares loss_terms, but it has no loss_terms\\(\\) method"),
    (NoMakeStep, "declares custom_step, but it has no make_step\\(\\) method"),
    (NoExtraMetrics, "declares likelihood, but it has no extra_metrics\\(\\) method"),
    (BadWeight, "weight of loss term 'code' must be a finite number; its attribute 'code_weight' is 'big'"),
    (WrongShape, r"gave term 'code' as \(\); expected one number per image, shape \(2,\)"),
    (NotASpec, "its model_spec is a str, not an aelab.models.ModelSpec"),
])
def test_a_declaration_the_model_does_not_keep_is_a_clear_error(cls, match):
    ref = f"test_contract:{cls.__name__}"
    with pytest.raises(AelabError, match=f"model '{ref}' breaks the aelab model contract: .*{match}"):
        build_model(ref)


def test_the_check_of_declared_terms_changes_nothing():
    torch.manual_seed(0)
    model = build_model("vae")  # its loss_terms draws random numbers
    state = torch.get_rng_state()
    check_contract(model, "vae")
    assert torch.equal(torch.get_rng_state(), state) and model.training


# --- a model that trains itself: the custom_step door -----------------------------------


def test_a_model_with_its_own_step_trains_through_make_step(mnist_dir, tmp_path):
    cfg = TrainConfig(model="test_contract:EmaCentre", epochs=1, limit=128, device="cpu",
                      figure_every=100)
    t = Trainer(cfg, tmp_path / "r", data_dir=mnist_dir, log=_quiet, progress=False)
    t.run()
    assert t.choice.name == "custom" and isinstance(t.choice.step.inner, _EmaStep)
    assert t.model.centre.abs().sum() > 0  # the update outside the gradient ran
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["step"] == "custom" and "custom_step" in saved["fast_refused"]
    m = t.metrics[0]
    assert m["loss_recon"] == pytest.approx(m["train_loss"], rel=1e-6)  # "code" has weight 0
    assert m["loss_code"] > 0


def test_a_model_with_its_own_step_is_refused_under_several_processes():
    model = EmaCentre()
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(AelabError, match="makes its own training step.*one process"):
        make_step(model, opt, TrainConfig(), CPU, Dist(rank=0, world=2))


# --- fast paths prove, not trust --------------------------------------------------------


@pytest.mark.parametrize("cls,seed_class", [(ClampedConv, "ConvAE"), (NoisyLinear, "LinearAE")])
def test_a_subclass_that_overrides_forward_trains_through_autograd(cls, seed_class, mnist_dir, tmp_path):
    cfg = TrainConfig(model=f"test_contract:{cls.__name__}", epochs=1, limit=128, device="cpu",
                      figure_every=100)
    t = Trainer(cfg, tmp_path / "r", data_dir=mnist_dir, log=_quiet, progress=False)
    t.run()
    why = f"{cls.__name__} replaces forward() of {seed_class}"
    assert t.choice.name == "autograd" and why in t.choice.fast_refused
    assert t.choice.step.objective.layers is None  # nor convmm: the model's own forward
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert why in saved["fast_refused"]


def test_a_forward_that_differs_from_its_declared_layers_is_caught_on_the_probe(mnist_dir, tmp_path):
    model = DeclaredButShrunk().to(memory_format=torch.channels_last)
    assert fast_path(model) == ("conv", None) and conv_plan(model) is not None  # structure fits
    opt = torch.optim.Adam(model.parameters())
    step, why = fused_step(model, opt, TrainConfig(), CPU, False)
    assert step is None and "forward differs from the hand-written forward" in why
    assert all(p.grad is None for p in model.parameters())  # refused before anything changed
    choice = make_step(model, opt, TrainConfig(), CPU, Dist())
    assert choice.name == "autograd" and choice.step.objective.layers is None
    assert "differs" in choice.fast_refused


def test_the_probe_alone_catches_the_clamp_of_a_conv_subclass():
    """Without the override check, the comparison still refuses it: the probe's large-scale
    images drive the outputs past 0.1 and 0.9, where the clamp bites."""
    torch.manual_seed(0)
    model = ClampedConv().to(memory_format=torch.channels_last)
    layers = [*model.encoder, *model.decoder]
    why = prove(model, lambda x: conv_forward(layers, x))
    assert why is not None and "differs" in why and "scale 1000" in why


def test_the_seed_models_pass_the_proof_and_keep_their_steps():
    for name in ("linear", "conv"):
        torch.manual_seed(0)
        model = build_model(name).to(memory_format=torch.channels_last)
        choice = make_step(model, torch.optim.Adam(model.parameters()), TrainConfig(), CPU, Dist(),
                           note=_quiet)
        assert choice.name == ("fused-dense" if name == "linear" else "fused-conv")
        assert choice.fast_refused is None and choice.loss_only


def test_the_proof_changes_nothing():
    """No random number, weight, gradient, statistic or mode changes."""
    torch.manual_seed(0)
    conv = build_model("conv").to(memory_format=torch.channels_last).eval()
    before = [p.detach().clone() for p in conv.parameters()]
    rng = torch.get_rng_state()
    assert prove(conv, lambda x: conv_forward(conv_plan(conv), x)) is None
    assert torch.equal(torch.get_rng_state(), rng) and not conv.training
    assert all(p.grad is None for p in conv.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, conv.parameters(), strict=True))
    mlp = build_model("mlp", latent_dim=4)  # batch norm: running statistics
    stats = [b.clone() for b in mlp.buffers()]
    assert prove(mlp, lambda x: mlp(x)) is None
    assert all(torch.equal(a, b) for a, b in zip(stats, mlp.buffers(), strict=True))


def test_a_forward_hook_voids_the_hint():
    model = build_model("conv")
    model.decoder[1].register_forward_hook(lambda _m, _i, out: out * 0)
    hint, why = fast_path(model)
    assert hint is None and "forward hook on decoder.1" in why


# --- every loss term, logged ------------------------------------------------------------


def test_weighted_terms_padded_batches_equal_ragged_ones():
    """The --cuda-graphs padding (weight-0 repeats) leaves the loss and each term's mean as
    the ragged batch has them; the loss is the terms' weighted sum."""
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(TwoTerms())
    w = torch.tensor(list(loss_weights(models[0]).values()))
    steps = [AutogradStep(Objective(m, "mse", "fp32"), m, torch.optim.SGD(m.parameters(), lr=0.5),
                          None, term_weights=w) for m in models]
    x = torch.rand(5, 1, 28, 28)
    ragged = steps[0](x, x)
    padded = steps[1](torch.cat([x, x[:3]]), torch.cat([x, x[:3]]), torch.tensor([1.0] * 5 + [0.0] * 3))
    assert ragged.shape == (3,) and torch.allclose(ragged, padded, atol=1e-7)
    assert ragged[0] == pytest.approx((ragged[1] + 0.01 * ragged[2]).item(), rel=1e-6)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-7)


def test_a_vae_logs_recon_and_kl_every_epoch(mnist_dir, tmp_path):
    logs = []
    cfg = TrainConfig(model="vae", model_args={"latent_dim": 4, "beta": 2.0}, epochs=1,
                      limit=128, device="cpu", figure_every=100)
    t = Trainer(cfg, tmp_path / "r", data_dir=mnist_dir, log=logs.append, progress=False)
    t.run()
    m = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    assert m["train_loss"] == pytest.approx(m["loss_recon"] + 2.0 * m["loss_kl"], rel=1e-5)
    assert m["loss_recon"] > 0 and m["loss_kl"] > 0
    line = next(msg for msg in logs if msg.startswith("epoch   1/1"))
    assert f"recon {m['loss_recon']:.6f}, kl {m['loss_kl']:.6f}" in line


def test_a_hand_written_step_logs_its_one_term_as_the_loss(mnist_dir, tmp_path):
    logs = []
    cfg = TrainConfig(model="linear", epochs=1, limit=128, device="cpu", figure_every=100)
    t = Trainer(cfg, tmp_path / "r", data_dir=mnist_dir, log=logs.append, progress=False)
    t.run()
    assert t.choice.name == "fused-dense"
    assert t.metrics[0]["loss_recon"] == t.metrics[0]["train_loss"]
    assert "recon" not in next(msg for msg in logs if msg.startswith("epoch"))  # nothing new to say
