// Numbers, times and labels as the page shows them. No DOM, no state.

/** JSON spells non-finite floats as strings; a chart draws only finite numbers. */
export const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
export const hoverNum = (v) => (typeof v === "number" ? v : v === "NaN" ? NaN : v === "Infinity" ? Infinity
  : v === "-Infinity" ? -Infinity : null);

// An Intl formatter takes 10-50 ms to make in a fresh page (its locale data): made only for
// what digit grouping by hand does not cover, and only when first needed.
let intFormat = null;
/** 1234567 → "1,234,567" (en-US grouping). */
export function fmtInt(n) {
  if (n == null) return "–";
  if (Number.isSafeInteger(n)) return (n < 0 ? "-" : "") + String(Math.abs(n)).replace(/\B(?=(\d{3})+$)/g, ",");
  intFormat ??= new Intl.NumberFormat("en-US");
  return intFormat.format(n);
}
export function fmtValue(v) {
  if (v == null) return "–";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
  return String(+v.toPrecision(5));
}
/** Axis ticks: short, and as wide as they need (the axis is sized to them). */
export function fmtTick(v) {
  if (v == null) return "";  // a tick uPlot filtered out (log scale)
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2).replace(/\.?0+e/, "e");
  return String(+v.toPrecision(4));
}
export const fmtDate = (ns) => (ns ? new Date(ns / 1e6).toLocaleString() : "–");
export function fmtDuration(seconds) {
  const s = Math.abs(seconds);
  const sign = seconds < 0 ? "-" : "";
  if (s < 60) return sign + (s < 10 ? +s.toFixed(2) : Math.round(s)) + "s";
  if (s < 3600) return sign + Math.floor(s / 60) + "m" + String(Math.round(s % 60)).padStart(2, "0") + "s";
  if (s < 86400) return sign + Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  return sign + Math.floor(s / 86400) + "d" + String(Math.floor((s % 86400) / 3600)).padStart(2, "0") + "h";
}
export function fmtAgo(ns) {
  if (!ns) return "–";
  return fmtDuration(Math.max(0, Date.now() / 1e3 - ns / 1e9)) + " ago";
}
export const fmtLabels = (labels) => Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1))
  .map(([k, v]) => `${k}=${v}`).join(", ");


export function naturalOrder(a, b) {
  return a.localeCompare(b, undefined, { numeric: true });
}
