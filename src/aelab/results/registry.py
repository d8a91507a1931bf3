"""The result groups of `aelab results`, by name: what each one computes, the JSON file it
writes and the RESULTS.md section it renders. A group module registers itself with
`@register_group`; the CLI's choices, RESULTS.md and the tests all read GROUPS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What one `aelab results` was asked to do, handed to every group it runs."""

    root: Path  # RUNS_ROOT: the run folders and the groups' caches
    quick: bool = False  # CI-sized: every code path, numbers that only show it works
    force: bool = False  # retrain finished runs
    data_dir: Path | None = None
    device: str | None = None  # None: each preset's own
    log: Callable[[str], None] = print
    only: list[str] | None = None  # the group's parts to train (its `parts`); None: all


@dataclass(frozen=True)
class Group:
    name: str
    json_file: str  # in the output folder beside RESULTS.md
    rows: Callable[[Plan, list[dict]], list[dict]]  # (plan, its JSON rows before) -> its JSON rows
    section: Callable[[list[dict], bool], str]  # (its JSON rows, quick) -> its RESULTS.md section
    what: str  # one line for `aelab results --help`
    parts: tuple[str, ...] = ()  # names `--only` takes to run part of the group
    summary: Callable[[list[dict]], str] | None = None  # printed after a run; None: the section
    extras: Callable[[list[dict], Path, Plan], object] | None = None  # files beside the JSON


GROUPS: dict[str, Group] = {}  # in the order of RESULTS.md (the order of registration)


def register_group(name: str, *, json_file: str, section, what: str, parts=(), summary=None,
                   extras=None):
    """Decorator: register the function that computes group NAME's rows."""
    def add(rows):
        if name in GROUPS:
            raise ValueError(f"result group {name!r} is registered twice")
        GROUPS[name] = Group(name, json_file, rows, section, what, tuple(parts), summary, extras)
        return rows
    return add
