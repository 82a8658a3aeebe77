"""The parts of federation that need no server: signatures, the merge and its paging
token, scene de-duplication, the peers registry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eoshare.catalog.base import SearchQuery
from eoshare.errors import ConflictError, InvalidRequestError, NotAuthenticatedError
from eoshare.federation.fanout import (
    LOCAL,
    FederatedSearch,
    SourceAnswer,
    decode_cursors,
    same_scene,
)
from eoshare.federation.identity import NodeIdentity, load_or_create_identity
from eoshare.federation.peers import Peer, PeerRegistry
from eoshare.federation.signatures import SignatureVerifier, sign_request

JSON = dict[str, Any]


def item(iid: str, minute: int, platform: str = "sentinel-2a", x: float = 0.0) -> JSON:
    return {
        "id": iid,
        "collection": "c",
        "bbox": [x, 0.0, x + 1, 1.0],
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x, 0], [x + 1, 0], [x + 1, 1], [x, 1], [x, 0]]],
        },
        "properties": {"datetime": f"2024-01-01T00:{minute:02d}:00Z", "platform": platform},
    }


def hub(tmp_path: Path) -> FederatedSearch:
    identity = NodeIdentity(Ed25519PrivateKey.generate(), "hub")
    return FederatedSearch(identity, PeerRegistry(tmp_path / "f.db"), deadline_s=1.0)


def test_merge_orders_stops_early_and_resumes(tmp_path: Path) -> None:
    fs = hub(tmp_path)
    local = SourceAnswer(
        LOCAL, "ok", items=[item("l1", 50, x=10), item("l2", 10, x=20)], more=False,
        start={"o": 0}, number_matched=2,
    )  # fmt: skip
    peer = SourceAnswer(
        "p", "ok", items=[item("p1", 40, x=30), item("p2", 30, x=40)], more=True,
        start={"t": None, "k": 0}, next_token="T2", number_matched=9,
    )  # fmt: skip
    page = fs._merge(SearchQuery(limit=3), {}, {LOCAL: local, "p": peer}, 3)
    # newest first; stops after p2: p's answer is used up but p has more
    assert [m.item["id"] for m in page.items] == ["l1", "p1", "p2"]
    cursors = decode_cursors(page.next_token)
    assert cursors == {LOCAL: {"o": 1}, "p": {"t": "T2", "k": 0}}
    assert page.number_matched == 11


def test_merge_keeps_failed_peers_and_drops_the_count(tmp_path: Path) -> None:
    fs = hub(tmp_path)
    local = SourceAnswer(LOCAL, "ok", items=[item("l1", 5)], start={"o": 0}, number_matched=1)
    slow = SourceAnswer("slow", "timeout", detail="late")
    page = fs._merge(SearchQuery(limit=10), {}, {LOCAL: local, "slow": slow}, 10)
    assert page.missing == ["slow"]
    assert page.number_matched is None
    assert page.next_token is None  # a failing peer alone makes no endless chain of pages


def test_same_scene() -> None:
    a, b = item("a", 5), item("b", 5)
    assert same_scene(a, b)
    assert not same_scene(a, item("c", 6))
    assert not same_scene(a, item("d", 5, platform="landsat-8"))
    assert not same_scene(a, item("e", 5, x=50))


def test_bad_token_is_a_400() -> None:
    with pytest.raises(InvalidRequestError):
        decode_cursors("b2Zmc2V0")
    with pytest.raises(InvalidRequestError):
        decode_cursors("fed1.!!!")


def test_signature_window_and_replay(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path / "k.pem", name="a", member=None)
    # the key is kept: a second start reads the same one
    assert load_or_create_identity(tmp_path / "k.pem", name="a", member=None).fingerprint == (
        ident.fingerprint
    )
    raw = ident.public_raw
    verifier = SignatureVerifier(lambda kid: raw if kid == ident.fingerprint else None)
    now = time.time()
    req = {"method": "GET", "authority": "h:1", "path": "/search", "query": "a=1"}
    headers = sign_request(ident, headers={}, now=now, **req)
    verifier.verify(headers=headers, now=now, **req)
    with pytest.raises(NotAuthenticatedError, match="replay"):
        verifier.verify(headers=headers, now=now, **req)
    for skew in (-600, 600):
        old = sign_request(ident, headers={}, now=now + skew, **req)
        with pytest.raises(NotAuthenticatedError, match="clock"):
            verifier.verify(headers=old, now=now, **req)
    other = sign_request(ident, headers={}, now=now, **req)
    with pytest.raises(NotAuthenticatedError, match="not valid"):
        verifier.verify(headers=other, now=now, **{**req, "query": "a=2"})


def test_registry(state_location: Any) -> None:
    reg = PeerRegistry(state_location("f.db"))
    reg.add(
        Peer(
            "beta",
            "http://b/",
            "eoshare",
            fingerprint="SHA256:x",
            trusted_members=frozenset({"vn"}),
        )
    )
    with pytest.raises(ConflictError):
        reg.add(Peer("beta", "http://c", "stac"))
    with pytest.raises(InvalidRequestError):
        reg.add(Peer("Bad Name", "http://d", "stac"))
    peer = reg.get("beta")
    assert peer.url == "http://b" and peer.trusts("vn") and not peer.trusts("bd")
    assert reg.by_fingerprint("SHA256:x") == peer
    reg.update("beta", trusted_members=frozenset({"*"}))
    assert reg.get("beta").trusts("bd")
    reg.set_cursor("beta", "c1", {"t": "2024", "ids": ["a"]})
    assert reg.cursor("beta", "c1") == {"t": "2024", "ids": ["a"]}
    reg.remove("beta")
    assert reg.cursor("beta", "c1") is None and reg.all() == []


def test_peers_whose_collections_or_extents_cannot_match_are_skipped(tmp_path: Path) -> None:
    from eoshare.access.base import ANONYMOUS, Principal
    from eoshare.federation.fanout import _can_match

    reg = PeerRegistry(tmp_path / "f.db")
    reg.add(Peer("asia", "http://asia", "stac", collections=("s2",), extents=((60, 0, 150, 50),)))
    peer = reg.get("asia")  # as stored and read back
    assert peer.extents == ((60.0, 0.0, 150.0, 50.0),)
    user = Principal(user="u", member="m", roles=frozenset({"analyst"}))

    def asks(caller: Principal = ANONYMOUS, **kw: Any) -> bool:
        return _can_match(peer, SearchQuery(**kw), caller)

    assert asks()
    assert asks(bbox=(100, 10, 101, 11)) and asks(collections=("s2", "other"))
    assert asks(collections=("asia.s2",))  # the hub's name of its collection
    assert not asks(collections=("other",))
    assert not asks(bbox=(-10, 40, 0, 50))  # Europe: outside every extent
    point = {"type": "Point", "coordinates": [-70.0, -30.0]}
    assert not asks(intersects=point)
    assert asks(intersects={"type": "Point", "coordinates": [120.0, 30.0]})
    assert asks(bbox=(170, -10, -170, 10))  # across the antimeridian: asked
    assert asks(user, bbox=(-10, 40, 0, 50))  # a signed-in caller may see more there
    reg.update("asia", extents=None)
    peer = reg.get("asia")
    assert peer.extents is None and asks(bbox=(-10, 40, 0, 50))  # unknown: asked


def test_a_stopping_node_waits_for_the_mirror_run_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's mirror loop runs in a worker thread, which a stop cannot cancel: the
    lifespan tells the run to stop and waits for it (to its next chunk) before closing the
    catalogue the run writes to, so that no mirror thread outlives the app."""
    import threading

    from fastapi.testclient import TestClient

    from eoshare.api.app import create_app
    from eoshare.federation.mirror import Mirrorer
    from eoshare.settings import Settings

    started = threading.Event()
    events: list[str] = []

    def slow_run_due(self: Mirrorer, instant: Any = None) -> list[Any]:
        started.set()
        self.stop.wait(20)  # a run stops at its next chunk once told
        time.sleep(0.3)  # that chunk
        events.append("run done")
        return []

    monkeypatch.setattr(Mirrorer, "run_due", slow_run_due)
    app = create_app(
        Settings(
            data_dir=tmp_path,
            catalog=f"sqlite:///{tmp_path / 'c.db'}",
            log_level="warning",
            federation={"mirror_interval_s": 60},  # type: ignore[arg-type]
        )
    )
    catalog = app.state.catalog
    close_catalog = catalog.close

    def close() -> None:
        events.append("catalog closed")
        close_catalog()

    catalog.close = close
    with TestClient(app):
        assert started.wait(30), "the mirror loop did not start"
    assert events == ["run done", "catalog closed"]
