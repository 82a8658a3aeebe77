"""Talking to peers: an ``httpx.Auth`` that signs each request as this node (and says on
whose behalf), and small helpers to read a peer's identity and collections.

Errors from a peer are translated at this boundary: every transport failure, bad status
or unreadable body becomes ``UpstreamError`` naming the peer.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from eoshare.errors import UpstreamError
from eoshare.federation.identity import WELL_KNOWN_PATH, NodeIdentity
from eoshare.federation.peers import Peer
from eoshare.federation.signatures import ON_BEHALF_OF, sign_request

JSON = dict[str, Any]
# sent with a harvest's signed requests: items without the links the harvester derives
# itself (tiles); an eoshare peer honours it for signed requests only
RENDER_HEADER = "Eoshare-Render"


class NodeAuth(httpx.Auth):
    """Signs a request with this node's key (RFC 9421, see ``signatures``)."""

    requires_request_body = True

    def __init__(
        self, identity: NodeIdentity, on_behalf_of: str | None = None, ttl_s: int = 60
    ) -> None:
        self.identity = identity
        self.on_behalf_of = on_behalf_of
        self.ttl_s = ttl_s

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.on_behalf_of:
            request.headers[ON_BEHALF_OF] = self.on_behalf_of
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        signed = sign_request(
            self.identity,
            method=request.method,
            authority=request.url.netloc.decode("ascii"),
            path=path,
            query=query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.content,
            ttl_s=self.ttl_s,
            now=time.time(),
        )
        request.headers.update(signed)
        yield request


def auth_for(
    peer: Peer, identity: NodeIdentity | None, on_behalf_of: str | None = None
) -> httpx.Auth | None:
    """Signed for eoshare peers; nothing for a plain STAC API (read-only, anonymous)."""
    if peer.kind != "eoshare" or identity is None:
        return None
    return NodeAuth(identity, on_behalf_of)


@contextmanager
def upstream(peer_name: str) -> Iterator[None]:
    """Translate what can go wrong talking to a peer into ``UpstreamError``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamError(f"peer {peer_name!r} did not answer in time") from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"peer {peer_name!r} cannot be reached: {exc}") from exc
    except ValueError as exc:  # JSON decoding
        raise UpstreamError(f"peer {peer_name!r} answered something that is not JSON") from exc


def json_of(response: httpx.Response, peer_name: str) -> JSON:
    if response.status_code >= 400:
        detail = response.text[:200].replace("\n", " ")
        raise UpstreamError(f"peer {peer_name!r} answered HTTP {response.status_code}: {detail}")
    try:
        # orjson: a harvest page of 500 large items parses ~4x faster than with json
        doc = orjson.loads(response.content)
    except (orjson.JSONDecodeError, httpx.HTTPError) as exc:
        raise UpstreamError(f"peer {peer_name!r} answered something that is not JSON") from exc
    if not isinstance(doc, dict):
        raise UpstreamError(f"peer {peer_name!r} answered JSON that is not an object")
    return doc


@dataclass
class Timing:
    """What the first answer of a peer says about the link and the peer's clock (read by
    the health check): the round trip, and the peer's clock minus this node's. The clock
    comes from the ``time`` of an eoshare node's document (milliseconds), else from the
    ``Date`` header (whole seconds, which a server may also cache for a second)."""

    latency_ms: float | None = None
    clock_skew_s: float | None = None
    _middle: float | None = None  # this node's clock halfway through the first request

    def get(self, client: httpx.Client, url: str) -> httpx.Response:
        if self.latency_ms is not None:
            return client.get(url)
        wall, started = time.time(), time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        self.latency_ms = round(elapsed * 1000, 1)
        self._middle = wall + elapsed / 2
        try:
            date = parsedate_to_datetime(response.headers["date"]).timestamp()
        except (KeyError, TypeError, ValueError, IndexError):
            return response
        # a Date header is truncated to the second: +0.5 s is its middle
        self.clock_skew_s = round(date + 0.5 - self._middle, 1)
        return response

    def peer_time(self, value: Any) -> None:
        """The peer's own clock reading, sent in its answer to the first request."""
        if self._middle is None or not isinstance(value, str):
            return
        try:
            then = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return
        if then.tzinfo is not None:
            self.clock_skew_s = round(then.timestamp() - self._middle, 3)


def fetch_node_document(
    url: str, *, timeout_s: float = 10.0, timing: Timing | None = None
) -> JSON | None:
    """The peer's ``/.well-known/eoshare-node``, or None when it is not an eoshare node
    (a plain STAC API)."""
    with upstream(url), httpx.Client(timeout=timeout_s) as client:
        target = url.rstrip("/") + WELL_KNOWN_PATH
        r = timing.get(client, target) if timing is not None else client.get(target)
        if r.status_code == 404:
            return None
        doc = json_of(r, url)
    if doc.get("type") != "eoshare-node":
        return None
    if timing is not None:
        timing.peer_time(doc.get("time"))
    return doc


def collection_box(collection: JSON) -> tuple[float, float, float, float] | None:
    """A collection's overall 2D bounding box, or None when it cannot be read."""
    try:
        box = collection["extent"]["spatial"]["bbox"][0]
        if len(box) == 6:
            box = [box[0], box[1], box[3], box[4]]
        w, s, e, n = (float(v) for v in box)
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return (w, s, e, n)


def fetch_collection_ids(
    peer: Peer,
    identity: NodeIdentity | None,
    *,
    timeout_s: float = 10.0,
    timing: Timing | None = None,
    extents: list[tuple[float, float, float, float] | None] | None = None,
) -> list[str]:
    """The ids of the collections the peer shows this node (all pages); their overall
    bounding boxes are appended to ``extents`` when given (None where unreadable)."""
    ids: list[str] = []
    url: str | None = peer.url + "/collections"
    with (
        upstream(peer.name),
        httpx.Client(timeout=timeout_s, auth=auth_for(peer, identity)) as client,
    ):
        for _ in range(100):
            if url is None:
                break
            r = timing.get(client, url) if timing is not None else client.get(url)
            doc = json_of(r, peer.name)
            shown = [c for c in doc.get("collections", []) if isinstance(c, dict) and "id" in c]
            ids += [c["id"] for c in shown]
            if extents is not None:
                extents += [collection_box(c) for c in shown]
            url = next(
                (
                    link.get("href")
                    for link in doc.get("links", [])
                    if isinstance(link, dict) and link.get("rel") == "next"
                ),
                None,
            )
    return ids
