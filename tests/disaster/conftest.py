"""A real eoshare node for the disaster tests: ``create_app`` served by uvicorn in a thread
on 127.0.0.1 (so that the test holds the app and can inject a clock), with members, users,
one collection released to disasters and one not, real orbits loaded from
``../shared/data/tle``, and a webhook receiver on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.api.app import create_app
from eoshare.settings import Settings
from live import free_port

JSON = dict[str, Any]
AFFECTED = "ma-crts"  # the member hit by the disaster (the Sentinel-2 tile is in 29RKH)
PROVIDER = "ke-ssa"
RESPONDER = "bd-drs"
OUTSIDER = "vn-lsc"
RELEASED = "s2-released"  # disaster_release = true
CLOSED = "s2-closed"  # disaster_release = false
# the Sentinel-2 tile 29RKH (S2A, 2020-02-19): the "post-event" scene
SCENE_TIME = datetime(2020, 2, 19, 11, 21, 0, tzinfo=UTC)
EVENT_TIME = datetime(2020, 2, 18, 6, 0, tzinfo=UTC)
AREA: JSON = {
    "type": "Polygon",
    "coordinates": [[[-11.6, 24.6], [-11.2, 24.6], [-11.2, 25.0], [-11.6, 25.0], [-11.6, 24.6]]],
}


class Clock:
    """An injected clock: the policy, the activations and the alerts read it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Receiver:
    url: str
    received: queue.Queue[tuple[dict[str, str], bytes]] = field(default_factory=queue.Queue)


@dataclass
class Node:
    url: str
    app: Any
    clock: Clock
    tokens: dict[str, str]
    receiver: Receiver
    shared: Path

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, path: str, who: str | None = None, **kw: Any) -> httpx.Response:
        headers = self.h(who) if who else {}
        return httpx.get(self.url + path, headers=headers, timeout=30, **kw)

    def post(self, path: str, who: str, body: Any = None) -> httpx.Response:
        return httpx.post(self.url + path, headers=self.h(who), json=body, timeout=30)

    def post_search(self, who: str | None) -> httpx.Response:
        body = {"collections": [RELEASED, CLOSED], "limit": 100}
        return httpx.post(self.url + "/search", json=body, headers=self.h(who) if who else {},
                          timeout=30)  # fmt: skip


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    got: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.put(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", got)
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the in-process server did not start", pytrace=False)
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _setup_access(app: Any) -> dict[str, str]:
    store = app.state.access_services.store
    for code, country in ((AFFECTED, "MA"), (PROVIDER, "KE"), (RESPONDER, "BD"), (OUTSIDER, "VN")):
        store.put_member(Member(code, code, country), who="test")
    users = {
        "focal": (AFFECTED, ["emergency-focal-point"]),
        "analyst": (AFFECTED, ["analyst"]),
        "helper": (RESPONDER, ["analyst"]),
        "outsider": (OUTSIDER, ["analyst"]),
        "ops": (None, ["operator"]),
        "provider": (PROVIDER, ["provider-admin"]),
    }
    tokens = {}
    for name, (member, roles) in users.items():
        store.put_user(name, member=member, roles=roles, who="test")
        tokens[name] = store.create_token(name, who="test")[1]
    for cid, released in ((RELEASED, True), (CLOSED, False)):
        store.put_agreement(
            agreement_from_dict(
                {"collection": cid, "provider": PROVIDER, "access": "provider",
                 "disaster_release": released}
            ),
            who="test",
        )  # fmt: skip
    return tokens


def _collection(cid: str) -> JSON:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "description": f"Sentinel-2 test collection {cid}",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Node]:
    data_dir = tmp_path_factory.mktemp("disaster-node")
    settings = Settings(
        data_dir=data_dir,
        log_level="warning",
        access={"cookie_secure": False},
        disaster={"allow_private_webhooks": True, "webhook_backoff_s": 0.1,
                  "webhook_attempts": 3},
    )  # fmt: skip
    app = create_app(settings)
    tokens = _setup_access(app)
    for cid in (RELEASED, CLOSED):
        app.state.catalog.create_collection(_collection(cid))
    clock = Clock(EVENT_TIME + timedelta(hours=2))
    app.state.disaster.set_clock(clock)
    tle = shared_data / "tle" / "celestrak_resource_2024-10-05.tle"
    app.state.disaster.orbits.load(tle.read_bytes(), source=tle.name, now=clock())
    with receiver() as rec, serve(app) as url:
        yield Node(url, app, clock, tokens, rec, shared_data)


def json_of(r: httpx.Response) -> Any:
    assert r.headers["content-type"].startswith(("application/json", "application/geo+json")), (
        r.text[:300]
    )
    return json.loads(r.content)
