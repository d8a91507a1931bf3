"""Your own model from the CLI: `aelab train mymodels:TinyAE` trains, resumes, evaluates,
explores and serves like a registered model; its checkpoint records which file it came
from; installed packages register models through the "aelab.models" entry points."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from aelab.cli import main
from aelab.config import TrainConfig
from aelab.errors import AelabError
from aelab.models import MODELS, build_model, load_entry_points, model_record, registry
from aelab.runs import finished_epoch, load_run, read_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyAE(nn.Module):
        def __init__(self, latent_dim=3):
            super().__init__()
            self.latent_dim = latent_dim
            self.enc = nn.Linear(784, latent_dim)
            self.dec = nn.Linear(latent_dim, 784)

        def encode(self, x):
            return self.enc(x.flatten(1))  # (B, latent_dim)

        def decode(self, z):
            return torch.sigmoid(self.dec(z)).view(-1, 1, 28, 28)

        def forward(self, x):
            return self.decode(self.encode(x))


    def tiny(latent_dim=2, scale=1.0):
        return TinyAE(latent_dim)


    class BadDecode(TinyAE):
        def decode(self, z):
            return super().decode(z)[:, :, :14]  # (B, 1, 14, 28): half an image


    class Required(TinyAE):
        def __init__(self, latent_dim):
            super().__init__(latent_dim)


    class NoLatentDim(TinyAE):
        def __init__(self):
            super().__init__()
            del self.latent_dim
''')


def _forget(name: str) -> None:
    """As a new process would: the next import reads the file again."""
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


@pytest.fixture
def tinymods(tmp_path, monkeypatch) -> Path:
    """tinymods.py in the current folder, imported afresh; sys.path restored afterwards."""
    path = tmp_path / "tinymods.py"
    path.write_text(TINY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    _forget("tinymods")
    yield path
    _forget("tinymods")


def _saved_run(run_dir: Path, ref: str, **args) -> torch.nn.Module:
    """A checkpoint of `ref` written as the trainer writes one (record filled in by
    save_checkpoint), without training: fast."""
    torch.manual_seed(0)
    model = build_model(ref, **args).eval()
    meta = {"model": {"name": ref, "args": args}, "config": TrainConfig(model=ref, model_args=args).to_dict(),
            "epoch": 1, "metrics": {}, "best": {}, "data_checksum": "x"}
    save_checkpoint(run_dir / "checkpoints" / "best", model, meta)
    return model


# --- the whole life of a user model, from the CLI -----------------------------------------


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_user_model_trains_resumes_evaluates_explores_and_serves(tinymods, mnist_dir, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aelab.apps.serve import create_app

    run, data = tmp_path / "run", ["--data-dir", str(mnist_dir)]
    assert main(["train", "tinymods:TinyAE", "--limit", "256", "--epochs", "1", "--lr", "0.01",
                 "--device", "cpu", "--run-dir", str(run), *data]) == 0
    _, meta = read_checkpoint(run / "checkpoints" / "last.safetensors")
    assert meta["model"]["name"] == "tinymods:TinyAE" and meta["model"]["args"] == {}
    assert meta["latent_dim"] == 3
    assert main(["train", "--resume", str(run), "--epochs", "2", *data]) == 0
    assert finished_epoch(run) == 2
    assert main(["eval", str(run), "--device", "cpu", *data]) == 0
    assert json.loads((run / "eval.json").read_text())["model"] == "tinymods:TinyAE"
    assert main(["explore", str(run), "--tsne-points", "0", "--device", "cpu", *data]) == 0
    assert list((run / "explore").glob("*.png"))
    with TestClient(create_app([run], data_dir=mnist_dir, map_size=100)) as client:
        models = client.get("/api/models").json()
        assert [(m["model"], m["latent_dim"]) for m in models] == [("tinymods:TinyAE", 3)]
        r = client.post("/api/reconstruct", json={"model": models[0]["id"], "image": [0.5] * 784})
    assert r.status_code == 200, r.text
    assert len(r.json()["code"]) == 3 and len(r.json()["image"]) == 784


def test_a_factory_function_takes_model_args(tinymods, tmp_path):
    model = build_model("tinymods:tiny", latent_dim=4, scale=2.0)
    assert model.latent_dim == 4
    with pytest.raises(AelabError, match="'tinymods:tiny' does not accept .*nonsense"):
        build_model("tinymods:tiny", nonsense=1)


def test_a_bad_model_argument_lists_the_valid_ones_with_defaults(tinymods):
    with pytest.raises(AelabError) as e:
        build_model("tinymods:tiny", latnt_dim=4)
    assert str(e.value) == ("model 'tinymods:tiny' does not accept the argument 'latnt_dim' "
                            "(did you mean 'latent_dim'?); its arguments, with their defaults: "
                            "latent_dim=2, scale=1.0")
    with pytest.raises(AelabError, match=r"'size'; its arguments, with their defaults: "
                       r"latent_dim \(no default\)$"):
        build_model("tinymods:Required", size=4)


def test_a_bad_model_argument_exits_2_from_the_cli(mnist_dir, tmp_path, capsys):
    code = main(["train", "conv", "--model-args", '{"latnt_dim": 8}', "--limit", "64",
                 "--epochs", "1", "--device", "cpu", "--run-dir", str(tmp_path / "run"),
                 "--data-dir", str(mnist_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "model 'conv' does not accept the argument 'latnt_dim'; it takes no arguments" in err
    assert main(["train", "mlp", "--model-args", '{"latnt_dim": 8}', "--limit", "64",
                 "--epochs", "1", "--device", "cpu", "--run-dir", str(tmp_path / "run2"),
                 "--data-dir", str(mnist_dir)]) == 2
    err = capsys.readouterr().err
    assert "'latnt_dim' (did you mean 'latent_dim'?); its arguments, with their defaults: " \
        "latent_dim=30, hidden=None, shape='hinton2006', norm='batch', act='gelu'" in err
    assert "Traceback" not in err


# --- the checkpoint's record -------------------------------------------------------------


def test_checkpoint_records_module_file_and_checksum(tinymods, tmp_path):
    import hashlib

    model = _saved_run(tmp_path / "r", "tinymods:tiny", latent_dim=4)
    _, meta = read_checkpoint(tmp_path / "r" / "checkpoints" / "best.safetensors")
    assert meta["model"] == {"name": "tinymods:tiny", "args": {"latent_dim": 4}, "source": "user",
                             "module": "tinymods", "attr": "tiny", "file": str(tinymods.resolve()),
                             "sha256": hashlib.sha256(tinymods.read_bytes()).hexdigest()}
    assert model_record("linear") == {"source": "builtin"}
    _forget("tinymods")
    loaded = load_run(tmp_path / "r").model
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_an_edited_module_loads_with_a_warning(tinymods, tmp_path):
    _saved_run(tmp_path / "r", "tinymods:TinyAE")
    tinymods.write_text(TINY + "\n# edited after training\n")
    _forget("tinymods")
    with pytest.warns(UserWarning, match=r"'tinymods' .* has changed since this checkpoint was trained"):
        run = load_run(tmp_path / "r")
    assert run.model.latent_dim == 3


def test_an_unchanged_module_loads_without_a_warning(tinymods, tmp_path):
    _saved_run(tmp_path / "r", "tinymods:TinyAE")
    _forget("tinymods")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_run(tmp_path / "r")


def test_a_deleted_module_is_a_clear_error(tinymods, tmp_path, capsys):
    _saved_run(tmp_path / "r", "tinymods:TinyAE")
    tinymods.unlink()
    _forget("tinymods")
    with pytest.raises(AelabError, match=rf"cannot import module 'tinymods'.*{tinymods}.*PYTHONPATH"):
        load_run(tmp_path / "r")
    assert main(["eval", str(tmp_path / "r"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "cannot import module 'tinymods'" in err and "Traceback" not in err


# --- the contract and bad references -----------------------------------------------------


def test_a_contract_breaking_model_is_a_clear_error_naming_the_part(tinymods):
    with pytest.raises(AelabError, match=r"decode\(z\) of z \(2, 3\) returned shape \(2, 1, 14, 28\); "
                                         r"expected \(2, 1, 28, 28\)"):
        build_model("tinymods:BadDecode")
    with pytest.raises(AelabError, match="int attribute latent_dim"):
        build_model("tinymods:NoLatentDim")


def test_the_contract_check_changes_nothing(tinymods):
    """It draws no random numbers and leaves the training mode: training is as reproducible
    as for a model built without the check."""
    import importlib

    torch.manual_seed(0)
    checked = build_model("tinymods:TinyAE")
    after_checked = torch.get_rng_state()
    torch.manual_seed(0)
    plain = importlib.import_module("tinymods").TinyAE()
    assert torch.equal(torch.get_rng_state(), after_checked)
    assert torch.equal(checked.enc.weight, plain.enc.weight)
    assert checked.training


@pytest.mark.parametrize("ref,expect", [
    ("nosuchmod:Model", "cannot import module 'nosuchmod' for model 'nosuchmod:Model'"),
    ("tinymods:Nope", "has no 'Nope' for model 'tinymods:Nope'"),
    ("tinymods:BadDecode", "breaks the aelab model contract: decode"),
])
def test_bad_references_exit_2_without_traceback(tinymods, mnist_dir, tmp_path, capsys, ref, expect):
    code = main(["train", ref, "--limit", "64", "--epochs", "1", "--device", "cpu",
                 "--run-dir", str(tmp_path / "run"), "--data-dir", str(mnist_dir)])
    err = capsys.readouterr().err
    assert code == 2 and expect in err and "Traceback" not in err, err


DECLARED = textwrap.dedent('''

    from aelab.models import ModelSpec


    class SaysVAE(TinyAE):
        model_spec = ModelSpec(kind="variational", sampler="prior",
                               loss_terms={"recon": 1.0, "kl": 1.0})

        def loss_terms(self, x_in, x, autocast_bf16=False):
            recon = (self(x_in) - x).square().flatten(1).sum(1)
            return {"recon": recon}  # no kl, though it declares one
''')


def test_a_declaration_a_user_model_does_not_keep_exits_2_naming_it(tinymods, mnist_dir, tmp_path,
                                                                       capsys):
    tinymods.write_text(TINY + DECLARED)
    code = main(["train", "tinymods:SaysVAE", "--limit", "64", "--epochs", "1", "--device", "cpu",
                 "--run-dir", str(tmp_path / "run"), "--data-dir", str(mnist_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert ("model 'tinymods:SaysVAE' breaks the aelab model contract: loss_terms(x_in, x) of x "
            "(2, 1, 28, 28) returned the terms ['recon']; its model_spec declares ['kl', 'recon']") in err


def test_unknown_name_is_refused_by_the_parser_with_the_choices(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "nope"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unknown model 'nope'" in err and "linear" in err
    assert "module:attr" in err


def test_a_module_that_fails_to_import_names_its_error(tinymods):
    tinymods.write_text("import no_such_dependency_xyz\n")
    with pytest.raises(AelabError, match="importing module 'tinymods'.*no_such_dependency_xyz.*fix"):
        build_model("tinymods:TinyAE")


# --- entry points ------------------------------------------------------------------------


def _dist(site: Path, entry_points: str) -> None:
    """An installed distribution 'mypkg' with a models module, as pip would leave it."""
    (site / "mypkg").mkdir(parents=True)
    (site / "mypkg" / "__init__.py").write_text("")
    (site / "mypkg" / "models.py").write_text(TINY + "\nNOT_A_MODEL = 3\n")
    info = site / "mypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[aelab.models]\n{entry_points}")


ENTRY_POINTS = ("tiny = mypkg.models:TinyAE\nconv = mypkg.models:TinyAE\n"
                "broken = mypkg.nowhere:TinyAE\nnumber = mypkg.models:NOT_A_MODEL\n")


def test_entry_points_register_models_and_skip_broken_ones(tmp_path, monkeypatch):
    _dist(tmp_path / "site", ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(registry, "_ENTRY_POINTS", {})
    conv = MODELS["conv"]
    try:
        with pytest.warns(UserWarning) as caught:
            added = load_entry_points()
        assert added == ["tiny"]
        text = " ".join(str(w.message) for w in caught)
        assert "'conv' is aelab's own model" in text and "mypkg.nowhere" in text
        assert "NOT_A_MODEL" in text
        assert MODELS["conv"] is conv
        assert build_model("tiny", latent_dim=2).latent_dim == 2
        assert model_record("tiny") == {"source": "entry-point", "distribution": "mypkg",
                                        "version": "0.1", "value": "mypkg.models:TinyAE"}
    finally:
        MODELS.pop("tiny", None)
        _forget("mypkg")


def test_entry_point_models_appear_in_train_help(tmp_path):
    _dist(tmp_path / "site", ENTRY_POINTS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT / "src")]))
    p = subprocess.run([sys.executable, "-m", "aelab", "train", "--help"], capture_output=True,
                       text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = " ".join(p.stdout.split())
    assert "tiny" in text and "module:attr" in text and "(default: 13)" in text
    assert "mypkg.nowhere" in p.stderr  # the broken one: warned about, skipped
