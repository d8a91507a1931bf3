"""The notebook API's help: every top-level name of aelab shows its real signature and
docstring to help(), inspect.signature, pydoc and Jedi (a notebook's completion and
Shift-Tab), although the names are resolved lazily; and importing aelab still does no work."""

import ast
import importlib
import inspect
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest

import aelab

INIT = Path(__file__).resolve().parents[1] / "src" / "aelab" / "__init__.py"
CALLABLE = [n for n in aelab.__all__ if n != "__version__" and n not in ("DATASETS", "MODELS")]
UNDOCUMENTED: dict[str, str] = {}  # name -> why it has no docstring (none today)


def _target(name: str):
    """The object a top-level name stands for, found from _LAZY, not through aelab."""
    if name == "train":  # the callable package: its call is train.train
        return importlib.import_module("aelab.train.trainer").train
    target = aelab._LAZY[name]
    module, attr = target if isinstance(target, tuple) else (target, name)
    return getattr(importlib.import_module(f"aelab.{module}"), attr)


def _signature(obj):
    try:
        return inspect.signature(obj)
    except ValueError as e:  # a builtin's subclass without a text signature (AelabError)
        return type(e)


def test_the_callable_names_are_the_public_names_less_the_registries():
    assert not callable(aelab.DATASETS) and not callable(aelab.MODELS)
    assert all(callable(getattr(aelab, n)) for n in CALLABLE)
    assert {"train", "load", "TrainConfig", "load_dataset", "evaluate_run"} <= set(CALLABLE)


@pytest.mark.parametrize("name", CALLABLE)
def test_every_name_shows_the_signature_of_what_it_calls(name):
    assert _signature(getattr(aelab, name)) == _signature(_target(name))


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=UNDOCUMENTED[n])) if n in UNDOCUMENTED
    else n for n in CALLABLE])
def test_every_name_shows_the_docstring_of_what_it_calls(name):
    doc, real = getattr(aelab, name).__doc__, inspect.getdoc(_target(name))
    assert doc and doc.strip() and real, name
    assert real.splitlines()[0] in doc


def test_help_on_aelab_train_shows_the_call_then_the_package():
    real = aelab.train.train
    assert aelab.train is not real and inspect.ismodule(aelab.train)
    assert inspect.signature(aelab.train) == inspect.signature(real)
    assert aelab.train.__doc__.startswith(f"aelab.train{inspect.signature(real)}\n\n{inspect.getdoc(real)}")
    assert "`aelab.train` is this package" in aelab.train.__doc__  # the package's own words follow
    text = pydoc.render_doc(aelab.train, renderer=pydoc.plaintext)
    for param in inspect.signature(real).parameters:
        assert param in text
    assert "Train a new run" in text and "PACKAGE CONTENTS" in text
    # IPython's `aelab.train?` also shows the call's signature and docstring: the same ones
    assert inspect.signature(aelab.train.__call__) == inspect.signature(real)
    assert aelab.train.__call__.__doc__ == real.__doc__


def test_calling_the_package_still_trains(monkeypatch):
    seen = []
    monkeypatch.setattr(aelab.train, "train", lambda *a, **kw: seen.append((a, kw)) or "result")
    assert aelab.train("config", "run", images=None) == "result"
    assert seen == [(("config", "run"), {"images": None})]


def test_importing_aelab_imports_nothing_else_and_runs_no_type_checking_block():
    """Not torch, not numpy, not even typing: `import aelab` (and dir(aelab)) adds aelab and
    the importlib it resolves names with, and binds none of the names the TYPE_CHECKING block
    imports."""
    code = ("import sys; before = set(sys.modules); import aelab; dir(aelab); aelab.__all__; "
            "print(' '.join(sorted(set(sys.modules) - before))); "
            "print(sorted(set(vars(aelab)) & {*aelab._LAZY, 'TYPE_CHECKING'}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    added, bound = p.stdout.split("\n")[:2]
    assert "aelab" in added.split()
    others = [m for m in added.split() if m != "aelab" and m.split(".")[0] not in ("importlib", "warnings")]
    assert others == [], others
    assert bound == "[]"


def _type_checking_names() -> dict[str, tuple[str, str]]:
    """name -> (module under aelab, attribute) for what the TYPE_CHECKING block binds."""
    tree = ast.parse(INIT.read_text(), str(INIT))
    blocks = [n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    assert len(blocks) == 1, "expected one `if _typing.TYPE_CHECKING:` block in aelab/__init__.py"
    assert not blocks[0].orelse
    bound: dict[str, tuple[str, str]] = {}
    for node in blocks[0].body:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 1 and node.module, ast.unparse(node)
            for alias in node.names:
                bound[alias.asname or alias.name] = (node.module, alias.name)
        else:
            pytest.fail(f"unexpected statement in the TYPE_CHECKING block: {ast.unparse(node)}")
    return bound


def test_the_type_checking_block_names_exactly_the_lazy_names_and_their_targets():
    lazy = {n: t if isinstance(t, tuple) else (t, n) for n, t in aelab._LAZY.items()}
    assert _type_checking_names() == {**lazy, "train": ("train", "train")}
    assert set(aelab.__all__) == {"__version__", *_type_checking_names()}


# --- Jedi: what a notebook's Tab completion and signatures see --------------------------

FIRST_PARAMS = {"load": "run_dir", "train": "config", "TrainConfig": "model", "load_dataset": "name_or_path",
                "evaluate_run": "run_dir", "resume": "run_dir"}
VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@pytest.mark.parametrize("name", sorted(FIRST_PARAMS))
def test_jedi_reads_the_real_signature_before_anything_runs(name):
    """Statically, as in a notebook cell before `import aelab` has run, or an editor."""
    jedi = pytest.importorskip("jedi")
    code = f"import aelab\naelab.{name}("
    sigs = jedi.Script(code, environment=jedi.InterpreterEnvironment()).get_signatures()
    params = [p.name for p in sigs[0].params if p.kind not in VARIADIC] if sigs else []
    real = [p.name for p in inspect.signature(_target(name)).parameters.values() if p.kind not in VARIADIC]
    assert params[:1] == [FIRST_PARAMS[name]] == real[:1], (name, params)
    assert params == real  # (Jedi names a **ensure_kw "kwargs": the variadic ones are left out)


def test_jedi_completes_every_lazy_name_statically_with_its_docstring():
    jedi = pytest.importorskip("jedi")
    script = jedi.Script("import aelab\naelab.", environment=jedi.InterpreterEnvironment())
    completions = {c.name: c for c in script.complete()}
    assert set(aelab.__all__) <= set(completions)
    for name in CALLABLE:
        if name not in UNDOCUMENTED:
            first_line = inspect.getdoc(_target(name)).splitlines()[0]
            assert first_line in " ".join(completions[name].docstring().split()), name


@pytest.mark.parametrize("name", sorted(FIRST_PARAMS))
def test_jedi_in_a_running_notebook_shows_the_real_signature(name):
    """With aelab imported, as IPython's completer asks Jedi."""
    jedi = pytest.importorskip("jedi")
    sigs = jedi.Interpreter(f"aelab.{name}(", [{"aelab": aelab}]).get_signatures()
    params = [p.name for p in sigs[0].params] if sigs else []
    assert params == list(inspect.signature(_target(name)).parameters), (name, params)
