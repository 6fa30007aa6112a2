// Parallel coordinates of a project's runs: one vertical axis per chosen config key and one
// for a summary metric, a line per run. Drawn on a canvas (thousands of lines: one path per
// colour, no DOM per run); each axis is a DOM strip over its line that takes the brush: drag
// along it to keep a range (numbers) or the values inside it (text), click to clear. Brushes
// go to `onBrush`, which filters the table and the charts on the server.
//
// Written here (~200 lines) rather than vendored: the libraries for it (d3-based) would bring
// more code than this and a second drawing model beside uPlot.

import { el } from "./dom.js";
import { fmtTick, hoverNum } from "./format.js";

const HEIGHT = 240;
const PAD_TOP = 28, PAD_BOTTOM = 18, PAD_X = 60;
const SNAP_PX = 6;  // a brush this close to an axis' end reaches it

/** An axis' scale: numbers (log when positive over a decade or more) or text categories. */
function scaleOf(values) {
  const numbers = values.map((v) => (typeof v === "number" ? v : hoverNum(v?.float ?? null))).filter((v) => v != null && Number.isFinite(v));
  const texts = values.filter((v) => v != null && typeof v !== "number" && !(typeof v === "object" && "float" in v)).map(String);
  if (texts.length > numbers.length) {
    const categories = [...new Set(texts)].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const at = new Map(categories.map((c, i) => [c, categories.length === 1 ? 0.5 : i / (categories.length - 1)]));
    return { kind: "text", categories, pos: (v) => (v == null ? null : at.get(String(v)) ?? null) };
  }
  let lo = Math.min(...numbers), hi = Math.max(...numbers);
  if (!numbers.length) { lo = 0; hi = 1; }
  const log = lo > 0 && hi / lo >= 10;  // learning rates: decades apart
  const f = log ? Math.log10 : (v) => v;
  const a = f(lo), b = f(hi);
  const span = b - a || 1;
  const pos = (v) => { const n = typeof v === "number" ? v : hoverNum(v?.float ?? null); return n == null || !Number.isFinite(n) ? null : (f(n) - a) / span + (b === a ? 0.5 : 0); };
  const value = (p) => { const x = a + p * span; return log ? 10 ** x : x; };
  return { kind: "number", lo, hi, log, pos, value };
}

export class ParallelCoords {
  constructor({ onBrush }) {
    this.onBrush = onBrush;
    this.canvas = el("canvas", { class: "pc-canvas" });
    this.layer = el("div", { class: "pc-axes" });
    this.node = el("div", { class: "parcoords", id: "parcoords" }, this.canvas, this.layer);
    this.axes = [];
    this.brush = {};
    // Drawn again when its width changes (not when it is first observed: setData draws).
    this.resize = new ResizeObserver(() => { if (Math.max(300, this.node.clientWidth) !== this.drawnWidth) this.draw(); });
    this.resize.observe(this.node);
  }

  /** `axes`: [{id, label, values}] (values in run order); `names`: the runs; `widthHint`: the
   *  width the page expects this to have (first view: see draw()). */
  setData(axes, names, brush, widthHint = null) {
    this.axes = axes.map((a) => ({ ...a, scale: scaleOf(a.values) }));
    this.names = names;
    this.brush = { ...brush };
    this.node.dataset.axes = String(axes.length);
    this.node.dataset.lines = String(names.length);
    this.draw(widthHint);
  }

  /** Which runs every brush keeps. */
  kept() {
    const keep = new Uint8Array(this.names?.length ?? 0).fill(1);
    for (const axis of this.axes) {
      const b = this.brush[axis.id];
      if (!b) continue;
      axis.values.forEach((v, i) => {
        if (!keep[i]) return;
        const n = typeof v === "number" ? v : hoverNum(v?.float ?? null);
        keep[i] = b.range ? (n != null && n >= b.range[0] && n <= b.range[1]) : b.values.includes(String(v));
      });
    }
    return keep;
  }

  x(i, width) { return this.axes.length === 1 ? width / 2 : PAD_X + i * (width - 2 * PAD_X) / (this.axes.length - 1); }
  y(p) { return PAD_TOP + (1 - p) * (HEIGHT - PAD_TOP - PAD_BOTTOM); }
  p(y) { return 1 - (y - PAD_TOP) / (HEIGHT - PAD_TOP - PAD_BOTTOM); }

  /** Drawn at `widthHint` if given: on the page's first view its own width is not read, which
   *  would lay out the page half drawn; were the hint wrong, the resize observer draws again. */
  draw(widthHint = null) {
    const width = Math.max(300, widthHint ?? this.node.clientWidth);
    this.drawnWidth = width;
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = width * ratio;
    this.canvas.height = HEIGHT * ratio;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${HEIGHT}px`;
    const ctx = this.canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, width, HEIGHT);
    if (!this.axes.length || !this.names) return;
    const keep = this.kept();
    const positions = this.axes.map((a) => a.values.map((v) => a.scale.pos(v)));
    const xs = this.axes.map((_, i) => this.x(i, width));
    const path = (selected) => {
      ctx.beginPath();
      for (let r = 0; r < this.names.length; r++) {
        if (Boolean(keep[r]) !== selected) continue;
        let pen = false;
        for (let k = 0; k < this.axes.length; k++) {
          const p = positions[k][r];
          if (p == null) { pen = false; continue; }
          const y = this.y(p);
          if (pen) ctx.lineTo(xs[k], y); else ctx.moveTo(xs[k], y);
          pen = true;
        }
      }
      ctx.stroke();
    };
    ctx.lineWidth = 1;
    ctx.strokeStyle = "rgba(120,130,150,0.18)";
    path(false);
    ctx.strokeStyle = this.names.length > 500 ? "rgba(36,99,235,0.25)" : "rgba(36,99,235,0.6)";
    path(true);
    const selected = keep.reduce((a, b) => a + b, 0);
    this.node.dataset.selected = String(selected);
    // Axes: line, ticks, brush; and the strips that take the mouse.
    ctx.fillStyle = "#1d2330";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    const strips = this.axes.map((axis, k) => {
      const x = xs[k];
      ctx.strokeStyle = "#677085";
      ctx.beginPath(); ctx.moveTo(x, PAD_TOP); ctx.lineTo(x, HEIGHT - PAD_BOTTOM); ctx.stroke();
      ctx.fillText(axis.label, x, 12);
      const s = axis.scale;
      const ticks = s.kind === "text" ? s.categories.slice(0, 12).map((c) => [s.pos(c), c])
        : [0, 0.5, 1].map((p) => [p, fmtTick(s.value(p))]);
      ctx.textAlign = "left";
      for (const [p, text] of ticks) ctx.fillText(String(text).slice(0, 14), x + 4, this.y(p) + 4);
      ctx.textAlign = "center";
      const b = this.brush[axis.id];
      if (b) {
        const ps = b.range ? b.range.map((v) => s.pos(v)) : b.values.map((v) => s.pos(v));
        const top = this.y(Math.max(...ps.filter((p) => p != null), 0) + (b.values ? 0.03 : 0));
        const bottom = this.y(Math.min(...ps.filter((p) => p != null), 1) - (b.values ? 0.03 : 0));
        ctx.fillStyle = "rgba(232,89,12,0.25)";
        ctx.fillRect(x - 6, top, 12, Math.max(2, bottom - top));
        ctx.fillStyle = "#1d2330";
      }
      return this.strip(axis, x);
    });
    this.layer.replaceChildren(...strips);
  }

  /** The strip over an axis that takes the brush. */
  strip(axis, x) {
    const node = el("div", { class: "pc-axis", style: `left:${x - 10}px;top:${PAD_TOP}px;height:${HEIGHT - PAD_TOP - PAD_BOTTOM}px`,
      dataset: { axis: axis.id, brushed: this.brush[axis.id] ? "1" : "" }, title: `${axis.label}: drag to filter, click to clear` });
    node.addEventListener("pointerdown", (down) => {
      down.preventDefault();
      node.setPointerCapture(down.pointerId);
      const top = node.getBoundingClientRect().top;
      const y0 = down.clientY - top + PAD_TOP;
      const done = (up) => {
        node.removeEventListener("pointerup", done);
        const y1 = up.clientY - top + PAD_TOP;
        if (Math.abs(y1 - y0) < 3) delete this.brush[axis.id];
        else {
          const [p0, p1] = [this.p(Math.max(y0, y1)), this.p(Math.min(y0, y1))];
          const s = axis.scale;
          const near = SNAP_PX / (HEIGHT - PAD_TOP - PAD_BOTTOM);
          if (s.kind === "text") this.brush[axis.id] = { values: s.categories.filter((c) => s.pos(c) >= p0 - near && s.pos(c) <= p1 + near) };
          else this.brush[axis.id] = { range: [s.value(Math.max(0, p0)), s.value(Math.min(1, p1))].map((v) => +v.toPrecision(6)) };
          // A range reaching within a few pixels of an axis' end holds the end exactly.
          const b = this.brush[axis.id];
          if (b.range && p0 <= near) b.range[0] = s.lo;
          if (b.range && p1 >= 1 - near) b.range[1] = s.hi;
        }
        this.draw();
        this.onBrush({ ...this.brush });
      };
      node.addEventListener("pointerup", done);
    });
    return node;
  }

  destroy() { this.resize.disconnect(); }
}

/** Brushes as filter conditions (the server's tree): numbers a range, text a set of values. */
export function brushConditions(brush, axes) {
  const out = [];
  for (const [id, b] of Object.entries(brush)) {
    const axis = axes.find((a) => a.id === id);
    if (!axis) continue;
    const subject = axis.request.attr ? { attr: axis.request.attr } : { series: axis.request.summary.series, fn: axis.request.summary.fn };
    if (b.range) out.push({ ...subject, op: ">=", value: b.range[0] }, { ...subject, op: "<=", value: b.range[1] });
    else if (b.values.length) {
      out.push({ ...subject, op: "in", value: b.values.map((v) => (axis.numeric ? Number(v) : v === "true" ? true : v === "false" ? false : v)) });
    } else out.push({ attr: "sys/name", op: "in", value: [""] });  // nothing kept
  }
  return out;
}
