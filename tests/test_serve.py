"""The explorer's JSON API through FastAPI's TestClient: right answers, and a 4xx (never a
5xx) naming the problem for bad input."""

import json
import re
import socket

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_samplers import fresh_copy, quick_fits, train_tiny

import aelab.runs
from aelab.apps import serve
from aelab.cli import main
from aelab.data import load_dataset
from aelab.errors import AelabError
from aelab.runs import load_run

pytest.importorskip("fastapi")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
MAP_SIZE = 500
JSON = {"content-type": "application/json"}
GOOD = [0.0] * 784  # a valid image: all black
API_PATHS = {"/api/models", "/api/encode", "/api/decode", "/api/reconstruct", "/api/compare",
             "/api/map", "/api/map/decode", "/api/directions", "/api/interpolate", "/api/sample",
             "/api/stats"}
MAX_SEED = 2**32 - 1


@pytest.fixture(scope="module", autouse=True)
def quick():
    """The first /api/sample of a fitted sampler fits it: quickly here (test_samplers)."""
    with quick_fits():
        yield


@pytest.fixture(scope="module")
def client(seed_runs, mnist_dir):
    from fastapi.testclient import TestClient

    app = serve.create_app([seed_runs["linear"], seed_runs["conv"]], data_dir=mnist_dir,
                           map_size=MAP_SIZE)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def digits(mnist_dir):
    x, y = load_dataset("mnist", "test", data_dir=mnist_dir)
    return x[:4].numpy().reshape(4, -1) / 255.0, y[:MAP_SIZE].numpy()  # (4, 784) float64


def post(client, path, body):
    return client.post(path, content=json.dumps(body), headers=JSON)


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def in_pytorch(run_dir, image):
    """(code, reconstruction) of the run's own model, as float64 arrays."""
    model = load_run(run_dir).model
    with torch.inference_mode():
        x = torch.tensor(image, dtype=torch.float32).view(1, 1, 28, 28)
        code = model.encode(x)
        return code[0].double().numpy(), model.decode(code).reshape(-1).double().numpy()


# --- answers ----------------------------------------------------------------------------------


def test_models_are_listed_by_folder_name_without_paths(client, seed_runs):
    r = client.get("/api/models")
    models = ok(r)
    assert [(m["id"], m["model"], m["latent_dim"]) for m in models] == [("linear", "linear", 5),
                                                                         ("conv", "conv", 64)]
    assert [m["sliders"] for m in models] == [{"kind": "code", "count": 5}, {"kind": "pca", "count": 8}]
    assert [m["samplers"] for m in models] == [["gmm", "gaussian"]] * 2  # the default first
    assert str(seed_runs["linear"].parent) not in r.text  # no file paths leave the server


@pytest.mark.parametrize("model", ["linear", "conv"])
def test_reconstruct_agrees_with_pytorch(client, seed_runs, digits, model):
    image = digits[0][0]
    r = ok(post(client, "/api/reconstruct", {"model": model, "image": image.tolist()}))
    code, recon = in_pytorch(seed_runs[model], image)
    np.testing.assert_allclose(r["code"], code, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r["image"], recon, atol=6e-5)  # sent rounded to 4 decimals
    assert len(r["image"]) == 784 and min(r["image"]) >= 0 and max(r["image"]) <= 1


@pytest.mark.parametrize("model", ["linear", "conv"])
def test_encode_then_decode_is_reconstruct(client, digits, model):
    image = digits[0][1].tolist()
    code = ok(post(client, "/api/encode", {"model": model, "image": image}))["code"]
    decoded = ok(post(client, "/api/decode", {"model": model, "code": code}))["image"]
    both = ok(post(client, "/api/reconstruct", {"model": model, "image": image}))
    np.testing.assert_allclose(decoded, both["image"], atol=2e-4)
    np.testing.assert_allclose(code, both["code"], rtol=1e-6)


def test_an_image_may_come_as_28_rows_of_28(client, digits):
    flat = digits[0][2]
    a = ok(post(client, "/api/encode", {"model": "conv", "image": flat.tolist()}))
    b = ok(post(client, "/api/encode", {"model": "conv", "image": flat.reshape(28, 28).tolist()}))
    assert a == b


def test_compare_sends_one_image_through_each_model(client, digits):
    image = digits[0][3].tolist()
    both = ok(post(client, "/api/compare", {"image": image}))["results"]
    assert [r["model"] for r in both] == ["linear", "conv"]
    assert both[1] == ok(post(client, "/api/reconstruct", {"model": "conv", "image": image}))
    only = ok(post(client, "/api/compare", {"image": image, "models": ["conv"]}))["results"]
    assert [r["model"] for r in only] == ["conv"]


@pytest.mark.parametrize("model", ["linear", "conv"])
def test_latent_map_holds_the_test_codes_and_decodes_its_points(client, digits, model):
    m = ok(client.get("/api/map", params={"model": model}))
    assert m["kind"] == "pca" and len(m["points"]) == MAP_SIZE
    assert m["labels"] == digits[1].tolist()  # coloured by the real digit
    x0, x1, y0, y1 = m["bounds"]
    assert x0 < x1 and y0 < y1
    point = m["points"][0]
    r = ok(post(client, "/api/map/decode", {"model": model, "point": point}))
    plane = client.app.state.explorer.models[model].plane
    back = plane.coords(torch.tensor([r["code"]]))[0]  # the code lies on the map's plane
    np.testing.assert_allclose(back.numpy(), point, atol=1e-4)
    same = ok(post(client, "/api/decode", {"model": model, "code": r["code"]}))["image"]
    np.testing.assert_allclose(r["image"], same, atol=2e-4)


def test_a_two_number_code_is_its_own_map_and_larger_codes_get_pca():
    torch.manual_seed(0)
    codes = torch.randn(1000, 2)
    p = serve.project_codes(codes, 2)
    assert p.kind == "code" and torch.equal(p.coords(codes), codes)
    wide = torch.randn(1000, 5) * torch.tensor([1.0, 10.0, 3.0, 1.0, 1.0])
    p = serve.project_codes(wide, 2)
    assert p.kind == "pca" and p.explained[0] > p.explained[1]
    torch.testing.assert_close(p.axes @ p.axes.T, torch.eye(2), atol=1e-5, rtol=0)
    assert p.axes[0].abs().argmax() == 1 and p.axes[0, 1] > 0  # the widest direction, sign fixed


def test_slider_directions_are_code_axes_or_orthonormal_pcs(client):
    lin = ok(client.get("/api/directions", params={"model": "linear"}))
    assert lin["kind"] == "code" and lin["directions"] == np.eye(5).tolist()
    conv = ok(client.get("/api/directions", params={"model": "conv"}))
    d = np.array(conv["directions"])
    assert conv["kind"] == "pca" and d.shape == (8, 64)
    np.testing.assert_allclose(d @ d.T, np.eye(8), atol=1e-4)
    assert all(lo < hi for lo, hi in zip(conv["low"], conv["high"], strict=True))


@pytest.mark.parametrize("model", ["linear", "conv"])
def test_interpolation_runs_from_one_reconstruction_to_the_other(client, digits, model):
    a, b = digits[0][0].tolist(), digits[0][1].tolist()
    r = ok(post(client, "/api/interpolate", {"model": model, "start": {"image": a},
                                             "end": {"image": b}, "steps": 5}))
    assert len(r["images"]) == len(r["codes"]) == 5
    for end, image in ((a, r["images"][0]), (b, r["images"][-1])):
        want = ok(post(client, "/api/reconstruct", {"model": model, "image": end}))["image"]
        np.testing.assert_allclose(image, want, atol=2e-4)
    codes = np.array(r["codes"])  # a straight line in code space, evenly stepped
    np.testing.assert_allclose(codes[2], (codes[0] + codes[4]) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(codes[0], codes[4])
    code = r["codes"][2]  # a code may stand for an end too
    again = ok(post(client, "/api/interpolate", {"model": model, "start": {"code": code},
                                                 "end": {"image": b}, "steps": 2}))
    np.testing.assert_allclose(again["codes"][0], code, rtol=1e-6)


def test_sample_decodes_the_codes_of_the_chosen_sampler(client, seed_runs, mnist_dir):
    r = ok(post(client, "/api/sample", {"model": "conv", "n": 5, "seed": 3}))
    assert r["model"] == "conv" and r["sampler"] == "gmm" and r["seed"] == 3  # the default
    assert np.array(r["codes"]).shape == (5, 64) and np.array(r["images"]).shape == (5, 784)
    run = load_run(seed_runs["conv"], data_dir=mnist_dir)  # reads the fit the server saved
    np.testing.assert_allclose(r["codes"], run.sample_codes(5, seed=3), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.array(r["images"]).reshape(5, 28, 28), run.sample(5, seed=3),
                               atol=6e-5)  # sent rounded to 4 decimals
    assert ok(post(client, "/api/sample", {"model": "conv", "n": 5, "seed": 3})) == r
    other = ok(post(client, "/api/sample", {"model": "conv", "n": 5, "seed": 3,
                                            "sampler": "gaussian"}))
    assert other["sampler"] == "gaussian" and other["codes"] != r["codes"]
    one = ok(post(client, "/api/sample", {"model": "linear"}))
    assert len(one["images"]) == 16 and one["seed"] == 0  # the defaults


def test_a_served_vae_samples_its_prior_by_default(tmp_path_factory, mnist_dir):
    from fastapi.testclient import TestClient

    vae = train_tiny(tmp_path_factory, mnist_dir, "handle-vae", "vae")
    with TestClient(serve.create_app([vae], data_dir=mnist_dir, map_size=10)) as c:
        (info,) = ok(c.get("/api/models"))
        assert info["samplers"] == ["prior", "gmm", "gaussian"]
        r = ok(post(c, "/api/sample", {"model": info["id"], "n": 2}))
        assert r["sampler"] == "prior"
        prior = torch.randn(2, info["latent_dim"], generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(torch.tensor(r["codes"]), prior)  # N(0, I), seed 0
        schemas = ok(c.get("/openapi.json"))["components"]["schemas"]
        (body,) = [v for k, v in schemas.items() if k.startswith("SampleIn")]  # one model: one
        assert body["properties"]["sampler"]["enum"] == ["prior", "gmm", "gaussian"]


def test_a_sampler_that_cannot_be_fitted_is_a_503_without_paths(seed_runs, mnist_dir, tmp_path,
                                                                 monkeypatch, capsys):
    from fastapi.testclient import TestClient

    run = fresh_copy(seed_runs["linear"], tmp_path / "linear")  # nothing fitted yet
    with TestClient(serve.create_app([run], data_dir=mnist_dir, map_size=10)) as c:
        def missing(*_a, **_kw):
            raise AelabError("no training images in /secret/data")

        monkeypatch.setattr(aelab.runs, "load_dataset", missing)
        r = post(c, "/api/sample", {"model": "linear", "sampler": "gaussian"})
        assert r.status_code == 503 and "could not be fitted" in r.json()["detail"]
        assert "/secret" not in r.text and "/secret/data" in capsys.readouterr().err


def test_the_page_is_served_and_loads_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.text) > 500
        assert not re.search(r"https?://|//cdn", r.text), asset
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)


def test_openapi_documents_every_endpoint(client):
    spec = ok(client.get("/openapi.json"))
    assert set(spec["paths"]) >= API_PATHS
    docs = client.get("/docs")
    assert docs.status_code == 200
    for path in API_PATHS:  # every endpoint is listed, and the page needs nothing from outside
        assert path in docs.text
    assert not re.search(r"(src|href)=\"(https?:)?//", docs.text)


def test_openapi_declares_what_validation_checks(client):
    """Model ids, pixel range and code sizes are in the document, not only in the handlers
    (tests/test_openapi_contract.py has schemathesis check that the two agree)."""
    spec = ok(client.get("/openapi.json"))
    schemas, paths = spec["components"]["schemas"], spec["paths"]
    assert schemas["ImageIn"]["properties"]["model"]["enum"] == ["linear", "conv"]
    flat = schemas["ImageIn"]["properties"]["image"]["anyOf"][0]
    assert (flat["minItems"], flat["maxItems"], flat["items"]["minimum"], flat["items"]["maximum"]) \
        == (784, 784, 0, 1)
    decode = paths["/api/decode"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    codes = [schemas[v["$ref"].rsplit("/", 1)[1]]["properties"]["code"] for v in decode["oneOf"]]
    assert [(c["minItems"], c["maxItems"]) for c in codes] == [(5, 5), (64, 64)]
    for path in ("/api/map", "/api/directions"):
        assert paths[path]["get"]["parameters"][0]["schema"]["enum"] == ["linear", "conv"]
    sample = paths["/api/sample"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    bodies = [schemas[v["$ref"].rsplit("/", 1)[1]]["properties"] for v in sample["oneOf"]]
    assert [b["sampler"]["enum"] for b in bodies] == [["gmm", "gaussian"]] * 2
    assert (bodies[0]["n"]["minimum"], bodies[0]["n"]["maximum"]) == (1, 256)
    assert (bodies[0]["seed"]["minimum"], bodies[0]["seed"]["maximum"]) == (0, MAX_SEED)
    assert "503" in paths["/api/sample"]["post"]["responses"]
    for path, ops in paths.items():
        for method, op in ops.items():
            if method == "post":
                assert {"200", "400", "413", "422"} <= set(op["responses"]), path
                assert "InvalidOut" in json.dumps(op["responses"]["422"])


@pytest.mark.parametrize(("path", "body", "field", "inside", "outside"), [
    ("/api/encode", {"model": "linear"}, "image", [1.0] * 784, [1.0001] + [1.0] * 783),
    ("/api/encode", {"model": "linear"}, "image", [0] * 784, [-1e-9] + [0.0] * 783),
    ("/api/decode", {"model": "linear"}, "code", [1e4, -1e4, 0, 0, 0], [1.0001e4, 0, 0, 0, 0]),
    ("/api/map/decode", {"model": "conv"}, "point", [-1e4, 1e4], [-1.0001e4, 0]),
    ("/api/interpolate", {"model": "conv", "start": {"image": GOOD}, "end": {"image": GOOD}},
     "steps", 64, 65),
    ("/api/interpolate", {"model": "conv", "start": {"image": GOOD}, "end": {"image": GOOD}},
     "steps", 3.0, 2.5),  # 3.0 is an integer to JSON Schema, so to the API too
    ("/api/sample", {"model": "linear", "sampler": "gaussian"}, "n", 256, 257),
    ("/api/sample", {"model": "linear", "sampler": "gaussian", "n": 1}, "seed", MAX_SEED, MAX_SEED + 1),
    ("/api/sample", {"model": "linear", "sampler": "gaussian", "n": 1}, "seed", 0, -1),
])
def test_declared_limits_are_the_enforced_ones(client, path, body, field, inside, outside):
    assert post(client, path, {**body, field: inside}).status_code == 200
    assert post(client, path, {**body, field: outside}).status_code == 422


def test_one_served_model_with_any_folder_name_gets_the_same_checks(seed_runs, mnist_dir, tmp_path):
    """One run: no union of per-model bodies; a folder name that is no identifier still
    makes a valid OpenAPI component name."""
    import shutil

    from fastapi.testclient import TestClient

    run = shutil.copytree(seed_runs["linear"], tmp_path / "my run (v2)")
    with TestClient(serve.create_app([run], data_dir=mnist_dir, map_size=10)) as c:
        spec = ok(c.get("/openapi.json"))
        assert all(re.fullmatch(r"[\w.-]+", name) for name in spec["components"]["schemas"])
        assert ok(post(c, "/api/decode", {"model": "my run (v2)", "code": [0.0] * 5}))["image"]
        r = post(c, "/api/decode", {"model": "my run (v2)", "code": [0.0] * 4})
        assert r.status_code == 422 and "takes 5" in r.text
        assert post(c, "/api/decode", {"model": "linear", "code": [0.0] * 5}).status_code == 422


def test_an_unreadable_body_gets_the_documented_400(client):
    r = client.post("/api/encode", content=b'{"model": "conv", "image": "\xff"}', headers=JSON)
    assert r.status_code == 400 and "UTF-8" in r.json()["detail"]


def test_allow_names_every_method_of_the_path(client):
    r = client.options("/api/stats")  # GET and DELETE are two routes on one path
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "DELETE"}
    r = client.put("/api/encode")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_server_side_timings_are_recorded_and_sent(client):
    assert client.delete("/api/stats").status_code == 204
    r = post(client, "/api/decode", {"model": "linear", "code": [0.0] * 5})
    assert re.fullmatch(r"app;dur=\d+\.\d{3}", r.headers["server-timing"])
    post(client, "/api/decode", {"model": "linear", "code": [0.5] * 5})
    stats = ok(client.get("/api/stats"))
    assert stats["/api/decode"]["count"] == 2
    assert 0 < stats["/api/decode"]["p50_ms"] <= stats["/api/decode"]["p99_ms"]
    client.get("/no/such/page")
    assert "/no/such/page" not in ok(client.get("/api/stats"))  # one bucket, not one per path


def test_timing_rings_do_not_grow_with_traffic():
    t = serve.Timings(["/a"], size=4)
    for i in range(10):
        t.record("/a", i / 1000)
    assert len(t._rings["/a"]) == 4 and t.summary()["/a"]["count"] == 10
    assert t.summary()["/a"]["max_ms"] == pytest.approx(9.0)  # the newest four: 6..9 ms


# --- bad input: a 4xx that says what is wrong -------------------------------------------------

BAD_BODIES = [
    ("/api/encode", {"model": "conv", "image": [0.0] * 783}, 422, "got 783 numbers"),
    ("/api/encode", {"model": "conv", "image": [[0.0] * 27] * 28}, 422, "28 rows of 28"),
    ("/api/encode", {"model": "conv", "image": [1.5, *GOOD[1:]]}, 422, "outside [0, 1]"),
    ("/api/encode", {"model": "conv", "image": [*GOOD[:9], -0.1, *GOOD[10:]]}, 422, "image[9]"),
    ("/api/encode", {"model": "conv", "image": ["a", *GOOD[1:]]}, 422, "image[0] is a string"),
    ("/api/encode", {"model": "conv", "image": [True, *GOOD[1:]]}, 422, "is a boolean"),
    ("/api/encode", {"model": "conv", "image": {"0": 1}}, 422, "not an object"),
    ("/api/encode", {"model": "conv"}, 422, "Field required"),
    ("/api/encode", {"model": "conv", "image": GOOD, "extra": 1}, 422, "Extra inputs"),
    ("/api/encode", {"model": "nope", "image": GOOD}, 422, "Input should be 'linear' or 'conv'"),
    ("/api/encode", {"model": "../../etc/passwd", "image": GOOD}, 422, "should be 'linear' or"),
    ("/api/encode", {"model": 3, "image": GOOD}, 422, "should be 'linear' or 'conv'"),
    ("/api/decode", {"model": "nope", "code": [0.0] * 5}, 422,
     "model should be one of the loaded models: 'linear', 'conv'"),
    ("/api/decode", {"code": [0.0] * 5}, 422, "one of the loaded models"),
    ("/api/decode", {"model": "linear", "code": [0.0] * 4}, 422,
     "code has 4 numbers but model 'linear' takes 5"),
    ("/api/decode", {"model": "linear", "code": [1e30] * 5}, 422, "too large"),
    ("/api/decode", {"model": "linear", "code": [10**400] * 5}, 422, "too large for a float"),
    ("/api/decode", {"model": "linear", "code": []}, 422, "code has 0 numbers"),
    ("/api/map/decode", {"model": "conv", "point": [1.0]}, 422, "two numbers"),
    ("/api/interpolate", {"model": "conv", "start": {"image": GOOD, "code": [0.0] * 64},
                          "end": {"image": GOOD}}, 422, "exactly one of image or code"),
    ("/api/interpolate", {"model": "conv", "start": {}, "end": {"image": GOOD}}, 422,
     "exactly one of image or code"),
    ("/api/interpolate", {"model": "linear", "start": {"code": [0.0] * 64}, "end": {"image": GOOD}},
     422, "code has 64 numbers but model 'linear' takes 5"),
    ("/api/interpolate", {"model": "conv", "start": {"image": GOOD}, "end": {"image": GOOD},
                          "steps": 1}, 422, "greater than or equal to 2"),
    ("/api/interpolate", {"model": "conv", "start": {"image": GOOD}, "end": {"image": GOOD},
                          "steps": 2.5}, 422, "valid integer"),
    ("/api/compare", {"image": GOOD, "models": ["conv", "nope"]}, 422, "should be 'linear' or"),
    ("/api/sample", {"model": "linear", "sampler": "prior"}, 422, "Input should be 'gmm' or 'gaussian'"),
    ("/api/sample", {"model": "conv", "n": 0}, 422, "greater than or equal to 1"),
    ("/api/sample", {"model": "conv", "seed": "1"}, 422, "valid integer"),
    ("/api/sample", {"sampler": "gmm"}, 422, "one of the loaded models"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_BODIES,
                         ids=[f"{p}-{m[:24]}" for p, _, _, m in BAD_BODIES])
def test_bad_input_gets_a_4xx_naming_the_problem(client, path, body, status, message):
    r = post(client, path, body)
    assert r.status_code == status, r.text
    assert message in r.text
    assert len(r.content) < 2000  # the input is not echoed back


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"model": "conv", "image": [NaN' + b", 0" * 783 + b"]}", "NaN and infinity"),
    (b'{"model": "conv", "image": [0' + b", 0" * 782 + b", Infinity]}", "image[783] is inf"),
    (b'{"model": "conv", "image": [0, 0', "JSON decode error"),
    (b"[" * 50_000 + b"]" * 50_000, ""),  # too deep for Python's parser: still a 4xx
])
def test_broken_json_gets_a_4xx(client, raw, message):
    r = client.post("/api/encode", content=raw, headers=JSON)
    assert 400 <= r.status_code < 500 and message in r.text


def test_a_body_over_the_limit_gets_413_declared_or_streamed(client):
    big = b"[" + b"0," * 600_000 + b"0]"
    r = client.post("/api/encode", content=big, headers=JSON)
    assert r.status_code == 413 and "limit is 1,000,000 bytes" in r.json()["detail"]
    streamed = client.post("/api/encode", content=iter([big[:700_000], big[700_000:]]), headers=JSON)
    assert streamed.status_code == 413 and "limit" in streamed.json()["detail"]


def test_query_parameters_are_checked(client):
    r = client.get("/api/map", params={"model": "x" * 5000})
    assert r.status_code == 422 and "should be 'linear' or 'conv'" in r.text and len(r.content) < 2000
    assert "Field required" in client.get("/api/directions").text


# --- fuzz: whatever arrives, no 5xx -----------------------------------------------------------

# no subnormals: the trainer turns on flush-to-zero process-wide, and hypothesis then refuses them
floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False)
json_leaf = (st.none() | st.booleans() | st.integers(-(10**40), 10**40) | st.text(max_size=4) | floats)
json_any = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=12)
number = floats | st.integers(-(10**30), 10**30) | json_any


@st.composite
def near_image(draw):
    """784 (or 783/785) zeros with a few entries replaced: valid-looking, often not valid."""
    pixels = [0.0] * draw(st.sampled_from([783, 784, 784, 785]))
    for _ in range(draw(st.integers(0, 3))):
        pixels[draw(st.integers(0, len(pixels) - 1))] = draw(number)
    if len(pixels) == 784 and draw(st.booleans()):
        return [pixels[i : i + 28] for i in range(0, 784, 28)]  # as 28 rows
    return pixels


model_id = st.sampled_from(["linear", "conv"]) | json_any
image = near_image() | st.lists(number, max_size=6) | json_any
code = st.lists(number, min_size=0, max_size=70) | json_any
end = st.fixed_dictionaries({}, optional={"image": image, "code": code}) | json_any
body = st.fixed_dictionaries({}, optional={
    "model": model_id, "image": image, "code": code, "point": st.lists(number, max_size=3),
    "start": end, "end": end, "steps": st.integers(-3, 100) | json_any,
    "models": st.lists(model_id, max_size=3) | json_any,
    "n": st.integers(-3, 300) | json_any, "seed": st.integers(-3, 2**33) | json_any,
    "sampler": st.sampled_from(["prior", "gmm", "gaussian"]) | json_any}) | json_any
POSTS = ["/api/encode", "/api/decode", "/api/reconstruct", "/api/compare", "/api/map/decode",
         "/api/interpolate", "/api/sample"]


def no_nulls(value) -> bool:
    if isinstance(value, dict):
        return all(no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(no_nulls(v) for v in value)
    return value is not None


# no example database: the tests write nothing into the working tree
FUZZ = {"deadline": None, "database": None,
        "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}


@settings(max_examples=300, **FUZZ)
@given(path=st.sampled_from(POSTS), payload=body)
def test_fuzzed_requests_never_get_a_5xx(client, path, payload):
    r = client.post(path, content=json.dumps(payload), headers=JSON)  # NaN/Infinity included
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        assert no_nulls(r.json())  # a NaN would have come out as null
    else:
        assert r.json()["detail"]


@settings(max_examples=60, **FUZZ)
@given(path=st.sampled_from(["/api/map", "/api/directions"]), model=st.text(max_size=30))
def test_fuzzed_queries_never_get_a_5xx(client, path, model):
    assert client.get(path, params={"model": model}).status_code in (200, 422)


# --- start-up and the command line ------------------------------------------------------------


def test_repeated_folder_names_get_distinct_ids(tmp_path):
    dirs = [tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "run-2"]
    assert serve.unique_ids(dirs) == ["run", "run-2", "run-2-2"]


def test_a_missing_run_folder_is_a_readable_error(tmp_path, mnist_dir):
    with pytest.raises(AelabError, match="does not exist"):
        serve.create_app([tmp_path / "nope"], data_dir=mnist_dir)
    with pytest.raises(AelabError, match="map size 5"):
        serve.load_explorer([tmp_path], map_size=5)


def test_serve_help_states_defaults_and_wide_hosts_warn(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("default: 127.0.0.1", "default: 8000", "default: best", "default: 2000",
                    "default: 1"):
        assert default in text
    for local in ("127.0.0.1", "localhost", "::1"):
        assert serve.host_warning(local) is None
    for wide in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert "other machines" in serve.host_warning(wide)


def test_serve_fails_cleanly_on_a_bad_run_folder_or_busy_port(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(AelabError, match="cannot listen on 127.0.0.1"):
            serve.bind("127.0.0.1", busy.getsockname()[1])


def test_building_the_cli_imports_no_web_or_plotting_library():
    """`aelab --help` builds every subcommand's parser; FastAPI, uvicorn, onnx, matplotlib
    and scikit-learn are imported only by the commands that use them."""
    import subprocess
    import sys

    code = ("import sys; from aelab.cli import build_parser; build_parser(); "
            "heavy = {'fastapi', 'uvicorn', 'onnx', 'matplotlib', 'sklearn', 'starlette', 'pydantic'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
