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
//   js/api.js            reading from the server: batching, polling intervals, sign-in on 401
//   js/session.js        signing in with a key (a session cookie), signing out, CSRF headers
//   js/dom.js            building elements (text only as text: no innerHTML), links, status
//   js/format.js         numbers, times and labels as shown
//   js/settings.js       the chart settings, kept in localStorage
// A new page is a module of its own and a case here.

import { ComparePage } from "./js/compare_page.js";
import { setConnection } from "./js/dom.js";
import { ProjectPage } from "./js/project_page.js";
import { RunPage } from "./js/run_page.js";
import { RunsView } from "./js/runs_page.js";
import { refreshSession } from "./js/session.js";

let view = null;

function route() {
  view?.destroy();
  delete document.body.dataset.ready;
  setConnection(null);
  const main = document.getElementById("main");
  const page = window.metranaPage(location.hash);  // early.js: the hash's page
  if (page.name === "project") {
    view = new ProjectPage(main, page.workspace, page.project, page.search);
    document.title = `${page.project} · metrana`;
  } else if (page.name === "run") {
    view = new RunPage(main, page.runs);
    document.title = `${page.runs[0][2]} · metrana`;
  } else if (page.name === "compare") {
    view = new ComparePage(main, page.runs);
    document.title = `compare ${page.runs.length} runs · metrana`;
  } else {
    document.title = "metrana";
    view = new RunsView(main);
  }
}

window.addEventListener("hashchange", route);
route();
refreshSession();  // who is signed in (the header's sign-out button); no wait for it
