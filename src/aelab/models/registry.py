"""The model registry: models are pure nn.Modules, registered by name.

Every model maps images (B, C, H, W) in [0, 1] to reconstructions of the same shape,
and exposes `encode` -> (B, latent_dim), `decode` (B, latent_dim) -> (B, C, H, W),
and `latent_dim`. (C, H, W) is the shape the model declares (contract.image_shape): the
`image_shape` argument of a model that takes one (the families, on either backbone), else
(1, 28, 28). `build_model(name, image_shape=...)` gives the dataset's shape to a model
that takes it and refuses any other than (1, 28, 28) for one that does not (the seed's
`linear` and `conv`, `mlp`, `convnet`). No I/O, no device logic, no training code here.

Three kinds of model can be built by name:

- aelab's own, registered with `@register_model`;
- an installed package's, registered under the entry-point group "aelab.models", e.g.
  `[project.entry-points."aelab.models"] tiny = "mypkg.models:TinyAE"`;
- your own, as a `module:attr` reference (`mymodels:TinyAE`), imported with the current
  working folder on sys.path; attr is an nn.Module class or a factory taking `latent_dim=`.

`model_record(name)` says which it was (and, for imported code, which file with which
checksum), so a checkpoint can rebuild its model by importing that code again.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import inspect
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..errors import AelabError
# the contract lives in contract.py; build_model applies it
from .contract import DEFAULT_IMAGE_SHAPE, check_contract, check_image_shape

MODELS: dict[str, Callable[..., nn.Module]] = {}
ENTRY_POINT_GROUP = "aelab.models"
# name -> the entry point that registered it (the rest of MODELS is aelab's own)
_ENTRY_POINTS: dict[str, importlib.metadata.EntryPoint] = {}
# module name -> (module object, sha256 of its file when it was imported)
_MODULE_SHA: dict[str, tuple[object, str | None]] = {}
REFERENCE_HINT = "give your own model as module:attr, e.g. mymodels:TinyAE"
REQUIRED = inspect.Parameter.empty  # model_arguments' mark for an argument without a default


def register_model(name: str):
    """Class decorator: make a model buildable by name (CLI choices and tests come from MODELS)."""

    def add(cls):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = cls
        cls.registry_name = name
        return cls

    return add


def build_model(name: str, *, image_shape=None, **kwargs) -> nn.Module:
    """Build a model by registered name ("conv") or reference ("mymodels:TinyAE"), for
    images of `image_shape` [C, H, W] where given (else the model's default, (1, 28, 28)).
    Models from outside aelab are checked against the contract before they are returned."""
    if name in MODELS:  # registered names win over references
        factory = MODELS[name]
    elif ":" in name:
        factory = _resolve_reference(name)
    else:
        raise AelabError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}; "
                         f"or {REFERENCE_HINT}")
    kwargs = _with_image_shape(name, factory, image_shape, kwargs)
    _check_arguments(name, factory, kwargs)
    try:
        model = factory(**kwargs)
    except TypeError as e:  # an argument the signature could not rule out (e.g. **kwargs)
        raise AelabError(f"model {name!r} does not accept {kwargs}: {e}; "
                         f"{describe_arguments(factory)}") from None
    if not _is_builtin(name):  # aelab's own are checked by tests/test_models.py
        check_contract(model, name)
    return model


def model_arguments(factory) -> dict[str, object] | None:
    """The keyword arguments a model's builder takes, name -> default (REQUIRED where it has
    none), from its signature; None when it takes any (**kwargs) or has no signature."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: nothing to read
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name: REQUIRED if p.default is p.empty else p.default for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def describe_arguments(factory) -> str:
    """For error messages: `its arguments, with their defaults: latent_dim=30, hidden=None`,
    or that it takes none."""
    args = model_arguments(factory)
    if args is None:
        return "see its code for the arguments it takes"
    if not args:
        return "it takes no arguments"
    return "its arguments, with their defaults: " + ", ".join(
        f"{n} (no default)" if d is REQUIRED else f"{n}={d!r}" for n, d in args.items())


def _check_arguments(name: str, factory, kwargs: dict) -> None:
    """Raise AelabError naming each argument the builder does not take, and the ones it does."""
    args = model_arguments(factory)
    unknown = [] if args is None else [k for k in kwargs if k not in args]
    if not unknown:
        return
    named = []
    for k in unknown:
        close = difflib.get_close_matches(k, list(args), n=1)
        named.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    what = "argument" if len(unknown) == 1 else "arguments"
    raise AelabError(f"model {name!r} does not accept the {what} {', '.join(named)}; "
                     f"{describe_arguments(factory)}")


def any_shape_models() -> list[str]:
    """The registered models that take an `image_shape` argument (the families, on the
    conv or mlp backbone), in registration order."""
    return [n for n, f in MODELS.items() if "image_shape" in (model_arguments(f) or {})]


def _with_image_shape(name: str, factory, image_shape, kwargs: dict) -> dict:
    """kwargs with `image_shape` added where the model takes it; (1, 28, 28) (or None) is
    dropped for a model that does not, any other shape refused in one line."""
    if image_shape is None:
        return kwargs
    shape = check_image_shape(image_shape)
    args = model_arguments(factory)
    if args is not None and "image_shape" in args:
        return {**kwargs, "image_shape": list(shape)}
    if shape == DEFAULT_IMAGE_SHAPE:  # what a model that takes no image_shape takes
        return kwargs
    if args is None:  # it takes any argument (**kwargs): it may take this one
        return {**kwargs, "image_shape": list(shape)}
    raise AelabError(f"model {name!r} takes 28x28 grey images (image_shape [1, 28, 28]) only, "
                     f"not {list(shape)}; for other images choose a family, whose backbones "
                     f"conv and mlp take any shape: {', '.join(any_shape_models())}")


def count_parameters(model: nn.Module) -> int:
    """The number of parameters of `model` (trainable or not), as the models table counts."""
    return sum(p.numel() for p in model.parameters())


# --- references: module:attr ----------------------------------------------------------


def _resolve_reference(ref: str) -> Callable[..., nn.Module]:
    """The callable `attr` of `module` for "module:attr"; cwd goes first on sys.path."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr or ":" in attr:
        raise AelabError(f"model reference {ref!r} is not module:attr; {REFERENCE_HINT}")
    module = _import_module(module_name, ref)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise AelabError(f"module {module_name!r} ({getattr(module, '__file__', None)}) has "
                             f"no {attr!r} for model {ref!r}; check the spelling after the ':'")
    if not callable(obj):
        raise AelabError(f"{ref!r} is a {type(obj).__name__}, not an nn.Module class or a "
                         "function that builds one")
    return obj


def _import_module(module_name: str, ref: str, hint: str = ""):
    """Import `module_name` for model `ref`; `hint` says what to do if it is not found."""
    hint = hint or (f"run aelab from the folder that holds {module_name.replace('.', '/')}.py, "
                    "or install it")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if module_name not in sys.modules:
        importlib.invalidate_caches()  # a file written moments ago, in this process
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (module_name + ".").startswith(e.name + "."):
            raise _import_failed(module_name, ref, e) from None  # one of the module's imports
        raise AelabError(f"cannot import module {module_name!r} for model {ref!r} ({e}); {hint}") from None
    except Exception as e:  # the module's own code failed (SyntaxError, ...)
        raise _import_failed(module_name, ref, e) from None
    cached = _MODULE_SHA.get(module_name)
    if cached is None or cached[0] is not module:  # the checksum of the code that runs
        _MODULE_SHA[module_name] = (module, _file_sha256(getattr(module, "__file__", None)))
    return module


def _import_failed(module_name: str, ref: str, e: Exception) -> AelabError:
    return AelabError(f"importing module {module_name!r} for model {ref!r} failed "
                      f"({type(e).__name__}: {e}); fix that module")


def _file_sha256(file: str | None) -> str | None:
    if file is None or not Path(file).is_file():
        return None
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


# --- records: what a checkpoint keeps to rebuild its model ----------------------------


def _is_builtin(name: str) -> bool:
    return name in MODELS and name not in _ENTRY_POINTS and \
        getattr(MODELS[name], "__module__", "").startswith("aelab.")


def model_record(name: str) -> dict:
    """Where model `name` comes from, for a checkpoint's meta:
    {"source": "builtin"};
    {"source": "entry-point", "distribution", "version", "value"};
    {"source": "user", "module", "attr", "file", "sha256"} for module:attr, or for a model
    registered by code outside aelab (attr is then its class's qualified name)."""
    if name in _ENTRY_POINTS:
        ep = _ENTRY_POINTS[name]
        dist = getattr(ep, "dist", None)
        return {"source": "entry-point", "distribution": dist.name if dist else None,
                "version": dist.version if dist else None, "value": ep.value}
    if _is_builtin(name):
        return {"source": "builtin"}
    if name in MODELS:
        factory = MODELS[name]
        module_name, attr = factory.__module__, factory.__qualname__
    else:
        _resolve_reference(name)  # imports it (cached) and checks the reference
        module_name, attr = name.split(":", 1)
    module = sys.modules[module_name]
    file = getattr(module, "__file__", None)
    cached = _MODULE_SHA.get(module_name)
    sha = cached[1] if cached and cached[0] is module else _file_sha256(file)
    return {"source": "user", "module": module_name, "attr": attr,
            "file": str(Path(file).resolve()) if file else None, "sha256": sha}


def rebuild_model(record: dict) -> nn.Module:
    """Build the model a checkpoint's meta["model"] describes, by importing its code again
    (old checkpoints hold only name and args). Warns when the module file has changed."""
    name, args, source = record["name"], record.get("args", {}), record.get("source")
    if source == "entry-point" and name not in MODELS:
        raise AelabError(f"model {name!r} came from the package {record.get('distribution')!r} "
                         f"(entry point {record.get('value')!r}), which is not installed; "
                         "install it and try again")
    if source != "user" or name in MODELS:
        return build_model(name, **args)
    ref = f"{record['module']}:{record['attr']}"
    folder = Path(record["file"]).parent if record.get("file") else "the folder that holds it"
    _import_module(record["module"], ref, hint=f"this checkpoint's model was trained from "
                   f"{record.get('file')}: run aelab from {folder}, or put {folder} on PYTHONPATH")
    now = model_record(ref)
    if record.get("sha256") and now["sha256"] != record["sha256"]:
        warnings.warn(f"model module {record['module']!r} ({now['file']}) has changed since this "
                      f"checkpoint was trained with {record.get('file')} (sha256 "
                      f"{record['sha256'][:12]}... then, {str(now['sha256'])[:12]}... now); "
                      "loading it anyway", stacklevel=3)
    return build_model(ref, **args)


# --- entry points ---------------------------------------------------------------------


def load_entry_points() -> list[str]:
    """Register installed packages' models (entry-point group "aelab.models") in MODELS;
    returns the names added. A broken entry point or a clash is skipped with a warning."""
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as e:  # broken metadata must not break `import aelab.models`
        warnings.warn(f"aelab: cannot read the {ENTRY_POINT_GROUP!r} entry points ({e})", stacklevel=2)
        return []
    added = []
    for ep in eps:
        where = f"entry point {ep.name} = {ep.value!r}" + (f" of {ep.dist.name}" if ep.dist else "")
        if ep.name in MODELS:
            owner = "another package's model" if ep.name in _ENTRY_POINTS else "aelab's own model"
            warnings.warn(f"aelab: skipping {where}: {ep.name!r} is {owner}; rename the entry point",
                          stacklevel=2)
            continue
        try:
            factory = ep.load()
        except Exception as e:  # the package's code: a broken one must not break aelab
            warnings.warn(f"aelab: skipping {where}: {type(e).__name__}: {e}", stacklevel=2)
            continue
        if not callable(factory):
            warnings.warn(f"aelab: skipping {where}: it is a {type(factory).__name__}, not an "
                          "nn.Module class or a function that builds one", stacklevel=2)
            continue
        MODELS[ep.name], _ENTRY_POINTS[ep.name] = factory, ep
        added.append(ep.name)
    return added
