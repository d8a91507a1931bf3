"""Models: pure nn.Modules registered by name (timm's pattern).

`registry` holds MODELS, `register_model` and `build_model`; each family module registers
its models when imported, and this package imports them all, so `aelab.models.MODELS` is
complete after `import aelab.models`.
"""

from . import seed  # first: MODELS lists the seed tutorial's models first
from . import modern, vae
from .registry import MODELS, build_model, count_parameters, register_model

__all__ = ["MODELS", "build_model", "count_parameters", "modern", "register_model", "seed", "vae"]
