// The disaster activations page (activations.html), in the six UN languages:
//   activations.html            the request form (emergency focal points) and the list of
//                               activations the caller may see (the operators' queue, with
//                               approve and reject for requested ones)
//   activations.html#<id>       one activation: its state and grant, the transition log,
//                               the ranked archive, the next passes, and close (operators)
//
// Everything comes from /activations and /alerts of the node's API. Text from documents
// is only ever set as text, never parsed as HTML.

import * as api from "./api.js";
import { formatBytes, formatDateTime, t } from "./i18n.js";
import { $, el, errorText, startPage } from "./operator.js";

const HAZARDS = [
  "flood", "fire", "earthquake", "cyclone", "storm", "landslide", "volcano", "tsunami",
  "oil-spill", "other",
];
const state = { me: null };

function isOperator() {
  return Boolean(state.me?.roles?.includes("operator"));
}

function problem(error) {
  return el("p", { class: "act-error", role: "alert" }, errorText(error));
}

// every key written out, so that the translations can be checked against the code
const HAZARD_NAMES = {
  flood: () => t("act.hazard.flood"),
  fire: () => t("act.hazard.fire"),
  earthquake: () => t("act.hazard.earthquake"),
  cyclone: () => t("act.hazard.cyclone"),
  storm: () => t("act.hazard.storm"),
  landslide: () => t("act.hazard.landslide"),
  volcano: () => t("act.hazard.volcano"),
  tsunami: () => t("act.hazard.tsunami"),
  "oil-spill": () => t("act.hazard.oilSpill"),
  other: () => t("act.hazard.other"),
};
const STATE_NAMES = {
  requested: () => t("act.state.requested"),
  approved: () => t("act.state.approved"),
  rejected: () => t("act.state.rejected"),
  active: () => t("act.state.active"),
  closed: () => t("act.state.closed"),
};
const COLUMNS = {
  title: () => t("act.col.title"),
  hazard: () => t("act.col.hazard"),
  member: () => t("act.col.member"),
  event: () => t("act.col.event"),
  state: () => t("act.col.state"),
  actions: () => t("act.col.actions"),
  rank: () => t("act.col.rank"),
  scene: () => t("act.col.scene"),
  phase: () => t("act.col.phase"),
  coverage: () => t("act.col.coverage"),
  score: () => t("act.col.score"),
  time: () => t("act.col.time"),
  satellite: () => t("act.col.satellite"),
  offNadir: () => t("act.col.offNadir"),
  light: () => t("act.col.light"),
  orbit: () => t("act.col.orbit"),
};
const VERBS = { approve: () => t("act.queue.approve"), reject: () => t("act.queue.reject") };

function hazardName(h) {
  return (HAZARD_NAMES[h] || HAZARD_NAMES.other)();
}

function stateName(s) {
  return STATE_NAMES[s] ? STATE_NAMES[s]() : s;
}

function headRow(names) {
  return el("thead", {}, el("tr", {}, names.map((k) => el("th", { scope: "col" }, COLUMNS[k]()))));
}

// ---- the request form -------------------------------------------------------------

function requestForm() {
  const status = el("div", { "aria-live": "polite" });
  const area = el("textarea", { id: "act-area", name: "area", spellcheck: "false" });
  const file = el("input", { id: "act-file", type: "file", accept: ".geojson,.json,.kml,.gpkg,.zip" });
  file.addEventListener("change", async () => {
    const chosen = file.files?.[0];
    if (!chosen) return;
    status.replaceChildren();
    try {
      const body = await chosen.arrayBuffer();
      const response = await fetch(api.url(`activations/area?filename=${encodeURIComponent(chosen.name)}`), {
        method: "POST",
        credentials: "same-origin",
        headers: { ...api.authHeaders(), "X-Requested-With": "eoshare-ui" },
        body,
      });
      if (!response.ok) throw await api.problemOf(response);
      area.value = JSON.stringify((await response.json()).area);
    } catch (error) {
      status.replaceChildren(problem(error));
    }
  });
  const hazard = el("select", { id: "act-hazard", name: "hazard" },
    HAZARDS.map((h) => el("option", { value: h }, hazardName(h))));
  const when = el("input", { id: "act-event", name: "event_time", type: "datetime-local", required: true });
  const title = el("input", { id: "act-title", name: "title", type: "text" });
  const description = el("textarea", { id: "act-description", name: "description" });
  const contacts = el("input", { id: "act-contacts", name: "contacts", type: "text" });
  // operators request on a member's behalf; focal points always for their own member
  const member = el("input", { id: "act-member", name: "member", type: "text", autocomplete: "off" });
  const memberField = isOperator()
    ? [el("label", { for: "act-member" }, t("act.form.member")), member]
    : [];
  const form = el("form", { id: "act-request", novalidate: true },
    memberField,
    el("label", { for: "act-hazard" }, t("act.form.hazard")), hazard,
    el("label", { for: "act-title" }, t("act.form.title")), title,
    el("label", { for: "act-event" }, t("act.form.eventTime")), when,
    el("label", { for: "act-area" }, t("act.form.area")), area,
    el("p", { class: "help" }, t("act.form.areaHelp")),
    el("label", { for: "act-file" }, t("act.form.file")), file,
    el("label", { for: "act-description" }, t("act.form.description")), description,
    el("label", { for: "act-contacts" }, t("act.form.contacts")), contacts,
    el("p", {}, el("button", { type: "submit", class: "button" }, t("act.form.submit"))),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    let parsed;
    try {
      parsed = JSON.parse(area.value);
    } catch {
      status.replaceChildren(problem({ detail: t("act.form.areaInvalid") }));
      return;
    }
    const body = {
      hazard: hazard.value,
      title: title.value || undefined,
      member: member.value.trim() || undefined,
      // datetime-local gives "YYYY-MM-DDTHH:MM" (or with seconds): read as UTC
      event_time: when.value ? `${when.value}${when.value.length === 16 ? ":00" : ""}Z` : undefined,
      area: parsed,
      description: description.value,
      contacts: contacts.value.split(",").map((c) => c.trim()).filter(Boolean),
    };
    try {
      const doc = await api.request(api.url("activations"), { method: "POST", body });
      window.location.hash = doc.id;
    } catch (error) {
      status.replaceChildren(problem(error));
    }
  });
  return el("section", { "aria-labelledby": "act-form-title" },
    el("h2", { id: "act-form-title" }, t("act.form.heading")),
    el("p", {}, t("act.form.intro")),
    form);
}

// ---- the list (the operators' queue) ------------------------------------------------

async function decide(id, verb) {
  const body = verb === "reject" ? { reason: window.prompt(t("act.queue.reasonPrompt")) || "" } : {};
  await api.request(api.url(`activations/${encodeURIComponent(id)}/${verb}`), { method: "POST", body });
}

async function listSection() {
  const section = el("section", { "aria-labelledby": "act-list-title" },
    el("h2", { id: "act-list-title" }, isOperator() ? t("act.queue.headingOperator") : t("act.queue.heading")));
  let docs = [];
  try {
    docs = (await api.request(api.url("activations"))).activations;
  } catch (error) {
    section.append(problem(error));
    return section;
  }
  if (!docs.length) {
    section.append(el("p", {}, t("act.queue.empty")));
    return section;
  }
  const rows = docs.map((a) => {
    const actions = el("td", { class: "act-actions" });
    if (isOperator() && a.state === "requested") {
      for (const verb of ["approve", "reject"]) {
        actions.append(el("button", {
          type: "button", class: "button secondary",
          onclick: async () => {
            try {
              await decide(a.id, verb);
              await render();
            } catch (error) {
              actions.append(problem(error));
            }
          },
        }, VERBS[verb]()));
      }
    }
    return el("tr", {},
      el("td", {}, el("a", { href: `#${a.id}` }, a.title)),
      el("td", {}, hazardName(a.hazard)),
      el("td", {}, a.member),
      el("td", {}, formatDateTime(a.event_time)),
      el("td", { class: "act-state" }, stateName(a.state)),
      actions);
  });
  section.append(el("table", {},
    headRow(["title", "hazard", "member", "event", "state", "actions"]),
    el("tbody", {}, rows)));
  return section;
}

// ---- one activation -----------------------------------------------------------------

async function detail(id) {
  const main = el("div");
  let doc;
  try {
    doc = await api.request(api.url(`activations/${encodeURIComponent(id)}`));
  } catch (error) {
    main.append(problem(error));
    return main;
  }
  const grant = doc.grant.live
    ? el("span", { class: "act-live" }, t("act.detail.grantLive"))
    : el("span", {}, t("act.detail.grantOff"));
  const facts = el("dl", {},
    el("dt", {}, t("act.col.state")), el("dd", { class: "act-state" }, stateName(doc.state)),
    el("dt", {}, t("act.col.hazard")), el("dd", {}, hazardName(doc.hazard)),
    el("dt", {}, t("act.col.member")), el("dd", {}, doc.member),
    el("dt", {}, t("act.col.event")), el("dd", {}, formatDateTime(doc.event_time)),
    el("dt", {}, t("act.detail.window")),
    el("dd", {}, t("act.detail.windowValue", {
      start: formatDateTime(doc.window.start), end: formatDateTime(doc.window.end),
    })),
    el("dt", {}, t("act.detail.grant")), el("dd", {}, grant),
    el("dt", {}, t("act.form.description")), el("dd", {}, doc.description),
  );
  const log = el("ol", {}, doc.transitions.map((x) =>
    el("li", {}, t("act.detail.transition", {
      at: formatDateTime(x.at), who: x.who, to: x.to === "responder" ? t("act.detail.responder") : stateName(x.to),
    }), x.note ? ` — ${x.note}` : "")));
  main.append(
    el("p", {}, el("a", { href: "#" }, t("act.detail.back"))),
    el("h2", {}, doc.title),
    facts,
    el("h3", {}, t("act.detail.log")),
    log,
  );
  if (isOperator() && ["approved", "active"].includes(doc.state)) {
    main.append(el("p", {}, el("button", {
      type: "button", class: "button",
      onclick: async () => {
        await decide(doc.id, "close");
        await render();
      },
    }, t("act.detail.close"))));
  }
  const archive = el("section", {}, el("h3", {}, t("act.detail.archive")));
  const passes = el("section", {}, el("h3", {}, t("act.detail.passes")));
  const summary = el("section", {}, el("h3", {}, t("act.detail.summary")));
  main.append(archive, passes, summary);
  api.request(api.url(`activations/${encodeURIComponent(id)}/archive`)).then((fc) => {
    if (!fc.features.length) {
      archive.append(el("p", {}, t("act.detail.archiveEmpty")));
      return;
    }
    archive.append(el("table", {},
      headRow(["rank", "scene", "phase", "coverage", "score"]),
      el("tbody", {}, fc.features.slice(0, 50).map((f) => {
        const p = f.properties;
        return el("tr", {},
          el("td", {}, String(p["eoshare:rank"])),
          el("td", {}, el("a", { href: `./#/item/${encodeURIComponent(f.collection)}/${encodeURIComponent(f.id)}` }, f.id)),
          el("td", {}, p["eoshare:phase"] === "post" ? t("act.detail.post") : t("act.detail.pre")),
          el("td", {}, `${Math.round(p["eoshare:coverage"] * 100)} %`),
          el("td", {}, p["eoshare:score"].toFixed(3)));
      }))));
  }).catch((error) => archive.append(problem(error)));
  api.request(api.url(`activations/${encodeURIComponent(id)}/passes?hours=72`)).then((plan) => {
    for (const w of plan.warnings) passes.append(el("p", { class: "help" }, w));
    if (!plan.passes.length) {
      passes.append(el("p", {}, t("act.detail.passesEmpty")));
      return;
    }
    passes.append(el("table", {},
      headRow(["time", "satellite", "offNadir", "coverage", "light", "orbit"]),
      el("tbody", {}, plan.passes.map((p) => el("tr", {},
        el("td", {}, formatDateTime(p.time)),
        el("td", {}, `${p.satellite} (${p.platform})`),
        el("td", {}, `${p.off_nadir_deg.toFixed(1)}°`),
        el("td", {}, `${Math.round(p.coverage * 100)} %`),
        el("td", {}, p.daylight ? t("act.detail.day") : t("act.detail.night")),
        el("td", {}, p.orbit_state === "ascending" ? t("act.detail.ascending") : t("act.detail.descending")))))));
  }).catch((error) => passes.append(problem(error)));
  api.request(api.url(`activations/${encodeURIComponent(id)}/summary`)).then((s) => {
    summary.append(el("p", {}, t("act.detail.delivered", {
      scenes: s.scenes_delivered.length, bytes: formatBytes(s.bytes),
    })));
    if (s.bytes_by_member.length) {
      summary.append(el("ul", {}, s.bytes_by_member.map((m) =>
        el("li", {}, t("act.detail.byMember", { member: m.member, bytes: formatBytes(m.bytes) })))));
    }
    for (const p of s.products || []) {
      const box = el("div", { class: "product" }, el("h4", {}, t("act.detail.products")));
      summary.append(box);
      const itemUrl = api.url(`collections/${encodeURIComponent(p.collection)}/items/${encodeURIComponent(p.item)}`);
      api.request(`${itemUrl}?sign=true`).then((item) => {
        const assets = item.assets || {};
        if (assets.map) {
          box.append(el("img", { src: assets.map.href, alt: item.properties.title, width: "600" }));
          box.append(el("p", {}, el("a", { href: assets.map.href }, t("act.detail.map"))));
        }
        if (assets.report) {
          box.append(el("p", {}, el("a", { href: assets.report.href }, t("act.detail.report"))));
        }
      }).catch((error) => box.append(problem(error)));
    }
  }).catch((error) => summary.append(problem(error)));
  return main;
}

// ---- the page ------------------------------------------------------------------------

async function render() {
  const main = $("#act-main");
  document.title = `${t("act.page.title")} · ${t("app.title")}`;
  const id = decodeURIComponent(window.location.hash.slice(1));
  const parts = [el("h1", {}, t("act.page.title"))];
  if (!state.me?.user) {
    parts.push(el("p", {}, t("act.page.signInFirst")));
    main.replaceChildren(...parts);
    return;
  }
  if (id) {
    parts.push(await detail(id));
  } else {
    if (isOperator() || state.me?.roles?.includes("emergency-focal-point")) parts.push(requestForm());
    parts.push(await listSection());
  }
  main.replaceChildren(...parts);
}

/** "Signed in as …" or "Not signed in": this page is also for emergency focal points. */
function who(me) {
  return me?.user ? t("act.page.signedIn", { user: me.user }) : t("act.page.signedOut");
}

async function start() {
  state.me = await startPage({ prefix: "act", who, render });
  window.addEventListener("hashchange", render);
  await render();
}

start();
