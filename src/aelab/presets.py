"""Named training presets: `aelab train --preset NAME` runs one row of the results table
with its exact settings. Each is a partial TrainConfig (as a dict); flags override it."""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # the seed tutorial's two models, exactly
    "seed-linear": {"model": "linear"},
    "seed-conv": {"model": "conv"},
}
