"""Training throughput: aelab's trainer against the seed tutorial's data path, side by side.

Baseline (what the seed does through torchvision): a map-style Dataset that turns each
uint8 image into a PIL image and then into a float tensor (ToTensor's arithmetic), batched
by DataLoader(batch_size=64, shuffle=True), with the seed's plain Adam loop. Each side runs
in its own fresh process (so peak memory is its own), alternately A B A B ..., and the
report gives medians of whole-epoch images per second, their ratio, peak resident memory
and the test MSE after the same epochs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SIDES = ("seed", "aelab")


def _seed_epochs(model_name: str, epochs: int, limit: int | None, device, data_dir) -> tuple:
    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from .data import load_dataset
    from .models import build_model

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
    from .config import TrainConfig
    from .trainer import train

    cfg = TrainConfig(model=model_name, epochs=epochs, limit=limit, device=device,
                      figure_every=10**6, **extra)
    with tempfile.TemporaryDirectory() as d:
        r = train(cfg, f"{d}/run", data_dir=data_dir, log=lambda *a: None, progress=False)
    return r.model, [m["images_per_second"] for m in r.metrics]


def worker(a) -> None:
    import torch

    from .data import load_dataset
    from .evaluate import reconstruction_sse
    from .trainer import resolve_device

    if a.side == "aelab":  # before any thread starts, as the `aelab` command does
        from .runtime import prepare_process

        prepare_process()
    device = resolve_device(a.device)
    extra = json.loads(a.aelab_options)
    if a.side == "seed":
        model, rates = _seed_epochs(a.model, a.epochs, a.limit, device, a.data_dir)
    else:
        model, rates = _aelab_epochs(a.model, a.epochs, a.limit, str(device), a.data_dir, extra)
    test_x, _ = load_dataset("mnist", "test", data_dir=a.data_dir)
    mse = reconstruction_sse(model, test_x.to(device)).mean().item() / 784
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    out = {"side": a.side, "rates": rates, "test_mse": mse, "peak_rss_mb": peak_mb,
           "threads": torch.get_num_threads()}
    print("RESULT " + json.dumps(out))


def _run_side(a, model: str, side: str) -> dict:
    cmd = [sys.executable, "-m", "aelab.bench", "--worker", side, "--model", model,
           "--epochs", str(a.epochs), "--device", a.device, "--aelab-options", a.aelab_options]
    if a.limit:
        cmd += ["--limit", str(a.limit)]
    if a.data_dir:
        cmd += ["--data-dir", str(a.data_dir)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"benchmark worker failed ({' '.join(cmd)}):\n{p.stderr[-3000:]}")
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
                      f"peak {r['peak_rss_mb']:6.0f} MB", flush=True)
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


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="aelab bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["linear", "conv"],
                   help="models to measure (default: linear conv)")
    p.add_argument("--pairs", type=int, default=3, help="A/B pairs per model (default: 3)")
    p.add_argument("--epochs", type=int, default=1,
                   help="whole epochs per run, all timed (default: 1)")
    p.add_argument("--limit", type=int, default=None, help="training images (default: all 60,000)")
    p.add_argument("--device", default="cpu", help="device for both sides (default: cpu)")
    p.add_argument("--aelab-options", default="{}",
                   help='extra TrainConfig fields for the aelab side as JSON, e.g. '
                   '\'{"precision": "bf16"}\' (default: {})')
    p.add_argument("--data-dir", default=None, help="dataset folder (default: $AELAB_DATA_DIR or ./data)")
    p.add_argument("--worker", choices=SIDES, default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--side", default=None, help=argparse.SUPPRESS)
    return p


def run(a) -> int:
    if a.worker:
        a.side = a.worker
        worker(a)
        return 0
    import platform
    import os

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"device {a.device}; {a.pairs} pairs x {a.epochs} epoch(s), batch 64", flush=True)
    rows = compare(a)
    print()
    print(table(rows, a))
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("bench", help="training throughput against the seed's data path",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    build_parser(p)
    p.set_defaults(func=run)


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
