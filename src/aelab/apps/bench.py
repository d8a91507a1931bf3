"""Training throughput: aelab's trainer against the seed tutorial's data path, side by side.

Baseline (what the seed does through torchvision): a map-style Dataset that turns each
uint8 image into a PIL image and then into a float tensor (ToTensor's arithmetic), batched
by DataLoader(batch_size=64, shuffle=True), with the seed's plain Adam loop. Each side runs
in its own fresh process (so peak memory is its own), alternately A B A B ..., and the
report gives medians of whole-epoch images per second, their ratio, peak resident memory
and the test MSE after the same epochs. The report names the CPU model first: figures differ
by machine (conv measured 2.8x on an Intel Xeon and 2.1x on an AMD EPYC), so compare ratios
measured in one run on one machine.

    aelab bench [--pairs 3] [--epochs 1] [--models linear conv] [--device cpu]

A worker is `python -m aelab.apps.bench '{"side": "seed", "model": "conv", ...}'` (JSON, so
that only the CLI parses flags); `aelab bench` starts them.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import TrainConfig
from ..data import load_dataset
from ..data.batches import reconstruction_sse
from ..errors import AelabError
from ..models import build_model
from ..runtime import hardware, prepare_process, resolve_device
from ..train import train

SIDES = ("seed", "aelab")


def _seed_epochs(model_name: str, epochs: int, limit: int | None, device, data_dir) -> tuple:
    from PIL import Image  # Pillow comes with matplotlib; only the seed side needs it

    class SeedMNIST(Dataset):  # torchvision.datasets.MNIST + transforms.ToTensor(), per item
        def __init__(self, images, labels):
            self.images, self.labels = images, labels

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            img = Image.fromarray(self.images[i].numpy(), mode="L")
            x = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(1, 28, 28)
            return x.float().div(255), int(self.labels[i])

    train_x, train_y = load_dataset("mnist", "train", data_dir=data_dir)
    if limit:
        train_x, train_y = train_x[:limit], train_y[:limit]
    torch.manual_seed(0)
    model = build_model(model_name).to(device)
    criterion = torch.nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    loader = DataLoader(SeedMNIST(train_x, train_y), batch_size=64, shuffle=True)
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for img, _ in loader:
            img = img.to(device)
            recon = model(img)
            loss = criterion(recon, img)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        loss.item()  # the seed printed the last batch's loss once per epoch
        rates.append(len(train_x) / (time.perf_counter() - t0))
    return model, rates


def _aelab_epochs(model_name: str, epochs: int, limit: int | None, device, data_dir,
                  extra: dict) -> tuple:
    cfg = TrainConfig(model=model_name, epochs=epochs, limit=limit, device=device,
                      figure_every=10**6, **extra)
    with tempfile.TemporaryDirectory() as d:
        r = train(cfg, f"{d}/run", data_dir=data_dir, log=lambda *a: None, progress=False)
        step = json.loads((Path(d) / "run" / "config.json").read_text())["step"]
    return r.model, [m["images_per_second"] for m in r.metrics], step


def worker(job: dict) -> dict:
    """One side's epochs in this process: images/s per epoch, test MSE, peak memory."""
    if job["side"] == "aelab":  # before any thread starts, as the `aelab` command does
        prepare_process()
    device = resolve_device(job["device"])
    data_dir = job.get("data_dir")
    if job["side"] == "seed":
        model, rates = _seed_epochs(job["model"], job["epochs"], job["limit"], device, data_dir)
        step = "seed tutorial loop"
    else:
        model, rates, step = _aelab_epochs(job["model"], job["epochs"], job["limit"], str(device),
                                           data_dir, job.get("aelab_options", {}))
    test_x, _ = load_dataset("mnist", "test", data_dir=data_dir)
    mse = reconstruction_sse(model, test_x.to(device)).mean().item() / 784
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"side": job["side"], "rates": rates, "test_mse": mse, "peak_rss_mb": peak_mb,
            "threads": torch.get_num_threads(), "step": step}


def _run_side(a, model: str, side: str) -> dict:
    job = {"side": side, "model": model, "epochs": a.epochs, "limit": a.limit, "device": a.device,
           "aelab_options": json.loads(a.aelab_options),
           "data_dir": str(a.data_dir) if a.data_dir else None}
    cmd = [sys.executable, "-m", "aelab.apps.bench", json.dumps(job)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise AelabError(f"benchmark worker failed ({' '.join(cmd)}):\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def compare(a) -> list[dict]:
    rows = []
    for model in a.models:
        runs: dict[str, list[dict]] = {s: [] for s in SIDES}
        for i in range(a.pairs):
            for side in SIDES:  # A B A B ...: drift on a shared machine hits both sides
                r = _run_side(a, model, side)
                runs[side].append(r)
                print(f"  {model} pair {i + 1}/{a.pairs} {side:5s}: "
                      f"{statistics.median(r['rates']):9,.0f} img/s  test mse {r['test_mse']:.5f}  "
                      f"peak {r['peak_rss_mb']:6.0f} MB  ({r['step']})", flush=True)
        med = {s: statistics.median(x for r in runs[s] for x in r["rates"]) for s in SIDES}
        pair_ratios = [statistics.median(b["rates"]) / statistics.median(s["rates"])
                       for s, b in zip(runs["seed"], runs["aelab"], strict=True)]
        rows.append({
            "model": model, "seed_img_s": med["seed"], "aelab_img_s": med["aelab"],
            "ratio": med["aelab"] / med["seed"], "ratio_pairs": pair_ratios,
            "seed_peak_mb": max(r["peak_rss_mb"] for r in runs["seed"]),
            "aelab_peak_mb": max(r["peak_rss_mb"] for r in runs["aelab"]),
            "seed_test_mse": statistics.median(r["test_mse"] for r in runs["seed"]),
            "aelab_test_mse": statistics.median(r["test_mse"] for r in runs["aelab"]),
        })
    return rows


def table(rows: list[dict], a) -> str:
    head = (f"| model | seed pipeline img/s | aelab img/s | ratio (median; per pair) | "
            f"peak RSS seed / aelab | test MSE seed / aelab after {a.epochs} epoch(s) |")
    lines = [head, "|---|---:|---:|---|---|---|"]
    for r in rows:
        pairs = ", ".join(f"{x:.1f}" for x in r["ratio_pairs"])
        lines.append(
            f"| {r['model']} | {r['seed_img_s']:,.0f} | {r['aelab_img_s']:,.0f} | "
            f"**{r['ratio']:.1f}x** ({pairs}) | {r['seed_peak_mb']:.0f} / {r['aelab_peak_mb']:.0f} MB | "
            f"{r['seed_test_mse']:.5f} / {r['aelab_test_mse']:.5f} |")
    return "\n".join(lines)


def run(a) -> int:
    """The whole comparison; `a` has models, pairs, epochs, limit, device, aelab_options
    (JSON text) and data_dir, as `aelab bench` parses them."""
    print(f"machine: {hardware()}; device {a.device}; "
          f"{a.pairs} pairs x {a.epochs} epoch(s), batch 64", flush=True)
    rows = compare(a)
    print()
    print(table(rows, a))
    return 0


def _worker_main() -> int:
    print("RESULT " + json.dumps(worker(json.loads(sys.argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
