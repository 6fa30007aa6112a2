// Several runs compared: their charts overlaid, one colour per run, and a legend of the runs.

import { ChartsView } from "./charts_view.js";
import { crumbs, el, runHash, statusBadge } from "./dom.js";

export class ComparePage extends ChartsView {
  showCrumbs() {
    crumbs(el("a", { href: "#/" }, "runs"), el("span", {}, `compare ${this.runs.length} runs`));
  }

  renderHeader() {
    this.header.replaceChildren(
      el("h1", {}, `Comparing ${this.runs.length} runs`),
      el("div", { class: "runs-legend" }, this.runs.map((r) => el("span", {},
        el("span", { class: "sw", style: `display:inline-block;width:14px;height:4px;background:${r.color}` }),
        el("a", { href: runHash(r.id) }, r.id[2]), el("span", { class: "muted" }, `${r.id[0]} / ${r.id[1]}`),
        statusBadge(r.detail.status)))));
  }
}
