"""The HTTP layer of the explorer: the JSON API's routes, its error handlers, the page and
its API docs, and `create_app`; `bind` and `host_warning` for the server (`aelab serve`).

Endpoints answer with orjson-encoded bytes: json.dumps of a 28x28 image's 784 floats (0.2 ms)
takes longer than the linear model's forward pass (0.06 ms); orjson takes 0.02 ms.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.

import functools
import html
import ipaddress
import json
import socket
import sys
from pathlib import Path as FilePath
from typing import Annotated

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Route

from ... import __version__
from ...errors import AelabError
from . import MAP_SIZE
from .inference import Explorer, load_explorer, pixels_out
from .middleware import MAX_BODY_BYTES, BodyLimitMiddleware, TimingMiddleware, Timings
from .schemas import (
    IMAGE_LAYOUT,
    CodeOut,
    DirectionsOut,
    InvalidOut,
    MapOut,
    MessageOut,
    ModelInfo,
    RequestError,
    RouteTimes,
    request_models,
    response_models,
)

STATIC_DIR = FilePath(__file__).parent / "static"
PAGE_HEADERS = {  # the page loads nothing from elsewhere, and the browser enforces that
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


def json_bytes(obj) -> bytes:
    """JSON with numpy arrays in it, by orjson (see the module docstring for why)."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(obj, status: int = 200) -> Response:
    return Response(json_bytes(obj), status, media_type="application/json")


def _error_handlers():
    async def request_error(_request, exc: RequestError):
        if exc.status != 422:  # as documented: a list of problems for 422, else one message
            return json_response({"detail": str(exc)}, exc.status)
        detail = [{"loc": list(exc.loc), "msg": str(exc), "type": "value_error"}]
        return json_response({"detail": detail}, exc.status)

    async def validation_error(_request, exc):
        # like FastAPI's own 422, without echoing the input back (it can be a megabyte)
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return json_response({"detail": detail}, 422)

    async def unreadable_body(_request, _exc):
        # FastAPI's 400 "There was an error parsing the body": bytes that are not UTF-8, or
        # JSON nested too deep for Python's parser
        return json_response({"detail": "the body cannot be read: send JSON as UTF-8 text, "
                              "nested less than 1,000 levels deep"}, 400)

    async def method_not_allowed(request: Request, exc):
        # Starlette's Allow names the first route on the path only (GET of /api/stats, not
        # its DELETE); list every route's methods instead
        allowed = {method for route in request.app.routes if isinstance(route, Route)
                   and route.matches(request.scope)[0] != Match.NONE for method in route.methods}
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        return await http_exception_handler(request, exc)

    return {RequestError: request_error, RequestValidationError: validation_error,
            400: unreadable_body, 405: method_not_allowed}


# Errors each kind of operation can answer (the OpenAPI document lists them; every 4xx is
# JSON with a "detail": a list of {loc, msg, type} for 422, one message otherwise)
INVALID = {422: {"model": InvalidOut, "description": "a field is missing, of the wrong type or "
                 "shape, out of range, or names a model not served"}}
BODY_ERRORS = {**INVALID,
               400: {"model": MessageOut, "description": "the body cannot be read (not UTF-8, or "
                     "nested too deep)"},
               413: {"model": MessageOut, "description": "the body is over the size limit"}}
NO_TEST_IMAGE = {404: {"model": MessageOut, "description": "the model's dataset has fewer "
                       "test images (see test_images in GET /api/models)"}}
UNFITTED = {503: {"model": MessageOut, "description": "the sampler is fitted to the run's "
                  "training codes on first use, and that failed here (e.g. the run's dataset "
                  "is not on the server)"}}


def _add_model_routes(app, ex: Explorer) -> None:
    """The JSON API. Endpoints are `async def` on purpose: each is at most ~1 ms of CPU, and
    running it on the event loop skips a thread hop and 40 threads fighting for the GIL
    (with 50 clients a thread pool measured 40x worse server-side p50; a much larger model
    would want plain `def` instead). See benchmarks/serve_load.py."""
    req = request_models({m.id: m.latent_dim for m in ex.models.values()},
                         {m.id: m.run.samplers for m in ex.models.values()},
                         {m.id: m.image_shape for m in ex.models.values()})
    out = response_models({m.id: m.image_shape for m in ex.models.values()})
    post = functools.partial(app.post, responses=BODY_ERRORS)
    get = functools.partial(app.get, responses=INVALID)
    ModelQuery = Annotated[req.model_id, Query()]
    cached = {(kind, m.id): json_bytes(getattr(m, f"{kind}_json"))
              for m in ex.models.values() for kind in ("map", "directions")}

    def cached_json(kind: str, model_id: str):
        return Response(cached[kind, model_id], media_type="application/json")

    @app.get("/api/models", response_model=list[ModelInfo],
             summary="The models served, with code sizes and image shapes")
    async def models():
        return json_response([m.info() for m in ex.models.values()])

    most = max(len(m.test_images) for m in ex.models.values())
    Index = Annotated[int, Path(ge=0, le=most - 1, description=(
        "0 to the model's test_images - 1 (GET /api/models)"))]

    # {id}: the model's "id" in GET /api/models (its "model" is the family: "vae", ...)
    @app.get("/api/models/{id}/test-image/{index}", response_model=out.TestImageOut,
             responses={**INVALID, **NO_TEST_IMAGE},
             summary="Test image `index` of the model's dataset (the latent map's point `index`)")
    async def test_image(model_id: Annotated[req.model_id, Path(alias="id")], index: Index):
        return json_response(ex.get(model_id).test_image(index))

    @post("/api/encode", response_model=CodeOut, summary="Image -> code")
    async def encode(body: req.ImageIn):
        m = ex.get(body.model)
        return json_response({"model": m.id, "code": m.encode(body.image).numpy()})

    @post("/api/decode", response_model=out.ImageOut, summary="Code -> image")
    async def decode(body: req.CodeIn):
        m = ex.get(body.model)
        return json_response({"model": m.id, "image": pixels_out(m.decode(body.code))})

    @post("/api/reconstruct", response_model=out.ReconstructOut, summary="Image -> code -> image")
    async def reconstruct(body: req.ImageIn):
        return json_response(ex.get(body.model).reconstruct(body.image))

    @post("/api/compare", response_model=out.CompareOut,
          summary="One image through several models of its shape (one request: what the page "
          "sends per stroke)")
    async def compare(body: req.CompareIn):
        # None only where one shape is served (else each shape's body defaults to its models)
        ids = body.models if body.models is not None else list(ex.models)
        return json_response({"results": [ex.get(i).reconstruct(body.image) for i in ids]})

    @get("/api/map", response_model=MapOut,
         summary="Test codes in 2-D (the codes, or their PCA) with their labels")
    async def latent_map(model: ModelQuery):
        return cached_json("map", model)

    @post("/api/map/decode", response_model=out.MapDecodeOut, summary="Map point -> code -> image")
    async def map_decode(body: req.PointIn):
        m = ex.get(body.model)
        code = m.plane_code(body.point)
        image = m.decode_many(code.view(1, -1))[0]
        return json_response({"model": m.id, "point": body.point, "code": code.numpy(),
                              "image": pixels_out(image)})

    @get("/api/directions", response_model=DirectionsOut,
         summary="Slider directions: code axes, or top principal directions")
    async def directions(model: ModelQuery):
        return cached_json("directions", model)

    @post("/api/interpolate", response_model=out.InterpolateOut,
          summary="Decode the straight line between two codes (or encoded images)")
    async def interpolate(body: req.InterpolateIn):
        m = ex.get(body.model)
        codes, images = m.interpolate(body.start, body.end, body.steps)
        return json_response({"model": m.id, "codes": codes.numpy(), "images": pixels_out(images)})

    @app.post("/api/sample", response_model=out.SampleOut, responses={**BODY_ERRORS, **UNFITTED},
              summary="Random codes from one of the model's samplers, decoded")
    async def sample(body: req.SampleIn):
        m = ex.get(body.model)
        try:  # off the event loop: the first use of a fitted sampler fits it (seconds or more)
            out = await run_in_threadpool(m.sample, body.sampler, body.n, body.seed)
        except AelabError as e:
            print(f"aelab serve: /api/sample: {e}", file=sys.stderr)  # paths stay here
            return json_response({"detail": f"the {body.sampler} sampler of model {m.id!r} "
                                  "could not be fitted on this server (see its log)"}, 503)
        return json_response(out)


def _add_page_routes(app) -> None:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        raise AelabError(f"the explorer page is missing ({index}); reinstall aelab")
    page = index.read_bytes()

    @app.get("/", include_in_schema=False)
    async def home():
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    async def no_icon():  # browsers ask for one; "none" beats a 404 in the console
        return Response(status_code=204)

    @app.get("/api/stats", response_model=dict[str, RouteTimes],
             summary="Server-side handler times per route (p50, p99, max)")
    async def stats(request: Request):
        return json_response(request.app.state.timings.summary())

    @app.delete("/api/stats", status_code=204, summary="Forget the recorded handler times")
    async def reset_stats(request: Request):
        request.app.state.timings.reset()
        return Response(status_code=204)

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request):
        return HTMLResponse(openapi_html(request.app.openapi()), headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def openapi_html(spec: dict) -> str:
    """A self-contained page listing every endpoint of the OpenAPI spec with its request
    and response schemas (the full spec is at /openapi.json)."""
    esc = html.escape
    parts = [f"<h1>{esc(spec['info']['title'])} API {esc(spec['info']['version'])}</h1>",
             f"<p>{esc(spec['info'].get('description', ''))}</p>",
             '<p>Machine-readable: <a href="openapi.json">openapi.json</a> · '
             '<a href="/">back to the explorer</a></p>']
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{method.upper()} {esc(path)}</code></h2>"
                         f"<p>{esc(op.get('summary', ''))}</p>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if body:
                parts.append(f"<pre>{esc(json.dumps(body.get('schema', {}), indent=1))}</pre>")
            codes = ", ".join(esc(str(c)) for c in op.get("responses", {}))
            parts.append(f"<p>responses: {codes}</p>")
    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        parts.append(f"<h2>Schemas</h2><pre>{esc(json.dumps(schemas, indent=1))}</pre>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>aelab API</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "pre{background:#f4f4f4;padding:.5em;overflow:auto}</style></head><body>"
            + "".join(parts) + "</body></html>")


def create_app(run_dirs, checkpoint: str = "best", data_dir=None, map_size: int = MAP_SIZE,
               max_body_bytes: int = MAX_BODY_BYTES, dataset: str | None = None,
               dataset_options: dict | None = None) -> FastAPI:
    """The explorer's FastAPI app over these run folders (loaded now, fixed for its lifetime);
    the latent map shows `dataset`'s test images (default: each run's own)."""
    explorer = load_explorer(run_dirs, checkpoint, data_dir, map_size, dataset, dataset_options)
    # FastAPI's own /docs loads Swagger UI from a CDN; ours is rendered here, so it works offline
    app = FastAPI(title="aelab explorer", version=__version__, docs_url=None, redoc_url=None,
                  description="Encode, decode and explore the latent spaces of trained autoencoders. "
                  f"Images are {IMAGE_LAYOUT} (each model's image_shape [C, H, W] is in GET "
                  "/api/models; a grey image may also come as H rows of W); codes are arrays "
                  "of numbers.",
                  exception_handlers=_error_handlers())
    _add_model_routes(app, explorer)
    _add_page_routes(app)
    timings = Timings(r.path for r in app.routes)
    app.add_middleware(TimingMiddleware, timings=timings)
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)  # outermost: runs first
    app.state.explorer, app.state.timings = explorer, timings
    return app


# --- the server ----------------------------------------------------------------------------


def host_warning(host: str) -> str | None:
    """A warning for any address beyond this machine's loopback, else None."""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        local = False
    if local:
        return None
    return (f"warning: --host {host} lets other machines reach the explorer; it has no "
            "authentication, so use it on a network you trust")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a busy port or bad host is an error a person can act on."""
    sock = None
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as e:
        if sock is not None:
            sock.close()
        raise AelabError(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                         "pick another --port or --host") from None
    sock.listen(2048)
    return sock
