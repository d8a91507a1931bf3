"""Markdown pages as blocks, for the checks that read what a page claims: a block is a
paragraph, a table or one list item (with its continuation lines); fenced code is no block.
Each block knows its section (the heading above it) and the block before it, which is the
caption of a table or the lead of a list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
ITEM = re.compile(r"^(\s*)([-*+]|\d+\.)\s+")


@dataclass
class Block:
    page: str
    line: int  # first line, from 1
    kind: str  # "para", "table", "item"
    text: str
    section: str
    before: Block | None = None  # the block above it in the same section

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _flush(out, page, start, kind, lines, section):
    if not lines:
        return
    prev = out[-1] if out and out[-1].section == section else None
    out.append(Block(page, start, kind, "\n".join(lines), section, prev))


def blocks(path: Path, root: Path) -> list[Block]:
    page = path.relative_to(root).as_posix()
    out: list[Block] = []
    section, kind, start, lines, in_fence = "", "", 0, [], None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if in_fence:
            if fence and fence.group(1)[0] == in_fence[0]:
                in_fence = None
            continue
        if fence:
            _flush(out, page, start, kind, lines, section)
            lines, in_fence = [], fence.group(1)
            continue
        heading = HEADING.match(line)
        if heading or not line.strip():
            _flush(out, page, start, kind, lines, section)
            lines = []
            if heading:
                section = heading.group(2)
            continue
        line_kind = "table" if line.lstrip().startswith("|") else "item" if ITEM.match(line) else None
        starts = (not lines or line_kind == "item"  # every bullet is a block of its own
                  or (line_kind == "table") != (kind == "table"))
        if starts:
            _flush(out, page, start, kind, lines, section)
            lines, start, kind = [], n, line_kind or "para"
        lines.append(line)
    _flush(out, page, start, kind, lines, section)
    return out


def table_cells(block: Block) -> list[list[str]]:
    rows = []
    for line in block.text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
            continue
        rows.append(cells)
    return rows
