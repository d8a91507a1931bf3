"""The modern models beyond the registry-generated checks: shapes and options that the
results table relies on."""

import itertools

import pytest
import torch
from torch import nn

from aelab.errors import AelabError
from aelab.models import build_model, count_parameters
from aelab.models.modern import MLP_SHAPES


def _dense_params(sizes):
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def test_hinton2006_shape_has_the_papers_layers():
    # 784-1000-500-250-30 and its mirror (Hinton & Salakhutdinov 2006, Fig. 2)
    m = build_model("mlp", shape="hinton2006", norm="none")
    sizes = [784, 1000, 500, 250, 30]
    assert MLP_SHAPES["hinton2006"] == (1000, 500, 250)
    assert count_parameters(m) == _dense_params(sizes) + _dense_params(sizes[::-1]) == 2_837_314
    widths = [layer.out_features for layer in m.modules() if isinstance(layer, nn.Linear)]
    assert widths == [1000, 500, 250, 30, 250, 500, 1000, 784]


def test_mlp_code_is_linear_and_hidden_widths_override_the_shape():
    m = build_model("mlp", hidden=[64, 16], latent_dim=3, act="silu")
    assert isinstance(m.encoder[-1], nn.Linear) and m.encoder[-1].out_features == 3
    assert m.encode(torch.rand(4, 1, 28, 28)).shape == (4, 3)
    assert any(isinstance(layer, nn.BatchNorm1d) for layer in m.modules())
    assert any(isinstance(layer, nn.SiLU) for layer in m.modules())


@pytest.mark.parametrize("k", [2, 5, 30, 64, 100])
def test_convnet_takes_any_code_size(k):
    m = build_model("convnet", latent_dim=k, channels=[8, 8, 8]).eval()
    x = torch.rand(3, 1, 28, 28)
    z = m.encode(x)
    assert z.shape == (3, k) and m.latent_dim == k
    assert isinstance(m.encoder[-1], nn.Linear)  # a linear code: nothing squashes it
    out = m(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_eval_mode_output_does_not_depend_on_the_rest_of_the_batch():
    # batch norm must use its running statistics at evaluation time
    for name in ("mlp", "convnet"):
        torch.manual_seed(0)
        m = build_model(name).eval()
        x = torch.rand(6, 1, 28, 28)
        with torch.no_grad():
            assert torch.allclose(m(x)[:1], m(x[:1]), atol=1e-5), name


def test_group_norm_convnet_trains_on_a_batch_of_one():
    m = build_model("convnet", norm="group", act="silu", blocks=1, channels=[8, 16, 16]).train()
    assert any(isinstance(layer, nn.GroupNorm) for layer in m.modules())
    assert not any(isinstance(layer, nn.BatchNorm2d) for layer in m.modules())
    x = torch.rand(1, 1, 28, 28)
    (m(x) - x).square().mean().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_residual_blocks_add_parameters_not_shape_changes():
    small = build_model("convnet", channels=[8, 16, 16])
    deep = build_model("convnet", channels=[8, 16, 16], blocks=2)
    assert count_parameters(deep) > count_parameters(small)
    assert deep(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("name,kwargs,match", [
    ("mlp", {"shape": "hinton2007"}, "unknown mlp shape 'hinton2007'; choose one of: hinton2006"),
    ("mlp", {"norm": "layer"}, "unknown norm for mlp 'layer'; choose one of: batch, none"),
    ("convnet", {"act": "swish"},
     "unknown activation .swish.; choose one of: elu, gelu, relu, sigmoid, silu, tanh"),
    ("convnet", {"channels": [8, 8]}, "channels must be 3 widths"),
    ("mlp", {"latent_dim": 0}, "must be >= 1"),
])
def test_bad_options_are_clear_errors(name, kwargs, match):
    with pytest.raises(AelabError, match=match):
        build_model(name, **kwargs)
