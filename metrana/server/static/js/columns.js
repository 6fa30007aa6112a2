// Bucket columns (what the server sends for a chart line): made drawable, cut, joined, merged
// into fewer buckets, smoothed. Pure functions over plain arrays.

import { hoverNum } from "./format.js";

/** Bucket columns as the server sends them, with numbers made drawable. */
export function columns(body) {
  const mean = body.mean.map(hoverNum);
  if (body.compact) {  // raw points sent once (many_buckets' compact=1): min = max = mean
    // Timestamps sent as differences: summed apart from the first (exact while under 2^53
    // ns), so each is rounded once, as the timestamp itself would be.
    const t = new Array(body.dt.length);
    for (let i = 0, since = 0; i < t.length; i++) t[i] = body.dt[0] + (since += i ? body.dt[i] : 0);
    return { x: body.x, t, count: new Array(mean.length).fill(1), min: mean, max: mean, mean, std: null };
  }
  return {
    x: body.x, t: body.t, count: body.count,
    min: body.min.map(hoverNum), max: body.max.map(hoverNum), mean,
    std: body.std ? body.std.map(hoverNum) : null,
  };
}
export const emptyColumns = () => ({ x: [], t: [], count: [], min: [], max: [], mean: [], std: null });
export const pointsIn = (cols) => cols.count.reduce((a, b) => a + b, 0);

/** The buckets of `cols` that start before step `cut`. */
export function before(cols, cut) {
  let end = cols.x.length;
  while (end > 0 && cols.x[end - 1] >= cut) end--;
  const take = (a) => a && a.slice(0, end);
  return { x: take(cols.x), t: take(cols.t), count: take(cols.count), min: take(cols.min),
           max: take(cols.max), mean: take(cols.mean), std: take(cols.std) };
}

export function concat(a, b) {
  const std = a.std || b.std ? [...(a.std ?? a.x.map(() => null)), ...(b.std ?? b.x.map(() => null))] : null;
  return { x: [...a.x, ...b.x], t: [...a.t, ...b.t], count: [...a.count, ...b.count],
           min: [...a.min, ...b.min], max: [...a.max, ...b.max], mean: [...a.mean, ...b.mean], std };
}

/** Merge neighbouring buckets into about `n` of equal step width: exact min, max, count;
 *  count-weighted mean and pooled std. (A live chart keeps appending fine buckets.) */
export function compact(cols, n) {
  const len = cols.x.length;
  if (len <= n) return cols;
  const x0 = cols.x[0];
  const width = (cols.x[len - 1] - x0 + 1) / n;
  const out = emptyColumns();
  if (cols.std) out.std = [];
  let group = -1;
  let sum = 0, sumsq = 0, weight = 0;
  const close = () => {
    if (group < 0) return;
    const i = out.x.length - 1;
    const mean = weight ? sum / weight : null;
    out.mean[i] = mean;
    if (out.std) out.std[i] = weight ? Math.sqrt(Math.max(0, sumsq / weight - mean * mean)) : null;
  };
  for (let i = 0; i < len; i++) {
    const g = Math.floor((cols.x[i] - x0) / width);
    if (g !== group) {
      close();
      group = g;
      sum = sumsq = weight = 0;
      out.x.push(cols.x[i]); out.t.push(cols.t[i]); out.count.push(0);
      out.min.push(null); out.max.push(null); out.mean.push(null);
      if (out.std) out.std.push(null);
    }
    const j = out.x.length - 1;
    out.count[j] += cols.count[i];
    out.t[j] = Math.min(out.t[j], cols.t[i]);
    const lo = cols.min[i], hi = cols.max[i], mean = cols.mean[i];
    if (lo != null && !Number.isNaN(lo)) out.min[j] = out.min[j] == null ? lo : Math.min(out.min[j], lo);
    if (hi != null && !Number.isNaN(hi)) out.max[j] = out.max[j] == null ? hi : Math.max(out.max[j], hi);
    if (mean != null && Number.isFinite(mean)) {
      const c = cols.count[i];
      const sd = cols.std?.[i] ?? 0;
      sum += c * mean; sumsq += c * (sd * sd + mean * mean); weight += c;
    }
  }
  close();
  return out;
}

/** EMA with TensorBoard's debiasing, skipping gaps. */
export function smooth(values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  let last = 0, n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v == null) { out[i] = null; continue; }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - weight ** n);
  }
  return out;
}
