"""aelab: an autoencoder lab for MNIST-family images.

Notebook API (the CLI calls the same functions)::

    import aelab
    train_x, train_y = aelab.load_dataset("mnist", "train")   # uint8 (60000, 28, 28), int64
    model = aelab.build_model("conv")
    result = aelab.train(aelab.TrainConfig(model="conv", epochs=2))
    run = aelab.load(result.run_dir)                           # .model, .config, .meta
    print(aelab.evaluate_run(result.run_dir)["sse_per_image"])

Importing aelab does no work: each name is imported on first use.
"""

from ._version import __version__

_LAZY = {
    "load_dataset": "data", "ensure_dataset": "data", "DATASETS": "data",
    "build_model": "models", "MODELS": "models", "register_model": "models",
    "count_parameters": "models",
    "TrainConfig": "config",
    "train": "trainer", "resume": "trainer", "Trainer": "trainer",
    "load": ("checkpoint", "load_run"), "load_run": "checkpoint",
    "evaluate_run": "evaluate", "reconstruction_sse": "evaluate",
    "AelabError": "errors",
}

__all__ = ["__version__", *sorted(_LAZY)]  # noqa: PLE0604


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'aelab' has no attribute {name!r}")
    import importlib

    target = _LAZY[name]
    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value
