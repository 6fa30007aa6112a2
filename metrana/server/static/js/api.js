// Reading from the server: the read API's GET aliases (/api/runs…, see metrana/server/read_api.py),
// signing in when the server asks for a key (session.js: a cookie, never the key itself), at most a
// few requests at once, and the bucket reads of the page's series, of every run, batched into few
// requests.
//   GET /api/runs                                  the runs
//   GET /api/runs/W/P/R                            a run: attributes, series
//   GET /api/runs/W/P/R/series?since=NS            series written since NS (the live cursor)
//   GET /api/runs/W/P/R/bands?metric=&scale=&evaluation=&environment=&n=&start=&end=
//   POST /api/query/many_runs                       several runs' details at once
//   POST /api/query/many_runs_buckets               several runs' series' buckets at once
//                                                  (compact: raw points without repeats)
//   POST /api/query/{project,runs,aggregate_runs}   a project's page (JSON bodies)
//   POST /api/manage/edit_run|rename_run|delete_run   a run's tags and notes, its name, its end

import { columns } from "./columns.js";
import { setConnection } from "./dom.js";
import { seg, takeEarly } from "./first_read.js";
import { csrfHeaders, sessionKnown, signIn } from "./session.js";

export const POLL_LIVE_MS = 1000;   // a run written to within the last two minutes
export const POLL_QUIET_MS = 5000;  // finished or crashed runs (they may be resumed)
export const POLL_HIDDEN_MS = 15000; // a tab nobody looks at
export const CURSOR_SLACK_NS = 5e9; // ask again from a little before the cursor (see changed_series)
const FETCHES_AT_ONCE = 6;   // the browser's connections per host
const BATCH = 100;           // series per bucket request (the server's MAX_BATCH)
const REQUEST_TIMEOUT_MS = 30000;  // a request the server never answers does not stall the page

export const runApi = ([w, p, r]) => `/api/runs/${seg(w)}/${seg(p)}/${seg(r)}`;

/** Run at most `n` of the given async functions at once. */
function limiter(n) {
  let active = 0;
  const waiting = [];
  const next = () => {
    if (active >= n || !waiting.length) return;
    active++;
    const [fn, resolve, reject] = waiting.shift();
    fn().then(resolve, reject).finally(() => { active--; next(); });
  };
  return (fn) => new Promise((resolve, reject) => { waiting.push([fn, resolve, reject]); next(); });
}
export const limit = limiter(FETCHES_AT_ONCE);

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** One request, signing in first when the server asks (401); a request that changes anything
 *  (every method but GET: the server's request guard takes them only as JSON) carries the
 *  session's CSRF header, as the server requires of the cookie's writes. */
async function send(path, init, signal) {
  const write = (init.method ?? "GET") !== "GET";
  for (;;) {
    if (write) await sessionKnown();  // its CSRF value, when signed in
    const headers = { ...(init.headers ?? {}), ...(write ? csrfHeaders() : {}) };
    const limited = AbortSignal.any([signal ?? new AbortController().signal,
                                     AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
    // Same-origin: the browser sends the session cookie, if there is one.
    const response = await fetch(path, { ...init, headers, signal: limited, cache: "no-store" });
    if (response.status === 401) {  // no session, or it ended (signed out, key revoked)
      await signIn();
      continue;
    }
    // An answer cut off (its page left while it was read, or a dropped connection) is an
    // error, never an empty answer its reader would trip over.
    const body = await response.json().catch((error) => {
      if (response.ok) throw isAbort(error) ? error : new ApiError(response.status, `the server's answer to ${path} could not be read: ${error.message}`);
      return null;
    });
    if (!response.ok) throw new ApiError(response.status, body?.message ?? response.statusText);
    setConnection(null);
    return body;
  }
}

/** A GET of the read API, or with `body` a POST of it as JSON. */
export const api = (path, signal, body) => send(path, body === undefined ? {} : {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) },
  signal);

/** A read route of the table (POST /api/query/<route>, a JSON body): what the project page
 *  asks, whose filters and groupings do not fit a query string. */
export async function query(route, body, signal) {
  // The page's first read, if this is it, was asked before the page loaded (js/first_read.js).
  const early = takeEarly(route, body);
  const answer = early && await early;
  signal?.throwIfAborted();  // the page is gone (what fetch does with the signal)
  return answer ?? api(`/api/query/${route}`, signal, body);
}

export const isAbort = (error) => error?.name === "AbortError";

/** A change to a run (POST /api/manage/<route>, see metrana/server/manage_api.py); a write, so
 *  it carries the session's CSRF header like every POST of send(). */
export const manage = (route, [workspace, project, run], fields) =>
  api(`/api/manage/${route}`, undefined, { workspace, project, run, ...fields });

/** Bucket reads asked for in the same moment go out together, whichever runs they are of: a
 *  page of a hundred charts, twenty runs compared, or a live poll of a hundred series, is one
 *  or a few requests (POST many_runs_buckets), not one per chart or per run. */
class Batcher {
  constructor() { this.queue = []; }

  /** `run`: [workspace, project, run]. */
  get(run, seriesId, params, signal) {
    return new Promise((resolve, reject) => {
      if (!this.queue.length) setTimeout(() => this.flush(), 0);
      this.queue.push({ run, seriesId, params, signal, resolve, reject });
    });
  }

  flush() {
    const byN = new Map();  // one n per request
    for (const item of this.queue.splice(0)) {
      if (!byN.has(item.params.n)) byN.set(item.params.n, []);
      byN.get(item.params.n).push(item);
    }
    for (const [n, items] of byN) {
      for (let i = 0; i < items.length; i += BATCH) {
        const chunk = items.slice(i, i + BATCH);
        const byRun = new Map();  // run key → [items]
        for (const item of chunk) {
          const key = JSON.stringify(item.run);
          if (!byRun.has(key)) byRun.set(key, []);
          byRun.get(key).push(item);
        }
        const groups = [...byRun.values()];
        const runs = groups.map((g) => ({
          workspace: g[0].run[0], project: g[0].run[1], run: g[0].run[2],
          series: g.map(({ seriesId, params }) => ({ id: seriesId, start: params.start ?? null, end: params.end ?? null })),
        }));
        // One signal for the request: it is aborted when every reader's page is gone.
        limit(() => query("many_runs_buckets", { n, compact: true, runs }, chunk[0].signal))
          .then((body) => body.runs.forEach((r, k) => r.series.forEach((cols, j) => groups[k][j].resolve(columns(cols)))),
                (error) => chunk.forEach((item) => item.reject(error)));
      }
    }
  }
}
export const batcher = new Batcher();
