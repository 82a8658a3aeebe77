// The STAC API of this node, and the caller's credentials.
//
// The page lives at <root>/ui/ (its <base href>), so the API root is one level up. A
// token is kept in localStorage and sent as "Authorization: Bearer"; an account
// sign-in (POST /auth/login) sets an HTTP-only cookie that the browser sends itself.

export const apiRoot = new URL("../", document.baseURI);

const TOKEN_KEY = "eoshare.token";
const USER_KEY = "eoshare.user";

function storageGet(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

function storageSet(key, value) {
  try {
    if (value === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    // storage refused (private mode): the sign-in lasts for this page only
  }
}

let memoryToken = storageGet(TOKEN_KEY);

export function token() {
  return memoryToken;
}

export function signedInUser() {
  return storageGet(USER_KEY);
}

export function hasSession() {
  return signedInUser() !== null;
}

export function setToken(value) {
  memoryToken = value || null;
  storageSet(TOKEN_KEY, memoryToken);
  storageSet(USER_KEY, null);
}

export function authHeaders() {
  return memoryToken ? { Authorization: `Bearer ${memoryToken}` } : {};
}

/** An HTTP error with the problem document's detail (RFC 9457), when there is one. */
export class ApiError extends Error {
  constructor(status, detail, title) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.detail = detail || "";
    this.title = title || "";
  }
}

export async function problemOf(response) {
  let detail = "";
  let title = "";
  try {
    const body = await response.json();
    detail = body.detail || body.description || "";
    title = body.title || "";
  } catch {
    // not JSON: the status says enough
  }
  return new ApiError(response.status, detail, title);
}

export function url(path) {
  return new URL(path, apiRoot).href;
}

// Called when the node refuses the stored token (expired, revoked): it is dropped.
let onTokenRefused = () => {};

export function whenTokenRefused(callback) {
  onTokenRefused = callback;
}

export async function request(target, { method = "GET", body, headers = {}, onHeaders } = {}) {
  const send = () => {
    const init = {
      method,
      credentials: "same-origin",
      headers: {
        Accept: "application/geo+json, application/json",
        // marks the request as the UI's own (the node's CSRF check for cookie sessions)
        "X-Requested-With": "eoshare-ui",
        ...authHeaders(),
        ...headers,
      },
    };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    return fetch(target, init);
  };
  let response = await send();
  if (response.status === 401 && memoryToken) {
    setToken(null);
    onTokenRefused();
    response = await send();
  }
  if (!response.ok) throw await problemOf(response);
  if (onHeaders) onHeaders(response.headers);
  return response.status === 204 ? null : response.json();
}

/** Who the node thinks is calling (GET /auth/me), or null where it has no such route. */
export async function me() {
  try {
    return await request(url("auth/me"));
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) return null;
    throw error;
  }
}

export function getJSON(target) {
  return request(target);
}

/** Asset hrefs signed for the caller (?sign=true), so that a plain link can download
 * what the token allows: a link cannot carry an Authorization header. */
function signed(target) {
  if (!memoryToken) return target;
  const out = new URL(target);
  out.searchParams.set("sign", "true");
  return out.href;
}

// A hub names the peers that did not answer a search in its body (federation:missing)
// and in this header; the header stands in where the body lacks the list.
export const MISSING_HEADER = "Eoshare-Federation-Missing";

async function searchPage(target, init) {
  let missing = null;
  const page = await request(target, {
    ...init,
    onHeaders: (headers) => {
      missing = headers.get(MISSING_HEADER);
    },
  });
  if (page && missing && !Array.isArray(page["federation:missing"])) {
    page["federation:missing"] = missing.split(",").map((name) => name.trim()).filter(Boolean);
  }
  return page;
}

export function search(body) {
  return searchPage(signed(url("search")), { method: "POST", body });
}

/** Follow a "next" link: GET, or POST with the body it carries (STAC API paging). */
export function follow(link) {
  if ((link.method || "GET").toUpperCase() === "POST") {
    return searchPage(link.href, { method: "POST", body: link.body || {} });
  }
  return searchPage(link.href, {});
}

/** Every page of /collections: {collections, missing, peers}. A hub names the peers whose
 * collections are missing from its list (federation:missing, or the header) and how each
 * peer answered (federation:peers: {name: {status}}). */
export async function collections() {
  const out = { collections: [], missing: [], peers: {} };
  let next = url("collections?limit=100");
  while (next) {
    const page = await searchPage(next, {});
    out.collections.push(...(page.collections || []));
    for (const name of page["federation:missing"] || []) {
      if (!out.missing.includes(name)) out.missing.push(name);
    }
    const peers = page["federation:peers"];
    if (peers && typeof peers === "object") Object.assign(out.peers, peers);
    const link = (page.links || []).find((l) => l.rel === "next");
    next = link ? link.href : null;
  }
  return out;
}

export function item(collectionId, itemId) {
  return getJSON(
    signed(url(`collections/${encodeURIComponent(collectionId)}/items/${encodeURIComponent(itemId)}`)),
  );
}

/** One item of a peer node, asked through this node on the caller's behalf. */
export function peerItem(peer, collectionId, itemId) {
  const path = [peer, "collections", collectionId, "items", itemId].map(encodeURIComponent);
  return getJSON(signed(url(`federation/peers/${path.join("/")}`)));
}

/** Sign in with an account; resolves to "ok", or rejects with an ApiError
 * (status 404/405: this node has no account sign-in). */
export async function login(username, password) {
  const response = await fetch(url("auth/login"), {
    method: "POST",
    credentials: "same-origin",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/json",
      "X-Requested-With": "eoshare-ui",
    },
    body: JSON.stringify({ username, password }),
  });
  if (!response.ok) throw await problemOf(response);
  memoryToken = null;
  storageSet(TOKEN_KEY, null);
  let who = null;
  try {
    who = await response.json();
  } catch {
    who = null;
  }
  storageSet(USER_KEY, who?.user || username);
  return who;
}

export async function logout() {
  setToken(null);
  try {
    await fetch(url("auth/logout"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-Requested-With": "eoshare-ui" },
    });
  } catch {
    // the cookie expires by itself; nothing more to do offline
  }
}
