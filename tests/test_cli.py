"""The CLI end to end on a small slice of real MNIST."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import aelab.train.fast.dense
import aelab.train.step
import aelab.train.trainer
from aelab.cli import main
from aelab.runtime import hardware
from aelab.data import load_dataset
from aelab.data.batches import reconstruction_sse
from aelab.models import build_model

LIMIT = 512  # training images: seconds per run, still real digits


def _train(mnist_dir, run_dir, *args):
    argv = ["train", *args, "--limit", str(LIMIT), "--run-dir", str(run_dir),
            "--data-dir", str(mnist_dir), "--device", "cpu"]
    return main(argv)


def _untrained_test_mse(mnist_dir, model):
    torch.manual_seed(0)
    test_x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    return reconstruction_sse(build_model(model), test_x).mean().item() / 784


def _png_size(path):
    with Image.open(path) as im:
        im.load()
        return im.size


@pytest.mark.parametrize("model", ["linear", "conv"])
def test_train_one_epoch_writes_a_complete_run_folder(mnist_dir, tmp_path, capsys, model):
    run = tmp_path / model
    assert _train(mnist_dir, run, model, "--epochs", "1") == 0
    out = capsys.readouterr().out
    assert "epoch   1/1" in out and "test mse" in out
    # the end of the output says where the run and its figures are
    assert f"run folder: {run}" in out
    assert out.index(str(run / "recon_epoch01.png")) < out.index(str(run / "loss_curve.png"))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"] == model and cfg["lr"] == 1e-3 and cfg["batch_size"] == 64
    (m,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert set(m) >= {"epoch", "train_loss", "test_mse", "epoch_seconds", "images_per_second"}
    assert m["images_per_second"] > 0
    assert m["hardware"] == hardware()  # the machine each epoch's time was measured on
    assert 0 < m["test_mse"] < _untrained_test_mse(mnist_dir, model)  # it learned something
    for png in ("recon_epoch01.png", "loss_curve.png"):
        w, h = _png_size(run / png)
        assert w > 200 and h > 100
    for which in ("best", "last"):
        meta = json.loads((run / "checkpoints" / f"{which}.json").read_text())
        assert meta["model"]["name"] == model and meta["epoch"] == 1
        assert meta["data_checksum"] and meta["aelab_version"]
    assert any(k.startswith("optim.") for k in load_file(run / "checkpoints" / "last.safetensors"))

    assert main(["eval", str(run), "--data-dir", str(mnist_dir), "--device", "cpu"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["mse_per_pixel"] == pytest.approx(m["test_mse"], rel=1e-5)
    assert ev["sse_per_image"] == pytest.approx(784 * m["test_mse"], rel=1e-5)
    assert len(ev["sse_per_image_by_digit"]) == 10
    # exact PCA at the model's code size (published: 34.9 at k=5, 7.09 at k=64)
    assert ev["pca_sse_per_image"] == pytest.approx({"linear": 34.91, "conv": 7.09}[model], abs=0.01)
    assert ev["psnr_db"] == pytest.approx(10 * np.log10(1 / ev["mse_per_pixel"]))


def test_figures_follow_the_seeds_every_four_epochs(mnist_dir, tmp_path):
    run = tmp_path / "r"
    threads = torch.get_num_threads()
    try:
        assert _train(mnist_dir, run, "linear", "--epochs", "6", "--limit", "128", "--threads", "1") == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in run.glob("recon_*.png")) == [
        "recon_epoch01.png", "recon_epoch05.png", "recon_epoch06.png"]


@pytest.mark.parametrize("model", ["linear", "conv"])
def test_resume_gives_the_weights_of_an_uninterrupted_run(mnist_dir, tmp_path, model):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(mnist_dir, a, model, "--epochs", "3", "--seed", "7") == 0
    assert _train(mnist_dir, b, model, "--epochs", "1", "--seed", "7") == 0
    assert main(["train", "--resume", str(b), "--epochs", "3", "--data-dir", str(mnist_dir)]) == 0
    wa = load_file(a / "checkpoints" / "last.safetensors")
    wb = load_file(b / "checkpoints" / "last.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        if not k.startswith("rng."):
            assert torch.equal(wa[k], wb[k]), k
    lines = (b / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(mnist_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    assert _train(mnist_dir, run, "linear", "--epochs", "1") == 0
    last = run / "checkpoints" / "last.safetensors"
    good = last.read_bytes()

    real_forward = aelab.train.step.Objective.forward
    real_fused = aelab.train.fast.dense.FusedDenseStep.__call__

    def nan_loss(self, x_in, x):  # what a diverging run produces
        return real_forward(self, x_in, x) * float("nan")

    def nan_fused(self, x_in, x, weights=None):  # the same through the hand-written dense step
        return real_fused(self, x_in, x, weights) * float("nan")

    monkeypatch.setattr(aelab.train.step.Objective, "forward", nan_loss)
    monkeypatch.setattr(aelab.train.fast.dense.FusedDenseStep, "__call__", nan_fused)
    rc = main(["train", "--resume", str(run), "--epochs", "3", "--data-dir", str(mnist_dir)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "became nan in epoch 2" in err and "epoch 1" in err and "--lr" in err
    assert last.read_bytes() == good


def test_ctrl_c_exits_cleanly_and_the_run_resumes(mnist_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    real = aelab.train.trainer.Trainer.train_epoch

    def interrupted_in_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(aelab.train.trainer.Trainer, "train_epoch", interrupted_in_epoch_2)
    assert _train(mnist_dir, run, "linear", "--epochs", "2") == 130
    assert "aelab train --resume" in capsys.readouterr().err
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 1
    monkeypatch.setattr(aelab.train.trainer.Trainer, "train_epoch", real)
    assert main(["train", "--resume", str(run), "--data-dir", str(mnist_dir)]) == 0
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 2


def test_reconstruct_test_digits_and_own_images(mnist_dir, tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(mnist_dir, run, "linear", "--epochs", "1") == 0
    out = tmp_path / "rec.png"
    assert main(["reconstruct", str(run), "--out", str(out), "--n", "5",
                 "--data-dir", str(mnist_dir)]) == 0
    assert _png_size(out)[0] > 0
    # a dark digit on white paper, 40x40: resized with a warning and inverted
    img = np.full((40, 40), 255, np.uint8)
    img[8:32, 18:22] = 0
    Image.fromarray(img).save(tmp_path / "one.png")
    out2 = tmp_path / "mine.png"
    assert main(["reconstruct", str(run), "--out", str(out2), "--images",
                 str(tmp_path / "one.png")]) == 0
    assert "resized to 28x28" in capsys.readouterr().err
    assert out2.is_file()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["reconstruct", str(run), "--out", str(tmp_path / "x.png"), "--images",
                 str(tmp_path / "bad.png")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_eval_takes_a_checkpoint_file_and_names_each_run(seed_runs, mnist_dir, capsys):
    linear, conv = seed_runs["linear"], seed_runs["conv"]
    last = linear / "checkpoints" / "last.safetensors"
    capsys.readouterr()
    assert main(["eval", str(last), str(conv), "--data-dir", str(mnist_dir)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:2] == ["run", "model"]
    assert [r.split()[:2] for r in rows[2:4]] == [["linear", "linear"], ["conv", "conv"]]
    assert json.loads((linear / "eval.json").read_text())["checkpoint"] == "last"
    assert json.loads((conv / "eval.json").read_text())["checkpoint"] == "best"
    assert main(["eval", str(linear / "checkpoints" / "best.json"), "--data-dir", str(mnist_dir)]) == 0
    assert json.loads((linear / "eval.json").read_text())["checkpoint"] == "best"
    capsys.readouterr()
    assert main(["eval", str(last), "--checkpoint", "best", "--data-dir", str(mnist_dir)]) == 2
    assert "drop one of them" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_prints_where_the_figures_are_and_shows_them(mnist_dir, tmp_path, monkeypatch, capsys):
    import aelab.cli.train

    shown = []
    monkeypatch.setattr(aelab.cli.train, "show", shown.extend)
    assert main(["demo", "--epochs", "1", "--limit", "64", "--runs-root", str(tmp_path), "--show",
                 "--data-dir", str(mnist_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    (root,) = tmp_path.iterdir()
    figures = [root / m / f for m in ("linear", "conv") for f in ("recon_epoch01.png", "loss_curve.png")]
    assert shown == figures and all(f.is_file() for f in figures)
    assert all(f"  {f}\n" in out for f in figures)
    assert (root / "summary.md").read_text().startswith("| run | model |")


def test_existing_run_folder_is_not_overwritten(mnist_dir, tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(mnist_dir, run, "linear", "--epochs", "1") == 0
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    assert _train(mnist_dir, run, "linear", "--epochs", "1") == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before


def test_bad_input_is_a_clear_error_without_traceback(tmp_path):
    """As a real process: exit code and stderr as a person sees them."""
    cases = [
        (["eval", str(tmp_path / "missing")], "does not exist"),
        (["eval", __file__], "give the run folder"),
        (["train", "linear", "--epochs", "0", "--run-dir", str(tmp_path / "x")], "epochs"),
        (["train"], "name a model"),
    ]
    for argv, expect in cases:
        p = subprocess.run([sys.executable, "-m", "aelab", *argv], capture_output=True, text=True)
        assert p.returncode == 2, (argv, p.stderr)
        assert expect in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_help_states_every_default():
    p = subprocess.run([sys.executable, "-m", "aelab", "train", "--help"],
                       capture_output=True, text=True)
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    for flag in ("--epochs", "--batch-size", "--lr", "--weight-decay", "--seed", "--device",
                 "--limit", "--run-dir", "--data-dir"):
        assert flag in text
    for default in ("(default: 13)", "(default: 64)", "(default: 0.001)", "(default: 1e-05)",
                    "MEAN training loss"):
        assert default in text


def test_importing_aelab_does_no_work():
    code = "import sys, aelab; print('torch' in sys.modules, aelab.__version__)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.split()[0] == "False"


def test_process_setup_keeps_freed_memory_and_flushes_subnormals():
    import sys

    from aelab.runtime import keep_freed_memory, prepare_process

    prepare_process()
    assert torch.tensor(1e-39) * 1 == 0  # a subnormal reads as zero
    if sys.platform.startswith("linux"):
        assert keep_freed_memory() is True
