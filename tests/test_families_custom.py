"""The families that train themselves (model_spec custom_step): the adversarial autoencoder
(`aae`) and the VQ-VAE (`vqvae`), through their own steps, against hand computations, and
resumed through the CLI bit for bit."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from aelab.cli import main
from aelab.config import TrainConfig
from aelab.errors import AelabError
from aelab.models import build_model, check_contract, spec
from aelab.models.family import reconstruction
from aelab.models.quantised import ema_codebook, nearest_codes, usage
from aelab.train.distributed import Dist
from aelab.train.step import make_optimizer, make_step

CPU = torch.device("cpu")
FAMILIES = ["aae", "vqvae"]
BACKBONES = ["conv", "mlp"]
SMALL = {"conv": {}, "mlp": {"hidden": [64, 32]}}  # a few milliseconds per step


def _model(name, backbone, **kw):
    torch.manual_seed(0)
    return build_model(name, backbone=backbone, **SMALL[backbone], **kw)


def _images(n, seed=0):
    """Grey images in [0, 1] with something to learn: a bright blob on a dark ground."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centres = 8 + 12 * torch.rand(n, 2, generator=g)
    d2 = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2
    return torch.exp(-d2 / 20).unsqueeze(1)  # (n, 1, 28, 28)


def _step(model, **cfg):
    """The real step, through the one door, with the trainer's optimizer (fused Adam)."""
    config = TrainConfig(model="x", device="cpu", **cfg)
    opt = make_optimizer(model, config, CPU)
    return make_step(model, opt, config, CPU, Dist(rank=0, world=1), note=lambda _m: None), opt


# --- shapes, declarations, gradients ----------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_and_declarations(name, backbone):
    m = _model(name, backbone)
    check_contract(m, name)
    x = _images(5)
    z = m.encode(x)
    assert z.shape == (5, 16) and m.decode(z).shape == (5, 1, 28, 28)
    assert torch.equal(m(x), m.decode(m.encode(x)))
    terms = m.loss_terms(x, x)
    assert list(terms) == list(spec(m).terms) and all(t.shape == (5,) for t in terms.values())
    s = spec(m)
    assert s.custom_step and s.own_loss
    if name == "aae":
        assert (s.kind, s.sampler, s.terms, s.monitors) == (
            "deterministic", "prior", ("recon", "adversarial"), ("disc_loss",))
        assert any(k.startswith("discriminator.") for k in m.state_dict())
    else:
        assert (s.kind, s.sampler, s.terms, s.monitors) == (
            "quantised", "fitted", ("recon", "commitment"), ("perplexity", "used_codes"))
        assert m.code_groups == 4 and m.codebook.shape == (512, 4)
        assert {"codebook", "ema_count", "ema_sum", "ema_steps"} <= set(m.state_dict())


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("name", FAMILIES)
def test_gradients_reach_every_trained_parameter(name, backbone):
    """The loss terms reach every parameter: the aae's discriminator through its
    adversarial term, the vqvae's encoder through the straight-through estimator."""
    m = _model(name, backbone)
    x = _images(8)
    sum(t.sum() for t in m.loss_terms(x, x).values()).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    if name == "vqvae":  # the codebook is a buffer, updated outside the gradient
        assert "codebook" not in dict(m.named_parameters())


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("name", FAMILIES)
def test_one_real_step_changes_every_parameter_and_the_codebook(name, backbone):
    m = _model(name, backbone)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    step, _ = _step(m)
    step.step(_images(16), _images(16))
    after = m.state_dict()
    for pname, _p in m.named_parameters():
        assert not torch.equal(before[pname], after[pname]), pname
    if name == "vqvae":
        for buf in ("codebook", "ema_count", "ema_sum"):
            assert not torch.equal(before[buf], after[buf]), buf
        assert after["ema_steps"].item() == 1


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("name", FAMILIES)
def test_a_few_real_steps_lower_the_loss_on_a_fixed_batch(name, backbone):
    m = _model(name, backbone)
    step, _ = _step(m, lr=3e-3)
    x = _images(32)
    outs = torch.stack([step.step(x, x) for _ in range(8)])  # (8, 1 + T + M)
    assert outs[-1, 0] < outs[0, 0] - 10.0  # nats per image
    assert outs[-1, 1] < outs[0, 1] - 10.0  # the reconstruction term itself


@pytest.mark.parametrize("name,monitors", [("aae", 1), ("vqvae", 2)])
def test_the_step_returns_the_loss_its_terms_and_its_monitors(name, monitors):
    m = _model(name, "mlp")
    step, _ = _step(m)
    assert step.name == "custom" and step.outputs == 1 + 2 + monitors
    out = step.step(_images(8), _images(8))
    assert out.shape == (1 + 2 + monitors,) and not out.requires_grad
    weight = m.lam if name == "aae" else m.beta
    assert out[0].item() == pytest.approx(out[1].item() + weight * out[2].item(), rel=1e-6)
    means = out.tolist()
    assert list(step.monitor_means(means)) == list(spec(m).monitors)
    if name == "aae":
        assert 0 < means[3] < 10  # BCE of the discriminator, 2 ln 2 at chance
    else:
        perplexity, used = means[3], means[4]
        assert 1 <= perplexity <= used <= 8 * m.code_groups and used == int(used)


@pytest.mark.parametrize("name", FAMILIES)
def test_weight_zero_images_change_nothing(name):
    """Per-image weights: the padded images of --cuda-graphs (weight 0) may hold anything."""
    x = _images(6)
    w = torch.tensor([1.0, 1.0, 2.0, 0.5, 0.0, 0.0])
    states = []
    for pad_seed in (1, 2):
        m = _model(name, "mlp")
        step, _ = _step(m)
        xp = torch.cat([x[:4], _images(2, seed=pad_seed)])
        torch.manual_seed(3)  # the aae's prior samples
        outs = [step.step(xp, xp, w) for _ in range(2)]
        states.append((outs, m.state_dict()))
    (oa, sa), (ob, sb) = states
    assert all(torch.equal(a, b) for a, b in zip(oa, ob, strict=True))
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --- the adversarial autoencoder: one update of one optimizer per batch ------------------------


def test_the_aae_step_gives_each_parameter_one_update_from_its_own_loss():
    """Per batch one Adam step for every parameter (the step counts say it); the
    discriminator's gradient comes from its loss alone (not the generator's), and the
    encoder's from recon + lam * adversarial (not the discriminator's loss)."""
    m = _model("aae", "mlp")
    step, opt = _step(m)
    for _ in range(3):
        step.step(_images(8), _images(8))
    counts = {name: opt.state[p]["step"].item() for name, p in m.named_parameters()}
    assert set(counts.values()) == {3}, counts
    x = _images(8)
    ref = copy.deepcopy(m)  # the weights the next step's gradients are taken at
    torch.manual_seed(0)
    step.step(x, x)
    torch.manual_seed(0)
    z = ref.encode(x)
    logits = ref.logits(z)
    prior = torch.randn(z.shape)
    recon = reconstruction(logits, x, ref.recon).mean()
    adversarial = F.softplus(-ref.disc_logits(z)).mean()
    disc = (F.softplus(-ref.disc_logits(prior)) + F.softplus(ref.disc_logits(z.detach()))).mean()
    names = [n for n, _ in ref.named_parameters()]
    ae = [n for n in names if not n.startswith("discriminator.")]
    d = [n for n in names if n.startswith("discriminator.")]
    params = dict(ref.named_parameters())
    want = dict(zip(ae, torch.autograd.grad(recon + ref.lam * adversarial, [params[n] for n in ae],
                                            retain_graph=True), strict=True))
    want |= dict(zip(d, torch.autograd.grad(disc, [params[n] for n in d]), strict=True))
    got = dict(m.named_parameters())
    for n in names:
        assert torch.allclose(got[n].grad, want[n], atol=1e-6, rtol=1e-4), n


def test_the_aae_step_refuses_an_optimizer_without_the_discriminator():
    m = _model("aae", "mlp")
    opt = torch.optim.Adam([*m.encoder.parameters(), *m.head.parameters(), *m.decoder.parameters()])
    with pytest.raises(AelabError, match="lacks discriminator.0.weight"):
        m.make_step(opt, TrainConfig())


def test_the_adversarial_term_is_the_generator_loss_of_the_discriminator():
    m = _model("aae", "mlp")
    x = _images(4)
    with torch.no_grad():
        d = m.discriminator(m.encode(x)).squeeze(1)
        expected = -torch.log(torch.sigmoid(d))  # -log D(z)
        assert torch.allclose(m.loss_terms(x, x)["adversarial"], expected, rtol=1e-5)


# --- the VQ-VAE: codes, commitment, moving averages -------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_vqvae_codes_are_codebook_entries_the_nearest_ones(backbone):
    m = _model("vqvae", backbone, codes=16)
    step, _ = _step(m)
    step.step(_images(16), _images(16))  # a codebook moved by the averages
    x = _images(8, seed=1)
    z = m.encode(x).detach().view(8 * m.code_groups, m.dim)
    z_e = m.head(m.encoder(x)).detach().view(8 * m.code_groups, m.dim)
    for v, ze in zip(z, z_e, strict=True):
        matches = (m.codebook == v).all(1)
        assert matches.any()  # exactly an entry, bit for bit
        d = (m.codebook - ze).square().sum(1)
        assert d[matches.nonzero()[0, 0]] <= d.min() + 1e-6  # and the nearest one


def test_the_commitment_term_by_hand():
    m = _model("vqvae", "mlp", latent_dim=4, dim=2, codes=3)
    m.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5]]))
    x = _images(3)
    with torch.no_grad():
        terms = m.loss_terms(x, x)
        z_e = m.head(m.encoder(x))  # (3, 4): two vectors of 2 per image
    for b in range(3):
        total, code = 0.0, []
        for g in range(2):
            v = z_e[b, 2 * g : 2 * g + 2].tolist()
            sq = [(v[0] - e[0]) ** 2 + (v[1] - e[1]) ** 2 for e in m.codebook.tolist()]
            total += min(sq)
            code += m.codebook[sq.index(min(sq))].tolist()
        assert terms["commitment"][b].item() == pytest.approx(total, rel=1e-5)
        with torch.no_grad():
            expected = reconstruction(m.decoder(torch.tensor([code])), x[b : b + 1], "bce")
        assert terms["recon"][b].item() == pytest.approx(expected.item(), rel=1e-5)
    assert spec(m).loss_terms["commitment"] == "beta" and m.beta == 0.25  # the paper's beta


def test_the_moving_average_update_by_hand():
    """2 entries, 3 vectors of 2 numbers, decay 0.9, epsilon 0.1 (large, to be seen):
    sonnet's VectorQuantizerEMA, debiased, Laplace-smoothed, two updates."""
    count, total = torch.zeros(2), torch.zeros(2, 2)
    steps = torch.zeros((), dtype=torch.int64)
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    # update 1: vectors 0 and 1 chose entry 0, vector 2 entry 1: n = [2, 1],
    # sums [[4, 2], [0, 4]]; debiased by 1 - 0.9 they are themselves; N = 3;
    # smoothed counts ([2, 1] + 0.1) / (3 + 2 * 0.1) * 3 = [6.3, 3.3] / 3.2
    book, used = ema_codebook(count, total, steps, z, torch.tensor([0, 0, 1]), None, 0.9, 0.1)
    assert used.tolist() == [2.0, 1.0]
    expected = torch.tensor([[4 * 3.2 / 6.3, 2 * 3.2 / 6.3], [0.0, 4 * 3.2 / 3.3]])
    assert torch.allclose(book, expected, rtol=1e-6)
    # update 2: entries [0, 1, 1], weights [1, 0.5, 2]: n = [1, 2.5], sums [[1, 0], [1.5, 9]];
    # hidden counts 0.9 * [0.2, 0.1] + 0.1 * [1, 2.5] = [0.28, 0.34],
    # hidden sums 0.9 * [[0.4, 0.2], [0, 0.4]] + 0.1 * [[1, 0], [1.5, 9]]
    #            = [[0.46, 0.18], [0.15, 1.26]]; debiased by 1 - 0.81 = 0.19
    book, used = ema_codebook(count, total, steps, z, torch.tensor([0, 1, 1]),
                              torch.tensor([1.0, 0.5, 2.0]), 0.9, 0.1)
    assert used.tolist() == [1.0, 2.5] and steps.item() == 2
    n = 0.62 / 0.19
    smoothed = [(c / 0.19 + 0.1) / (n + 0.2) * n for c in (0.28, 0.34)]
    expected = torch.tensor([[0.46 / 0.19 / smoothed[0], 0.18 / 0.19 / smoothed[0]],
                             [0.15 / 0.19 / smoothed[1], 1.26 / 0.19 / smoothed[1]]])
    assert torch.allclose(book, expected, rtol=1e-5)
    assert torch.allclose(count, torch.tensor([0.28, 0.34])) and torch.allclose(
        total, torch.tensor([[0.46, 0.18], [0.15, 1.26]]))


def test_nearest_codes_and_usage():
    book = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    idx = nearest_codes(torch.tensor([[0.1, 0.2], [0.9, 1.4], [4.0, 3.0], [-1.0, 0.0]]), book)
    assert idx.tolist() == [0, 1, 2, 0]
    perplexity, distinct = usage(torch.tensor([2.0, 2.0, 0.0, 0.0]))
    assert perplexity.item() == pytest.approx(2.0) and distinct.item() == 2
    perplexity, _ = usage(torch.tensor([3.0, 1.0]))
    assert perplexity.item() == pytest.approx(1 / (0.75 ** 0.75 * 0.25 ** 0.25))  # exp(H)


@pytest.mark.parametrize("kw,match", [
    ({"dim": 3}, "dim=3 must divide latent_dim=16"),
    ({"codes": 0}, "codes=0 must be a whole number"),
    ({"decay": 1.0}, r"decay=1.0 must be a finite number in \(0, 1\)"),
])
def test_bad_vqvae_arguments_are_clear_errors(kw, match):
    with pytest.raises(AelabError, match=match):
        build_model("vqvae", **kw)


def test_bad_aae_arguments_are_clear_errors():
    with pytest.raises(AelabError, match="lam=-1 must be a finite number >= 0"):
        build_model("aae", lam=-1)
    with pytest.raises(AelabError, match="disc_hidden=0"):
        build_model("aae", disc_hidden=0)


# --- resumed through the CLI: the uninterrupted run, bit for bit ------------------------


@pytest.mark.parametrize("name,args", [
    ("aae", {"backbone": "mlp", "hidden": [64], "disc_hidden": 64}),
    ("vqvae", {"backbone": "mlp", "hidden": [64], "codes": 32}),
])
def test_resume_gives_the_weights_of_an_uninterrupted_run(name, args, mnist_dir, tmp_path):
    """All of the state is in the checkpoint: weights, the discriminator and its Adam
    moments (the one optimizer), the codebook and its moving averages (buffers), the RNG
    the prior samples come from. The mlp backbone keeps it quick; tests/test_cli.py
    resumes the channels_last conv layers."""

    def train(folder, *extra):
        return main(["train", name, "--latent-dim", "8", "--model-args", json.dumps(args),
                     "--limit", "256", "--seed", "7", "--device", "cpu", "--figure-every", "100",
                     "--run-dir", str(folder), "--data-dir", str(mnist_dir), *extra])

    a, b = tmp_path / "a", tmp_path / "b"
    assert train(a, "--epochs", "2") == 0 and train(b, "--epochs", "1") == 0
    assert main(["train", "--resume", str(b), "--epochs", "2", "--data-dir", str(mnist_dir)]) == 0
    wa, wb = (load_file(d / "checkpoints" / "last.safetensors") for d in (a, b))
    assert wa.keys() == wb.keys()
    buffers = {"aae": "model.discriminator.0.weight", "vqvae": "model.codebook"}[name]
    assert buffers in wa and any(k.startswith("optim.") for k in wa)
    for k in wa:
        if not k.startswith("rng."):
            assert torch.equal(wa[k], wb[k]), k
    ma, mb = ([json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b))
    keys = ["train_loss", "test_mse", *[f"loss_{t}" for t in spec(build_model(name)).terms],
            *spec(build_model(name)).monitors]
    for key in keys:
        assert [m[key] for m in ma] == [m[key] for m in mb], key
