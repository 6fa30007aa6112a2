// The runs page: every run, searched, selected for comparison; polled.

import { api, isAbort, POLL_HIDDEN_MS } from "./api.js";
import { compareHash, crumbs, el, runHash, runKey, setConnection, statusBadge } from "./dom.js";
import { fmtAgo, fmtDate, fmtInt } from "./format.js";
import { projectHash } from "./url_state.js";

export class RunsView {
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
        el("th", {}, "status"), el("th", {}, "tags"), el("th", { class: "num" }, "series"), el("th", { class: "num" }, "points"))),
      this.body);
    this.empty = el("div", { class: "empty", hidden: true },
      el("p", {}, "No runs yet. Log one to this server:"),
      el("pre", {}, `import metrana\n\nmetrana.init(workspace_name="ws", project_name="p", run_name="run-1",\n` +
                    `             ingestion_url="${location.origin}")\nmetrana.log("loss", 0.5)\nmetrana.close()`));
    const deleted = sessionStorage.getItem("metrana.deleted");  // said once, after a delete
    sessionStorage.removeItem("metrana.deleted");
    // replaceChildren() would write a null as the text "null": leave the notice out instead.
    main.replaceChildren(...[el("h1", {}, "Runs"),
      deleted ? el("p", { class: "notice", role: "status" }, deleted) : null,
      el("div", { class: "toolbar" }, this.search, this.count, el("span", { class: "grow" }), this.compare),
      this.table, this.empty].filter(Boolean));
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
      const text = [r.workspace, r.project, r.run, r.experiment ?? "", r.status, ...(r.tags ?? [])].join("\n").toLowerCase();
      return terms.every((t) => text.includes(t));
    };
    const shown = this.runs.filter(match);
    this.body.replaceChildren(...shown.map((r) => {
      const key = runKey(r.id);
      return el("tr", { dataset: { run: r.run, workspace: r.workspace, project: r.project } },
        el("td", {}, el("input", { type: "checkbox", "aria-label": `select ${r.run}`, checked: this.selected.has(key),
                                   onchange: (e) => { e.target.checked ? this.selected.add(key) : this.selected.delete(key); this.updateButton(); } })),
        el("td", {}, el("a", { href: runHash(r.id) }, r.run)),
        el("td", {}, el("a", { href: projectHash(r.workspace, r.project), class: "project-link" }, `${r.workspace} / ${r.project}`)),
        el("td", {}, r.experiment ?? ""),
        el("td", { title: fmtDate(r.created_ns) }, fmtDate(r.created_ns)),
        el("td", { title: fmtDate(r.last_activity_ns) }, fmtAgo(r.last_activity_ns)),
        el("td", {}, statusBadge(r.status)),
        el("td", {}, el("span", { class: "tags" }, (r.tags ?? []).map((t) => el("span", { class: "tag" }, t)))),
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
