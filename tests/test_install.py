"""What an installed aelab needs and where it writes: the dependencies and extras declared in
pyproject.toml against the imports in src/aelab, a clear error when an extra is missing,
and the per-user default data folder."""

import ast
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from aelab.cli import main
from aelab.cli.common import EXTRAS
from aelab.data import default_data_dir

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("serve", "export", "tensorboard", "images")  # the extras that `aelab[all]` gathers


def _dist(requirement: str) -> str:
    """'uvicorn[standard]>=0.27' -> 'uvicorn' (names normalised as pip does)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requires(project: dict, extra: str | None = None) -> set[str]:
    """The distributions a plain install (extra None) or `aelab[extra]` adds, self-references
    such as aelab[all] expanded."""
    reqs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    out = set()
    for req in reqs:
        if _dist(req) == "aelab":
            for inner in re.search(r"\[(.*)\]", req).group(1).split(","):
                out |= _requires(project, inner.strip())
        else:
            out.add(_dist(req))
    return out


def _imported_dists() -> dict[str, set[str]]:
    """Third-party distribution -> the files of src/aelab that import it."""
    by_module = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in (ROOT / "src" / "aelab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"aelab"}:
                for dist in by_module.get(top, [top]):
                    found.setdefault(_dist(dist), set()).add(str(path.relative_to(ROOT)))
    return found


# --- pyproject.toml -------------------------------------------------------------------


def test_a_plain_install_has_pillow_and_none_of_the_extras():
    project = _project()
    base = _requires(project)
    assert {"torch", "numpy", "pillow", "matplotlib", "safetensors", "scikit-learn", "tqdm"} <= base
    assert not base & {"fastapi", "uvicorn", "orjson", "onnx", "onnxruntime", "tensorboard"}
    assert {"fastapi", "uvicorn", "orjson"} <= _requires(project, "serve")
    assert _requires(project, "export") == {"onnx"}
    assert _requires(project, "all") == set().union(*(_requires(project, e) for e in OPTIONAL))


def test_every_package_src_imports_is_declared_and_extras_only_where_optional():
    project = _project()
    base = _requires(project)
    optional = {e: _requires(project, e) for e in OPTIONAL}
    for dist, files in _imported_dists().items():
        extras = [e for e, dists in optional.items() if dist in dists]
        assert dist in base or extras, f"{dist} is imported by {sorted(files)} but not declared"
        if dist not in base:  # only the commands of that extra may import it
            allowed = ("src/aelab/apps/serve/", "src/aelab/cli/serve.py", "src/aelab/apps/export.py")
            assert all(f.startswith(allowed) for f in files), (dist, sorted(files))


def test_the_test_extra_pulls_every_optional_part():
    project = _project()
    assert _requires(project, "all") <= _requires(project, "test")
    assert {"pytest", "onnxruntime", "httpx"} <= _requires(project, "test")


def test_the_cli_checks_the_packages_its_extras_declare():
    project, by_module = _project(), packages_distributions()
    for command, (extra, _what, modules) in EXTRAS.items():
        declared = _requires(project, extra)
        for module in modules:
            assert {_dist(d) for d in by_module[module]} <= declared, (command, module)


def test_the_makefile_reinstalls_when_pyproject_changes_and_keeps_data_in_the_checkout():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): pyproject\.toml$", makefile, re.MULTILINE)
    assert '-e ".[test]"' in makefile
    assert re.search(r"^AELAB_DATA_DIR \?= \$\(CURDIR\)/data$", makefile, re.MULTILINE)
    assert re.search(r"^export AELAB_DATA_DIR$", makefile, re.MULTILINE)


# --- a missing extra ------------------------------------------------------------------


@pytest.mark.parametrize(("missing", "argv", "hint"), [
    ("fastapi", ["serve", "RUN"], "aelab serve needs the server extra: pip install 'aelab[serve]'"),
    ("uvicorn", ["serve", "RUN"], "aelab serve needs the server extra: pip install 'aelab[serve]'"),
    ("onnx", ["export", "RUN", "--format", "onnx"],
     "aelab export needs the export extra: pip install 'aelab[export]'"),
])
def test_a_missing_extra_says_how_to_install_it(missing, argv, hint, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, missing, None)  # what `import` sees when it is not installed
    argv = [str(tmp_path) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert hint in err and f"{missing} is not installed" in err and "Traceback" not in err


BLOCKER = """
import sys
from importlib.abc import MetaPathFinder

class NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"fastapi", "uvicorn", "orjson", "onnx", "tensorboard"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
from aelab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_plain_install_runs_the_cli_and_explains_a_missing_extra(tmp_path):
    """In a fresh interpreter where no extra can be imported: --help works, serve says why not."""
    def aelab(*args):
        return subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True,
                              timeout=120)

    r = aelab("--help")
    assert r.returncode == 0 and "serve" in r.stdout and "export" in r.stdout, r.stderr
    r = aelab("serve", str(tmp_path))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == ("aelab serve: error: fastapi is not installed; aelab serve needs "
                                "the server extra: pip install 'aelab[serve]'")


# --- the default data folder ----------------------------------------------------------


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    """A user without AELAB_DATA_DIR or XDG_DATA_HOME, whose home is tmp_path/home."""
    for name in ("AELAB_DATA_DIR", "XDG_DATA_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_default_data_folder_is_per_user_not_the_working_folder(no_data_env, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    (no_data_env.parent / "data").mkdir()  # a ./data of the working folder is not used
    assert default_data_dir() == no_data_env / ".local" / "share" / "aelab"
    monkeypatch.setenv("XDG_DATA_HOME", str(no_data_env / "xdg"))
    assert default_data_dir() == no_data_env / "xdg" / "aelab"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")  # invalid by the XDG spec: ignored
    assert default_data_dir() == no_data_env / ".local" / "share" / "aelab"
    monkeypatch.setenv("AELAB_DATA_DIR", "here")  # the variable wins, made absolute
    assert default_data_dir() == Path.cwd() / "here"


def test_default_data_folder_is_data_at_the_root_of_an_aelab_checkout(no_data_env, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert default_data_dir() == no_data_env / ".local" / "share" / "aelab"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "aelab"\ndynamic = ["version"]\n')
    assert default_data_dir() == tmp_path / "data"  # the repository's workflow, unchanged
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # below the root is not the root
    assert default_data_dir() == no_data_env / ".local" / "share" / "aelab"


def test_default_data_folder_on_macos_and_windows(no_data_env, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_data_dir() == no_data_env / "Library" / "Application Support" / "aelab"
    monkeypatch.setattr(sys, "platform", "win32")
    assert default_data_dir() == no_data_env / "AppData" / "Local" / "aelab"
    monkeypatch.setenv("LOCALAPPDATA", str(no_data_env / "Local"))
    assert default_data_dir() == no_data_env / "Local" / "aelab"


def test_data_dir_flag_wins_over_the_environment(mnist_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "elsewhere"))
    assert main(["data", "mnist", "--data-dir", str(mnist_dir)]) == 0
    assert f"all files verified in {mnist_dir / 'mnist'}" in capsys.readouterr().out
    assert not (tmp_path / "elsewhere").exists()
