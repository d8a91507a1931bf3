"""The one activation table: `act="gelu"` builds the same layer in every model that takes
an `act` argument (`mlp`, `convnet`, `vae-mlp`), and a wrong name lists every valid one."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import AelabError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,  # Hinton & Salakhutdinov's (2006) logistic units
    "silu": nn.SiLU,
    "tanh": nn.Tanh,  # Burda et al.'s (2016) VAE baselines
}


def check_activation(name: str) -> None:
    """Raise AelabError for a name that is not in ACTIVATIONS, listing the valid ones."""
    if name not in ACTIVATIONS:
        raise AelabError(f"unknown activation {name!r}; choose one of: {', '.join(sorted(ACTIVATIONS))}")


def activation(name: str) -> nn.Module:
    """A new activation layer by name ("gelu" -> nn.GELU())."""
    check_activation(name)
    return ACTIVATIONS[name]()
