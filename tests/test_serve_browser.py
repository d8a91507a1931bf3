"""The explorer page in real headless Chromium (Playwright), against the real `aelab serve`.

Needs Debian's `chromium` at /usr/bin/chromium; Playwright only drives it (no browser
download). Set AELAB_UPDATE_SCREENSHOT=1 to also refresh docs/explorer.png.
"""

import math
import os
import shutil
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import serve_process
from PIL import Image
from test_samplers import prefit
from test_serve_shapes import train_shape_runs

from aelab.data import load_dataset

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
FRAME_MS = 1000 / 60

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at "
                                "/usr/bin/chromium (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")

# Digits as pen strokes on the 280x280 pad: lists of (x, y) points.
ONE = [[(150, 40), (135, 240)]]
SEVEN = [[(70, 50), (210, 50), (120, 240)]]
ZERO = [[(140 + 60 * math.sin(t / 20 * 2 * math.pi), 140 - 95 * math.cos(t / 20 * 2 * math.pi))
         for t in range(21)]]


@pytest.fixture(scope="module")
def server_url(seed_runs, mnist_dir):
    """`aelab serve` of the linear and conv runs on 127.0.0.1 (conftest.serve_process), their
    fitted samplers saved beforehand (quickly: test_samplers.prefit), as a first request
    would have the server do."""
    runs = [seed_runs["linear"], seed_runs["conv"]]
    prefit(runs, mnist_dir)
    with serve_process(runs, mnist_dir, 1000) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update"])
        yield b
        b.close()


@contextmanager
def opened(browser, url: str):
    """The page at `url`, once loaded; after, no script errors and no failed requests."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    yield page
    page.close()
    assert not errors, errors


@pytest.fixture
def page(browser, server_url):
    with opened(browser, server_url) as page:
        yield page


def settle(page, timeout: float = 10.0):
    """Wait until the page has no request in flight. Polled from here: the page's CSP
    (rightly) forbids the string evaluation that wait_for_function would use."""
    deadline = time.monotonic() + timeout
    while not page.evaluate("window.__aelabIdle()"):
        assert time.monotonic() < deadline, "the page did not settle"
        time.sleep(0.01)


def draw(page, strokes, steps: int = 6):
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=steps)
        page.mouse.up()
    settle(page)


def pixels(page, selector: str) -> np.ndarray:
    """A 28x28 canvas as grey levels (28, 28), -1 where nothing was painted."""
    rgba = page.evaluate("""s => Array.from(document.querySelector(s).getContext('2d')
                               .getImageData(0, 0, 28, 28).data)""", selector)
    rgba = np.array(rgba).reshape(28, 28, 4)
    return np.where(rgba[..., 3] == 255, rgba[..., 0], -1)


def card(model: str, part: str) -> str:
    return f"article[data-model='{model}'] .{part}"


def assert_mnist_like(image: np.ndarray):
    """Ink fitted into 20x20, centre of mass on pixel (14, 14): what MNIST's digits measure."""
    ink = np.argwhere(image > 0)
    (y0, x0), (y1, x1) = ink.min(0), ink.max(0)
    assert max(y1 - y0, x1 - x0) + 1 in (20, 21)  # 20, or 21 with an anti-aliased edge
    ys, xs = np.mgrid[:28, :28]
    mass = image.clip(0).sum()
    com = ((ys * image.clip(0)).sum() / mass, (xs * image.clip(0)).sum() / mass)
    np.testing.assert_allclose(com, (14, 14), atol=0.25)


def test_drawing_shows_each_models_reconstruction_and_it_changes(page):
    draw(page, ONE)
    assert_mnist_like(pixels(page, "#preview"))
    first = {m: (pixels(page, card(m, "recon")), page.inner_text(card(m, "code-text")))
             for m in ("linear", "conv")}
    for image, _ in first.values():
        assert (image >= 0).all() and image.max() > 0  # painted, not blank
    draw(page, SEVEN)
    for m, (image, code) in first.items():
        assert not np.array_equal(pixels(page, card(m, "recon")), image), m
        assert page.inner_text(card(m, "code-text")) != code, m


def test_a_slider_decodes_as_it_moves(page):
    draw(page, ONE)
    for m in ("linear", "conv"):
        before = pixels(page, card(m, "slider-out"))
        page.locator(card(m, "sliders") + " input").first.focus()
        page.keyboard.press("End")  # the first slider to its maximum
        settle(page)
        assert not np.array_equal(pixels(page, card(m, "slider-out")), before), m


def test_the_latent_map_decodes_where_you_point(page):
    for m in ("linear", "conv"):
        box = page.locator(card(m, "map")).bounding_box()
        page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.5 * box["height"])
        settle(page)
        hovered = pixels(page, card(m, "map-out"))
        assert (hovered >= 0).all()
        assert page.locator(card(m, "a-from-map")).is_disabled()
        page.mouse.click(box["x"] + 0.7 * box["width"], box["y"] + 0.4 * box["height"])
        settle(page)
        assert not np.array_equal(pixels(page, card(m, "map-out")), hovered)
        assert page.locator(card(m, "a-from-map")).is_enabled()


def test_interpolation_between_drawn_and_picked_digits(page):
    draw(page, ONE)
    page.click("#a-from-drawing")
    page.click("#clear")
    draw(page, ZERO)
    page.click("#b-from-drawing")
    settle(page)
    for m in ("linear", "conv"):
        row = page.locator(card(m, "interp") + " canvas")
        assert row.count() == 8
        ends = [pixels(page, f"{card(m, 'interp')} canvas:nth-child({i})") for i in (1, 8)]
        assert not np.array_equal(*ends), m
    box = page.locator(card("conv", "map")).bounding_box()  # now B from the conv map
    page.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
    settle(page)
    before = pixels(page, f"{card('conv', 'interp')} canvas:nth-child(8)")
    page.click(card("conv", "b-from-map"))
    settle(page)
    assert not np.array_equal(pixels(page, f"{card('conv', 'interp')} canvas:nth-child(8)"), before)


def test_the_samples_panel_draws_images_from_the_chosen_sampler(page):
    for m in ("linear", "conv"):
        choice, grid = card(m, "sampler-choice"), card(m, "sample-grid")
        assert page.locator(choice + " option").all_inner_texts() == ["gmm", "gaussian"]
        assert page.locator(grid + " canvas").count() == 0
        page.click(card(m, "sample-button"))
        settle(page)
        assert page.locator(grid + " canvas").count() == 16
        first = [pixels(page, f"{grid} canvas:nth-child({i})") for i in (1, 2)]
        for image in first:
            assert (image >= 0).all() and image.max() > 0  # painted, not blank
        assert not np.array_equal(*first)  # two random codes, two images
        assert page.inner_text(card(m, "sample-note")) == "16 samples from gmm, seed 0"
        page.select_option(choice, "gaussian")
        page.fill(card(m, "sample-seed"), "5")
        page.click(card(m, "sample-button"))
        settle(page)
        assert page.inner_text(card(m, "sample-note")) == "16 samples from gaussian, seed 5"
        assert not np.array_equal(pixels(page, f"{grid} canvas:nth-child(1)"), first[0])


@pytest.mark.parametrize("paper", [False, True], ids=["light-on-dark", "dark-on-paper"])
def test_an_uploaded_png_goes_through_the_same_preprocessing(page, mnist_dir, tmp_path, paper):
    x, _ = load_dataset("mnist", "test", data_dir=mnist_dir)
    digit = x[0].numpy()  # a 7, already in MNIST's form
    picture = 255 - digit if paper else digit
    Image.fromarray(picture).resize((84, 84), Image.BILINEAR).save(tmp_path / "digit.png")
    page.set_input_files("#upload", str(tmp_path / "digit.png"))
    settle(page)
    seen = pixels(page, "#preview")
    assert_mnist_like(seen)
    assert np.corrcoef(seen.ravel(), digit.ravel())[0, 1] > 0.8  # the same digit, re-made
    assert (pixels(page, card("conv", "recon")) >= 0).all()


def test_interaction_latency_and_screenshot(page, tmp_path, capsys):
    """Median input-to-painted time in the page's own clock (performance.now())."""
    draw(page, SEVEN, steps=20)
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 150)
    page.mouse.down()
    for i in range(40):  # a slow stroke: one pointer event at a time
        page.mouse.move(box["x"] + 60 + 4 * i, box["y"] + 150 + (i % 5))
        time.sleep(0.02)
    page.mouse.up()
    settle(page)
    page.locator(card("conv", "sliders") + " input").nth(1).focus()
    for _ in range(40):
        page.keyboard.press("ArrowRight")
        time.sleep(0.02)
    settle(page)
    t = page.evaluate("window.__aelabTimings")
    draw_ms, slider_ms = statistics.median(t["draw"]), statistics.median(t["slider"])
    with capsys.disabled():
        print(f"\nbrowser: draw -> reconstructions painted, median {draw_ms:.1f} ms over {len(t['draw'])}; "
              f"slider -> decoded painted, median {slider_ms:.1f} ms over {len(t['slider'])} "
              f"(target one frame, {FRAME_MS:.1f} ms)")
    # the target is one frame; a shared CI machine gets three before this fails
    assert draw_ms < 3 * FRAME_MS and slider_ms < 3 * FRAME_MS
    page.click("#clear")
    draw(page, SEVEN)
    page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
    assert (tmp_path / "explorer.png").stat().st_size > 20_000
    if os.environ.get("AELAB_UPDATE_SCREENSHOT") == "1":
        shutil.copy(tmp_path / "explorer.png", ROOT / "docs" / "explorer.png")


# --- models of other shapes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_url(seed_runs, mnist_dir, tmp_path_factory):
    """`aelab serve` of the seed runs beside test_serve_shapes' grey 1x8x8 VAE and colour
    3x16x16 RAE (trained once per session), their fitted samplers saved beforehand."""
    shape_runs = train_shape_runs(tmp_path_factory, mnist_dir)
    runs = [seed_runs["linear"], seed_runs["conv"], shape_runs["digits-vae"], shape_runs["patches-rae"]]
    prefit(runs, mnist_dir)
    with serve_process(runs, mnist_dir, 100) as url:
        yield url


def rgba(page, selector: str) -> np.ndarray:
    """A canvas's own pixels, (H, W, 4) RGBA."""
    w, h, data = page.evaluate("""s => { const c = document.querySelector(s), ctx = c.getContext('2d');
        return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width, c.height).data)]; }""",
                               selector)
    return np.array(data).reshape(h, w, 4)


def shown(page, selector: str, shape) -> np.ndarray:
    """A canvas painted (opaque) at the image size of `shape` (C, H, W), not all black: RGB."""
    image = rgba(page, selector)
    assert image.shape == (shape[1], shape[2], 4), selector
    assert (image[..., 3] == 255).all() and image[..., :3].max() > 0, selector
    return image[..., :3]


def test_models_of_every_shape_show_images_on_load_in_their_size_and_colour(browser, shapes_url, tmp_path):
    shapes = {"linear": (1, 28, 28), "conv": (1, 28, 28), "digits-vae": (1, 8, 8),
              "patches-rae": (3, 16, 16)}
    with opened(browser, shapes_url) as page:
        settle(page)
        assert page.is_visible("#pad")  # grey models are served: there is something to draw on
        shown(page, "#preview", (1, 28, 28))  # the first model's test image 0, on load
        for m, shape in shapes.items():  # on load: input, reconstruction, sliders, samples
            for part in ("input", "recon", "slider-out"):
                shown(page, card(m, part), shape)
            assert page.locator(card(m, "sample-first") + " canvas").count() == 8
            shown(page, f"{card(m, 'sample-first')} canvas:nth-child(1)", shape)
            assert page.locator(card(m, "sample-grid") + " canvas").count() == 0
        colour = {part: shown(page, card("patches-rae", part), shapes["patches-rae"])
                  for part in ("input", "recon")}
        for part, image in colour.items():
            assert (image[..., 0] != image[..., 1]).any(), part  # colour, not grey
        grey = shown(page, card("digits-vae", "recon"), shapes["digits-vae"])
        assert (grey[..., 0] == grey[..., 1]).all()

        draw(page, ONE)  # a drawing goes to the grey models only, fitted to each one's size
        assert not np.array_equal(shown(page, card("digits-vae", "recon"), (1, 8, 8)), grey)
        assert np.array_equal(shown(page, card("patches-rae", "recon"), (3, 16, 16)), colour["recon"])

        page.select_option("#test-source", "patches-rae")  # a colour test image, by the picker
        settle(page)
        picked = shown(page, "#test-view", (3, 16, 16))
        assert (picked[..., 0] != picked[..., 1]).any()
        np.testing.assert_array_equal(shown(page, card("patches-rae", "input"), (3, 16, 16)), picked)

        red_blue = np.zeros((32, 32, 3), np.uint8)  # an uploaded PNG: resized, colour kept
        red_blue[:, :16, 0] = red_blue[:, 16:, 2] = 255
        Image.fromarray(red_blue).save(tmp_path / "red-blue.png")
        page.set_input_files("#upload", str(tmp_path / "red-blue.png"))
        settle(page)
        seen = shown(page, card("patches-rae", "input"), (3, 16, 16))
        np.testing.assert_array_equal(seen[:, :6], [[[255, 0, 0]] * 6] * 16)  # R, G, B planes
        np.testing.assert_array_equal(seen[:, 10:], [[[0, 0, 255]] * 6] * 16)  # in their order
