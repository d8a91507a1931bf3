"""Every family on both backbones trains and samples on images of every kind the data layer
takes, through the real trainer and run folder (generated from the family registry):
1x8x8 (`digits`), 1x25x25 (`lfw-faces`), 1x32x32 (`mnist-32`), 3x16x16 (`patches-16-colour`)
and 3x32x32 (an image folder of colour PNGs made here). For one grey and one colour shape
each family also resumes bit for bit, evaluates and draws `aelab explore`'s figures
(the small ones, `lfw-faces` and the folder: their few test images keep it quick)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aelab.config import TrainConfig
from aelab.models.family import family_names
from aelab.runs import load_run
from aelab.train import resume, train

QUIET = {"log": lambda _msg: None, "progress": False}
FAMILIES = family_names()
BACKBONES = ("conv", "mlp")
SHAPES = {"digits": (1, 8, 8), "lfw-faces": (1, 25, 25), "mnist-32": (1, 32, 32),
          "patches-16-colour": (3, 16, 16), "folder": (3, 32, 32)}


@pytest.fixture(scope="session")
def colour_folder(tmp_path_factory):
    """train/<class>/*.png: 3 classes of 12 RGB 32x32 images (a colour and a stripe each)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("colour-folder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for k, name in enumerate(("red", "green", "blue")):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                x = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
                x[..., k] += 150
                x[(i * 3) % 32] = 255  # a white stripe
                Image.fromarray(x).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def datasets(mnist_dir, colour_folder):
    """name -> (what TrainConfig.dataset takes, data_dir)."""
    return {name: (str(colour_folder) if name == "folder" else name, mnist_dir) for name in SHAPES}


def _config(family: str, backbone: str, dataset: str, **kw) -> TrainConfig:
    args = {"backbone": backbone, "latent_dim": 4 if family == "vqvae" else 3}
    if backbone == "mlp":
        args["hidden"] = [32]
    if family == "vamp":
        args["pseudo_inputs"] = 4
    return TrainConfig(model=family, model_args=args, dataset=dataset, limit=48,
                       batch_size=16, seed=0, device="cpu", **kw)


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_and_samples_at_every_shape(family, backbone, shape_name, datasets, tmp_path):
    dataset, data_dir = datasets[shape_name]
    c, h, w = SHAPES[shape_name]
    result = train(_config(family, backbone, dataset, epochs=1), tmp_path / "run",
                   data_dir=data_dir, **QUIET)
    meta = json.loads((result.run_dir / "checkpoints" / "best.json").read_text())
    assert meta["image_shape"] == [c, h, w]
    assert np.isfinite(result.metrics[-1]["train_loss"])
    run = load_run(result.run_dir, data_dir=data_dir)
    assert run.image_shape == (c, h, w)
    samples = run.sample(5, seed=1)
    assert samples.shape == ((5, h, w) if c == 1 else (5, c, h, w))
    assert np.isfinite(samples).all() and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_array_equal(samples, load_run(result.run_dir, data_dir=data_dir).sample(5, seed=1))


@pytest.mark.parametrize("shape_name", ["lfw-faces", "folder"])
@pytest.mark.parametrize("family", FAMILIES)
def test_family_resumes_bit_for_bit_evaluates_and_explores(family, shape_name, datasets, tmp_path):
    from aelab.apps.explore import explore
    from aelab.evaluate import evaluate_run

    dataset, data_dir = datasets[shape_name]
    whole = train(_config(family, "conv", dataset, epochs=2), tmp_path / "whole",
                  data_dir=data_dir, **QUIET)
    train(_config(family, "conv", dataset, epochs=1), tmp_path / "half", data_dir=data_dir, **QUIET)
    resumed = resume(tmp_path / "half", epochs=2, data_dir=data_dir, **QUIET)
    a = load_file(whole.run_dir / "checkpoints" / "last.safetensors")
    b = load_file(resumed.run_dir / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{family} on {shape_name}: {k} differs after resume"
    metrics = evaluate_run(whole.run_dir, data_dir=data_dir, log=lambda _m: None)
    assert metrics["sse_per_image"] > 0 and np.isfinite(metrics["psnr_db"])
    c, h, w = SHAPES[shape_name]
    assert metrics["mse_per_pixel"] == pytest.approx(metrics["sse_per_image"] / (c * h * w))
    paths = explore(whole.run_dir, out=tmp_path / "explore", data_dir=data_dir, tsne_points=0,
                    log=lambda _m: None)
    assert {p.name for p in paths} >= {"latent_map.png", "interpolation.png", "traversal.png",
                                       "samples.png", "neighbours.png"}


def test_the_seed_models_refuse_other_shapes_in_one_line(datasets, tmp_path):
    from aelab.errors import AelabError

    dataset, data_dir = datasets["digits"]
    with pytest.raises(AelabError, match="takes 28x28 grey images") as e:
        train(TrainConfig(model="conv", dataset=dataset, epochs=1, limit=16), tmp_path / "r",
              data_dir=data_dir, **QUIET)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "r" / "checkpoints").exists()
