// Before the page's modules: which page the URL's hash names, and that page's first read,
// sent at once. A classic script (index.html loads it first, blocking, it is tiny) so that
// the read travels while the modules and uPlot load, instead of after them: the project page
// reads its overview, the run and compare pages their runs. js/api.js (`query`) takes the
// answer when the page asks the same question; an error is ignored here and asked again
// there, where signing in and error messages live. dashboard.js routes with
// `metranaPage`, so the page and its early read can never disagree.

"use strict";

/** The page a hash names: {name: "project", workspace, project, search} | {name: "run" or
 *  "compare", runs: [[w, p, r], ...]} | {name: "runs"}. */
window.metranaPage = (hash) => {
  const full = hash.replace(/^#\/?/, "");
  const cut = full.indexOf("?");
  const path = cut < 0 ? full : full.slice(0, cut);
  const [name, ...rest] = path.split("/");
  try {
    if (name === "project" && rest.length === 2) {
      const [workspace, project] = rest.map(decodeURIComponent);
      return { name, workspace, project, search: cut < 0 ? "" : full.slice(cut + 1) };
    }
    if (name === "run" && rest.length === 3) return { name, runs: [rest.map(decodeURIComponent)] };
    if (name === "compare") {
      const runs = rest.join("/").split(",").filter(Boolean).map((r) => r.split("/").map(decodeURIComponent));
      if (runs.length && runs.every((r) => r.length === 3)) return { name: runs.length > 1 ? name : "run", runs };
    }
  } catch (error) {
    if (!(error instanceof URIError)) throw error;
  }
  return { name: "runs" };
};

/** The first read of a page (route and body), as the page itself asks it. */
window.metranaFirstRead = (page) => {
  if (page.name === "project") return ["project", { workspace: page.workspace, project: page.project }];
  if (page.name === "run" || page.name === "compare") {
    return ["many_runs", { runs: page.runs.map(([workspace, project, run]) => ({ workspace, project, run })) }];
  }
  return null;
};

(() => {
  const read = window.metranaFirstRead(window.metranaPage(location.hash));
  if (!read) return;
  const [route, body] = read;
  const text = JSON.stringify(body);
  // Without the session's CSRF header (session.js has it once the modules run): a server
  // with a key refuses this read, and the page asks it again, signed in.
  window.metranaEarly = {
    route, body: text,
    answer: fetch(`/api/query/${route}`, {
      method: "POST", body: text, cache: "no-store", headers: { "Content-Type": "application/json" },
    }).then((response) => (response.ok ? response.json() : null), () => null),
  };
})();
