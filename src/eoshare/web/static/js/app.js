// eoshare's browser UI: search, preview and download, in the six UN languages.
//
// Views (the URL's hash, so that Back works and links can be shared):
//   #/search                   the search form, the results and their footprints
//   #/item/<collection>/<id>   one scene: metadata, preview tiles, assets to download
//   #/peer/<peer>/<collection>/<id>  one scene of a peer node, asked through this node
//   #/collections              every collection and its sharing agreement in plain words
//   #/process                  run a ready-made algorithm as an openEO job (process.js)
//
// Everything comes from the public STAC API and the links and assets of its documents.
// Text from documents is only ever set with textContent, never parsed as HTML.
//
// On a hub (a node that searches its peers too) each result carries a badge naming the
// node it comes from (federation:origin, or this node), and a notice names the peers
// that did not answer a search in time (federation:missing, or its response header).

import * as api from "./api.js";
import {
  formatBytes,
  formatDateTime,
  formatNumber,
  initialLanguage,
  language,
  setLanguage,
  t,
} from "./i18n.js";
import { MapView } from "./map.js";
import { fillProcessCollections, setupProcess } from "./process.js";

const $ = (selector) => document.querySelector(selector);

const state = {
  collections: [],
  collectionsLoaded: false,
  results: [],
  matched: null,
  next: null,
  searched: false,
  item: null,
  itemError: null,
  me: null,
  view: "search",
  // federation: this node's identity, peers' members, what the last search missed
  node: null,
  peerMembers: {},
  federationLoaded: false,
  federated: false,
  missing: [],
  collectionsMissing: [],
  collectionsPeers: {},
  peerReport: {},
};

let mapView;

// ---- small DOM helpers -------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

function errorText(error) {
  if (error instanceof api.ApiError) {
    return error.detail
      ? t("error.server", { status: error.status, detail: error.detail })
      : t("error.status", { status: error.status });
  }
  return t("error.network");
}

/** An http(s) URL for an href, or null (file:// and other schemes the browser can't use). */
function webUrl(href) {
  if (!href) return null;
  try {
    const resolved = new URL(href, api.apiRoot);
    return resolved.protocol === "http:" || resolved.protocol === "https:" ? resolved.href : null;
  } catch {
    return null;
  }
}

function thumbnailOf(item) {
  const assets = item.assets || {};
  const asset = assets.thumbnail || Object.values(assets).find((a) => a.roles?.includes("thumbnail"));
  const link = (item.links || []).find((l) => l.rel === "thumbnail" || l.rel === "preview");
  return webUrl(asset?.href) || webUrl(link?.href);
}

/** The peer a result came through (fan-out search), or null for this node's own. */
function viaOf(item) {
  const via = item?.properties?.["federation:via"];
  return typeof via === "string" && via ? via : null;
}

function itemHash(item) {
  const path = `${encodeURIComponent(item.collection)}/${encodeURIComponent(item.id)}`;
  const via = viaOf(item);
  return via ? `#/peer/${encodeURIComponent(via)}/${path}` : `#/item/${path}`;
}

function collectionTitle(id, via = null) {
  // a peer's collection is listed here as <peer>.<id>
  const c =
    (via && state.collections.find((x) => x.id === `${via}.${id}`)) ||
    state.collections.find((x) => x.id === id);
  return c?.title || id;
}

/** Where a collection comes from, on a hub that lists its peers' collections too. */
function collectionOrigin(collection) {
  if (!state.collections.some((c) => c["federation:origin"])) return null;
  const origin = collection["federation:origin"];
  const here = state.node?.name || null;
  return badgesOf([{ node: origin || here, local: !origin || origin === here, harvested: false }]);
}

// ---- views -------------------------------------------------------------------------

function showView(name) {
  state.view = name;
  for (const view of document.querySelectorAll("[data-view]")) {
    view.hidden = view.dataset.view !== name;
  }
  for (const link of document.querySelectorAll("[data-view-link]")) {
    const on = link.dataset.viewLink === name || (name === "item" && link.dataset.viewLink === "search");
    if (on) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const titles = {
    search: () => t("title.search"),
    item: () => t("title.item"),
    collections: () => t("title.collections"),
    process: () => t("title.process"),
  };
  document.title = `${titles[name]()} · ${t("app.title")}`;
  mapView?.stopDrawing();
  updateDrawButton(false);
}

async function route() {
  const hash = window.location.hash || "#/search";
  const parts = hash.slice(2).split("/").map((p) => decodeURIComponent(p));
  if (parts[0] === "item" && parts.length >= 3) {
    showView("item");
    await openItem(parts[1], parts.slice(2).join("/"));
  } else if (parts[0] === "peer" && parts.length >= 4) {
    showView("item");
    await openItem(parts[2], parts.slice(3).join("/"), parts[1]);
  } else if (parts[0] === "process") {
    showView("process");
    mapView.clearItem();
    await fillProcessCollections();
    focusView("process");
  } else if (parts[0] === "collections") {
    showView("collections");
    mapView.clearItem();
    renderCollections();
    focusView("collections");
  } else {
    showView("search");
    mapView.clearItem();
    renderResults();
  }
}

function focusView(name) {
  const heading = document.querySelector(`[data-view="${name}"] h1`);
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
}

// ---- collections ------------------------------------------------------------------

async function loadCollections() {
  const status = $("#collections-status");
  status.textContent = t("collections.loading");
  try {
    const listing = await api.collections();
    state.collections = listing.collections;
    // a hub's peers whose collections are missing from the list (federation:missing)
    state.collectionsMissing = listing.missing;
    state.collectionsPeers = listing.peers;
    state.collectionsLoaded = true;
  } catch (error) {
    status.textContent = errorText(error);
    return;
  }
  // a hub lists its peers' collections too (<peer>.<id>, with federation:origin)
  if (state.collections.some((c) => c["federation:origin"])) await loadFederation();
  fillCollectionSelect();
  renderCollections();
}

function fillCollectionSelect() {
  const select = $("#collection");
  const chosen = select.value;
  for (const option of [...select.options].slice(1)) option.remove();
  for (const c of state.collections) {
    select.append(el("option", { value: c.id, text: c.title || c.id }));
  }
  select.value = chosen;
}

const OPEN_LICENCES = /^(CC0|CC-BY|ODbL|ODC-By|PDDL|OGL|etalab|Apache|MIT|BSD|ISC|CDLA|DL-DE)/i;

/** The agreement of a collection in plain words: the node's own summary when the
 * collection carries one (eoshare:agreement), else words derived from its licence. */
function agreementWords(collection) {
  // a peer's collection carries its origin's agreement as federation:agreement
  const agreement = collection["eoshare:agreement"] || collection["federation:agreement"];
  const lines = [];
  if (agreement && typeof agreement === "object") {
    if (agreement.access) {
      const levels = {
        open: t("access.open"),
        members: t("access.members"),
        partners: t("access.partners"),
        provider: t("access.provider"),
      };
      lines.push(levels[agreement.access] || agreement.access);
    }
    if (agreement.summary) {
      // the node's own plain words already cover embargo, resolution and licence
      lines.push(agreement.summary);
      return lines;
    }
    if (Number(agreement.embargo_days) > 0) {
      lines.push(t("agreement.embargo", { days: formatNumber(agreement.embargo_days) }));
    }
    if (Number(agreement.reduced_resolution_m) > 0) {
      lines.push(t("agreement.reduced", { metres: formatNumber(agreement.reduced_resolution_m) }));
    }
    const licence = agreement.licence || agreement.license || collection.license;
    if (licence) lines.push(t("agreement.licence", { licence }));
    return lines;
  }
  const licence = collection.license;
  if (!licence) lines.push(t("agreement.unknown"));
  else if (OPEN_LICENCES.test(licence)) lines.push(t("agreement.openLicence", { licence }));
  else if (licence.toLowerCase() === "proprietary") lines.push(t("agreement.proprietary"));
  else lines.push(t("agreement.otherLicence", { licence }));
  return lines;
}

function providerOf(collection) {
  const providers = collection.providers || [];
  const main =
    providers.find((p) => p.roles?.includes("licensor")) ||
    providers.find((p) => p.roles?.includes("producer")) ||
    providers[0];
  return main?.name;
}

function renderCollections() {
  const list = $("#collections");
  const status = $("#collections-status");
  if (!state.collectionsLoaded) return;
  list.replaceChildren();
  status.textContent = t("collections.count", { n: formatNumber(state.collections.length) });
  fillMissingNotice(
    $("#collections-notice"),
    t("fed.collectionsMissingTitle"),
    state.collectionsMissing,
    state.collectionsPeers,
  );
  for (const c of state.collections) {
    const headingId = `collection-${c.id}`;
    const agreement = agreementWords(c);
    const interval = c.extent?.temporal?.interval?.[0] || [];
    const provider = providerOf(c);
    list.append(
      el(
        "li",
        { class: "card collection", "aria-labelledby": headingId, "data-collection": c.id },
        el("h2", { id: headingId, text: c.title || c.id }),
        collectionOrigin(c),
        provider ? el("p", { class: "meta", text: t("collections.provider", { name: provider }) }) : null,
        interval[0]
          ? el("p", {
              class: "meta",
              text: t("collections.period", {
                from: formatDateTime(interval[0]),
                to: interval[1] ? formatDateTime(interval[1]) : t("collections.ongoing"),
              }),
            })
          : null,
        el(
          "div",
          { class: "agreement", role: "note" },
          el("h3", { text: t("collections.agreement") }),
          ...agreement.map((line) => el("p", { text: line })),
        ),
        c.description ? el("p", { class: "description", text: c.description }) : null,
        el("button", {
          type: "button",
          class: "button secondary",
          text: t("collections.searchThis"),
          onclick: () => {
            $("#collection").value = c.id;
            window.location.hash = "#/search";
            runSearch();
          },
        }),
      ),
    );
  }
}

// ---- search ----------------------------------------------------------------------

function parseBbox(text) {
  const trimmed = text.trim();
  if (!trimmed) return null;
  const numbers = trimmed.split(/[\s,;]+/).filter(Boolean).map(Number);
  if (numbers.length !== 4 || numbers.some((n) => !Number.isFinite(n))) {
    throw new Error(t("search.bboxInvalid"));
  }
  const [minx, miny, maxx, maxy] = numbers;
  const lonOk = (v) => v >= -180 && v <= 180;
  const latOk = (v) => v >= -90 && v <= 90;
  if (!lonOk(minx) || !lonOk(maxx) || !latOk(miny) || !latOk(maxy)) {
    throw new Error(t("search.bboxRange"));
  }
  if (miny > maxy) throw new Error(t("search.bboxOrder"));
  return numbers;
}

function formatBbox(bbox) {
  return bbox.map((v) => Number(v.toFixed(4))).join(", ");
}

function buildSearch() {
  const body = { limit: 20 };
  const bbox = parseBbox($("#bbox").value);
  if (bbox) body.bbox = bbox;
  const from = $("#date-from").value;
  const to = $("#date-to").value;
  if (from && to && from > to) throw new Error(t("search.datesOrder"));
  if (from || to) {
    body.datetime = `${from ? `${from}T00:00:00Z` : ".."}/${to ? `${to}T23:59:59Z` : ".."}`;
  }
  const collection = $("#collection").value;
  if (collection) body.collections = [collection];
  const cloud = Number($("#cloud").value);
  if (cloud < 100) {
    // scenes without a cloud cover (radar) are kept: clouds do not hide them
    body["filter-lang"] = "cql2-json";
    body.filter = {
      op: "or",
      args: [
        { op: "<=", args: [{ property: "eo:cloud_cover" }, cloud] },
        { op: "isNull", args: [{ property: "eo:cloud_cover" }] },
      ],
    };
  }
  const text = $("#text").value.trim();
  if (text) body.q = text;
  return body;
}

async function runSearch() {
  const error = $("#search-error");
  showError(error, "");
  let body;
  try {
    body = buildSearch();
  } catch (problem) {
    showError(error, problem.message);
    return;
  }
  mapView.showArea(body.bbox || null);
  const status = $("#results-status");
  status.textContent = t("results.searching");
  $("#search-submit").setAttribute("aria-busy", "true");
  try {
    const page = await api.search(body);
    state.results = page.features || [];
    state.matched = page.numberMatched ?? null;
    state.next = (page.links || []).find((l) => l.rel === "next") || null;
    state.searched = true;
    await noteFederation(page);
    mapView.showFootprints(state.results, { onSelect: selectFeature });
    renderResults();
    mapView.fitFootprints();
  } catch (problem) {
    status.textContent = "";
    showError(error, errorText(problem));
  } finally {
    $("#search-submit").removeAttribute("aria-busy");
  }
}

async function loadMore() {
  if (!state.next) return;
  const button = $("#more");
  button.setAttribute("aria-busy", "true");
  try {
    const page = await api.follow(state.next);
    const features = page.features || [];
    const firstNew = state.results.length;
    state.results.push(...features);
    state.next = (page.links || []).find((l) => l.rel === "next") || null;
    await noteFederation(page);
    mapView.showFootprints(features, { onSelect: selectFeature, replace: false });
    renderResults();
    $(`#results li:nth-child(${firstNew + 1}) a`)?.focus();
  } catch (problem) {
    showError($("#search-error"), errorText(problem));
  } finally {
    button.removeAttribute("aria-busy");
  }
}

// ---- federation: where each result comes from, which peers did not answer -----------

/** This node's name and member, and each peer's member (both public), read once. */
async function loadFederation() {
  if (state.federationLoaded) return;
  state.federationLoaded = true;
  try {
    state.node = await api.getJSON(api.url(".well-known/eoshare-node"));
  } catch {
    state.node = null;
  }
  try {
    const doc = await api.getJSON(api.url("federation/peers"));
    for (const peer of doc.peers || []) state.peerMembers[peer.name] = peer.member || null;
  } catch {
    // an older node without the route: badges name the node without its member
  }
}

/** What a search page says about federation: which sources answered, which are missing. */
async function noteFederation(page) {
  const report = page["federation:peers"];
  const harvested = (page.features || []).some((f) => f.properties?.["federation:origin"]);
  state.federated = Boolean(report) || harvested;
  state.missing = Array.isArray(page["federation:missing"]) ? page["federation:missing"] : [];
  state.peerReport = report && typeof report === "object" ? report : {};
  if (state.federated) await loadFederation();
}

function originsOf(feature) {
  const props = feature.properties || {};
  const here = state.node?.name || null;
  const sources = Array.isArray(props["federation:sources"]) ? props["federation:sources"] : [];
  const one = (origin, via) => ({
    node: origin || here,
    local: !origin || origin === here,
    harvested: Boolean(origin) && origin !== here && !via,
  });
  if (sources.length) {
    const seen = new Map();
    for (const s of sources) {
      const key = s.origin || s.node;
      if (!seen.has(key)) seen.set(key, one(key, s.node !== here ? s.node : null));
    }
    return [...seen.values()];
  }
  return [one(props["federation:origin"], props["federation:via"])];
}

function originBadges(feature) {
  if (!state.federated) return null;
  return badgesOf(originsOf(feature));
}

/** Badges naming nodes (and their members): [{node, local, harvested}]. */
function badgesOf(origins) {
  return el(
    "span",
    { class: "origins" },
    ...origins.map((o) => {
      const member = o.local ? state.node?.member : state.peerMembers[o.node];
      let title;
      if (o.local) title = t("fed.fromHere", { node: o.node || "" });
      else if (o.harvested) title = t("fed.harvested", { node: o.node });
      else if (member) title = t("fed.fromPeer", { node: o.node, member });
      else title = t("fed.fromPeerNoMember", { node: o.node });
      return el(
        "span",
        {
          class: `origin-badge${o.local ? " local" : ""}${o.harvested ? " harvested" : ""}`,
          "data-origin": o.node || "",
          title,
        },
        el("span", { class: "origin-node" }, o.node || "—"),
        member ? el("span", { class: "origin-member" }, member) : null,
        el("span", { class: "visually-hidden" }, title),
      );
    }),
  );
}

function renderMissing() {
  const notice = $("#federation-notice");
  fillMissingNotice(notice, t("fed.missingTitle"), state.missing, state.peerReport);
}

/** A notice naming the peers that did not answer (``missing``), unreachable or slow as
 * ``report`` ({name: {status}}) says; hidden when every peer answered. */
function fillMissingNotice(notice, title, missing, report) {
  notice.replaceChildren();
  notice.hidden = !missing.length;
  if (!missing.length) return;
  notice.append(
    el("p", { text: title }),
    el(
      "ul",
      {},
      ...missing.map((peer) => {
        const status = report[peer]?.status;
        const text =
          status === "timeout"
            ? t("fed.missingSlow", { node: peer })
            : t("fed.missingUnreachable", { node: peer });
        return el("li", { "data-peer": peer, "data-status": status || "error", text });
      }),
    ),
  );
}

function selectFeature(feature) {
  window.location.hash = itemHash(feature);
}

function renderResults() {
  const list = $("#results");
  const status = $("#results-status");
  list.replaceChildren();
  $("#more").hidden = !state.next;
  renderMissing();
  if (!state.searched) {
    status.textContent = t("results.none");
    return;
  }
  if (!state.results.length) {
    status.textContent = t("results.empty");
    return;
  }
  status.textContent =
    state.matched !== null
      ? t("results.count", {
          n: formatNumber(state.matched),
          shown: formatNumber(state.results.length),
        })
      : t("results.shown", { shown: formatNumber(state.results.length) });
  for (const feature of state.results) {
    const props = feature.properties || {};
    const key = `${feature.collection}/${feature.id}`;
    const thumb = thumbnailOf(feature);
    const cloud = props["eo:cloud_cover"];
    list.append(
      el(
        "li",
        { class: "result", "data-item": feature.id },
        el(
          "a",
          {
            href: itemHash(feature),
            class: "result-link",
            onmouseenter: () => mapView.highlight(key, true),
            onmouseleave: () => mapView.highlight(key, false),
            onfocus: () => mapView.highlight(key, true),
            onblur: () => mapView.highlight(key, false),
          },
          thumb
            ? el("img", { class: "thumb", src: thumb, alt: "", loading: "lazy", width: 72, height: 72 })
            : el("span", { class: "thumb placeholder", "aria-hidden": "true" }),
          el(
            "span",
            { class: "result-text" },
            el("span", { class: "result-title", text: props.title || feature.id }),
            el("span", { class: "meta", text: formatDateTime(props.datetime || props.start_datetime) }),
            el("span", { class: "meta", text: collectionTitle(feature.collection, viaOf(feature)) }),
            cloud !== undefined && cloud !== null
              ? el("span", { class: "meta", text: t("results.cloud", { value: formatNumber(cloud) }) })
              : null,
            originBadges(feature),
          ),
        ),
      ),
    );
  }
}

// ---- item page ---------------------------------------------------------------------

async function openItem(collectionId, itemId, via = null) {
  const article = $("#item");
  if (
    state.item?.id !== itemId ||
    state.item?.collection !== collectionId ||
    viaOf(state.item) !== via
  ) {
    article.replaceChildren(el("p", { class: "status", text: t("item.loading") }));
    state.item = null;
    state.itemError = null;
    try {
      state.item = via
        ? await api.peerItem(via, collectionId, itemId)
        : await api.item(collectionId, itemId);
      if (via) await loadFederation();
    } catch (error) {
      state.itemError = error;
    }
  }
  renderItem();
  const heading = article.querySelector("h1");
  if (heading) heading.focus();
  if (state.item) {
    const shown = await mapView.showItem(state.item);
    article.dataset.preview = shown ? "tiles" : "none";
    $("#preview-status").textContent = shown ? t("item.previewShown") : t("item.previewNone");
  }
}

function metadataRows(item) {
  const p = item.properties || {};
  const rows = [
    [t("meta.id"), item.id],
    [t("meta.collection"), collectionTitle(item.collection, viaOf(item))],
    [t("meta.datetime"), p.datetime ? formatDateTime(p.datetime) : null],
    [t("meta.platform"), p.platform],
    [t("meta.constellation"), p.constellation],
    [t("meta.instruments"), Array.isArray(p.instruments) ? p.instruments.join(", ") : null],
    [t("meta.gsd"), p.gsd !== undefined ? t("meta.metres", { value: formatNumber(p.gsd) }) : null],
    [
      t("meta.cloud"),
      p["eo:cloud_cover"] !== undefined && p["eo:cloud_cover"] !== null
        ? t("meta.percent", { value: formatNumber(p["eo:cloud_cover"]) })
        : null,
    ],
    [t("meta.polarizations"), Array.isArray(p["sar:polarizations"]) ? p["sar:polarizations"].join(", ") : null],
    [t("meta.orbit"), p["sat:orbit_state"]],
    [t("meta.site"), p["eoshare:site"]],
    [t("meta.projection"), p["proj:code"] || (p["proj:epsg"] ? `EPSG:${p["proj:epsg"]}` : null)],
    [t("meta.bbox"), item.bbox ? formatBbox(item.bbox) : null],
  ];
  return rows.filter(([, value]) => value !== undefined && value !== null && value !== "");
}

/** The node's hint of the caller's access to an asset (eoshare:access), when it is not
 * "full" (or, for a thumbnail, "reduced"): the download is withheld, and the reason says which agreement withholds it. */
function accessHint(asset) {
  const hint = asset["eoshare:access"];
  if (!hint || typeof hint !== "object") return null;
  if (hint.decision === "full") return null;
  // A thumbnail is small by nature: "reduced" still means the node hands it out.
  const roles = Array.isArray(asset.roles) ? asset.roles : [];
  if (hint.decision === "reduced" && roles.includes("thumbnail")) return null;
  return {
    decision: hint.decision,
    reason: hint.reason || t("item.withheldReason"),
    previewMetres: hint.decision === "reduced" ? hint.max_resolution_m : undefined,
  };
}

function assetKind(asset) {
  const type = (asset.type || "").toLowerCase();
  if (type.includes("geotiff") || type.includes("tiff")) {
    return type.includes("cloud-optimized") ? t("asset.cog") : t("asset.geotiff");
  }
  if (type.includes("png")) return t("asset.png");
  if (type.includes("jpeg")) return t("asset.jpeg");
  if (type.includes("json")) return t("asset.json");
  return asset.type || t("asset.file");
}

function renderItem() {
  const article = $("#item");
  article.replaceChildren();
  if (!state.item) {
    const error = state.itemError;
    const message =
      error instanceof api.ApiError && error.status === 404 ? t("item.notFound") : errorText(error);
    article.append(el("h1", { tabindex: "-1", text: t("item.unavailable") }), el("p", { class: "error", role: "alert", text: message }));
    return;
  }
  const item = state.item;
  const federated = state.federated;
  if (item.properties?.["federation:origin"]) state.federated = true;
  const origins = originBadges(item);
  state.federated = federated;
  const props = item.properties || {};
  const preview = item.assets?.rendered_preview?.href ? webUrl(item.assets.rendered_preview.href) : null;
  const image = preview || thumbnailOf(item);
  const dl = el("dl", { class: "metadata" });
  for (const [name, value] of metadataRows(item)) {
    dl.append(el("dt", { text: name }), el("dd", { text: value }));
  }
  const assets = el("ul", { class: "assets" });
  for (const [key, asset] of Object.entries(item.assets || {})) {
    assets.append(renderAsset(key, asset));
  }
  article.append(
    el("h1", { tabindex: "-1", text: props.title || item.id }),
    origins,
    props["eoshare:synthetic"] ? el("p", { class: "badge", text: t("item.synthetic") }) : null,
    image ? el("img", { class: "preview-image", src: image, alt: t("item.previewAlt", { title: props.title || item.id }) }) : null,
    el(
      "div",
      { class: "row" },
      el("button", {
        type: "button",
        class: "button secondary",
        text: t("item.zoom"),
        onclick: () => item.bbox && mapView.zoomToBbox(item.bbox),
      }),
    ),
    el("p", { id: "preview-status", class: "status", "aria-live": "polite" }),
    el("h2", { text: t("item.metadata") }),
    dl,
    el("h2", { text: t("item.assets") }),
    assets,
  );
}

function renderAsset(key, asset) {
  const href = webUrl(asset.href);
  const hint = accessHint(asset);
  const reasonId = `reason-${key}`;
  const facts = [assetKind(asset)];
  if (asset["file:size"]) facts.push(formatBytes(asset["file:size"]));
  const title = asset.title || key;
  const reason = el("p", { id: reasonId, class: "reason", role: "status" });
  let action;
  if (!href) {
    reason.textContent = t("item.noDownload");
    action = el("button", {
      type: "button",
      class: "button download",
      "aria-disabled": "true",
      "aria-describedby": reasonId,
      text: t("item.download"),
    });
  } else if (hint) {
    reason.textContent = t("item.withheld", { reason: hint.reason });
    if (hint.previewMetres) {
      reason.textContent += ` ${t("item.previewReduced", { metres: formatNumber(hint.previewMetres) })}`;
    }
    action = el("button", {
      type: "button",
      class: "button download withheld",
      "aria-disabled": "true",
      "aria-describedby": reasonId,
      text: t("item.download"),
    });
  } else {
    action = el("a", {
      class: "button download",
      href,
      download: "",
      "aria-describedby": reasonId,
      text: t("item.download"),
      onclick: (event) => {
        event.preventDefault();
        download(href, key, action, reason);
      },
    });
  }
  return el(
    "li",
    { class: "asset", "data-asset": key },
    el("span", { class: "asset-title", text: title }),
    el("span", { class: "meta", text: facts.join(" · ") }),
    action,
    reason,
  );
}

/** Ask before fetching: a withheld asset answers 401/403 with the reason (the
 * agreement), which is shown beside its button instead of a failed download. */
async function download(href, key, button, reason) {
  if (button.getAttribute("aria-disabled") === "true") return;
  button.setAttribute("aria-busy", "true");
  reason.textContent = t("item.checking");
  const headers = api.authHeaders();
  try {
    let check = await fetch(href, { method: "HEAD", headers, credentials: "same-origin" });
    if (!check.ok || check.status === 405) {
      // a HEAD answer has no body: ask for one byte to read the problem's detail
      check = await fetch(href, {
        headers: { ...headers, Range: "bytes=0-0" },
        credentials: "same-origin",
      });
    }
    if (!check.ok) {
      const problem = await api.problemOf(check);
      const detail = problem.detail || t("error.status", { status: check.status });
      if (check.status === 401 || check.status === 403) {
        reason.textContent = t("item.withheld", { reason: detail });
        button.setAttribute("aria-disabled", "true");
        button.classList.add("withheld");
      } else {
        reason.textContent = t("item.downloadFailed", { reason: detail });
      }
      return;
    }
    reason.textContent = t("item.downloadStarted");
    const name = href.split("?")[0].split("/").pop() || key;
    if (headers.Authorization && !new URL(href).searchParams.has("sig")) {
      // a link cannot carry the token: fetch the bytes and hand them to the browser
      const response = await fetch(href, { headers, credentials: "same-origin" });
      if (!response.ok) throw await api.problemOf(response);
      const blob = await response.blob();
      const objectUrl = URL.createObjectURL(blob);
      el("a", { href: objectUrl, download: name }).click();
      setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000);
    } else {
      el("a", { href, download: name }).click();
    }
  } catch (error) {
    reason.textContent = t("item.downloadFailed", { reason: errorText(error) });
  } finally {
    button.removeAttribute("aria-busy");
  }
}

// ---- drawing and the map --------------------------------------------------------------

function updateDrawButton(on) {
  const button = $("#draw");
  button.setAttribute("aria-pressed", on ? "true" : "false");
  const hint = $("#map-hint");
  hint.hidden = !on;
  hint.textContent = on ? t("search.drawHint") : "";
}

function toggleDrawing() {
  if ($("#draw").getAttribute("aria-pressed") === "true") {
    mapView.stopDrawing();
    updateDrawButton(false);
    return;
  }
  updateDrawButton(true);
  mapView.startDrawing((bbox) => {
    updateDrawButton(false);
    if (!bbox) return;
    $("#bbox").value = formatBbox(bbox);
    mapView.showArea(bbox);
    $("#bbox").focus();
  });
}

// ---- sign-in -----------------------------------------------------------------------

/** Ask the node who we are (GET /auth/me); a node without it leaves what we know. */
async function refreshMe() {
  try {
    state.me = await api.me();
  } catch {
    state.me = null;
  }
  renderWho();
}

function renderWho() {
  const who = $("#who");
  const me = state.me;
  const user = me && !me.anonymous ? me.user : api.signedInUser();
  if (user) who.textContent = t("auth.signedInAs", { user });
  else if (api.token()) who.textContent = t("auth.signedInToken");
  else who.textContent = t("auth.public");
  const signedIn = Boolean(user || api.token());
  $("#signin-open").hidden = signedIn;
  $("#signout").hidden = !signedIn;
  // the operators' dashboard (dashboard.html): the link is shown to operators only
  $("#nav-dashboard").hidden = !me?.roles?.includes("operator");
  $("#nav-peers").hidden = !me?.roles?.includes("operator");
}

async function afterSignInChange() {
  await refreshMe();
  loadCollections();
  if (state.searched) runSearch();
  if (state.view === "item" && state.item) {
    const { collection, id } = state.item;
    const via = viaOf(state.item);
    state.item = null;
    openItem(collection, id, via);
  }
}

function setupSignIn() {
  const dialog = $("#signin");
  const error = $("#signin-error");
  $("#signin-open").addEventListener("click", () => {
    showError(error, "");
    dialog.showModal();
    $("#username").focus();
  });
  $("#signin-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => $("#signin-open").focus());
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token").value.trim();
    if (!value) {
      showError(error, t("auth.tokenMissing"));
      return;
    }
    api.setToken(value);
    $("#token").value = "";
    dialog.close();
    afterSignInChange();
  });
  $("#account-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, "");
    const username = $("#username").value.trim();
    const password = $("#password").value;
    if (!username || !password) {
      showError(error, t("auth.accountMissing"));
      return;
    }
    try {
      await api.login(username, password);
      $("#password").value = "";
      dialog.close();
      afterSignInChange();
    } catch (problem) {
      if (problem instanceof api.ApiError && (problem.status === 404 || problem.status === 405)) {
        showError(error, t("auth.noAccounts"));
      } else if (problem instanceof api.ApiError && problem.status < 500) {
        showError(error, t("auth.failed", { reason: problem.detail || problem.title }));
      } else {
        showError(error, errorText(problem));
      }
    }
  });
  $("#signout").addEventListener("click", async () => {
    await api.logout();
    afterSignInChange();
    $("#signin-open").focus();
  });
}

// ---- start -------------------------------------------------------------------------

function updateCloudOutput() {
  const value = Number($("#cloud").value);
  $("#cloud-value").textContent =
    value >= 100 ? t("search.cloudAny") : t("search.cloudMax", { value: formatNumber(value) });
}

async function changeLanguage(lang) {
  await setLanguage(lang);
  $("#language").value = language();
  mapView.translate();
  updateCloudOutput();
  renderWho();
  showView(state.view);
  renderResults();
  renderCollections();
  if (state.view === "item") {
    renderItem();
    const status = $("#preview-status");
    const shown = $("#item").dataset.preview;
    if (status && shown) status.textContent = shown === "tiles" ? t("item.previewShown") : t("item.previewNone");
  }
  document.body.dataset.lang = language();
}

async function start() {
  await setLanguage(initialLanguage());
  $("#language").value = language();
  mapView = new MapView($("#map"));
  mapView.translate();
  updateCloudOutput();
  renderWho();
  setupSignIn();
  api.whenTokenRefused(() => {
    renderWho();
    showError($("#search-error"), t("auth.expired"));
  });
  await refreshMe();

  $("#language").addEventListener("change", (event) => changeLanguage(event.target.value));
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch();
  });
  $("#search-form").addEventListener("reset", () => {
    setTimeout(() => {
      updateCloudOutput();
      mapView.showArea(null);
      showError($("#search-error"), "");
    });
  });
  $("#cloud").addEventListener("input", updateCloudOutput);
  $("#draw").addEventListener("click", toggleDrawing);
  $("#use-view").addEventListener("click", () => {
    const bbox = mapView.viewBbox();
    $("#bbox").value = formatBbox(bbox);
    mapView.showArea(bbox);
  });
  $("#clear-area").addEventListener("click", () => {
    $("#bbox").value = "";
    mapView.showArea(null);
  });
  $("#bbox").addEventListener("change", () => {
    try {
      mapView.showArea(parseBbox($("#bbox").value));
      showError($("#search-error"), "");
    } catch (problem) {
      showError($("#search-error"), problem.message);
    }
  });
  $("#more").addEventListener("click", loadMore);
  setupProcess({
    parseBbox,
    formatBbox,
    viewBbox: () => mapView.viewBbox(),
    showArea: (bbox) => mapView.showArea(bbox),
  });
  // the skip link moves focus without touching the hash (the hash is the view)
  $(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    $("#panel-content").focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && $("#draw").getAttribute("aria-pressed") === "true") {
      mapView.stopDrawing();
      updateDrawButton(false);
      $("#draw").focus();
    }
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => mapView.invalidate());

  await loadCollections();
  await route();
  if (state.view === "search" && !state.searched) await runSearch();
  document.body.dataset.lang = language();
  document.body.dataset.ready = "true";
}

start().catch((error) => {
  console.error("eoshare: the UI did not start", error);
  document.body.dataset.ready = "error";
});
