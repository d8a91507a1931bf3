"""Models: pure nn.Modules registered by name (timm's pattern).

`registry` holds MODELS, `register_model` and `build_model`; each family module registers
its models when imported, and this package imports them all, then adds the models that
installed packages register under the entry-point group "aelab.models" (a broken one is
skipped with a warning), so `aelab.models.MODELS` is complete after `import aelab.models`.
`build_model` also takes your own model as a "module:attr" reference. `contract` holds
ModelSpec, what a model declares about itself, and `spec(model)`, the one way to read it.
"""

from . import seed  # first: MODELS lists the seed tutorial's models first
from . import modern, vae
from . import adversarial, quantised, regularised, variational  # the autoencoder families
from .activations import ACTIVATIONS
from .contract import ModelSpec, spec
from .registry import (MODELS, build_model, check_contract, count_parameters, load_entry_points,
                       model_record, rebuild_model, register_model)

load_entry_points()  # after aelab's own: a package's model never shadows a built-in name

__all__ = ["ACTIVATIONS", "MODELS", "ModelSpec", "adversarial", "build_model", "check_contract",
           "count_parameters", "load_entry_points", "model_record", "modern", "quantised",
           "rebuild_model", "register_model", "regularised", "seed", "spec", "vae", "variational"]
