// One line of a chart and where its buckets come from.

import { api, batcher, limit } from "./api.js";
import { before, columns, compact, concat, emptyColumns } from "./columns.js";

/** One line of a chart: a series' buckets, or an RL metric's band across environments. */
export class Source {
  constructor({ url, seriesId = null, query = {}, label, color, dash = [], band = false, run,
                counts = true }) {
    this.url = url;          // the run's .../bands API path (series buckets: batched by run)
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
    if (this.seriesId != null) return batcher.get([this.run.workspace, this.run.project, this.run.run], this.seriesId, params, signal);
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

export function xValues(cols, mode, source) {
  if (mode === "step") return cols.x;
  if (mode === "wall") return cols.t.map((t) => t / 1e9);
  const origin = source.run.created_ns;
  return cols.t.map((t) => (t - origin) / 1e9);
}
