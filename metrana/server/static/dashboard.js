// The metrana dashboard: every run, a run's charts, runs compared; live.
//
// Plain ES modules loaded by the browser (index.html: <script type="module">), no framework, no
// build step; this one is the router, from the URL's hash to a page. The modules, by job:
//   js/runs_page.js      #/                    every run, searched, selected to compare
//   js/run_page.js       #/run/W/P/R           one run: header, config, its charts
//   js/compare_page.js   #/compare/W/P/R,...   several runs' charts overlaid
//   js/project_page.js   #/project/W/P?...     a project: run table, parallel coordinates, groups
//   js/run_table.js      the project's runs: columns, server-side sort/filter/paging, virtual rows
//   js/groups.js         charts of runs in groups: mean and band per group, one colour each
//   js/parallel_coords.js  config keys and a summary as axes, brushed to filter
//   js/url_state.js      the project page's view in the URL
//   js/charts_view.js    what those two share: charts grouped by metric, kept live
//   js/chart.js          one chart (uPlot): envelopes, band, legend, zoom, live updates
//   js/source.js         one line of a chart and where its buckets come from
//   js/columns.js        bucket columns: made drawable, joined, compacted, smoothed
//   js/first_read.js     the route, and the page's first read asked before the rest loads
//   js/api.js            reading from the server: batching, polling intervals, sign-in on 401
//   js/session.js        signing in with a key (a session cookie), signing out, CSRF headers
//   js/dom.js            building elements (text only as text: no innerHTML), links, status
//   js/format.js         numbers, times and labels as shown
//   js/settings.js       the chart settings, kept in localStorage
// A new page is a module of its own and a case here.

import { ComparePage } from "./js/compare_page.js";
import { setConnection } from "./js/dom.js";
import { dropEarly, parseRoute } from "./js/first_read.js";
import { ProjectPage } from "./js/project_page.js";
import { RunPage } from "./js/run_page.js";
import { RunsView } from "./js/runs_page.js";
import { sessionKnown } from "./js/session.js";

let view = null;

function route() {
  view?.destroy();
  delete document.body.dataset.ready;
  setConnection(null);
  const main = document.getElementById("main");
  const to = parseRoute(location.hash);
  if (to.page === "project") {
    view = new ProjectPage(main, to.workspace, to.project, to.search);
    document.title = `${to.project} · metrana`;
  } else if (to.page === "runs") {
    view = to.runs.length > 1 ? new ComparePage(main, to.runs) : new RunPage(main, to.runs);
    document.title = to.runs.length > 1 ? `compare ${to.runs.length} runs · metrana` : `${to.runs[0][2]} · metrana`;
  } else {
    document.title = "metrana";
    view = new RunsView(main);
  }
}

window.addEventListener("hashchange", () => { dropEarly(); route(); });
route();
sessionKnown();  // who is signed in (the header's sign-out button); no wait for it
