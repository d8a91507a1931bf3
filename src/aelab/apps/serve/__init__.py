"""The latent-space explorer: a JSON API over trained runs, and the browser page that uses it.

`create_app(run_dirs)` loads every run once at start-up and computes what the page needs
(test codes projected to 2-D for the latent map, directions for the sliders). A request
names a model by its id (the run folder's name), never by a path. Models of any image
shape (C, H, W) are served side by side; an image travels as its model's C*H*W numbers in
[0, 1], channels first, row-major (a grey one may also come as H rows of W), a code as an
array of numbers. Bad input gets a 4xx that names what is wrong; a body over MAX_BODY_BYTES
gets a 413.

Modules, bottom to top:

- schemas.py: input checks (check_image/check_code/check_point, RequestError), the
  pydantic request and response models (built per app by request_models and
  response_models: model ids, code sizes and image shapes come from the runs served);
- inference.py: the loaded models (Model, Explorer, load_explorer), the projections
  behind the latent map and the sliders, the test images behind the map, and samples
  (LoadedRun.sample_codes: a fitted sampler is fitted on its first request, off the event
  loop, and kept in the run folder);
- middleware.py: server-side timings (/api/stats, Server-Timing) and the body-size limit;
- api.py: the routes, error handlers and create_app; bind and host_warning for the server;
- static/: the page itself. The `aelab serve` command is aelab/cli/serve.py.

Importing this package is cheap: the names below are imported on first use, so FastAPI,
pydantic and torch load only when something here is used.
"""

import importlib

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
MAP_SIZE = 2000  # test images whose codes make the latent map

_LAZY = {
    "create_app": "api", "bind": "api", "host_warning": "api", "openapi_html": "api",
    "STATIC_DIR": "api",
    "load_explorer": "inference", "Explorer": "inference", "Model": "inference",
    "project_codes": "inference", "Projection": "inference", "unique_ids": "inference",
    "RequestError": "schemas", "MAX_BODY_BYTES": "middleware", "Timings": "middleware",
}

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "MAP_SIZE", *sorted(_LAZY)]  # noqa: PLE0604


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
