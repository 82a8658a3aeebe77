// What the operator pages (dashboard.html, peers.html, activations.html) share: the top
// bar (brand, links to the other pages, the language menu, who is signed in), starting in
// the reader's language, asking the node who is calling, reading the operators' JSON, and
// the words for an error. Each page keeps only its own content.
//
// A page's HTML has an empty <header class="topbar" data-page="PREFIX"></header>; the bar
// is built here with the ids PREFIX-home, PREFIX-brand, PREFIX-nav, PREFIX-language and
// PREFIX-who. Text from the node is only ever set as text.

import * as api from "./api.js";
import { LANGUAGES, initialLanguage, setLanguage, t } from "./i18n.js";

export const $ = (selector) => document.querySelector(selector);

/** An element with attributes ("on…" adds a listener) and children (text stays text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The words of an error: the problem document's detail where there is one. */
export function errorText(error) {
  return error?.detail || error?.message || String(error);
}

/** GET an operators' route of the node (admin/…) as the signed-in caller. */
export function fetchAsOperator(path) {
  return api.getJSON(api.url(path));
}

/** "Signed in as …" or "Public user". */
export function whoWords(me) {
  return me && !me.anonymous && me.user
    ? t("auth.signedInAs", { user: me.user }) : t("auth.public");
}

function topbar(header, prefix, links) {
  const nav = links.length
    ? el("nav", { class: "views", id: `${prefix}-nav` },
      links.map((link) => el("a", { href: link.href, id: link.id })))
    : null;
  header.replaceChildren(
    el("a", { class: "brand", id: `${prefix}-home`, href: "./" },
      el("img", { src: "img/favicon.svg", alt: "", width: "28", height: "28" }),
      el("span", { id: `${prefix}-brand` })),
    nav,
    el("div", { class: "tools" },
      el("select", { id: `${prefix}-language`, name: "language" }),
      el("span", { id: `${prefix}-who`, class: "who", "aria-live": "polite" })),
  );
}

/**
 * Start an operator page: build its top bar, load the reader's language, fill the
 * language menu, ask who is calling. `links` are [{href, id, label: () => text}] to the
 * other pages; `who(me)` the words for the caller; `render()` runs after every change of
 * language. Resolves to the caller (GET /auth/me), or null.
 */
export async function startPage({ prefix, links = [], who = whoWords, render }) {
  const header = document.querySelector(`header.topbar[data-page="${prefix}"]`);
  topbar(header, prefix, links);
  const select = $(`#${prefix}-language`);
  let me = null;
  let asked = false; // who is calling: empty until the node has said
  const translateBar = () => {
    $(`#${prefix}-brand`).textContent = t("app.name");
    if (links.length) $(`#${prefix}-nav`).setAttribute("aria-label", t("nav.label"));
    for (const link of links) $(`#${link.id}`).textContent = link.label();
    if (asked) $(`#${prefix}-who`).textContent = who(me);
    select.setAttribute("aria-label", t("lang.label"));
  };
  await setLanguage(initialLanguage());
  translateBar();
  const names = {
    ar: t("lang.ar"), zh: t("lang.zh"), en: t("lang.en"), fr: t("lang.fr"), ru: t("lang.ru"),
    es: t("lang.es"),
  };
  for (const lang of LANGUAGES) select.append(el("option", { value: lang, lang }, names[lang]));
  select.value = document.documentElement.lang;
  select.addEventListener("change", async () => {
    await setLanguage(select.value);
    translateBar();
    await render();
  });
  try {
    me = await api.me();
  } catch {
    me = null;
  }
  asked = true;
  translateBar();
  return me;
}
