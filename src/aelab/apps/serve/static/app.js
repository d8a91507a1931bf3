// aelab explorer: draw a digit (or pick a test image, or upload a PNG) and watch every loaded
// model encode and decode it. Plain browser JavaScript: no build step, nothing loaded from
// anywhere but this server.
//
// Each model takes and makes images of its own shape [C, H, W] (GET /api/models), which
// travel as C*H*W numbers in [0, 1], channels first, row-major: C planes of H rows of W.
"use strict";

const SIZE = 28; // MNIST images are 28x28...
const BOX = 20; // ...with the digit fitted into a 20x20 box (LeCun et al., the MNIST page)
const STROKE = 18; // pen width on the 280-px pad: about 2 px once fitted into the box
const INK = 0.02; // pad values above this count as ink when finding the digit's box
// MNIST's digits have their centre of mass on pixel (14, 14), half a pixel past the middle
// of the 28x28 field (measured on the 10,000 test digits: 13.99, 14.01 on average). Other
// grey sizes get the same recipe scaled: the box 20/28 of the side, the centre as far past
// the middle in proportion.
const CENTRE = SIZE / 2 + 0.5;
const SAMPLES = 16; // images per click of a card's Sample button: two rows of 8
const FIRST_SAMPLES = 8; // the row of samples each card shows on load
const MAX_SEED = 4294967295; // the API's largest seed
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]; // one colour per digit

// Latencies in ms, input event -> result painted; the browser tests read them.
const timings = { draw: [], slider: [] };
window.__aelabTimings = timings;

// inputs: the image each shape's models reconstruct now, by shape key ("1x28x28"), as
// { shape, pixels }; recon: per shape key, the latest-only job that sends one to them.
const state = { models: [], cards: new Map(), inputs: new Map(), recon: new Map(), slots: { a: null, b: null } };
const $ = (sel, root = document) => root.querySelector(sel);
const shapeKey = (shape) => shape.join("x");
const isGrey = (shape) => shape[0] === 1;
const shapeText = ([c, h, w]) => `${c}×${h}×${w}`;

// --- talking to the server ----------------------------------------------------------------

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  };
  const res = await fetch("api/" + path, init);
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error(errorText(res.status, data));
  return data;
}

function errorText(status, data) {
  const detail = data && data.detail;
  if (Array.isArray(detail)) return detail.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("; ");
  return `error ${status}: ${detail || "request failed"}`;
}

function setStatus(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// Work in progress, so that tests can wait for the page to settle: window.__aelabIdle().
let running = 0;
window.__aelabIdle = () => running === 0;

async function track(promise) {
  running++;
  try {
    const result = await promise;
    if (state.readyText) setStatus(state.readyText); // an earlier error is over
    return result;
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    running--;
  }
}

// Runs `work` on the newest job only: while one request is in flight, newer jobs replace
// each other, so a fast stream of pointer events never queues up stale requests. Each call
// returns a promise that resolves once the queue is empty (its job, or a newer one, done).
function latest(work) {
  let busy = null;
  let next = null;
  async function pump() {
    while (next !== null) {
      const job = next;
      next = null;
      await track(work(job));
    }
    busy = null;
  }
  return (job) => {
    next = job;
    if (!busy) busy = pump();
    return busy;
  };
}

// --- images -----------------------------------------------------------------------------

// Paints C*H*W numbers (channels first: C planes of H rows of W) on a canvas, which is
// resized to W x H pixels (CSS scales it up, pixelated). Grey: one plane for R, G and B.
function paintImage(canvas, pixels, [c, h, w]) {
  if (canvas.width !== w || canvas.height !== h) Object.assign(canvas, { width: w, height: h });
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const plane = h * w;
  for (let i = 0; i < plane; i++) {
    for (let k = 0; k < 3; k++) img.data[4 * i + k] = Math.round(pixels[(c === 3 ? k * plane : 0) + i] * 255);
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function clearCanvas(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

// Bounding box [x0, x1) x [y0, y1) of the ink, or null for an empty pad.
function inkBox(gray, w, h) {
  let x0 = w, x1 = -1, y0 = h, y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (gray[y * w + x] > INK) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x0, x1: x1 + 1, y0, y1: y1 + 1 };
}

function centreOfMass(gray, w, box) {
  let m = 0, mx = 0, my = 0;
  for (let y = box.y0; y < box.y1; y++) {
    for (let x = box.x0; x < box.x1; x++) {
      const v = gray[y * w + x];
      m += v;
      mx += v * (x + 0.5); // pixel centres
      my += v * (y + 0.5);
    }
  }
  return { x: mx / m, y: my / m };
}

// For source pixels n0..n1-1 mapped to [(i - n0) * s + off, ... + s): the target pixels
// (0..size-1) each one overlaps, as a flat [target, overlap, target, overlap, ...] list per
// source pixel.
function overlaps(n0, n1, s, off, size) {
  const out = [];
  for (let i = n0; i < n1; i++) {
    const a = (i - n0) * s + off, b = a + s, list = [];
    for (let t = Math.max(0, Math.floor(a)); t < Math.min(size, Math.ceil(b)); t++) {
      const weight = Math.min(b, t + 1) - Math.max(a, t);
      if (weight > 0) list.push(t, weight);
    }
    out.push(list);
  }
  return out;
}

// MNIST's recipe: fit the ink's bounding box into 20x20 keeping its aspect ratio, then place
// it in 28x28 with its centre of mass at the CENTRE; for a grey shape [1, H, W] the same
// scaled (box 20/28 of each side, centre at 14.5/28 of it). Each source pixel adds its value
// times its overlap with each target pixel (exact area averaging), which anti-aliases it.
function fitDrawing(gray, w, h, [, H, W]) {
  const box = inkBox(gray, w, h);
  if (!box) return null;
  const s = Math.min((BOX / SIZE) * W / (box.x1 - box.x0), (BOX / SIZE) * H / (box.y1 - box.y0));
  const com = centreOfMass(gray, w, box);
  const xs = overlaps(box.x0, box.x1, s, (CENTRE / SIZE) * W - (com.x - box.x0) * s, W);
  const ys = overlaps(box.y0, box.y1, s, (CENTRE / SIZE) * H - (com.y - box.y0) * s, H);
  const out = new Float32Array(H * W);
  for (let y = box.y0; y < box.y1; y++) {
    const yl = ys[y - box.y0];
    for (let x = box.x0; x < box.x1; x++) {
      const v = gray[y * w + x];
      if (v === 0) continue;
      const xl = xs[x - box.x0];
      for (let j = 0; j < yl.length; j += 2) {
        for (let k = 0; k < xl.length; k += 2) out[yl[j] * W + xl[k]] += v * yl[j + 1] * xl[k + 1];
      }
    }
  }
  for (let i = 0; i < out.length; i++) out[i] = Math.min(1, out[i]);
  return out;
}

const round4 = (v) => Math.round(v * 1e4) / 1e4;

// --- the drawing pad --------------------------------------------------------------------

const pad = {
  canvas: null,
  ctx: null,
  last: null,

  init(onChange) {
    this.canvas = $("#pad");
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.clear();
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => {
      const t0 = performance.now();
      c.setPointerCapture(e.pointerId);
      this.last = this.point(e);
      this.stroke([this.last]);
      onChange(t0);
    });
    c.addEventListener("pointermove", (e) => {
      if (!this.last) return;
      const t0 = performance.now();
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
      const points = (events.length ? events : [e]).map((ev) => this.point(ev));
      this.stroke([this.last, ...points]);
      this.last = points[points.length - 1];
      onChange(t0);
    });
    for (const type of ["pointerup", "pointercancel"]) c.addEventListener(type, () => { this.last = null; });
  },

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * (this.canvas.width / r.width),
      (e.clientY - r.top) * (this.canvas.height / r.height)];
  },

  stroke(points) {
    const ctx = this.ctx;
    Object.assign(ctx, { strokeStyle: "#fff", fillStyle: "#fff", lineWidth: STROKE, lineCap: "round", lineJoin: "round" });
    ctx.beginPath();
    if (points.length === 1) {
      ctx.arc(points[0][0], points[0][1], STROKE / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.moveTo(...points[0]);
    for (const p of points.slice(1)) ctx.lineTo(...p);
    ctx.stroke();
  },

  clear() {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  },

  gray() {
    const { width: w, height: h } = this.canvas;
    const data = this.ctx.getImageData(0, 0, w, h).data;
    const g = new Float32Array(w * h);
    for (let i = 0; i < g.length; i++) g[i] = data[4 * i] / 255;
    return { g, w, h };
  },

  // Put a grey image (light digit on dark) on the pad, fitted and centred, to draw over.
  showImage(gray, w, h) {
    const tmp = document.createElement("canvas");
    Object.assign(tmp, { width: w, height: h });
    const img = tmp.getContext("2d").createImageData(w, h);
    for (let i = 0; i < w * h; i++) {
      const v = Math.round(gray[i] * 255);
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    tmp.getContext("2d").putImageData(img, 0, 0);
    this.clear();
    const side = this.canvas.width, scale = Math.min(side / w, side / h);
    const dw = w * scale, dh = h * scale;
    this.ctx.imageSmoothingQuality = "high";
    this.ctx.drawImage(tmp, (side - dw) / 2, (side - dh) / 2, dw, dh);
  },
};

// A picture (an ImageBitmap) as grey values, light digit on dark: transparent parts count as
// white paper, and an image with a light border (a dark digit on paper) is inverted, like
// `aelab reconstruct`.
function readDigit(bitmap) {
  const scale = Math.min(1, 1024 / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale)), h = Math.max(1, Math.round(bitmap.height * scale));
  const d = drawn(bitmap, w, h);
  const g = new Float32Array(w * h);
  for (let i = 0; i < g.length; i++) g[i] = (0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2]) / 255;
  let border = 0, n = 0;
  for (let x = 0; x < w; x++) { border += g[x] + g[(h - 1) * w + x]; n += 2; }
  for (let y = 0; y < h; y++) { border += g[y * w] + g[y * w + w - 1]; n += 2; }
  if (border / n > 0.5) for (let i = 0; i < g.length; i++) g[i] = 1 - g[i];
  return { g, w, h };
}

// RGBA bytes of a picture drawn w x h on white paper (the browser's resampling).
function drawn(bitmap, w, h) {
  const c = document.createElement("canvas");
  Object.assign(c, { width: w, height: h });
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, w, h);
  return ctx.getImageData(0, 0, w, h).data;
}

// A picture resized to a model's [C, H, W] as it is (no fitting, no inversion): C*H*W
// numbers, grey (luma) or colour planes R, G, B.
function resized(bitmap, [c, h, w]) {
  const d = drawn(bitmap, w, h), plane = h * w, out = new Float32Array(c * plane);
  for (let i = 0; i < plane; i++) {
    if (c === 1) out[i] = (0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2]) / 255;
    else for (let k = 0; k < 3; k++) out[k * plane + i] = d[4 * i + k] / 255;
  }
  return out;
}

// --- the models' cards --------------------------------------------------------------------

function showCode(card, code) {
  const c = card.codeBars, ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const top = Math.max(1e-6, ...code.map(Math.abs)), mid = c.height / 2, bw = c.width / code.length;
  ctx.fillStyle = "#2f6fdf";
  code.forEach((v, i) => {
    const hgt = (v / top) * (mid - 2);
    ctx.fillRect(i * bw + 0.5, Math.min(mid, mid - hgt), Math.max(1, bw - 1), Math.abs(hgt));
  });
  ctx.fillStyle = "#999";
  ctx.fillRect(0, mid, c.width, 1);
  card.codeText.textContent = code.length <= 8
    ? `code [${code.map((v) => v.toFixed(2)).join(", ")}]`
    : `code: ${code.length} numbers, largest |z| ${top.toFixed(2)}`;
}

function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

// The sliders move the code along their directions, starting from `base` (the last input,
// map pick or the mean code): code = base + sum_k (value_k - start_k) * direction_k.
function setBase(card, code, image) {
  const d = card.dirs;
  card.base = code.slice();
  card.start = d.directions.map((dir, k) => dot(code, dir) - dot(d.mean, dir));
  card.sliders.forEach((input, k) => { input.value = card.start[k]; });
  if (image) paintImage(card.sliderOut, image, card.shape);
}

function sliderCode(card) {
  const code = card.base.slice();
  card.dirs.directions.forEach((dir, k) => {
    const delta = Number(card.sliders[k].value) - card.start[k];
    for (let i = 0; i < code.length; i++) code[i] += delta * dir[i];
  });
  return code;
}

function buildSliders(card) {
  const d = card.dirs, box = $(".sliders", card.el);
  $(".sliders-title", card.el).textContent = d.kind === "code"
    ? "Sliders: the code's numbers"
    : `Sliders: top ${d.directions.length} principal directions of the test codes`;
  card.sliders = d.directions.map((_, k) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    const name = d.kind === "code" ? `z${k + 1}` : `PC${k + 1}`;
    label.textContent = name;
    Object.assign(input, { type: "range", min: d.low[k], max: d.high[k], step: (d.high[k] - d.low[k]) / 400 });
    input.setAttribute("aria-label", `${card.info.id} ${name}`);
    input.addEventListener("input", () => card.sliderJob({ code: sliderCode(card), t0: performance.now() }));
    box.append(label, input);
    return input;
  });
  setBase(card, d.mean, null);
}

// --- the latent map ------------------------------------------------------------------------

function mapFrame(map, canvas) {
  const [x0, x1, y0, y1] = map.bounds;
  const padX = 0.05 * (x1 - x0 || 1), padY = 0.05 * (y1 - y0 || 1);
  const lo = [x0 - padX, y0 - padY], span = [x1 - x0 + 2 * padX, y1 - y0 + 2 * padY];
  const W = canvas.width, H = canvas.height;
  return {
    toCanvas: (p) => [((p[0] - lo[0]) / span[0]) * W, H - ((p[1] - lo[1]) / span[1]) * H],
    fromCanvas: (x, y) => [lo[0] + (x / W) * span[0], lo[1] + ((H - y) / H) * span[1]],
  };
}

function drawMap(card, marker) {
  const c = card.mapCanvas, ctx = c.getContext("2d");
  if (!card.mapBackground) {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, c.width, c.height);
    card.map.points.forEach((p, i) => {
      const [x, y] = card.frame.toCanvas(p);
      const label = card.map.labels[i];
      ctx.fillStyle = label >= 0 ? PALETTE[label % 10] : "#888";  // -1: an unlabelled dataset
      ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    });
    card.mapBackground = ctx.getImageData(0, 0, c.width, c.height);
  }
  ctx.putImageData(card.mapBackground, 0, 0);
  if (marker) {
    const [x, y] = card.frame.toCanvas(marker);
    Object.assign(ctx, { strokeStyle: "#000", lineWidth: 2 });
    ctx.beginPath();
    ctx.arc(x, y, 6, 0, 2 * Math.PI);
    ctx.stroke();
  }
}

function mapPoint(card, e) {
  const c = card.mapCanvas, r = c.getBoundingClientRect();
  return card.frame.fromCanvas((e.clientX - r.left) * (c.width / r.width), (e.clientY - r.top) * (c.height / r.height));
}

function setupMap(card) {
  const m = card.map;
  card.frame = mapFrame(m, card.mapCanvas);
  $(".map-title", card.el).textContent = m.kind === "code"
    ? `Latent map: the 2-number codes of ${m.points.length} test images`
    : `Latent map: ${m.points.length} test codes, first two principal directions ` +
      `(${(100 * (m.explained[0] + m.explained[1])).toFixed(0)}% of variance)`;
  drawMap(card, null);
  const legend = $(".legend", card.el);
  const labels = Math.min(PALETTE.length, 1 + Math.max(-1, ...m.labels)); // none if unlabelled
  PALETTE.slice(0, labels).forEach((colour, label) => {
    const chip = document.createElement("span");
    chip.textContent = String(label);
    chip.style.setProperty("--chip", colour);
    legend.append(chip);
  });
  const caption = $(".map-caption", card.el);
  const hover = latest(async (point) => {
    const r = await api("map/decode", { model: card.info.id, point });
    paintImage(card.mapOut, r.image, card.shape);
    caption.textContent = `(${point.map((v) => v.toFixed(2)).join(", ")})`;
  });
  card.mapCanvas.addEventListener("pointermove", (e) => hover(mapPoint(card, e)));
  card.mapCanvas.addEventListener("pointerdown", (e) => track(pick(card, mapPoint(card, e))));
}

async function pick(card, point) {
  const r = await api("map/decode", { model: card.info.id, point });
  card.picked = { model: card.info.id, code: r.code, images: new Map([[card.key, { shape: card.shape, pixels: r.image }]]) };
  paintImage(card.mapOut, r.image, card.shape);
  drawMap(card, point);
  setBase(card, r.code, r.image);
  for (const b of [card.aFromMap, card.bFromMap]) b.disabled = false;
}

// --- interpolation ---------------------------------------------------------------------------

// A slot (A or B) is a map pick (a code of one model, and its image) or the inputs of the
// moment, one image per shape; a model gets its own code, else an image of its shape.
function endFor(slot, card) {
  if (slot.model === card.info.id) return { code: slot.code };
  const input = slot.images.get(card.key);
  return input ? { image: Array.from(input.pixels, round4) } : null;
}

function setSlot(name, slot) {
  state.slots[name] = slot;
  const { shape, pixels } = slot.images.values().next().value;
  paintImage($(`#slot-${name}`), pixels, shape);
  track(interpolate());
}

async function interpolate() {
  const { a, b } = state.slots;
  if (!a || !b) return;
  const steps = Math.min(16, Math.max(2, Number($("#steps").value) || 8));
  await Promise.all([...state.cards.values()].map(async (card) => {
    const id = card.info.id, start = endFor(a, card), end = endFor(b, card);
    if (!start || !end) {
      const hint = document.createElement("span");
      Object.assign(hint, { className: "hint", textContent: `A and B hold no ${shapeText(card.shape)} image for this model` });
      card.interp.replaceChildren(hint);
      return;
    }
    const r = await api("interpolate", { model: id, start, end, steps });
    card.interp.replaceChildren(...imageCanvases(r.images, card.shape));
  }));
}

// --- samples ---------------------------------------------------------------------------------

function imageCanvases(images, shape) {
  return images.map((image) => {
    const c = document.createElement("canvas");
    c.className = "digit";
    paintImage(c, image, shape);
    return c;
  });
}

function setupSamples(card) {
  card.samplerChoice.replaceChildren(...card.info.samplers.map((name) => new Option(name, name)));
  card.sampleButton.addEventListener("click", () => track(drawSamples(card)));
}

// A fitted sampler is fitted by the server on its first request, which can take a while.
async function drawSamples(card) {
  const sampler = card.samplerChoice.value;
  const seed = Math.min(MAX_SEED, Math.max(0, Math.floor(Number(card.sampleSeed.value)) || 0));
  card.sampleSeed.value = seed;
  card.sampleButton.disabled = true;
  card.sampleNote.textContent = `sampling from ${sampler}…`;
  try {
    const r = await api("sample", { model: card.info.id, sampler, seed, n: SAMPLES });
    card.sampleFirst.replaceChildren();
    card.sampleGrid.replaceChildren(...imageCanvases(r.images, card.shape));
    card.sampleNote.textContent = `${r.images.length} samples from ${r.sampler}, seed ${r.seed}`;
  } catch (e) {
    card.sampleNote.textContent = "";
    throw e;
  } finally {
    card.sampleButton.disabled = false;
  }
}

// On load: one row from the default sampler, seed 0, above the (empty) grid that Sample fills.
async function firstSamples(card) {
  const sampler = card.info.samplers[0];
  card.sampleNote.textContent = `sampling from ${sampler}…`;
  let r;
  try {
    r = await api("sample", { model: card.info.id, sampler, seed: 0, n: FIRST_SAMPLES });
  } catch (e) {
    card.sampleNote.textContent = "";
    throw e;
  }
  if (card.sampleGrid.childElementCount) return; // Sample was clicked meanwhile
  card.sampleFirst.replaceChildren(...imageCanvases(r.images, card.shape));
  card.sampleNote.textContent = `a first row: ${r.images.length} samples from ${r.sampler}, seed ${r.seed}; Sample draws ${SAMPLES}`;
}

// --- putting it together ---------------------------------------------------------------------

async function buildCard(info) {
  const el = $("#card-template").content.firstElementChild.cloneNode(true);
  el.dataset.model = info.id;
  $("#models").append(el);
  const card = {
    info, el, shape: info.image_shape, key: shapeKey(info.image_shape),
    input: $(".input", el), recon: $(".recon", el), codeBars: $(".code-bars", el), codeText: $(".code-text", el),
    sliderOut: $(".slider-out", el), mapCanvas: $(".map", el), mapOut: $(".map-out", el),
    interp: $(".interp", el), aFromMap: $(".a-from-map", el), bFromMap: $(".b-from-map", el),
    samplerChoice: $(".sampler-choice", el), sampleSeed: $(".sample-seed", el),
    sampleButton: $(".sample-button", el), sampleNote: $(".sample-note", el),
    sampleFirst: $(".sample-first", el), sampleGrid: $(".sample-grid", el),
  };
  $(".title", el).textContent = info.id;
  const mse = info.test_mse == null ? "" : ` · test MSE ${info.test_mse.toFixed(4)}`;
  $(".meta", el).textContent = `${info.model} on ${info.dataset} (${shapeText(info.image_shape)}) · ` +
    `${info.latent_dim}-number code · epoch ${info.epoch}${mse}`;
  card.sliderJob = latest(async ({ code, t0 }) => {
    const r = await api("decode", { model: info.id, code });
    paintImage(card.sliderOut, r.image, card.shape);
    timings.slider.push(performance.now() - t0);
  });
  card.aFromMap.addEventListener("click", () => setSlot("a", card.picked));
  card.bFromMap.addEventListener("click", () => setSlot("b", card.picked));
  [card.dirs, card.map] = await Promise.all([api(`directions?model=${encodeURIComponent(info.id)}`),
    api(`map?model=${encodeURIComponent(info.id)}`)]);
  buildSliders(card);
  setupMap(card);
  setupSamples(card);
  state.cards.set(info.id, card);
}

// The models of one shape reconstruct its input, in one request (each fetch costs the
// browser a few ms); timed from the input event (t0; null: not a person's) to the last
// reconstruction painted. Models of other shapes never get it.
function reconstructor(key) {
  return latest(async ({ shape, pixels, t0 }) => {
    const models = [...state.cards.values()].filter((c) => c.key === key).map((c) => c.info.id);
    if (!models.length) return; // no card of this shape is ready
    const { results } = await api("compare", { image: Array.from(pixels, round4), models });
    for (const r of results) {
      const card = state.cards.get(r.model);
      paintImage(card.input, pixels, shape);
      paintImage(card.recon, r.image, shape);
      showCode(card, r.code);
      setBase(card, r.code, r.image);
    }
    if (t0 !== null) timings.draw.push(performance.now() - t0);
  });
}

// The image the models of `shape` see from now on; resolves once they have shown it.
function setInput(shape, pixels, t0 = null) {
  const key = shapeKey(shape);
  state.inputs.set(key, { shape, pixels });
  if (state.greyShapes.length && key === shapeKey(state.greyShapes[0])) paintImage($("#preview"), pixels, shape);
  if (!state.recon.has(key)) state.recon.set(key, reconstructor(key));
  return state.recon.get(key)({ shape, pixels, t0 });
}

// A drawing goes to every grey model, fitted to its size as MNIST's digits were.
function inputChanged(t0) {
  const { g, w, h } = pad.gray();
  for (const shape of state.greyShapes) {
    const pixels = fitDrawing(g, w, h, shape);
    if (!pixels) return; // an empty pad
    setInput(shape, pixels, t0);
  }
}

// A PNG goes to every model: on the pad and fitted like a drawing for 28x28 grey models (as
// MNIST was made), resized as it is to the size and colour of any other.
async function upload(file) {
  const t0 = performance.now();
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (err) {
    throw new Error(`cannot read ${file.name} as an image (${err.message})`);
  }
  if (state.greyShapes.length) {
    const image = readDigit(bitmap);
    pad.showImage(image.g, image.w, image.h);
  }
  const { g, w, h } = pad.gray();
  for (const { shape } of state.shapes.values()) {
    const pixels = shapeKey(shape) === "1x28x28" ? fitDrawing(g, w, h, shape) : resized(bitmap, shape);
    if (pixels) setInput(shape, pixels, t0);
  }
  if (!state.greyShapes.length) {
    const [first] = state.shapes.values();
    paintImage($("#test-view"), state.inputs.get(shapeKey(first.shape)).pixels, first.shape);
    $("#test-caption").textContent = `${file.name}, resized to ${shapeText(first.shape)}`;
  }
}

// Test image `index` of a model's dataset: shown (on the pad too, for a grey one, to draw
// over) and sent to every model of its shape. Resolves once they have shown it.
async function showTestImage(modelId, index) {
  const info = state.models.find((m) => m.id === modelId);
  const i = Math.min(info.test_images - 1, Math.max(0, Math.floor(index) || 0));
  $("#test-index").value = i;
  const r = await api(`models/${encodeURIComponent(modelId)}/test-image/${i}`);
  const shape = info.image_shape;
  paintImage($("#test-view"), r.image, shape);
  const label = r.label >= 0 ? `, label ${r.label}` : "";
  $("#test-caption").textContent = `test image ${i} of ${info.dataset} (${shapeText(shape)}${label})`;
  if (isGrey(shape)) pad.showImage(r.image, shape[2], shape[1]);
  await setInput(shape, r.image);
}

function setupTestImages() {
  const source = $("#test-source"), index = $("#test-index");
  const seen = new Set();
  for (const m of state.models) { // one entry per dataset and shape
    const key = `${m.dataset} ${shapeKey(m.image_shape)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    source.append(new Option(`${m.dataset} (${shapeText(m.image_shape)})`, m.id));
  }
  const show = (i) => track(showTestImage(source.value, i));
  source.addEventListener("change", () => show(0));
  index.addEventListener("change", () => show(Number(index.value)));
  $("#test-prev").addEventListener("click", () => show(Number(index.value) - 1));
  $("#test-next").addEventListener("click", () => show(Number(index.value) + 1));
}

function setupInput() {
  pad.init(inputChanged);
  $("#clear").addEventListener("click", () => {
    pad.clear();
    for (const shape of state.greyShapes) state.inputs.delete(shapeKey(shape));
    clearCanvas($("#preview"));
  });
  $("#upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) track(upload(file));
    e.target.value = ""; // choosing the same file again still fires `change`
  });
  const fromInput = (name) => () => {
    if (state.inputs.size) setSlot(name, { images: new Map(state.inputs) });
    else setStatus("draw a digit or pick a test image first", true);
  };
  $("#a-from-drawing").addEventListener("click", fromInput("a"));
  $("#b-from-drawing").addEventListener("click", fromInput("b"));
  $("#steps").addEventListener("change", () => track(interpolate()));
}

// The shapes served: the pad only where some model is grey; its caption names what the
// first grey shape's models see.
function setupShapes() {
  state.shapes = new Map();
  for (const m of state.models) {
    const key = shapeKey(m.image_shape);
    if (!state.shapes.has(key)) state.shapes.set(key, { shape: m.image_shape, first: m.id });
  }
  state.greyShapes = [...state.shapes.values()].map((s) => s.shape).filter(isGrey);
  const grey = state.greyShapes[0];
  $("#draw-area").hidden = !grey;
  $("#input-title").textContent = grey ? "Draw a digit" : "Pick an image";
  if (grey && shapeKey(grey) !== "1x28x28") {
    $("#preview-caption").textContent = `what the ${grey[1]}×${grey[2]} models see: fitted and ` +
      "centred by mass, as MNIST was made";
  }
}

// Something to look at before any input: each shape's models get test image 0 of its first
// model (the first one on the pad or in view), and each card a first row of samples.
async function firstLook() {
  const shapes = [...state.shapes.values()];
  await showTestImage(shapes[0].first, 0);
  await Promise.all([ // each tracked on its own: one failure does not stop the others
    ...shapes.slice(1).map(({ shape, first }) => track((async () => {
      const r = await api(`models/${encodeURIComponent(first)}/test-image/0`);
      await setInput(shape, r.image);
    })())),
    ...[...state.cards.values()].map((card) => track(firstSamples(card))),
  ]);
}

async function main() {
  try {
    state.models = await api("models");
    setupShapes();
    setupInput();
    await Promise.all(state.models.map(buildCard));
    // keep the cards in the server's order (they were appended as their data arrived)
    for (const m of state.models) $("#models").append(state.cards.get(m.id).el);
    setupTestImages();
    const what = state.greyShapes.length ? "draw a digit, pick a test image or upload a PNG"
      : "pick a test image or upload a PNG";
    state.readyText = `${state.models.length} model${state.models.length === 1 ? "" : "s"} loaded: ${what}`;
    setStatus(state.readyText);
    await track(firstLook());
    document.body.dataset.ready = "1";
  } catch (e) {
    setStatus(`could not load the models (${e.message})`, true);
  }
}

main();
