// The chart settings (x axis, smoothing, log y), kept across pages in localStorage.
//
// Read on first use, not when the module loads: a cold page's first localStorage read waits
// on the browser process (15-40 ms measured in headless Chromium), which a page without such
// charts (the project page) should not pay before it draws.

const SETTINGS_STORAGE = "metrana.settings";

const DEFAULT_SETTINGS = { x: "step", smoothing: 0.6, logY: false };
function loadSettings() {
  try {
    return { ...DEFAULT_SETTINGS, ...JSON.parse(localStorage.getItem(SETTINGS_STORAGE) ?? "{}") };
  } catch {
    return { ...DEFAULT_SETTINGS };
  }
}

let stored = null;
const current = () => (stored ??= loadSettings());

/** The settings, read and written as plain properties. */
export const settings = {
  get x() { return current().x; },
  set x(value) { current().x = value; },
  get smoothing() { return current().smoothing; },
  set smoothing(value) { current().smoothing = value; },
  get logY() { return current().logY; },
  set logY(value) { current().logY = value; },
};
export const saveSettings = () => localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(current()));
