// A project's runs as a table the server sorts, filters and pages: only the rows in view are
// in the page (a few dozen of 10,000), read a page of 100 at a time by offset.
//
// The column model is generic: a column is an id, a label, a kind, what it asks the server
// for (an attribute path or a series summary), how a row's value is read, and how the server
// sorts by it. Adding one (tags, a new run field) is one call to `column()`.

import { ApiError, isAbort, query } from "./api.js";
import { el, runHash } from "./dom.js";
import { fmtDate, fmtDuration, fmtValue, hoverNum } from "./format.js";

const ROW_HEIGHT = 30;   // px; rows are absolutely placed at i * ROW_HEIGHT
const PAGE = 100;        // rows per request
const OVERSCAN = 8;      // rows drawn above and below the visible ones
const BODY_HEIGHT = 360; // px; the rows' box (set here, not in dashboard.css: the first draw counts on it)

/** A column. `request`: {attr: PATH} or {summary: {series, fn}} (or none: a field of every
 *  row); `read(row, index)` its value (index: where its request sits in the answer);
 *  `sort`: the server's ordering, or null; `show(value)`: a cell's content. */
export function column(id, label, kind, { request = null, read, sort = null, show = plain, width = "minmax(90px, 1fr)", numeric = false, title = label } = {}) {
  return { id, label, kind, request, read, sort, show, width, numeric, title };
}

function plain(value) {
  if (value == null) return "–";
  if (typeof value === "object" && "float" in value) return String(value.float);
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "number") return fmtValue(value);
  return String(value);
}

/** The run fields every table has. */
export const RUN_FIELDS = [
  column("sys/name", "run", "name", { request: { attr: "sys/name" }, read: (r) => r.name, sort: { attr: "sys/name" },
    width: "minmax(160px, 2fr)" }),
  column("sys/status", "status", "status", { read: (r) => r.status }),
  column("sys/created", "created", "time", { request: { attr: "sys/created" }, read: (r) => r.created_ns,
    sort: { attr: "sys/created" }, show: fmtDate, width: "minmax(150px, 1.3fr)" }),
  column("sys/duration", "duration", "duration", { request: { attr: "sys/duration" }, read: (r) => r.duration_ns,
    sort: { attr: "sys/duration" }, show: (ns) => (ns == null ? "–" : fmtDuration(ns / 1e9)), numeric: true }),
];

export const attributeColumn = (path) => column(path, path.replace(/^config\//, ""), "attr", {
  request: { attr: path }, read: (r, i) => r.attributes[i], sort: { attr: path }, title: path,
  numeric: false,
});

export const summaryColumn = (series, fn, label) => column(`${series.metric}.${fn}`, label ?? `${series.metric}.${fn}`, "summary", {
  request: { summary: { series, fn } }, read: (r, i) => hoverNum(r.summaries[i]),
  sort: { series, fn }, numeric: true,
});

export class RunTable {
  constructor({ onSort, onSelect, onError }) {
    this.onSort = onSort;
    this.onSelect = onSelect;
    this.onError = onError;
    this.selected = new Set();
    this.columns = [];
    this.pages = new Map();   // page index -> rows (or a promise while read)
    this.total = 0;
    this.head = el("div", { class: "rt-head", role: "row" });
    this.spacer = el("div", { class: "rt-spacer" });
    this.body = el("div", { class: "rt-body", role: "rowgroup", style: `height:${BODY_HEIGHT}px`, onscroll: () => this.schedule() }, this.spacer);
    this.node = el("div", { class: "run-table", id: "run-table", role: "table", dataset: { total: "" } },
      this.head, this.body);
    this.rows = new Map();    // row index -> element in the page
  }

  /** A new question: columns, filter, order. Resolves, once its first page is read, to what
   *  draws it (null: a newer question replaced this one), so that the page can draw the
   *  table with its other parts in one go. */
  async load({ workspace, project, filter, orderBy, sort, columns }, signal) {
    this.generation = (this.generation ?? 0) + 1;
    this.signal = signal;
    this.columns = columns;
    this.sort = sort;
    const attributes = [], summaries = [];
    this.index = columns.map((c) => {
      if (c.request?.attr) return attributes.push(c.request.attr) - 1;
      if (c.request?.summary) return summaries.push(c.request.summary) - 1;
      return -1;
    });
    this.body_ = { workspace, project, filter, order_by: orderBy, attributes, summaries };
    this.pages = new Map();
    const first = await this.page(0, true);
    if (first === null) return null;
    return () => {
      this.drawHead();
      this.drawRows(true);
      this.node.dataset.total = String(this.total);
    };
  }

  drawHead() {
    const template = ["34px", ...this.columns.map((c) => c.width)].join(" ");
    this.node.style.setProperty("--rt-columns", template);
    this.head.replaceChildren(el("div", { class: "rt-cell" }),
      ...this.columns.map((c) => {
        const sorted = this.sort?.id === c.id;
        return el("div", { class: "rt-cell" + (c.numeric ? " num" : "") + (c.sort ? " sortable" : ""), title: c.title,
                           role: "columnheader", dataset: { col: c.id, sort: sorted ? this.sort.dir : "" },
                           onclick: c.sort ? () => this.onSort(c) : null },
          c.label, sorted ? (this.sort.dir === "asc" ? " ▲" : " ▼") : "");
      }));
  }

  /** Page `i` of the current question (read once); null if a newer question replaced it. */
  async page(i, first = false) {
    if (this.pages.has(i)) return this.pages.get(i);
    const generation = this.generation;
    const request = query("runs", { ...this.body_, limit: PAGE, offset: i * PAGE, total: first }, this.signal)
      .then((answer) => {
        if (generation !== this.generation) return null;
        if (first) {
          this.total = answer.total;  // shown (data-total) when the first page is drawn
          this.labels = answer.summary_labels;
        }
        this.pages.set(i, answer.runs);
        return answer.runs;
      }, (error) => {
        this.pages.delete(i);
        if (isAbort(error) || generation !== this.generation) return null;
        if (error instanceof ApiError && error.status === 400) throw error;
        this.onError?.(error);
        return null;
      });
    this.pages.set(i, request);
    return request;
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = null; this.drawRows(false); });
  }

  /** Draw the rows in view (reading the pages they are on). */
  drawRows(reset) {
    if (reset) {
      for (const row of this.rows.values()) row.remove();
      this.rows.clear();
      this.spacer.style.height = `${this.total * ROW_HEIGHT}px`;
    }
    // The first draw, of a table just put in the page, reads no layout (which would lay out
    // the whole page before it is complete): nothing is scrolled and the box's height is ours.
    const fresh = !this.drawn;
    this.drawn = true;
    const top = fresh ? 0 : this.body.scrollTop;
    const height = fresh ? BODY_HEIGHT : this.body.clientHeight;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.total, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    for (const [i, row] of this.rows) if (i < first || i >= last) { row.remove(); this.rows.delete(i); }
    const missing = new Set();
    for (let i = first; i < last; i++) {
      if (this.rows.has(i)) continue;
      const rows = this.pages.get(Math.floor(i / PAGE));
      if (Array.isArray(rows)) this.addRow(i, rows[i % PAGE]);
      else missing.add(Math.floor(i / PAGE));
    }
    for (const p of missing) this.page(p).then((rows) => rows && this.drawRows(false));
  }

  addRow(i, run) {
    if (!run) return;
    const checked = this.selected.has(run.name);
    const row = el("div", { class: "rt-row", role: "row", style: `top:${i * ROW_HEIGHT}px`, dataset: { run: run.name, index: String(i) } },
      el("div", { class: "rt-cell" }, el("input", { type: "checkbox", "aria-label": `select ${run.name}`, checked,
        onchange: (e) => { e.target.checked ? this.selected.add(run.name) : this.selected.delete(run.name); this.onSelect?.(this.selected); } })),
      ...this.columns.map((c, k) => {
        const value = c.read(run, this.index[k]);
        let content = c.show(value);
        if (c.kind === "name") content = el("a", { href: runHash(this.runId(run)) }, value);
        else if (c.kind === "status") content = el("span", { class: `status ${value}` }, value);
        return el("div", { class: "rt-cell" + (c.numeric ? " num" : ""), dataset: { col: c.id }, title: typeof content === "string" ? content : null }, content);
      }));
    this.rows.set(i, row);
    this.body.append(row);
  }

  /** No rows (a question the server refused). */
  clear() {
    this.generation = (this.generation ?? 0) + 1;
    this.total = 0;
    this.pages = new Map();
    this.node.dataset.total = "";
    this.drawRows(true);
  }

  runId(run) { return [this.body_.workspace, this.body_.project, run.name]; }

  clearSelection() {
    this.selected.clear();
    for (const box of this.body.querySelectorAll("input[type=checkbox]")) box.checked = false;
    this.onSelect?.(this.selected);
  }
}
