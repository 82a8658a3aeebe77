// The operators' dashboard (dashboard.html), in the six UN languages: usage by country on
// a world map (shaded by the bytes each country received) and over time (a bar chart drawn
// here as plain SVG), the top collections, the node's health and headline metrics, and
// the latest entries of the change history. Everything comes from GET /admin/dashboard,
// which answers operators only. Text from the node is only ever set as text.

/* global L, topojson */
import { ISO_NUMERIC } from "./countries.js";
import { formatBytes, formatDateTime, formatNumber, language, t } from "./i18n.js";
import { unwrapAntimeridian } from "./map.js";
import { $, el, errorText, fetchAsOperator, startPage } from "./operator.js";

const SVG = "http://www.w3.org/2000/svg";
const BASE_FILL = "#f4f1e8";
// light to dark: the share of the largest country's bytes
const SHADES = ["#c7e9e4", "#8fd0c6", "#4fb0a3", "#1d8a7e", "#0b5e57"];
const NUMERIC_TO_ISO = Object.fromEntries(Object.entries(ISO_NUMERIC).map(([a, n]) => [n, a]));
const state = { me: null, data: null, map: null, layer: null, world: null, updated: null };

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

// every key written out, so that the translations can be checked against the code
const MEASURES = {
  bytes: () => t("dash.measure.bytes"),
  grants: () => t("dash.measure.grants"),
  scenes: () => t("dash.measure.scenes"),
  users: () => t("dash.measure.users"),
};
const PARTS = {
  catalogue: () => t("dash.part.catalogue"),
  store: () => t("dash.part.store"),
  access: () => t("dash.part.access"),
};

function measureValue(row, measure) {
  return Number(row?.[measure] || 0);
}

function formatMeasure(value, measure) {
  return measure === "bytes" ? formatBytes(value) : formatNumber(value);
}

function countryName(code) {
  if (!code) return t("dash.unknownCountry");
  try {
    return new Intl.DisplayNames([language()], { type: "region" }).of(code) || code;
  } catch {
    return code;
  }
}

function shade(bytes, max) {
  if (!bytes || !max) return BASE_FILL;
  const step = Math.min(SHADES.length - 1, Math.floor((bytes / max) * SHADES.length));
  return SHADES[step];
}

// --- the map --------------------------------------------------------------------------
async function loadWorld() {
  if (state.world) return state.world;
  const response = await fetch("vendor/world-atlas/countries-110m.json");
  const topology = await response.json();
  // rings across the antimeridian made continuous: no stripes across the map (map.js)
  state.world = unwrapAntimeridian(topojson.feature(topology, topology.objects.countries));
  return state.world;
}

function ensureMap() {
  if (state.map) return;
  state.map = L.map($("#dash-map"), {
    worldCopyJump: true,
    minZoom: 1,
    maxZoom: 6,
    zoomSnap: 0.5,
    attributionControl: false,
  }).fitBounds([[-56, -170], [78, 180]]);
}

async function drawMap() {
  ensureMap();
  const world = await loadWorld();
  const byCountry = new Map(state.data.usage.by_country.map((row) => [row.key, row]));
  const max = Math.max(0, ...state.data.usage.by_country.map((row) => row.bytes));
  if (state.layer) state.layer.remove();
  state.layer = L.geoJSON(world, {
    style: (feature) => {
      const code = NUMERIC_TO_ISO[feature.id];
      const row = code ? byCountry.get(code) : undefined;
      const reached = Boolean(row && row.bytes > 0);
      const classes = ["dash-country"];
      if (code) classes.push(`dash-country-${code}`);
      if (reached) classes.push("dash-reached");
      return {
        className: classes.join(" "),
        color: "#9aa89f",
        weight: 0.7,
        fillColor: reached ? shade(row.bytes, max) : BASE_FILL,
        fillOpacity: 1,
      };
    },
    onEachFeature: (feature, layer) => {
      const code = NUMERIC_TO_ISO[feature.id];
      const row = code ? byCountry.get(code) : undefined;
      if (!row) return;
      layer.bindTooltip(
        t("dash.countryTip", {
          country: countryName(code),
          bytes: formatBytes(row.bytes),
          scenes: formatNumber(row.scenes),
          users: formatNumber(row.users),
        }),
        { sticky: true },
      );
    },
  }).addTo(state.map);
  const legend = $("#dash-legend");
  legend.replaceChildren(
    t("dash.legend"),
    " ",
    ...SHADES.map((colour, i) =>
      el("span", { class: `dash-swatch dash-swatch-${i}`, "aria-hidden": "true" }),
    ),
    " ",
    formatBytes(max),
  );
}

function countriesTable() {
  const rows = state.data.usage.by_country;
  const table = $("#dash-countries");
  table.replaceChildren(
    el("caption", {}, t("dash.countriesCaption", { n: formatNumber(rows.length) })),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, t("dash.col.country")),
      el("th", { scope: "col" }, MEASURES.bytes()),
      el("th", { scope: "col" }, MEASURES.grants()),
      el("th", { scope: "col" }, MEASURES.scenes()),
      el("th", { scope: "col" }, MEASURES.users()),
    )),
    el("tbody", {}, rows.map((row) => el("tr", { "data-country": row.key || "" },
      el("th", { scope: "row" }, countryName(row.key)),
      el("td", {}, formatBytes(row.bytes)),
      el("td", {}, formatNumber(row.grants)),
      el("td", {}, formatNumber(row.scenes)),
      el("td", {}, formatNumber(row.users)),
    ))),
  );
}

// --- the chart over time --------------------------------------------------------------
function daysOf(days) {
  const out = [];
  const today = new Date();
  for (let i = days - 1; i >= 0; i -= 1) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    out.push(d.toISOString().slice(0, 10));
  }
  return out;
}

function drawChart() {
  const measure = $("#dash-measure").value;
  const byDay = new Map(state.data.usage.by_day.map((row) => [row.key, row]));
  const days = daysOf(state.data.days);
  const values = days.map((day) => measureValue(byDay.get(day), measure));
  const max = Math.max(1, ...values);
  const width = 720;
  const height = 220;
  const pad = { top: 12, bottom: 28, side: 8 };
  const slot = (width - 2 * pad.side) / days.length;
  const rtl = document.documentElement.dir === "rtl";
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-labelledby": "dash-chart-desc",
    class: "dash-svg",
  });
  const desc = svg("title", { id: "dash-chart-desc" });
  desc.textContent = t("dash.chartDesc", {
    measure: MEASURES[measure](),
    days: formatNumber(days.length),
    total: formatMeasure(values.reduce((a, b) => a + b, 0), measure),
  });
  chart.append(desc);
  chart.append(svg("line", {
    x1: pad.side, x2: width - pad.side, y1: height - pad.bottom, y2: height - pad.bottom,
    class: "dash-axis",
  }));
  days.forEach((day, i) => {
    const value = values[i];
    const x = rtl ? width - pad.side - (i + 1) * slot : pad.side + i * slot;
    if (value > 0) {
      const h = Math.max(2, (value / max) * (height - pad.top - pad.bottom));
      const bar = svg("rect", {
        x: x + slot * 0.1, width: slot * 0.8, y: height - pad.bottom - h, height: h,
        class: "dash-bar", "data-day": day,
      });
      const tip = svg("title");
      tip.textContent = t("dash.dayTip", { day, value: formatMeasure(value, measure) });
      bar.append(tip);
      chart.append(bar);
    }
    const every = Math.ceil(days.length / 8);
    const last = i === days.length - 1;
    if (last || (i % every === 0 && days.length - 1 - i >= every / 2)) {
      const label = svg("text", { x: x + slot / 2, y: height - 8, class: "dash-tick" });
      label.textContent = day.slice(5);
      chart.append(label);
    }
  });
  const top = svg("text", { x: rtl ? width - pad.side : pad.side, y: pad.top, class: "dash-max" });
  top.textContent = formatMeasure(max, measure);
  chart.append(top);
  $("#dash-chart").replaceChildren(chart);
}

// --- collections, health, events ------------------------------------------------------
function collectionsTable() {
  const rows = state.data.usage.top_collections;
  $("#dash-collections").replaceChildren(
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, t("dash.col.collection")),
      el("th", { scope: "col" }, MEASURES.bytes()),
      el("th", { scope: "col" }, MEASURES.grants()),
      el("th", { scope: "col" }, MEASURES.scenes()),
      el("th", { scope: "col" }, MEASURES.users()),
    )),
    el("tbody", {}, rows.length
      ? rows.map((row) => el("tr", {},
        el("th", { scope: "row" }, row.key || "—"),
        el("td", {}, formatBytes(row.bytes)),
        el("td", {}, formatNumber(row.grants)),
        el("td", {}, formatNumber(row.scenes)),
        el("td", {}, formatNumber(row.users)),
      ))
      : el("tr", {}, el("td", { colspan: 5 }, t("dash.none")))),
  );
}

function tile(label, value, ok = null) {
  const cls = ok === null ? "dash-tile" : `dash-tile ${ok ? "dash-ok" : "dash-failed"}`;
  return el("li", { class: cls }, el("span", { class: "dash-tile-label" }, label),
    el("strong", { class: "dash-tile-value" }, value));
}

function healthTiles() {
  const { health, metrics, usage } = state.data;
  const tiles = Object.entries(health.checks).map(([name, check]) => {
    const ok = check.status === "ok";
    const label = PARTS[name] ? PARTS[name]() : name;
    const value = ok ? t("dash.ok", { ms: formatNumber(check.ms ?? 0) }) : t("dash.failed");
    return tile(label, value, ok);
  });
  const ratio = metrics.tile_cache_hit_ratio;
  tiles.push(
    tile(t("dash.metric.requests"), formatNumber(metrics.requests)),
    tile(t("dash.metric.serverErrors"), formatNumber(metrics.server_errors),
      metrics.server_errors === 0),
    tile(t("dash.metric.bytesServed"), formatBytes(metrics.bytes_served)),
    tile(t("dash.metric.cacheHits"),
      ratio === null ? "—" : formatNumber(ratio, { style: "percent", maximumFractionDigits: 1 })),
    tile(t("dash.metric.reached"), t("dash.reachedValue", {
      countries: formatNumber(usage.by_country.filter((row) => row.key).length),
      users: formatNumber(usage.users),
    })),
  );
  $("#dash-health").replaceChildren(...tiles);
}

function eventsList() {
  const events = state.data.events;
  $("#dash-events").replaceChildren(...(events.length
    ? events.map((event) => el("li", {},
      el("time", { datetime: event.at }, formatDateTime(event.at)), " ",
      el("strong", {}, event.what), " ",
      el("span", { class: "dash-subject" }, event.subject), " ",
      el("span", { class: "dash-by" }, t("dash.by", { who: event.who })),
    ))
    : [el("li", {}, t("dash.none"))]));
}

// --- the page -------------------------------------------------------------------------
function translateStatic() {
  $("#dash-title").textContent = t("dash.title");
  $("#dash-days-label").textContent = t("dash.days");
  $("#dash-measure-label").textContent = t("dash.measure");
  $("#dash-refresh").textContent = t("dash.refresh");
  $("#dash-health-title").textContent = t("dash.health");
  $("#dash-map-title").textContent = t("dash.mapTitle");
  $("#dash-chart-title").textContent = t("dash.chartTitle");
  $("#dash-collections-title").textContent = t("dash.collectionsTitle");
  $("#dash-events-title").textContent = t("dash.eventsTitle");
  $("#dash-map").setAttribute("aria-label", t("dash.mapLabel"));
  const measure = $("#dash-measure");
  const chosen = measure.value || "bytes";
  measure.replaceChildren(...Object.entries(MEASURES).map(([value, name]) =>
    el("option", { value }, name())));
  measure.value = chosen;
}

function render() {
  translateStatic();
  if (!state.data) return;
  $("#dash-status").textContent = t("dash.updated", { time: formatDateTime(state.updated) });
  healthTiles();
  countriesTable();
  drawChart();
  collectionsTable();
  eventsList();
  return drawMap();
}

function showError(error) {
  $("#dash-status").replaceChildren(el("span", { class: "dash-error", role: "alert" },
    error?.status === 401 || error?.status === 403
      ? t("dash.operatorsOnly")
      : errorText(error)));
}

async function load() {
  const days = $("#dash-days").value;
  $("#dash-status").textContent = t("dash.loading");
  try {
    state.data = await fetchAsOperator(`admin/dashboard?days=${encodeURIComponent(days)}`);
  } catch (error) {
    state.data = null;
    showError(error);
    return;
  }
  state.updated = new Date().toISOString();
  await render();
}

async function start() {
  state.me = await startPage({
    prefix: "dash",
    links: [{ href: "peers.html", id: "dash-peers", label: () => t("dash.peersLink") }],
    render,
  });
  translateStatic();
  $("#dash-days").addEventListener("change", load);
  $("#dash-measure").addEventListener("change", drawChart);
  $("#dash-refresh").addEventListener("click", load);
  await load();
}

start();
