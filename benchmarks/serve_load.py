"""Load test of `aelab serve`: bounded, and against 127.0.0.1 only.

Starts the real server (`python -m aelab serve`) as a subprocess on 127.0.0.1 and a free
port, sends a fixed number of requests from N concurrent keep-alive clients, and stops.
Per scenario (endpoint x model) it reports server-side p50/p99 (the app's own timing
middleware, read from GET /api/stats), client-side p50/p99, throughput, and the server's
resident memory before and after the whole run.

    python benchmarks/serve_load.py                       # trains two tiny seed runs (seconds)
    python benchmarks/serve_load.py --runs RUN_DIR ...    # or serve these run folders

The clients speak HTTP/1.1 over asyncio streams directly: on a 2-core machine a heavier
client library would take the CPU the server is being measured on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"  # never anything else: this benchmark loads only this machine
ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"p50_ms": 5.0, "p99_ms": 30.0, "rss_growth_pct": 5.0}


def train_seed_runs(folder: Path, data_dir: Path | None) -> list[Path]:
    """One-epoch runs of the two seed models: their speed, not their accuracy, is measured."""
    import aelab

    runs = []
    for model in ("linear", "conv"):
        cfg = aelab.TrainConfig(model=model, epochs=1, limit=256, device="cpu")
        aelab.train(cfg, folder / model, data_dir=data_dir)
        runs.append(folder / model)
    return runs


def start_server(runs, data_dir) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "aelab", "serve", *map(str, runs), "--host", HOST, "--port", "0"]
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        sys.exit(f"the server did not start: {line!r}")
    return proc, int(match.group(1))


def rss_mib(pid: int) -> float:
    """Resident memory from /proc (Linux): VmRSS in kB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


class Connection:
    """One keep-alive HTTP/1.1 connection; responses are read by Content-Length."""

    def __init__(self, port: int):
        self.port = port

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        return self

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self):
        self.writer.close()


async def call(port: int, method: str, path: str, body=None):
    conn = await Connection(port).open()
    try:
        status, data = await conn.request(method, path, json.dumps(body).encode() if body else b"")
    finally:
        conn.close()
    if status >= 300:
        sys.exit(f"{method} {path} answered {status}: {data[:300]!r}")
    return json.loads(data) if data else None


async def load(port: int, path: str, bodies: list[bytes], total: int, clients: int) -> dict:
    """`total` requests from `clients` concurrent connections; client-side latencies in ms."""
    latencies, errors, counter = [], 0, iter(range(total))

    async def client():
        nonlocal errors
        conn = await Connection(port).open()
        for i in counter:
            t0 = time.perf_counter()
            status, _ = await conn.request("POST", path, bodies[i % len(bodies)])
            latencies.append((time.perf_counter() - t0) * 1e3)
            errors += status != 200
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    ms = np.array(latencies)
    return {"client_p50_ms": np.percentile(ms, 50), "client_p99_ms": np.percentile(ms, 99),
            "req_per_s": total / wall, "errors": errors}


async def request_bodies(port: int, models: list[dict], data_dir) -> dict:
    """Real test digits and their real codes, 100 of each, so the work is representative."""
    from aelab import load_dataset

    x, _ = load_dataset("mnist", "test", data_dir=data_dir)
    images = [np.round(x[i].numpy().reshape(-1) / 255, 4).tolist() for i in range(100)]
    bodies = {}
    for m in models:
        recon = [json.dumps({"model": m["id"], "image": im}).encode() for im in images]
        codes = [(await call(port, "POST", "/api/encode", {"model": m["id"], "image": im}))["code"]
                 for im in images]
        bodies["reconstruct", m["id"]] = recon
        bodies["decode", m["id"]] = [json.dumps({"model": m["id"], "code": c}).encode() for c in codes]
    return bodies


async def run(port: int, pid: int, args) -> tuple[list[dict], dict]:
    models = await call(port, "GET", "/api/models")
    bodies = await request_bodies(port, models, args.data_dir)
    scenarios = sorted(bodies)
    per = args.requests // len(scenarios)
    for (endpoint, _), b in bodies.items():  # warm-up: first calls allocate and fill caches
        await load(port, f"/api/{endpoint}", b, args.warmup, args.clients)
    rss = {"before": rss_mib(pid)}
    rows = []
    for endpoint, model in scenarios:
        await call(port, "DELETE", "/api/stats")
        client = await load(port, f"/api/{endpoint}", bodies[endpoint, model], per, args.clients)
        server = (await call(port, "GET", "/api/stats"))[f"/api/{endpoint}"]
        rows.append({"endpoint": endpoint, "model": model, "requests": per, **client,
                     "server_p50_ms": server["p50_ms"], "server_p99_ms": server["p99_ms"]})
    rss["after"] = rss_mib(pid)
    return rows, rss


def report(rows: list[dict], rss: dict, clients: int) -> bool:
    print(f"\n{clients} concurrent clients, {os.cpu_count()} CPUs; times in ms\n")
    print("| endpoint | model | requests | server p50 | server p99 | client p50 | client p99 | req/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    ok = True
    for r in rows:
        ok &= r["server_p50_ms"] <= TARGETS["p50_ms"] and r["server_p99_ms"] <= TARGETS["p99_ms"]
        ok &= r["errors"] == 0
        print(f"| {r['endpoint']} | {r['model']} | {r['requests']:,} | {r['server_p50_ms']:.2f} | "
              f"{r['server_p99_ms']:.2f} | {r['client_p50_ms']:.2f} | {r['client_p99_ms']:.2f} | "
              f"{r['req_per_s']:,.0f} |" + (f" {r['errors']} errors" if r["errors"] else ""))
    growth = 100 * (rss["after"] / rss["before"] - 1)
    ok &= growth < TARGETS["rss_growth_pct"]
    print(f"\nserver resident memory: {rss['before']:.1f} MiB before, {rss['after']:.1f} MiB after "
          f"({growth:+.2f}%)")
    print(f"targets (server-side p50 <= {TARGETS['p50_ms']} ms, p99 <= {TARGETS['p99_ms']} ms, "
          f"memory growth < {TARGETS['rss_growth_pct']}%): {'met' if ok else 'MISSED'}")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", type=Path, default=None,
                    help="run folders to serve (default: train tiny linear and conv runs)")
    ap.add_argument("--requests", type=int, default=10_000,
                    help="measured requests, split over the scenarios (default: 10000)")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients (default: 50)")
    ap.add_argument("--warmup", type=int, default=200, help="warm-up requests per scenario (default: 200)")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="dataset folder (default: aelab's data folder, see docs/data.md)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or train_seed_runs(Path(tmp), args.data_dir)
        proc, port = start_server(runs, args.data_dir)
        try:
            rows, rss = asyncio.run(run(port, proc.pid, args))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0 if report(rows, rss, args.clients) else 1


if __name__ == "__main__":
    sys.exit(main())
