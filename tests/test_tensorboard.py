"""`aelab train --tensorboard`: event files read back equal metrics.jsonl, figures arrive as
images, a resume appends, and a missing package stops the run before anything is written."""

from __future__ import annotations

import json
import sys

import pytest

from aelab.cli import main
from aelab.train.tensorboard import LR_TAG, MISSING, SCALARS, term_tag

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _train(mnist_dir, run_dir, *extra):
    return main(["train", "linear", "--epochs", "2", "--limit", "256", "--device", "cpu",
                 "--figure-every", "1", "--data-dir", str(mnist_dir), "--run-dir", str(run_dir),
                 "--tensorboard", *extra])


def _events(run_dir):
    acc = event_accumulator.EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={event_accumulator.IMAGES: 0,
                                                     event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_scalars_and_images_match_the_run(mnist_dir, tmp_path):
    run = tmp_path / "run"
    assert _train(mnist_dir, run) == 0
    acc = _events(run)
    tags = acc.Tags()
    assert set(tags["scalars"]) == {SCALARS["train_loss"], SCALARS["test_mse"],
                                    SCALARS["images_per_second"], LR_TAG,
                                    "loss/train_recon"}  # no val split; the one loss term
    metrics = _metrics(run)
    for key in ("train_loss", "test_mse", "images_per_second"):
        events = acc.Scalars(SCALARS[key])
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([m[key] for m in metrics], rel=1e-6)
    assert [e.value for e in acc.Scalars(LR_TAG)] == pytest.approx([1e-3, 1e-3])
    images = acc.Images("reconstructions")
    assert [i.step for i in images] == [1, 2]  # --figure-every 1: a figure each epoch
    assert images[0].encoded_image_string.startswith(b"\x89PNG")

    # resume to 3 epochs: the same folder gains step 3, steps 1 and 2 stay as they were
    assert main(["train", "--resume", str(run), "--epochs", "3", "--data-dir", str(mnist_dir)]) == 0
    acc = _events(run)
    losses = acc.Scalars(SCALARS["train_loss"])
    assert [e.step for e in losses] == [1, 2, 3]
    assert [e.value for e in losses] == pytest.approx([m["train_loss"] for m in _metrics(run)],
                                                      rel=1e-6)
    assert 3 in [i.step for i in acc.Images("reconstructions")]


def test_val_mse_when_there_is_a_val_split(mnist_dir, tmp_path):
    run = tmp_path / "run"
    assert _train(mnist_dir, run, "--val-split", "1000", "--epochs", "1") == 0
    val = _events(run).Scalars(SCALARS["val_mse"])
    assert [(e.step, e.value) for e in val] == [(1, pytest.approx(_metrics(run)[0]["val_mse"]))]


def test_missing_package_stops_before_training(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    run = tmp_path / "run"
    assert _train(mnist_dir, run) == 2
    err = capsys.readouterr().err
    assert f"aelab train: error: {MISSING}" in err
    assert "pip install 'aelab[tensorboard]'" in err and "Traceback" not in err
    assert not run.exists()  # no config, no checkpoints: the same --run-dir works once installed


def test_every_loss_term_is_charted_beside_the_loss(mnist_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "vae", "--latent-dim", "4", "--epochs", "1", "--limit", "128",
                 "--device", "cpu", "--figure-every", "100", "--data-dir", str(mnist_dir),
                 "--run-dir", str(run), "--tensorboard"]) == 0
    acc, (m,) = _events(run), _metrics(run)
    assert term_tag("loss_kl") == "loss/train_kl"
    for key in ("train_loss", "loss_recon", "loss_kl"):
        tag = SCALARS.get(key) or term_tag(key)
        assert [(e.step, e.value) for e in acc.Scalars(tag)] == [(1, pytest.approx(m[key], rel=1e-6))]
