// A page of charts grouped by metric, shared by the run page (js/run_page.js) and the compare
// page (js/compare_page.js), which add their headers. Live: polls each run's changed series.

import { api, CURSOR_SLACK_NS, isAbort, POLL_HIDDEN_MS, POLL_LIVE_MS, POLL_QUIET_MS, query, runApi } from "./api.js";
import { Chart, DASHES, PALETTE } from "./chart.js";
import { el, painted, setConnection } from "./dom.js";
import { fmtLabels, naturalOrder } from "./format.js";
import { saveSettings, settings } from "./settings.js";
import { Source } from "./source.js";
import { ValueChart, valueSeries } from "./value_charts.js";

/** Charts grouped by metric: one run (labels as lines, RL bands, environments), or several
 *  runs overlaid (one colour per run). Live: polls each run's changed series. A page says
 *  what it is about in `showCrumbs()` and `renderHeader()`. */
/** A "single <what> (N)" box of checkboxes, one per name, added as names appear: a chart's
 *  single environments (RL) or single writers (a log_distributed metric). */
function toggleBox(what, className, key, onToggle) {
  const list = el("div", { class: "list" });
  const summary = el("summary", {}, `single ${what}`);
  const details = el("details", { class: className }, summary, list);
  const known = new Set();
  const offer = (names, count) => {
    summary.textContent = `single ${what} (${count})`;
    for (const name of names) {
      if (known.has(name)) continue;
      known.add(name);
      list.append(el("label", {}, el("input", { type: "checkbox", dataset: { [key]: name },
        onchange: (e) => onToggle(name, e.target.checked) }), name || "(none)"));
    }
  };
  return { details, offer };
}

export class ChartsView {
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
    // Every run in one request (the compare page's first read), then every chart's buckets
    // in one more (js/api.js: batcher).
    const { runs: details } = await query("many_runs", {
      runs: this.runIds.map(([workspace, project, run]) => ({ workspace, project, run })) }, this.abort.signal);
    this.runs = details.map((detail, i) => ({
      id: this.runIds[i], detail, color: PALETTE[i % PALETTE.length],
      series: new Map(detail.series.map((s) => [s.id, s])),
      cursor: detail.last_activity_ns,
    }));
    this.layout();
    this.sync();
    const t0 = performance.now();
    // In page order: the first requests bring the charts at the top. The line charts' reads
    // (batched: one request, sent on the next task) go out first, then each run's list of
    // histogram and scatter series (20 runs compared: 20 requests, not ahead of the charts').
    const byNode = new Map([...this.charts.values()].map((c) => [c.node, c]));
    const loads = [...this.groups.querySelectorAll(".chart")].map((node) => this.loadChart(byNode.get(node)));
    await new Promise((resolve) => setTimeout(resolve, 0));
    const valued = await this.addValueCharts();
    await Promise.all([...loads, ...valued.map((c) => this.loadChart(c))]);
    await painted();
    window.metranaReady = { at: performance.now(), charts: this.charts.size, load: performance.now() - t0 };
    document.body.dataset.ready = "1";
    this.timer = setTimeout(() => this.poll(), this.pollDelay());
  }

  /** A card per histogram or scatter series of each run (js/value_charts.js), placed among
   *  the metric's group like a chart; in the compare view, one per run, named by it. */
  async addValueCharts() {
    const lists = await Promise.all(this.runs.map((run) => valueSeries(run.id, this.abort.signal)));
    const charts = [];
    this.runs.forEach((run, i) => {
      for (const series of lists[i]) {
        const chart = new ValueChart({ run: run.id, series, label: this.compare ? run.id[2] : fmtLabels(series.labels) });
        const name = series.metric;
        const grid = this.section(name.includes("/") ? name.slice(0, name.indexOf("/")) : "").grid;
        chart.node.dataset.title = name;
        const after = [...grid.children].find((node) => naturalOrder(node.dataset.title, name) > 0);
        grid.insertBefore(chart.node, after ?? null);
        charts.push(chart);
      }
    });
    this.valueCharts = charts;
    return charts;
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
    return this.runs.some((r) => r.detail.status === "running") ? POLL_LIVE_MS : POLL_QUIET_MS;
  }

  layout() {
    this.showCrumbs();
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

  /** Charts for every metric group not charted yet; lines for series new to a chart. */
  sync() {
    const single = !this.compare;
    const added = [];
    this.runs.forEach((run, runIndex) => {
      const byGroup = new Map();
      for (const s of run.series.values()) {
        const evaluation = s.labels.evaluation === "true";
        const key = s.kind === "rl" ? JSON.stringify(["rl", s.metric_name, s.scale, evaluation])
          : s.labels.writer !== undefined ? JSON.stringify(["dist", s.metric_name, s.scale, otherLabels(s)])
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
        } else if (first.labels.writer !== undefined) {
          // log_distributed: one merged line (mean across writers, min–max shaded), and each
          // writer's own line on demand.
          let source = chart.sources.find((s) => s.run === run.detail && s.writer === undefined);
          if (!source) {
            source = new Source({
              url: `${base}/merged`, run: run.detail, band: true,
              query: { metric: first.metric_name, scale: first.scale, labels: JSON.stringify(otherLabels(first)) },
              label: run.id[2], color: single ? PALETTE[0] : run.color,
            });
            chart.add(source);
            if (!added.includes(chart)) chart.pending = true;
          }
          source.expected = members.reduce((a, s) => a + s.point_count, 0);
          const writers = new Map(members.map((s) => [s.labels.writer, s]));
          for (const w of chart.sources.filter((s) => s.writer !== undefined && s.run === run.detail)) w.expected = writers.get(w.writer)?.point_count ?? 0;
          const labels = fmtLabels(otherLabels(first));
          const what = `mean across ${writers.size} writer${writers.size === 1 ? "" : "s"}, min–max${labels ? ` {${labels}}` : ""}`;
          source.label = single ? what : `${run.id[2]} (${what})`;
          if (single) chart.setWriters?.(writers);
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
    const merged = !rl && first.labels.writer !== undefined;
    const evaluation = first.labels.evaluation === "true";
    const title = first.metric_name + (first.scale !== "ML_STEP" ? ` · ${first.scale.toLowerCase().replace("_", " ")}` : "")
      + (rl && evaluation ? " · evaluation" : "");
    let envBox = null;
    let chart;
    if (rl && !this.compare) {
      const box = toggleBox("environments", "envs", "env",
        (env, on) => this.toggleEnvironment(chart, env, on));
      envBox = box.details;
      envBox.setEnvironments = (envs) => box.offer(envs, envs.length);
    }
    if (merged && !this.compare) {
      let current = new Map();
      const box = toggleBox("writers", "envs writers", "writer",
        (writer, on) => this.toggleWriter(chart, current.get(writer), on));
      envBox = box.details;
      envBox.setWriters = (writers) => {
        current = writers;
        box.offer([...writers.keys()].sort(naturalOrder), writers.size);
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
    chart.setWriters = envBox?.setWriters;
    if (merged) chart.node.dataset.merged = "1";
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
    await this.addLine(chart, source);
  }

  /** Add a line to a chart (a single environment, a single writer) and draw it once loaded. */
  async addLine(chart, source) {
    chart.add(source);
    try {
      await source.loadAll(chart.buckets(), this.abort.signal);
      if (chart.zoom) source.zoomed = null;
      chart.draw();
    } catch (error) {
      if (!isAbort(error)) setConnection(error.message);
    }
  }

  /** One writer's own line of a merged (log_distributed) chart, on top of the merged one. */
  async toggleWriter(chart, series, on) {
    const run = this.runs[0];
    const writer = series.labels.writer;
    if (!on) {
      chart.sources = chart.sources.filter((s) => s.writer !== writer);
      chart.draw();
      return;
    }
    const color = PALETTE[(1 + chart.sources.length) % PALETTE.length];
    const source = new Source({ url: runApi(run.id), seriesId: series.id, run: run.detail,
                                label: `writer ${writer}`, color, counts: false });
    source.writer = writer;
    source.expected = series.point_count;
    await this.addLine(chart, source);
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
      if (changed && !this.compare && this.runs[0].detail.processes?.length) {
        // a job's writers: who closed, who was heard from last (the run page's list)
        const [workspace, project, run] = this.runs[0].id;
        const fresh = await query("run", { workspace, project, run }, this.abort.signal);
        this.runs[0].detail.processes = fresh.processes;
      }
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
    for (const chart of this.valueCharts ?? []) {
      chart.node.hidden = !terms.every((t) => chart.series.metric.toLowerCase().includes(t));
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

/** A series' labels without the writer's: what the writers of a merged series share. */
function otherLabels(series) {
  const { writer, ...rest } = series.labels;
  return rest;
}
