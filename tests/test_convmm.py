"""The conv training forward pass (aelab.convmm) against the model's own forward."""

import pytest
import torch
from torch import nn

from aelab.train.fast import convmm
from aelab.models import build_model


def _grads(loss, model):
    return torch.autograd.grad(loss, list(model.parameters()))


def _assert_forward_equals_torch(conv, convt, x, atol_out, atol_grad):
    """convmm.forward over [conv, convt] against torch: outputs, and gradients of x and all
    parameters for one random output gradient."""
    ref = convt(conv(x))
    got = convmm.forward([conv, convt], x)
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=atol_out)
    params = [x, *conv.parameters(), *convt.parameters()]
    g = torch.randn_like(ref)
    for w, h in zip(torch.autograd.grad(ref, params, g), torch.autograd.grad(got, params, g), strict=True):
        assert torch.allclose(w, h, atol=atol_grad)


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
    x = torch.randn(2, 3, 5, 6, requires_grad=True)  # (2, 4, 1, 1) -> (2, 2, 3, 2) in between
    _assert_forward_equals_torch(conv, convt, x, atol_out=1e-6, atol_grad=1e-5)


def test_plan_refuses_what_it_cannot_run():
    assert convmm.plan(build_model("linear")) is None
    assert convmm.plan(build_model("convnet", latent_dim=8)) is None  # no opt-in: norms, GELU
    model = build_model("conv")
    model.encoder[1] = nn.GELU()
    assert convmm.plan(model) is None


# (kernel, stride, padding, output_padding) of one-channel layers, on odd image sizes
GEOMETRIES = [(3, 2, 1, 1), (4, 2, 1, 0), (5, 1, 2, 0), (3, 3, 0, 2), (2, 2, 0, 0), (3, 2, 0, 1)]


def _one_channel_pair(k, s, p, op):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 6, k, stride=s, padding=p)
    convt = nn.ConvTranspose2d(6, 1, k, stride=s, padding=p, output_padding=op)
    return conv, convt


@pytest.mark.parametrize("channels", [None, 1, 5])  # None: (B, H, W), planes taps first
@pytest.mark.parametrize("k,s,p,op", GEOMETRIES)
def test_im2col_and_col2im_are_adjoint(k, s, p, op, channels):
    conv, _ = _one_channel_pair(k, s, p, op)
    x = torch.randn(2, 11, 13) if channels is None else torch.randn(2, 11, 13, channels)
    geo = convmm._geometry(conv, 11, 13)
    planes = convmm.im2col(x, geo.k, geo.stride, geo.padding, geo.out_hw)
    q = torch.randn_like(planes)
    back = convmm.col2im(q, geo.k, geo.stride, geo.padding, geo.out_hw, geo.in_hw,
                         None if x.dim() == 3 else channels)
    assert back.shape == x.shape
    assert torch.allclose((planes * q).sum(), (x * back).sum(), rtol=1e-5)


@pytest.mark.parametrize("k,s,p,op", GEOMETRIES)
def test_one_channel_layers_equal_torch_under_autograd(k, s, p, op):
    conv, convt = _one_channel_pair(k, s, p, op)
    x = torch.randn(3, 1, 11, 13, requires_grad=True)
    _assert_forward_equals_torch(conv, convt, x, atol_out=1e-5, atol_grad=1e-4)


@pytest.mark.parametrize("onednn", [False, True])
@pytest.mark.parametrize("k,s,p,op", GEOMETRIES)
def test_hand_written_ops_equal_torch(k, s, p, op, onednn):
    conv, convt = _one_channel_pair(k, s, p, op)
    layers = [conv, nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),  # several channels:
              nn.ConvTranspose2d(6, 4, k, stride=s, padding=p, output_padding=op), nn.ReLU(),
              nn.Conv2d(4, 6, k, stride=s, padding=p), nn.ReLU(), convt]  # im2col/col2im ops
    for m in layers:
        m.to(memory_format=torch.channels_last)
        for q in m.parameters():
            q.grad = torch.zeros_like(q)
    x = torch.randn(3, 1, 11, 13, requires_grad=True)
    ref = nn.Sequential(*layers)(x)
    ops, out_shape = convmm.build_ops(layers, (11, 13, 1), onednn=onednn)
    kinds = {type(o).__name__ for o in ops}
    assert kinds == ({"_OneDNN", "_ReLU"} if onednn else {"_Conv", "_Transposed", "_OneChannelOut", "_ReLU"})
    assert out_shape == (*ref.shape[2:], 1)
    h = x.detach().permute(0, 2, 3, 1)
    for o in ops:
        h = o.forward(h)
    assert torch.allclose(h.permute(0, 3, 1, 2), ref, atol=1e-5)
    g = torch.randn_like(ref)
    params = [x, *(q for m in layers for q in m.parameters())]
    want = torch.autograd.grad(ref, params, g)
    gh = g.permute(0, 2, 3, 1).contiguous()
    for i in range(len(ops) - 1, -1, -1):
        gh = ops[i].backward(gh, True)
    assert torch.allclose(gh.permute(0, 3, 1, 2), want[0], atol=1e-4)
    for w, q in zip(want[1:], params[1:], strict=True):
        assert torch.allclose(w, q.grad, atol=1e-4)


@pytest.mark.parametrize("kw", [dict(padding_mode="reflect", padding=1), dict(padding="same"),
                                dict(dilation=2), dict(groups=2)])
def test_hand_written_ops_refuse_what_they_do_not_compute(kw):
    conv = nn.Conv2d(2, 4, 3, **kw).to(memory_format=torch.channels_last)
    for q in conv.parameters():
        q.grad = torch.zeros_like(q)
    with pytest.raises(ValueError, match="zero padding"):
        convmm.build_ops([conv], (9, 9, 2))
