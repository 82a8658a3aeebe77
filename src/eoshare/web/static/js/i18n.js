// The UI's strings: one JSON file per UN language (i18n/<lang>.json), the same keys in
// each. Every text the UI shows comes from t(); the page's own elements name their key
// in data-i18n (text) or data-i18n-attr ("attribute:key;attribute:key").

export const LANGUAGES = ["ar", "zh", "en", "fr", "ru", "es"];
const RTL = new Set(["ar"]);
const STORAGE_KEY = "eoshare.lang";

let current = "en";
let strings = {};
let fallback = {};

async function fetchStrings(lang) {
  const response = await fetch(`i18n/${lang}.json`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`i18n/${lang}.json: HTTP ${response.status}`);
  return response.json();
}

/** The language to start in: ?lang=, then the last choice, then the page's own. */
export function initialLanguage() {
  const fromUrl = new URLSearchParams(window.location.search).get("lang");
  if (fromUrl && LANGUAGES.includes(fromUrl)) return fromUrl;
  let saved = null;
  try {
    saved = window.localStorage.getItem(STORAGE_KEY);
  } catch {
    saved = null;
  }
  if (saved && LANGUAGES.includes(saved)) return saved;
  const page = document.documentElement.lang;
  return LANGUAGES.includes(page) ? page : "en";
}

export function language() {
  return current;
}

/** Load a language, set <html lang dir> and translate the page. */
export async function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) lang = "en";
  if (!Object.keys(fallback).length) fallback = await fetchStrings("en");
  strings = lang === "en" ? fallback : await fetchStrings(lang);
  current = lang;
  document.documentElement.lang = lang;
  document.documentElement.dir = RTL.has(lang) ? "rtl" : "ltr";
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // private browsing: the choice lasts for this page only
  }
  translatePage(document);
}

/** A string in the current language, with {name} placeholders filled in. */
export function t(key, params = {}) {
  let text = strings[key] ?? fallback[key];
  if (text === undefined) {
    console.warn(`eoshare: no string for ${key}`);
    return key;
  }
  for (const [name, value] of Object.entries(params)) {
    text = text.split(`{${name}}`).join(String(value));
  }
  return text;
}

export function translatePage(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      if (attr && key) el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
}

/** Numbers and dates in the reader's language (dates in UTC, as scenes are). */
export function formatNumber(value, options = {}) {
  return new Intl.NumberFormat(current, options).format(value);
}

export function formatDateTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return new Intl.DateTimeFormat(current, {
    dateStyle: "medium",
    timeStyle: "short",
    timeZone: "UTC",
  }).format(date);
}

export function formatBytes(bytes) {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte", "terabyte"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return new Intl.NumberFormat(current, {
    style: "unit",
    unit: units[unit],
    unitDisplay: "short",
    maximumFractionDigits: unit ? 1 : 0,
  }).format(value);
}
