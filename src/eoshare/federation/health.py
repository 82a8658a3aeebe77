"""How a peer is doing, for ``eoshare peers check`` and the operators' peers page
(``GET /admin/peers``, ``/ui/peers.html``).

``check_peer`` is the one health check: it asks the peer who it is (is its key still the
one registered?) and which collections it shows this node, records the answer in the
registry (``status``, ``detail``, ``checked``) and measures the round trip and the
peer's clock against this node's (an eoshare node's document says its ``time`` to the
millisecond; a plain STAC API only its ``Date`` header, to about a second). Signatures
are refused beyond ``clock_skew_s``, so a large difference is worth an operator's look.

``peer_report`` adds what the registry knows of harvesting: the last run (when, how many
items), the age of the harvest cursors, and whether the peer's schedule makes a harvest
due now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eoshare.errors import UpstreamError
from eoshare.federation.client import Timing, fetch_collection_ids, fetch_node_document
from eoshare.federation.identity import NodeIdentity
from eoshare.federation.peers import Peer, PeerRegistry, now_iso

JSON = dict[str, Any]


@dataclass(frozen=True)
class PeerCheck:
    peer: Peer  # as recorded after the check
    latency_ms: float | None
    clock_skew_s: float | None

    @property
    def reachable(self) -> bool:
        # a peer whose key changed answered: it is reachable, and refused (disabled)
        return self.peer.status in ("ok", "key-changed")

    def to_dict(self) -> JSON:
        return {
            "reachable": self.reachable,
            "status": self.peer.status,
            "latency_ms": self.latency_ms,
            "clock_skew_s": self.clock_skew_s,
            "checked": self.peer.checked,
            "detail": self.peer.detail,
            "last_error": None if self.peer.status == "ok" else self.peer.detail,
        }


def check_peer(
    peer: Peer, identity: NodeIdentity, registry: PeerRegistry, *, timeout_s: float = 10.0
) -> PeerCheck:
    """Ask the peer who it is and what it holds; record the answer as its health."""
    timing = Timing()
    try:
        if peer.kind == "eoshare":
            doc = fetch_node_document(peer.url, timeout_s=timeout_s, timing=timing)
            if doc is None:
                raise UpstreamError("it no longer answers as an eoshare node")
            if doc.get("fingerprint") != peer.fingerprint:
                changed = registry.update(
                    peer.name,
                    checked=now_iso(),
                    status="key-changed",
                    detail=f"its key is now {doc.get('fingerprint')}; remove and add it again "
                    "once its operator confirms the change",
                    enabled=False,
                )
                return PeerCheck(changed, timing.latency_ms, timing.clock_skew_s)
        boxes: list[tuple[float, float, float, float] | None] = []
        ids = fetch_collection_ids(
            peer, identity, timeout_s=timeout_s, timing=timing, extents=boxes
        )
    except UpstreamError as exc:
        failed = registry.update(
            peer.name, checked=now_iso(), status="unreachable", detail=exc.detail
        )
        return PeerCheck(failed, None, None)
    ok = registry.update(
        peer.name,
        checked=now_iso(),
        status="ok",
        detail=f"{len(ids)} collection(s) visible to this node",
        collections=ids,
        # one unreadable extent makes them all unknown: the peer is then always asked
        extents=None if any(b is None for b in boxes) else boxes,
    )
    return PeerCheck(ok, timing.latency_ms, timing.clock_skew_s)


def _age_s(iso: str | None, now: datetime) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((now - then).total_seconds(), 1)


def harvest_lag(registry: PeerRegistry, peer: str, now: datetime | None = None) -> JSON:
    """The last harvest run of a peer and how old its cursors are."""
    now = now or datetime.now(UTC)
    last = registry.last_harvest(peer) or {}
    cursors = registry.harvest_cursors(peer)
    moved = max((c["updated"] for c in cursors), default=None)
    return {
        "started": last.get("started"),
        "finished": last.get("finished"),
        "items": last.get("items"),
        "deleted": last.get("deleted"),
        "detail": last.get("detail"),
        "since_finished_s": _age_s(last.get("finished"), now),
        "collections": len(cursors),
        "cursor_updated": moved,
        "cursor_age_s": _age_s(moved, now),
    }


def peer_report(check: PeerCheck, registry: PeerRegistry) -> JSON:
    """One peer as the operators' page shows it: who, trust, health, harvest lag and
    whether its scheduled harvest is due (``federation.schedule``)."""
    from eoshare.federation.schedule import is_due

    doc = check.peer.to_dict()
    doc["health"] = check.to_dict()
    doc["harvest"] = harvest_lag(registry, check.peer.name)
    doc["harvest"]["due"] = is_due(check.peer, doc["harvest"]["started"], time.time())
    return doc
