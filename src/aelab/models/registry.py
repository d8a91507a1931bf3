"""The model registry: models are pure nn.Modules, registered by name.

Every model maps images (B, 1, 28, 28) in [0, 1] to reconstructions of the same shape,
and exposes `encode` -> (B, latent_dim), `decode` (B, latent_dim) -> (B, 1, 28, 28),
and `latent_dim`. No I/O, no device logic, no training code here.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import AelabError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Class decorator: make a model buildable by name (CLI choices and tests come from MODELS)."""

    def add(cls):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = cls
        cls.registry_name = name
        return cls

    return add


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name, e.g. build_model("conv")."""
    if name not in MODELS:
        raise AelabError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:  # an argument the model does not take
        raise AelabError(f"model {name!r} does not accept {kwargs}: {e}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
