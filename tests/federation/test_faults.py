"""Faults during a fan-out search: peers that are slow, answer garbage or a 500, hang up,
or are killed between two pages. The hub stays up, answers within its deadline, and
says which peers are missing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from eoshare.federation.peers import Peer
from federation.conftest import DEADLINE_S, Federation, Node, as_peer, build, env_for
from live import free_port

FAULTS = ("slow", "garbage", "error", "hangup")
PEER_CACHE_S = 2.2


class _Faulty(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        # a broken pipe: the hub gave up waiting, as it should
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._fault()

    def _fault(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        kind = self.path.strip("/").split("/")[0]
        if kind == "slow":
            time.sleep(4 * DEADLINE_S)
            body = b'{"type": "FeatureCollection", "features": [], "links": []}'
            status = 200
        elif kind == "garbage":
            body, status = b"<html>this is not JSON", 200
        elif kind == "error":
            body, status = b'{"detail": "internal error"}', 500
        else:  # hangup: a node that dies while answering
            self.wfile.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"type"')
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer


@pytest.fixture(scope="module")
def faulty_peers(federation: Federation) -> Iterator[list[str]]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Faulty)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    registry = federation.alpha.registry
    for kind in FAULTS:
        # they claim one collection only, so other tests' searches skip them
        registry.add(Peer(f"f-{kind}", f"{base}/{kind}", "stac", collections=("fault-c",)))
    time.sleep(PEER_CACHE_S)  # the running hub re-reads its peers this often
    try:
        yield [f"f-{k}" for k in FAULTS]
    finally:
        for kind in FAULTS:
            registry.remove(f"f-{kind}")
        server.shutdown()
        server.server_close()


def test_hub_answers_within_its_deadline(federation: Federation, faulty_peers: list[str]) -> None:
    url = federation.alpha.url + "/search"
    started = time.perf_counter()
    r = httpx.get(url, params={"collections": "a-open,fault-c", "limit": 10}, timeout=30)
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    doc = r.json()
    assert elapsed < DEADLINE_S + 1.5, elapsed
    assert doc["federation:missing"] == sorted(faulty_peers)
    assert set(r.headers["eoshare-federation-missing"].split(", ")) == set(faulty_peers)
    report = doc["federation:peers"]
    assert report["f-slow"]["status"] == "timeout"
    assert "500" in report["f-error"]["detail"]
    assert "not JSON" in report["f-garbage"]["detail"]
    assert report["f-hangup"]["status"] == "error"
    # this node's own items are there all the same, and no count is claimed
    assert {f["id"] for f in doc["features"]} == set(federation.alpha.items["a-open"])
    assert "numberMatched" not in doc
    # the hub is still up
    assert httpx.get(federation.alpha.url + "/conformance").status_code == 200


def test_collections_within_the_deadline(federation: Federation, faulty_peers: list[str]) -> None:
    started = time.perf_counter()
    r = httpx.get(federation.alpha.url + "/collections", timeout=30)
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    assert elapsed < DEADLINE_S + 1.5, elapsed
    doc = r.json()
    assert doc["federation:missing"] == sorted(faulty_peers)
    assert set(r.headers["eoshare-federation-missing"].split(", ")) == set(faulty_peers)
    assert "numberMatched" not in doc  # not every source answered: no count
    ids = {c["id"] for c in doc["collections"]}
    assert {"a-open", "beta.b-open", "gamma.g-open"} <= ids


def _start(node: Node) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.update({"EOSHARE_DATA_DIR": str(node.data_dir), **env_for(node)})
    with (node.data_dir / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "eoshare.api.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (node.data_dir / "server.log").read_text()
        try:
            if httpx.get(url + "/conformance", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail("delta did not start", pytrace=False)


def test_node_killed_mid_search(federation: Federation, tmp_path: Path) -> None:
    delta = Node("delta", "ke-kspa", tmp_path / "delta")
    delta.data_dir.mkdir()
    build(delta, federation.shared, {"d-open": ({"access": "open"}, 12)})
    delta.registry.add(as_peer(federation.alpha))
    proc, delta.url = _start(delta)
    registry = federation.alpha.registry
    try:
        doc = httpx.get(delta.url + "/.well-known/eoshare-node").json()
        delta.fingerprint, delta.public_key = doc["fingerprint"], doc["public_key"]["raw"]
        registry.add(as_peer(delta, collections=("d-open",)))
        time.sleep(PEER_CACHE_S)
        url = federation.alpha.url + "/search"
        first = httpx.get(url, params={"collections": "a-open,d-open", "limit": 5}, timeout=30)
        assert first.status_code == 200, first.text
        page = first.json()
        assert page["federation:missing"] == []
        assert any(f["properties"].get("federation:origin") == "delta" for f in page["features"])
        next_url = next(x["href"] for x in page["links"] if x["rel"] == "next")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        started = time.perf_counter()
        second = httpx.get(next_url, timeout=30)
        assert time.perf_counter() - started < DEADLINE_S + 1.5
        assert second.status_code == 200, second.text
        assert second.json()["federation:missing"] == ["delta"]
        assert second.headers["eoshare-federation-missing"] == "delta"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        registry.remove("delta")
