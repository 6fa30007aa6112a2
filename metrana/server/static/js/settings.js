// The chart settings (x axis, smoothing, log y), kept across pages in localStorage.

const SETTINGS_STORAGE = "metrana.settings";

const DEFAULT_SETTINGS = { x: "step", smoothing: 0.6, logY: false };
function loadSettings() {
  try {
    return { ...DEFAULT_SETTINGS, ...JSON.parse(localStorage.getItem(SETTINGS_STORAGE) ?? "{}") };
  } catch {
    return { ...DEFAULT_SETTINGS };
  }
}
export const settings = loadSettings();
export const saveSettings = () => localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(settings));
