// The operators' peers page (peers.html), in the six UN languages: every peer node (its
// URL, member, key fingerprint and which members this node believes it for), its health
// checked live (reachable, round trip, clock skew, last error), how far its harvest lags,
// and the progress of mirrors of its files. From GET /admin/peers (operators only) and
// GET /admin/mirrors (a node without mirrors answers 404: "no mirrors configured").
// Text from the node is only ever set as text.

import { formatBytes, formatDateTime, formatNumber, language, t } from "./i18n.js";
import { $, el, errorText, fetchAsOperator, startPage } from "./operator.js";

const state = { me: null, data: null, mirrors: null, mirrorsError: null, error: null, updated: null };

const DASH = "—";

/** "5 minutes ago" in the reader's language. */
function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  const steps = [
    [60, "second"], [60, "minute"], [24, "hour"], [365, "day"], [Infinity, "year"],
  ];
  let value = Number(seconds);
  let unit = "second";
  for (const [size, name] of steps) {
    unit = name;
    if (Math.abs(value) < size) break;
    value /= size;
  }
  return new Intl.RelativeTimeFormat(language(), { numeric: "auto" }).format(
    -Math.round(value), unit,
  );
}

function when(iso, ageSeconds) {
  if (!iso) return t("peers.never");
  return `${formatDateTime(iso)} (${formatAge(ageSeconds)})`;
}

// every key written out, so that the translations can be checked against the code
const STATES = {
  ok: () => t("peers.state.ok"),
  unreachable: () => t("peers.state.unreachable"),
  "key-changed": () => t("peers.state.keyChanged"),
};
const MIRROR_STATES = {
  idle: () => t("peers.mirror.state.idle"),
  running: () => t("peers.mirror.state.running"),
  done: () => t("peers.mirror.state.done"),
  failed: () => t("peers.mirror.state.failed"),
  interrupted: () => t("peers.mirror.state.interrupted"),
};
const KINDS = {
  eoshare: () => t("peers.kind.eoshare"),
  stac: () => t("peers.kind.stac"),
};

function row(label, value, attrs = {}) {
  return [el("dt", {}, label), el("dd", attrs, value ?? DASH)];
}

function trustWords(members) {
  if (!members || !members.length) return t("peers.trustNone");
  if (members.includes("*")) return t("peers.trustAll");
  return members.join(", ");
}

function clockWords(skew, limit) {
  if (skew === null || skew === undefined) return DASH;
  const seconds = formatNumber(skew, { signDisplay: "exceptZero", maximumFractionDigits: 1 });
  if (limit !== undefined && Math.abs(skew) > limit) {
    return t("peers.skewTooLarge", { s: seconds, limit: formatNumber(limit) });
  }
  return t("peers.seconds", { s: seconds });
}

/** "3 hours" in the reader's language. */
function formatInterval(seconds) {
  const units = [[86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
  const [size, unit] = units.find(([n]) => seconds % n === 0 && seconds >= n) || [1, "second"];
  return new Intl.NumberFormat(language(), { style: "unit", unit, unitDisplay: "long" })
    .format(seconds / size);
}

function scheduleWords(peer, harvest) {
  if (!peer.harvest_every_s) return t("peers.byHand");
  const interval = formatInterval(peer.harvest_every_s);
  const words = peer.harvest_window
    ? t("peers.everyInWindow", { interval, window: peer.harvest_window })
    : t("peers.every", { interval });
  return harvest.due ? `${words} · ${t("peers.due")}` : words;
}

function peerCard(peer) {
  const health = peer.health || {};
  const harvest = peer.harvest || {};
  const limit = state.data.clock_skew_tolerance_s;
  const reachable = Boolean(health.reachable);
  const stateName = health.status && STATES[health.status]
    ? STATES[health.status]() : t("peers.state.unchecked");
  const skewBad = health.clock_skew_s !== null && health.clock_skew_s !== undefined
    && Math.abs(health.clock_skew_s) > limit;
  return el(
    "li",
    {
      class: `peer-card ${health.status === "ok" ? "peer-ok" : "peer-failed"}`,
      "data-peer": peer.name,
      "data-reachable": reachable ? "true" : "false",
    },
    el("h3", { class: "peer-name" }, peer.name,
      el("span", { class: `peer-state ${health.status === "ok" ? "dash-ok" : "dash-failed"}` },
        stateName),
      peer.enabled ? null : el("span", { class: "peer-state dash-failed" }, t("peers.disabled"))),
    el("div", { class: "peer-groups" },
      el("section", { class: "peer-group peer-identity" },
        el("h4", {}, t("peers.group.identity")),
        el("dl", {},
          row(t("peers.url"), el("bdi", { dir: "ltr" }, peer.url)),
          row(t("peers.kind"), KINDS[peer.kind] ? KINDS[peer.kind]() : peer.kind),
          row(t("peers.member"), peer.member),
          row(t("peers.fingerprint"), peer.fingerprint
            ? el("code", { class: "peer-fingerprint", dir: "ltr" }, peer.fingerprint) : null),
          row(t("peers.trust"), trustWords(peer.trusted_members)),
          row(t("peers.collections"), peer.collections
            ? formatNumber(peer.collections.length) : null),
        )),
      el("section", { class: "peer-group peer-health" },
        el("h4", {}, t("peers.group.health")),
        el("dl", {},
          row(t("peers.latency"), health.latency_ms !== null && health.latency_ms !== undefined
            ? t("peers.ms", { ms: formatNumber(health.latency_ms, { maximumFractionDigits: 0 }) })
            : null, { class: "peer-latency" }),
          row(t("peers.clock"), clockWords(health.clock_skew_s, limit),
            { class: skewBad ? "peer-clock dash-error" : "peer-clock" }),
          row(t("peers.checked"), health.checked ? formatDateTime(health.checked) : t("peers.never")),
          row(t("peers.lastError"), health.last_error || t("peers.noError"),
            { class: "peer-error" }),
        )),
      el("section", { class: "peer-group peer-harvest" },
        el("h4", {}, t("peers.group.harvest")),
        el("dl", {},
          row(t("peers.lastHarvest"), when(harvest.finished, harvest.since_finished_s),
            { class: "peer-last-harvest" }),
          row(t("peers.items"), harvest.items !== null && harvest.items !== undefined
            ? formatNumber(harvest.items) : null, { class: "peer-items" }),
          row(t("peers.cursorAge"), harvest.cursor_updated
            ? formatAge(harvest.cursor_age_s) : t("peers.never")),
          harvest.detail ? row(t("peers.harvestNote"), harvest.detail) : null,
          row(t("peers.schedule"), scheduleWords(peer, harvest), { class: "peer-schedule" }),
        )),
    ),
  );
}

function renderPeers() {
  const list = $("#peers-list");
  const { node, peers } = state.data;
  $("#peers-node").replaceChildren(
    t("peers.node", { name: node.name, member: node.member || DASH }), " ",
    el("code", { dir: "ltr" }, node.fingerprint),
  );
  list.replaceChildren(...(peers.length
    ? peers.map(peerCard)
    : [el("li", { class: "peers-none" }, t("peers.none"))]));
}

function mirrorProgress(m) {
  const files = t("peers.mirror.files", {
    done: formatNumber(m.files_done ?? 0), total: formatNumber(m.files_total ?? 0),
  });
  const bytes = t("peers.mirror.bytes", {
    done: formatBytes(m.bytes_done ?? 0), total: formatBytes(m.bytes_total ?? 0),
  });
  const total = Number(m.bytes_total || 0);
  return el("div", { class: "mirror-progress" },
    el("progress", {
      max: total > 0 ? total : 1,
      value: total > 0 ? Number(m.bytes_done || 0) : 0,
      "aria-label": `${files}, ${bytes}`,
    }),
    el("span", {}, `${files} · ${bytes}`));
}

function renderMirrors() {
  const table = $("#peers-mirrors");
  const status = $("#peers-mirrors-status");
  table.replaceChildren();
  if (state.mirrorsError) {
    status.replaceChildren(el("span", { class: "dash-error" }, state.mirrorsError));
    return;
  }
  const mirrors = state.mirrors || [];
  if (!mirrors.length) {
    status.replaceChildren(el("span", { class: "mirrors-none" }, t("peers.noMirrors")));
    return;
  }
  status.replaceChildren();
  table.append(
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, t("peers.mirror.id")),
      el("th", { scope: "col" }, t("peers.mirror.peer")),
      el("th", { scope: "col" }, t("peers.mirror.what")),
      el("th", { scope: "col" }, t("peers.mirror.window")),
      el("th", { scope: "col" }, t("peers.mirror.state")),
      el("th", { scope: "col" }, t("peers.mirror.progress")),
      el("th", { scope: "col" }, t("peers.mirror.lastRun")),
      el("th", { scope: "col" }, t("peers.mirror.lastError")),
    )),
    el("tbody", {}, mirrors.map((m) => el("tr", { "data-mirror": m.id },
      el("th", { scope: "row" }, String(m.id)),
      el("td", {}, m.peer),
      el("td", {},
        el("span", {}, (m.collections || []).join(", ") || DASH),
        el("br"),
        el("span", { class: "meta" }, m.bbox
          ? el("bdi", { dir: "ltr" }, m.bbox.join(", ")) : t("peers.mirror.anywhere")),
        el("br"),
        el("span", { class: "meta" }, m.datetime || t("peers.mirror.anytime"))),
      el("td", {}, m.window || t("peers.mirror.always")),
      el("td", { class: "mirror-state", "data-state": m.state },
        MIRROR_STATES[m.state] ? MIRROR_STATES[m.state]() : m.state),
      el("td", {}, mirrorProgress(m)),
      el("td", {}, m.last_run ? formatDateTime(m.last_run) : t("peers.never")),
      el("td", {}, m.last_error || t("peers.noError")),
    ))),
  );
}

function translateStatic() {
  $("#peers-title").textContent = t("peers.title");
  $("#peers-intro").textContent = t("peers.intro");
  $("#peers-refresh").textContent = t("peers.refresh");
  $("#peers-list-title").textContent = t("peers.listTitle");
  $("#peers-mirrors-title").textContent = t("peers.mirrorsTitle");
  document.title = `${t("peers.title")} · ${t("app.title")}`;
}

function showError() {
  const error = state.error;
  let message;
  if (error?.status === 401) {
    message = [t("peers.signIn"), " ", el("a", { href: "./" }, t("peers.signInLink"))];
  } else if (error?.status === 403) {
    message = [t("peers.forbidden")];
  } else {
    message = [errorText(error)];
  }
  $("#peers-status").replaceChildren(el("span", {
    class: "dash-error peers-error",
    role: "alert",
    "data-status": error?.status ?? "",
  }, ...message));
  $("#peers-list").replaceChildren();
  $("#peers-node").replaceChildren();
  $("#peers-mirrors").replaceChildren();
  $("#peers-mirrors-status").replaceChildren();
}

function render() {
  translateStatic();
  if (state.error) {
    showError();
    return;
  }
  if (!state.data) return;
  $("#peers-status").textContent = t("peers.updated", { time: formatDateTime(state.updated) });
  renderPeers();
  renderMirrors();
}

async function loadMirrors() {
  try {
    const doc = await fetchAsOperator("admin/mirrors");
    return { mirrors: Array.isArray(doc?.mirrors) ? doc.mirrors : [], error: null };
  } catch (error) {
    // a node without the mirror service has no such route: no mirrors configured
    if (error?.status === 404) return { mirrors: [], error: null };
    return { mirrors: [], error: errorText(error) };
  }
}

async function load() {
  $("#peers-status").textContent = t("peers.loading");
  $("#peers-refresh").setAttribute("aria-busy", "true");
  try {
    const [data, mirrors] = await Promise.all([
      fetchAsOperator("admin/peers"),
      loadMirrors(),
    ]);
    state.data = data;
    state.mirrors = mirrors.mirrors;
    state.mirrorsError = mirrors.error;
    state.error = null;
    state.updated = new Date().toISOString();
  } catch (error) {
    state.data = null;
    state.error = error;
  } finally {
    $("#peers-refresh").removeAttribute("aria-busy");
  }
  render();
  document.body.dataset.ready = "true";
}

async function start() {
  state.me = await startPage({
    prefix: "peers",
    links: [{ href: "dashboard.html", id: "peers-dashboard", label: () => t("peers.dashboardLink") }],
    render,
  });
  translateStatic();
  $("#peers-refresh").addEventListener("click", load);
  await load();
}

start().catch((error) => {
  console.error("eoshare: the peers page did not start", error);
  document.body.dataset.ready = "error";
});
