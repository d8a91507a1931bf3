"""Markdown for RESULTS.md, shared by every group: one table renderer and the cells and
lists that several sections write the same way."""

from __future__ import annotations


def markdown_table(head: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A Markdown table. `align`: a letter per column, l (left, `---`) or r (right, `---:`);
    default all left."""
    align = align or "l" * len(head)
    if len(align) != len(head):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(head)} columns")
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    return "\n".join(["| " + " | ".join(head) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows)])


def cell(value, spec: str, none: str = "-") -> str:
    """`value` formatted by `spec`, or `none` where it was not measured."""
    return none if value is None else format(value, spec)


def minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def joined(values) -> str:
    """Distinct '; '-joined machine lines, in order of first appearance."""
    return "; ".join(dict.fromkeys(m for v in values for m in v.split("; ")))


def machines_lines(rows: list[dict], name=lambda r: f"`{r['name']}`") -> str:
    """A bullet per machine (the `hardware` of rows), naming the rows measured on it."""
    by: dict[str, list[str]] = {}
    for r in rows:
        if r.get("hardware") and not r.get("missing"):
            by.setdefault(r["hardware"], []).append(name(r))
    return "\n".join(f"  - {hw}: {', '.join(names)}" for hw, names in by.items())
