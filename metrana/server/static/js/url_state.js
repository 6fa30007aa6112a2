// The project page's view as the URL's hash: `#/project/<ws>/<project>?group=..&filter=..`.
// Everything a user sets (filter, grouping, band, columns, sort, metric, zoomed steps,
// smoothing, parallel-coordinate axes and brushes, the statistics' score, task key and bootstrap repetitions) are
// here, so a copied URL reopens the view.

const LISTS = ["group", "cols", "axes"];

export const DEFAULT_STATE = {
  filter: "", group: [], band: "std", cols: null, sort: null, metric: null,
  x: null, smooth: 0.6, axes: null, brush: {}, score: "last10", task: "", reps: 2000,
};

/** The state in a hash's query string (what follows `?`). */
export function parseState(search) {
  const params = new URLSearchParams(search);
  const state = structuredClone(DEFAULT_STATE);
  for (const [key, value] of params) {
    if (LISTS.includes(key)) state[key] = value.split(",").filter(Boolean);
    else if (key === "smooth") {
      const v = Number(value);
      if (Number.isFinite(v) && v >= 0 && v < 1) state.smooth = v;
    } else if (key === "reps") {
      const v = Number(value);
      if (Number.isInteger(v) && v >= 1 && v <= 50000) state.reps = v;
    } else if (key === "x") {
      const [lo, hi] = value.split(":").map(Number);
      if (Number.isFinite(lo) && Number.isFinite(hi) && lo < hi) state.x = [lo, hi];
    } else if (key === "sort") {
      const at = value.lastIndexOf(":");
      state.sort = { id: value.slice(0, at), dir: value.slice(at + 1) === "asc" ? "asc" : "desc" };
    } else if (key === "brush") {
      // axis~lo~hi for a range, axis~=v1|v2 for values of a text axis; ";" between axes
      for (const part of value.split(";").filter(Boolean)) {
        const [axis, ...rest] = part.split("~");
        if (rest.length === 1 && rest[0].startsWith("=")) state.brush[axis] = { values: rest[0].slice(1).split("|") };
        else if (rest.length === 2) state.brush[axis] = { range: rest.map(Number) };
      }
    } else if (key in state) state[key] = value;
  }
  return state;
}

/** The query string of a state: only what differs from the defaults. */
export function stateQuery(state) {
  const params = new URLSearchParams();
  for (const key of Object.keys(DEFAULT_STATE)) {
    const value = state[key];
    if (value == null || value === "" || (Array.isArray(value) && !value.length && key !== "cols")) continue;
    if (key === "smooth") { if (value !== DEFAULT_STATE.smooth) params.set(key, String(value)); continue; }
    if (["band", "score", "reps"].includes(key) && value === DEFAULT_STATE[key]) continue;
    if (key === "x") { params.set(key, `${value[0]}:${value[1]}`); continue; }
    if (key === "sort") { params.set(key, `${value.id}:${value.dir}`); continue; }
    if (key === "brush") {
      const parts = Object.entries(value).map(([axis, b]) =>
        b.values ? `${axis}~=${b.values.join("|")}` : `${axis}~${b.range[0]}~${b.range[1]}`);
      if (parts.length) params.set(key, parts.join(";"));
      continue;
    }
    params.set(key, Array.isArray(value) ? value.join(",") : String(value));
  }
  return params.toString();
}

export const projectHash = (workspace, project, state) => {
  const query = state ? stateQuery(state) : "";
  return `#/project/${encodeURIComponent(workspace)}/${encodeURIComponent(project)}${query ? "?" + query : ""}`;
};
