"""Training: one loop (trainer.py) calling one Step (step.py, whose `make_step` is the only
place that picks the step: autograd, or a hand-written CPU step from fast/), the run-folder
lock (lock.py) and the torchrun helpers (distributed.py).

`aelab.train` is this package, and calling it trains: `aelab.train(config)` is
`aelab.train.train(config)`. (Python binds a subpackage's name on its parent whenever the
subpackage is imported, so a function of the same name on `aelab` could not survive; the
package itself answers the call instead.)
"""

import sys as _sys
import types as _types

from .trainer import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult, resume, train

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "TrainingInterrupted", "resume", "train"]


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs) -> TrainResult:
        return train(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
