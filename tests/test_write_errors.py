"""A write that fails (disk full, read-only, no permission, a file where a folder should be)
is an AelabError naming the path, leaves the old file intact and no temp file behind, and
`aelab train` reports it in one line with exit code 2."""

from __future__ import annotations

import errno
import os

import pytest

import aelab._io as io_mod
from aelab._io import WriteError, atomic_write_bytes, atomic_write_json, make_dirs
from aelab.cli import main
from aelab.errors import AelabError


def _fail_with(code):
    def fail(*_args, **_kw):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch, code, step):
    target = tmp_path / "config.json"
    target.write_bytes(b"old version\n")
    monkeypatch.setattr(io_mod.os, step, _fail_with(code))
    with pytest.raises(AelabError) as info:
        atomic_write_bytes(target, b"new version, which never lands\n")
    msg = str(info.value)
    assert msg.startswith(f"could not write {target}: {os.strerror(code)} (errno {code})")
    assert target.read_bytes() == b"old version\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no .tmp left


def test_the_error_is_also_an_oserror(tmp_path, monkeypatch):
    """Best-effort writers (`except OSError: pass`, e.g. the data folder's verify cache) keep
    working, and the errno survives."""
    monkeypatch.setattr(io_mod.os, "write", _fail_with(errno.ENOSPC))
    with pytest.raises(OSError) as info:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert isinstance(info.value, WriteError) and info.value.errno == errno.ENOSPC
    assert "free some space" in str(info.value)


def test_a_file_in_place_of_a_folder(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(AelabError, match="could not create the folder .*blocker/run: Not a directory"):
        make_dirs(tmp_path / "blocker" / "run")
    with pytest.raises(AelabError, match="could not write .*blocker/run/x.json"):
        atomic_write_bytes(tmp_path / "blocker" / "run" / "x.json", b"{}")


def _train(mnist_dir, run_dir):
    return main(["train", "linear", "--epochs", "1", "--limit", "128", "--device", "cpu",
                 "--data-dir", str(mnist_dir), "--run-dir", str(run_dir)])


def test_train_on_a_full_disk(mnist_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real_write = os.write

    def write(fd, data):  # the disk fills up when the first checkpoint is written
        if os.readlink(f"/proc/self/fd/{fd}").count("/checkpoints/"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(io_mod.os, "write", write)
    assert _train(mnist_dir, run) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("aelab train: error: could not write ")
    assert str(run / "checkpoints" / "last.safetensors") in err
    assert "No space left on device (errno 28)" in err
    assert list((run / "checkpoints").iterdir()) == []  # nothing partial, no .tmp


def test_train_into_an_unusable_run_dir(mnist_dir, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where the runs folder should be")
    run = tmp_path / "blocker" / "run"
    assert _train(mnist_dir, run) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"aelab train: error: could not create the folder {run}: Not a directory" in err
