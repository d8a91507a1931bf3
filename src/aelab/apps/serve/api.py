"""The latent-space explorer: a JSON API over trained runs, and the browser page that uses it.

`create_app(run_dirs)` loads every run once at start-up and computes what the page needs
(test codes projected to 2-D for the latent map, directions for the sliders). A request
names a model by its id (the run folder's name), never by a path. Images travel as 784
numbers in [0, 1] (row-major, or 28 rows of 28), codes as arrays of numbers. Bad input
gets a 4xx that names what is wrong; a body over MAX_BODY_BYTES gets a 413.

FastAPI, uvicorn, numpy and torch are imported inside functions: the CLI builds this
module's subcommand on every `aelab` call, which must stay fast.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run
# time, and the request models are built inside a function where strings would not resolve.

import functools
import socket
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

from .errors import AelabError

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
STATIC_DIR = Path(__file__).parent / "static"
PIXELS = 28 * 28
MAX_BODY_BYTES = 1_000_000  # a 784-pixel image is ~10 KB of JSON; 1 MB leaves room, not abuse
MAP_SIZE = 2000  # test images whose codes make the latent map
MAX_SLIDERS = 8  # above this many code numbers the sliders follow principal directions
MAX_STEPS = 64  # interpolation images per request
MAX_CODE_ABS = 1e4  # far beyond any trained code; keeps float32 decoding finite
IMAGE_DIGITS = 4  # decimals sent per pixel: finer than one 8-bit grey level (1/255)
TIMING_RING = 20_000  # server-side times kept per route for /api/stats

IMAGE_SHAPE = "784 numbers in [0, 1] (28x28, row-major) or 28 rows of 28"
PAGE_HEADERS = {  # the page loads nothing from elsewhere, and the browser enforces that
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


class RequestError(AelabError):
    """Input the API cannot use; answered with `status` and a message naming the field."""

    def __init__(self, message: str, loc: tuple = ("body",), status: int = 422):
        super().__init__(message)
        self.loc, self.status = loc, status


# --- checking input: every check raises ValueError (pydantic makes it a 422) ---------------


def _json_type(value) -> str:
    names = {bool: "a boolean", str: "a string", dict: "an object", list: "an array",
             type(None): "null", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _numbers(value, what: str, shape: str):
    """A JSON array of finite numbers -> float64 array; ValueError names the first bad entry."""
    import numpy as np

    if not isinstance(value, list):
        raise ValueError(f"{what} must be an array of {shape}, not {_json_type(value)}")
    if not set(map(type, value)) <= {int, float}:  # exact types: JSON true/false are not numbers
        i = next(i for i, v in enumerate(value) if type(v) not in (int, float))
        raise ValueError(f"{what}[{i}] is {_json_type(value[i])}; {what} must be {shape}")
    try:
        arr = np.array(value, dtype=np.float64)
    except OverflowError:  # an integer with hundreds of digits
        raise ValueError(f"{what} holds a number too large for a float") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(bad.argmax())
        raise ValueError(f"{what}[{i}] is {arr[i]}; NaN and infinity are not allowed")
    return arr


def _rows_to_flat(value):
    """28 rows of 28 -> one list of 784; anything else is returned as it came."""
    if not (isinstance(value, list) and value and all(isinstance(r, list) for r in value)):
        return value
    if len(value) != 28 or any(len(r) != 28 for r in value):
        lengths = sorted({len(r) for r in value})
        raise ValueError(f"image as rows must be 28 rows of 28 numbers; got {len(value)} rows "
                         f"of length {', '.join(map(str, lengths[:5]))}")
    return [x for row in value for x in row]


def check_image(value):
    """JSON image -> float32 array (784,) in [0, 1]."""
    value = _rows_to_flat(value)
    if isinstance(value, list) and len(value) != PIXELS:
        raise ValueError(f"image must be {IMAGE_SHAPE}; got {len(value)} numbers")
    arr = _numbers(value, "image", IMAGE_SHAPE)
    outside = (arr < 0) | (arr > 1)
    if outside.any():
        i = int(outside.argmax())
        raise ValueError(f"image[{i}] = {arr[i]:g} is outside [0, 1] (0 is black, 1 is white)")
    return arr.astype("float32")


def _bounded(value, what: str, shape: str, max_len: int):
    if isinstance(value, list) and not 1 <= len(value) <= max_len:
        raise ValueError(f"{what} must be {shape}; got {len(value)} numbers")
    arr = _numbers(value, what, shape)
    big = abs(arr) > MAX_CODE_ABS
    if big.any():
        i = int(big.argmax())
        raise ValueError(f"{what}[{i}] = {arr[i]:g} is too large; use numbers within "
                         f"+-{MAX_CODE_ABS:g}")
    return arr.astype("float32")


def check_code(value):
    return _bounded(value, "code", "an array of numbers, one per code dimension", 4096)


def check_point(value):
    arr = _bounded(value, "point", "two numbers [x, y] in the map's coordinates", 2)
    if arr.size != 2:
        raise ValueError(f"point must be two numbers [x, y]; got {arr.size}")
    return arr


# --- the models and what the page needs of them --------------------------------------------


@dataclass
class Projection:
    """A k-dimensional view of the codes: code = mean + coords @ axes (axes orthonormal)."""

    kind: str  # "code": the code's own axes; "pca": principal directions of the test codes
    mean: object  # (D,) tensor
    axes: object  # (k, D) tensor
    explained: list | None  # fraction of the codes' variance along each axis (pca only)

    def coords(self, codes):
        return (codes - self.mean) @ self.axes.T  # (N, D) -> (N, k)


def project_codes(codes, k: int) -> Projection:
    """The codes themselves when they have at most k numbers, else their top-k PCA."""
    import torch

    n_dim = codes.shape[1]
    if n_dim <= k:
        return Projection("code", torch.zeros(n_dim), torch.eye(n_dim), None)
    mean = codes.mean(0)
    _, s, vh = torch.linalg.svd(codes - mean, full_matrices=False)
    axes = vh[:k]
    # SVD signs are arbitrary; fix them so the map and sliders do not flip between restarts
    signs = axes.gather(1, axes.abs().argmax(1, keepdim=True)).sign()
    var = s.square()
    return Projection("pca", mean, axes * signs, (var[:k] / var.sum()).tolist())


def unique_ids(run_dirs) -> list[str]:
    """Each run's folder name, with -2, -3, ... added where names repeat."""
    ids: list[str] = []
    for d in run_dirs:
        base = Path(d).resolve().name or "run"
        name, n = base, 1
        while name in ids:
            n += 1
            name = f"{base}-{n}"
        ids.append(name)
    return ids


def pixels_out(images):
    """(..., 1, 28, 28) tensor -> float32 array (..., 784), rounded to IMAGE_DIGITS decimals."""
    import numpy as np

    return np.round(images.reshape(*images.shape[:-3], PIXELS).numpy(), IMAGE_DIGITS)


def json_bytes(obj) -> bytes:
    """JSON with numpy arrays in it, by orjson: json.dumps of 784 floats (0.2 ms) takes longer
    than the linear model's forward pass (0.06 ms); orjson takes 0.02 ms."""
    import orjson

    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(obj, status: int = 200):
    from fastapi.responses import Response

    return Response(json_bytes(obj), status, media_type="application/json")


class Model:
    """One loaded run: inference on single images and codes, plus its map and slider data."""

    def __init__(self, model_id: str, run, images_u8, labels):
        import torch

        from .evaluate import to_float

        self.id, self.run, self.net = model_id, run, run.model
        self.latent_dim = int(run.model.latent_dim)
        with torch.inference_mode():  # in chunks: 10,000 images at once take hundreds of MB
            codes = torch.cat([self.net.encode(to_float(x)).float() for x in images_u8.split(500)])
        self.sliders = project_codes(codes, MAX_SLIDERS)
        self.plane = project_codes(codes, 2)
        self.map_json = self._map_json(self.plane.coords(codes), labels)
        self.directions_json = self._directions_json(self.sliders.coords(codes))

    def info(self) -> dict:
        meta = self.run.meta
        return {"id": self.id, "model": self.run.config.model, "dataset": self.run.config.dataset,
                "latent_dim": self.latent_dim, "epoch": meta.get("epoch"),
                "test_mse": (meta.get("metrics") or {}).get("test_mse"),
                "sliders": {"kind": self.sliders.kind, "count": int(self.sliders.axes.shape[0])},
                "map": {"kind": self.plane.kind}}

    def _map_json(self, xy, labels) -> dict:
        import torch

        if xy.shape[1] < 2:  # a 1-number code: the map is a line
            xy = torch.cat([xy, torch.zeros(len(xy), 2 - xy.shape[1])], 1)
        lo, hi = xy.min(0).values, xy.max(0).values
        return {"model": self.id, "kind": self.plane.kind, "explained": self.plane.explained,
                "bounds": [lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item()],
                "points": xy.numpy().round(4), "labels": labels.numpy()}

    def _directions_json(self, coords) -> dict:
        lo, hi = coords.min(0).values, coords.max(0).values
        pad = 0.1 * (hi - lo)
        return {"model": self.id, "kind": self.sliders.kind, "mean": self.sliders.mean.numpy(),
                "directions": self.sliders.axes.contiguous().numpy(),
                "low": (lo - pad).numpy(), "high": (hi + pad).numpy(),
                "explained": self.sliders.explained}

    def _code(self, code):
        import torch

        if code.size != self.latent_dim:
            raise RequestError(f"code has {code.size} numbers but model {self.id!r} takes "
                               f"{self.latent_dim}", loc=("body", "code"))
        return torch.from_numpy(code)

    def encode(self, pixels):
        import torch

        with torch.inference_mode():
            return self.net.encode(torch.from_numpy(pixels).view(1, 1, 28, 28))[0]  # (D,)

    def decode_many(self, codes):
        import torch

        with torch.inference_mode():  # sanitised so a response can never hold NaN
            return torch.nan_to_num(self.net.decode(codes).float(), 0.0).clamp(0, 1)  # (B,1,28,28)

    def decode(self, code):
        return self.decode_many(self._code(code).view(1, -1))[0]

    def reconstruct(self, pixels) -> dict:
        code = self.encode(pixels)
        image = self.decode_many(code.view(1, -1))[0]
        return {"model": self.id, "code": code.numpy(), "image": pixels_out(image)}

    def plane_code(self, point):
        import torch

        k = self.plane.axes.shape[0]
        return self.plane.mean + torch.from_numpy(point[:k]) @ self.plane.axes  # (D,)

    def endpoint_code(self, end):
        return self.encode(end.image) if end.image is not None else self._code(end.code)

    def interpolate(self, start, end, steps: int):
        import torch

        a, b = self.endpoint_code(start), self.endpoint_code(end)
        t = torch.linspace(0, 1, steps).view(-1, 1)
        codes = (1 - t) * a + t * b  # (steps, D)
        return codes, self.decode_many(codes)


class Explorer:
    """The models served, by id, fixed at start-up."""

    def __init__(self, models: list[Model]):
        self.models = {m.id: m for m in models}

    def get(self, model_id: str, loc: tuple = ("body", "model")) -> Model:
        if model_id not in self.models:
            raise RequestError(f"unknown model {model_id[:100]!r}; loaded models: "
                               f"{', '.join(self.models)}", loc=loc, status=404)
        return self.models[model_id]


def load_explorer(run_dirs, checkpoint: str = "best", data_dir=None, map_size: int = MAP_SIZE):
    """Load every run and its test-set slice; AelabError says which run or dataset failed."""
    from .checkpoint import load_run
    from .data import load_dataset

    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise AelabError("give at least one run folder to serve")
    if not 10 <= map_size <= 10_000:
        raise AelabError(f"map size {map_size}: use 10 to 10,000 test images")
    test_sets: dict = {}
    models = []
    for model_id, d in zip(unique_ids(run_dirs), run_dirs, strict=True):
        run = load_run(d, checkpoint, device="cpu")
        name = run.config.dataset
        if name not in test_sets:
            x, y = load_dataset(name, "test", data_dir=data_dir)
            test_sets[name] = (x[:map_size], y[:map_size])
        models.append(Model(model_id, run, *test_sets[name]))
    return Explorer(models)


# --- server-side timing and the body-size limit (plain ASGI: cheap, version-independent) ---


class Timings:
    """Handler times per route in fixed-size rings, so memory does not grow with traffic."""

    def __init__(self, keys, size: int = TIMING_RING):
        self.size = size
        self.keys = set(keys) | {"other"}
        self.reset()

    def reset(self) -> None:
        self._rings = {k: array("d", bytes(8 * self.size)) for k in self.keys}
        self._counts = dict.fromkeys(self.keys, 0)

    def record(self, key: str, seconds: float) -> None:
        key = key if key in self.keys else "other"  # never a key per client-chosen path
        self._rings[key][self._counts[key] % self.size] = seconds
        self._counts[key] += 1

    def summary(self) -> dict:
        import numpy as np

        out = {}
        for key, n in self._counts.items():
            if n:
                ms = np.frombuffer(self._rings[key], dtype=np.float64)[: min(n, self.size)] * 1e3
                out[key] = {"count": n, "p50_ms": float(np.percentile(ms, 50)),
                            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}
        return out


class TimingMiddleware:
    """Records each request's time to its response start; sends it as a Server-Timing header."""

    def __init__(self, app, timings: Timings):
        self.app, self.timings = app, timings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.start":
                dt = time.perf_counter() - t0
                self.timings.record(scope["path"], dt)
                header = (b"server-timing", f"app;dur={dt * 1e3:.3f}".encode())
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, timed_send)


class BodyLimitMiddleware:
    """413 for a body over `limit` bytes, whether declared (Content-Length) or streamed."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    def _message(self, size: str) -> str:
        return f"request body is {size}; the limit is {self.limit:,} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send, self._message(f"{int(declared):,} bytes"))
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                from fastapi import HTTPException  # FastAPI re-raises it while reading a body

                raise HTTPException(413, self._message(f"over {self.limit:,} bytes"))
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _reject(send, detail: str) -> None:
        import json

        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# --- the HTTP layer -------------------------------------------------------------------------


@functools.cache
def _schemas():
    """Request and response models (built on first use: pydantic is not imported at start)."""
    from types import SimpleNamespace
    from typing import Annotated, Any

    from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

    number_array = {"type": "array", "items": {"type": "number"}}
    image_schema = {"description": IMAGE_SHAPE, "anyOf": [
        {**number_array, "minItems": PIXELS, "maxItems": PIXELS},
        {"type": "array", "minItems": 28, "maxItems": 28,
         "items": {**number_array, "minItems": 28, "maxItems": 28}}]}
    Image = Annotated[Any, AfterValidator(check_image), WithJsonSchema(image_schema)]
    Code = Annotated[Any, AfterValidator(check_code), WithJsonSchema(
        {**number_array, "description": "one number per code dimension (see GET /api/models)"})]
    Point = Annotated[Any, AfterValidator(check_point), WithJsonSchema(
        {**number_array, "minItems": 2, "maxItems": 2, "description": "[x, y] on the latent map"})]
    ModelId = Annotated[str, Field(max_length=200, description="a model id from GET /api/models")]

    class In(BaseModel):
        model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored
        model: ModelId

    class ImageIn(In):
        image: Image

    class CodeIn(In):
        code: Code

    class PointIn(In):
        point: Point

    class End(BaseModel):
        """One end of an interpolation: an image (encoded first) or a code."""

        model_config = ConfigDict(extra="forbid")
        image: Image | None = None
        code: Code | None = None

        @model_validator(mode="after")
        def one_of(self):
            if (self.image is None) == (self.code is None):
                raise ValueError("give exactly one of image or code")
            return self

    class InterpolateIn(In):
        start: End
        end: End
        steps: int = Field(8, ge=2, le=MAX_STEPS, strict=True, description="images in the row")

    floats = list[float]

    class CodeOut(BaseModel):
        model: str
        code: floats

    class ImageOut(BaseModel):
        model: str
        image: floats = Field(description="784 numbers in [0, 1], row-major")

    class ReconstructOut(CodeOut):
        image: floats

    class MapDecodeOut(ReconstructOut):
        point: floats

    class InterpolateOut(BaseModel):
        model: str
        codes: list[floats]
        images: list[floats]

    class CompareIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        image: Image
        models: list[ModelId] | None = Field(None, max_length=100,
                                             description="model ids (default: every model)")

    class CompareOut(BaseModel):
        results: list[ReconstructOut]

    return SimpleNamespace(**{k: v for k, v in locals().items() if isinstance(v, type)})


def _error_handlers():
    from fastapi.exceptions import RequestValidationError

    async def request_error(_request, exc: RequestError):
        detail = [{"loc": list(exc.loc), "msg": str(exc), "type": "value_error"}]
        return json_response({"detail": detail}, exc.status)

    async def validation_error(_request, exc):
        # like FastAPI's own 422, without echoing the input back (it can be a megabyte)
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return json_response({"detail": detail}, 422)

    return {RequestError: request_error, RequestValidationError: validation_error}


def _add_model_routes(app, ex: Explorer) -> None:
    """The JSON API. Endpoints are `async def` on purpose: each is at most ~1 ms of CPU, and
    running it on the event loop skips a thread hop and 40 threads fighting for the GIL
    (with 50 clients a thread pool measured 40x worse server-side p50; a much larger model
    would want plain `def` instead). See benchmarks/serve_load.py."""
    from fastapi.responses import Response

    S = _schemas()
    documented = {404: {"description": "unknown model"}, 413: {"description": "body too large"}}
    post = functools.partial(app.post, responses=documented)
    cached = {(kind, m.id): json_bytes(getattr(m, f"{kind}_json"))
              for m in ex.models.values() for kind in ("map", "directions")}

    def cached_json(kind: str, model_id: str):
        m = ex.get(model_id, ("query", "model"))
        return Response(cached[kind, m.id], media_type="application/json")

    @app.get("/api/models", summary="The models served, with code sizes")
    async def models():
        return json_response([m.info() for m in ex.models.values()])

    @post("/api/encode", response_model=S.CodeOut, summary="Image -> code")
    async def encode(body: S.ImageIn):
        m = ex.get(body.model)
        return json_response({"model": m.id, "code": m.encode(body.image).numpy()})

    @post("/api/decode", response_model=S.ImageOut, summary="Code -> image")
    async def decode(body: S.CodeIn):
        m = ex.get(body.model)
        return json_response({"model": m.id, "image": pixels_out(m.decode(body.code))})

    @post("/api/reconstruct", response_model=S.ReconstructOut, summary="Image -> code -> image")
    async def reconstruct(body: S.ImageIn):
        return json_response(ex.get(body.model).reconstruct(body.image))

    @post("/api/compare", response_model=S.CompareOut,
          summary="One image through several models (one request: what the page sends per stroke)")
    async def compare(body: S.CompareIn):
        ids = body.models if body.models is not None else list(ex.models)
        models = [ex.get(i, ("body", "models")) for i in ids]  # all checked before any work
        return json_response({"results": [m.reconstruct(body.image) for m in models]})

    @app.get("/api/map", summary="Test codes in 2-D (the codes, or their PCA) with digit labels",
             responses=documented)
    async def latent_map(model: str):
        return cached_json("map", model)

    @post("/api/map/decode", response_model=S.MapDecodeOut, summary="Map point -> code -> image")
    async def map_decode(body: S.PointIn):
        m = ex.get(body.model)
        code = m.plane_code(body.point)
        image = m.decode_many(code.view(1, -1))[0]
        return json_response({"model": m.id, "point": body.point, "code": code.numpy(),
                              "image": pixels_out(image)})

    @app.get("/api/directions", summary="Slider directions: code axes, or top principal directions",
             responses=documented)
    async def directions(model: str):
        return cached_json("directions", model)

    @post("/api/interpolate", response_model=S.InterpolateOut,
          summary="Decode the straight line between two codes (or encoded images)")
    async def interpolate(body: S.InterpolateIn):
        m = ex.get(body.model)
        codes, images = m.interpolate(body.start, body.end, body.steps)
        return json_response({"model": m.id, "codes": codes.numpy(), "images": pixels_out(images)})


def _add_page_routes(app) -> None:
    from fastapi import Request
    from fastapi.responses import HTMLResponse, Response
    from fastapi.staticfiles import StaticFiles

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

    @app.get("/api/stats", summary="Server-side handler times per route (p50, p99, max)")
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
    import html
    import json

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
               max_body_bytes: int = MAX_BODY_BYTES):
    """The explorer's FastAPI app over these run folders (loaded now, fixed for its lifetime)."""
    from fastapi import FastAPI

    from ._version import __version__

    explorer = load_explorer(run_dirs, checkpoint, data_dir, map_size)
    # FastAPI's own /docs loads Swagger UI from a CDN; ours is rendered here, so it works offline
    app = FastAPI(title="aelab explorer", version=__version__, docs_url=None, redoc_url=None,
                  description="Encode, decode and explore the latent spaces of trained autoencoders. "
                  f"Images are {IMAGE_SHAPE}; codes are arrays of numbers.",
                  exception_handlers=_error_handlers())
    _add_model_routes(app, explorer)
    _add_page_routes(app)
    timings = Timings(r.path for r in app.routes)
    app.add_middleware(TimingMiddleware, timings=timings)
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)  # outermost: runs first
    app.state.explorer, app.state.timings = explorer, timings
    return app


# --- the `aelab serve` command ---------------------------------------------------------------


def host_warning(host: str) -> str | None:
    """A warning for any address beyond this machine's loopback, else None."""
    import ipaddress

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


def _cmd_serve(args) -> int:
    import torch
    import uvicorn

    if not 1 <= args.threads <= 256:
        raise AelabError(f"--threads {args.threads}: use 1 to 256")
    if not 0 <= args.port <= 65535:
        raise AelabError(f"--port {args.port}: use 1 to 65535 (or 0 for any free port)")
    torch.set_num_threads(args.threads)
    app = create_app(args.run_dirs, args.checkpoint, args.data_dir, args.map_size)
    sock = bind(args.host, args.port)
    warning = host_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"aelab explorer on http://{host}:{sock.getsockname()[1]}/ "
          f"(API docs at /docs); Ctrl-C stops it", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="explore run folders in the browser (and a JSON API)",
        description="Serve a page to draw digits and watch each model reconstruct them, move "
        "sliders through the code, browse the latent map of test codes and interpolate; plus a "
        "JSON API documented at /docs. Models are fixed at start-up.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders to serve")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"],
                   help="which checkpoint (default: best)")
    p.add_argument("--map-size", type=int, default=MAP_SIZE,
                   help=f"first N test images whose codes make the latent map (default: {MAP_SIZE})")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default: 1, fastest for small models under concurrent "
                   "requests)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset folder, for the latent map (default: $AELAB_DATA_DIR, else ./data)")
    p.set_defaults(func=_cmd_serve)
