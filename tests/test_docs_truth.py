"""Checks that the pages tell the truth a newcomer relies on:

- every measured figure names its machine (a CPU model beside it, in the same paragraph,
  list item or table, or in the caption right above it) or points at RESULTS.md / a results
  JSON file, whose rows record the machine their runs ran on;
- the README's results table agrees with the committed JSON rows, and names each row's
  machine as those rows record it;
- what the pages say a command draws by default is the rule the code follows (the pages
  quote `aelab.models.samplers.DEFAULT_RULE`, and the code is checked against it);
- pages stay readable: no table cell over 300 characters, no bullet over 12 lines, every
  page links back to the README.

A number that is no measurement (a limit, a formula's constant, a published figure in a
paragraph that cites its paper) is left alone by the patterns below; where one still reads
as a measurement, the block says `<!-- not measured: why -->`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from doc_blocks import blocks, table_cells

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
RESULTS_JSON = sorted((ROOT / "docs").glob("results*.json"))

# A figure with the unit of a measurement: time, speed, memory, a likelihood, a ratio.
MEASURED = re.compile(r"""(?x)
    \d[\d,]*(?:\.\d+)?\s?(?:img/s|images/s|GFLOP/s|ms|s|seconds|min|minutes|h|hours
                            |MB|MiB|GB|GiB|kB|dB|nats|req/s)\b(?!-)
  | \b\d+(?:\.\d+)?x\b
  | \d+\.\d+\s?%""")
# A table of measurements: its header names a metric or a time.
MEASURED_HEADER = re.compile(r"SSE|MSE|PSNR|AUC|\bFD\b|FID|NLL|img/s|\bms\b|\bs\b|\bmin\b|"
                             r"\bacc|ratio|\bdB\b|nats|req/s")
MACHINE = re.compile(r"AMD EPYC|Intel(?:\(R\))? Xeon|\bXeon\b|\bGPU\b|H100|H200")
SOURCED = re.compile(r"RESULTS\.md|results(?:-[a-z]+)?\.json")
CITED = re.compile(r"et al\.|\b(?:19|20)\d\d\b.*\b(?:Table|Fig\.)|published")
CELL_MAX = 300
BULLET_MAX_LINES = 12


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def without_code(text: str) -> str:
    return re.sub(r"`[^`]*`", "", text)


def is_measured(block) -> bool:
    text = without_code(block.text)
    marker = re.compile(r"<!-- not measured: [^>]+ -->")
    if marker.search(block.text) or (block.before and marker.fullmatch(block.before.text.strip())):
        return False
    if block.kind == "table":
        header = table_cells(block)[0]
        if MEASURED_HEADER.search(" | ".join(header)):
            return True
    return bool(MEASURED.search(text))


def names_machine(block) -> bool:
    """The block, its caption (the block above it in the same section) or, for a bullet, the
    paragraph that leads its list names a machine or the results pages whose rows record
    one."""
    context = [block, block.before]
    lead = block
    while lead.kind == "item" and lead.before is not None:  # a bullet's list has a lead
        lead = lead.before
    context.append(lead)
    return any(b is not None and (MACHINE.search(b.text) or SOURCED.search(b.text))
               for b in context)


def is_published(block) -> bool:
    """A table of published figures only: every row cites its paper."""
    if block.kind != "table":
        return False
    rows = table_cells(block)[1:]
    if rows and all(CITED.search(" ".join(r)) for r in rows):
        return True
    caption = block.before.text if block.before else ""
    return bool(re.search(r"\*\*Published record\*\*", caption)) and not MACHINE.search(block.text)


def measured_blocks():
    for page in PAGES:
        if page.name == "RESULTS.md":  # rendered from the JSON rows, which name each machine
            continue
        for b in blocks(page, ROOT):
            if is_measured(b) and not is_published(b):
                yield b


def test_the_patterns_find_figures():
    # Guards the patterns: the pages hold many measured figures, on every kind of page.
    found = list(measured_blocks())
    assert len(found) >= 40, len(found)
    assert {b.page for b in found} >= {"README.md", "docs/performance.md", "docs/explore.md",
                                       "docs/families.md", "docs/serve.md"}


def test_every_measured_figure_names_its_machine():
    missing = [f"{b.where}: {without_code(b.text)[:100]!r}" for b in measured_blocks()
               if not names_machine(b)]
    assert not missing, ("these blocks give measured figures without naming the machine "
                         "(a CPU model beside them or in the caption above; or a link to "
                         "RESULTS.md):\n  " + "\n  ".join(missing))


# --- the README's results table against the JSON rows ------------------------------------


def json_rows() -> list[dict]:
    rows = []
    for path in RESULTS_JSON:
        rows += json.loads(path.read_text(encoding="utf-8"))
    return rows


def numbers_in(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers_in(v)]
    if isinstance(value, list):
        return [x for v in value for x in numbers_in(v)]
    return []


def shown(value: float, token: str) -> bool:
    """`value` printed as the page prints `token` (its decimals; AUCs and accuracies may be
    percentages)."""
    decimals = len(token.partition(".")[2])
    plain = float(token.replace(",", ""))
    return any(f"{v:.{decimals}f}" == f"{plain:.{decimals}f}" for v in (value, 100 * value))


def results_table():
    text_blocks = [b for b in blocks(README, ROOT) if b.kind == "table"]
    for b in text_blocks:
        rows = table_cells(b)
        if rows and rows[0][:2] == ["task (test set)", "aelab"]:
            return rows
    raise AssertionError("README.md has no results table (header 'task (test set) | aelab')")


def short_machine(hardware: str) -> str:
    """'AMD EPYC, 2 logical CPUs, torch 2.13.0+cpu, torch threads: 1' -> 'AMD EPYC, 1 thread'."""
    cpu = "Intel Xeon" if "Xeon" in hardware else hardware.split(",")[0]
    m = re.search(r"torch threads: (\d+)", hardware)
    return cpu if not m else f"{cpu}, {m.group(1)} thread{'s' if m.group(1) != '1' else ''}"


def test_readme_results_agree_with_the_json_rows():
    header, *rows = results_table()
    assert "machine" in header[-1], f"the README's results table has no machine column: {header}"
    by_name = {r.get("name"): r for r in json_rows() if r.get("name")}
    every = json_rows()
    problems = []
    for cells in rows:
        task, ours, base, machine = cells[0], cells[1], cells[2], cells[-1]
        names = [n for n in re.findall(r"`([^`]+)`", ours) if n in by_name]
        numbers = re.findall(r"\d[\d,]*\.\d+", ours.split("(")[0])
        if not numbers:
            problems.append(f"{task}: no figure in {ours!r}")
            continue
        sources = [by_name[n] for n in names] or [
            r for r in every if any(shown(v, numbers[0]) for v in numbers_in(r))]
        if not any(any(shown(v, numbers[0]) for v in numbers_in(r)) for r in sources):
            problems.append(f"{task}: {numbers[0]} is in no JSON row named {names or 'anywhere'}")
            continue
        src = next(r for r in sources if any(shown(v, numbers[0]) for v in numbers_in(r)))
        want = short_machine(str(src.get("hardware") or ""))
        if want not in machine:
            problems.append(f"{task}: machine {machine!r}, but its row records {src.get('hardware')!r}")
        for token in re.findall(r"\d[\d,]*\.\d+", base):
            if not any(shown(v, token) for r in every for v in numbers_in(r)):
                problems.append(f"{task}: the baseline's {token} is in no JSON row")
    assert not problems, "README.md's results table:\n  " + "\n  ".join(problems)


# --- defaults, quoted from the code ------------------------------------------------------


def test_pages_quote_the_default_sampler_rule():
    from aelab.models.samplers import DEFAULT_RULE

    for page in ("README.md", "docs/explore.md", "docs/training.md", "docs/serve.md",
                 "docs/families.md"):
        text = re.sub(r"\s+", " ", (ROOT / page).read_text(encoding="utf-8"))
        assert DEFAULT_RULE in text, f"{page} does not quote the default sampler: {DEFAULT_RULE!r}"
        wrong = re.search(r"samples[^.]{0,80}from a Gaussian with the mean and full covariance|"
                          r"what `aelab explore`'s samples figure draws", text)
        assert not wrong, f"{page}: {wrong.group(0)!r} contradicts the default ({DEFAULT_RULE})"


@pytest.mark.parametrize("name", ["conv", "linear", "vae", "rae", "vqvae", "vamp"])
def test_the_code_follows_the_default_sampler_rule(name):
    from aelab.models import build_model
    from aelab.models.contract import spec
    from aelab.models.samplers import default_sampler

    model = build_model(name)
    has_prior = spec(model).sampler == "prior" or spec(model).kind == "quantised"
    assert default_sampler(model) == ("prior" if has_prior else "gmm")


def test_explore_and_run_sample_draw_from_the_default(tmp_path):
    """`aelab explore`'s samples figure asks the run for its default sampler, and
    run.sample() without a sampler (the JSON API's default too) resolves to the same one."""
    import numpy as np

    from aelab.apps.explore import samples_figure
    from aelab.models import build_model
    from aelab.models.samplers import check_sampler, default_sampler

    asked = []

    class Run:
        default_sampler = "gmm"

        def sample(self, n, sampler=None, seed=0):
            asked.append(sampler)
            return np.zeros((n, 28, 28), dtype=np.float32)

    samples_figure(Run(), tmp_path / "samples.png", seed=0)
    assert asked == ["gmm"]
    for name in ("conv", "vae"):
        model = build_model(name)
        assert check_sampler(model, None) == default_sampler(model)


# --- readable pages ----------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_no_wall_of_text(page):
    long_cells, long_items = [], []
    for b in blocks(page, ROOT):
        if b.kind == "table":
            for row in table_cells(b):
                long_cells += [f"{b.where}: {c[:60]!r}... ({len(c)} chars)" for c in row
                               if len(c) > CELL_MAX]
        elif b.kind == "item" and len(b.text.splitlines()) > BULLET_MAX_LINES:
            long_items.append(f"{b.where}: {len(b.text.splitlines())} lines")
    assert not long_cells, f"table cells over {CELL_MAX} characters:\n  " + "\n  ".join(long_cells)
    assert not long_items, f"bullets over {BULLET_MAX_LINES} lines:\n  " + "\n  ".join(long_items)


@pytest.mark.parametrize("page", DOCS, ids=rel)
def test_every_page_links_back_to_the_readme(page):
    head = "\n".join(page.read_text(encoding="utf-8").splitlines()[:6])
    assert "](../README.md" in head, f"{rel(page)}: no link back to ../README.md at the top"
