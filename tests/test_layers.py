"""The package's architecture, read from its own imports (inside functions too): data
flows one way, from the bottom layer to the top, with no cycles; argparse lives in the CLI
only; function-local imports are kept for heavy libraries that would slow `import aelab`
and `aelab --help`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "aelab"

# Bottom to top. A module may import from a lower layer, or from its own unit (a module
# of the same subpackage); never from a higher layer, nor sideways into another unit of
# the same layer (data and models know nothing of each other).
LAYERS = [
    ["aelab.errors"],
    ["aelab._io"],
    ["aelab.config", "aelab.presets", "aelab.runtime", "aelab.figures"],
    ["aelab.data", "aelab.models"],
    ["aelab.runs"],
    ["aelab.train"],
    ["aelab.pca", "aelab.represent"],
    ["aelab.evaluate"],
    ["aelab.apps"],
    ["aelab.results"],  # the result groups: they train, evaluate and run the apps
    ["aelab.cli"],
    ["aelab.__main__"],
]
# What a function may import locally: libraries that are slow to import or optional, and
# the serve app (FastAPI) from the command that starts it.
LOCAL_OK = ("matplotlib", "sklearn", "threadpoolctl", "fastapi", "starlette", "pydantic", "uvicorn", "orjson",
            "onnx", "onnxruntime", "PIL", "tqdm", "torch", "numpy._core", "numpy.core",
            "aelab.apps.serve")
MAX_LOCAL_IMPORTS = 60
MAX_TOP_LEVEL_MODULES = 12


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(src: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute names of what a `from ... import ...` imports (modules where they are)."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = src.split(".") if is_pkg else src.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in MODULES else base)
    return out


def imports() -> list[tuple[str, str, bool, int]]:
    """(importer, imported, inside a function?, line) for every import in the package."""
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        local = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                local.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve(name, _is_package(path), node)
            else:
                continue
            found.extend((name, t, id(node) in local, node.lineno) for t in targets)
    return found


def _unit(module: str) -> tuple[int, str] | None:
    """(layer index, unit) of an aelab module; None for the package's lazy front door."""
    for i, units in enumerate(LAYERS):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                return i, unit
    return None


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if m != "aelab" and _unit(m) is None]
    assert not missing, f"add these modules to LAYERS in {__file__}: {missing}"


def test_imports_only_go_down():
    upward = []
    for src, dst, _, line in imports():
        if not dst.startswith("aelab") or src == "aelab":
            continue
        if dst == "aelab":  # `from aelab import __version__`: the front door, no layer
            continue
        (ls, us), (ld, ud) = _unit(src), _unit(dst)
        if ld > ls or (ld == ls and us != ud):
            upward.append(f"{MODULES[src].relative_to(PKG.parent)}:{line} imports {dst}")
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for src, dst, _, _ in imports():
        if dst in MODULES and dst != src and dst != "aelab":
            graph[src].add(dst)
    # a package's __init__ importing its own submodules is how packages work; a submodule
    # importing its package back through `from . import x` resolves to the submodule itself
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d):], d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_argparse_only_in_the_cli():
    users = sorted({src for src, dst, _, _ in imports()
                    if dst == "argparse" and not src.startswith("aelab.cli")})
    assert not users, f"argparse outside aelab.cli: {users}"


def test_function_local_imports_are_few_and_heavy():
    local = [(src, dst, line) for src, dst, inside, line in imports() if inside]
    light = [f"{MODULES[s].relative_to(PKG.parent)}:{line} imports {d}" for s, d, line in local
             if not any(d == ok or d.startswith(ok + ".") for ok in LOCAL_OK)]
    assert not light, "import these at the top of the file:\n" + "\n".join(light)
    assert len(local) <= MAX_LOCAL_IMPORTS, f"{len(local)} function-local imports"


def test_top_level_modules_are_few():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_the_checker_sees_a_planted_violation(tmp_path, monkeypatch):
    """The rules above are not vacuous: an upward import in a fake module is caught."""
    fake = PKG / "models" / "__fake_for_layer_test.py"
    monkeypatch.setitem(MODULES, "aelab.models.__fake_for_layer_test", fake)
    real_read = Path.read_text

    def read(self, *a, **kw):
        if self == fake:
            return "def f():\n    from ..train import train\n    import argparse\n"
        return real_read(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", read)
    with pytest.raises(AssertionError, match="__fake_for_layer_test.py:2 imports aelab.train"):
        test_imports_only_go_down()
    with pytest.raises(AssertionError, match="argparse outside aelab.cli"):
        test_argparse_only_in_the_cli()
