"""Models built from the dataset's image shape (C, H, W), generated from the family registry:
every family on every backbone at every shape below builds, maps images of that shape to
codes and back exactly, gives finite loss terms, trains every parameter in one step and
samples its prior; the default shape is still the seed's network, parameter for parameter;
a bad shape, or another shape for a model that takes 28x28 grey only, is one clear line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from aelab.config import TrainConfig
from aelab.errors import AelabError
from aelab.models import build_model, count_parameters, rebuild_model, spec
from aelab.models.backbones import BACKBONES, build_backbone, conv_sizes
from aelab.models.contract import (DEFAULT_IMAGE_SHAPE, ModelSpec, check_contract,
                                   check_image_shape, image_shape, prior_codes)
from aelab.models.family import family_names
from aelab.models.registry import MODELS, model_arguments
from aelab.train.distributed import Dist
from aelab.train.step import make_optimizer, make_step

CPU = torch.device("cpu")
FAMILIES = family_names()
SHAPES = [(1, 8, 8), (1, 25, 25), (1, 32, 32), (3, 16, 16), (3, 32, 32), (3, 20, 12)]
CASES = [(f, b, s) for f in FAMILIES for b in BACKBONES for s in SHAPES]
# the families with a prior to sample codes from (the others fit a density: test_samplers.py)
PRIOR_CASES = [c for c in CASES if MODELS[c[0]].model_spec.sampler == "prior"]
# tiny networks: every case in a few milliseconds (arguments a family lacks are left out)
TINY = {"latent_dim": 4, "width": 1, "hidden": [32], "pseudo_inputs": 3, "k": 2, "codes": 8,
        "disc_hidden": 8}
# measured before models took an image shape: what run folders trained since hold
BEFORE = {("vae", "conv"): 214_313, ("vae", "mlp"): 1_082_680,
          ("rae", "conv"): 212_497, ("rae", "mlp"): 1_075_488}
# `vae` on conv at the default shape, name -> shape: the seed's conv network with a head
VAE_CONV_LAYOUT = {
    "encoder.0.weight": (16, 1, 3, 3), "encoder.0.bias": (16,),
    "encoder.2.weight": (32, 16, 3, 3), "encoder.2.bias": (32,),
    "encoder.4.weight": (64, 32, 7, 7), "encoder.4.bias": (64,),
    "head.weight": (40, 64), "head.bias": (40,),
    "decoder.0.weight": (64, 20), "decoder.0.bias": (64,),
    "decoder.3.weight": (64, 32, 7, 7), "decoder.3.bias": (32,),
    "decoder.5.weight": (32, 16, 3, 3), "decoder.5.bias": (16,),
    "decoder.7.weight": (16, 1, 3, 3), "decoder.7.bias": (1,),
}
FIXED_SHAPE_MODELS = [n for n in MODELS if n not in FAMILIES and not getattr(
    MODELS[n], "model_spec", ModelSpec()).any_shape and MODELS[n].__module__.startswith("aelab.")]


def case_id(case) -> str:
    """vae-conv-3x20x12"""
    family, backbone, shape = case
    return f"{family}-{backbone}-{'x'.join(map(str, shape))}"


def tiny_args(family: str, backbone: str, shape) -> dict:
    takes = model_arguments(MODELS[family]) or {}
    return {**{k: v for k, v in TINY.items() if k in takes}, "backbone": backbone,
            "image_shape": list(shape)}


def build(family: str, backbone: str, shape) -> nn.Module:
    torch.manual_seed(0)
    return build_model(family, **tiny_args(family, backbone, shape))


def images(n: int, shape, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def one_step(model: nn.Module, x: torch.Tensor) -> None:
    """One step of the trainer's own step (the family's custom step where it has one)."""
    config = TrainConfig(model="x", lr=1e-3, weight_decay=0.0, fast=False)
    opt = make_optimizer(model, config, CPU)
    choice = make_step(model, opt, config, CPU, Dist(), note=lambda *a: None)
    model.train()
    choice.step(x, x)


# --- every family x backbone x shape ----------------------------------------------------


@pytest.mark.parametrize("family,backbone,shape", CASES, ids=map(case_id, CASES))
def test_shapes_contract_and_terms(family, backbone, shape):
    model = build(family, backbone, shape).eval()
    assert image_shape(model) == shape
    check_contract(model, family)  # probes with the declared shape
    x = images(4, shape)
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (4, model.latent_dim)
        out = model.decode(z)
        assert out.shape == (4, *shape) and out.min() >= 0 and out.max() <= 1
        assert model(x).shape == (4, *shape)
    terms = model.loss_terms(x, x)
    assert set(terms) == set(spec(model).terms)
    for name, t in terms.items():
        assert t.shape == (4,) and torch.isfinite(t).all(), name


@pytest.mark.parametrize("family,backbone,shape", CASES, ids=map(case_id, CASES))
def test_one_step_reaches_every_parameter(family, backbone, shape):
    model = build(family, backbone, shape)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    one_step(model, images(4, shape))
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        assert not torch.equal(p.detach(), before[name]), f"{name} did not move"
    if spec(model).kind == "quantised":  # the codebook is a buffer, updated outside the gradient
        assert not torch.equal(model.codebook, buffers["codebook"])


@pytest.mark.parametrize("family,backbone,shape", PRIOR_CASES, ids=map(case_id, PRIOR_CASES))
def test_prior_codes_decode_to_images_of_the_shape(family, backbone, shape):
    model = build(family, backbone, shape).eval()
    z = prior_codes(model, 5, torch.Generator().manual_seed(3))
    assert z.shape == (5, model.latent_dim) and torch.isfinite(z).all()
    with torch.no_grad():
        assert model.decode(z).shape == (5, *shape)


# --- the conv rule -----------------------------------------------------------------------


@pytest.mark.parametrize("hw,sizes", [
    ((28, 28), [(28, 28), (14, 14), (7, 7)]),  # the seed's network
    ((8, 8), [(8, 8), (4, 4)]),
    ((25, 25), [(25, 25), (13, 13), (7, 7)]),
    ((32, 32), [(32, 32), (16, 16), (8, 8), (4, 4)]),
    ((20, 12), [(20, 12), (10, 6)]),
    ((128, 128), [(128, 128), (64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]),
])
def test_conv_halves_while_the_shorter_side_is_8_or_more(hw, sizes):
    assert conv_sizes(*hw) == sizes


@pytest.mark.parametrize("shape", [*SHAPES, (1, 9, 9), (3, 128, 128), (1, 8, 128), (3, 127, 33)])
def test_conv_decoder_mirrors_every_map_of_the_encoder(shape):
    """Each map the decoder makes has the size of the encoder's at the same depth, the last
    (B, C, H, W) exactly, odd sides included; the last kernel is the whole remaining map."""
    encoder, _, decoder = build_backbone("conv", 2, 2, image_shape=shape)
    down, up = [], []
    x = images(1, shape)
    for layer in encoder:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            down.append(tuple(x.shape[1:]))
    y = torch.zeros(1, 2)
    for layer in decoder:
        y = layer(y)
        if isinstance(layer, nn.ConvTranspose2d):
            up.append(tuple(y.shape[1:]))
    assert down[-1][1:] == (1, 1) and encoder[-3].kernel_size == conv_sizes(*shape[1:])[-1]
    assert [s[1:] for s in up] == [s[1:] for s in down[-2::-1]] + [shape[1:]]
    assert up[-1] == shape and encoder[0].in_channels == shape[0]


# --- the default shape is the network run folders hold ------------------------------------


@pytest.mark.parametrize("family,backbone", sorted(BEFORE))
def test_default_shape_is_the_network_old_run_folders_hold(family, backbone):
    built = []
    for kw in ({}, {"image_shape": (1, 28, 28)}, {"image_shape": [1, 28, 28]}):
        torch.manual_seed(0)
        built.append(build_model(family, backbone=backbone, **kw))
    for m in built:
        assert count_parameters(m) == BEFORE[family, backbone]
        assert image_shape(m) == DEFAULT_IMAGE_SHAPE
        assert {k: v.shape for k, v in m.state_dict().items()} == \
            {k: v.shape for k, v in built[0].state_dict().items()}
        for k, v in m.state_dict().items():  # the same seed, the same weights
            assert torch.equal(v, built[0].state_dict()[k]), k


def test_vae_conv_keeps_the_seeds_layer_names_and_shapes():
    m = build_model("vae")
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == VAE_CONV_LAYOUT


def test_an_old_record_without_image_shape_rebuilds_the_28x28_model():
    old = rebuild_model({"name": "vae", "args": {}, "source": "builtin"})
    assert image_shape(old) == (1, 28, 28) and count_parameters(old) == BEFORE["vae", "conv"]
    record = json.loads(json.dumps({"name": "vamp", "source": "builtin",
                                    "args": tiny_args("vamp", "mlp", (3, 20, 12))}))
    colour = rebuild_model(record)  # a run's JSON gives the shape as a list
    assert image_shape(colour) == (3, 20, 12) and colour.pseudo_raw.shape == (3, 3, 20, 12)


# --- per-image weights and evaluation at other shapes -----------------------------------


def test_sparse_l1_default_weight_follows_the_pixel_count():
    assert build("sparse", "mlp", (1, 28, 28)).weight == 784 * 1e-4 == 0.0784  # as before
    assert build_model("sparse").weight == 0.0784
    assert build("sparse", "mlp", (3, 32, 32)).weight == pytest.approx(3 * 32 * 32 * 1e-4)
    kl = build_model("sparse", **tiny_args("sparse", "mlp", (3, 32, 32)), penalty="kl")
    assert kl.weight == 3.0  # a KL per code unit: no pixels in it


@pytest.mark.parametrize("shape,layout", [((3, 16, 16), (3, 16, 16)), ((1, 25, 25), (25, 25))])
def test_vae_likelihood_figures_at_another_shape(shape, layout):
    m = build("vae", "mlp", shape)
    u8 = (images(3, layout) * 255).to(torch.uint8)  # (N, C, H, W), or (N, H, W) for grey
    with torch.inference_mode():
        out = m.extra_metrics(u8, iw_samples=2)
    assert all(torch.isfinite(torch.tensor(out[k])) for k in ("neg_elbo_nats", "iwae_nll_nats"))
    with pytest.raises(AelabError, match=r"images of shape \(16, 16, 3\)"):
        build("vae", "mlp", (3, 16, 16)).extra_metrics(torch.zeros(2, 16, 16, 3, dtype=torch.uint8))


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad,message", [
    ([2, 28, 28], "image_shape=[2, 28, 28]: channels must be 1 (grey) or 3 (colour)"),
    ([1, 4, 28], "image_shape=[1, 4, 28]: height and width must each be 8 to 128 pixels"),
    ((3, 28, 129), "image_shape=[3, 28, 129]: height and width must each be 8 to 128 pixels"),
    ([1, 28], "image_shape=[1, 28]: give [channels, height, width], three whole numbers"),
    ([1, 28.0, 28], "image_shape=[1, 28.0, 28]: give [channels, height, width]"),
    ([True, 28, 28], "image_shape=[True, 28, 28]: give [channels, height, width]"),
    ("28x28", "image_shape='28x28': give [channels, height, width]"),
])
@pytest.mark.parametrize("family", ["vae", "vqvae"])
def test_a_bad_image_shape_is_one_clear_line(bad, message, family):
    with pytest.raises(AelabError) as e:
        build_model(family, image_shape=bad)
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(AelabError, match="image_shape="):
        check_image_shape(bad)


def test_the_fixed_shape_models_are_the_seeds_and_modern():
    assert set(FIXED_SHAPE_MODELS) == {"linear", "conv", "mlp", "convnet"}
    assert {c[0] for c in PRIOR_CASES} == {"vae", "iwae", "vamp", "wae", "aae"}


@pytest.mark.parametrize("name", FIXED_SHAPE_MODELS)
def test_fixed_shape_models_refuse_another_shape_naming_the_families(name):
    with pytest.raises(AelabError) as e:
        build_model(name, image_shape=[3, 32, 32])
    msg = str(e.value)
    assert msg.startswith(f"model {name!r} takes 28x28 grey images (image_shape [1, 28, 28]) "
                          "only, not [3, 32, 32]") and "\n" not in msg
    assert "backbones conv and mlp take any shape" in msg
    assert all(f in msg for f in FAMILIES)
    with pytest.raises(AelabError, match="channels must be 1"):  # a bad shape says so first
        build_model(name, image_shape=[2, 28, 28])


@pytest.mark.parametrize("name", FIXED_SHAPE_MODELS)
def test_fixed_shape_models_take_the_default_shape_unchanged(name):
    torch.manual_seed(0)
    plain = build_model(name)
    torch.manual_seed(0)
    given = build_model(name, image_shape=[1, 28, 28])
    assert image_shape(given) == DEFAULT_IMAGE_SHAPE and not spec(given).any_shape
    assert count_parameters(given) == count_parameters(plain)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                 given.state_dict().values(), strict=True))


class _Liar(nn.Module):
    """Declares any_shape and a colour shape, but maps everything to 28x28 grey."""

    model_spec = ModelSpec(any_shape=True)
    latent_dim = 2

    def __init__(self, image_shape=(3, 16, 16)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.lin = nn.Linear(2, 784)

    def encode(self, x):
        return x.flatten(1)[:, :2]

    def decode(self, z):
        return torch.sigmoid(self.lin(z)).view(-1, 1, 28, 28)

    def forward(self, x):
        return self.decode(self.encode(x))


def test_the_contract_probes_with_the_declared_shape():
    with pytest.raises(AelabError, match=r"decode\(z\) of z \(2, 2\) returned shape "
                                         r"\(2, 1, 28, 28\); expected \(2, 3, 16, 16\)"):
        check_contract(_Liar(), "liar")
    liar = _Liar()
    del liar.image_shape
    with pytest.raises(AelabError, match="declares any_shape, so it needs an attribute image_shape"):
        check_contract(liar, "liar")
