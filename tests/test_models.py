"""Generated from the model registry: every registered model gets every check."""

import inspect

import pytest
import torch
import torch.nn.functional as F

from aelab.runs import load_run, read_checkpoint, save_checkpoint
from aelab.config import TrainConfig
from aelab.errors import AelabError
from aelab.models import ACTIVATIONS, MODELS, build_model, count_parameters, spec

NAMES = sorted(MODELS)
SEED_PARAMS = {"linear": 219_941, "conv": 210_369}


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g)


@pytest.mark.parametrize("name", NAMES)
def test_shapes(name):
    torch.manual_seed(0)
    m = build_model(name)
    x = _batch()
    z = m.encode(x)
    assert z.shape == (8, m.latent_dim)
    assert m.decode(z).shape == (8, 1, 28, 28)
    out = m(x)
    assert out.shape == x.shape
    assert torch.allclose(out, m.decode(m.encode(x)), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    m = build_model(name)
    if spec(m).own_loss:  # every term: an aae's discriminator is trained by its own alone
        sum(t.mean() for t in m.loss_terms(_batch(), _batch()).values()).backward()
    else:
        F.mse_loss(m(_batch()), _batch()).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_one_step_lowers_the_loss(name):
    torch.manual_seed(0)
    m = build_model(name)
    x = _batch(32)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    before = F.mse_loss(m(x), x)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = F.mse_loss(m(x), x)
    assert after.item() < before.item()


@pytest.mark.parametrize("name", NAMES)
def test_save_then_load_gives_identical_outputs(name, tmp_path):
    torch.manual_seed(0)
    m = build_model(name).eval()
    cfg = TrainConfig(model=name)
    meta = {"model": {"name": name, "args": {}}, "config": cfg.to_dict(), "epoch": 1,
            "metrics": {}, "best": {"test_mse": 0.1}, "data_checksum": "x"}
    save_checkpoint(tmp_path / "checkpoints" / "best", m, meta)
    run = load_run(tmp_path, "best")
    x = _batch()
    with torch.no_grad():
        assert torch.equal(m(x), run.model(x))
    assert run.config == cfg
    _, meta2 = read_checkpoint(tmp_path / "checkpoints" / "best.safetensors")
    assert meta2["epoch"] == 1 and "aelab_version" in meta2
    assert (tmp_path / "checkpoints" / "best.json").is_file()


@pytest.mark.parametrize("name,count", sorted(SEED_PARAMS.items()))
def test_seed_parameter_counts(name, count):
    assert count_parameters(build_model(name)) == count


def test_seed_models_are_registered_with_their_code_sizes():
    assert build_model("linear").latent_dim == 5
    assert build_model("conv").latent_dim == 64


def test_unknown_model_is_a_clear_error():
    with pytest.raises(AelabError, match="unknown model 'nope'.*linear"):
        build_model("nope")


@pytest.mark.parametrize("name", NAMES)
def test_a_misspelt_model_argument_names_it_and_lists_the_valid_ones(name):
    """Every argument the builder takes is listed with its default, read from its signature."""
    params = inspect.signature(MODELS[name]).parameters.values()
    with pytest.raises(AelabError) as e:
        build_model(name, latnt_dim=8)
    msg = str(e.value)
    assert f"model {name!r} does not accept the argument 'latnt_dim'" in msg
    for p in params:
        assert f"{p.name}={p.default!r}" in msg
    if not params:
        assert "it takes no arguments" in msg
    elif "latent_dim" in inspect.signature(MODELS[name]).parameters:
        assert "(did you mean 'latent_dim'?)" in msg


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    m = build_model("linear")
    meta = {"model": {"name": "linear", "args": {}}, "config": TrainConfig().to_dict(), "epoch": 1}
    save_checkpoint(tmp_path / "checkpoints" / "last", m, meta)
    p = tmp_path / "checkpoints" / "last.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(AelabError, match="not a readable aelab checkpoint"):
        load_run(tmp_path, "last")


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(AelabError, match="unknown training config keys"):
        TrainConfig.from_dict({"model": "linear", "lr_typo": 1})
    with pytest.raises(AelabError, match="lr"):
        TrainConfig(lr=-1)
    assert TrainConfig().figure_epochs() == [1, 5, 9, 13]


ACT_MODELS = [n for n in NAMES if "act" in inspect.signature(MODELS[n]).parameters]


def test_some_models_take_an_activation():
    assert {"mlp", "convnet", "vae-mlp"} <= set(ACT_MODELS)


@pytest.mark.parametrize("name", ACT_MODELS)
def test_every_activation_name_means_the_same_layer_in_every_model(name):
    """One table (aelab.models.ACTIVATIONS): each name builds that layer in every model
    with an `act` argument, and a wrong name lists them all."""
    small = {"latent_dim": 4, "hidden": [8]} if name != "convnet" else {"latent_dim": 4,
                                                                         "channels": [4, 4, 4]}
    def count(act, cls):
        return sum(type(m) is cls for m in build_model(name, act=act, **small).modules())

    for act, layer in ACTIVATIONS.items():
        other = "tanh" if act != "tanh" else "relu"
        assert count(act, type(layer())) > count(other, type(layer())), act
    valid = ", ".join(sorted(ACTIVATIONS))
    with pytest.raises(AelabError, match=f"unknown activation 'swish'; choose one of: {valid}$"):
        build_model(name, act="swish", **small)
