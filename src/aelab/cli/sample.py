"""aelab sample: random images from a trained model, as a grid PNG (and an .npz)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes
from ..errors import AelabError
from ..figures import GRID_MAX, draw_grid
from ..models.samplers import SAMPLERS
from ..runs import load_run
from .common import add_checkpoint_arg, add_common_args

def add_commands(sub) -> None:
    p = sub.add_parser(
        "sample", help="random images from a trained model: a grid PNG and an .npz",
        description="Decode N random codes of a run's model into a grid PNG (and, with --npz, "
        "the images and codes). Samplers: " + "; ".join(f"{k}: {v}" for k, v in SAMPLERS.items())
        + ". A fitted sampler is fitted to the codes of the run's training split on first use "
        "(seconds to a minute) and saved in RUN_DIR/samplers/, so the same seed gives the same "
        "images again.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder written by `aelab train`")
    p.add_argument("--sampler", default=None, choices=tuple(SAMPLERS),
                   help="where the codes come from (default: prior where the model has one, "
                   "else gmm)")
    p.add_argument("--n", type=int, default=64, help="how many images (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the codes (default: 0)")
    add_checkpoint_arg(p)
    p.add_argument("--out", type=Path, required=True, metavar="F.png",
                   help=f"the grid PNG to write (required; the first {GRID_MAX} images)")
    p.add_argument("--npz", type=Path, default=None, metavar="F.npz",
                   help="also write images (float32 (n, 28, 28) in [0, 1]), codes (float32 "
                   "(n, code size)), sampler and seed to this .npz (default: none)")
    add_common_args(p)
    p.set_defaults(func=cmd_sample)


def cmd_sample(a) -> int:
    if a.n < 1:
        raise AelabError(f"--n {a.n}: give a number of images >= 1")
    run = load_run(a.run_dir, a.checkpoint, device=a.device or "auto", data_dir=a.data_dir)
    sampler = a.sampler or run.default_sampler
    codes = run.sample_codes(a.n, sampler=sampler, seed=a.seed)  # (n, L) float32
    images = run.decode(codes)  # (n, 28, 28) float32
    head = (f"{a.n} samples from {run.config.model} ({Path(a.run_dir).name}, {a.checkpoint}): "
            f"sampler {sampler}, seed {a.seed}")
    print(f"wrote {draw_grid(images, a.out, head)} ({head})")
    if a.npz is not None:
        buf = io.BytesIO()
        np.savez(buf, images=images, codes=codes, sampler=np.str_(sampler), seed=np.int64(a.seed))
        atomic_write_bytes(a.npz, buf.getvalue())
        print(f"wrote {a.npz}")
    saved = run.sampler_file(sampler)
    if saved is not None:
        print(f"sampler {sampler}: fitted to the training codes, kept in {saved}")
    return 0
