"""What the API accepts and answers: input checks and the pydantic request/response models.

The request and response models depend on the models served (their ids, code sizes and
image shapes), so `request_models` and `response_models` build them when the app is built:
model ids become an enum, each model's code size and image size (C*H*W) a fixed array
length, and the OpenAPI document declares exactly what validation checks (pixel range,
shapes, ids). Every check raises ValueError, which pydantic turns into a 422 naming the
field.

An image travels as its C*H*W numbers, channels first, row-major: C planes of H rows of W
(a colour image's red plane, then green, then blue); a grey one may also come as H rows of
W numbers.
"""

# No `from __future__ import annotations`: FastAPI reads the models' annotations at run time.

import math
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

Shape = tuple[int, int, int]  # (C, H, W): channels (1 grey, 3 colour), height, width
MAX_STEPS = 64  # interpolation images per request
MAX_SAMPLES = 256  # sampled images per request
MAX_SEED = 2**32 - 1  # a sampling seed: a whole number a browser holds exactly
MAX_CODE_ABS = 1e4  # far beyond any trained code; keeps float32 decoding finite
IMAGE_LAYOUT = "C x H x W numbers in [0, 1], channels first, row-major"


def shape_name(shape: Shape) -> str:
    """(3, 16, 16) -> "3x16x16": a part of a schema name."""
    return "x".join(map(str, shape))


def image_text(shape: Shape) -> str:
    """What an image of `shape` is, for descriptions and errors, e.g. for (1, 28, 28):
    "1 x 28 x 28 numbers in [0, 1], channels first, row-major (784 in all), or 28 rows of 28"."""
    c, h, w = shape
    text = f"{c} x {h} x {w} numbers in [0, 1], channels first, row-major ({c * h * w} in all)"
    return text + (f", or {h} rows of {w}" if c == 1 else "")


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


def _rows_to_flat(value, shape: Shape):
    """A grey image as H rows of W -> one list of H*W; anything else is returned as it came."""
    c, h, w = shape
    if not (isinstance(value, list) and value and all(isinstance(r, list) for r in value)):
        return value
    if c != 1:
        raise ValueError(f"image must be {image_text(shape)}: a colour image comes flat, not "
                         "as rows")
    if len(value) != h or any(len(r) != w for r in value):
        lengths = sorted({len(r) for r in value})
        raise ValueError(f"image as rows must be {h} rows of {w} numbers; got {len(value)} rows "
                         f"of length {', '.join(map(str, lengths[:5]))}")
    return [x for row in value for x in row]


def check_image(value, shape: Shape) -> np.ndarray:
    """JSON image of `shape` (C, H, W) -> float32 array (C*H*W,) in [0, 1]."""
    value = _rows_to_flat(value, shape)
    text = image_text(shape)
    if isinstance(value, list) and len(value) != math.prod(shape):
        raise ValueError(f"image must be {text}; got {len(value)} numbers")
    arr = _numbers(value, "image", text)
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


def image_schema(shape: Shape) -> dict:
    """Flat C*H*W numbers first, then (grey only) H rows of W: anyOf[0] is always the flat
    form, whose minItems/maxItems state the model's image size."""
    c, h, w = shape
    forms = [_numbers_schema(c * h * w, 0, 1)]
    if c == 1:
        forms.append({"type": "array", "minItems": h, "maxItems": h, "items": _numbers_schema(w, 0, 1)})
    return {"description": image_text(shape), "anyOf": forms}


def image_type(shape: Shape):
    """An image of `shape` (C, H, W), checked by check_image and declared by image_schema."""
    def check(value):
        return check_image(value, shape)

    return Annotated[Any, AfterValidator(check), WithJsonSchema(image_schema(shape))]


def _fits(value, shape: Shape) -> bool:
    """Whether a JSON image has the length (or, grey, the rows) of an image of `shape`."""
    if not isinstance(value, list):
        return False
    c, h, w = shape
    if value and isinstance(value[0], list):
        return c == 1 and len(value) == h and len(value[0]) == w
    return len(value) == c * h * w


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
    """One end of an interpolation given as an image (encoded first). request_models makes
    one subclass per image shape served, whose `image` field is an image of that shape."""


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


def request_models(code_sizes: dict[str, int], samplers: dict[str, tuple[str, ...]],
                   image_shapes: dict[str, Shape]) -> SimpleNamespace:
    """The request bodies (and the `model` parameter) of an app serving these models, given
    as id -> code size, id -> the samplers it offers (its default first) and id -> image
    shape (C, H, W). Bodies that carry a code, name a sampler or (with models of several
    shapes) carry an image are one schema per model, picked by their `model` field, so that
    each declares its model's code length, samplers and image length. A compare body has
    one schema per image shape, picked by its first model (else by the image's length)."""
    ids = tuple(code_sizes)
    loaded = f"model should be one of the loaded models: {', '.join(map(repr, ids))}"
    model_id = Annotated[Literal[ids], Field(description="a model id from GET /api/models")]
    groups: dict[Shape, tuple[str, ...]] = {}
    for m in ids:
        groups[image_shapes[m]] = (*groups.get(image_shapes[m], ()), m)
    one_shape = len(groups) == 1

    def named(name: str, shape: Shape) -> str:
        return name if one_shape else f"{name}_{shape_name(shape)}"

    image_ends = {shape: create_model(named("ImageEnd", shape), __base__=ImageEnd,
                                      __doc__="One end of an interpolation given as an image (encoded first)",
                                      image=(image_type(shape), ...)) for shape in groups}

    def per_model(name: str, fields) -> Any:
        variants = {m: create_model(f"{name}_{m}", __base__=Body, __doc__=f"{name} for model {m}",
                                    model=(Literal[m], ...), **fields(m))
                    for m in ids}
        return _tagged_union(variants, _model_tag, "unknown_model", loaded)

    def code_fields(m):
        return {"code": (code_type(m, code_sizes[m]), ...)}

    def interpolate_fields(m):
        code_end = create_model(f"CodeEnd_{m}", __base__=Body, code=(code_type(m, code_sizes[m]), ...),
                                __doc__="One end of an interpolation given as a code")
        end = _tagged_union({"image": image_ends[image_shapes[m]], "code": code_end}, _end_kind,
                            "end_kind", "an end is an object with exactly one of image or code")
        steps = Field(8, ge=2, le=MAX_STEPS, strict=True, description="images in the row")
        return {"start": (end, ...), "end": (end, ...),
                "steps": (Annotated[int, BeforeValidator(whole_number)], steps)}

    def sample_fields(m):
        names = samplers[m]
        whole = Annotated[int, BeforeValidator(whole_number)]
        return {"sampler": (Literal[names], Field(names[0], description=(
                    f"where the codes come from (default: {names[0]}); see GET /api/models"))),
                "n": (whole, Field(16, ge=1, le=MAX_SAMPLES, strict=True, description="images")),
                "seed": (whole, Field(0, ge=0, le=MAX_SEED, strict=True, description=(
                    "the random seed: the same seed gives the same images")))}

    if one_shape:
        (shape,) = groups
        image_in = create_model("ImageIn", __base__=Body, model=(model_id, ...),
                                image=(image_type(shape), ...))
        compare_in = create_model("CompareIn", __base__=Body, image=(image_type(shape), ...), models=(
            list[model_id] | None,
            Field(None, max_length=100, description="model ids (default: every model)")))
    else:
        image_in = per_model("ImageIn", lambda m: {"image": (image_type(image_shapes[m]), ...)})
        compare_in = _compare_union(groups, image_shapes)
    return SimpleNamespace(
        model_id=model_id,
        ImageIn=image_in,
        PointIn=create_model("PointIn", __base__=Body, model=(model_id, ...), point=(Point, ...)),
        CompareIn=compare_in,
        CodeIn=per_model("CodeIn", code_fields),
        InterpolateIn=per_model("InterpolateIn", interpolate_fields),
        SampleIn=per_model("SampleIn", sample_fields),
    )


def _compare_union(groups: dict[Shape, tuple[str, ...]], image_shapes: dict[str, Shape]):
    """CompareIn for models of several image shapes: one body per shape, whose image is of
    that shape and whose models (default: every model of that shape) take it. The body is
    picked by its first model, else by the length (or rows) of its image."""
    def variant(shape: Shape, ids: tuple[str, ...]):
        def same_shape(value):
            own = image_shapes.get(value, shape) if isinstance(value, str) else shape
            if own != shape:
                raise ValueError(f"model {value!r} takes {shape_name(own)} images "
                                 f"({math.prod(own)} numbers), not this image's "
                                 f"{shape_name(shape)}: compare it in a request of its own")
            return value

        member = Annotated[Literal[ids], BeforeValidator(same_shape)]
        return create_model(
            f"CompareIn_{shape_name(shape)}", __base__=Body,
            __doc__=f"One {shape_name(shape)} image through several of the models that take it",
            image=(image_type(shape), ...),
            models=(list[member], Field(list(ids), max_length=100, description=(
                f"model ids of {shape_name(shape)} images (default: every one of them)"))))

    def tag_of(value):
        if not isinstance(value, dict):
            return None
        models = value.get("models")
        if isinstance(models, list) and models and isinstance(models[0], str) \
                and models[0] in image_shapes:
            return shape_name(image_shapes[models[0]])
        return next((shape_name(s) for s in groups if _fits(value.get("image"), s)), None)

    sizes = "; ".join(f"{math.prod(s)} numbers ({shape_name(s)}) for {', '.join(map(repr, ids))}"
                      for s, ids in groups.items())
    return _tagged_union({shape_name(s): variant(s, ids) for s, ids in groups.items()}, tag_of,
                         "image_shape", f"image must be the C*H*W numbers of a served model: {sizes}")


# --- response models: what the handlers send (they send bytes; these are the docs) -----------

floats = list[float]


class CodeOut(BaseModel):
    model: str
    code: floats


def response_models(image_shapes: dict[str, Shape]) -> SimpleNamespace:
    """The answers that carry images, for models of these image shapes (id -> (C, H, W)):
    each image is its model's C*H*W numbers, channels first, row-major. (The handlers send
    bytes; these are the docs, and schemathesis holds the answers to them.)"""
    groups: dict[Shape, list[str]] = {}
    for m, shape in image_shapes.items():
        groups.setdefault(shape, []).append(m)
    sizes = [math.prod(s) for s in groups]
    if len(groups) == 1:
        c, h, w = next(iter(groups))
        text = f"{c} x {h} x {w} numbers in [0, 1], channels first, row-major"
    else:
        text = f"{IMAGE_LAYOUT}, of the model's image_shape: " + "; ".join(
            f"{math.prod(s)} for {', '.join(ids)}" for s, ids in groups.items())
    pixels = Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(
        min_length=min(sizes), max_length=max(sizes), description=text)]
    reconstruct_out = create_model("ReconstructOut", __base__=CodeOut, image=(pixels, ...))
    return SimpleNamespace(
        ImageOut=create_model("ImageOut", model=(str, ...), image=(pixels, ...)),
        ReconstructOut=reconstruct_out,
        MapDecodeOut=create_model("MapDecodeOut", __base__=reconstruct_out, point=(floats, ...)),
        InterpolateOut=create_model("InterpolateOut", model=(str, ...), codes=(list[floats], ...),
                                    images=(list[pixels], ...)),
        CompareOut=create_model("CompareOut", results=(list[reconstruct_out], ...)),
        SampleOut=create_model("SampleOut", model=(str, ...), sampler=(str, ...), seed=(int, ...),
                               codes=(list[floats], Field(description="the random codes, one per image")),
                               images=(list[pixels], ...)),
        TestImageOut=create_model(
            "TestImageOut", __doc__="One test image of the model's dataset: the latent map's points "
            "are these images' codes, in this order", model=(str, ...),
            index=(int, ...), label=(int, Field(description="its label (-1: none)")),
            image=(pixels, ...)),
    )


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
    image_shape: list[int] = Field(min_length=3, max_length=3, description=(
        "[C, H, W]: channels (1 grey, 3 colour), height and width of the images the model "
        "takes and makes; an image is C*H*W numbers, channels first, row-major"))
    test_images: int = Field(description="test images of its dataset, the latent map's points: "
                             "GET /api/models/{id}/test-image/{index} gives each")


class MapOut(BaseModel):
    model: str
    kind: Kind
    explained: floats | None = Field(description="variance fraction per axis (pca only)")
    bounds: floats = Field(min_length=4, max_length=4, description="[x0, x1, y0, y1]")
    points: list[floats] = Field(description="[x, y] per test image")
    labels: list[int] = Field(description="the label per test image (-1: none)")


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
