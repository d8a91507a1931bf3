"""What the API accepts and answers: input checks and the pydantic request/response models.

Every check raises ValueError, which pydantic turns into a 422 naming the field; input the
models pass but a handler cannot use (an unknown model id, a code of the wrong size) raises
RequestError instead.
"""

# No `from __future__ import annotations`: FastAPI reads the models' annotations at run time.

from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from ...errors import AelabError

PIXELS = 28 * 28
MAX_STEPS = 64  # interpolation images per request
MAX_CODE_ABS = 1e4  # far beyond any trained code; keeps float32 decoding finite
MAX_CODE_LEN = 4096  # code numbers per request
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


def _bounded(value, what: str, shape: str, max_len: int) -> np.ndarray:
    if isinstance(value, list) and not 1 <= len(value) <= max_len:
        raise ValueError(f"{what} must be {shape}; got {len(value)} numbers")
    arr = _numbers(value, what, shape)
    big = abs(arr) > MAX_CODE_ABS
    if big.any():
        i = int(big.argmax())
        raise ValueError(f"{what}[{i}] = {arr[i]:g} is too large; use numbers within "
                         f"+-{MAX_CODE_ABS:g}")
    return arr.astype("float32")


def check_code(value) -> np.ndarray:
    return _bounded(value, "code", "an array of numbers, one per code dimension", MAX_CODE_LEN)


def check_point(value) -> np.ndarray:
    arr = _bounded(value, "point", "two numbers [x, y] in the map's coordinates", 2)
    if arr.size != 2:
        raise ValueError(f"point must be two numbers [x, y]; got {arr.size}")
    return arr


# --- request and response models -------------------------------------------------------------

_NUMBER_ARRAY = {"type": "array", "items": {"type": "number"}}
_IMAGE_SCHEMA = {"description": IMAGE_SHAPE, "anyOf": [
    {**_NUMBER_ARRAY, "minItems": PIXELS, "maxItems": PIXELS},
    {"type": "array", "minItems": 28, "maxItems": 28,
     "items": {**_NUMBER_ARRAY, "minItems": 28, "maxItems": 28}}]}

Image = Annotated[Any, AfterValidator(check_image), WithJsonSchema(_IMAGE_SCHEMA)]
Code = Annotated[Any, AfterValidator(check_code), WithJsonSchema(
    {**_NUMBER_ARRAY, "description": "one number per code dimension (see GET /api/models)"})]
Point = Annotated[Any, AfterValidator(check_point), WithJsonSchema(
    {**_NUMBER_ARRAY, "minItems": 2, "maxItems": 2, "description": "[x, y] on the latent map"})]
ModelId = Annotated[str, Field(max_length=200, description="a model id from GET /api/models")]
floats = list[float]


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


class CompareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: Image
    models: list[ModelId] | None = Field(None, max_length=100,
                                         description="model ids (default: every model)")


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


class CompareOut(BaseModel):
    results: list[ReconstructOut]
