// The search page: everything it shows comes from the evaluator's /v1 API, the same one the
// Python client and CLI call. No framework and nothing from outside this origin, so it works
// offline. The API key (when the deployment has one) lives in sessionStorage only and goes out as
// `Authorization: Bearer <key>` on each API call; thumbnails are fetched the same way and shown
// through blob: URLs, because an <img src> could not carry the header.

const API = {
  collections: new URL("../v1/collections", location.href),
  search: new URL("../v1/search", location.href),
  basemap: (collection) =>
    collection
      ? new URL(`../v1/collections/${encodeURIComponent(collection)}/basemap`, location.href)
      : new URL("../v1/basemap", location.href),
  landforms: (collection) =>
    new URL(`../v1/collections/${encodeURIComponent(collection)}/ground-truth`, location.href),
  sites: (collection, landform) =>
    new URL(
      `../v1/collections/${encodeURIComponent(collection)}/ground-truth/${encodeURIComponent(landform)}`,
      location.href,
    ),
  image: (collection, id, size) =>
    new URL(
      `../v1/collections/${encodeURIComponent(collection)}/points/${encodeURIComponent(id)}/image?size=${size}`,
      location.href,
    ),
};
const KEY_STORAGE = "marsbench.apiKey";
const COLLECTION_STORAGE = "marsbench.collection";
const THUMB_PX = 192;
const THUMB_PARALLEL = 6;
const MARS_RADIUS_KM = 3396.19; // as the evaluator converts radius_km (metrics/geo.py)
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const state = {
  collections: [],
  mode: "text",
  imageDataUri: null,
  request: null, // the last search body, for "more"
  hits: [],
  nextOffset: null,
  region: null,
  objectUrls: [],
  thumbQueue: [],
  thumbsActive: 0,
  generation: 0, // bumped per new search: late thumbnails of an old one are dropped
  mapZoom: false,
  basemap: null, // {url, source, collection}: the map image, as a blob: URL
  sites: null, // {landform, points: [[lon, lat], ...]}: the ground truth drawn on the map
  sitesGeneration: 0,
  pages: 0, // pages of the current search on screen, for the shareable link
  writtenHash: "", // the last hash the page wrote itself: a hashchange to it is not a new query
};

// ---------------------------------------------------------------------------- API calls

class ApiProblem extends Error {
  constructor(status, error, message, detail) {
    super(message);
    this.status = status;
    this.error = error;
    this.detail = detail;
  }
}

function authHeaders(extra = {}) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function problemOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page): the status says enough
  }
  const error = body && body.error && typeof body.error === "object" ? body.error : null;
  if (error && typeof error.message === "string") {
    // {error: {message, type, code, param, detail}} (OpenAI's shape, since issue 18)
    return new ApiProblem(response.status, error.type || `HTTP ${response.status}`, error.message, error.detail);
  }
  const nested = body && body.error && typeof body.error === "object" ? body.error : null;
  if (nested && typeof nested.message === "string") {
    const kind = nested.type || nested.code || `HTTP ${response.status}`;
    return new ApiProblem(response.status, kind, nested.message, nested.detail ?? body.detail);
  }
  if (body && typeof body.message === "string") {
    return new ApiProblem(response.status, body.error || `HTTP ${response.status}`, body.message, body.detail);
  }
  if (body && body.detail !== undefined) {
    // FastAPI's own validation errors: {detail: [{loc, msg}, ...]}
    const text = Array.isArray(body.detail)
      ? body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ")
      : String(body.detail);
    return new ApiProblem(response.status, "ValidationError", text, null);
  }
  return new ApiProblem(response.status, `HTTP ${response.status}`, response.statusText || "request failed", null);
}

async function apiJson(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { ...options, headers: authHeaders(options.headers) });
  } catch (err) {
    throw new ApiProblem(0, "NetworkError", `the evaluator did not answer (${err.message})`, null);
  }
  if (!response.ok) throw await problemOf(response);
  return response.json();
}

// ---------------------------------------------------------------------------- messages

function showMessage(kind, title, text, detail) {
  const box = $("message");
  box.replaceChildren();
  box.className = `message ${kind}`;
  const strong = document.createElement("strong");
  strong.textContent = title;
  box.append(strong, document.createTextNode(` ${text}`));
  if (detail && Object.keys(detail).length) {
    const more = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "detail";
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(detail, null, 2);
    more.append(summary, pre);
    box.append(more);
  }
  box.hidden = false;
}

function showProblem(problem) {
  if (problem instanceof ApiProblem) {
    const status = problem.status ? `${problem.status} ` : "";
    showMessage("error", `${status}${problem.error}:`, problem.message, problem.detail);
    if (problem.status === 401) {
      $("api-key").focus();
      $("api-key").classList.add("attention");
    }
  } else {
    showMessage("error", "Error:", problem.message || String(problem), null);
  }
}

function clearMessage() {
  $("message").hidden = true;
}

// ---------------------------------------------------------------------------- collections

async function loadCollections() {
  const select = $("collection");
  select.replaceChildren(new Option("loading…", ""));
  select.disabled = true;
  let listing;
  try {
    listing = await apiJson(API.collections);
  } catch (problem) {
    select.replaceChildren(new Option("(collections unavailable)", ""));
    showProblem(problem);
    return;
  }
  state.collections = listing.data;
  $("indexer-status").textContent =
    listing.indexer === "connected"
      ? `${listing.data.length} collection${listing.data.length === 1 ? "" : "s"} · indexer connected`
      : `${listing.data.length} collections · indexer ${listing.indexer}`;
  $("indexer-status").title = listing.message || "";
  select.replaceChildren();
  if (!listing.data.length) {
    select.append(new Option("(no collections yet)", ""));
    showMessage("info", "No collections.", "Index a dataset first (marsbench index, or POST /v1/jobs on the indexer).");
    return;
  }
  const groups = new Map();
  for (const c of listing.data) {
    const task = c.task || "unknown task";
    if (!groups.has(task)) groups.set(task, document.createElement("optgroup"));
    const group = groups.get(task);
    group.label = task;
    group.append(new Option(`${c.model || c.name} · ${c.points.toLocaleString()} pts`, c.name));
  }
  for (const group of groups.values()) select.append(group);
  const remembered = sessionStorage.getItem(COLLECTION_STORAGE);
  if (remembered && listing.data.some((c) => c.name === remembered)) select.value = remembered;
  select.disabled = false;
  if (listing.indexer !== "connected") {
    showMessage("info", "Jobs unknown:", `${listing.message} Type the model by hand.`, null);
  } else {
    clearMessage();
  }
  onCollectionChange();
  if (location.hash.length > 1) await restoreFromHash();
}

function currentCollection() {
  return state.collections.find((c) => c.name === $("collection").value) || null;
}

function onCollectionChange() {
  const c = currentCollection();
  const meta = $("collection-meta");
  meta.replaceChildren();
  if (!c) return;
  sessionStorage.setItem(COLLECTION_STORAGE, c.name);
  const rows = [
    ["name", c.name],
    ["task", c.task || "unknown"],
    ["points", c.points.toLocaleString()],
    ["indexing", c.state || "no job known"],
    ["dataset", c.dataset_dir || "unknown"],
  ];
  for (const [term, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dd.title = value;
    if (term === "indexing") dd.className = `state-${c.state || "unknown"}`;
    meta.append(dt, dd);
  }
  const model = $("model");
  if (c.model) model.value = c.model;
  else if (model.dataset.auto === "1") model.value = "";
  model.dataset.auto = c.model ? "1" : "0";
  model.placeholder = c.model ? "" : "model unknown: type the one it was indexed with";
  const regionUsable = c.geo || !c.task;
  $("region-fields").disabled = !regionUsable;
  $("region-hint").textContent = regionUsable ? "(geo collections)" : `(not for ${c.task})`;
  loadBasemap(c.name);
  return loadLandforms(c);
}

// ---------------------------------------------------------------------------- the request

class InputProblem extends Error {}

function numberOf(id, label) {
  const value = Number.parseFloat($(id).value);
  if (!Number.isFinite(value)) throw new InputProblem(`${label} must be a number`);
  return value;
}

function regionOf() {
  if ($("region-fields").disabled) return null;
  const kind = document.querySelector("input[name=region]:checked").value;
  if (kind === "bbox") {
    const box = [
      numberOf("lon-min", "lon min"),
      numberOf("lat-min", "lat min"),
      numberOf("lon-max", "lon max"),
      numberOf("lat-max", "lat max"),
    ];
    if (box[0] > box[2] || box[1] > box[3]) throw new InputProblem("the box needs min ≤ max on both axes");
    return { bbox: box };
  }
  if (kind === "circle") {
    const radius = numberOf("radius-km", "radius");
    if (radius <= 0) throw new InputProblem("the radius must be above 0 km");
    return { center: [numberOf("center-lon", "center lon"), numberOf("center-lat", "center lat")], radius_km: radius };
  }
  return null;
}

function buildRequest() {
  const collection = $("collection").value;
  if (!collection) throw new InputProblem("choose a collection");
  const model = $("model").value.trim();
  if (!model) throw new InputProblem("give the model the collection was indexed with");
  const body = { collection, model, k: Number($("k").value), offset: 0 };
  if (state.mode === "text") {
    const text = $("text").value.trim();
    if (!text) throw new InputProblem("type a text query");
    body.text = text;
  } else {
    if (!state.imageDataUri) throw new InputProblem("choose a query image");
    body.image = state.imageDataUri;
  }
  const region = regionOf();
  if (region) body.region = region;
  return body;
}

// ---------------------------------------------------------------------------- searching

async function search(more) {
  let body;
  try {
    body = more ? { ...state.request, offset: state.nextOffset } : buildRequest();
  } catch (problem) {
    showMessage("error", "Check the form:", problem.message, null);
    return;
  }
  if (!more) resetResults();
  setBusy(true);
  const started = performance.now();
  try {
    const page = await apiJson(API.search, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    clearMessage();
    state.request = body;
    state.region = body.region || null;
    state.nextOffset = page.next_offset;
    const first = state.hits.length;
    state.hits.push(...page.hits);
    state.pages = more ? state.pages + 1 : 1;
    writeHash();
    renderCards(page.hits, first);
    renderMap();
    renderSummary(performance.now() - started);
  } catch (problem) {
    showProblem(problem);
    if (!more) $("summary").textContent = "No results: the search failed (see above).";
  } finally {
    setBusy(false);
    // Finished searches, counted: lets a script (or a browser test) wait for the next one.
    document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1);
  }
}

function setBusy(busy) {
  $("search-button").disabled = busy;
  $("more").disabled = busy;
  document.body.classList.toggle("busy", busy);
  $("search-button").textContent = busy ? "Searching…" : "Search";
}

function resetResults() {
  state.generation += 1;
  state.thumbQueue = [];
  for (const url of state.objectUrls) URL.revokeObjectURL(url);
  state.objectUrls = [];
  state.hits = [];
  state.nextOffset = null;
  state.region = null;
  $("grid").replaceChildren();
  $("more").hidden = true;
  $("summary").textContent = "Searching…";
  renderMap();
}

function renderSummary(ms) {
  const n = state.hits.length;
  const what = state.request.text !== undefined ? `“${state.request.text}”` : "the query image";
  const where = state.region ? " inside the region" : "";
  const tail = state.nextOffset !== null ? " · more available" : n ? " · no more" : "";
  $("summary").textContent = n
    ? `${n} hit${n === 1 ? "" : "s"} for ${what}${where} · ${Math.round(ms)} ms${tail}`
    : `No hits for ${what}${where}.`;
  $("more").hidden = state.nextOffset === null;
  $("copy-link").hidden = false;
}

// ---------------------------------------------------------------------------- result cards

function formatLonLat({ lon, lat }) {
  const ew = lon < 0 ? "W" : "E";
  const ns = lat < 0 ? "S" : "N";
  return `${Math.abs(lon).toFixed(2)}°${ew}, ${Math.abs(lat).toFixed(2)}°${ns}`;
}

function describeHit(payload) {
  // One line per payload kind: geo tiles, landform images, paired samples (marsbench.tasks).
  const lines = [];
  const loc = payload.location;
  if (loc && Number.isFinite(loc.lon) && Number.isFinite(loc.lat)) lines.push(["coords", formatLonLat(loc)]);
  if (payload.label) lines.push(["label", String(payload.label)]);
  if (payload.source) lines.push(["source", String(payload.source)]);
  if (payload.caption) lines.push(["caption", String(payload.caption)]);
  return lines;
}

function renderCards(hits, first) {
  const grid = $("grid");
  const top = state.hits.length ? state.hits[0].score : 1;
  hits.forEach((hit, i) => {
    const rank = first + i + 1;
    const card = document.createElement("li");
    card.className = "card";
    card.dataset.rank = String(rank);
    card.dataset.id = hit.id;
    const loc = hit.payload.location;
    if (loc && Number.isFinite(loc.lon) && Number.isFinite(loc.lat)) {
      card.dataset.lon = String(loc.lon);
      card.dataset.lat = String(loc.lat);
    }

    const thumb = document.createElement("div");
    thumb.className = "thumb";
    const placeholder = document.createElement("span");
    placeholder.className = "placeholder";
    placeholder.textContent = "loading…";
    const img = document.createElement("img");
    img.className = "thumb-img";
    img.alt = `hit ${rank}`;
    img.hidden = true;
    thumb.append(placeholder, img);

    const head = document.createElement("div");
    head.className = "card-head";
    const rankEl = document.createElement("span");
    rankEl.className = "rank";
    rankEl.textContent = `#${rank}`;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(4);
    score.title = `cosine similarity ${hit.score}`;
    head.append(rankEl, score);

    const bar = document.createElement("div");
    bar.className = "score-bar";
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(2, Math.min(100, (100 * hit.score) / (top || 1)))}%`;
    bar.append(fill);

    const name = document.createElement("div");
    name.className = "name";
    const label = hit.payload.name || hit.payload.key || hit.id;
    name.textContent = String(label);
    name.title = String(label);

    const facts = document.createElement("dl");
    facts.className = "facts";
    for (const [term, value] of describeHit(hit.payload)) {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dd.title = value;
      dd.className = `fact-${term}`;
      facts.append(dt, dd);
    }
    card.append(thumb, head, bar, name, facts);
    card.addEventListener("mouseenter", () => highlight(rank, true));
    card.addEventListener("mouseleave", () => highlight(rank, false));
    grid.append(card);
    queueThumb(hit, img, placeholder);
  });
}

function queueThumb(hit, img, placeholder) {
  state.thumbQueue.push({ hit, img, placeholder, generation: state.generation });
  pumpThumbs();
}

function pumpThumbs() {
  while (state.thumbsActive < THUMB_PARALLEL && state.thumbQueue.length) {
    const job = state.thumbQueue.shift();
    state.thumbsActive += 1;
    loadThumb(job).finally(() => {
      state.thumbsActive -= 1;
      pumpThumbs();
    });
  }
}

async function loadThumb({ hit, img, placeholder, generation }) {
  const url = API.image(state.request.collection, hit.id, THUMB_PX);
  try {
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) throw await problemOf(response);
    const blob = await response.blob();
    if (generation !== state.generation) return; // a newer search replaced this card
    const objectUrl = URL.createObjectURL(blob);
    state.objectUrls.push(objectUrl);
    img.onload = () => {
      img.hidden = false;
      placeholder.remove();
    };
    img.onerror = () => failThumb(placeholder, "the thumbnail could not be decoded");
    img.src = objectUrl;
  } catch (problem) {
    if (generation !== state.generation) return;
    const why =
      problem instanceof ApiProblem ? `${problem.status} ${problem.error}: ${problem.message}` : String(problem);
    failThumb(placeholder, why);
  }
}

function failThumb(placeholder, why) {
  placeholder.textContent = "no image";
  placeholder.classList.add("failed");
  placeholder.title = why;
}

function highlight(rank, on) {
  document.querySelectorAll(`[data-rank="${rank}"]`).forEach((el) => el.classList.toggle("hot", on));
}

// ---------------------------------------------------------------------------- the map

// SVG units close to CSS pixels at the panel's usual width, so the labels stay legible.
const MAP = { width: 440, height: 220, left: 46, right: 16, top: 8, bottom: 32 };
const STEPS = [30, 15, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05];

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function located(hits) {
  return hits
    .map((hit, i) => ({ hit, rank: i + 1, loc: hit.payload.location }))
    .filter((p) => p.loc && Number.isFinite(p.loc.lon) && Number.isFinite(p.loc.lat));
}

function regionBounds(region) {
  if (!region) return null;
  if (region.bbox) return region.bbox;
  const [lon, lat] = region.center;
  const dLat = (region.radius_km / MARS_RADIUS_KM) * (180 / Math.PI);
  const dLon = Math.min(180, dLat / Math.max(0.05, Math.cos((lat * Math.PI) / 180)));
  return [lon - dLon, lat - dLat, lon + dLon, lat + dLat];
}

function viewExtent(points) {
  // The whole planet, or (zoomed) the hits and the region with a margin, at the map's 2:1 aspect.
  if (!state.mapZoom || !points.length) return [-180, -90, 180, 90];
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const { loc } of points) {
    w = Math.min(w, loc.lon);
    e = Math.max(e, loc.lon);
    s = Math.min(s, loc.lat);
    n = Math.max(n, loc.lat);
  }
  const region = regionBounds(state.region);
  if (region) {
    [w, s, e, n] = [Math.min(w, region[0]), Math.min(s, region[1]), Math.max(e, region[2]), Math.max(n, region[3])];
  }
  if (state.sites) {
    // Ground-truth sites near the hits join the view (a catalogue spans the planet: not all of it).
    const reach = Math.max(5, e - w, n - s);
    const [w0, s0, e0, n0] = [w - reach, s - reach, e + reach, n + reach];
    for (const [lon, lat] of state.sites.points) {
      if (lon < w0 || lon > e0 || lat < s0 || lat > n0) continue;
      [w, s, e, n] = [Math.min(w, lon), Math.min(s, lat), Math.max(e, lon), Math.max(n, lat)];
    }
  }
  let spanLon = Math.max(e - w, 0.5) * 1.2;
  let spanLat = Math.max(n - s, 0.25) * 1.2;
  if (spanLon < 2 * spanLat) spanLon = 2 * spanLat;
  else spanLat = spanLon / 2;
  spanLon = Math.min(spanLon, 360);
  spanLat = Math.min(spanLat, 180);
  const cx = Math.min(180 - spanLon / 2, Math.max(-180 + spanLon / 2, (w + e) / 2));
  const cy = Math.min(90 - spanLat / 2, Math.max(-90 + spanLat / 2, (s + n) / 2));
  return [cx - spanLon / 2, cy - spanLat / 2, cx + spanLon / 2, cy + spanLat / 2];
}

function gridStep(span) {
  return STEPS.find((step) => span / step >= 4) || STEPS[STEPS.length - 1];
}

function degreeLabel(value, step) {
  const digits = step >= 1 ? 0 : step >= 0.1 ? 1 : 2;
  return `${value.toFixed(digits)}°`;
}

function renderMap() {
  const map = $("map");
  const W = MAP.left + MAP.width + MAP.right;
  const H = MAP.top + MAP.height + MAP.bottom;
  map.setAttribute("viewBox", `0 0 ${W} ${H}`);
  map.replaceChildren();
  const points = located(state.hits);
  const [w, s, e, n] = viewExtent(points);
  const x = (lon) => MAP.left + ((lon - w) / (e - w)) * MAP.width;
  const y = (lat) => MAP.top + ((n - lat) / (n - s)) * MAP.height;

  const defs = svg("defs");
  const clip = svg("clipPath", { id: "plot-clip" });
  clip.append(svg("rect", { x: MAP.left, y: MAP.top, width: MAP.width, height: MAP.height }));
  defs.append(clip);
  map.append(defs);
  map.append(svg("rect", { class: "plot", x: MAP.left, y: MAP.top, width: MAP.width, height: MAP.height }));
  if (state.basemap) {
    // The whole planet, equirectangular: lon -180..180 across, lat 90..-90 down; clipped to the view.
    const at = { x: x(-180), y: y(90), width: x(180) - x(-180), height: y(-90) - y(90) };
    const image = svg("image", { ...at, class: "basemap", preserveAspectRatio: "none", "clip-path": "url(#plot-clip)" });
    image.setAttribute("href", state.basemap.url);
    map.append(image);
  }

  const lonStep = state.mapZoom ? gridStep(e - w) : 30;
  const latStep = state.mapZoom ? gridStep(n - s) : 30;
  const grid = svg("g", { class: "graticule", "clip-path": "url(#plot-clip)" });
  const labels = svg("g", { class: "axis" });
  // Lines every step; labels on every other line when more than 8 would crowd the axis.
  const lonLabelEvery = (e - w) / lonStep > 8 ? 2 : 1;
  for (let i = Math.ceil(w / lonStep); i * lonStep <= e + 1e-9; i += 1) {
    const lon = i * lonStep;
    const bottom = MAP.top + MAP.height;
    grid.append(svg("line", { x1: x(lon), x2: x(lon), y1: MAP.top, y2: bottom, class: i === 0 ? "major" : "" }));
    if (i % lonLabelEvery === 0) {
      const at = { x: x(lon), y: bottom + 13, "text-anchor": "middle" };
      labels.append(svg("text", at, degreeLabel(lon, lonStep)));
    }
  }
  for (let i = Math.ceil(s / latStep); i * latStep <= n + 1e-9; i += 1) {
    const lat = i * latStep;
    const right = MAP.left + MAP.width;
    grid.append(svg("line", { x1: MAP.left, x2: right, y1: y(lat), y2: y(lat), class: i === 0 ? "major" : "" }));
    labels.append(svg("text", { x: MAP.left - 4, y: y(lat) + 3.5, "text-anchor": "end" }, degreeLabel(lat, latStep)));
  }
  labels.append(
    svg("text", { class: "title", x: MAP.left + MAP.width / 2, y: H - 4, "text-anchor": "middle" }, "longitude (°E)"),
  );
  const middle = MAP.top + MAP.height / 2;
  const latTitle = { class: "title", x: 9, y: middle, "text-anchor": "middle", transform: `rotate(-90 9 ${middle})` };
  labels.append(svg("text", latTitle, "latitude (°N)"));
  map.classList.toggle("has-basemap", Boolean(state.basemap));
  map.append(grid, labels);

  const overlay = svg("g", { "clip-path": "url(#plot-clip)" });
  if (state.sites) {
    const sites = svg("g", { class: "sites" });
    const r = state.mapZoom ? 3.2 : 2.2;
    for (const [lon, lat] of state.sites.points) {
      const site = svg("circle", { class: "site", cx: x(lon), cy: y(lat), r });
      site.append(svg("title", {}, `${state.sites.landform} site\n${formatLonLat({ lon, lat })}`));
      sites.append(site);
    }
    overlay.append(sites);
  }
  if (state.region?.bbox) {
    const [a, b, c, d] = state.region.bbox;
    overlay.append(svg("rect", { class: "region", x: x(a), y: y(d), width: x(c) - x(a), height: y(b) - y(d) }));
  } else if (state.region?.center) {
    const [lon0, lat0, lon1, lat1] = regionBounds(state.region);
    const [lon, lat] = state.region.center;
    const [rx, ry] = [(x(lon1) - x(lon0)) / 2, (y(lat0) - y(lat1)) / 2];
    overlay.append(svg("ellipse", { class: "region", cx: x(lon), cy: y(lat), rx, ry }));
  }
  // Best hits drawn last, so they sit on top where dots overlap.
  const radius = state.mapZoom ? 7 : 4.5;
  for (const { hit, rank, loc } of [...points].reverse()) {
    const dot = svg("g", { class: "dot", "data-rank": rank, transform: `translate(${x(loc.lon)} ${y(loc.lat)})` });
    const tip = `#${rank} ${hit.payload.name || hit.id}\nscore ${hit.score.toFixed(4)}\n${formatLonLat(loc)}`;
    dot.append(svg("title", {}, tip));
    dot.append(svg("circle", { r: radius }));
    if (state.mapZoom) dot.append(svg("text", { y: 3, "text-anchor": "middle" }, rank));
    dot.addEventListener("mouseenter", () => highlight(rank, true));
    dot.addEventListener("mouseleave", () => highlight(rank, false));
    dot.addEventListener("click", () => {
      const card = document.querySelector(`.card[data-rank="${rank}"]`);
      card?.scrollIntoView({ behavior: "smooth", block: "center" });
    });
    overlay.append(dot);
  }
  map.append(overlay);

  const missing = state.hits.length - points.length;
  const lons = points.map((p) => p.loc.lon);
  const crowded = !state.mapZoom && points.length > 1 && Math.max(...lons) - Math.min(...lons) < 20;
  const plotted = `${points.length} hit${points.length === 1 ? "" : "s"} plotted`;
  const unplotted = missing ? `, ${missing} without coordinates` : "";
  const sitesNote = state.sites
    ? ` ${state.sites.points.length} ${state.sites.landform} ground-truth site${state.sites.points.length === 1 ? "" : "s"}.`
    : "";
  const mapNote = !state.basemap
    ? ""
    : state.basemap.source === "bundled"
      ? " Basemap: synthetic relief (not real topography)."
      : ` Basemap: the dataset's ${state.basemap.source.replace(/^dataset:/, "mars_map/")}.`;
  $("map-note").textContent =
    (!state.hits.length
      ? "Equirectangular; tiles sit at their south-west corner."
      : missing === state.hits.length
        ? "These hits carry no coordinates (not a geo collection)."
        : `${plotted}${unplotted}; ${state.mapZoom ? "zoomed to the hits" : "whole planet"}, grid every ${lonStep}°` +
          (crowded ? ". Zoom to hits to tell them apart." : ".")) +
    sitesNote +
    mapNote;
  $("map").dataset.sites = String(state.sites ? state.sites.points.length : 0);
  $("map-view").disabled = !points.length;
  $("map-view").textContent = state.mapZoom ? "Whole planet" : "Zoom to hits";
}

// ---------------------------------------------------------------------------- basemap and sites

async function loadBasemap(collection) {
  // The collection's dataset map (mars_map/) or the bundled relief; the plain grid when neither comes.
  if (state.basemap && state.basemap.collection === collection) return;
  let blob = null;
  let source = "bundled";
  for (const url of collection ? [API.basemap(collection), API.basemap(null)] : [API.basemap(null)]) {
    try {
      const response = await fetch(url, { headers: authHeaders() });
      if (!response.ok) continue; // e.g. 403 for a dataset outside the roots: the bundled map instead
      source = response.headers.get("X-Marsbench-Basemap") || "bundled";
      blob = await response.blob();
      break;
    } catch {
      // the evaluator did not answer: try the next, or keep the grid
    }
  }
  if (!blob || collection !== ($("collection").value || null)) return;
  const previous = state.basemap;
  const url = URL.createObjectURL(blob);
  const probe = $("basemap");
  probe.onload = () => {
    state.basemap = { url, source, collection };
    probe.dataset.source = source;
    if (previous) URL.revokeObjectURL(previous.url);
    renderMap();
  };
  probe.onerror = () => URL.revokeObjectURL(url);
  probe.src = url;
}

async function loadLandforms(c) {
  // The ground-truth catalogues of a geo collection, as choices; hidden for other collections.
  const select = $("sites");
  const generation = ++state.sitesGeneration;
  state.sites = null;
  select.replaceChildren(new Option("none", ""));
  $("sites-field").hidden = !c.geo;
  renderMap();
  if (!c.geo) return;
  try {
    const listing = await apiJson(API.landforms(c.name));
    if (generation !== state.sitesGeneration) return;
    for (const name of listing.landforms) select.append(new Option(name.replaceAll("_", " "), name));
  } catch (problem) {
    if (generation !== state.sitesGeneration) return;
    select.title = problem.message;
    $("sites-field").hidden = true;
  }
}

async function onSitesChange() {
  const landform = $("sites").value;
  const collection = $("collection").value;
  const generation = ++state.sitesGeneration;
  if (!landform) {
    state.sites = null;
    renderMap();
    writeHash();
    return;
  }
  try {
    const found = await apiJson(API.sites(collection, landform));
    if (generation !== state.sitesGeneration) return;
    state.sites = { landform, points: found.points };
  } catch (problem) {
    if (generation !== state.sitesGeneration) return;
    state.sites = null;
    showProblem(problem);
  }
  renderMap();
  writeHash();
}

// ---------------------------------------------------------------------------- shareable links

// The hash holds the query, so a copied link reproduces the search (the hash never reaches a server
// log): collection, model, q (text), k, bbox=w,s,e,n or circle=lon,lat,km, pages, sites, zoom.
// Image queries are not kept (an upload does not fit in a link).
function hashOf() {
  const params = new URLSearchParams();
  const request = state.request;
  if (request) {
    params.set("collection", request.collection);
    params.set("model", request.model);
    if (request.text !== undefined) params.set("q", request.text);
    params.set("k", String(request.k));
    if (request.region?.bbox) params.set("bbox", request.region.bbox.join(","));
    if (request.region?.center) params.set("circle", [...request.region.center, request.region.radius_km].join(","));
    if (state.pages > 1) params.set("pages", String(state.pages));
  } else if ($("collection").value) {
    params.set("collection", $("collection").value);
  }
  if (state.sites) params.set("sites", state.sites.landform);
  if (state.mapZoom) params.set("zoom", "1");
  return params.toString() ? `#${params.toString()}` : "";
}

function writeHash() {
  const hash = hashOf();
  state.writtenHash = hash;
  if (hash !== location.hash) history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
}

function numbersOf(text, count) {
  const values = String(text || "").split(",").map(Number);
  return values.length === count && values.every(Number.isFinite) ? values : null;
}

async function restoreFromHash() {
  // Fill the form from the link and run its search (then its further pages, its sites and zoom).
  const params = new URLSearchParams(location.hash.slice(1));
  state.writtenHash = location.hash;
  const collection = params.get("collection");
  if (!collection) return;
  if (!state.collections.some((c) => c.name === collection)) {
    showMessage("error", "Shared link:", `no collection ${collection} here; pick one from the list`, null);
    return;
  }
  $("collection").value = collection;
  const landformsLoaded = onCollectionChange();
  if (params.has("model")) {
    $("model").value = params.get("model");
    $("model").dataset.auto = "0";
  }
  const k = params.get("k");
  if (k && /^[0-9]+$/.test(k)) {
    if (![...$("k").options].some((o) => o.value === k)) $("k").append(new Option(k));
    $("k").value = k;
  }
  const bbox = numbersOf(params.get("bbox"), 4);
  const circle = numbersOf(params.get("circle"), 3);
  const kind = bbox ? "bbox" : circle ? "circle" : "none";
  document.querySelector(`input[name=region][value=${kind}]`).checked = true;
  if (bbox) ["lon-min", "lat-min", "lon-max", "lat-max"].forEach((id, i) => ($(id).value = String(bbox[i])));
  if (circle) ["center-lon", "center-lat", "radius-km"].forEach((id, i) => ($(id).value = String(circle[i])));
  onRegionKind();
  state.mapZoom = params.get("zoom") === "1";
  const sites = params.get("sites");
  if (params.has("q")) {
    setMode("text");
    $("text").value = params.get("q");
    const pages = Math.min(50, Math.max(1, Number.parseInt(params.get("pages") || "1", 10) || 1));
    await search(false);
    while (state.pages < pages && state.nextOffset !== null && state.request) {
      const before = state.pages;
      await search(true);
      if (state.pages === before) break; // the next page failed: its error is on screen
    }
  }
  await landformsLoaded;
  if (sites && [...$("sites").options].some((o) => o.value === sites)) {
    $("sites").value = sites;
    await onSitesChange();
  }
  renderMap();
  writeHash();
}

async function copyLink() {
  writeHash();
  const link = location.href;
  const button = $("copy-link");
  const note = state.request && state.request.text === undefined ? " (the image query is not in it)" : "";
  try {
    await navigator.clipboard.writeText(link);
    button.textContent = "Link copied";
  } catch {
    // No clipboard (an insecure origin, a denied permission): show the link to copy by hand.
    button.textContent = "Copy link";
  }
  $("share-link").value = link;
  $("share-link").hidden = false;
  $("share-link").title = `The query as a link${note}`;
  $("share-link").select();
  setTimeout(() => (button.textContent = "Copy link"), 2000);
}

// ---------------------------------------------------------------------------- wiring

function setMode(mode) {
  state.mode = mode;
  for (const tab of document.querySelectorAll(".tabs [data-mode]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.mode === mode));
  }
  $("text-pane").hidden = mode !== "text";
  $("image-pane").hidden = mode !== "image";
}

function onImageChosen() {
  const file = $("image").files[0];
  state.imageDataUri = null;
  $("image-preview").hidden = true;
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    state.imageDataUri = reader.result;
    $("image-preview").src = reader.result;
    $("image-preview").hidden = false;
  };
  reader.onerror = () => showMessage("error", "Image:", `cannot read ${file.name}`, null);
  reader.readAsDataURL(file);
}

function onRegionKind() {
  const kind = document.querySelector("input[name=region]:checked").value;
  $("bbox-inputs").hidden = kind !== "bbox";
  $("circle-inputs").hidden = kind !== "circle";
}

function init() {
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    $("api-key").classList.remove("attention");
    loadCollections();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    $("api-key").value = "";
    loadCollections();
  });
  $("collection").addEventListener("change", onCollectionChange);
  $("model").addEventListener("input", () => ($("model").dataset.auto = "0"));
  for (const tab of document.querySelectorAll(".tabs [data-mode]")) {
    tab.addEventListener("click", () => setMode(tab.dataset.mode));
  }
  $("image").addEventListener("change", onImageChosen);
  document.querySelectorAll("input[name=region]").forEach((radio) => radio.addEventListener("change", onRegionKind));
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search(false);
  });
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      search(false);
    }
  });
  $("more").addEventListener("click", () => search(true));
  $("map-view").addEventListener("click", () => {
    state.mapZoom = !state.mapZoom;
    renderMap();
    if (state.request) writeHash();
  });
  $("sites").addEventListener("change", onSitesChange);
  $("copy-link").addEventListener("click", copyLink);
  window.addEventListener("hashchange", () => {
    // A link pasted into this tab's address bar: run it (not the page's own replaceState writes).
    if (location.hash !== state.writtenHash && state.collections.length) restoreFromHash();
  });
  renderMap();
  loadBasemap(null);
  loadCollections();
}

init();
