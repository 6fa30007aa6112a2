// A project's page (#/project/W/P?...): its runs as a table (config keys and metric summaries
// as columns, sorted, filtered and paged by the server), parallel coordinates whose brushes
// filter further, and a chart per metric: the runs grouped by config keys, one curve per
// group with a band (or, ungrouped, the first runs one line each); grouped, a statistics panel
// compares the groups with bootstrap intervals (js/stats_panel.js). The whole view is in the
// URL (js/url_state.js).
//
// Test hooks: `#project[data-generation]` counts the views asked for and `[data-done]` the
// last one drawn; each chart's `data-metric` and, grouped, `data-groups`; each legend entry's
// `data-group` and `data-runs`; the table's `data-total`; `body[data-ready]` once drawn.

import { ApiError, isAbort, query } from "./api.js";
import { compareHash, crumbs, el, painted, setConnection } from "./dom.js";
import { fmtInt } from "./format.js";
import { GroupChart, GroupColors, loadCharts } from "./groups.js";
import { brushConditions, ParallelCoords } from "./parallel_coords.js";
import { attributeColumn, RUN_FIELDS, RunTable, summaryColumn } from "./run_table.js";
import { StatsPanel } from "./stats_panel.js";
import { parseState, projectHash } from "./url_state.js";

const UNGROUPED_RUNS = 20;   // lines on a chart when runs are not grouped
const SUMMARY_FNS = ["last", "min", "max", "mean"];
const DEFAULT_AXES = 6;      // config keys on the parallel coordinates by default
const LATE_MS = 40;          // how long the table and charts wait for the parallel coordinates

/** A chart's plot width on a page `width` px wide (#main's, padding included): the grid's
 *  columns (dashboard.css `.grid`: minmax(460px, 1fr), 12 px gaps; #main's 20 px padding)
 *  less a chart's padding and border. The charts' first view uses it (bucket count, width). */
export function plotWidth(width) {
  const inner = width - 40;
  const columns = Math.max(1, Math.floor((inner + 12) / 472));
  return Math.floor((inner - 12 * (columns - 1)) / columns - 22);
}

/** The parallel coordinates' width on a page `width` px wide: #main's padding, the box's
 *  border and its inner padding (dashboard.css `details.box`). */
export const parcoordsWidth = (width) => width - 40 - 2 - 24;

export class ProjectPage {
  constructor(main, workspace, project, search) {
    this.workspace = workspace;
    this.project = project;
    this.state = parseState(search);
    this.abort = new AbortController();
    this.colors = new GroupColors();
    this.charts = [];
    // Read before the page is built: the layout the loading page was drawn with (free to
    // read) tells the charts' first bucket counts, so their reads go out with the table's.
    this.pageWidth = main.clientWidth;
    this.widthHint = plotWidth(this.pageWidth);
    this.root = el("div", { class: "project-page", id: "project", dataset: { generation: "0" } },
      el("p", { class: "muted" }, "Loading…"));
    main.replaceChildren(this.root);
    // A chooser's list floats over the table: a click anywhere else closes it, as menus do.
    this.closeChoosers = (event) => {
      for (const open of this.root.querySelectorAll("details.chooser[open]")) if (!open.contains(event.target)) open.open = false;
    };
    document.addEventListener("pointerdown", this.closeChoosers);
    crumbs(el("a", { href: "#/" }, "runs"), el("span", {}, `${workspace} / ${project}`));
    this.start().catch((error) => {
      if (isAbort(error)) return;
      this.root.replaceChildren(el("p", { class: "error" }, error.message), el("p", {}, el("a", { href: "#/" }, "All runs")));
    });
  }

  async start() {
    this.overview = await query("project", { workspace: this.workspace, project: this.project }, this.abort.signal);
    const o = this.overview;
    this.metrics = o.metrics.filter((m) => Object.keys(m.labels).length === 0 || m.kind === "rl"
                                      || o.metrics.filter((x) => x.metric === m.metric).length === 1);
    this.attributes = o.attributes.filter((a) => !a.path.startsWith("sys/"));
    if (!this.state.metric || !o.metrics.some((m) => m.metric === this.state.metric)) {
      this.state.metric = (o.metrics.find((m) => m.kind === "rl") ?? o.metrics[0])?.metric ?? null;
    }
    this.build();
    this.update({ table: true, charts: true, parcoords: true });
  }

  // ------------------------------------------------------------------ columns and axes

  varying() { return this.attributes.filter((a) => a.distinct > 1 && a.path.startsWith("config/")).map((a) => a.path); }

  metricEntry(name = this.state.metric) {
    return this.overview.metrics.find((m) => m.metric === name && m.kind === "rl")
      ?? this.overview.metrics.find((m) => m.metric === name);
  }

  summaryColumns() {
    const m = this.metricEntry();
    if (!m) return [];
    const series = { metric: m.metric, scale: m.scale, labels: m.labels, kind: m.kind };
    return SUMMARY_FNS.map((fn) => summaryColumn(series, fn,
      m.kind === "rl" && fn === "last" ? `${m.metric}.last10` : `${m.metric}.${fn}`));
  }

  /** Every column a user can choose, by id. */
  allColumns() {
    const summaries = this.summaryColumns();
    if (summaries[0]) summaries[0].title = this.metricEntry().kind === "rl"
      ? `${this.state.metric}: the mean over environments of each one's mean of its last 10 episodes` : summaries[0].title;
    return [...RUN_FIELDS.slice(0, 2), ...this.attributes.map((a) => attributeColumn(a.path)), ...summaries, ...RUN_FIELDS.slice(2)];
  }

  columns() {
    const all = this.allColumns();
    const ids = this.state.cols ?? ["sys/name", "sys/status", ...this.varying(), ...this.summaryColumns().map((c) => c.id),
                                    "sys/created", "sys/duration"];
    return ids.map((id) => all.find((c) => c.id === id)).filter(Boolean);
  }

  axes() {
    const all = this.allColumns().filter((c) => c.kind === "attr" || c.kind === "summary");
    const ids = this.state.axes ?? [...this.varying().slice(0, DEFAULT_AXES), `${this.state.metric}.last`];
    return ids.map((id) => all.find((c) => c.id === id)).filter(Boolean);
  }

  // ------------------------------------------------------------------------ the page

  build() {
    const o = this.overview;
    const s = this.state;
    this.filterBox = el("input", { type: "search", id: "filter", value: s.filter, spellcheck: "false",
      placeholder: 'config/lr >= 1e-3 and config/algo == "ppo" and loss.last < 0.5', "aria-label": "filter runs",
      onkeydown: (e) => { if (e.key === "Enter") this.setFilter(this.filterBox.value); },
      onsearch: () => { if (!this.filterBox.value) this.setFilter(""); } });
    this.filterError = el("div", { class: "filter-error error", id: "filter-error", role: "alert", hidden: true });
    this.band = el("select", { id: "band", "aria-label": "band", onchange: () => this.change({ band: this.band.value }, { charts: true }) },
      o.band_kinds.map((b) => el("option", { value: b.id, selected: b.id === s.band }, b.label)));
    this.metricSelect = el("select", { id: "metric", "aria-label": "summary metric",
      onchange: () => this.change({ metric: this.metricSelect.value, cols: null, axes: null, sort: null }, { table: true, parcoords: true, rebuild: true }) },
      [...new Set(o.metrics.map((m) => m.metric))].map((m) => el("option", { value: m, selected: m === s.metric }, m)));
    this.smoothing = el("input", { type: "range", id: "smoothing", min: "0", max: "0.99", step: "0.01", value: String(s.smooth),
      oninput: () => { this.state.smooth = Number(this.smoothing.value); this.smoothLabel.textContent = this.smoothing.value; this.saveUrl(); this.redraw(); } });
    this.smoothLabel = el("span", { class: "muted" }, String(s.smooth));
    this.groupBox = this.chooser("group-by", "group by", this.attributes.filter((a) => a.distinct > 0).map((a) => [a.path, a.path]),
      () => s.group, (ids) => this.change({ group: ids, x: null }, { charts: true }));
    this.columnBox = el("span");
    this.axisBox = el("span");
    this.compare = el("button", { class: "plain", disabled: true, onclick: () => {
      location.hash = compareHash([...this.table.selected].map((r) => [this.workspace, this.project, r]));
    } }, "Compare selected");
    this.selection = el("span", { class: "muted" });
    this.table = new RunTable({
      onSort: (c) => this.change({ sort: { id: c.id, dir: s.sort?.id === c.id && s.sort.dir === "asc" ? "desc" : "asc" } }, { table: true, charts: !s.group.length }),
      onSelect: (selected) => {
        this.compare.disabled = selected.size < 2;
        this.selection.textContent = selected.size ? `${selected.size} selected: the charts show them` : "";
        this.update({ charts: true });
      },
      onError: (error) => setConnection(error.message),
    });
    this.parcoords = new ParallelCoords({ onBrush: (brush) => this.change({ brush }, { table: true, charts: true }) });
    this.grid = el("div", { class: "grid" });
    this.stats = new StatsPanel({ colors: this.colors, onChange: (patch) => this.change(patch, { stats: true }) });
    this.stats.setChoices(this.attributes.filter((a) => a.path.startsWith("config/") && a.distinct > 1).map((a) => a.path), s);
    this.count = el("span", { class: "muted" });
    // Put in the page with the first view's parts (update()): laid out and painted once, with
    // its data, not first empty and then again.
    this.content = [
      el("h1", {}, `${this.workspace} / ${this.project}`),
      el("div", { class: "meta" }, el("span", {}, el("b", {}, fmtInt(o.runs)), " runs"),
        el("span", {}, el("b", {}, fmtInt(this.attributes.length)), " attributes"),
        el("span", {}, el("b", {}, fmtInt(new Set(o.metrics.map((m) => m.metric)).size)), " metrics")),
      el("div", { class: "toolbar filter-bar" }, el("label", { class: "grow" }, "filter", this.filterBox), this.count),
      this.filterError,
      el("div", { class: "toolbar" }, this.groupBox, el("label", {}, "band", this.band),
        el("label", {}, "metric", this.metricSelect), this.columnBox,
        el("label", {}, "smoothing", this.smoothing, this.smoothLabel),
        el("span", { class: "grow" }), this.selection, this.compare),
      this.table.node,
      el("details", { class: "box", open: true }, el("summary", {}, "Parallel coordinates ", this.axisBox),
        el("div", { class: "inner" }, this.parcoords.node)),
      this.stats.node,
      el("section", { class: "group" }, this.grid)];
    this.rebuildChoosers();
    this.makeCharts();
  }

  /** A dropdown of checkboxes (group-by keys, columns, axes); `set` gets the checked ids. */
  chooser(id, label, options, get, set) {
    const summary = el("summary", {}, label);
    const render = () => {
      const chosen = get();
      const names = chosen.map((c) => c.replace(/^(config|sys)\//, ""));
      summary.textContent = `${label}${names.length > 4 ? ` (${names.length})` : names.length ? ": " + names.join(", ") : ""} ▾`;
    };
    const chosen = new Set(get());  // once, not per option: get() builds every column
    const list = el("div", { class: "chooser-list" }, options.map(([value, text]) => el("label", {},
      el("input", { type: "checkbox", value, checked: chosen.has(value), onchange: () => {
        const now = get().filter((v) => v !== value);
        const box = list.querySelector(`input[value="${CSS.escape(value)}"]`);
        set(box.checked ? [...now, value] : now);
        render();
      } }), text)));
    const node = el("details", { class: "chooser", id }, summary, list);
    render();
    return node;
  }

  rebuildChoosers() {
    const all = this.allColumns();
    this.columnBox.replaceChildren(this.chooser("columns", "columns", all.map((c) => [c.id, c.label === c.id ? c.id : `${c.label} (${c.id})`]),
      () => this.columns().map((c) => c.id), (ids) => this.change({ cols: ids }, { table: true })));
    this.axisBox.replaceChildren(this.chooser("axes", "axes", all.filter((c) => c.kind !== "name" && c.request).map((c) => [c.id, c.id]),
      () => this.axes().map((c) => c.id), (ids) => this.change({ axes: ids, brush: {} }, { parcoords: true, table: true, charts: true })));
  }

  makeCharts() {
    for (const c of this.charts) c.destroy();
    const nameOnly = !this.state.group.length;
    const seen = new Set();
    this.charts = this.metrics.filter((m) => {
      const key = `${m.kind}/${m.metric}/${m.scale}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    }).map((metric) => new GroupChart({
      metric, colors: this.colors, nameOnly, widthHint: this.widthHint,
      onZoom: (range) => this.change({ x: range }, { charts: true }),
      onResetZoom: () => this.change({ x: null }, { charts: true }),
    }));
    this.grid.replaceChildren(...this.charts.map((c) => c.node));
  }

  // ------------------------------------------------------------------------ the view

  filterTree() {
    const brushes = brushConditions(this.state.brush, this.axes());
    if (!brushes.length) return this.state.filter.trim() ? this.state.filter : null;
    return { and: [{ text: this.state.filter }, ...brushes] };
  }

  orderBy() {
    const sort = this.state.sort;
    const c = sort && this.allColumns().find((x) => x.id === sort.id);
    return c?.sort ? { ...c.sort, dir: sort.dir } : null;
  }

  setFilter(text) {
    this.change({ filter: text.trim(), brush: {} }, { table: true, charts: true, parcoords: true });
  }

  change(patch, what) {
    Object.assign(this.state, patch);
    if (patch.group !== undefined && Boolean(patch.group.length) !== !this.charts[0]?.nameOnly) what.rebuildCharts = true;
    if (what.rebuild) { this.rebuildChoosers(); }
    if (what.rebuildCharts) this.makeCharts();
    this.update(what);
  }

  saveUrl() {
    const hash = projectHash(this.workspace, this.project, this.state);
    if (location.hash !== hash) history.replaceState(null, "", hash);  // no hashchange: no reload
  }

  /** Ask again for what changed; the generation says which view is drawn. */
  async update(what) {
    const generation = Number(this.root.dataset.generation) + 1;
    this.root.dataset.generation = String(generation);
    this.saveUrl();
    this.current?.abort();
    const abort = new AbortController();
    this.current = abort;
    const signal = AbortSignal.any([this.abort.signal, abort.signal]);
    this.filterError.hidden = true;
    // Each part is read, then all are drawn in one go: the page is laid out and painted once
    // for the view, not once per answer (each a full layout of the page on a cold load). The
    // parallel coordinates (on 10,000 runs the server takes ~200 ms for them, ~50 ms for the
    // table's first page) are not waited for past LATE_MS after the rest: the table and charts
    // are drawn, the parallel coordinates when they come (into their box: no new layout).
    const tasks = [];
    if (what.table) tasks.push(this.loadTable(signal));
    if (what.charts) tasks.push(this.loadCharts(signal));
    // (settled at once: a refusal is handled here, not reported as unhandled meanwhile)
    const slow = what.parcoords ? Promise.allSettled([this.loadParcoords(signal)]).then(([part]) => part) : null;
    // The statistics (a bootstrap per group) are asked for once the charts are drawn (or by
    // the next view drawn, if this one is superseded), and have their own marks
    // (#stats[data-done] reaching [data-generation], counted from now): the page is ready
    // without them.
    if (what.charts || what.stats || what.rebuild) {
      this.stats.begin();
      this.statsPending = true;
    }
    const settled = await Promise.allSettled(tasks);
    let late = null;
    if (slow) {
      const inTime = tasks.length ? await Promise.race([slow, new Promise((resolve) => setTimeout(resolve, LATE_MS))])
        : await slow;
      if (inTime) settled.push(inTime);
      else late = slow;
    }
    if (Number(this.root.dataset.generation) !== generation) return;
    if (this.content) {
      this.root.replaceChildren(...this.content);
      this.content = null;
    }
    if (!this.drawParts(settled)) return;
    if (late) {
      const part = await late;
      if (Number(this.root.dataset.generation) !== generation) return;
      if (!this.drawParts([part])) return;
    }
    if (Number(this.root.dataset.generation) !== generation) return;
    await painted();
    if (Number(this.root.dataset.generation) !== generation) return;
    this.root.dataset.done = String(generation);
    this.widthHint = null;  // laid out: charts made from now on measure themselves
    window.metranaProjectReady = { at: performance.now(), generation, charts: this.charts.length };
    document.body.dataset.ready = "1";
    if (this.statsPending) {
      this.statsPending = false;
      this.loadStats();
    }
  }

  /** Draw the parts read (`Promise.allSettled` results); an error is shown where it belongs.
   *  False when the view was abandoned (aborted). */
  drawParts(settled) {
    for (const part of settled) if (part.status === "fulfilled") part.value?.();
    const error = settled.find((part) => part.status === "rejected")?.reason;
    if (!error) return true;
    if (isAbort(error)) return false;
    if (error instanceof ApiError && error.status === 400) {
      this.filterError.textContent = error.message;
      this.filterError.hidden = false;
      this.table.clear();
      this.count.textContent = "";
    } else setConnection(error.message);
    return true;
  }

  async loadTable(signal) {
    const draw = await this.table.load({ workspace: this.workspace, project: this.project, filter: this.filterTree(),
                                         orderBy: this.orderBy(), sort: this.state.sort, columns: this.columns() }, signal);
    return draw && (() => {
      draw();
      this.count.textContent = `${fmtInt(this.table.total)} of ${fmtInt(this.overview.runs)} runs`;
    });
  }

  chartBody() {
    const s = this.state;
    const selected = [...this.table.selected];
    const grouped = s.group.length > 0;
    return {
      workspace: this.workspace, project: this.project, filter: this.filterTree(),
      group_by: grouped ? s.group : ["sys/name"], band: s.band, order_by: this.orderBy(),
      runs: selected.length ? selected : null, max_runs: grouped ? 1000 : UNGROUPED_RUNS,
      start: s.x?.[0] ?? null, end: s.x?.[1] ?? null,
    };
  }

  async loadCharts(signal) {
    const grouped = this.state.group.length > 0;
    return loadCharts(this.charts, this.chartBody(), signal, (chart) => chart.draw(this.state.smooth, grouped));
  }

  /** The statistics of the current view; a newer one aborts it (a table-only change does not). */
  loadStats() {
    this.statsAbort?.abort();
    this.statsAbort = new AbortController();
    const signal = AbortSignal.any([this.abort.signal, this.statsAbort.signal]);
    this.stats.load(this.chartBody(), this.metricEntry(), this.state, signal).catch((error) => {
      if (!isAbort(error)) setConnection(error.message);
    });
  }

  redraw() {
    const grouped = this.state.group.length > 0;
    for (const chart of this.charts) chart.draw(this.state.smooth, grouped);
  }

  async loadParcoords(signal) {
    const axes = this.axes();
    const attributes = axes.filter((a) => a.request.attr).map((a) => a.request.attr);
    const summaries = axes.filter((a) => a.request.summary).map((a) => a.request.summary);
    const text = this.state.filter.trim();
    const answer = await query("runs", { workspace: this.workspace, project: this.project, filter: text || null,
      attributes, summaries, format: "columns", limit: 20000 }, signal);
    let ai = 0, si = 0;
    const data = axes.map((a) => ({ id: a.id, label: a.label, values: a.request.attr ? answer.runs.attributes[ai++] : answer.runs.summaries[si++] }));
    const hint = this.widthHint === null ? null : parcoordsWidth(this.pageWidth);  // first view only
    return () => this.parcoords.setData(data, answer.runs.name, this.state.brush, hint);
  }

  destroy() {
    this.abort.abort();
    document.removeEventListener("pointerdown", this.closeChoosers);
    for (const c of this.charts) c.destroy();
    this.parcoords?.destroy();
    this.stats?.destroy();
  }
}
