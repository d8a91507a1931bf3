"""Training: one loop (trainer.py) calling one Step (step.py, whose `make_step` is the only
place that picks the step: autograd, or a hand-written CPU step from fast/), the run-folder
lock (lock.py) and the torchrun helpers (distributed.py).

`aelab.train` is this package, and calling it trains: `aelab.train(config)` is
`aelab.train.train(config)`. (Python binds a subpackage's name on its parent whenever the
subpackage is imported, so a function of the same name on `aelab` could not survive; the
package itself answers the call instead.) So that help(aelab.train), inspect.signature and a
notebook's Shift-Tab show the call, the package carries train()'s signature, and its
docstring starts with train()'s.
"""

import inspect as _inspect
import sys as _sys
import types as _types

from .trainer import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult, resume, train

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "TrainingInterrupted", "resume", "train"]

_SIGNATURE = _inspect.signature(train)
__doc__ = f"aelab.train{_SIGNATURE}\n\n{_inspect.getdoc(train)}\n\n\n{__doc__}"


class _CallableModule(_types.ModuleType):
    @property
    def __signature__(self) -> _inspect.Signature:  # inspect.signature(aelab.train)
        return _SIGNATURE

    def __call__(self, *args, **kwargs) -> TrainResult:
        return train(*args, **kwargs)

    # what IPython shows as the call's signature and docstring (self is dropped when bound)
    __call__.__signature__ = _SIGNATURE.replace(parameters=[
        _inspect.Parameter("self", _inspect.Parameter.POSITIONAL_ONLY), *_SIGNATURE.parameters.values()])
    __call__.__doc__ = train.__doc__


_sys.modules[__name__].__class__ = _CallableModule
