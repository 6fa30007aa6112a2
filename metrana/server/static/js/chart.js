// One chart: uPlot (vendored, the global `uPlot`) over one or more sources, with min–max
// envelopes, the RL band, smoothing, a hover legend, zoom into finer buckets, and live updates.

import { isAbort } from "./api.js";
import { emptyColumns, pointsIn, smooth } from "./columns.js";
import { el, setConnection } from "./dom.js";
import { UPLOT_URL } from "./first_read.js";
import { fmtDuration, fmtInt, fmtTick, fmtValue, num } from "./format.js";
import { settings } from "./settings.js";
import { xValues } from "./source.js";

export const PALETTE = ["#2463eb", "#e8590c", "#2f9e44", "#c2255c", "#7048e8", "#0c8599", "#a07400",
                 "#d6336c", "#5c940d", "#1971c2", "#862e9c", "#e03131"];
export const DASHES = [[], [6, 3], [2, 3], [10, 3, 2, 3]];
export const COMPACT_AFTER = 8;  // lines on a chart; more get a compact legend

/** A line's width on a chart of `lines` lines: past COMPACT_AFTER, 1 px. Many thick lines
 *  tangle, and without a GPU 1-px lines are drawn as hairlines, several times faster than
 *  wider strokes (20 runs × 4 charts: ~200 ms less per frame, measured; bench_project.py). */
export const lineWidth = (lines, wide) => (lines > COMPACT_AFTER ? 1 : wide);

let uPlotScript = null;  // a promise: the script put in the page, until it has run

/** uPlot's global: resolves once its script has run, which the first call starts (the file
 *  itself is fetched earlier: js/first_read.js). Every first draw waits for it: run only when
 *  a chart needs it, it runs while the page waits for its reads. */
export function uPlotLoaded() {
  if (window.uPlot) return Promise.resolve();
  uPlotScript ??= new Promise((resolve) => {
    // Failed to load: the draw then says "uPlot is not defined" where the chart would be.
    const script = el("script", { id: "uplot", src: UPLOT_URL, onload: resolve, onerror: resolve });
    document.head.append(script);
  });
  return uPlotScript;
}

/** Rows of several tables (each sorted by x) in one x-sorted table; a row holds one x value
 *  and each table's bucket at that x, if any. Returns xs and, per table, bucket index by row. */
function align(tables) {
  // One table, or tables with the very same x values (runs compared that logged the same
  // steps): each row is the same index in every table, no merge needed.
  const first = tables[0] ?? [];
  let sorted = true;
  for (let i = 1; i < first.length && sorted; i++) {
    sorted = first[i - 1] < first[i] || (tables.length === 1 && first[i - 1] === first[i]);
  }
  const same = (t) => t === first || (t.length === first.length && t.every((x, i) => x === first[i]));
  if (sorted && tables.every(same)) {
    const identity = Int32Array.from(first, (_, i) => i);
    return { xs: Array.from(first), rows: tables.map(() => identity) };
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

export class Chart {
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
    await Promise.all([...this.sources.map((s) => s.loadAll(n, signal)), uPlotLoaded()]);
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
    const width = lineWidth(visible.length, 1.5);
    visible.forEach((source, k) => {
      const cols = this.visibleData(source);
      const row = rows[k];
      const mean = column(cols.mean, row);
      const edge = { stroke: faint(source.color, 0), width: 0, points: { show: false }, spanGaps: true,
                     show: source.shown };
      // The envelope's edges are lines, not only a fill: one spike among a million points is
      // a visible tick at a glance.
      const envelope = { ...edge, stroke: faint(source.color, 0.5), width: 1 };
      const first = series.length;
      // Buckets of one point each (raw points) have no envelope: its lines would be the line.
      if (cols.count.some((c) => c > 1)) {
        series.push({ ...envelope, label: `${source.label} max` }, { ...envelope, label: `${source.label} min` });
        data.push(column(cols.max, row), column(cols.min, row));
        bands.push({ series: [first, first + 1], fill: faint(source.color, 0.1) });
      }
      if (source.band && cols.std) {
        const hi = Array.from(row, (i) => (i < 0 ? null : ok(num(cols.mean[i]) + (num(cols.std[i]) ?? 0))));
        const lo = Array.from(row, (i) => (i < 0 ? null : ok(num(cols.mean[i]) - (num(cols.std[i]) ?? 0))));
        const at = series.length;
        series.push({ ...edge, label: `${source.label} +std` }, { ...edge, label: `${source.label} -std` });
        data.push(hi, lo);
        bands.push({ series: [at, at + 1], fill: faint(source.color, 0.2) });
      }
      const smoothing = settings.smoothing;
      if (smoothing > 0) {
        series.push({ label: `${source.label} raw`, stroke: faint(source.color, 0.25), width: 1,
                      dash: source.dash, spanGaps: true, points: { show: false }, show: source.shown });
        data.push(mean);
      }
      // uPlot draws the points themselves when they are few and far between (a single point).
      series.push({ label: source.label, stroke: source.color, width, dash: source.dash,
                    spanGaps: true, show: source.shown });
      data.push(smooth(mean, smoothing));
      this.lines.push({ source, row, cols, series: [...Array(series.length - first).keys()].map((i) => first + i) });
    });
    return { series, data, bands, xs };
  }

  /** More lines than this: a compact legend, and the line nearest the cursor highlighted. */
  compact() { return (this.lines?.length ?? 0) > COMPACT_AFTER; }

  options({ series, bands }) {
    const mode = settings.x;
    const compact = this.compact();
    const xAxis = { label: mode === "step" ? this.xName : X_TITLES[mode], labelSize: 16, labelGap: 0,
                    size: 36, space: 70 };
    if (mode === "relative") xAxis.values = (u, splits) => splits.map(fmtDuration);
    return {
      width: this.width(),
      height: 220,
      legend: { show: false },
      series,
      bands,
      focus: { alpha: compact ? 0.15 : 1 },
      scales: { x: { time: mode === "wall" }, y: { distr: settings.logY ? 3 : 1 } },
      axes: [xAxis, {
        values: (u, splits) => splits.map(fmtTick),
        size: (u, values) => 18 + 7 * Math.max(3, ...(values ?? []).map((v) => String(v).length)),
      }],
      cursor: {
        // Charts on the same x (steps, rl_steps, or time) share the cursor and the zoom.
        sync: { key: this.syncKey() },
        y: false,
        focus: { prox: compact ? 24 : -1 },
        drag: { x: true, y: false },
        bind: { dblclick: () => () => { (this.onResetZoom ?? (() => this.resetZoom()))(this); return null; } },
      },
      hooks: {
        setScale: [(u, key) => { if (key === "x") this.onZoom(u); }],
        setCursor: [(u) => this.hover(u.cursor.idx)],
        setSeries: [(u, i) => { this.focused = i; this.hover(u.cursor.idx); }],
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
      if (line.series.includes(this.focused)) {
        this.focusNode.textContent = `${line.source.label}: ${line.valueNode.textContent}`;
        this.focusNode.style.color = line.source.color;
      }
    }
    if (!this.lines.some((l) => l.series.includes(this.focused))) this.focusNode.textContent = "";
  }

  /** The legend's entries, made once per drawing; hovering only changes their text. */
  buildLegend() {
    this.legendLines = this.lines;
    this.legendX = el("span", { class: "x" });
    this.focusNode = el("span", { class: "focus" });
    const compact = this.compact();
    const items = this.lines.map((line) => {
      line.valueNode = el("b");
      line.extraNode = el("span", { class: "extra" });
      const main = line.series[line.series.length - 1];
      return el("span", { class: "item" + (line.source.shown ? "" : " off"), title: "click to show or hide",
                          onclick: (e) => { this.toggle(line); e.currentTarget.classList.toggle("off", !line.source.shown); },
                          onmouseenter: () => this.plot?.setSeries(main, { focus: true }),
                          onmouseleave: () => this.plot?.setSeries(null, { focus: true }) },
        el("span", { class: "sw", style: `background:${line.source.color}` }),
        line.source.label, compact ? "" : [" ", line.valueNode, line.extraNode]);
    });
    // Past COMPACT_AFTER lines: names only, in a short scrolling box; the value shown is the
    // highlighted line's (hover the plot near a line, or its name).
    this.legend.classList.toggle("compact", compact);
    this.legend.replaceChildren(this.legendX, compact ? this.focusNode : "", ...items);
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
