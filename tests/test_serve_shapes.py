"""The explorer serves models of any image shape side by side, through FastAPI's TestClient:
a grey 1x8x8 VAE on `digits` and a colour 3x16x16 RAE on `patches-16-colour`, beside the
28x28 seed runs. Each model's images are its C*H*W numbers, channels first, row-major, in
requests, answers and its OpenAPI schemas; a wrong length is a 422 naming the right one."""

import json
import math

import numpy as np
import pytest
from test_samplers import quick_fits

from aelab.apps import serve
from aelab.data import load_dataset
from aelab.errors import AelabError
from aelab.runs import load_run

pytest.importorskip("fastapi")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
JSON = {"content-type": "application/json"}
# run id -> (model, dataset, its image shape); trained by train_shape_runs
SHAPE_RUNS = {"digits-vae": ("vae", "digits", (1, 8, 8)),
              "patches-rae": ("rae", "patches-16-colour", (3, 16, 16))}
SHAPES = {"linear": (1, 28, 28), "conv": (1, 28, 28),
          **{name: shape for name, (_, _, shape) in SHAPE_RUNS.items()}}
MAP_SIZE = 400  # digits has 300 test images (all of them served), the others 400
LAYOUT = "numbers in [0, 1], channels first, row-major"


def train_shape_runs(tmp_path_factory, data_dir) -> dict:
    """Real one-epoch runs on 256 images with 4-number codes (seconds), trained once per
    session: the browser tests serve them too."""
    from aelab.config import TrainConfig
    from aelab.data import ensure_dataset
    from aelab.train import train

    root = tmp_path_factory.getbasetemp() / "shape-runs"
    for name, (model, dataset, _) in SHAPE_RUNS.items():
        if not (root / name / "checkpoints" / "best.safetensors").is_file():
            ensure_dataset(dataset, data_dir, log=None)
            cfg = TrainConfig(model=model, dataset=dataset, epochs=1, limit=256, device="cpu",
                              model_args={"latent_dim": 4})
            train(cfg, root / name, data_dir=data_dir, log=lambda _msg: None, progress=False)
    return {name: root / name for name in SHAPE_RUNS}


@pytest.fixture(scope="session")
def shape_runs(tmp_path_factory, mnist_dir) -> dict:
    return train_shape_runs(tmp_path_factory, mnist_dir)


@pytest.fixture(scope="module")
def client(seed_runs, shape_runs, mnist_dir):
    """One app serving four models of three shapes; a first /api/sample of a fitted
    sampler fits it, quickly here (test_samplers.quick_fits)."""
    from fastapi.testclient import TestClient

    runs = [seed_runs["linear"], seed_runs["conv"], *shape_runs.values()]
    with quick_fits(), TestClient(serve.create_app(runs, data_dir=mnist_dir, map_size=MAP_SIZE)) as c:
        yield c


@pytest.fixture(scope="module")
def test_images(mnist_dir) -> dict:
    """The first test image of each shape run's dataset as the API carries it, (C*H*W,)
    float64, and its label."""
    out = {}
    for name, (_, dataset, shape) in SHAPE_RUNS.items():
        x, y = load_dataset(dataset, "test", data_dir=mnist_dir)
        out[name] = x[0].numpy().reshape(-1) / 255.0, int(y[0])  # (H, W) or (3, H, W): channels first
        assert out[name][0].size == math.prod(shape)
    return out


def post(client, path, body):
    return client.post(path, content=json.dumps(body), headers=JSON)


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def size(model: str) -> int:
    return math.prod(SHAPES[model])


def test_models_state_their_image_shapes(client):
    models = ok(client.get("/api/models"))
    assert {m["id"]: tuple(m["image_shape"]) for m in models} == SHAPES
    assert {m["id"]: m["test_images"] for m in models} == {
        "linear": MAP_SIZE, "conv": MAP_SIZE, "digits-vae": 300, "patches-rae": MAP_SIZE}


@pytest.mark.parametrize("model", list(SHAPE_RUNS))
def test_a_test_image_comes_flat_channels_first(client, test_images, model):
    image, label = test_images[model]
    r = ok(client.get(f"/api/models/{model}/test-image/0"))
    assert (r["model"], r["index"], len(r["image"])) == (model, 0, size(model))
    np.testing.assert_allclose(r["image"], image, atol=6e-5)  # sent rounded to 4 decimals
    assert r["label"] == label == (-1 if model == "patches-rae" else label)  # patches: unlabelled
    last = ok(client.get(f"/api/models/{model}/test-image/299"))
    assert last["index"] == 299 and last["image"] != r["image"]


def test_a_test_image_past_a_models_own_count_is_a_404(client):
    r = client.get("/api/models/digits-vae/test-image/300")  # patches has 400: the schema allows it
    assert r.status_code == 404 and "300 test images" in r.json()["detail"]
    assert ok(client.get("/api/models/patches-rae/test-image/300"))["index"] == 300
    assert client.get("/api/models/digits-vae/test-image/-1").status_code == 422
    assert client.get(f"/api/models/digits-vae/test-image/{MAP_SIZE}").status_code == 422
    assert client.get("/api/models/nope/test-image/0").status_code == 422


@pytest.mark.parametrize("model", list(SHAPE_RUNS))
def test_images_in_and_out_are_the_models_own_shape(client, shape_runs, mnist_dir, test_images, model):
    """Each endpoint takes and answers C*H*W numbers, in the order LoadedRun's (C, H, W)
    images flatten to: the same numbers as the run's own reconstruct, decode and sample."""
    n, pixels = size(model), test_images[model][0]
    image = pixels.tolist()
    run = load_run(shape_runs[model], data_dir=mnist_dir)
    both = ok(post(client, "/api/reconstruct", {"model": model, "image": image}))
    assert len(both["image"]) == n and len(both["code"]) == 4
    want = run.reconstruct(pixels.reshape(SHAPES[model]).astype("float32"))  # (C, H, W) in
    np.testing.assert_allclose(both["image"], want.reshape(-1), atol=6e-5)
    code = ok(post(client, "/api/encode", {"model": model, "image": image}))["code"]
    np.testing.assert_allclose(code, both["code"], rtol=1e-6)
    decoded = ok(post(client, "/api/decode", {"model": model, "code": code}))["image"]
    np.testing.assert_allclose(decoded, both["image"], atol=2e-4)
    (only,) = ok(post(client, "/api/compare", {"image": image}))["results"]  # its shape's only model
    assert only == both
    r = ok(post(client, "/api/sample", {"model": model, "n": 3}))  # the default sampler, seed 0
    assert np.array(r["images"]).shape == (3, n)
    np.testing.assert_allclose(np.array(r["images"]), run.sample(3).reshape(3, n), atol=6e-5)
    line = ok(post(client, "/api/interpolate", {"model": model, "start": {"image": image},
                                                "end": {"code": [0.0] * 4}, "steps": 3}))
    assert np.array(line["images"]).shape == (3, n)
    point = ok(client.get("/api/map", params={"model": model}))["points"][0]
    assert len(ok(post(client, "/api/map/decode", {"model": model, "point": point}))["image"]) == n


def test_compare_sends_an_image_to_the_models_of_its_shape(client, test_images):
    mnist = ok(post(client, "/api/compare", {"image": [0.0] * 784}))["results"]
    assert [r["model"] for r in mnist] == ["linear", "conv"]
    rows = ok(post(client, "/api/compare", {"image": test_images["digits-vae"][0].reshape(8, 8).tolist()}))
    assert [r["model"] for r in rows["results"]] == ["digits-vae"]  # a grey image as H rows of W
    named = post(client, "/api/compare", {"image": [0.0] * 768, "models": ["patches-rae", "conv"]})
    assert named.status_code == 422 and "'conv' takes 1x28x28 images (784 numbers)" in named.text


BODIES = {  # a body carrying `image` for `model`
    "/api/encode": lambda model, image: {"model": model, "image": image},
    "/api/reconstruct": lambda model, image: {"model": model, "image": image},
    "/api/compare": lambda model, image: {"image": image, "models": [model]},
    "/api/interpolate": lambda model, image: {"model": model, "start": {"code": [0.0] * 4},
                                              "end": {"image": image}},
}


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize("model", list(SHAPE_RUNS))
def test_a_wrong_length_is_a_422_naming_the_expected_one(client, model, path):
    n = size(model)
    assert post(client, path, BODIES[path](model, [0.5] * n)).status_code == 200
    for got in (n - 1, n + 1, 784):
        r = post(client, path, BODIES[path](model, [0.5] * got))
        assert r.status_code == 422, r.text
        assert f"({n} in all)" in r.text and f"got {got} numbers" in r.text, r.text


def test_a_length_of_no_served_shape_names_every_one(client):
    r = post(client, "/api/compare", {"image": [0.0] * 100})
    assert r.status_code == 422
    for text in ("784 numbers (1x28x28)", "64 numbers (1x8x8)", "768 numbers (3x16x16)"):
        assert text in r.text
    colour_rows = post(client, "/api/encode", {"model": "patches-rae", "image": [[0.0] * 16] * 48})
    assert colour_rows.status_code == 422 and "a colour image comes flat" in colour_rows.text
    code = post(client, "/api/decode", {"model": "digits-vae", "code": [0.0] * 5})
    assert code.status_code == 422 and "takes 4" in code.text


def test_openapi_states_each_models_image_length(client):
    spec = ok(client.get("/openapi.json"))
    schemas = spec["components"]["schemas"]

    def ref(schema):
        return schemas[schema["$ref"].rsplit("/", 1)[1]]

    for model, (c, h, w) in SHAPES.items():
        image = schemas[f"ImageIn_{model}"]["properties"]["image"]
        flat = image["anyOf"][0]
        assert (flat["minItems"], flat["maxItems"]) == (size(model),) * 2, model
        assert image["description"].startswith(f"{c} x {h} x {w} {LAYOUT}")
        assert len(image["anyOf"]) == (2 if c == 1 else 1)  # grey: also H rows of W
        interpolate = schemas[f"InterpolateIn_{model}"]["properties"]["start"]
        (end,) = [ref(v) for v in interpolate["oneOf"] if "image" in ref(v)["properties"]]
        assert end["properties"]["image"] == image
    compare = spec["paths"]["/api/compare"]["post"]["requestBody"]["content"]["application/json"]
    bodies = {b["title"]: b["properties"] for b in map(ref, compare["schema"]["oneOf"])}
    assert sorted(bodies) == ["CompareIn_1x28x28", "CompareIn_1x8x8", "CompareIn_3x16x16"]
    assert bodies["CompareIn_3x16x16"]["image"]["anyOf"][0]["maxItems"] == 768
    assert bodies["CompareIn_1x28x28"]["models"]["default"] == ["linear", "conv"]
    assert schemas["ModelInfo"]["properties"]["image_shape"]["maxItems"] == 3
    pixels = schemas["ImageOut"]["properties"]["image"]
    assert (pixels["minItems"], pixels["maxItems"]) == (64, 784)
    assert "/api/models/{id}/test-image/{index}" in spec["paths"]


def test_a_dataset_of_another_shape_is_refused_in_one_line(shape_runs, mnist_dir):
    with pytest.raises(AelabError, match=r"takes 3x16x16 images but the test images of digits are 1x8x8"):
        serve.load_explorer([shape_runs["patches-rae"]], data_dir=mnist_dir, map_size=10,
                            dataset="digits")
