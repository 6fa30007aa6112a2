// Charts of runs in groups: per chart, one curve per group (the mean across its runs on
// aligned step buckets, computed by the server: POST /api/query/aggregate_runs; with the
// "IQM, 95% bootstrap CI" band, their interquartile mean) and a band of the chosen kind.
// One colour per group on every chart (`GroupColors`); past 8 groups a compact legend where
// hovering the plot highlights the nearest curve.

import { isAbort, query } from "./api.js";
import { COMPACT_AFTER, lineWidth, PALETTE, uPlotLoaded } from "./chart.js";
import { smooth } from "./columns.js";
import { el } from "./dom.js";
import { fmtInt, fmtTick, fmtValue, num } from "./format.js";

/** The colour of each group, the same on every chart: given in the order groups are seen. */
export class GroupColors {
  constructor() { this.map = new Map(); }
  of(label) {
    if (!this.map.has(label)) this.map.set(label, PALETTE[this.map.size % PALETTE.length]);
    return this.map.get(label);
  }
}

const IQM_BUCKETS = 100;  // a bootstrap per bucket and group: 2,000 repetitions each
/** A group's curve: the band's own centre (the IQM band's IQM) or the mean. */
const center = (g) => g.mid ?? g.avg;

const faint = (c, a) => c + Math.round(a * 255).toString(16).padStart(2, "0");

export class GroupChart {
  /** `metric`: an entry of the project overview ({kind, metric, scale, labels}). */
  /** `widthHint`: the plot's width as the page expects it, until the chart is drawn (see
   *  buckets()). */
  constructor({ metric, colors, onZoom, onResetZoom, nameOnly, widthHint = null }) {
    this.metric = metric;
    this.widthHint = widthHint;
    this.colors = colors;
    this.onZoom = onZoom;
    this.onResetZoom = onResetZoom;
    this.nameOnly = nameOnly;   // groups are single runs (sys/name): label them by name
    this.plot = null;
    this.note = el("span", { class: "chart-note" });
    this.legend = el("div", { class: "legend" });
    this.area = el("div", { class: "plot" }, el("div", { class: "placeholder" }, "loading…"));
    const title = metric.metric + (metric.scale !== "ML_STEP" ? ` · ${metric.scale.toLowerCase().replace("_", " ")}` : "");
    this.node = el("div", { class: "chart group-chart", dataset: { metric: metric.metric, kind: metric.kind, scale: metric.scale } },
      el("div", { class: "chart-head" }, el("h3", { title }, title), this.note), this.area, this.legend);
    this.resize = new ResizeObserver(() => {
      if (this.plot && Math.abs(this.plot.width - this.width()) > 2) this.plot.setSize({ width: this.width(), height: this.plot.height });
    });
    this.resize.observe(this.area);
  }

  width() { return Math.max(200, this.area.clientWidth); }
  /** Buckets to ask for: one per 2 px; a bootstrapped band (IQM) at most IQM_BUCKETS. Before
   *  the chart is first drawn, of the page's expected width: reading the chart's own would
   *  lay out the page just built (20-60 ms on a cold page) before the read could go out. */
  buckets(band) {
    const width = this.widthHint ?? this.width();
    return Math.min(band === "iqm95" ? IQM_BUCKETS : 500, Math.max(50, Math.round(width / 2)));
  }

  /** Read this chart's groups: `body` is the page's question (filter, group_by, band, ...). */
  async load(body, signal) {
    const { metric, scale, labels, kind } = this.metric;
    // What the chart draws and its legend shows: a line per run needs only the means.
    const aggregations = this.nameOnly ? ["avg"] : ["avg", "lo", "hi", "mid"];
    const [answer] = await Promise.all([query("aggregate_runs", { ...body, n: this.buckets(body.band),
      series: { metric, scale, labels, kind }, aggregations }, signal), uPlotLoaded()]);
    this.answer = answer;
    return answer;
  }

  draw(smoothing, grouped) {
    const a = this.answer;
    if (!a) return;
    const width = this.widthHint ?? this.width();  // as buckets(): no layout on the first view
    this.widthHint = null;
    const d = this.node.dataset;
    d.groups = grouped ? String(a.groups.length) : "";
    if (!grouped) delete d.groups;
    Object.assign(d, { lo: String(a.lo), hi: String(a.hi), n: String(a.n), band: a.band.id });
    const label = (g) => (this.nameOnly ? g.runs[0] ?? g.label : g.label);
    const series = [{}];
    const data = [a.x];
    const bands = [];
    this.lines = a.groups.map((g) => {
      const color = this.colors.of(label(g));
      const first = series.length;
      const edge = { stroke: faint(color, 0.45), width: 1, points: { show: false }, spanGaps: true };
      const hasBand = !this.nameOnly && g.hi.some((v) => v != null);
      if (hasBand) {
        series.push({ ...edge, label: `${label(g)} hi` }, { ...edge, label: `${label(g)} lo` });
        data.push(smooth(g.hi.map(num), smoothing), smooth(g.lo.map(num), smoothing));
        bands.push({ series: [first, first + 1], fill: faint(color, 0.16) });
      }
      if (smoothing > 0) {
        series.push({ label: `${label(g)} raw`, stroke: faint(color, 0.3), width: 1, spanGaps: true, points: { show: false } });
        data.push(center(g).map(num));
      }
      series.push({ label: label(g), stroke: color, width: lineWidth(a.groups.length, 2), spanGaps: true });
      data.push(smooth(center(g).map(num), smoothing));
      return { group: g, color, label: label(g), series: [...Array(series.length - first).keys()].map((i) => first + i) };
    });
    const compact = this.lines.length > COMPACT_AFTER;
    this.plot?.destroy();
    this.area.replaceChildren();
    if (!a.x.length) {
      this.area.append(el("div", { class: "placeholder" }, a.runs_used ? "no points in range" : "no run logged it"));
      this.plot = null;
    } else {
      this.plot = new uPlot({
        width, height: 220, legend: { show: false }, series, bands,
        focus: { alpha: compact ? 0.15 : 1 },
        axes: [{ label: this.metric.kind === "rl" ? "rl_step" : "step", labelSize: 16, labelGap: 0, size: 36, space: 70 },
               { values: (u, splits) => splits.map(fmtTick),
                 size: (u, values) => 18 + 7 * Math.max(3, ...(values ?? []).map((v) => String(v).length)) }],
        cursor: { y: false, drag: { x: true, y: false }, focus: { prox: compact ? 24 : -1 },
                  bind: { dblclick: () => () => { this.onResetZoom?.(); return null; } } },
        hooks: {
          setCursor: [(u) => this.hover(u.cursor.idx)],
          setSelect: [(u) => {
            if (u.select.width < 4) return;
            const lo = Math.floor(u.posToVal(u.select.left, "x"));
            const hi = Math.ceil(u.posToVal(u.select.left + u.select.width, "x"));
            u.setSelect({ width: 0, height: 0 }, false);
            if (hi > lo) this.onZoom?.([lo, hi]);
          }],
          setSeries: [(u, i) => { this.focused = i; this.hover(u.cursor.idx); }],
        },
        scales: { x: { time: false, auto: true } },
      }, data, this.area);
      // A zoom is a new read of finer buckets (the page's x state), not uPlot's own rescale.
      this.plot.over.addEventListener("mouseleave", () => { this.focused = null; });
    }
    const runs = a.groups.reduce((s, g) => s + g.runs.length, 0);
    this.note.textContent = `${fmtInt(runs)} run${runs === 1 ? "" : "s"}` + (grouped ? ` · ${a.groups.length} groups · ${a.band.label}` : "")
      + (a.truncated ? ` · first ${fmtInt(a.runs_used)} of ${fmtInt(a.runs_matched)}` : "");
    this.buildLegend(compact);
    this.hover(null);
  }

  buildLegend(compact) {
    this.legendX = el("span", { class: "x" });
    this.focusNode = el("span", { class: "focus" });
    const items = this.lines.map((line) => {
      line.valueNode = el("b");
      const g = line.group;
      const runs = el("div", { class: "group-runs", hidden: true }, el("b", {}, `${g.runs.length} run${g.runs.length === 1 ? "" : "s"}`),
        ...g.runs.map((r) => el("div", {}, r)));
      line.node = el("span", { class: "item", title: g.runs.join("\n"),
        dataset: { group: g.label, runs: String(g.runs.length) },
        onmouseenter: () => { runs.hidden = false; this.highlight(line, true); },
        onmouseleave: () => { runs.hidden = true; this.highlight(line, false); } },
        el("span", { class: "sw", style: `background:${line.color}` }), line.label,
        this.nameOnly ? "" : el("span", { class: "muted" }, ` (${g.runs.length})`), compact ? "" : [" ", line.valueNode], runs);
      return line.node;
    });
    this.legend.classList.toggle("compact", compact);
    this.legend.replaceChildren(this.legendX, compact ? this.focusNode : "", ...items);
  }

  highlight(line, on) {
    if (!this.plot) return;
    this.plot.setSeries(on ? line.series[line.series.length - 1] : null, { focus: true });
  }

  /** Hover: the bucket's step and, per group, its mean, band and runs there (in the
   *  entries' data- attributes too: avg, lo, hi, count). Compact: only the nearest curve. */
  hover(idx) {
    if (!this.plot || !this.lines) return;
    const xs = this.plot.data[0];
    const at = idx ?? xs.length - 1;
    this.legendX.textContent = xs[at] == null ? "" : `${this.metric.kind === "rl" ? "rl_step" : "step"} ${fmtInt(xs[at])}`;
    for (const line of this.lines) {
      const g = line.group;
      const d = line.node.dataset;
      d.avg = String(g.avg[at] ?? "");
      d.mid = String(center(g)[at] ?? "");
      d.lo = String(g.lo?.[at] ?? "");
      d.hi = String(g.hi?.[at] ?? "");
      d.count = String(g.count[at] ?? 0);
      d.x = String(xs[at] ?? "");
      line.valueNode.textContent = fmtValue(center(g)[at]) + (g.count[at] > 1 && g.lo ? ` [${fmtValue(g.lo[at])}, ${fmtValue(g.hi[at])}] · ${g.count[at]} runs` : "");
    }
    const focused = this.lines.find((l) => l.series.includes(this.focused));
    this.focusNode.textContent = focused ? `${focused.label}: ${fmtValue(center(focused.group)[at])}` : "";
  }

  destroy() {
    this.resize.disconnect();
    this.plot?.destroy();
  }
}

/** Read several charts, a few at once; resolves, once all are read, to what draws them
 *  (`draw(chart)` each; a chart whose read failed shows why). */
export async function loadCharts(charts, body, signal, draw) {
  const queue = [...charts];
  const failed = new Map();
  const worker = async () => {
    for (let chart = queue.shift(); chart; chart = queue.shift()) {
      try {
        await chart.load(body, signal);
      } catch (error) {
        if (isAbort(error)) throw error;
        failed.set(chart, error);
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return () => {
    for (const chart of charts) {
      if (failed.has(chart)) chart.area.replaceChildren(el("div", { class: "placeholder error" }, failed.get(chart).message));
      else draw(chart);
    }
  };
}
