// aelab explorer: draw a digit and watch every loaded model encode and decode it.
// Plain browser JavaScript: no build step, nothing loaded from anywhere but this server.
"use strict";

const SIZE = 28; // MNIST images are 28x28...
const BOX = 20; // ...with the digit fitted into a 20x20 box (LeCun et al., the MNIST page)
const STROKE = 18; // pen width on the 280-px pad: about 2 px once fitted into the box
const INK = 0.02; // pad values above this count as ink when finding the digit's box
// MNIST's digits have their centre of mass on pixel (14, 14), half a pixel past the middle
// of the 28x28 field (measured on the 10,000 test digits: 13.99, 14.01 on average).
const CENTRE = SIZE / 2 + 0.5;
const SAMPLES = 16; // images per click of a card's Sample button: two rows of 8
const MAX_SEED = 4294967295; // the API's largest seed
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]; // one colour per digit

// Latencies in ms, input event -> result painted; the browser tests read them.
const timings = { draw: [], slider: [] };
window.__aelabTimings = timings;

const state = { models: [], cards: new Map(), pixels: null, slots: { a: null, b: null } };
const $ = (sel, root = document) => root.querySelector(sel);

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
// each other, so a fast stream of pointer events never queues up stale requests.
function latest(work) {
  let busy = false;
  let next = null;
  async function pump() {
    busy = true;
    while (next !== null) {
      const job = next;
      next = null;
      await track(work(job));
    }
    busy = false;
  }
  return (job) => {
    next = job;
    if (!busy) pump();
  };
}

// --- images -----------------------------------------------------------------------------

function paintDigit(canvas, pixels) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(SIZE, SIZE);
  for (let i = 0; i < SIZE * SIZE; i++) {
    const v = Math.round(pixels[i] * 255);
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
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

// For source pixels n0..n1-1 mapped to [(i - n0) * s + off, ... + s): the target pixels each
// one overlaps, as a flat [target, overlap, target, overlap, ...] list per source pixel.
function overlaps(n0, n1, s, off) {
  const out = [];
  for (let i = n0; i < n1; i++) {
    const a = (i - n0) * s + off, b = a + s, list = [];
    for (let t = Math.max(0, Math.floor(a)); t < Math.min(SIZE, Math.ceil(b)); t++) {
      const weight = Math.min(b, t + 1) - Math.max(a, t);
      if (weight > 0) list.push(t, weight);
    }
    out.push(list);
  }
  return out;
}

// MNIST's recipe: fit the ink's bounding box into 20x20 keeping its aspect ratio, then place
// it in 28x28 with its centre of mass at the CENTRE. Each source pixel adds its value times
// its overlap with each target pixel (exact area averaging), which anti-aliases the result.
function toMnist(gray, w, h) {
  const box = inkBox(gray, w, h);
  if (!box) return null;
  const s = BOX / Math.max(box.x1 - box.x0, box.y1 - box.y0);
  const com = centreOfMass(gray, w, box);
  const xs = overlaps(box.x0, box.x1, s, CENTRE - (com.x - box.x0) * s);
  const ys = overlaps(box.y0, box.y1, s, CENTRE - (com.y - box.y0) * s);
  const out = new Float32Array(SIZE * SIZE);
  for (let y = box.y0; y < box.y1; y++) {
    const yl = ys[y - box.y0];
    for (let x = box.x0; x < box.x1; x++) {
      const v = gray[y * w + x];
      if (v === 0) continue;
      const xl = xs[x - box.x0];
      for (let j = 0; j < yl.length; j += 2) {
        for (let k = 0; k < xl.length; k += 2) out[yl[j] * SIZE + xl[k]] += v * yl[j + 1] * xl[k + 1];
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

// A PNG as grey values, light digit on dark: transparent parts count as white paper, and an
// image with a light border (a dark digit on paper) is inverted, like `aelab reconstruct`.
async function readPng(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, 1024 / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale)), h = Math.max(1, Math.round(bitmap.height * scale));
  const c = document.createElement("canvas");
  Object.assign(c, { width: w, height: h });
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  ctx.drawImage(bitmap, 0, 0, w, h);
  const d = ctx.getImageData(0, 0, w, h).data;
  const g = new Float32Array(w * h);
  for (let i = 0; i < g.length; i++) g[i] = (0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2]) / 255;
  let border = 0, n = 0;
  for (let x = 0; x < w; x++) { border += g[x] + g[(h - 1) * w + x]; n += 2; }
  for (let y = 0; y < h; y++) { border += g[y * w] + g[y * w + w - 1]; n += 2; }
  if (border / n > 0.5) for (let i = 0; i < g.length; i++) g[i] = 1 - g[i];
  return { g, w, h };
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

// The sliders move the code along their directions, starting from `base` (the last drawing,
// map pick or the mean code): code = base + sum_k (value_k - start_k) * direction_k.
function setBase(card, code, image) {
  const d = card.dirs;
  card.base = code.slice();
  card.start = d.directions.map((dir, k) => dot(code, dir) - dot(d.mean, dir));
  card.sliders.forEach((input, k) => { input.value = card.start[k]; });
  if (image) paintDigit(card.sliderOut, image);
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
    ? `Latent map: the 2-number codes of ${m.points.length} test digits`
    : `Latent map: ${m.points.length} test codes, first two principal directions ` +
      `(${(100 * (m.explained[0] + m.explained[1])).toFixed(0)}% of variance)`;
  drawMap(card, null);
  const legend = $(".legend", card.el);
  PALETTE.forEach((colour, digit) => {
    const chip = document.createElement("span");
    chip.textContent = String(digit);
    chip.style.setProperty("--chip", colour);
    legend.append(chip);
  });
  const caption = $(".map-caption", card.el);
  const hover = latest(async (point) => {
    const r = await api("map/decode", { model: card.info.id, point });
    paintDigit(card.mapOut, r.image);
    caption.textContent = `(${point.map((v) => v.toFixed(2)).join(", ")})`;
  });
  card.mapCanvas.addEventListener("pointermove", (e) => hover(mapPoint(card, e)));
  card.mapCanvas.addEventListener("pointerdown", (e) => track(pick(card, mapPoint(card, e))));
}

async function pick(card, point) {
  const r = await api("map/decode", { model: card.info.id, point });
  card.picked = { image: r.image, code: r.code, model: card.info.id };
  paintDigit(card.mapOut, r.image);
  drawMap(card, point);
  setBase(card, r.code, r.image);
  for (const b of [card.aFromMap, card.bFromMap]) b.disabled = false;
}

// --- interpolation ---------------------------------------------------------------------------

function endFor(slot, modelId) {
  return slot.model === modelId ? { code: slot.code } : { image: slot.image };
}

function setSlot(name, slot) {
  state.slots[name] = slot;
  paintDigit($(`#slot-${name}`), slot.image);
  track(interpolate());
}

async function interpolate() {
  const { a, b } = state.slots;
  if (!a || !b) return;
  const steps = Math.min(16, Math.max(2, Number($("#steps").value) || 8));
  await Promise.all([...state.cards.values()].map(async (card) => {
    const id = card.info.id;
    const r = await api("interpolate", { model: id, start: endFor(a, id), end: endFor(b, id), steps });
    card.interp.replaceChildren(...digitCanvases(r.images));
  }));
}

// --- samples ---------------------------------------------------------------------------------

function digitCanvases(images) {
  return images.map((image) => {
    const c = document.createElement("canvas");
    Object.assign(c, { width: SIZE, height: SIZE, className: "digit" });
    paintDigit(c, image);
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
    card.sampleGrid.replaceChildren(...digitCanvases(r.images));
    card.sampleNote.textContent = `${r.images.length} samples from ${r.sampler}, seed ${r.seed}`;
  } catch (e) {
    card.sampleNote.textContent = "";
    throw e;
  } finally {
    card.sampleButton.disabled = false;
  }
}

// --- putting it together ---------------------------------------------------------------------

async function buildCard(info) {
  const el = $("#card-template").content.firstElementChild.cloneNode(true);
  el.dataset.model = info.id;
  $("#models").append(el);
  const card = {
    info, el,
    recon: $(".recon", el), codeBars: $(".code-bars", el), codeText: $(".code-text", el),
    sliderOut: $(".slider-out", el), mapCanvas: $(".map", el), mapOut: $(".map-out", el),
    interp: $(".interp", el), aFromMap: $(".a-from-map", el), bFromMap: $(".b-from-map", el),
    samplerChoice: $(".sampler-choice", el), sampleSeed: $(".sample-seed", el),
    sampleButton: $(".sample-button", el), sampleNote: $(".sample-note", el),
    sampleGrid: $(".sample-grid", el),
  };
  $(".title", el).textContent = info.id;
  const mse = info.test_mse == null ? "" : ` · test MSE ${info.test_mse.toFixed(4)}`;
  $(".meta", el).textContent = `${info.model} on ${info.dataset} · ${info.latent_dim}-number code · epoch ${info.epoch}${mse}`;
  card.sliderJob = latest(async ({ code, t0 }) => {
    const r = await api("decode", { model: info.id, code });
    paintDigit(card.sliderOut, r.image);
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

// Every model reconstructs the drawing, in one request (each fetch costs the browser a few
// ms); timed from the input event to the last reconstruction painted.
const reconstructAll = latest(async ({ pixels, t0 }) => {
  const models = [...state.cards.keys()]; // those whose cards are ready
  const { results } = await api("compare", { image: Array.from(pixels, round4), models });
  for (const r of results) {
    const card = state.cards.get(r.model);
    paintDigit(card.recon, r.image);
    showCode(card, r.code);
    setBase(card, r.code, r.image);
  }
  timings.draw.push(performance.now() - t0);
});

function inputChanged(t0) {
  const { g, w, h } = pad.gray();
  state.pixels = toMnist(g, w, h);
  if (!state.pixels) return;
  paintDigit($("#preview"), state.pixels);
  reconstructAll({ pixels: state.pixels, t0 });
}

async function upload(file) {
  const t0 = performance.now();
  let image;
  try {
    image = await readPng(file);
  } catch (err) {
    throw new Error(`cannot read ${file.name} as an image (${err.message})`);
  }
  pad.showImage(image.g, image.w, image.h);
  inputChanged(t0);
}

function setupInput() {
  pad.init(inputChanged);
  $("#clear").addEventListener("click", () => {
    pad.clear();
    state.pixels = null;
    clearCanvas($("#preview"));
  });
  $("#upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) track(upload(file));
    e.target.value = ""; // choosing the same file again still fires `change`
  });
  const fromDrawing = (name) => () => {
    if (state.pixels) setSlot(name, { image: Array.from(state.pixels, round4) });
    else setStatus("draw a digit first", true);
  };
  $("#a-from-drawing").addEventListener("click", fromDrawing("a"));
  $("#b-from-drawing").addEventListener("click", fromDrawing("b"));
  $("#steps").addEventListener("change", () => track(interpolate()));
}

async function main() {
  setupInput();
  try {
    state.models = await api("models");
    await Promise.all(state.models.map(buildCard));
    // keep the cards in the server's order (they were appended as their data arrived)
    for (const m of state.models) $("#models").append(state.cards.get(m.id).el);
    state.readyText = `${state.models.length} model${state.models.length === 1 ? "" : "s"} loaded: draw a digit`;
    setStatus(state.readyText);
    document.body.dataset.ready = "1";
  } catch (e) {
    setStatus(`could not load the models (${e.message})`, true);
  }
}

main();
