"""The conv training forward pass (aelab.convmm) against the model's own forward."""

import torch
from torch import nn

from aelab import convmm
from aelab.models import build_model


def _grads(loss, model):
    return torch.autograd.grad(loss, list(model.parameters()))


def test_seed_conv_forward_and_gradients_equal_the_model():
    for memory_format in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = build_model("conv").to(memory_format=memory_format)
        layers = convmm.plan(model)
        assert layers is not None and len(layers) == 11
        x = torch.rand(5, 1, 28, 28)
        ref, got = model(x), convmm.forward(layers, x)
        assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-6)
        want = _grads((ref - x).square().mean(), model)
        have = _grads((got - x).square().mean(), model)
        for w, h in zip(want, have, strict=True):
            assert torch.allclose(w, h, atol=1e-7, rtol=1e-4)


def test_linear_in_disguise_layers_with_several_channels():
    torch.manual_seed(1)
    conv, convt = nn.Conv2d(3, 4, (5, 6)), nn.ConvTranspose2d(4, 2, (3, 2))
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    ref = convt(conv(x))  # (2, 4, 1, 1) -> (2, 2, 3, 2)
    got = convmm.forward([conv, convt], x)
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-6)
    params = [x, *conv.parameters(), *convt.parameters()]
    g = torch.randn_like(ref)
    for w, h in zip(torch.autograd.grad(ref, params, g), torch.autograd.grad(got, params, g), strict=True):
        assert torch.allclose(w, h, atol=1e-5)


def test_plan_refuses_what_it_cannot_run():
    assert convmm.plan(build_model("linear")) is None
    assert convmm.plan(build_model("convnet", latent_dim=8)) is None  # no opt-in: norms, GELU
    model = build_model("conv")
    model.encoder[1] = nn.GELU()
    assert convmm.plan(model) is None
