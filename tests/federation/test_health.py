"""The peers' health check (``eoshare peers check`` and ``GET /admin/peers``): round trip
and clock difference, a peer whose clock is 10 minutes off, a peer whose key changed,
and the harvest lag read from the registry.

The peer here is a small HTTP server in a thread whose clock (its ``Date`` header) is
set by the test; the check against real nodes is in ``tests/web/test_federation_ui.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eoshare.federation.client import Timing
from eoshare.federation.health import check_peer, harvest_lag
from eoshare.federation.identity import NodeIdentity
from eoshare.federation.peers import Peer, PeerRegistry

SKEW_S = 600.0


class FakePeer(BaseHTTPRequestHandler):
    """A peer whose clock runs ``skew`` seconds ahead, presenting ``fingerprint``."""

    skew = SKEW_S
    fingerprint = "SHA256:unchanged"

    def date_time_string(self, timestamp: float | None = None) -> str:
        return formatdate(time.time() + self.skew, usegmt=True)

    def do_GET(self) -> None:
        if self.path == "/.well-known/eoshare-node":
            body: dict[str, Any] = {
                "type": "eoshare-node",
                "fingerprint": self.fingerprint,
                # its clock to the millisecond (the Date header says whole seconds)
                "time": datetime.fromtimestamp(time.time() + self.skew, UTC).isoformat(),
            }
        elif self.path == "/collections":
            body = {"collections": [{"id": "c1"}, {"id": "c2"}], "links": []}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePeer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[PeerRegistry]:
    reg = PeerRegistry(tmp_path / "federation.db")
    yield reg
    reg.close()


IDENTITY = NodeIdentity(Ed25519PrivateKey.generate(), "hub", "vn-vnsc")


def test_timing_reads_the_first_answer_only() -> None:
    ahead = formatdate(time.time() + 90, usegmt=True)
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        date = ahead if len(calls) == 1 else formatdate(time.time() - 500, usegmt=True)
        return httpx.Response(200, headers={"Date": date}, json={})

    timing = Timing()
    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        timing.get(client, "http://peer/a")
        timing.get(client, "http://peer/b")
    assert calls == ["/a", "/b"]
    assert timing.latency_ms is not None and timing.latency_ms >= 0
    assert timing.clock_skew_s is not None and abs(timing.clock_skew_s - 90) <= 1.5
    # no Date header: the round trip is known, the clock is not
    bare = Timing()
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
        bare.get(client, "http://peer/")
    assert bare.latency_ms is not None and bare.clock_skew_s is None


def test_a_peer_ten_minutes_ahead(fake_peer: str, registry: PeerRegistry) -> None:
    peer = registry.add(Peer(name="ahead", url=fake_peer, kind="stac"))
    result = check_peer(peer, IDENTITY, registry, timeout_s=5)
    assert result.reachable and result.peer.status == "ok"
    assert result.peer.collections == ("c1", "c2")
    assert result.clock_skew_s is not None and abs(result.clock_skew_s - SKEW_S) <= 1.5
    assert result.latency_ms is not None and result.latency_ms > 0
    doc = result.to_dict()
    assert doc["last_error"] is None and doc["checked"] == result.peer.checked
    # recorded, as `eoshare peers check` records it
    assert registry.get("ahead").status == "ok"


def test_a_peer_whose_key_changed(fake_peer: str, registry: PeerRegistry) -> None:
    peer = registry.add(
        Peer(name="moved", url=fake_peer, kind="eoshare", fingerprint="SHA256:registered")
    )
    result = check_peer(peer, IDENTITY, registry, timeout_s=5)
    # it answers (reachable), under another key: disabled until its operator confirms
    assert result.reachable and result.peer.status == "key-changed"
    assert not result.peer.enabled
    assert "SHA256:unchanged" in (result.to_dict()["last_error"] or "")
    # read from its document's time, not the whole-second Date header
    assert result.clock_skew_s is not None and abs(result.clock_skew_s - SKEW_S) <= 0.25


def test_a_peer_that_does_not_answer(registry: PeerRegistry) -> None:
    from live import free_port

    peer = registry.add(Peer(name="gone", url=f"http://127.0.0.1:{free_port()}", kind="stac"))
    result = check_peer(peer, IDENTITY, registry, timeout_s=5)
    assert not result.reachable and result.peer.status == "unreachable"
    assert result.latency_ms is None and result.clock_skew_s is None
    assert "cannot be reached" in (result.to_dict()["last_error"] or "")


def test_harvest_lag(registry: PeerRegistry) -> None:
    registry.add(Peer(name="p", url="http://p.example", kind="stac"))
    empty = harvest_lag(registry, "p")
    assert empty["finished"] is None and empty["cursor_age_s"] is None
    assert empty["collections"] == 0
    registry.set_cursor("p", "c1", {"t": "2024-01-01T00:00:00Z", "ids": []})
    registry.record_harvest("p", started="2024-01-01T00:00:00Z", items=7, deleted=1, detail="")
    later = datetime.now(UTC) + timedelta(seconds=120)
    lag = harvest_lag(registry, "p", now=later)
    assert lag["items"] == 7 and lag["deleted"] == 1 and lag["collections"] == 1
    assert lag["since_finished_s"] is not None and 115 <= lag["since_finished_s"] <= 125
    assert lag["cursor_age_s"] is not None and 115 <= lag["cursor_age_s"] <= 125
    assert registry.harvest_cursors("p")[0]["collection"] == "c1"
