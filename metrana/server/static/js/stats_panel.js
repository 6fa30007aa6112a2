// The project page's "statistics" panel: the current groups compared with statistical
// confidence (POST /api/query/compare_groups; metrana/server/statistics.py, rliable's numbers):
// each group's IQM, median, mean and optimality gap of its runs' scores with stratified
// bootstrap 95% intervals (an interval plot), performance profiles with bands (a uPlot chart),
// and the probability of improvement of every pair (a matrix). A run's score is a summary of
// the page's metric (last 10 episodes or points by default); a task key (config/task) scores
// each group over its tasks.
//
// Test hooks: `#stats[data-generation]` counts the views asked for and `[data-done]` the last
// one drawn; every interval `[data-group][data-aggregate]` with data-value/-lo/-hi; every
// profile curve's legend entry `[data-group]` with data-fraction/-lo/-hi (JSON arrays) and the
// chart's data-thresholds; every matrix cell `[data-x][data-y]` with data-value/-lo/-hi; each
// group's run count `[data-runs]` (and `.few` below MIN_SEEDS runs per task).

import { isAbort, query } from "./api.js";
import { PALETTE, uPlotLoaded } from "./chart.js";
import { el } from "./dom.js";
import { fmtInt, fmtTick, fmtValue } from "./format.js";

export const SUMMARIES = [["last10", "last 10 (episodes or points)"], ["last", "last"], ["min", "min"], ["max", "max"], ["mean", "mean"]];
const AGGREGATES = [["iqm", "IQM"], ["median", "median"], ["mean", "mean"], ["optimality_gap", "optimality gap (γ = 1)"]];
const MIN_SEEDS = 5;          // fewer runs per task than this: the intervals are not to be trusted
const MATRIX_GROUPS = 12;     // more groups: no probability-of-improvement matrix (n·(n-1) pairs)
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) node.setAttribute(k, String(v));
  node.append(...children.flat());
  return node;
}

const faint = (c, a) => c + Math.round(a * 255).toString(16).padStart(2, "0");

export class StatsPanel {
  /** `colors`: the page's GroupColors (a group has one colour everywhere). */
  constructor({ colors, onChange }) {
    this.colors = colors;
    this.onChange = onChange;
    this.plot = null;
    this.summary = el("select", { id: "stats-summary", "aria-label": "score", onchange: () => this.onChange({ score: this.summary.value }) },
      SUMMARIES.map(([id, label]) => el("option", { value: id }, label)));
    this.task = el("select", { id: "stats-task", "aria-label": "task key", onchange: () => this.onChange({ task: this.task.value }) });
    this.note = el("span", { class: "muted" });
    this.body = el("div", { class: "stats-body" });
    this.node = el("details", { class: "box stats", id: "stats", open: true, dataset: { generation: "0" } },
      el("summary", {}, "Statistics ", el("span", { class: "muted" }, "(IQM, bootstrap 95% intervals, performance profiles: rliable)")),
      el("div", { class: "inner" },
        el("div", { class: "toolbar" }, el("label", {}, "score", this.summary), el("label", {}, "task key", this.task), this.note),
        this.body));
  }

  /** The choices of the page: config keys a task key can be, and the current state. */
  setChoices(paths, state) {
    this.task.replaceChildren(el("option", { value: "" }, "(none: one task)"),
      ...paths.map((p) => el("option", { value: p, selected: p === state.task }, p)));
    this.summary.value = state.score || "last10";
    this.task.value = state.task || "";
  }

  /** Read and draw the statistics of the page's question (filter, groups, metric). */
  /** A new view is asked for: its statistics are pending until `load` draws them. */
  begin() { this.node.dataset.generation = String(Number(this.node.dataset.generation) + 1); }

  async load(base, metric, state, signal) {
    const generation = Number(this.node.dataset.generation);
    const done = () => { if (Number(this.node.dataset.generation) === generation) this.node.dataset.done = String(generation); };
    if (!state.group.length || !metric) {
      this.clear("Group the runs (group by) to compare the groups with statistical confidence.");
      return done();
    }
    this.body.replaceChildren(el("p", { class: "muted" }, "computing…"));
    const body = {
      workspace: base.workspace, project: base.project, filter: base.filter, runs: base.runs,
      group_by: state.group, series: { metric: metric.metric, scale: metric.scale, labels: metric.labels, kind: metric.kind },
      summary: state.score || "last10", task_key: state.task || null, reps: state.reps, seed: 0,
      aggregates: AGGREGATES.map(([id]) => id), profile: { points: 51 },
    };
    try {
      const [answer] = await Promise.all([query("compare_groups", body, signal), uPlotLoaded()]);
      const pairs = answer.groups.length >= 2 && answer.groups.length <= MATRIX_GROUPS
        ? await query("compare_groups", { ...body, aggregates: ["mean"], profile: null, improvement: "all" }, signal) : null;
      this.draw(answer, pairs?.improvement ?? null);
    } catch (error) {
      if (isAbort(error)) throw error;
      this.clear(error.message, true);
    }
    done();
  }

  clear(message, error = false) {
    this.plot?.destroy();
    this.plot = null;
    this.note.textContent = "";
    this.body.replaceChildren(el("p", { class: error ? "error stats-error" : "muted" }, message));
  }

  draw(answer, improvement) {
    this.plot?.destroy();
    this.plot = null;
    const groups = answer.groups;
    const scored = answer.runs_scored;
    this.note.textContent = `${fmtInt(scored)} runs scored by ${answer.metric} · ${answer.tasks.length} task${answer.tasks.length === 1 ? "" : "s"}`
      + ` · ${fmtInt(answer.reps)} bootstrap repetitions`
      + (answer.runs_unscored.length ? ` · ${answer.runs_unscored.length} without a score` : "");
    this.profileArea = el("div", { class: "plot" });
    this.body.replaceChildren(
      this.runsTable(groups),
      el("h4", {}, "Aggregates with 95% stratified bootstrap intervals"),
      this.intervals(groups),
      el("div", { class: "stats-row" },
        el("div", { class: "stats-profile", dataset: { thresholds: JSON.stringify(answer.profile.thresholds) } },
          el("h4", {}, "Performance profile: fraction of runs scoring above τ"), this.profileArea, this.profileLegend(answer.profile)),
        el("div", { class: "stats-matrix" }, el("h4", {}, "Probability of improvement P(row > column)"),
          improvement ? this.matrix(groups, improvement)
            : el("p", { class: "muted" }, groups.length < 2 ? "one group: nothing to compare" : `more than ${MATRIX_GROUPS} groups: ask metrana.query for the pairs`))));
    this.profileChart(answer.profile);
  }

  runsTable(groups) {
    const few = groups.filter((g) => g.runs_per_task < MIN_SEEDS);
    return el("div", { class: "stats-runs" },
      el("div", { class: "legend" }, groups.map((g) => el("span", {
        class: `item${g.runs_per_task < MIN_SEEDS ? " few" : ""}`, dataset: { group: g.label, runs: String(g.runs), perTask: String(g.runs_per_task) },
        title: g.run_names.flat().join("\n") },
        el("span", { class: "sw", style: `background:${this.colors.of(g.label)}` }), g.label,
        el("span", { class: "muted" }, ` (${g.runs} run${g.runs === 1 ? "" : "s"})`)))),
      few.length ? el("p", { class: "warning", id: "stats-warning" },
        `⚠ fewer than ${MIN_SEEDS} seeds per task in ${few.map((g) => g.label).join(", ")}: intervals from so few runs are wide and unreliable.`) : "");
  }

  /** One small plot per aggregate: groups down, the interval as a whisker, the value a dot. */
  intervals(groups) {
    const rowH = 22, top = 20, left = 8, width = 220, height = top + rowH * groups.length + 22;
    const names = svg("svg", { width: 170, height, class: "interval-plot names" }, groups.map((g, i) =>
      svg("text", { x: 164, y: top + rowH * i + rowH / 2 + 4, "text-anchor": "end", class: "name" },
        g.label.length > 28 ? g.label.slice(0, 27) + "…" : g.label)));
    return el("div", { class: "stats-intervals" }, names, AGGREGATES.map(([id, name]) => {
      const values = groups.flatMap((g) => [g.aggregates[id].ci_low, g.aggregates[id].ci_high, g.aggregates[id].value]).filter((v) => v != null);
      let lo = Math.min(...values), hi = Math.max(...values);
      if (!(hi > lo)) { lo -= 1; hi += 1; }
      const pad = (hi - lo) * 0.05;
      lo -= pad; hi += pad;
      const x = (v) => left + ((v - lo) / (hi - lo)) * (width - 2 * left);
      const rows = groups.map((g, i) => {
        const a = g.aggregates[id];
        const y = top + rowH * i + rowH / 2;
        const color = this.colors.of(g.label);
        return svg("g", { class: "interval", "data-group": g.label, "data-aggregate": id, "data-value": a.value, "data-lo": a.ci_low, "data-hi": a.ci_high },
          svg("title", {}, `${g.label}: ${fmtValue(a.value)} [${fmtValue(a.ci_low)}, ${fmtValue(a.ci_high)}]`),
          svg("line", { x1: x(a.ci_low), x2: x(a.ci_high), y1: y, y2: y, stroke: color, "stroke-width": 8, "stroke-opacity": 0.35 }),
          svg("line", { x1: x(a.value), x2: x(a.value), y1: y - 7, y2: y + 7, stroke: color, "stroke-width": 2 }));
      });
      const ticks = [lo + pad, (lo + hi) / 2, hi - pad].map((v) => svg("text", { x: x(v), y: height - 6, "text-anchor": "middle", class: "tick" }, fmtTick(v)));
      return svg("svg", { width, height, class: "interval-plot", "data-aggregate": id },
        svg("text", { x: width / 2, y: 13, "text-anchor": "middle", class: "title" }, name), ...rows, ...ticks);
    }));
  }

  profileLegend(profile) {
    return el("div", { class: "legend" }, profile.groups.map((c) => el("span", { class: "item", dataset: {
      group: c.label, fraction: JSON.stringify(c.fraction), lo: JSON.stringify(c.ci_low), hi: JSON.stringify(c.ci_high) } },
      el("span", { class: "sw", style: `background:${this.colors.of(c.label)}` }), c.label)));
  }

  profileChart(profile) {
    const series = [{}];
    const data = [profile.thresholds];
    const bands = [];
    for (const c of profile.groups) {
      const color = this.colors.of(c.label);
      const first = series.length;
      const edge = { stroke: faint(color, 0.4), width: 1, points: { show: false } };
      series.push({ ...edge, label: `${c.label} hi` }, { ...edge, label: `${c.label} lo` }, { label: c.label, stroke: color, width: 2 });
      data.push(c.ci_high, c.ci_low, c.fraction);
      bands.push({ series: [first, first + 1], fill: faint(color, 0.15) });
    }
    this.plot = new uPlot({
      width: Math.max(300, this.profileArea.clientWidth || 460), height: 220, legend: { show: false }, series, bands,
      axes: [{ label: "score threshold τ", labelSize: 16, labelGap: 0, size: 36, values: (u, s) => s.map(fmtTick) },
             { values: (u, s) => s.map(fmtTick), size: 44 }],
      scales: { x: { time: false, auto: true }, y: { range: [0, 1] } },
      cursor: { y: false, drag: { x: false, y: false } },
    }, data, this.profileArea);
  }

  matrix(groups, improvement) {
    const cell = new Map(improvement.map((p) => [`${p.x}\u0000${p.y}`, p]));
    const head = el("tr", {}, el("th", {}, ""), groups.map((g) => el("th", { title: g.label }, g.label)));
    const rows = groups.map((x) => el("tr", {}, el("th", { title: x.label }, x.label), groups.map((y) => {
      const p = cell.get(`${x.label}\u0000${y.label}`);
      if (!p) return el("td", { class: "diagonal" }, "–");
      const shade = Math.round(Math.abs(p.value - 0.5) * 2 * 100);
      const color = p.value >= 0.5 ? `color-mix(in srgb, ${PALETTE[2]} ${shade}%, white)` : `color-mix(in srgb, ${PALETTE[3]} ${shade}%, white)`;
      return el("td", { style: `background:${color}`, title: `P(${x.label} > ${y.label}) = ${fmtValue(p.value)}, 95% CI [${fmtValue(p.ci_low)}, ${fmtValue(p.ci_high)}]`,
        dataset: { x: p.x, y: p.y, value: String(p.value), lo: String(p.ci_low), hi: String(p.ci_high) } },
        el("b", {}, p.value.toFixed(2)), el("div", { class: "muted" }, `[${p.ci_low.toFixed(2)}, ${p.ci_high.toFixed(2)}]`));
    })));
    return el("table", { class: "data poi" }, el("thead", {}, head), el("tbody", {}, rows));
  }

  destroy() { this.plot?.destroy(); }
}
