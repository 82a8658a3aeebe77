"""Fan-out search: one ``/search`` page over this node and its peers.

For each page the hub asks every *source* — this node's catalogue and each enabled peer
whose collections can match — for the next ``limit`` items after its cursor, in
parallel, with one deadline. It then merges the answers in the requested order (k-way:
it stops when it has ``limit`` items, or when a source's answer is used up before the
source is, because that source's next item might sort earlier), de-duplicates, and
makes one paging token that holds every source's cursor:

* this node: an offset;
* a peer: the peer's own paging token for the page last asked (``t``) and how many of
  that page's items were already shown (``k``), so any STAC API can be resumed.

De-duplication: an item that comes twice from one origin (a live answer and a harvested
copy) is shown once; the same scene held by two providers (same ``platform``, same
acquisition second, overlapping footprints) is shown once, with both sources in
``federation:sources``.

``numberMatched`` is the sum of the sources' counts when every source was asked and
counted and no scene was merged on this page; otherwise it is left out (never wrong).

Peers that failed or were slow are listed in the result (``missing``); their cursor is
kept, so the next page asks them again from where they were.

Security: peers are asked on behalf of the caller (``trust``); each peer decides with its
own agreements, so the hub never shows a peer's item that the caller could not get from
that peer directly. This node's own items are filtered by this node's access module,
as for a local search.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx

from eoshare.access.base import Principal
from eoshare.catalog.base import ItemPage, SearchQuery, SortField
from eoshare.errors import InvalidRequestError, NotFoundError, UpstreamError
from eoshare.federation.client import auth_for, json_of, upstream
from eoshare.federation.identity import NodeIdentity
from eoshare.federation.peers import Peer, PeerRegistry
from eoshare.federation.trust import encode_on_behalf_of

JSON = dict[str, Any]
LOCAL = "local"
TOKEN_PREFIX = "fed1."
Status = Literal["ok", "timeout", "error", "skipped", "done"]
_TIME_FIELDS = {"datetime", "start_datetime", "end_datetime", "created", "updated"}


# --- the composite paging token ----------------------------------------------------------
def encode_cursors(cursors: dict[str, Any]) -> str:
    raw = json.dumps(cursors, separators=(",", ":"), sort_keys=True).encode()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursors(token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    if not token.startswith(TOKEN_PREFIX):
        raise InvalidRequestError("the paging token is not valid; follow the 'next' link")
    text = token[len(TOKEN_PREFIX) :]
    try:
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise InvalidRequestError("the paging token is not valid; follow the 'next' link") from exc
    if not isinstance(doc, dict) or not all(
        isinstance(name, str) and _valid_cursor(cur) for name, cur in doc.items()
    ):
        # a client wrote it: its numbers reach SQL (OFFSET) and arithmetic, so only the
        # shapes encode_cursors makes, with bounded numbers, are read
        raise InvalidRequestError("the paging token is not valid; follow the 'next' link")
    return doc


_MAX_CURSOR_OFFSET = 1_000_000_000
_MAX_PEER_TOKEN_CHARS = 4096


def _bounded_int(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_CURSOR_OFFSET
    )


def _valid_cursor(cur: Any) -> bool:
    """``"done"``, ``{"o": offset}`` (this node) or ``{"t": peer token, "k": skip}``."""
    if cur == "done":
        return True
    if not isinstance(cur, dict):
        return False
    if set(cur) == {"o"}:
        return _bounded_int(cur["o"])
    if set(cur) == {"t", "k"}:
        token = cur["t"]
        ok_token = token is None or (isinstance(token, str) and len(token) <= _MAX_PEER_TOKEN_CHARS)
        return ok_token and _bounded_int(cur["k"])
    return not cur  # {}: start from the beginning


# --- the query sent to peers -------------------------------------------------------------
def _iso(dt: datetime | None) -> str:
    return ".." if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def body_from_query(query: SearchQuery) -> JSON:
    """A STAC API POST /search body that asks a peer what ``query`` asks here."""
    body: JSON = {}
    if query.collections:
        body["collections"] = list(query.collections)
    if query.ids:
        body["ids"] = list(query.ids)
    if query.bbox is not None:
        body["bbox"] = list(query.bbox)
    if query.intersects is not None:
        body["intersects"] = query.intersects
    if query.datetime_start is not None or query.datetime_end is not None:
        if query.datetime_start is not None and query.datetime_start == query.datetime_end:
            body["datetime"] = _iso(query.datetime_start)
        else:
            body["datetime"] = f"{_iso(query.datetime_start)}/{_iso(query.datetime_end)}"
    if query.filter is not None:
        body["filter"] = query.filter
        body["filter-lang"] = "cql2-json"
    if query.query is not None:
        body["query"] = query.query
    if query.q:
        body["q"] = list(query.q)
    if query.sortby:
        body["sortby"] = [
            {"field": s.field, "direction": "asc" if s.ascending else "desc"} for s in query.sortby
        ]
    return body


# --- ordering and de-duplication ---------------------------------------------------------
def _value(item: JSON, name: str) -> Any:
    name = name.removeprefix("properties.")
    if name in ("id", "collection"):
        value = item.get(name)
    else:
        props = item.get("properties") or {}
        value = props.get(name)
        if name == "datetime" and value is None:
            value = props.get("start_datetime")
    if name in _TIME_FIELDS and isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return value
    return value


def _compare(a: Any, b: Any) -> int:
    if a == b:
        return 0
    if a is None:  # as SQLite: NULL sorts first ascending
        return -1
    if b is None:
        return 1
    try:
        return -1 if a < b else 1
    except TypeError:
        return -1 if str(a) < str(b) else 1


def sort_key(sortby: tuple[SortField, ...]) -> Callable[[JSON], Any]:
    terms = sortby or (SortField("datetime", ascending=False),)

    def cmp(a: JSON, b: JSON) -> int:
        for term in terms:
            c = _compare(_value(a, term.field), _value(b, term.field))
            if c:
                return c if term.ascending else -c
        return 0

    return functools.cmp_to_key(cmp)


def origin_of(item: JSON, source: str) -> tuple[str, str, str]:
    """(origin node, collection at the origin, id): harvested copies keep their origin."""
    props = item.get("properties") or {}
    origin = props.get("federation:origin")
    if isinstance(origin, str):
        coll = props.get("federation:origin_collection", item.get("collection"))
        return origin, str(coll), str(item.get("id"))
    return source, str(item.get("collection")), str(item.get("id"))


def _bbox(item: JSON) -> tuple[float, ...] | None:
    b = item.get("bbox")
    if isinstance(b, list) and len(b) >= 4 and all(isinstance(v, int | float) for v in b):
        if len(b) == 6:
            return (b[0], b[1], b[3], b[4])
        return tuple(b[:4])
    return None


def same_scene(a: JSON, b: JSON) -> bool:
    """Same platform, same acquisition second and overlapping footprints."""
    pa, pb = a.get("properties") or {}, b.get("properties") or {}
    platform = pa.get("platform")
    if not isinstance(platform, str) or platform.lower() != str(pb.get("platform", "")).lower():
        return False
    ta, tb = _value(a, "datetime"), _value(b, "datetime")
    if not isinstance(ta, float) or not isinstance(tb, float) or abs(ta - tb) >= 1.0:
        return False
    ba, bb = _bbox(a), _bbox(b)
    if ba is None or bb is None:
        return False
    if not (ba[0] <= bb[2] and bb[0] <= ba[2] and ba[1] <= bb[3] and bb[1] <= ba[3]):
        return False
    try:
        from shapely.geometry import shape

        return bool(shape(a["geometry"]).intersects(shape(b["geometry"])))
    except (KeyError, TypeError, ValueError, AttributeError):
        return True  # the boxes overlap and the geometries cannot be read


# --- one source's answer -----------------------------------------------------------------
@dataclass
class SourceAnswer:
    name: str
    status: Status
    items: list[JSON] = field(default_factory=list)
    number_matched: int | None = None
    # whether the source has more items after ``items``
    more: bool = False
    # the cursor that fetched ``items`` and what resumes after them
    start: Any = None
    next_token: str | None = None
    detail: str | None = None
    elapsed_ms: float = 0.0


@dataclass
class MergedItem:
    source: str
    item: JSON
    # the same scene or record from other sources: (source, item)
    also: list[tuple[str, JSON]] = field(default_factory=list)


@dataclass
class FederatedPage:
    items: list[MergedItem]
    number_matched: int | None
    next_token: str | None
    answers: dict[str, SourceAnswer]

    @property
    def missing(self) -> list[str]:
        return sorted(n for n, a in self.answers.items() if a.status in ("timeout", "error"))

    def report(self) -> JSON:
        return {
            name: {
                "status": a.status,
                **({"detail": a.detail} if a.detail else {}),
                **({"ms": round(a.elapsed_ms, 1)} if a.status != "skipped" else {}),
            }
            for name, a in sorted(self.answers.items())
        }


def next_token_of(doc: JSON) -> str | None:
    for link in doc.get("links") or []:
        if not isinstance(link, dict) or link.get("rel") != "next":
            continue
        body = link.get("body")
        if isinstance(body, dict) and isinstance(body.get("token"), str):
            return str(body["token"])
        href = link.get("href")
        if isinstance(href, str):
            values = parse_qs(urlsplit(href).query).get("token")
            if values:
                return values[0]
    return None


def peer_collection_ids(peer: Peer, collections: Any) -> list[str]:
    """The ids a peer knows for collections named here: ``<peer>.<id>`` is its ``<id>``."""
    prefix = peer.name + "."
    return [
        c[len(prefix) :] if isinstance(c, str) and c.startswith(prefix) else c
        for c in collections or ()
    ]


def mark_peer_item(item: JSON, peer: str) -> None:
    """Where a peer's item comes from (``federation:origin``) and through which peer."""
    props = item.setdefault("properties", {})
    if isinstance(props, dict):
        props.setdefault("federation:origin", peer)
        props["federation:via"] = peer


def _can_match(peer: Peer, query: SearchQuery, caller: Principal) -> bool:
    """Whether a peer may hold what the query asks: its collections and their extents.
    ``peer.collections`` and ``peer.extents`` are what the peer showed this node asking
    as itself (the public view): a signed-in caller may see more there, so only the
    public's searches are narrowed by them."""
    if not caller.anonymous:
        return True
    wanted = set(peer_collection_ids(peer, query.collections or ()))
    if wanted and peer.collections is not None and not wanted & set(peer.collections):
        return False
    box = _query_box(query)
    if box is not None and peer.extents is not None:
        return any(_boxes_meet(box, extent) for extent in peer.extents)
    return True


def _query_box(query: SearchQuery) -> tuple[float, float, float, float] | None:
    if query.bbox is not None:
        b = list(query.bbox)
        return (b[0], b[1], b[3], b[4]) if len(b) == 6 else (b[0], b[1], b[2], b[3])
    if query.intersects is not None:
        try:
            from shapely.geometry import shape

            w, s, e, n = shape(query.intersects).bounds
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return (w, s, e, n)
    return None


def _boxes_meet(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether two boxes overlap; a box crossing the antimeridian (west > east) is taken
    to meet everything (never skipped wrongly)."""
    if a[0] > a[2] or b[0] > b[2]:
        return True
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class FederatedSearch:
    """The hub side of federation. Built once in ``create_app``; asked by /search when
    the node has enabled peers (``active``)."""

    def __init__(
        self,
        identity: NodeIdentity,
        registry: PeerRegistry,
        *,
        deadline_s: float,
        cache_s: float = 2.0,
    ) -> None:
        self.identity = identity
        self.registry = registry
        self.deadline_s = deadline_s
        self.cache_s = cache_s
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        # one client (its connection pool and TLS context) for the life of the node:
        # making one per search costs tens of milliseconds
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self.deadline_s, limits=httpx.Limits(max_connections=200)
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def active(self) -> list[Peer]:
        return [p for p in self.registry.cached(self.cache_s) if p.enabled]

    async def _ask_peer(
        self,
        client: httpx.AsyncClient,
        peer: Peer,
        body: JSON,
        cursor: JSON,
        limit: int,
        caller: Principal,
    ) -> SourceAnswer:
        skip = int(cursor.get("k", 0))
        start: JSON = {"t": cursor.get("t"), "k": skip}
        request = {**body, "limit": limit + skip}
        if "collections" in request:
            # the hub shows a peer's collection as "<peer>.<id>"
            request["collections"] = peer_collection_ids(peer, request["collections"])
        if start["t"]:
            request["token"] = start["t"]
        url = peer.url + "/search" + ("?sign=true" if peer.kind == "eoshare" else "")
        auth = auth_for(peer, self.identity, encode_on_behalf_of(caller))
        with upstream(peer.name):
            r = await client.post(url, json=request, auth=auth or httpx.USE_CLIENT_DEFAULT)
        doc = json_of(r, peer.name)
        features = doc.get("features")
        if not isinstance(features, list):
            raise UpstreamError(f"peer {peer.name!r} answered a search without features")
        items = [f for f in features if isinstance(f, dict) and "id" in f][skip:]
        for item in items:
            mark_peer_item(item, peer.name)
        matched = doc.get("numberMatched")
        next_token = next_token_of(doc)
        return SourceAnswer(
            peer.name,
            "ok",
            items=items,
            number_matched=matched if isinstance(matched, int) and not skip else None,
            more=next_token is not None,
            start=start,
            next_token=next_token,
        )

    async def fetch_json(
        self,
        peer: Peer,
        path: str,
        caller: Principal,
        *,
        query: str = "",
        what: str = "it",
    ) -> JSON:
        """GET ``path`` (already quoted) at a peer, on behalf of the caller (the peer
        decides what they may see), within the deadline. Raises NotFoundError when the
        peer hides or lacks it, UpstreamError on any failure."""
        params = "&".join(x for x in (query, "sign=true" if peer.kind == "eoshare" else "") if x)
        url = peer.url + path + (f"?{params}" if params else "")
        auth = auth_for(peer, self.identity, encode_on_behalf_of(caller))
        try:
            with anyio.fail_after(self.deadline_s), upstream(peer.name):
                r = await self._client().get(url, auth=auth or httpx.USE_CLIENT_DEFAULT)
        except TimeoutError as exc:
            raise UpstreamError(f"peer {peer.name!r} did not answer in time") from exc
        if r.status_code == 404:
            raise NotFoundError(f"{what} does not exist")
        return json_of(r, peer.name)

    async def fetch_item(
        self, peer: Peer, collection_id: str, item_id: str, caller: Principal
    ) -> JSON:
        """One item of a peer, asked on behalf of the caller. Called by the peer item
        routes; raises NotFoundError when the peer hides or lacks it."""
        from urllib.parse import quote

        doc = await self.fetch_json(
            peer,
            f"/collections/{quote(collection_id, safe='')}/items/{quote(item_id, safe='')}",
            caller,
            what=f"item {item_id!r} in {collection_id!r}",
        )
        mark_peer_item(doc, peer.name)
        return doc

    async def peers_collections(
        self, query: str, caller: Principal
    ) -> tuple[list[tuple[Peer, JSON]], dict[str, SourceAnswer]]:
        """Every active peer's collections (one page of up to 1000, with the caller's
        collection-search parameters), in parallel within the deadline."""
        found: list[tuple[Peer, JSON]] = []
        answers: dict[str, SourceAnswer] = {}
        until = time.monotonic() + self.deadline_s - min(0.1, self.deadline_s / 10)

        async def ask(peer: Peer) -> SourceAnswer:
            doc = await self.fetch_json(peer, "/collections", caller, query=query)
            docs = [c for c in doc.get("collections") or [] if isinstance(c, dict) and "id" in c]
            found.extend((peer, c) for c in docs)
            more = any(
                isinstance(x, dict) and x.get("rel") == "next" for x in doc.get("links") or []
            )
            return SourceAnswer(peer.name, "ok", more=more, number_matched=len(docs))

        async def run(peer: Peer) -> None:
            answers[peer.name] = await self._timed(peer.name, functools.partial(ask, peer), until)

        async with anyio.create_task_group() as tg:
            for peer in self.active():
                tg.start_soon(run, peer)
        found.sort(key=lambda pc: (pc[0].name, str(pc[1]["id"])))
        return found, answers

    async def _timed(
        self, name: str, call: Callable[[], Awaitable[SourceAnswer]], until: float
    ) -> SourceAnswer:
        started = time.perf_counter()
        try:
            with anyio.fail_after(max(until - time.monotonic(), 0.001)):
                answer = await call()
        except TimeoutError:
            answer = SourceAnswer(name, "timeout", detail=f"no answer within {self.deadline_s} s")
        except UpstreamError as exc:
            answer = SourceAnswer(name, "error", detail=exc.detail)
        answer.elapsed_ms = (time.perf_counter() - started) * 1000
        return answer

    async def search(
        self,
        query: SearchQuery,
        token: str | None,
        caller: Principal,
        local: Callable[[int, int], ItemPage],
    ) -> FederatedPage:
        """One merged page. ``local(offset, limit)`` searches this node's catalogue (with
        the caller's visibility filter already in); it runs in a worker thread."""
        cursors = decode_cursors(token)
        limit = query.limit
        peers = {p.name: p for p in self.active()}
        body = body_from_query(replace(query, limit=limit))
        answers: dict[str, SourceAnswer] = {}
        # what is left of the deadline after the peers is for merging and rendering
        until = time.monotonic() + self.deadline_s - min(0.1, self.deadline_s / 10)

        async def ask_local() -> SourceAnswer:
            offset = int(cursors.get(LOCAL, {}).get("o", 0))
            page = await anyio.to_thread.run_sync(local, offset, limit)
            return SourceAnswer(
                LOCAL,
                "ok",
                items=page.items,
                number_matched=page.number_matched if offset == 0 else None,
                more=page.next_offset is not None,
                start={"o": offset},
            )

        client = self._client()

        async def run(name: str, call: Callable[[], Awaitable[SourceAnswer]]) -> None:
            answers[name] = await self._timed(name, call, until)

        async with anyio.create_task_group() as tg:
            for name in [LOCAL, *peers]:
                cur = cursors.get(name, {})
                if cur == "done":
                    answers[name] = SourceAnswer(name, "done")
                    continue
                if name == LOCAL:
                    tg.start_soon(run, name, ask_local)
                    continue
                peer = peers[name]
                if not _can_match(peer, query, caller):
                    answers[name] = SourceAnswer(name, "skipped", detail="no such collection")
                    continue
                tg.start_soon(
                    run,
                    name,
                    functools.partial(self._ask_peer, client, peer, body, cur, limit, caller),
                )
        return self._merge(query, cursors, answers, limit)

    def _merge(
        self,
        query: SearchQuery,
        cursors: dict[str, Any],
        answers: dict[str, SourceAnswer],
        limit: int,
    ) -> FederatedPage:
        key = sort_key(query.sortby)
        # a fixed order (this node, then peers by name) decides ties, not who answered first
        order = sorted(answers, key=lambda n: (n != LOCAL, n))
        heads = {n: 0 for n in order if answers[n].status == "ok"}
        merged: list[MergedItem] = []
        by_origin: dict[tuple[str, str, str], MergedItem] = {}
        scene_merged = False
        while len(merged) < limit and heads:
            best: str | None = None
            for name in heads:
                a = answers[name]
                if heads[name] >= len(a.items):
                    continue
                if best is None or key(a.items[heads[name]]) < key(
                    answers[best].items[heads[best]]
                ):
                    best = name
            if best is None:
                break
            item = answers[best].items[heads[best]]
            heads[best] += 1
            origin = origin_of(item, best if best != LOCAL else self.identity.name)
            if origin in by_origin:
                by_origin[origin].also.append((best, item))
            else:
                twin = next((m for m in merged if same_scene(m.item, item)), None)
                if twin is not None:
                    twin.also.append((best, item))
                    scene_merged = True
                else:
                    entry = MergedItem(best, item)
                    merged.append(entry)
                    by_origin[origin] = entry
            # a source used up before it is: its next item might sort earlier than the
            # others' -- stop here, the next page goes on from every cursor
            if heads[best] >= len(answers[best].items) and answers[best].more:
                break

        next_cursors: dict[str, Any] = {}
        more = False
        for name, a in answers.items():
            if a.status == "done":
                next_cursors[name] = "done"
                continue
            if a.status != "ok":
                # kept: asked again from the same place on the next page, if there is one
                # (a peer that keeps failing must not make an endless chain of pages)
                next_cursors[name] = cursors.get(name, {})
                continue
            used = heads.get(name, 0)
            rest = len(a.items) - used
            if name == LOCAL:
                if rest == 0 and not a.more:
                    next_cursors[name] = "done"
                else:
                    next_cursors[name] = {"o": int(a.start["o"]) + used}
                    more = True
                continue
            if rest == 0 and not a.more:
                next_cursors[name] = "done"
            elif rest == 0:
                next_cursors[name] = {"t": a.next_token, "k": 0}
                more = True
            else:
                next_cursors[name] = {"t": a.start["t"], "k": int(a.start["k"]) + used}
                more = True
        counts = [a.number_matched for a in answers.values() if a.status != "skipped"]
        matched: int | None = None
        if (
            not cursors
            and not scene_merged
            and all(a.status in ("ok", "skipped") for a in answers.values())
            and all(c is not None for c in counts)
        ):
            matched = sum(c for c in counts if c is not None)
        return FederatedPage(
            items=merged,
            number_matched=matched,
            next_token=encode_cursors(next_cursors) if more else None,
            answers=answers,
        )
