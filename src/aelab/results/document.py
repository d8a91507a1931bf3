"""`aelab results` as a whole: which groups `--only` names, where their outputs go, each
group run in turn into its JSON file, and RESULTS.md rebuilt from all the JSON files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from .._io import atomic_write_json, atomic_write_text
from ..data.registry import is_aelab_checkout
from ..errors import AelabError
from .registry import GROUPS, Group, Plan

RESULTS_FOLDER = Path("aelab-results")  # the default output folder outside an aelab checkout


def output_folders(runs_root: Path | None, out: Path | None, quick: bool) -> tuple[Path, Path]:
    """(RUNS_ROOT, OUT): as given, else runs/results[-quick] in this folder, and for OUT
    RUNS_ROOT/docs with `quick` (never docs/), docs/ at the root of an aelab checkout, else
    ./aelab-results (a folder of its own: nobody's docs/ gets overwritten)."""
    root = runs_root or Path("runs/results-quick" if quick else "runs/results")
    if out is None and quick:
        out = root / "docs"
    elif out is None:
        out = Path("docs") if is_aelab_checkout(Path(".")) else RESULTS_FOLDER
    return root, out


def split_only(only: list[str] | None) -> dict[str, list[str] | None]:
    """--only's words as {group to run: its parts to train, None for all}, in GROUPS order.
    A group's part (a reconstruction row) runs that group with only the parts named."""
    if only is None:
        return dict.fromkeys(GROUPS)
    parts = {p: g.name for g in GROUPS.values() for p in g.parts}
    unknown = sorted(set(only) - set(parts) - set(GROUPS))
    if unknown:
        listed = "".join(f"; {g.name} rows: {', '.join(g.parts)}" for g in GROUPS.values() if g.parts)
        raise AelabError(f"--only {' '.join(unknown)}: no such group or row; groups: "
                         f"{', '.join(GROUPS)}{listed}")
    named = {g: [w for w in only if parts.get(w) == g] for g in GROUPS}
    return {g: None if g in only else named[g] for g in GROUPS if g in only or named[g]}


def read_rows(out: Path, group: str) -> list[dict]:
    """A group's rows from its JSON file in `out` ([] if not written yet or unreadable)."""
    try:
        rows = json.loads((Path(out) / GROUPS[group].json_file).read_text())
    except (OSError, ValueError):
        return []
    return rows if isinstance(rows, list) else []


def run_group(group: Group, plan: Plan, out: Path) -> None:
    """Train and evaluate one group; write its JSON file (and its figures) into `out`."""
    plan.log(f"=== {group.name}")
    rows = group.rows(plan, read_rows(out, group.name))
    atomic_write_json(Path(out) / group.json_file, rows)
    if group.extras is not None:
        group.extras(rows, Path(out), plan)
    plan.log(group.summary(rows) if group.summary else group.section(rows, plan.quick))


INTRO = """# Results: MNIST, beside the simple baselines and the published record

[Back to the README](../README.md) · [Choosing a family](families.md#choosing-a-family) ·
[Training and presets](training.md#presets-and-the-results-table)
{quick_note}
{count} tasks, each a group that `aelab results --only GROUP` trains and evaluates (`make
results`, or `aelab results` alone, runs all {count_lower}): {groups}.
Finished runs in `runs/results/` are reused and interrupted ones resumed (`--force`
retrains); each group rewrites its JSON file (a list of rows, for machines) and this page
is rebuilt from all of them, so a group run on one day and another on the next stand side by
side. Every table has its simple baseline measured in
the same run on the same protocol, and the published figures beside it with their protocol.
"""
_WORDS = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}
QUICK_NOTE = ("\n> **--quick run**: 1 epoch on 256 images; these numbers only show that the "
              "pipeline works.\n")


def results_document(out: Path, quick: bool) -> str:
    """RESULTS.md: one section per group, each rendered from its JSON file in `out`."""
    count = _WORDS.get(len(GROUPS), str(len(GROUPS)))
    parts = [INTRO.format(quick_note=QUICK_NOTE if quick else "", groups=", ".join(GROUPS),
                          count=count.capitalize(), count_lower=count)]
    for group in GROUPS.values():
        rows = read_rows(out, group.name)
        parts.append(group.section(rows, quick) if rows else
                     f"## {group.name}\n\nNot run yet: `aelab results --only {group.name}` writes "
                     f"`{group.json_file}` and this section.\n")
    return "\n".join(parts)


def run(only: list[str] | None, out: Path, **settings) -> None:
    """`aelab results`: run the groups `only` names (all when None), each writing its JSON
    file into `out`, then rebuild `out`/RESULTS.md from every group's JSON file. `settings`:
    the fields of Plan (root, quick, force, data_dir, device, log)."""
    plan = Plan(**settings)
    plan.log(f"runs in {plan.root}/; RESULTS.md and the groups' JSON files in {out}/")
    selected = split_only(only)
    for name, parts in selected.items():
        run_group(GROUPS[name], replace(plan, only=parts), out)
    atomic_write_text(Path(out) / "RESULTS.md", results_document(out, plan.quick))
    written = ", ".join(str(Path(out) / GROUPS[g].json_file) for g in selected)
    plan.log(f"wrote {Path(out) / 'RESULTS.md'} and {written}")


def description() -> str:
    """`aelab results --help`'s description, from the registry."""
    groups = ", ".join(f"{g.name} ({g.what})" for g in GROUPS.values())
    rows = "".join(f" {g.name.capitalize()} rows: {', '.join(g.parts)}" for g in GROUPS.values() if g.parts)
    count = _WORDS.get(len(GROUPS), str(len(GROUPS))).capitalize()
    return (f"{count} groups, each with its simple baseline measured in the same run and the published "
            f"figures beside it: {groups}. Runs go to RUNS_ROOT/<preset>-seed<k>/ (finished runs "
            "reused, interrupted ones resumed); each group writes its JSON file, and RESULTS.md is "
            f"rebuilt from all of them.{rows}")
