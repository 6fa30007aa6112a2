// Histogram and scatter series (log_histogram, log_scatter, log_scatter3d): a histogram as a
// distribution over steps (steps on x, value on y, the share of values as colour, with its
// min–max and mean lines) and a slider that shows the histogram at one step; a scatter as its
// cloud at the chosen step (3-D as its three 2-D projections). Drawn on plain canvases.
//   GET /api/runs/W/P/R/values                 the run's histogram and scatter series
//   GET /api/runs/W/P/R/values/ID/chart?n=     a histogram's chart columns, or a scatter's steps
//   GET /api/runs/W/P/R/values/ID/at?step=     the histogram or cloud at one step
// Exposed for tests: data-metric, data-kind ("histogram" | "scatter"), data-steps (how many
// steps the series holds); the detail below a chart says its step in data-step once drawn.

import { api, runApi } from "./api.js";
import { el } from "./dom.js";
import { fmtInt, fmtTick, fmtValue } from "./format.js";

const HEIGHT = 220;
const PAD = { left: 52, right: 10, top: 8, bottom: 24 };
const COLUMNS_MAX = 240;  // ~2 px a column: the page's share of 10,000 steps
const HEAT = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];

/** The run's histogram and scatter series (an empty list from an older server). */
export async function valueSeries(runId, signal) {
  try {
    return (await api(`${runApi(runId)}/values`, signal)).series;
  } catch (error) {
    if (error.status === 404) return [];
    throw error;
  }
}

/** A canvas sized for the device's pixels, and its 2-D context in CSS pixels. */
function canvas(width, height) {
  const node = el("canvas", { width: Math.round(width * devicePixelRatio), height: Math.round(height * devicePixelRatio) });
  node.style.width = `${width}px`;
  node.style.height = `${height}px`;
  const ctx = node.getContext("2d");
  ctx.scale(devicePixelRatio, devicePixelRatio);
  return { node, ctx };
}

function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** Axes of a plot area: x and y ticks with labels and titles. */
function axes(ctx, box, x, y, xTitle, yTitle) {
  ctx.strokeStyle = "#c9ced8";
  ctx.fillStyle = "#677085";
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.strokeRect(box.left, box.top, box.width, box.height);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const v of ticks(x.lo, x.hi)) ctx.fillText(fmtTick(v), x.px(v), box.top + box.height + 3);
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of ticks(y.lo, y.hi, 4)) ctx.fillText(fmtTick(v), box.left - 4, y.px(v));
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  if (xTitle) ctx.fillText(xTitle, box.left + 4, box.top + 2);
  if (yTitle) {
    ctx.save();
    ctx.translate(10, box.top + box.height / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(yTitle, 0, 0);
    ctx.restore();
  }
}

function scale(lo, hi, from, to) {
  if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
  return { lo, hi, px: (v) => from + ((v - lo) / (hi - lo)) * (to - from) };
}

function heatColour(share, top) {
  const t = top > 0 ? Math.min(1, Math.sqrt(share / top)) : 0;
  const at = t * (HEAT.length - 1);
  const i = Math.min(HEAT.length - 2, Math.floor(at));
  const f = at - i;
  return HEAT[i].map((c, k) => Math.round(c + (HEAT[i + 1][k] - c) * f));
}

/** One histogram or scatter series of one run: a card in the page's grid. */
export class ValueChart {
  constructor({ run, series, label }) {
    this.run = run;
    this.series = series;
    this.kind = series.kind === "histogram" ? "histogram" : "scatter";
    this.steps = [];
    const title = series.metric + (label ? ` · ${label}` : "");
    this.slider = el("input", { type: "range", min: 0, max: 0, value: 0, "aria-label": `step of ${title}`,
                                oninput: () => this.showSoon() });
    this.stepNote = el("span", { class: "chart-note" });
    this.area = el("div", { class: "plot" });
    this.detail = el("div", { class: "value-detail" });
    this.node = el("div", { class: "chart value-chart", dataset: { metric: series.metric, kind: this.kind, steps: String(series.count) } },
      el("div", { class: "chart-head" }, el("h3", {}, title), this.stepNote),
      this.area,
      el("label", { class: "value-step" }, "step ", this.slider),
      this.detail);
    this.node.valueChart = this;  // what it drew, for tests: .answer (the chart's columns)
  }

  async load(signal) {
    this.signal = signal;  // before fetchAt
    const width = Math.max(240, this.area.clientWidth || 440);
    const columns = Math.min(COLUMNS_MAX, Math.max(1, Math.floor(width - PAD.left - PAD.right)));
    // The chart and the last step's value at once (the series row names its last step).
    const last = this.series.last_step;
    const [answer, value] = await Promise.all([
      api(`${runApi(this.run)}/values/${this.series.id}/chart?n=${columns}`, signal),
      last == null ? null : this.fetchAt(last)]);
    this.answer = answer;
    this.steps = answer.steps;
    this.node.dataset.steps = String(this.steps.length);
    this.slider.max = String(Math.max(0, this.steps.length - 1));
    this.slider.value = this.slider.max;
    if (this.kind === "histogram") this.drawDistribution(width);
    else this.area.replaceChildren();
    await this.show(this.steps[this.steps.length - 1] === last ? value : null);
  }

  fetchAt(step) {
    return api(`${runApi(this.run)}/values/${this.series.id}/at?step=${step}`, this.signal);
  }

  /** The distribution over steps: one column per group of steps, one row per bin of the grid. */
  drawDistribution(width) {
    const a = this.answer;
    const { node, ctx } = canvas(width, HEIGHT);
    const box = { left: PAD.left, top: PAD.top, width: width - PAD.left - PAD.right, height: HEIGHT - PAD.top - PAD.bottom };
    if (!a.first.length) {
      this.area.replaceChildren(el("div", { class: "placeholder" }, "no histograms yet"));
      return;
    }
    const grid = a.grid;
    const x = scale(a.first[0], a.last[a.last.length - 1], box.left, box.left + box.width);
    const y = scale(grid[0], grid[grid.length - 1], box.top + box.height, box.top);
    // The cells as an image of columns x rows, each row stretched over its bin's value range.
    const cols = a.cells.length;
    const rows = grid.length - 1;
    let top = 0;
    for (const column of a.cells) for (const share of column) if (share > top) top = share;
    const image = new ImageData(cols, rows);
    for (let c = 0; c < cols; c++) {
      const column = a.cells[c];
      for (let r = 0; r < rows; r++) {
        const [red, green, blue] = heatColour(column[r], top);
        const at = ((rows - 1 - r) * cols + c) * 4;
        image.data[at] = red; image.data[at + 1] = green; image.data[at + 2] = blue; image.data[at + 3] = 255;
      }
    }
    const offscreen = document.createElement("canvas");
    offscreen.width = cols;
    offscreen.height = rows;
    offscreen.getContext("2d").putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    for (let r = 0; r < rows; r++) {
      const y0 = y.px(grid[r + 1]);
      const y1 = y.px(grid[r]);
      ctx.drawImage(offscreen, 0, rows - 1 - r, cols, 1, box.left, y0, box.width, Math.max(1, y1 - y0));
    }
    const line = (values, colour, dash) => {
      ctx.beginPath();
      ctx.strokeStyle = colour;
      ctx.setLineDash(dash);
      ctx.lineWidth = 1.4;
      let pen = false;
      values.forEach((v, i) => {
        if (v == null) { pen = false; return; }
        const px = box.left + ((i + 0.5) / cols) * box.width;
        if (pen) ctx.lineTo(px, y.px(v)); else ctx.moveTo(px, y.px(v));
        pen = true;
      });
      ctx.stroke();
      ctx.setLineDash([]);
    };
    line(a.min, "#e8590c", [4, 3]);
    line(a.max, "#e8590c", [4, 3]);
    line(a.mean, "#c2255c", []);
    axes(ctx, box, x, y, "step", "value");
    node.addEventListener("click", (event) => {
      const rect = node.getBoundingClientRect();
      const step = x.lo + ((event.clientX - rect.left - box.left) / box.width) * (x.hi - x.lo);
      this.slider.value = String(nearest(this.steps, step));
      this.showSoon();
    });
    node.title = "click: the histogram at that step";
    this.area.replaceChildren(node);
    this.area.dataset.columns = String(cols);
  }

  showSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.show().catch(() => {}), 30);
  }

  /** The histogram or cloud at the slider's step, below the chart (or in it, for a cloud). */
  async show(known = null) {
    if (!this.steps.length) {
      this.detail.replaceChildren(el("p", { class: "muted" }, "nothing logged yet"));
      return;
    }
    const step = this.steps[Number(this.slider.value)];
    this.stepNote.textContent = `step ${fmtInt(step)} of ${fmtInt(this.steps.length)} logged`;
    const value = known ?? await this.fetchAt(step);
    if (this.steps[Number(this.slider.value)] !== step) return;  // moved on meanwhile
    if (this.kind === "histogram") this.drawHistogram(value);
    else this.drawCloud(value);
    this.detail.dataset.step = String(step);
  }

  drawHistogram(h) {
    const width = Math.max(240, this.area.clientWidth || 440);
    const height = 140;
    const { node, ctx } = canvas(width, height);
    const values = h.counts ?? h.densities;
    const edges = h.edges;
    const box = { left: PAD.left, top: 6, width: width - PAD.left - PAD.right, height: height - 6 - PAD.bottom };
    const x = scale(edges[0], edges[edges.length - 1], box.left, box.left + box.width);
    const y = scale(0, Math.max(...values), box.top + box.height, box.top);
    ctx.fillStyle = "#2463eb";
    values.forEach((v, i) => {
      const x0 = x.px(edges[i]);
      const x1 = x.px(edges[i + 1]);
      ctx.fillRect(x0, y.px(v), Math.max(1, x1 - x0 - (x1 - x0 > 3 ? 1 : 0)), y.px(0) - y.px(v));
    });
    axes(ctx, box, x, y, "", h.counts ? "count" : "density");
    const total = h.counts ? h.counts.reduce((s, c) => s + c, 0) : null;
    const facts = [`${values.length} bins`];
    if (total !== null) facts.push(`${fmtInt(total)} values`);
    if (h.stats) {
      const [lo, hi, sum, squares] = h.stats;
      facts.push(`min ${fmtValue(lo)}`, `max ${fmtValue(hi)}`);
      if (total) {
        const mean = sum / total;
        facts.push(`mean ${fmtValue(mean)}`, `std ${fmtValue(Math.sqrt(Math.max(0, squares / total - mean * mean)))}`);
      }
    }
    this.detail.replaceChildren(node, el("div", { class: "legend value-facts" }, facts.join(" · ")));
    this.detail.dataset.bins = String(values.length);
    this.detail.dataset.total = total === null ? "" : String(total);
  }

  drawCloud(p) {
    const titles = this.series.titles || {};
    const three = Array.isArray(p.zs);
    const pairs = three ? [["xs", "ys"], ["xs", "zs"], ["ys", "zs"]] : [["xs", "ys"]];
    const full = Math.max(240, this.area.clientWidth || 440);
    const width = three ? Math.max(160, Math.floor(full / 3) - 4) : full;
    const title = (axis) => titles[`${axis[0]}_title`] ?? axis[0];
    const plots = pairs.map(([a, b]) => {
      const { node, ctx } = canvas(width, HEIGHT);
      const box = { left: PAD.left, top: PAD.top, width: width - PAD.left - PAD.right, height: HEIGHT - PAD.top - PAD.bottom };
      const range = (values) => values.reduce(([lo, hi], v) => [Math.min(lo, v), Math.max(hi, v)], [Infinity, -Infinity]);
      const [x0, x1] = p[a].length ? range(p[a]) : [0, 1];
      const [y0, y1] = p[b].length ? range(p[b]) : [0, 1];
      const x = scale(x0, x1, box.left + 3, box.left + box.width - 3);
      const y = scale(y0, y1, box.top + box.height - 3, box.top + 3);
      ctx.fillStyle = "rgba(36, 99, 235, 0.6)";
      const size = p[a].length > 5000 ? 1.5 : 3;
      for (let i = 0; i < p[a].length; i++) ctx.fillRect(x.px(p[a][i]) - size / 2, y.px(p[b][i]) - size / 2, size, size);
      axes(ctx, box, x, y, title(a), title(b));
      node.dataset.axes = `${a[0]}${b[0]}`;
      return node;
    });
    this.area.replaceChildren(el("div", { class: "projections" }, plots));
    this.area.dataset.points = String(p.xs.length);
    this.detail.replaceChildren(el("div", { class: "legend value-facts" }, `${fmtInt(p.xs.length)} points`));
  }
}

function nearest(steps, step) {
  let lo = 0;
  let hi = steps.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < step) lo = mid + 1; else hi = mid;
  }
  return lo > 0 && step - steps[lo - 1] < steps[lo] - step ? lo - 1 : lo;
}
