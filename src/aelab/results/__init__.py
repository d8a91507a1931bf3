"""`aelab results`: the result groups, each a module that registers itself in GROUPS
(reconstruction, vae, anomaly, denoise, generation: the order of RESULTS.md), trains what it needs into
RUNS_ROOT (finished runs reused, interrupted ones resumed), measures its simple baseline in
the same run on the same protocol, and writes a JSON file of rows and a section of RESULTS.md.

- registry.py: GROUPS, @register_group, Plan (what one `aelab results` was asked to do);
- document.py: --only, the output folders, running the groups, RESULTS.md;
- training.py: presets into run folders; cache.py: measurements kept and reused;
- render.py: the Markdown table and cells every section shares;
- baselines.py: exact PCA rows, `aelab baseline`'s lines; learned.py: a preset's seeds as a row;
- reconstruction.py, vae.py, anomaly.py, denoise.py, generation.py: the groups.
"""

from __future__ import annotations

# Importing a group module registers it: this order is the order of RESULTS.md and --help.
from . import reconstruction, vae, anomaly, denoise, generation  # noqa: F401
from .baselines import BASELINES_DESCRIPTION, pca_report, pca_row, wiener_report
from .document import RESULTS_FOLDER, description, output_folders, read_rows, run, split_only
from .registry import GROUPS, Group, Plan, register_group

__all__ = ["BASELINES_DESCRIPTION", "GROUPS", "RESULTS_FOLDER", "Group", "Plan", "description",
           "output_folders", "pca_report", "pca_row", "read_rows", "register_group", "run", "split_only",
           "wiener_report"]
