"""What the API accepts and answers: input checks and the pydantic request/response models.

The request models depend on the models served (their ids and code sizes), so
`request_models` builds them when the app is built: model ids become an enum and each
model's code size a fixed array length, and the OpenAPI document declares exactly what
validation checks (pixel range, shapes, ids). Every check raises ValueError, which pydantic
turns into a 422 naming the field.
"""

# No `from __future__ import annotations`: FastAPI reads the models' annotations at run time.

from types import SimpleNamespace
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    create_model,
)

from ...errors import AelabError

PIXELS = 28 * 28
MAX_STEPS = 64  # interpolation images per request
MAX_SAMPLES = 256  # sampled images per request
MAX_SEED = 2**32 - 1  # a sampling seed: a whole number a browser holds exactly
MAX_CODE_ABS = 1e4  # far beyond any trained code; keeps float32 decoding finite
IMAGE_SHAPE = "784 numbers in [0, 1] (28x28, row-major) or 28 rows of 28"


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


def _numbers(value, what: str, shape: str) -> np.ndarray:
    """A JSON array of finite numbers -> float64 array; ValueError names the first bad entry."""
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


def check_image(value) -> np.ndarray:
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


def _bounded(value, what: str, shape: str) -> np.ndarray:
    arr = _numbers(value, what, shape)
    big = abs(arr) > MAX_CODE_ABS
    if big.any():
        i = int(big.argmax())
        raise ValueError(f"{what}[{i}] = {arr[i]:g} is too large; use numbers within "
                         f"+-{MAX_CODE_ABS:g}")
    return arr.astype("float32")


def check_code(value, size: int, model_id: str) -> np.ndarray:
    """JSON code -> float32 array (size,) for the model `model_id`, which takes `size` numbers."""
    if isinstance(value, list) and len(value) != size:
        raise ValueError(f"code has {len(value)} numbers but model {model_id!r} takes {size}")
    return _bounded(value, "code", f"{size} numbers, one per code dimension")


def whole_number(value):
    """3.0 -> 3 (JSON Schema counts it an integer); anything else as it came, for a strict int."""
    return int(value) if type(value) is float and value.is_integer() else value


def check_point(value) -> np.ndarray:
    if isinstance(value, list) and len(value) != 2:
        raise ValueError(f"point must be two numbers [x, y]; got {len(value)}")
    return _bounded(value, "point", "two numbers [x, y] in the map's coordinates")


# --- the JSON schemas those checks enforce ---------------------------------------------------


def _numbers_schema(n: int, low: float, high: float, **extra) -> dict:
    return {"type": "array", "minItems": n, "maxItems": n,
            "items": {"type": "number", "minimum": low, "maximum": high}, **extra}


_IMAGE_SCHEMA = {"description": IMAGE_SHAPE, "anyOf": [
    _numbers_schema(PIXELS, 0, 1),
    {"type": "array", "minItems": 28, "maxItems": 28, "items": _numbers_schema(28, 0, 1)}]}

Image = Annotated[Any, AfterValidator(check_image), WithJsonSchema(_IMAGE_SCHEMA)]
Point = Annotated[Any, AfterValidator(check_point), WithJsonSchema(_numbers_schema(
    2, -MAX_CODE_ABS, MAX_CODE_ABS, description="[x, y] on the latent map"))]


def code_type(model_id: str, size: int):
    """A code for model `model_id`: exactly `size` numbers within +-MAX_CODE_ABS."""
    def check(value):
        return check_code(value, size, model_id)

    return Annotated[Any, AfterValidator(check), WithJsonSchema(_numbers_schema(
        size, -MAX_CODE_ABS, MAX_CODE_ABS, description=f"{size} numbers: a code of {model_id}"))]


# --- request models: built per app, from the ids and code sizes of the models it serves -------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored


class ImageEnd(Body):
    """One end of an interpolation given as an image (encoded first)."""

    image: Image


def _end_kind(value):
    keys = {"image", "code"} & set(value) if isinstance(value, dict) else set()
    return keys.pop() if len(keys) == 1 else None


def _tagged_union(variants: dict, tag_of, error: str, message: str):
    """One of `variants` (tag -> model), picked by `tag_of(input)`; if none fits, an error of
    type `error` saying `message`."""
    if len(variants) == 1:
        return next(iter(variants.values()))
    members = tuple(Annotated[cls, Tag(tag)] for tag, cls in variants.items())
    return Annotated[Union[members], Discriminator(  # noqa: UP007 (a tuple of members)
        tag_of, custom_error_type=error, custom_error_message=message)]


def _model_tag(value):
    model_id = value.get("model") if isinstance(value, dict) else None
    return model_id if isinstance(model_id, str) else None


def request_models(code_sizes: dict[str, int], samplers: dict[str, tuple[str, ...]]) -> SimpleNamespace:
    """The request bodies (and the `model` query parameter) of an app serving these models,
    given as id -> code size and id -> the samplers it offers (its default first). Bodies
    that carry a code or name a sampler are one schema per model, picked by their `model`
    field, so that each declares its model's code length and samplers."""
    ids = tuple(code_sizes)
    loaded = f"model should be one of the loaded models: {', '.join(map(repr, ids))}"
    model_id = Annotated[Literal[ids], Field(description="a model id from GET /api/models")]

    def per_model(name: str, fields) -> Any:
        variants = {m: create_model(f"{name}_{m}", __base__=Body, __doc__=f"{name} for model {m}",
                                    model=(Literal[m], ...), **fields(m, code_type(m, n)))
                    for m, n in code_sizes.items()}
        return _tagged_union(variants, _model_tag, "unknown_model", loaded)

    def interpolate_fields(m, code):
        code_end = create_model(f"CodeEnd_{m}", __base__=Body, code=(code, ...),
                                __doc__="One end of an interpolation given as a code")
        end = _tagged_union({"image": ImageEnd, "code": code_end}, _end_kind, "end_kind",
                            "an end is an object with exactly one of image or code")
        steps = Field(8, ge=2, le=MAX_STEPS, strict=True, description="images in the row")
        return {"start": (end, ...), "end": (end, ...),
                "steps": (Annotated[int, BeforeValidator(whole_number)], steps)}

    def sample_fields(m, _code):
        names = samplers[m]
        whole = Annotated[int, BeforeValidator(whole_number)]
        return {"sampler": (Literal[names], Field(names[0], description=(
                    f"where the codes come from (default: {names[0]}); see GET /api/models"))),
                "n": (whole, Field(16, ge=1, le=MAX_SAMPLES, strict=True, description="images")),
                "seed": (whole, Field(0, ge=0, le=MAX_SEED, strict=True, description=(
                    "the random seed: the same seed gives the same images")))}

    return SimpleNamespace(
        model_id=model_id,
        ImageIn=create_model("ImageIn", __base__=Body, model=(model_id, ...), image=(Image, ...)),
        PointIn=create_model("PointIn", __base__=Body, model=(model_id, ...), point=(Point, ...)),
        CompareIn=create_model("CompareIn", __base__=Body, image=(Image, ...), models=(
            list[model_id] | None,
            Field(None, max_length=100, description="model ids (default: every model)"))),
        CodeIn=per_model("CodeIn", lambda m, code: {"code": (code, ...)}),
        InterpolateIn=per_model("InterpolateIn", interpolate_fields),
        SampleIn=per_model("SampleIn", sample_fields),
    )


# --- response models: what the handlers send (they send bytes; these are the docs) -----------

floats = list[float]
Pixels = Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(
    min_length=PIXELS, max_length=PIXELS, description="784 numbers in [0, 1], row-major")]


class CodeOut(BaseModel):
    model: str
    code: floats


class ImageOut(BaseModel):
    model: str
    image: Pixels


class ReconstructOut(CodeOut):
    image: Pixels


class MapDecodeOut(ReconstructOut):
    point: floats


class InterpolateOut(BaseModel):
    model: str
    codes: list[floats]
    images: list[Pixels]


class CompareOut(BaseModel):
    results: list[ReconstructOut]


class SampleOut(BaseModel):
    model: str
    sampler: str
    seed: int
    codes: list[floats] = Field(description="the random codes, one per image")
    images: list[Pixels]


Kind = Literal["code", "pca"]  # a projection onto the code's own axes, or principal directions


class Sliders(BaseModel):
    kind: Kind
    count: int


class MapKind(BaseModel):
    kind: Kind


class ModelInfo(BaseModel):
    id: str
    model: str
    dataset: str
    latent_dim: int
    epoch: int | None
    test_mse: float | None
    sliders: Sliders
    map: MapKind
    samplers: list[str] = Field(description="the samplers of POST /api/sample, the default first")


class MapOut(BaseModel):
    model: str
    kind: Kind
    explained: floats | None = Field(description="variance fraction per axis (pca only)")
    bounds: floats = Field(min_length=4, max_length=4, description="[x0, x1, y0, y1]")
    points: list[floats] = Field(description="[x, y] per test image")
    labels: list[int] = Field(description="the digit label per test image")


class DirectionsOut(BaseModel):
    model: str
    kind: Kind
    mean: floats
    directions: list[floats] = Field(description="one code-space direction per slider")
    low: floats
    high: floats
    explained: floats | None


class RouteTimes(BaseModel):
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="where: body or query, then the field")
    msg: str
    type: str


class InvalidOut(BaseModel):
    """422: the request parsed but a field is wrong; one entry per problem."""

    detail: list[ErrorItem]


class MessageOut(BaseModel):
    """Any other error: one message."""

    detail: str
