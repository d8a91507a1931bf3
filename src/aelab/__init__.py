"""aelab: an autoencoder lab for MNIST-family images.

Notebook API (the CLI calls the same functions)::

    import aelab
    train_x, train_y = aelab.load_dataset("mnist", "train")   # uint8 (60000, 28, 28), int64
    model = aelab.build_model("conv")
    result = aelab.train(aelab.TrainConfig(model="conv", epochs=2))
    run = aelab.load(result.run_dir)                           # .model, .config, .meta
    recon = run.reconstruct(train_x[:8])                       # uint8 or [0, 1] images in
    samples = run.sample(16)                                   # numpy (16, 28, 28)
    print(aelab.evaluate_run(result.run_dir)["sse_per_image"])

The package, bottom to top (a module imports only from layers below it; tests/test_layers.py
checks): errors, _io, config, presets, runtime; data/, models/; figures, runs; train/;
pca, represent, evaluate; apps/; cli/.

Importing aelab does no work: each name is imported on first use.
"""

import importlib as _importlib

__version__ = "0.1.0"

_LAZY = {
    "load_dataset": "data", "ensure_dataset": "data", "DATASETS": "data",
    "build_model": "models", "MODELS": "models", "register_model": "models",
    "count_parameters": "models",
    "TrainConfig": "config",
    "resume": "train", "Trainer": "train",  # aelab.train is the train package, and callable
    "load": ("runs", "load_run"), "load_run": "runs", "LoadedRun": "runs",
    "to_float": "data.batches", "images_to_float": "data.batches", "as_images": "data.batches",
    "evaluate_run": "evaluate", "reconstruction_sse": "evaluate",
    "AelabError": "errors",
}
_SUBMODULES = ("apps", "cli", "config", "data", "errors", "evaluate", "figures", "models", "pca",
               "presets", "represent", "runs", "runtime", "train")

# For static tools (Jedi's completion and signatures in a notebook or editor, pyright, mypy),
# which cannot see names made by __getattr__: each name of __all__ imported from its real
# module, never at run time (tests/test_api_help.py keeps these names equal to _LAZY's keys
# and train). Statically aelab.train is the function train(), which calling the package runs;
# at run time it stays the package (so aelab.train.TrainResult still works). TYPE_CHECKING is
# our own, not typing's, so that `import aelab` imports no more than before (typing brings re, enum,
# collections): mypy and pyright know the flag by its name, and Jedi, reading `bool`, does not
# take the block for dead code as it would with a bare `= False`.
TYPE_CHECKING: bool = False
if TYPE_CHECKING:  # `x as x`: re-exported, to linters and type checkers
    from .config import TrainConfig as TrainConfig
    from .data import DATASETS as DATASETS, ensure_dataset as ensure_dataset, load_dataset as load_dataset
    from .data.batches import as_images as as_images, images_to_float as images_to_float, to_float as to_float
    from .errors import AelabError as AelabError
    from .evaluate import evaluate_run as evaluate_run, reconstruction_sse as reconstruction_sse
    from .models import MODELS as MODELS, build_model as build_model, count_parameters as count_parameters
    from .models import register_model as register_model
    from .runs import LoadedRun as LoadedRun, load_run as load_run
    from .runs import load_run as load  # noqa: F401 (not `load = load_run`: Jedi would lose its docstring)
    from .train import Trainer as Trainer, resume as resume, train as train
del TYPE_CHECKING

__all__ = ["__version__", "train", *sorted(_LAZY)]  # noqa: PLE0604


def __getattr__(name):
    if name in _SUBMODULES:  # aelab.runtime.prepare_process() without a separate import
        return _importlib.import_module(f".{name}", __name__)
    if name not in _LAZY:
        raise AttributeError(f"module 'aelab' has no attribute {name!r}")
    target = _LAZY[name]
    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(_importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
