// One run's page: its name, status and numbers, its config, and its charts (labels as lines,
// RL bands across environments, single environments on demand).

import { ChartsView } from "./charts_view.js";
import { crumbs, el, statusBadge } from "./dom.js";
import { fmtAgo, fmtDate, fmtInt } from "./format.js";
import { dangerButtons, editBox } from "./run_edit.js";

const CONFIG_OPEN_UP_TO = 6;  // config keys; more start collapsed

export class RunPage extends ChartsView {
  showCrumbs() {
    const [w, p, r] = this.runs[0].id;
    crumbs(el("a", { href: "#/" }, "runs"), el("span", {}, `${w} / ${p}`), el("span", {}, r));
  }

  renderHeader() {
    const run = this.runs[0].detail;
    const points = run.series.reduce((a, s) => a + s.point_count, 0);
    if (!this.configBox) this.configBox = attributesBox(run.attributes);
    if (!this.editBox) {  // made once: a poll must not undo what is being typed
      this.editBox = editBox(run, this.runs[0].id);
      this.dangerButtons = dangerButtons(run, this.runs[0].id);
    }
    this.header.replaceChildren(
      el("div", { class: "title" }, el("h1", {}, run.run, " ", statusBadge(run.status)), this.dangerButtons),
      el("div", { class: "meta" },
        el("span", {}, "workspace ", el("b", {}, run.workspace)),
        el("span", {}, "project ", el("b", {}, run.project)),
        run.experiment ? el("span", {}, "experiment ", el("b", {}, run.experiment)) : null,
        el("span", {}, "created ", el("b", {}, fmtDate(run.created_ns))),
        el("span", {}, "last activity ", el("b", {}, fmtAgo(run.last_activity_ns))),
        el("span", {}, el("b", {}, fmtInt(run.series.length)), " series"),
        el("span", {}, el("b", { id: "run-points" }, fmtInt(points)), " points")),
      // replaceChildren prints a null as text: a run of one process has no writers box at all
      this.editBox, ...[writersBox(run.processes ?? [], this.writersOpen, (open) => { this.writersOpen = open; })]
        .filter(Boolean),
      this.configBox);
  }
}

/** The processes of a job writing this run (log_distributed, torchrun, Slurm, Ray): how
 *  many, on which hosts, and when each was last heard from; null for a run of one process. */
function writersBox(processes, open, onToggle) {
  if (!processes.length) return null;
  const hosts = [...new Set(processes.map((p) => p.host))].sort();
  const closed = processes.filter((p) => p.closed_ns != null).length;
  const box = el("details", { class: "box", id: "writers", open: Boolean(open) },
    el("summary", {}, `Writers: ${processes.length} process${processes.length === 1 ? "" : "es"} on `
      + `${hosts.length} host${hosts.length === 1 ? "" : "s"} (${hosts.join(", ")}) · ${closed} closed`),
    el("div", { class: "inner" }, el("table", { class: "data writers" },
      el("thead", {}, el("tr", {}, el("th", {}, "writer"), el("th", {}, "host"),
        el("th", {}, "last activity"), el("th", {}, "state"))),
      el("tbody", {}, processes.map((p) => el("tr", { dataset: { writer: p.writer } },
        el("td", {}, p.writer), el("td", {}, p.host),
        el("td", {}, p.last_seen_ns == null ? "—" : fmtAgo(p.last_seen_ns)),
        el("td", {}, p.closed_ns != null ? "closed" : p.last_seen_ns == null ? "not heard from" : "open")))))));
  box.addEventListener("toggle", () => onToggle(box.open));
  return box;
}

/** The run's config (attributes under `config/`, the prefix dropped) and its other
 *  attributes, as tables; open when there is some config and no more than 6 keys of it (a
 *  longer one would push the charts off the screen). */
function attributesBox(attributes) {
  const entries = Object.entries(attributes);
  const config = entries.filter(([path]) => path.startsWith("config/"));
  const other = entries.filter(([path]) => !path.startsWith("config/") && path !== "sys/tags" && path !== "sys/notes");
  const value = (a) => (Array.isArray(a.value) ? a.value.join(", ") : String(a.value));
  const table = (rows, strip) => el("table", { class: "data config" },
    el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, "value"), el("th", {}, "type"))),
    el("tbody", {}, rows.map(([path, a]) => el("tr", {},
      el("td", { class: "path" }, strip ? path.slice(strip.length) : path),
      el("td", { class: "value" }, value(a)), el("td", { class: "muted" }, a.kind)))));
  return el("details", { class: "box", id: "config", open: config.length > 0 && config.length <= CONFIG_OPEN_UP_TO },
    el("summary", {}, `Config (${config.length})`),
    el("div", { class: "inner" },
      config.length ? table(config, "config/") : el("p", { class: "muted" }, "This run has no config."),
      other.length ? [el("h2", { style: "margin:12px 0 6px" }, "Other attributes"), table(other, "")] : null));
}
