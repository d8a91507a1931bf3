"""`aelab serve`: the latent-space explorer (aelab.apps.serve) on a local port."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..apps.serve import DEFAULT_HOST, DEFAULT_PORT, MAP_SIZE
from ..errors import AelabError
from ..runtime import prepare_process
from .common import DATA_DIR_DEFAULT, add_checkpoint_arg, add_dataset_args, dataset_arg, require_extra


def add_commands(sub) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="explore run folders in the browser (and a JSON API)",
        description="Serve a page to draw digits and watch each model reconstruct them, move "
        "sliders through the code, browse the latent map of test codes and interpolate; plus a "
        "JSON API documented at /docs. Models are fixed at start-up.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders to serve")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    add_checkpoint_arg(p)
    p.add_argument("--map-size", type=int, default=MAP_SIZE,
                   help=f"first N test images whose codes make the latent map (default: {MAP_SIZE})")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default: 1, fastest for small models under concurrent "
                   "requests)")
    add_dataset_args(p, None, "whose test images make the latent map", "each run's own dataset")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"dataset folder, for the latent map (default: {DATA_DIR_DEFAULT})")
    p.set_defaults(func=cmd_serve)


def cmd_serve(a) -> int:
    require_extra("serve")
    if not 1 <= a.threads <= 256:
        raise AelabError(f"--threads {a.threads}: use 1 to 256")
    if not 0 <= a.port <= 65535:
        raise AelabError(f"--port {a.port}: use 1 to 65535 (or 0 for any free port)")
    # FastAPI and uvicorn are slow to import: here, not when the parser is built
    import uvicorn

    from ..apps.serve.api import bind, create_app, host_warning

    prepare_process(threads=a.threads)
    app = create_app(a.run_dirs, a.checkpoint, a.data_dir, a.map_size,
                     dataset=dataset_arg(a.dataset), dataset_options=a.dataset_options)
    sock = bind(a.host, a.port)
    warning = host_warning(a.host)
    if warning:
        print(warning, file=sys.stderr)
    host = f"[{a.host}]" if ":" in a.host else a.host
    print(f"aelab explorer on http://{host}:{sock.getsockname()[1]}/ "
          f"(API docs at /docs); Ctrl-C stops it", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
