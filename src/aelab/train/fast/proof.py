"""The check a hand-written forward passes before it trains a model: it must compute the
model's own forward.

A spec's fast_path hint and the layer check (dense_plan, conv_plan, convmm.plan) say that
the layers fit; they cannot see a forward that does something else with them (a clamp, a
skip, added noise). So make_step runs both on the same probe batch, once, before training,
and uses the hand-written path only where they agree. The probe holds images at several
scales: at initialisation the reconstructions of [0, 1] images sit near 0.5, where a clamp
to [0.1, 0.9] changes nothing, while inputs of 100x that reach the sigmoid's tails.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

PROBE_SCALES = (1.0, 1.0, 10.0, 10.0, 100.0, 100.0, 1000.0, 1000.0)  # one image each
# Allowed difference per image: RTOL x its scale (at least 1). The hand-written and torch's
# kernels sum in other orders, which moves each pre-activation by float32 rounding of a
# size that grows with the input: the seed `conv` after 6 epochs on MNIST differs from
# torch by up to 1.3e-6 at scale 1 and 6.4e-5 at scale 100 (`linear`'s step uses torch's
# own kernels: 0). A clamp, a skipped layer or added noise differs by far more.
RTOL = 5e-5


def probe_batch() -> torch.Tensor:
    """Eight fixed images (8, 1, 28, 28): uniform noise in [0, 1] (the first two) or [-1, 1]
    times PROBE_SCALES, so that outputs reach both tails of the final Sigmoid."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(len(PROBE_SCALES), 1, 28, 28, generator=g)
    x[2:] = x[2:] * 2 - 1  # in [-1, 1]: signed, beyond the first two
    return x * torch.tensor(PROBE_SCALES).view(-1, 1, 1, 1)


def prove(model: nn.Module, hand_forward: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """None where hand_forward(x) equals model(x) on the probe batch (to RTOL times each
    image's scale), else why not, in words. Both run in training mode (the mode the step trains in)
    without gradients, with the RNG forked and the model's buffers restored: no weight,
    statistic or random number changes."""
    x = probe_batch()
    name = type(model).__name__
    was_training = model.training
    buffers = [(b, b.clone()) for b in model.buffers()]
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.train()
            ref = model(x)
            try:
                got = hand_forward(x)
            except Exception as e:  # a layout or shape the hand-written ops cannot take
                return f"the hand-written forward cannot run {name}: {type(e).__name__}: {e}"
    except Exception as e:  # the model's own forward failed on the probe
        return f"{name}'s forward failed on the probe batch: {type(e).__name__}: {e}"
    finally:
        model.train(was_training)
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
    if not torch.is_tensor(ref) or ref.shape != got.shape:
        what = tuple(ref.shape) if torch.is_tensor(ref) else type(ref).__name__
        return f"{name}'s forward gives {what} on the probe batch, not {tuple(got.shape)}"
    diff = (got.float() - ref.float()).abs().flatten(1).amax(1)  # (8,)
    allowed = RTOL * torch.tensor(PROBE_SCALES).clamp_min(1.0)
    if not bool((diff <= allowed).all()):  # also NaN
        worst = int((diff / allowed).nan_to_num(float("inf")).argmax())
        return (f"{name}'s forward differs from the hand-written forward of its layers on the "
                f"probe batch (by {diff[worst].item():.3g} on image {worst}, at scale "
                f"{PROBE_SCALES[worst]:g}; allowed {allowed[worst].item():.1g})")
    return None
