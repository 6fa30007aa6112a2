// The metrana dashboard: every run, a run's charts, runs compared; live.
//
// Plain ES module, no framework, no build step. Charts are uPlot (vendored, the global `uPlot`).
// Everything shown comes from the server's read API (README, "The local server"):
//   GET /api/runs                                  the runs
//   GET /api/runs/W/P/R                            a run: attributes, series
//   GET /api/runs/W/P/R/series?since=NS            series written since NS (the live cursor)
//   GET /api/runs/W/P/R/buckets?n=&series=ID:START:END,...   several series' buckets at once
//   GET /api/runs/W/P/R/bands?metric=&scale=&evaluation=&environment=&n=&start=&end=
// Text from runs (names, labels, config values) only ever reaches the page as text nodes or
// attribute values: no innerHTML anywhere.

const PALETTE = ["#2463eb", "#e8590c", "#2f9e44", "#c2255c", "#7048e8", "#0c8599", "#a07400",
                 "#d6336c", "#5c940d", "#1971c2", "#862e9c", "#e03131"];
const DASHES = [[], [6, 3], [2, 3], [10, 3, 2, 3]];
const POLL_LIVE_MS = 1000;   // a run written to within the last two minutes
const POLL_QUIET_MS = 5000;  // finished or idle runs (they may be resumed)
const POLL_HIDDEN_MS = 15000; // a tab nobody looks at
const CURSOR_SLACK_NS = 5e9; // ask again from a little before the cursor (see changed_series)
const FETCHES_AT_ONCE = 6;   // the browser's connections per host
const BATCH = 25;            // series per bucket request (several requests draw progressively)
const REQUEST_TIMEOUT_MS = 30000;  // a request the server never answers does not stall the page
const KEY_STORAGE = "metrana.apiKey";
const SETTINGS_STORAGE = "metrana.settings";

// ------------------------------------------------------------------------------- helpers

/** An element with properties and children; strings become text nodes. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "checked" || key === "value" || key === "disabled") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A path segment: percent-encoded, and `.` too (clients drop `.` segments). */
const seg = (name) => encodeURIComponent(name).replace(/\./g, "%2E");
const runApi = ([w, p, r]) => `/api/runs/${seg(w)}/${seg(p)}/${seg(r)}`;
const runKey = ([w, p, r]) => JSON.stringify([w, p, r]);
const runHash = (run) => "#/run/" + run.map(encodeURIComponent).join("/");
const compareHash = (runs) => "#/compare/" + runs.map((r) => r.map(encodeURIComponent).join("/")).join(",");

/** JSON spells non-finite floats as strings; a chart draws only finite numbers. */
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const hoverNum = (v) => (typeof v === "number" ? v : v === "NaN" ? NaN : v === "Infinity" ? Infinity
  : v === "-Infinity" ? -Infinity : null);

const intFormat = new Intl.NumberFormat("en-US");
const fmtInt = (n) => (n == null ? "–" : intFormat.format(n));
function fmtValue(v) {
  if (v == null) return "–";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
  return String(+v.toPrecision(5));
}
/** Axis ticks: short, and as wide as they need (the axis is sized to them). */
function fmtTick(v) {
  if (v == null) return "";  // a tick uPlot filtered out (log scale)
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2).replace(/\.?0+e/, "e");
  return String(+v.toPrecision(4));
}
const fmtDate = (ns) => (ns ? new Date(ns / 1e6).toLocaleString() : "–");
function fmtDuration(seconds) {
  const s = Math.abs(seconds);
  const sign = seconds < 0 ? "-" : "";
  if (s < 60) return sign + (s < 10 ? +s.toFixed(2) : Math.round(s)) + "s";
  if (s < 3600) return sign + Math.floor(s / 60) + "m" + String(Math.round(s % 60)).padStart(2, "0") + "s";
  if (s < 86400) return sign + Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  return sign + Math.floor(s / 86400) + "d" + String(Math.floor((s % 86400) / 3600)).padStart(2, "0") + "h";
}
function fmtAgo(ns) {
  if (!ns) return "–";
  return fmtDuration(Math.max(0, Date.now() / 1e3 - ns / 1e9)) + " ago";
}
const fmtLabels = (labels) => Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1))
  .map(([k, v]) => `${k}=${v}`).join(", ");

function statusBadge(status) {
  return el("span", { class: `status ${status}`, title: {
    live: "written to within the last two minutes", finished: "closed by the client",
    idle: "neither closed nor written to recently" }[status] }, status);
}

/** Run at most `n` of the given async functions at once. */
function limiter(n) {
  let active = 0;
  const waiting = [];
  const next = () => {
    if (active >= n || !waiting.length) return;
    active++;
    const [fn, resolve, reject] = waiting.shift();
    fn().then(resolve, reject).finally(() => { active--; next(); });
  };
  return (fn) => new Promise((resolve, reject) => { waiting.push([fn, resolve, reject]); next(); });
}
const limit = limiter(FETCHES_AT_ONCE);

// ---------------------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

let keyPrompt = null;

/** Ask for the server's API key once (a server started with --api-key); kept for this tab. */
function askForKey(refused) {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    const input = el("input", { type: "password", autocomplete: "off", required: true,
                                 "aria-label": "API key", placeholder: "API key" });
    const dialog = el("dialog", {},
      el("form", { method: "dialog", onsubmit: () => {
        sessionStorage.setItem(KEY_STORAGE, input.value.trim());
        dialog.remove();
        keyPrompt = null;
        resolve();
      } },
      el("h2", {}, "This server needs an API key"),
      el("p", { class: "muted" }, refused ? "That key was refused. " : "",
         "It is kept in this tab only (sessionStorage) and sent as ",
         el("code", {}, "Authorization: Bearer …"), "."),
      input, el("button", { type: "submit" }, "Continue")));
    dialog.addEventListener("cancel", (e) => e.preventDefault());
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return keyPrompt;
}

async function api(path, signal) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = key ? { Authorization: `Bearer ${key}` } : {};
    const limited = AbortSignal.any([signal ?? new AbortController().signal,
                                     AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
    const response = await fetch(path, { headers, signal: limited, cache: "no-store" });
    if (response.status === 401) {
      await askForKey(Boolean(key));
      continue;
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body?.message ?? response.statusText);
    setConnection(null);
    return body;
  }
}

function setConnection(problem) {
  const node = document.getElementById("conn");
  if (node) node.textContent = problem ?? "";
}

const isAbort = (error) => error?.name === "AbortError";

/** Bucket reads of one run's series asked for in the same moment go out together: a page of a
 *  hundred charts, or a live poll of a hundred series, is a few requests, not a hundred. */
class Batcher {
  constructor(base) {
    this.base = base;
    this.queue = [];
  }

  get(seriesId, params, signal) {
    return new Promise((resolve, reject) => {
      if (!this.queue.length) setTimeout(() => this.flush(), 0);
      this.queue.push({ seriesId, params, signal, resolve, reject });
    });
  }

  flush() {
    const byN = new Map();  // one n per request
    for (const item of this.queue.splice(0)) {
      if (!byN.has(item.params.n)) byN.set(item.params.n, []);
      byN.get(item.params.n).push(item);
    }
    for (const [n, items] of byN) {
      for (let i = 0; i < items.length; i += BATCH) {
        const chunk = items.slice(i, i + BATCH);
        const specs = chunk.map(({ seriesId, params }) =>
          [seriesId, params.start ?? "", params.end ?? ""].join(":").replace(/:+$/, ""));
        limit(() => api(`${this.base}/buckets?n=${n}&series=${specs.join(",")}`, chunk[0].signal))
          .then((body) => body.series.forEach((cols, j) => chunk[j].resolve(columns(cols))),
                (error) => chunk.forEach((item) => item.reject(error)));
      }
    }
  }
}
const batchers = new Map();
const batcher = (base) => batchers.get(base) ?? batchers.set(base, new Batcher(base)).get(base);

// ------------------------------------------------------------------------ settings

const DEFAULT_SETTINGS = { x: "step", smoothing: 0.6, logY: false };
function loadSettings() {
  try {
    return { ...DEFAULT_SETTINGS, ...JSON.parse(localStorage.getItem(SETTINGS_STORAGE) ?? "{}") };
  } catch {
    return { ...DEFAULT_SETTINGS };
  }
}
const settings = loadSettings();
const saveSettings = () => localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(settings));

// ------------------------------------------------------------------ bucket columns

/** Bucket columns as the server sends them, with numbers made drawable. */
function columns(body) {
  return {
    x: body.x, t: body.t, count: body.count,
    min: body.min.map(hoverNum), max: body.max.map(hoverNum), mean: body.mean.map(hoverNum),
    std: body.std ? body.std.map(hoverNum) : null,
  };
}
const emptyColumns = () => ({ x: [], t: [], count: [], min: [], max: [], mean: [], std: null });
const pointsIn = (cols) => cols.count.reduce((a, b) => a + b, 0);

/** The buckets of `cols` that start before step `cut`. */
function before(cols, cut) {
  let end = cols.x.length;
  while (end > 0 && cols.x[end - 1] >= cut) end--;
  const take = (a) => a && a.slice(0, end);
  return { x: take(cols.x), t: take(cols.t), count: take(cols.count), min: take(cols.min),
           max: take(cols.max), mean: take(cols.mean), std: take(cols.std) };
}

function concat(a, b) {
  const std = a.std || b.std ? [...(a.std ?? a.x.map(() => null)), ...(b.std ?? b.x.map(() => null))] : null;
  return { x: [...a.x, ...b.x], t: [...a.t, ...b.t], count: [...a.count, ...b.count],
           min: [...a.min, ...b.min], max: [...a.max, ...b.max], mean: [...a.mean, ...b.mean], std };
}

/** Merge neighbouring buckets into about `n` of equal step width: exact min, max, count;
 *  count-weighted mean and pooled std. (A live chart keeps appending fine buckets.) */
function compact(cols, n) {
  const len = cols.x.length;
  if (len <= n) return cols;
  const x0 = cols.x[0];
  const width = (cols.x[len - 1] - x0 + 1) / n;
  const out = emptyColumns();
  if (cols.std) out.std = [];
  let group = -1;
  let sum = 0, sumsq = 0, weight = 0;
  const close = () => {
    if (group < 0) return;
    const i = out.x.length - 1;
    const mean = weight ? sum / weight : null;
    out.mean[i] = mean;
    if (out.std) out.std[i] = weight ? Math.sqrt(Math.max(0, sumsq / weight - mean * mean)) : null;
  };
  for (let i = 0; i < len; i++) {
    const g = Math.floor((cols.x[i] - x0) / width);
    if (g !== group) {
      close();
      group = g;
      sum = sumsq = weight = 0;
      out.x.push(cols.x[i]); out.t.push(cols.t[i]); out.count.push(0);
      out.min.push(null); out.max.push(null); out.mean.push(null);
      if (out.std) out.std.push(null);
    }
    const j = out.x.length - 1;
    out.count[j] += cols.count[i];
    out.t[j] = Math.min(out.t[j], cols.t[i]);
    const lo = cols.min[i], hi = cols.max[i], mean = cols.mean[i];
    if (lo != null && !Number.isNaN(lo)) out.min[j] = out.min[j] == null ? lo : Math.min(out.min[j], lo);
    if (hi != null && !Number.isNaN(hi)) out.max[j] = out.max[j] == null ? hi : Math.max(out.max[j], hi);
    if (mean != null && Number.isFinite(mean)) {
      const c = cols.count[i];
      const sd = cols.std?.[i] ?? 0;
      sum += c * mean; sumsq += c * (sd * sd + mean * mean); weight += c;
    }
  }
  close();
  return out;
}

/** EMA with TensorBoard's debiasing, skipping gaps. */
function smooth(values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  let last = 0, n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v == null) { out[i] = null; continue; }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - weight ** n);
  }
  return out;
}

// --------------------------------------------------------------------------- sources

/** One line of a chart: a series' buckets, or an RL metric's band across environments. */
class Source {
  constructor({ url, seriesId = null, query = {}, label, color, dash = [], band = false, run,
                counts = true }) {
    this.url = url;          // the run's API path (series buckets, batched), or .../bands
    this.seriesId = seriesId;
    this.query = query;      // fixed query parameters (metric, scale, ...)
    this.label = label;
    this.color = color;
    this.dash = dash;
    this.band = band;        // draw mean ± std as well
    this.run = run;          // the run's detail (origin of relative time)
    this.counts = counts;    // its points count towards the chart's data-points
    this.data = emptyColumns();  // the whole range, refined at the live end
    this.zoomed = null;      // the visible range, when zoomed
    this.expected = 0;       // points the server says it has
    this.stale = 0;          // polls that did not bring `data` up to `expected`
    this.shown = true;
  }

  async get(params, signal) {
    if (this.seriesId != null) return batcher(this.url).get(this.seriesId, params, signal);
    const query = new URLSearchParams({ ...this.query });
    for (const [k, v] of Object.entries(params)) if (v != null) query.set(k, String(v));
    return columns(await limit(() => api(`${this.url}?${query}`, signal)));
  }

  async loadAll(n, signal) {
    this.data = await this.get({ n }, signal);
    this.stale = 0;
  }

  /** Fetch only what is new: from the first step of the last bucket on (that bucket may have
   *  grown), replacing it. Never the whole history again. */
  async loadTail(n, signal) {
    const len = this.data.x.length;
    if (!len) return this.loadAll(n, signal);
    const cut = this.data.x[len - 1];
    const tail = await this.get({ n, start: cut }, signal);
    const merged = concat(before(this.data, cut), tail);
    this.data = merged.x.length > 3 * n ? compact(merged, n) : merged;
  }

  /** The step range [start, end] behind the visible x range [lo, hi] in the given x mode. */
  stepRange(lo, hi, mode) {
    if (mode === "step") return [Math.max(0, Math.floor(lo)), Math.ceil(hi)];
    // Time axes: the buckets drawn (the finest we have) tell which steps those times cover.
    const cols = this.zoomed?.x.length ? this.zoomed : this.data;
    const xs = xValues(cols, mode, this);
    let first = 0, last = xs.length - 1;
    while (first < xs.length - 1 && xs[first + 1] <= lo) first++;  // the bucket holding lo
    while (last > 0 && xs[last] > hi) last--;                      // the last starting by hi
    const end = last + 1 < xs.length ? cols.x[last + 1] - 1 : undefined;
    return [cols.x[first] ?? 0, end];
  }
}

function xValues(cols, mode, source) {
  if (mode === "step") return cols.x;
  if (mode === "wall") return cols.t.map((t) => t / 1e9);
  const origin = source.run.created_ns;
  return cols.t.map((t) => (t - origin) / 1e9);
}

// ---------------------------------------------------------------------------- charts

/** Rows of several tables (each sorted by x) in one x-sorted table; a row holds one x value
 *  and each table's bucket at that x, if any. Returns xs and, per table, bucket index by row. */
function align(tables) {
  if (tables.length === 1) {
    const xs = tables[0];
    let sorted = true;
    for (let i = 1; i < xs.length && sorted; i++) sorted = xs[i - 1] <= xs[i];
    if (sorted) return { xs: Array.from(xs), rows: [Int32Array.from(xs, (_, i) => i)] };
  }
  const entries = [];
  tables.forEach((xs, table) => xs.forEach((x, i) => entries.push([x, table, i])));
  entries.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  const xs = [];
  const rows = tables.map(() => []);
  for (const [x, table, i] of entries) {
    let row = xs.length - 1;
    if (row < 0 || xs[row] !== x || rows[table][row] !== undefined) {
      xs.push(x);
      row++;
    }
    rows[table][row] = i;
  }
  return { xs, rows: rows.map((r) => Int32Array.from({ length: xs.length }, (_, i) => r[i] ?? -1)) };
}

const X_TITLES = { step: "step", wall: "wall time", relative: "time since the run was created" };

class Chart {
  constructor({ title, metric, attrs, xName, onEnvironments, onResetZoom }) {
    this.metric = metric;
    this.onResetZoom = onResetZoom;  // double-click: every chart zoomed with this one
    this.xName = xName;        // "step" or "rl_step"
    this.sources = [];
    this.plot = null;
    this.zoom = null;          // [lo, hi] in x units while zoomed
    this.signal = null;
    this.note = el("span", { class: "chart-note" });
    this.legend = el("div", { class: "legend" });
    this.area = el("div", { class: "plot" }, el("div", { class: "placeholder" }, "loading…"));
    this.node = el("div", { class: "chart", dataset: { metric, ...attrs } },
      el("div", { class: "chart-head" }, el("h3", { title: metric }, title), this.note),
      this.area, this.legend, onEnvironments ?? null);
    this.resize = new ResizeObserver(() => {
      if (this.plot && Math.abs(this.plot.width - this.width()) > 2)
        this.plot.setSize({ width: this.width(), height: this.plot.height });
    });
    this.resize.observe(this.area);
  }

  syncKey() { return `metrana:${settings.x === "step" ? this.xName : "time"}`; }

  width() { return Math.max(200, this.area.clientWidth); }
  buckets() { return Math.min(2000, Math.max(200, Math.round(this.width()))); }

  add(source) { this.sources.push(source); }

  async load(signal) {
    this.signal = signal;
    const n = this.buckets();
    await Promise.all(this.sources.map((s) => s.loadAll(n, signal)));
    this.draw();
  }

  /** Bring every source up to the point count the server reports (the live path). */
  async refresh(signal) {
    const n = this.buckets();
    const behind = this.sources.filter((s) => s.expected > pointsIn(s.data));
    if (!behind.length) return;
    await Promise.all(behind.map(async (s) => {
      // A source that stays short (points stored behind the cursor: manual steps arriving
      // late) is read whole once in a while: still buckets, not points.
      if (++s.stale > 3) await s.loadAll(n, signal);
      else await s.loadTail(n, signal);
      if (pointsIn(s.data) >= s.expected) s.stale = 0;
    }));
    this.draw(true);
  }

  visibleData(source) { return (this.zoom && source.zoomed) || source.data; }

  /** uPlot's series and data: per source a min–max envelope, the std band (RL), the raw
   *  line (faint, when smoothing) and the smoothed line. */
  build() {
    const mode = settings.x;
    const log = settings.logY;
    const ok = log ? (v) => (v != null && v > 0 && Number.isFinite(v) ? v : null) : num;
    const visible = this.sources.filter((s) => s.data.x.length || s.zoomed?.x.length);
    const { xs, rows } = align(visible.map((s) => xValues(this.visibleData(s), mode, s)));
    const series = [{}];
    const data = [xs];
    const bands = [];
    const faint = (c, a) => c + Math.round(a * 255).toString(16).padStart(2, "0");
    const column = (values, row) => Array.from(row, (i) => (i < 0 ? null : ok(values[i])));
    this.lines = [];
    visible.forEach((source, k) => {
      const cols = this.visibleData(source);
      const row = rows[k];
      const mean = column(cols.mean, row);
      const edge = { stroke: faint(source.color, 0), width: 0, points: { show: false }, spanGaps: true,
                     show: source.shown };
      const first = series.length;
      series.push({ ...edge, label: `${source.label} max` }, { ...edge, label: `${source.label} min` });
      data.push(column(cols.max, row), column(cols.min, row));
      bands.push({ series: [first, first + 1], fill: faint(source.color, 0.1) });
      if (source.band && cols.std) {
        const hi = Array.from(row, (i) => (i < 0 ? null : ok(num(cols.mean[i]) + (num(cols.std[i]) ?? 0))));
        const lo = Array.from(row, (i) => (i < 0 ? null : ok(num(cols.mean[i]) - (num(cols.std[i]) ?? 0))));
        series.push({ ...edge, label: `${source.label} +std` }, { ...edge, label: `${source.label} -std` });
        data.push(hi, lo);
        bands.push({ series: [first + 2, first + 3], fill: faint(source.color, 0.2) });
      }
      const smoothing = settings.smoothing;
      if (smoothing > 0) {
        series.push({ label: `${source.label} raw`, stroke: faint(source.color, 0.25), width: 1,
                      dash: source.dash, spanGaps: true, points: { show: false }, show: source.shown });
        data.push(mean);
      }
      // uPlot draws the points themselves when they are few and far between (a single point).
      series.push({ label: source.label, stroke: source.color, width: 1.5, dash: source.dash,
                    spanGaps: true, show: source.shown });
      data.push(smooth(mean, smoothing));
      this.lines.push({ source, row, cols, series: [...Array(series.length - first).keys()].map((i) => first + i) });
    });
    return { series, data, bands, xs };
  }

  options({ series, bands }) {
    const mode = settings.x;
    const xAxis = { label: mode === "step" ? this.xName : X_TITLES[mode], labelSize: 16, labelGap: 0,
                    size: 36, space: 70 };
    if (mode === "relative") xAxis.values = (u, splits) => splits.map(fmtDuration);
    return {
      width: this.width(),
      height: 220,
      legend: { show: false },
      series,
      bands,
      scales: { x: { time: mode === "wall" }, y: { distr: settings.logY ? 3 : 1 } },
      axes: [xAxis, {
        values: (u, splits) => splits.map(fmtTick),
        size: (u, values) => 18 + 7 * Math.max(3, ...(values ?? []).map((v) => String(v).length)),
      }],
      cursor: {
        // Charts on the same x (steps, rl_steps, or time) share the cursor and the zoom.
        sync: { key: this.syncKey() },
        y: false,
        drag: { x: true, y: false },
        bind: { dblclick: () => () => { (this.onResetZoom ?? (() => this.resetZoom()))(this); return null; } },
      },
      hooks: {
        setScale: [(u, key) => { if (key === "x") this.onZoom(u); }],
        setCursor: [(u) => this.hover(u.cursor.idx)],
      },
    };
  }

  /** (Re)draw. A live update keeps the plot (setData) unless zoomed; anything else rebuilds. */
  draw(live = false) {
    if (live && this.zoom && this.plot) {
      this.updatePoints();
      return;
    }
    const built = this.build();
    const shape = built.series.map((s) => s.label).join("\n") + `\n${settings.x}/${settings.logY}`;
    if (this.plot && shape === this.shape) {
      this.plot.setData(built.data);
      if (this.zoom) this.plot.setScale("x", { min: this.zoom[0], max: this.zoom[1] });
    } else {
      this.plot?.destroy();
      this.area.replaceChildren();
      if (!built.xs.length) {
        this.area.append(el("div", { class: "placeholder" }, "no points yet"));
        this.plot = null;
      } else {
        this.plot = new uPlot(this.options(built), built.data, this.area);
        if (this.zoom) this.plot.setScale("x", { min: this.zoom[0], max: this.zoom[1] });
      }
      this.shape = shape;
    }
    this.full = this.zoom ? this.full : [built.xs[0], built.xs[built.xs.length - 1]];
    this.updatePoints();
    this.hover(null);
  }

  updatePoints() {
    const shown = this.sources.filter((s) => s.counts)
      .reduce((sum, s) => sum + pointsIn(this.visibleData(s)), 0);
    const total = this.sources.filter((s) => s.counts).reduce((sum, s) => sum + pointsIn(s.data), 0);
    const buckets = this.sources.reduce((sum, s) => sum + this.visibleData(s).x.length, 0);
    this.node.dataset.points = String(shown);
    this.note.textContent = `${fmtInt(total)} point${total === 1 ? "" : "s"}` +
      (this.zoom ? ` · zoomed: ${fmtInt(shown)}` : "") +
      (buckets < shown ? ` · ${fmtInt(buckets)} buckets (min–max shaded)` : "");
  }

  onZoom(u) {
    const { min, max } = u.scales.x;
    if (min == null || max == null || !this.full) return;
    const near = (a, b) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
    const covers = min <= this.full[0] && max >= this.full[1];
    if (this.zoom && near(min, this.zoom[0]) && near(max, this.zoom[1])) return;
    if (covers) {
      if (this.zoom) this.resetZoom();
      return;
    }
    this.zoom = [min, max];
    clearTimeout(this.zoomTimer);
    this.zoomTimer = setTimeout(() => this.fetchZoom([min, max]), 120);
  }

  /** Finer buckets for the visible range only. */
  async fetchZoom(range) {
    const n = this.buckets();
    try {
      const got = await Promise.all(this.sources.map(async (s) => {
        const [start, end] = s.stepRange(range[0], range[1], settings.x);
        return end != null && end < start ? emptyColumns() : s.get({ n, start, end }, this.signal);
      }));
      if (this.zoom !== null && this.zoom[0] === range[0] && this.zoom[1] === range[1]) {
        got.forEach((cols, i) => { this.sources[i].zoomed = cols; });
        this.draw();
      }
    } catch (error) {
      if (!isAbort(error)) setConnection(`zoom failed: ${error.message}`);
    }
  }

  resetZoom() {
    clearTimeout(this.zoomTimer);
    this.zoom = null;
    for (const s of this.sources) s.zoomed = null;
    this.draw();
  }

  /** Hover: the x value and, per line, the value (and what its bucket stands for). */
  hover(idx) {
    const plot = this.plot;
    if (!plot || !this.lines) { this.legend.replaceChildren(); this.legendLines = null; return; }
    if (this.legendLines !== this.lines) this.buildLegend();
    const xs = plot.data[0];
    const at = idx ?? xs.length - 1;
    const x = xs[at];
    const mode = settings.x;
    this.legendX.textContent = x == null ? "" : mode === "step" ? `${this.xName} ${fmtInt(x)}`
      : mode === "wall" ? new Date(x * 1e3).toLocaleString() : fmtDuration(x);
    for (const line of this.lines) {
      let r = at;  // the nearest row holding this line's bucket (other lines' rows sit between)
      for (let d = 1; (line.row[r] ?? -1) < 0 && d < 64; d++) {
        r = (line.row[at - d] ?? -1) >= 0 ? at - d : at + d;
      }
      const i = line.row[r] ?? -1;
      const cols = line.cols;
      const count = i >= 0 ? cols.count[i] : 0;
      const smoothed = i >= 0 ? plot.data[line.series[line.series.length - 1]][r] : null;
      const extra = [];
      if (settings.smoothing > 0 && smoothed != null) extra.push(`smoothed ${fmtValue(smoothed)}`);
      if (count > 1) extra.push(`min ${fmtValue(cols.min[i])} max ${fmtValue(cols.max[i])}` +
                                (cols.std ? ` std ${fmtValue(cols.std[i])}` : "") + ` · ${fmtInt(count)} pts`);
      line.valueNode.textContent = fmtValue(i >= 0 ? cols.mean[i] : null);
      line.extraNode.textContent = extra.length ? " " + extra.join(" · ") : "";
    }
  }

  /** The legend's entries, made once per drawing; hovering only changes their text. */
  buildLegend() {
    this.legendLines = this.lines;
    this.legendX = el("span", { class: "x" });
    const items = this.lines.map((line) => {
      line.valueNode = el("b");
      line.extraNode = el("span", { class: "extra" });
      return el("span", { class: "item" + (line.source.shown ? "" : " off"), title: "click to show or hide",
                          onclick: (e) => { this.toggle(line); e.currentTarget.classList.toggle("off", !line.source.shown); } },
        el("span", { class: "sw", style: `background:${line.source.color}` }),
        line.source.label, " ", line.valueNode, line.extraNode);
    });
    this.legend.replaceChildren(this.legendX, ...items);
  }

  toggle(line) {
    line.source.shown = !line.source.shown;
    for (const i of line.series) this.plot.setSeries(i, { show: line.source.shown });
    this.hover(this.plot.cursor.idx);
  }

  destroy() {
    clearTimeout(this.zoomTimer);
    this.resize.disconnect();
    this.plot?.destroy();
  }
}

// ------------------------------------------------------------------------- the views

function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...parts.flatMap((p, i) => (i ? [" › ", p] : [p])));
}

class RunsView {
  constructor(main) {
    this.abort = new AbortController();
    this.selected = new Set();
    this.runs = [];
    this.search = el("input", { type: "search", placeholder: "search runs",
                                "aria-label": "search runs", value: sessionStorage.getItem("metrana.search") ?? "",
                                oninput: () => { sessionStorage.setItem("metrana.search", this.search.value); this.render(); } });
    this.compare = el("button", { disabled: true, onclick: () => {
      location.hash = compareHash(this.runs.filter((r) => this.selected.has(runKey(r.id))).map((r) => r.id));
    } }, "Compare selected");
    this.count = el("span", { class: "muted" });
    this.body = el("tbody");
    this.table = el("table", { class: "data", id: "runs" },
      el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "run"), el("th", {}, "workspace / project"),
        el("th", {}, "experiment"), el("th", {}, "created"), el("th", {}, "last activity"),
        el("th", {}, "status"), el("th", { class: "num" }, "series"), el("th", { class: "num" }, "points"))),
      this.body);
    this.empty = el("div", { class: "empty", hidden: true },
      el("p", {}, "No runs yet. Log one to this server:"),
      el("pre", {}, `import metrana\n\nmetrana.init(workspace_name="ws", project_name="p", run_name="run-1",\n` +
                    `             ingestion_url="${location.origin}")\nmetrana.log("loss", 0.5)\nmetrana.close()`));
    main.replaceChildren(el("h1", {}, "Runs"),
      el("div", { class: "toolbar" }, this.search, this.count, el("span", { class: "grow" }), this.compare),
      this.table, this.empty);
    crumbs(el("span", {}, "runs"));
    this.poll();
  }

  async poll() {
    try {
      const body = await api("/api/runs", this.abort.signal);
      this.runs = body.runs.map((r) => ({ ...r, id: [r.workspace, r.project, r.run] }));
      this.render();
      document.body.dataset.ready = "1";
    } catch (error) {
      if (isAbort(error)) return;
      setConnection(`cannot read runs: ${error.message}`);
    }
    this.timer = setTimeout(() => this.poll(), document.hidden ? POLL_HIDDEN_MS : 3000);
  }

  render() {
    const terms = this.search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const match = (r) => {
      const text = [r.workspace, r.project, r.run, r.experiment ?? "", r.status].join("\n").toLowerCase();
      return terms.every((t) => text.includes(t));
    };
    const shown = this.runs.filter(match);
    this.body.replaceChildren(...shown.map((r) => {
      const key = runKey(r.id);
      return el("tr", { dataset: { run: r.run, workspace: r.workspace, project: r.project } },
        el("td", {}, el("input", { type: "checkbox", "aria-label": `select ${r.run}`, checked: this.selected.has(key),
                                   onchange: (e) => { e.target.checked ? this.selected.add(key) : this.selected.delete(key); this.updateButton(); } })),
        el("td", {}, el("a", { href: runHash(r.id) }, r.run)),
        el("td", {}, `${r.workspace} / ${r.project}`),
        el("td", {}, r.experiment ?? ""),
        el("td", { title: fmtDate(r.created_ns) }, fmtDate(r.created_ns)),
        el("td", { title: fmtDate(r.last_activity_ns) }, fmtAgo(r.last_activity_ns)),
        el("td", {}, statusBadge(r.status)),
        el("td", { class: "num" }, fmtInt(r.series_count)),
        el("td", { class: "num" }, fmtInt(r.point_count)));
    }));
    this.count.textContent = terms.length ? `${shown.length} of ${this.runs.length} runs` : `${this.runs.length} runs`;
    this.empty.hidden = this.runs.length > 0;
    this.table.hidden = this.runs.length === 0;
    this.updateButton();
  }

  updateButton() {
    const known = new Set(this.runs.map((r) => runKey(r.id)));
    for (const key of this.selected) if (!known.has(key)) this.selected.delete(key);
    this.compare.disabled = this.selected.size < 2;
    this.compare.textContent = `Compare selected (${this.selected.size})`;
  }

  destroy() {
    this.abort.abort();
    clearTimeout(this.timer);
  }
}

/** Charts grouped by metric: one run (labels as lines, RL bands, environments), or several
 *  runs overlaid (one colour per run). Live: polls each run's changed series. */
class ChartsView {
  constructor(main, runs) {
    this.abort = new AbortController();
    this.runIds = runs;
    this.compare = runs.length > 1;
    this.runs = [];       // per run: {id, detail, series: Map(id → series), cursor}
    this.charts = new Map();
    this.sections = new Map();
    this.main = main;
    this.start().catch((error) => {
      if (isAbort(error)) return;
      main.replaceChildren(el("p", { class: "error" }, error.message),
                           el("p", {}, el("a", { href: "#/" }, "All runs")));
    });
  }

  async start() {
    const details = await Promise.all(this.runIds.map((id) => api(runApi(id), this.abort.signal)));
    this.runs = details.map((detail, i) => ({
      id: this.runIds[i], detail, color: PALETTE[i % PALETTE.length],
      series: new Map(detail.series.map((s) => [s.id, s])),
      cursor: detail.last_activity_ns,
    }));
    this.layout();
    this.sync();
    const t0 = performance.now();
    // In page order: the first requests bring the charts at the top.
    const byNode = new Map([...this.charts.values()].map((c) => [c.node, c]));
    const ordered = [...this.groups.querySelectorAll(".chart")].map((node) => byNode.get(node));
    await Promise.all(ordered.map((c) => this.loadChart(c)));
    await new Promise((resolve) => requestAnimationFrame(resolve));  // drawn, on screen
    window.metranaReady = { at: performance.now(), charts: this.charts.size, load: performance.now() - t0 };
    document.body.dataset.ready = "1";
    this.timer = setTimeout(() => this.poll(), this.pollDelay());
  }

  async loadChart(chart) {
    try {
      await chart.load(this.abort.signal);
    } catch (error) {
      if (!isAbort(error)) chart.area.replaceChildren(el("div", { class: "placeholder error" }, error.message));
    }
  }

  pollDelay() {
    if (document.hidden) return POLL_HIDDEN_MS;
    return this.runs.some((r) => r.detail.status === "live") ? POLL_LIVE_MS : POLL_QUIET_MS;
  }

  layout() {
    const runs = this.runs;
    if (this.compare) {
      crumbs(el("a", { href: "#/" }, "runs"), el("span", {}, `compare ${runs.length} runs`));
    } else {
      const [w, p, r] = runs[0].id;
      crumbs(el("a", { href: "#/" }, "runs"), el("span", {}, `${w} / ${p}`), el("span", {}, r));
    }
    this.header = el("div");
    this.renderHeader();
    const xSelect = el("select", { "aria-label": "x axis", onchange: () => { settings.x = xSelect.value; this.settingsChanged(true); } },
      el("option", { value: "step" }, "step"), el("option", { value: "wall" }, "wall time"),
      el("option", { value: "relative" }, "relative time"));
    xSelect.value = settings.x;
    const smoothValue = el("span", {}, settings.smoothing.toFixed(2));
    const smoothing = el("input", { type: "range", min: 0, max: 0.99, step: 0.01, value: String(settings.smoothing),
                                    "aria-label": "smoothing", oninput: () => {
      settings.smoothing = Number(smoothing.value);
      smoothValue.textContent = settings.smoothing.toFixed(2);
      clearTimeout(this.smoothTimer);
      this.smoothTimer = setTimeout(() => this.settingsChanged(false), 60);
    } });
    const logY = el("input", { type: "checkbox", checked: settings.logY, onchange: () => {
      settings.logY = logY.checked; this.settingsChanged(false); } });
    const filter = el("input", { type: "search", placeholder: "filter metrics", "aria-label": "filter metrics",
                                 oninput: () => this.filter(filter.value) });
    this.groups = el("div", {}, el("p", { class: "empty" },
      "No points logged yet: charts appear here as they arrive."));
    this.main.replaceChildren(this.header,
      el("div", { class: "toolbar" },
        el("label", {}, "x axis", xSelect),
        el("label", { title: "exponential moving average; the raw line stays faint behind" }, "smoothing", smoothing, smoothValue),
        el("label", {}, logY, "log y"),
        el("span", { class: "grow" }), filter,
        el("span", { class: "muted" }, "drag to zoom · double-click to reset")),
      this.groups);
  }

  renderHeader() {
    const parts = [];
    if (this.compare) {
      parts.push(el("h1", {}, `Comparing ${this.runs.length} runs`),
        el("div", { class: "runs-legend" }, this.runs.map((r) => el("span", {},
          el("span", { class: "sw", style: `display:inline-block;width:14px;height:4px;background:${r.color}` }),
          el("a", { href: runHash(r.id) }, r.id[2]), el("span", { class: "muted" }, `${r.id[0]} / ${r.id[1]}`),
          statusBadge(r.detail.status)))));
    } else {
      const run = this.runs[0].detail;
      const points = run.series.reduce((a, s) => a + s.point_count, 0);
      parts.push(el("h1", {}, run.run, " ", statusBadge(run.status)),
        el("div", { class: "meta" },
          el("span", {}, "workspace ", el("b", {}, run.workspace)),
          el("span", {}, "project ", el("b", {}, run.project)),
          run.experiment ? el("span", {}, "experiment ", el("b", {}, run.experiment)) : null,
          el("span", {}, "created ", el("b", {}, fmtDate(run.created_ns))),
          el("span", {}, "last activity ", el("b", {}, fmtAgo(run.last_activity_ns))),
          el("span", {}, el("b", {}, fmtInt(run.series.length)), " series"),
          el("span", {}, el("b", { id: "run-points" }, fmtInt(points)), " points")));
      if (!this.configBox) this.configBox = this.attributesBox(run.attributes);
      parts.push(this.configBox);
    }
    this.header.replaceChildren(...parts);
  }

  attributesBox(attributes) {
    const entries = Object.entries(attributes);
    const config = entries.filter(([path]) => path.startsWith("config/"));
    const other = entries.filter(([path]) => !path.startsWith("config/"));
    const value = (a) => (Array.isArray(a.value) ? a.value.join(", ") : String(a.value));
    const table = (rows, strip) => el("table", { class: "data config" },
      el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, "value"), el("th", {}, "type"))),
      el("tbody", {}, rows.map(([path, a]) => el("tr", {},
        el("td", { class: "path" }, strip ? path.slice(strip.length) : path),
        el("td", { class: "value" }, value(a)), el("td", { class: "muted" }, a.kind)))));
    const box = el("details", { class: "box", id: "config", open: config.length > 0 && config.length <= 40 },
      el("summary", {}, `Config (${config.length})`),
      el("div", { class: "inner" },
        config.length ? table(config, "config/") : el("p", { class: "muted" }, "This run has no config."),
        other.length ? [el("h2", { style: "margin:12px 0 6px" }, "Other attributes"), table(other, "")] : null));
    return box;
  }

  /** Charts for every metric group not charted yet; lines for series new to a chart. */
  sync() {
    const single = !this.compare;
    const added = [];
    this.runs.forEach((run, runIndex) => {
      const byGroup = new Map();
      for (const s of run.series.values()) {
        const evaluation = s.labels.evaluation === "true";
        const key = s.kind === "rl" ? JSON.stringify(["rl", s.metric_name, s.scale, evaluation])
          : JSON.stringify(["std", s.metric_name, s.scale]);
        if (!byGroup.has(key)) byGroup.set(key, []);
        byGroup.get(key).push(s);
      }
      for (const [key, members] of byGroup) {
        const first = members[0];
        let chart = this.charts.get(key);
        if (!chart) {
          chart = this.newChart(key, first);
          added.push(chart);
        }
        const base = runApi(run.id);
        if (first.kind === "rl") {
          let source = chart.sources.find((s) => s.run === run.detail && s.environment === undefined);
          if (!source) {
            source = new Source({
              url: `${base}/bands`, run: run.detail, band: true,
              query: { metric: first.metric_name, scale: first.scale, evaluation: String(first.labels.evaluation === "true") },
              label: single ? "mean ± std, min–max" : run.id[2],
              color: single ? PALETTE[0] : run.color,
            });
            chart.add(source);
            if (!added.includes(chart)) chart.pending = true;
          }
          source.expected = members.reduce((a, s) => a + s.point_count, 0);
          const envs = new Map();
          for (const s of members) envs.set(s.environment_id, (envs.get(s.environment_id) ?? 0) + s.point_count);
          for (const env of chart.sources.filter((s) => s.environment !== undefined && s.run === run.detail)) env.expected = envs.get(env.environment) ?? 0;
          source.label = single ? `mean ± std, min–max across ${envs.size} environment${envs.size === 1 ? "" : "s"}` : run.id[2];
          if (single) chart.setEnvironments?.([...envs.keys()].sort(naturalOrder));
        } else {
          members.forEach((s) => {
            let source = chart.sources.find((x) => x.seriesId === s.id && x.run === run.detail);
            if (!source) {
              const lineIndex = chart.sources.filter((x) => x.run === run.detail).length;
              const labels = fmtLabels(s.labels);
              source = new Source({
                url: base, seriesId: s.id, run: run.detail,
                label: single ? (labels || s.metric_name) : run.id[2] + (labels ? ` {${labels}}` : ""),
                color: single ? PALETTE[chart.sources.length % PALETTE.length] : run.color,
                dash: single ? [] : DASHES[lineIndex % DASHES.length],
              });
              chart.add(source);
              if (!added.includes(chart)) chart.pending = true;
            }
            source.expected = s.point_count;
          });
        }
      }
      run.detail.series = [...run.series.values()];
    });
    return added;
  }

  newChart(key, first) {
    const rl = first.kind === "rl";
    const evaluation = first.labels.evaluation === "true";
    const title = first.metric_name + (first.scale !== "ML_STEP" ? ` · ${first.scale.toLowerCase().replace("_", " ")}` : "")
      + (rl && evaluation ? " · evaluation" : "");
    let envBox = null;
    let chart;
    if (rl && !this.compare) {
      const list = el("div", { class: "list" });
      const summary = el("summary", {}, "single environments");
      envBox = el("details", { class: "envs" }, summary, list);
      const known = new Set();
      envBox.setEnvironments = (envs) => {
        summary.textContent = `single environments (${envs.length})`;
        for (const env of envs) {
          if (known.has(env)) continue;
          known.add(env);
          list.append(el("label", {}, el("input", { type: "checkbox", dataset: { env },
            onchange: (e) => this.toggleEnvironment(chart, env, e.target.checked) }), env || "(none)"));
        }
      };
    }
    chart = new Chart({
      title, metric: first.metric_name, xName: rl ? "rl_step" : "step", onEnvironments: envBox,
      onResetZoom: (from) => {
        for (const c of this.charts.values()) if (c.syncKey() === from.syncKey() && (c.zoom || c === from)) c.resetZoom();
      },
      attrs: { scale: first.scale, kind: first.kind, ...(rl ? { evaluation: String(evaluation) } : {}) },
    });
    chart.setEnvironments = envBox?.setEnvironments;
    this.charts.set(key, chart);
    const name = first.metric_name;
    const prefix = name.includes("/") ? name.slice(0, name.indexOf("/")) : "";
    const grid = this.section(prefix).grid;
    const after = [...grid.children].find((node) => naturalOrder(node.dataset.title, title) > 0);
    chart.node.dataset.title = title;
    grid.insertBefore(chart.node, after ?? null);
    return chart;
  }

  section(prefix) {
    let section = this.sections.get(prefix);
    if (!section) {
      const grid = el("div", { class: "grid" });
      const node = el("section", { class: "group", dataset: { prefix } },
        el("h2", {}, prefix ? `${prefix}/` : "metrics"), grid);
      section = { node, grid };
      this.sections.set(prefix, section);
      const order = [...this.sections.keys()].sort((a, b) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : a > b ? 1 : 0));
      this.groups.replaceChildren(...order.map((p) => this.sections.get(p).node));
    }
    return section;
  }

  async toggleEnvironment(chart, env, on) {
    const run = this.runs[0];
    if (!on) {
      chart.sources = chart.sources.filter((s) => s.environment !== env);
      chart.draw();
      return;
    }
    const band = chart.sources[0];
    const color = PALETTE[(1 + chart.sources.length) % PALETTE.length];
    const source = new Source({ url: band.url, query: { ...band.query, environment: env }, run: run.detail,
                                label: `env ${env}`, color, counts: false });
    source.environment = env;
    source.expected = [...run.series.values()].filter((s) => s.kind === "rl" && s.environment_id === env
      && s.metric_name === band.query.metric && s.scale === band.query.scale).reduce((a, s) => a + s.point_count, 0);
    chart.add(source);
    try {
      await source.loadAll(chart.buckets(), this.abort.signal);
      if (chart.zoom) source.zoomed = null;
      chart.draw();
    } catch (error) {
      if (!isAbort(error)) setConnection(error.message);
    }
  }

  async poll() {
    try {
      let changed = false;
      await Promise.all(this.runs.map(async (run) => {
        const body = await api(`${runApi(run.id)}/series?since=${Math.max(0, run.cursor - CURSOR_SLACK_NS)}`, this.abort.signal);
        run.cursor = body.now_ns;
        if (body.status !== run.detail.status || body.last_activity_ns !== run.detail.last_activity_ns) changed = true;
        run.detail.status = body.status;
        run.detail.last_activity_ns = body.last_activity_ns;
        for (const s of body.series) run.series.set(s.id, s);
      }));
      const added = this.sync();
      if (changed) this.renderHeader();
      await Promise.all([
        ...added.map((c) => this.loadChart(c)),
        ...[...this.charts.values()].filter((c) => !added.includes(c)).map(async (c) => {
          if (c.pending) {  // a new line: read it whole, once
            c.pending = false;
            await Promise.all(c.sources.filter((s) => !s.data.x.length).map((s) => s.loadAll(c.buckets(), this.abort.signal)));
          }
          await c.refresh(this.abort.signal);
        }),
      ]);
      if (this.filterText) this.filter(this.filterText);
    } catch (error) {
      if (isAbort(error)) return;
      setConnection(`live updates paused: ${error.message}`);
    }
    this.timer = setTimeout(() => this.poll(), this.pollDelay());
  }

  settingsChanged(resetZoom) {
    saveSettings();
    for (const chart of this.charts.values()) {
      if (resetZoom) { chart.zoom = null; for (const s of chart.sources) s.zoomed = null; }
      chart.shape = null;
      chart.draw();
    }
  }

  filter(text) {
    this.filterText = text;
    const terms = text.toLowerCase().split(/\s+/).filter(Boolean);
    for (const chart of this.charts.values()) {
      chart.node.hidden = !terms.every((t) => chart.metric.toLowerCase().includes(t));
    }
    for (const section of this.sections.values()) {
      section.node.hidden = [...section.grid.children].every((c) => c.hidden);
    }
  }

  destroy() {
    this.abort.abort();
    clearTimeout(this.timer);
    for (const chart of this.charts.values()) chart.destroy();
  }
}

function naturalOrder(a, b) {
  return a.localeCompare(b, undefined, { numeric: true });
}

// ---------------------------------------------------------------------------- router

let view = null;

function route() {
  view?.destroy();
  delete document.body.dataset.ready;
  setConnection(null);
  const main = document.getElementById("main");
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = hash.split("/");
  try {
    if (name === "run" && rest.length === 3) {
      view = new ChartsView(main, [rest.map(decodeURIComponent)]);
      document.title = `${decodeURIComponent(rest[2])} · metrana`;
      return;
    }
    if (name === "compare") {
      const runs = rest.join("/").split(",").filter(Boolean).map((r) => r.split("/").map(decodeURIComponent));
      if (runs.length && runs.every((r) => r.length === 3)) {
        view = new ChartsView(main, runs);
        document.title = `compare ${runs.length} runs · metrana`;
        return;
      }
    }
  } catch (error) {
    if (!(error instanceof URIError)) throw error;
  }
  document.title = "metrana";
  view = new RunsView(main);
}

window.addEventListener("hashchange", route);
route();
