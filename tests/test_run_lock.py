"""One trainer per run folder, and a Ctrl-C in the first epoch that the printed command
gets out of: the lock (train/lock.py) and the restart of a folder whose first epoch never
finished, in real processes where it matters."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

import aelab.train.trainer
from aelab.cli import main
from aelab.errors import AelabError
from aelab.train.lock import LOCK_NAME, RunFolderBusy, RunLock


def _aelab(*argv, mnist_dir, **kw):
    env = dict(os.environ, AELAB_DATA_DIR=str(mnist_dir))
    return subprocess.Popen([sys.executable, "-m", "aelab", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint, **kw)


def _default_sigint():
    """A shell running the tests in the background (`make test &`, some CI runners) starts
    them with SIGINT ignored, which children inherit and Python then leaves ignored: the
    child gets Ctrl-C's default disposition back, as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(predicate, timeout=120.0):
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the condition did not come true in time")
        time.sleep(0.05)


def _epoch_started(run):
    """The trainer has written config.json with its chosen step: epoch 1 is under way."""
    try:
        return "step" in json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return False


def test_a_second_lock_on_a_folder_is_refused_and_names_the_owner(tmp_path):
    lock = RunLock.acquire(tmp_path)
    with pytest.raises(RunFolderBusy, match=rf"pid {os.getpid()} on {re.escape(socket.gethostname())}"):
        RunLock.acquire(tmp_path)
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock.acquire(tmp_path).release()  # free again


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps(
        {"pid": pid, "host": socket.gethostname(), "started": "yesterday"}))
    notes = []
    lock = RunLock.acquire(tmp_path, log=notes.append)
    assert len(notes) == 1 and f"pid {pid}" in notes[0] and "no longer running" in notes[0]
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_an_unwritable_folder_is_a_clear_error(tmp_path):
    with pytest.raises(AelabError, match="cannot create the lock file"):
        RunLock.acquire(tmp_path / "missing")


@pytest.mark.slow
def test_resume_of_a_folder_being_trained_exits_2_naming_the_owner(mnist_dir, tmp_path):
    run = tmp_path / "r"
    first = _aelab("train", "conv", "--epochs", "20", "--limit", "10000", "--run-dir", str(run),
                   "--device", "cpu", mnist_dir=mnist_dir)
    try:
        _wait_for(lambda: _epoch_started(run) or first.poll() is not None)
        assert first.poll() is None, first.communicate()
        for argv in (["train", "--resume", str(run)], ["train", "linear", "--run-dir", str(run)]):
            second = _aelab(*argv, mnist_dir=mnist_dir)
            out, err = second.communicate(timeout=120)
            assert second.returncode == 2, (out, err)
            assert f"pid {first.pid} on {socket.gethostname()}" in err
            assert "Traceback" not in err
        assert first.poll() is None  # the owner trains on, undisturbed
    finally:
        first.kill()
        first.communicate()
    # killed without cleaning up: the next trainer takes the lock over, with a note
    resumed = _aelab("train", "--resume", str(run), "--epochs", "1", mnist_dir=mnist_dir)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, (out, err)
    assert f"from pid {first.pid}" in out + err
    assert not (run / LOCK_NAME).exists()


@pytest.mark.slow
def test_ctrl_c_in_epoch_1_then_the_printed_command_trains_to_the_end(mnist_dir, tmp_path):
    run = tmp_path / "r"
    p = _aelab("train", "conv", "--epochs", "2", "--limit", "20000", "--run-dir", str(run),
               "--device", "cpu", mnist_dir=mnist_dir)
    _wait_for(lambda: _epoch_started(run) or p.poll() is not None)
    p.send_signal(signal.SIGINT)  # as Ctrl-C in the terminal
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (out, err)
    assert "during epoch 1" in err and "Traceback" not in err
    assert not (run / "checkpoints" / "last.safetensors").exists()
    command = re.search(r"Continue with: (aelab train --resume \S+)", err).group(1)
    again = _aelab(*command.split()[1:], mnist_dir=mnist_dir)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, (out, err)
    assert "starting at epoch 1" in out
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 2


def test_a_new_train_into_a_folder_interrupted_in_epoch_1_points_to_resume(
        mnist_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    real = aelab.train.trainer.Trainer.train_epoch

    def interrupted(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(aelab.train.trainer.Trainer, "train_epoch", interrupted)
    argv = ["--limit", "256", "--data-dir", str(mnist_dir), "--device", "cpu"]
    assert main(["train", "linear", "--epochs", "1", "--run-dir", str(run), *argv]) == 130
    assert "no epoch had finished" in capsys.readouterr().err
    monkeypatch.setattr(aelab.train.trainer.Trainer, "train_epoch", real)
    assert main(["train", "linear", "--epochs", "1", "--run-dir", str(run), *argv]) == 2
    assert f"aelab train --resume {run}" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--data-dir", str(mnist_dir)]) == 0
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 1


def test_a_run_that_fails_before_writing_leaves_no_folder(mnist_dir, tmp_path):
    run = tmp_path / "r"
    missing = tmp_path / "no-such-data.npz"
    with pytest.raises(AelabError, match="no-such-data"):
        aelab.train(aelab.TrainConfig(model="linear", epochs=1, dataset=str(missing)), run,
                    data_dir=mnist_dir, log=lambda _m: None, progress=False)
    assert not run.exists()
