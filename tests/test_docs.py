"""Checks on the documentation: README.md stays a front page, each docs page opens with a
title and a link back, every relative link and image resolves, every `aelab` command in a
fenced code block parses with the real CLI parser, and the tables list what exists."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MODELS_PAGE = ROOT / "docs" / "training.md"  # the page that holds the models table
README_MAX_LINES = 250


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- Markdown parsing --------------------------------------------------------------------

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def fenced_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(line number of the block's first content line, its lines) for each fenced block."""
    blocks, current, opener, start = [], None, "", 0
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if current is None:
            if m:
                current, opener, start = [], m.group(1), n + 1
        elif m and m.group(1)[0] == opener[0] and len(m.group(1)) >= len(opener) \
                and not line.strip()[len(m.group(1)):].strip():
            blocks.append((start, current))
            current = None
        else:
            current.append(line)
    assert current is None, f"unclosed code fence opened before line {start}"
    return blocks


def without_fenced_blocks(text: str) -> str:
    lines = text.splitlines()
    for start, body in fenced_blocks(text):
        for i in range(start - 2, start + len(body)):  # the fences and the body
            lines[i] = ""
    return "\n".join(lines)


def prose(text: str) -> str:
    """The text without fenced blocks and inline code, where links are not links."""
    return re.sub(r"`[^`]+`", "", without_fenced_blocks(text))


INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def link_targets(text: str) -> list[str]:
    body = prose(text)
    return INLINE_LINK.findall(body) + REFERENCE_DEF.findall(body)


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) is not None  # http:, https:, mailto:


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    body = without_fenced_blocks(path.read_text(encoding="utf-8"))  # '#' in code is no heading
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", body, re.M):
        slug = github_slug(m.group(1))
        k = seen.get(slug, 0)
        seen[slug] = k + 1
        out.add(slug if k == 0 else f"{slug}-{k}")
    return out


# --- commands in fenced code blocks -------------------------------------------------------

STOP_TOKENS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "2>", "&>", ">&"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def logical_lines(body: list[str], start: int):
    """(line number, line) with backslash continuations joined."""
    pending, first = "", 0
    for i, line in enumerate(body):
        if not pending:
            first = start + i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield first, pending + line
        pending = ""
    if pending:
        yield first, pending


def aelab_argv(line: str) -> list[str] | None:
    """The arguments after `aelab` on a documented shell line, or None when the line does not
    run aelab. `aelab ...`, `.venv/bin/aelab ...` and `VAR=1 aelab ...` count, and so do
    `python -m aelab ...` and `torchrun ... -m aelab ...` (the tokens after `-m aelab`)."""
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # not shell (an unbalanced quote in Python or JSON): not a command
        return None
    for i, tok in enumerate(tokens):
        if tok in STOP_TOKENS:
            tokens = tokens[:i]
            break
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        tokens = tokens[1:]
    if not tokens:
        return None
    if Path(tokens[0]).name == "aelab":
        argv = tokens[1:]
    else:
        for i in range(len(tokens) - 1):
            if tokens[i] == "-m" and tokens[i + 1] == "aelab":
                argv = tokens[i + 2:]
                break
        else:
            return None
    # Usage notation: `[--out DIR]` is an optional part, written out here; `...` repeats.
    out, optional = [], False
    for tok in argv:
        if tok == "...":
            continue
        if tok.startswith("[") and len(tok) > 1:
            tok, optional = tok[1:], True
        if optional and tok.endswith("]"):
            tok, optional = tok[:-1], False
        if tok:
            out.append(tok)
    return out


def documented_commands() -> list[tuple[str, int, str, list[str]]]:
    found = []
    for page in PAGES:
        for start, body in fenced_blocks(page.read_text(encoding="utf-8")):
            for n, line in logical_lines(body, start):
                argv = aelab_argv(line)
                if argv is not None:
                    found.append((rel(page), n, line.strip(), argv))
    return found


COMMANDS = documented_commands()


def parse(argv: list[str]) -> tuple[int, str]:
    """argparse's exit code (0 when the line parses) and its message."""
    from aelab.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:
            return (e.code if isinstance(e.code, int) else 1), err.getvalue().strip()
    return 0, ""


def subcommands() -> set[str]:
    from aelab.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("the aelab parser has no subcommands")


# --- the tests ----------------------------------------------------------------------------

def test_readme_is_a_front_page():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): move detail to docs"


def test_docs_pages_exist():
    names = {p.name for p in DOCS}
    for name in ("data.md", "training.md", "performance.md", "explore.md", "serve.md", "RESULTS.md"):
        assert name in names, f"docs/{name} is missing"


@pytest.mark.parametrize("page", [p for p in DOCS if p.name != "RESULTS.md"], ids=rel)
def test_docs_page_has_title_and_link_back(page):
    lines = page.read_text(encoding="utf-8").splitlines()
    assert lines and re.match(r"^# \S", lines[0]), f"{rel(page)}: the first line is not a '# ' title"
    head = "\n".join(lines[1:5])
    assert "](../README.md" in head, f"{rel(page)}: no link back to ../README.md below the title"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_and_images_resolve(page):
    targets = link_targets(page.read_text(encoding="utf-8"))
    assert targets or page.name == "RESULTS.md", f"{rel(page)}: no links found (the parser broke?)"
    broken = []
    for target in targets:
        if is_external(target):
            continue
        path, _, anchor = target.partition("#")
        dest = page if not path else (page.parent / path).resolve()
        if not dest.exists():
            broken.append(f"{target} -> {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: {rel(dest)} has no heading with anchor #{anchor}")
    assert not broken, f"{rel(page)}:\n  " + "\n  ".join(broken)


def test_readme_shows_one_figure():
    images = [t for t in link_targets(README.read_text(encoding="utf-8"))
              if t.lower().endswith((".png", ".svg", ".jpg", ".gif"))]
    assert len(images) == 1, f"README.md should show one figure, not {images}"


def test_fenced_commands_were_found():
    # Guards the extractor: the pages document many aelab commands, torchrun's included.
    assert len(COMMANDS) >= 20, COMMANDS
    assert any("-m aelab" in line for _, _, line, _ in COMMANDS)
    assert {page for page, *_ in COMMANDS} >= {"README.md", "docs/training.md", "docs/explore.md"}


@pytest.mark.parametrize("page,line_no,line,argv", COMMANDS,
                         ids=[f"{page}:{n}" for page, n, _, _ in COMMANDS])
def test_documented_command_parses(page, line_no, line, argv):
    code, message = parse(argv)
    assert code == 0, f"{page}:{line_no}: `{line}` does not parse: {message}"


def test_readme_command_table_lists_every_subcommand():
    text = README.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `aelab ([a-z-]+)", text, re.M))
    missing = subcommands() - rows
    assert not missing, f"README.md's command table lacks: {sorted(missing)}"
    unknown = rows - subcommands()
    assert not unknown, f"README.md's command table lists unknown commands: {sorted(unknown)}"


def test_models_table_documents_every_registered_model():
    from aelab.models import MODELS, model_record

    text = MODELS_PAGE.read_text(encoding="utf-8")
    assert MODELS, "no registered models"
    for name in MODELS:
        if model_record(name)["source"] != "builtin":  # an installed package's, not aelab's
            continue
        assert f"| `{name}` |" in text, f"{rel(MODELS_PAGE)}'s models table lacks {name}"


def test_readme_command_table_lists_every_baseline():
    from aelab.cli import build_parser

    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    method = next(a for a in top.choices["baseline"]._actions if a.dest == "method")
    rows = set(re.findall(r"^\| `aelab baseline ([a-z-]+)",
                          README.read_text(encoding="utf-8"), re.M))
    assert rows == set(method.choices), (
        f"README.md's command table lists baselines {sorted(rows)}; aelab has {sorted(method.choices)}")


def test_data_page_lists_every_registered_dataset():
    from aelab.data.registry import registered_names

    text = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    missing = [n for n in registered_names() if f"| `{n}` |" not in text]
    assert not missing, f"docs/data.md's datasets table lacks {missing}"
