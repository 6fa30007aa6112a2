// The page's route (from the URL's hash) and its first read, asked before the rest of the
// dashboard has loaded.
//
// index.html loads this module on its own (`<script type="module" async>`, no imports), so it
// runs as soon as it arrives: the page's first read (a run's details, a project's overview)
// and who the page is (GET /api/session) are on their way while the browser still fetches and
// evaluates the other modules and uPlot. The page then asks for the same thing through
// js/api.js (query()), which takes this answer instead of asking again (once, and only for
// the same route and body). The early reads are GETs where the read API has an alias (the
// same answers; a GET needs no CSRF value), else a POST sent once the session is known (with
// its CSRF value when signed in): same-origin, the session cookie goes with them, so they are
// served signed in too. Refused (401: no session yet), the page asks again, signing in first.

export const CSRF_HEADER = "X-Metrana-CSRF";

/** What the hash names: {page: "project", workspace, project, search} | {page: "runs", runs:
 *  [[w, p, r], ...]} | {page: "home"}. The router (dashboard.js) and the first read share it. */
export function parseRoute(hash) {
  const full = hash.replace(/^#\/?/, "");
  const cut = full.indexOf("?");
  const path = cut < 0 ? full : full.slice(0, cut);
  const [name, ...rest] = path.split("/");
  try {
    if (name === "project" && rest.length === 2) {
      const [workspace, project] = rest.map(decodeURIComponent);
      return { page: "project", workspace, project, search: cut < 0 ? "" : full.slice(cut + 1) };
    }
    if (name === "run" && rest.length === 3) return { page: "runs", runs: [rest.map(decodeURIComponent)] };
    if (name === "compare") {
      const runs = rest.join("/").split(",").filter(Boolean).map((r) => r.split("/").map(decodeURIComponent));
      if (runs.length && runs.every((r) => r.length === 3)) return { page: "runs", runs };
    }
  } catch (error) {
    if (!(error instanceof URIError)) throw error;
  }
  return { page: "home" };
}

/** A path segment: percent-encoded, and `.` too (clients drop `.` segments). */
export const seg = (name) => encodeURIComponent(name).replace(/\./g, "%2E");

/** The first read of a route: the query route and body the page asks first, and the GET
 *  alias that answers it with how its answer becomes the route's (none: the route itself,
 *  POSTed once the session is known: several runs compared). */
export function firstRead(route) {
  if (route.page === "project") {
    return { route: "project", body: { workspace: route.workspace, project: route.project },
             get: `/api/runs/${seg(route.workspace)}/${seg(route.project)}`, answer: (a) => a };
  }
  if (route.page === "runs") {
    const body = { runs: route.runs.map(([workspace, project, run]) => ({ workspace, project, run })) };
    if (route.runs.length > 1) return { route: "many_runs", body, get: null, answer: (a) => a };
    return { route: "many_runs", body, get: `/api/runs/${route.runs[0].map(seg).join("/")}`,
             answer: (a) => ({ runs: [a] }) };
  }
  return null;
}

let early = null;  // {route, body, answer}: the read asked when this module ran

/** The early answer (a promise of it; null inside: refused or failed, ask again) to this
 *  query, if it is the one asked early; at most once. */
export function takeEarly(route, body) {
  if (!early || early.route !== route || early.body !== JSON.stringify(body)) return null;
  const { answer } = early;
  early = null;
  return answer;
}

/** Another page was opened: the early answer is not for it (nor for a later visit). */
export function dropEarly() { early = null; }

/** The answer of GET /api/session (null when refused or failed), asked at once: the page's
 *  POSTs carry the session's CSRF value when signed in (js/session.js). */
export const earlySession = fetch("/api/session", { cache: "no-store" })
  .then((response) => (response.ok ? response.json() : null)).catch(() => null);

/** uPlot (vendored, a classic script defining the global `uPlot`). A page with charts fetches
 *  it from here, at once, and runs it only when its first chart is about to be drawn
 *  (js/chart.js uPlotLoaded()): running it takes a fresh page 15-45 ms (its number and date
 *  formatters load the locale's data), which then falls while the page waits for its reads
 *  instead of before the page can send them. */
export const UPLOT_URL = "/static/vendor/uplot/uPlot.iife.min.js";

const read = firstRead(parseRoute(location.hash));
if (read) {
  // Every route with a first read draws charts (a project, runs); the list of runs does not.
  const preload = Object.assign(document.createElement("link"), { rel: "preload", as: "script", href: UPLOT_URL });
  document.head.append(preload);
  const body = JSON.stringify(read.body);
  const asked = read.get ? fetch(read.get, { cache: "no-store" }) : earlySession.then((who) => fetch(
    `/api/query/${read.route}`, { method: "POST", cache: "no-store", body, headers: {
      "Content-Type": "application/json", ...(who?.csrf ? { [CSRF_HEADER]: who.csrf } : {}) } }));
  early = { route: read.route, body, answer: asked
    .then(async (response) => (response.ok ? read.answer(await response.json()) : null))
    .catch(() => null) };
}
