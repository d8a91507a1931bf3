"""Where a `conv` training step goes, layer by layer: aelab's hand-written ops against
oneDNN's convolutions, side by side in one process.

    python benchmarks/conv_layers.py [--rounds 5] [--steps 100] [--batch-size 64]

Builds the seed `conv` model (channels_last, as the trainer does) and two op lists over the
same weights with aelab.train.fast.convmm.build_ops: aelab's (the layers as matrix products,
im2col and col2im) and oneDNN's (every convolution through ATen's convolution kernels). Each
round runs `--steps` forward + backward passes of real MNIST batches with each list in turn
(A B A B ...), timing every op, and the table gives the median over rounds of each layer's
forward + backward milliseconds per step. The optimizer and the loss are left out: they are
the same for both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def _timed_pass(ops, batches, totals):
    """Forward and backward through ops for each batch; adds each op's seconds to totals."""
    import torch

    for x in batches:
        h = x.permute(0, 2, 3, 1)
        for i, op in enumerate(ops):
            t0 = time.perf_counter()
            h = op.forward(h)
            totals[i] += time.perf_counter() - t0
        g = torch.sigmoid(h) - x.permute(0, 2, 3, 1)  # some gradient of the output's shape
        for i in range(len(ops) - 1, -1, -1):
            t0 = time.perf_counter()
            g = ops[i].backward(g, i > 0)
            totals[i] += time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="A/B rounds (default: 5)")
    p.add_argument("--steps", type=int, default=100, help="steps per variant per round (default: 100)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (default: aelab's data folder, see docs/data.md)")
    a = p.parse_args(argv)

    from aelab.runtime import prepare_process

    prepare_process()
    import torch

    from aelab import build_model, load_dataset, to_float
    from aelab.train.fast import convmm

    torch.manual_seed(0)
    model = build_model("conv").to(memory_format=torch.channels_last)
    for q in model.parameters():
        q.grad = torch.zeros_like(q)
    layers = convmm.plan(model)[:-1]  # without the final Sigmoid
    variants = {"aelab": convmm.build_ops(layers, (28, 28, 1))[0],
                "oneDNN": convmm.build_ops(layers, (28, 28, 1), onednn=True)[0]}
    images, _ = load_dataset("mnist", "train", data_dir=a.data_dir)
    perm = torch.randperm(len(images))[: a.steps * a.batch_size]
    batches = [to_float(images[idx]) for idx in perm.split(a.batch_size)]
    for ops in variants.values():  # warm-up: buffers, oneDNN's primitive caches
        _timed_pass(ops, batches[:10], [0.0] * len(ops))
    per_round = {name: [] for name in variants}
    for _ in range(a.rounds):
        for name, ops in variants.items():
            totals = [0.0] * len(ops)
            _timed_pass(ops, batches, totals)
            per_round[name].append([t / len(batches) * 1e3 for t in totals])

    def med(name, i):
        return statistics.median(r[i] for r in per_round[name])

    print(f"seed conv, batch {a.batch_size}, {a.rounds} rounds x {len(batches)} steps per variant, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| layer | aelab op | aelab ms | oneDNN ms | oneDNN / aelab |")
    print("|---|---|---:|---:|---:|")
    for i, (m, op) in enumerate(zip(layers, variants["aelab"], strict=True)):
        ours, theirs = med("aelab", i), med("oneDNN", i)
        name = type(m).__name__
        if hasattr(m, "kernel_size"):
            name += f"({m.in_channels}→{m.out_channels}, k{m.kernel_size[0]}, s{m.stride[0]})"
        kind = type(op).__name__.lstrip("_")
        print(f"| {i} {name} | {kind} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f} |")
    totals = {name: statistics.median(sum(r) for r in per_round[name]) for name in variants}
    print(f"| all layers, forward + backward | | {totals['aelab']:.3f} | {totals['oneDNN']:.3f} | "
          f"{totals['oneDNN'] / totals['aelab']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
