// Save and load user preferences in the browser with a version number.
const KEY = "prefs";
const VERSION = 2;

function savePrefs(prefs) {
  localStorage.setItem(KEY, JSON.stringify({ version: VERSION, prefs }));
}

function loadPrefs(defaults) {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY));
    if (stored && stored.version === VERSION) {
      return { ...defaults, ...stored.prefs };
    }
  } catch (err) {
    console.warn("ignoring unreadable preferences", err);
  }
  return defaults;
}
