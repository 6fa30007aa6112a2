// The page's route (from the URL's hash) and its first read, asked before the rest of the
// dashboard has loaded.
//
// index.html loads this module on its own (`<script type="module" async>`, no imports), so it
// runs as soon as it arrives: who the page is (GET /api/session), then the page's first read
// (a run's or runs' details, a project's overview), are on their way while the browser still
// fetches and evaluates the other modules and uPlot. The page then asks for the same thing
// through js/api.js, which takes this answer instead of asking again (once, and only for the
// same request: same path, same body). Signed in, the read carries the session's CSRF value
// (a POST must: js/session.js), so it is served like any other; refused (401: no session
// yet), it is asked again after signing in.

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

/** The first read's path and JSON body for a route (the pages ask exactly this first). */
export function firstRead(route) {
  if (route.page === "project") {
    return ["/api/query/project", { workspace: route.workspace, project: route.project }];
  }
  if (route.page === "runs") {
    return ["/api/query/many_runs", { runs: route.runs.map(([workspace, project, run]) => ({ workspace, project, run })) }];
  }
  return null;
}

let early = null;  // {path, body, response}: the read asked when this module ran

/** The early answer (a fetch's promise) to this request, if it is the one asked early; at
 *  most once. */
export function takeEarly(path, body) {
  if (!early || early.path !== path || early.body !== body) return null;
  const { response } = early;
  early = null;
  return response;
}

/** Another page was opened: the early answer is not for it (nor for a later visit). */
export function dropEarly() { early = null; }

/** The answer of GET /api/session (null when refused or failed), asked at once. */
export const earlySession = fetch("/api/session", { cache: "no-store" })
  .then((response) => (response.ok ? response.json() : null)).catch(() => null);

const read = firstRead(parseRoute(location.hash));
if (read) {
  const [path, body] = read;
  const json = JSON.stringify(body);
  const response = earlySession.then((who) => fetch(path, {
    method: "POST", cache: "no-store", body: json,
    headers: { "Content-Type": "application/json", ...(who?.csrf ? { [CSRF_HEADER]: who.csrf } : {}) } }));
  response.catch(() => {});  // a failure is the page's to report, when it asks
  early = { path, body: json, response };
}
