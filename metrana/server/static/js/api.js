// Reading from the server: the read API's GET aliases (/api/runs…, see metrana/server/read_api.py),
// the API key asked for once, at most a few requests at once, and the bucket reads of one run's
// series batched into few requests.
//   GET /api/runs                                  the runs
//   GET /api/runs/W/P/R                            a run: attributes, series
//   GET /api/runs/W/P/R/series?since=NS            series written since NS (the live cursor)
//   GET /api/runs/W/P/R/buckets?n=&compact=1&series=ID:START:END,...   several series' buckets
//                                                  at once (compact: raw points without repeats)
//   GET /api/runs/W/P/R/bands?metric=&scale=&evaluation=&environment=&n=&start=&end=
//   POST /api/query/{project,runs,aggregate_runs}   a project's page (JSON bodies)
//   POST /api/manage/edit_run|rename_run|delete_run   a run's tags and notes, its name, its end

import { columns } from "./columns.js";
import { el, setConnection } from "./dom.js";

export const POLL_LIVE_MS = 1000;   // a run written to within the last two minutes
export const POLL_QUIET_MS = 5000;  // finished or crashed runs (they may be resumed)
export const POLL_HIDDEN_MS = 15000; // a tab nobody looks at
export const CURSOR_SLACK_NS = 5e9; // ask again from a little before the cursor (see changed_series)
const FETCHES_AT_ONCE = 6;   // the browser's connections per host
const BATCH = 25;            // series per bucket request (several requests draw progressively)
const REQUEST_TIMEOUT_MS = 30000;  // a request the server never answers does not stall the page
const KEY_STORAGE = "metrana.apiKey";

/** A path segment: percent-encoded, and `.` too (clients drop `.` segments). */
const seg = (name) => encodeURIComponent(name).replace(/\./g, "%2E");
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

let keyPrompt = null;

/** Ask for the server's API key once (a server started with --api-key); kept for this tab. */
function askForKey(refused) {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    const input = el("input", { type: "password", autocomplete: "off", required: true,
                                 "aria-label": "API key", placeholder: "API key" });
    const dialog = el("dialog", {},
      el("form", { method: "dialog", onsubmit: () => {
        sessionStorage.setItem(KEY_STORAGE, input.value.trim());
        dialog.remove();
        keyPrompt = null;
        resolve();
      } },
      el("h2", {}, "This server needs an API key"),
      el("p", { class: "muted" }, refused ? "That key was refused. " : "",
         "It is kept in this tab only (sessionStorage) and sent as ",
         el("code", {}, "Authorization: Bearer …"), "."),
      input, el("button", { type: "submit" }, "Continue")));
    dialog.addEventListener("cancel", (e) => e.preventDefault());
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return keyPrompt;
}

/** One request, with the API key (asked for once on a 401), a timeout, and the server's
 *  message in the error of a refusal. */
async function send(path, init, signal) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = { ...(init.headers ?? {}), ...(key ? { Authorization: `Bearer ${key}` } : {}) };
    const limited = AbortSignal.any([signal ?? new AbortController().signal,
                                     AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
    const response = await fetch(path, { ...init, headers, signal: limited, cache: "no-store" });
    if (response.status === 401) {
      await askForKey(Boolean(key));
      continue;
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body?.message ?? response.statusText);
    setConnection(null);
    return body;
  }
}

export const api = (path, signal) => send(path, {}, signal);

/** A POST of a JSON body (the server's request guard takes only JSON in a POST). */
const post = (path, body, signal) => send(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }, signal);

/** A read route of the table (POST /api/query/<route>, a JSON body): what the project page
 *  asks, whose filters and groupings do not fit a query string. */
export const query = (route, body, signal) => post(`/api/query/${route}`, body, signal);

export const isAbort = (error) => error?.name === "AbortError";

/** A change to a run (POST /api/manage/<route>, see metrana/server/manage_api.py). */
export const manage = (route, [workspace, project, run], fields) =>
  post(`/api/manage/${route}`, { workspace, project, run, ...fields });

/** Bucket reads of one run's series asked for in the same moment go out together: a page of a
 *  hundred charts, or a live poll of a hundred series, is a few requests, not a hundred. */
class Batcher {
  constructor(base) {
    this.base = base;
    this.queue = [];
  }

  get(seriesId, params, signal) {
    return new Promise((resolve, reject) => {
      if (!this.queue.length) setTimeout(() => this.flush(), 0);
      this.queue.push({ seriesId, params, signal, resolve, reject });
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
        const specs = chunk.map(({ seriesId, params }) =>
          [seriesId, params.start ?? "", params.end ?? ""].join(":").replace(/:+$/, ""));
        limit(() => api(`${this.base}/buckets?n=${n}&compact=1&series=${specs.join(",")}`, chunk[0].signal))
          .then((body) => body.series.forEach((cols, j) => chunk[j].resolve(columns(cols))),
                (error) => chunk.forEach((item) => item.reject(error)));
      }
    }
  }
}
const batchers = new Map();
export const batcher = (base) => batchers.get(base) ?? batchers.set(base, new Batcher(base)).get(base);
