"""The model contract: what a model is, declared once where it is defined, read through `spec`.

A model declares itself with a class attribute (timm's `pretrained_cfg`, pythae's
`ModelOutput`: declare, don't probe):

    class MyVAE(nn.Module):
        model_spec = ModelSpec(kind="variational", sampler="prior",
                               loss_terms={"recon": 1.0, "kl": "beta"}, likelihood=True)

and `spec(model)` reads it; a plain nn.Module that declares nothing gets `ModelSpec()`: a
deterministic autoencoder, sampled from a Gaussian fitted to its training codes, trained on
the reconstruction loss of the run's config (`--loss`) alone. No caller asks a model what
it can do (`hasattr(model, ...)`); it asks this module, which is the only place that looks
at a model's attributes. What a declaration promises:

- `loss_terms` (a dict, not None): `model.loss_terms(x_in, x, autocast_bf16=False)` returns
  a tensor (B,) per named term, per image; the training loss per image is their weighted
  sum, each weight a number or the name of the model's own number attribute ("beta").
  Every term is logged per epoch (`loss_<name>` in metrics.jsonl).
- `likelihood`: `model.extra_metrics(images_u8, iw_samples=, progress=)` gives `aelab eval`
  likelihood figures.
- `custom_step`: `model.make_step(optimizer, config)` returns the model's own training step
  (several optimisers, a codebook updated outside the gradient, ...), called as every step
  is: `step(x_in, x, weights)`. aelab.train.step.make_step is the door it comes through.
- `monitors`: names of numbers a custom step reports after its loss terms (a codebook's
  perplexity, a discriminator's loss): logged per epoch under their names, never trained on.
- `sampler`: "prior" where the family has a prior to sample codes from:
  `model.prior_sample(n, generator)` -> (n, latent_dim) when the model defines it (the
  VampPrior's mixture), else N(0, I); "fitted" where codes come from a density fitted to
  the training codes (a Gaussian mixture, aelab.models.samplers). A "quantised" model's
  codes are `code_groups` codebook vectors side by side, which its fitted categorical
  prior draws one position at a time.
- `fast_path` ("dense" or "conv"): a hint that forward is decoder(encoder(x)) over the
  layers of the `encoder` and `decoder` nn.Sequentials, which aelab.train.fast's
  hand-written steps may compute instead. It is never trusted: make_step checks the layers
  and compares the hand-written forward with model(x) before using one, and a subclass that
  replaces forward, encode or decode does not inherit it.
- `any_shape`: the model is built for the dataset's image shape: it takes an argument
  `image_shape` [C, H, W] (`check_image_shape` says which are allowed) and keeps it as its
  attribute `image_shape`, a tuple. A model that does not declare it takes 28x28 grey
  images, DEFAULT_IMAGE_SHAPE, only. `image_shape(model)` reads either.

`check_contract(model, name)` checks what every model must do (latent_dim, encode, decode,
forward) and what its spec declares, on two images of its shape, with an error naming what
broke.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

from ..errors import AelabError

KINDS = ("deterministic", "variational", "quantised")
SAMPLERS = ("prior", "fitted")  # prior: codes ~ N(0, I); fitted: a Gaussian fitted to the training codes
FAST_PATHS = ("dense", "conv")
SPEC_ATTR = "model_spec"
_TERM_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_FORWARD_PARTS = ("forward", "encode", "decode", "__call__")
DEFAULT_IMAGE_SHAPE = (1, 28, 28)  # (C, H, W): the only shape a model that declares none takes
IMAGE_CHANNELS = (1, 3)  # grey, colour
IMAGE_SIDES = (8, 128)  # the smallest and largest height or width, in pixels


@dataclass(frozen=True)
class ModelSpec:
    """What a model is (see the module docstring for what each field promises).

    kind: "deterministic", "variational" or "quantised".
    sampler: "prior" (decode codes drawn from N(0, I)) or "fitted" (from a Gaussian fitted
        to the training codes).
    loss_terms: None (the run's reconstruction loss, logged as the one term "recon"), or
        {term name: weight} for the terms `model.loss_terms` returns; a weight is a number
        or the name of a number attribute of the model.
    likelihood: the model has `extra_metrics` (likelihood bounds for `aelab eval`).
    custom_step: the model has `make_step(optimizer, config)`: it trains itself.
    fast_path: "dense" / "conv" / None, a hint for the hand-written steps (never trusted).
    any_shape: the model takes an `image_shape` argument and keeps it as its attribute;
        else it takes (1, 28, 28) images only.
    """

    kind: str = "deterministic"
    sampler: str = "fitted"
    loss_terms: Mapping[str, float | str] | None = None
    likelihood: bool = False
    custom_step: bool = False
    fast_path: str | None = None
    monitors: tuple[str, ...] = ()
    any_shape: bool = False

    def __post_init__(self) -> None:
        _one_of("kind", self.kind, KINDS)
        _one_of("sampler", self.sampler, SAMPLERS)
        if self.fast_path is not None:
            _one_of("fast_path", self.fast_path, FAST_PATHS)
        if not isinstance(self.any_shape, bool):
            raise AelabError(f"ModelSpec any_shape={self.any_shape!r}: give True or False")
        if self.loss_terms is not None:
            if not isinstance(self.loss_terms, Mapping) or not self.loss_terms:
                raise AelabError(f"ModelSpec loss_terms={self.loss_terms!r}: give a dict "
                                 "{term name: weight} with at least one term, or None")
            for name, weight in self.loss_terms.items():
                if not isinstance(name, str) or not _TERM_NAME.match(name):
                    raise AelabError(f"ModelSpec loss term {name!r}: a name in lower case "
                                     "letters, digits and _, starting with a letter")
                if isinstance(weight, bool) or not isinstance(weight, (int, float, str)):
                    raise AelabError(f"ModelSpec loss term {name!r}: its weight {weight!r} "
                                     "must be a number or the name of the model's attribute")
            object.__setattr__(self, "loss_terms", MappingProxyType(dict(self.loss_terms)))
        monitors = tuple(self.monitors)
        for name in monitors:
            if not isinstance(name, str) or not _TERM_NAME.match(name) or name in self.terms:
                raise AelabError(f"ModelSpec monitor {name!r}: a name in lower case letters, "
                                 "digits and _, starting with a letter, not a loss term's")
        if monitors and not self.custom_step:
            raise AelabError("ModelSpec monitors are reported by the model's own step: "
                             "declare custom_step=True with them")
        object.__setattr__(self, "monitors", monitors)

    @property
    def terms(self) -> tuple[str, ...]:
        """The loss terms' names, in order: ("recon",) for the run's reconstruction loss."""
        return ("recon",) if self.loss_terms is None else tuple(self.loss_terms)

    @property
    def own_loss(self) -> bool:
        """Whether `model.loss_terms` computes the terms (else the trainer's reconstruction loss)."""
        return self.loss_terms is not None


def _one_of(field: str, value, choices: tuple) -> None:
    if value not in choices:
        raise AelabError(f"ModelSpec {field}={value!r}: choose one of {', '.join(choices)}")


DEFAULT_SPEC = ModelSpec()


def spec(model: nn.Module) -> ModelSpec:
    """The model's declared ModelSpec (its class's `model_spec`); ModelSpec() for a model
    that declares none."""
    declared = getattr(type(model), SPEC_ATTR, None)
    return declared if isinstance(declared, ModelSpec) else DEFAULT_SPEC


def loss_weights(model: nn.Module) -> dict[str, float]:
    """{term: weight} of the training loss, weights named by attribute resolved ("beta")."""
    s = spec(model)
    if s.loss_terms is None:
        return {"recon": 1.0}
    return {name: float(getattr(model, w) if isinstance(w, str) else w)
            for name, w in s.loss_terms.items()}


def prior_codes(model: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
    """n codes (n, latent_dim) float32 on the CPU from the prior of a model whose spec's
    sampler is "prior": its own `prior_sample(n, generator)` where its class defines one,
    else N(0, I). The same generator state gives the same codes."""
    if spec(model).sampler != "prior":
        raise AelabError(f"{type(model).__name__} has no prior to sample from (its model_spec "
                         "sampler is 'fitted'); sample it from a density fitted to its "
                         "training codes (sampler 'gmm')")
    own = getattr(type(model), "prior_sample", None)
    if own is not None:
        return own(model, n, generator).detach().float().cpu()
    return torch.randn(n, model.latent_dim, generator=generator)


def check_image_shape(value) -> tuple[int, int, int]:
    """The image shape (C, H, W) as a tuple of ints, from a list or tuple (a run's JSON gives
    a list); AelabError unless it has 1 (grey) or 3 (colour) channels and a height and a
    width of 8 to 128 pixels each."""
    shown = list(value) if isinstance(value, (list, tuple)) else value
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in value):
        raise AelabError(f"image_shape={shown!r}: give [channels, height, width], three whole "
                         "numbers, e.g. [1, 28, 28]")
    c, h, w = value
    if c not in IMAGE_CHANNELS:
        raise AelabError(f"image_shape={shown!r}: channels must be 1 (grey) or 3 (colour)")
    lo, hi = IMAGE_SIDES
    if not (lo <= h <= hi and lo <= w <= hi):
        raise AelabError(f"image_shape={shown!r}: height and width must each be {lo} to {hi} "
                         "pixels; resize the images")
    return (c, h, w)


def image_shape(model: nn.Module) -> tuple[int, int, int]:
    """The (C, H, W) of the images a model takes: its attribute `image_shape` where its spec
    declares any_shape, else DEFAULT_IMAGE_SHAPE (1, 28, 28)."""
    if not spec(model).any_shape:
        return DEFAULT_IMAGE_SHAPE
    return check_image_shape(model.image_shape)


def code_groups(model: nn.Module) -> int:
    """How many codebook vectors a "quantised" model's code holds side by side (its
    `code_groups`); 1 for any other model (a code is one vector)."""
    if spec(model).kind != "quantised":
        return 1
    return int(model.code_groups)


# --- structure: the layers the fast paths and RaPP read ---------------------------------


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of the model's `encoder`, in order, where that is an nn.Sequential (as in
    aelab's models); [] otherwise."""
    return _sequential(model, "encoder") or []


def layer_stack(model: nn.Module) -> list[nn.Module] | None:
    """[*encoder, *decoder] where both are nn.Sequentials, else None: the layers a
    `fast_path` model's forward runs through, in order."""
    enc, dec = _sequential(model, "encoder"), _sequential(model, "decoder")
    return None if enc is None or dec is None else [*enc, *dec]


def _sequential(model: nn.Module, name: str) -> list[nn.Module] | None:
    part = model._modules.get(name)  # a registered submodule, never a method or property
    return list(part) if isinstance(part, nn.Sequential) else None


def fast_path(model: nn.Module) -> tuple[str | None, str | None]:
    """(the hand-written layout the spec declares, None), or (None, why it does not hold),
    or (None, None) where none is declared. A class below the one that declared it which
    replaces forward, encode or decode (or __call__), a replacement on the instance, or a
    forward hook anywhere in the model, voids the hint: the hand-written step would skip it."""
    hint = spec(model).fast_path
    if hint is None:
        return None, None
    mro = type(model).__mro__
    declarer = next(c for c in mro if SPEC_ATTR in vars(c))
    for cls in mro[: mro.index(declarer)]:
        for part in _FORWARD_PARTS:
            if part in vars(cls):
                return None, (f"{cls.__name__} replaces {part}() of {declarer.__name__}, whose "
                              f"model_spec declares the hand-written {hint!r} layout")
    for part in _FORWARD_PARTS:
        if part in vars(model):
            return None, f"this {type(model).__name__} has its own {part}() set on the instance"
    for name, m in model.named_modules():
        if m._forward_hooks or m._forward_pre_hooks:
            return None, f"a forward hook on {name or 'the model'} changes what forward computes"
    return hint, None


# --- the contract check -----------------------------------------------------------------


def check_contract(model, name: str) -> None:
    """Raise AelabError naming the part of the model contract that `model` breaks: an int
    `latent_dim`, encode (2, C, H, W) -> (2, latent_dim), decode -> (2, C, H, W),
    forward -> (2, C, H, W), (C, H, W) its `image_shape(model)`, and what its ModelSpec
    declares (the loss terms it names, returned per image; the methods and attributes it
    promises). Runs on two images in eval mode, leaving the RNG, the training mode and (no
    gradients) the weights as they were."""

    def broken(what: str) -> AelabError:
        return AelabError(f"model {name!r} breaks the aelab model contract: {what}")

    if not isinstance(model, nn.Module):
        raise broken(f"building it returned {type(model).__name__}, not a torch.nn.Module")
    declared = getattr(type(model), SPEC_ATTR, None)
    if declared is not None and not isinstance(declared, ModelSpec):
        raise broken(f"its {SPEC_ATTR} is a {type(declared).__name__}, not an "
                     "aelab.models.ModelSpec")
    k = getattr(model, "latent_dim", None)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise broken(f"it needs an int attribute latent_dim >= 1 (the code size), not {k!r}")
    s = spec(model)
    _check_declarations(model, s, broken)
    shape = (2, *image_shape(model))  # (2, C, H, W)
    was_training = model.training
    model.eval()  # no batch-norm statistics updated by the check
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
            z = _call_part(model, "encode", x, (2, k), broken)
            _call_part(model, "decode", z, shape, broken)
            _call_part(model, "forward", x, shape, broken)
            if s.own_loss:
                _check_loss_terms(model, s, x, broken)
    finally:
        model.train(was_training)


def _check_declarations(model, s: ModelSpec, broken) -> None:
    """The methods and weights a spec promises exist (before anything runs)."""
    promised = [("loss_terms", "loss_terms"), ("likelihood", "extra_metrics"),
                ("custom_step", "make_step")]
    for flag, method in promised:
        if getattr(s, flag) and not callable(getattr(model, method, None)):
            raise broken(f"its model_spec declares {flag}, but it has no {method}() method")
    if s.kind == "quantised":
        g, k = getattr(model, "code_groups", None), getattr(model, "latent_dim", None)
        if isinstance(g, bool) or not isinstance(g, int) or g < 1 or k % g:
            raise broken(f"its model_spec declares kind 'quantised', so it needs an int "
                         f"attribute code_groups >= 1 dividing latent_dim={k}, not {g!r}")
    if s.any_shape:
        try:
            check_image_shape(getattr(model, "image_shape", None))
        except AelabError as e:
            raise broken(f"its model_spec declares any_shape, so it needs an attribute "
                         f"image_shape (C, H, W); {e}") from None
    if s.kind == "variational" and "kl" not in s.terms:
        raise broken("its model_spec declares kind 'variational' but no 'kl' loss term; "
                     "declare loss_terms={'recon': ..., 'kl': ...} and return both from "
                     "loss_terms()")
    for term, w in (s.loss_terms or {}).items():
        value = getattr(model, w, None) if isinstance(w, str) else w
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            what = f"its attribute {w!r} is {value!r}" if isinstance(w, str) else f"it is {w!r}"
            raise broken(f"the weight of loss term {term!r} must be a finite number; {what}")


def _check_loss_terms(model, s: ModelSpec, x: torch.Tensor, broken) -> None:
    call = f"loss_terms(x_in, x) of x {tuple(x.shape)}"
    try:
        terms = model.loss_terms(x, x, autocast_bf16=False)
    except Exception as e:  # the model's own code: say where it failed
        raise broken(f"{call} raised {type(e).__name__}: {e}") from None
    if not isinstance(terms, Mapping):
        raise broken(f"{call} returned {type(terms).__name__}, not a dict of the terms "
                     f"{list(s.terms)}")
    if set(terms) != set(s.terms):
        raise broken(f"{call} returned the terms {sorted(terms)}; its model_spec declares "
                     f"{sorted(s.terms)}")
    for term, t in terms.items():
        if not torch.is_tensor(t) or tuple(t.shape) != (2,):
            what = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise broken(f"{call} gave term {term!r} as {what}; expected one number per "
                         "image, shape (2,)")


def _call_part(model, part: str, arg, expected: tuple, broken) -> torch.Tensor:
    arg_name = "z" if part == "decode" else "x"
    call = f"{part}({arg_name}) of {arg_name} {tuple(arg.shape)}"
    fn = model if part == "forward" else getattr(model, part, None)
    if fn is None:
        raise broken(f"it has no {part}() method")
    try:
        out = fn(arg)
    except Exception as e:  # the model's own code: say where it failed
        raise broken(f"{call} raised {type(e).__name__}: {e}") from None
    if not torch.is_tensor(out):
        raise broken(f"{call} returned {type(out).__name__}, not a tensor of shape {expected}")
    if tuple(out.shape) != expected:
        raise broken(f"{call} returned shape {tuple(out.shape)}; expected {expected}")
    return out
