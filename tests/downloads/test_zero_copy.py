"""Zero-copy downloads (``eoshare.api.zerocopy``): the node of these tests runs the
protocol ``eoshare serve`` runs, so every download test above already goes through
sendfile; here: that it really does, that the bytes and the audit are right, that a
connection is reused after a zero-copy body, that a client that goes away is seen, and
that the plain path (zero_copy off, or a server without the extension) still works."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from dl_nodes import COLLECTION, ITEM, Node, run_node

from eoshare.api import zerocopy

URL = f"/download/{COLLECTION}/{ITEM}/B04"


def _b04(node: Node) -> bytes:
    return (node.data_dir / "store" / COLLECTION / ITEM / "B04.tif").read_bytes()


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(offset, count) of every zero-copy send the node makes during the test."""
    seen: list[tuple[int, int]] = []
    real = zerocopy.sendfile

    async def counted(sock_fd: int, in_fd: int, offset: int, count: int) -> int:
        seen.append((offset, count))
        return await real(sock_fd, in_fd, offset, count)

    monkeypatch.setattr(zerocopy, "sendfile", counted)
    return seen


def _audited(node: Node, since: int) -> list[int]:
    with sqlite3.connect(node.settings.access_db_path) as db:
        rows = db.execute(
            "SELECT bytes FROM audit WHERE rowid > ? AND asset = 'B04' AND action = 'download' "
            "ORDER BY rowid",
            (since,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def _last_rowid(node: Node) -> int:
    with sqlite3.connect(node.settings.access_db_path) as db:
        return int(db.execute("SELECT coalesce(max(rowid), 0) FROM audit").fetchone()[0])


def _wait_audited(node: Node, since: int, n: int) -> list[int]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = _audited(node, since)
        if len(rows) >= n:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"expected {n} audit record(s), found {_audited(node, since)}")


def test_whole_file_and_ranges_go_through_sendfile(
    http: httpx.Client, node: Node, calls: list[tuple[int, int]]
) -> None:
    data = _b04(node)
    since = _last_rowid(node)
    r = http.get(URL)
    assert r.status_code == 200 and r.content == data
    r = http.get(URL, headers={"Range": "bytes=1000-200999"})
    assert r.status_code == 206 and r.content == data[1000:201000]
    r = http.get(URL, headers={"Range": "bytes=-777"})
    assert r.status_code == 206 and r.content == data[-777:]
    assert calls == [(0, len(data)), (1000, 200_000), (len(data) - 777, 777)]
    # the audit has the bytes the kernel took, per request
    assert _wait_audited(node, since, 3) == [len(data), 200_000, 777]
    # HEAD sends no body and opens no file
    assert http.head(URL).status_code == 200
    assert len(calls) == 3


def test_the_connection_is_reused_after_a_zero_copy_body(node: Node) -> None:
    data = _b04(node)
    host, port = node.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        request = f"GET {URL} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9999\r\n\r\n".encode()
        s.sendall(request + request)  # pipelined: the second waits for the first
        got = b""
        while got.count(b"HTTP/1.1 206") < 2 or not got.endswith(data[:10000]):
            chunk = s.recv(65536)
            assert chunk, got[:300]
            got += chunk
        first, second = got.split(b"HTTP/1.1 206")[1:]
        assert first.endswith(b"\r\n\r\n" + data[:10000])
        assert second.endswith(b"\r\n\r\n" + data[:10000])
        s.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
        assert rest.startswith(b"HTTP/1.1 200")


@pytest.fixture(params=["in the event loop", "in a worker thread"])
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Cached bytes are sent from the event loop; others from a worker thread."""
    if request.param == "in a worker thread":
        monkeypatch.setattr(zerocopy, "_cached", lambda *a: False)
    return str(request.param)


def test_sendfile_stops_when_the_client_goes_away(tmp_path: Path, where: str) -> None:
    """The count returned is what the kernel took, fewer than asked when the reader
    closes its end half-way (the download is then audited with that count)."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1024 * 1024) * 16)
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    server.setblocking(False)
    received = bytearray()

    def read_then_close() -> None:
        while len(received) < 256 * 1024:
            received.extend(client.recv(65536))
        client.close()

    reader = threading.Thread(target=read_then_close)
    reader.start()
    with big.open("rb") as f:
        sent = asyncio.run(zerocopy.sendfile(server.fileno(), f.fileno(), 0, 16 * 1024 * 1024))
    reader.join()
    server.close()
    assert len(received) <= sent < 16 * 1024 * 1024
    with big.open("rb") as f:
        assert bytes(received) == f.read(len(received))


def test_a_file_shorter_than_asked_stops_at_its_end(tmp_path: Path, where: str) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    server, client = socket.socketpair()
    server.setblocking(False)
    with small.open("rb") as f:
        sent = asyncio.run(zerocopy.sendfile(server.fileno(), f.fileno(), 0, 5000))
    server.close()
    assert sent == 1000
    assert client.recv(5000) == b"x" * 1000
    client.close()


@pytest.mark.parametrize("no_extension", [False, True])
def test_the_plain_path_sends_the_same_bytes(
    node: Node, no_extension: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``zero_copy`` off, or on a server without the extension (plain uvicorn, as
    the other test suites run), files are read in chunks: same bytes, ranges, audit."""
    data = _b04(node)
    # the setting off; or on, with a server that does not offer the extension
    downloads = node.settings.downloads.model_copy(
        update={"zero_copy": no_extension, "chunk_bytes": 256 * 1024}
    )
    settings = node.settings.model_copy(update={"downloads": downloads})
    if no_extension:
        monkeypatch.setattr(zerocopy, "protocol", lambda: "auto")
        import dl_nodes

        monkeypatch.setattr(dl_nodes, "zerocopy_protocol", lambda: "auto")
    seen: list[Any] = []
    monkeypatch.setattr(zerocopy, "sendfile", lambda *a: seen.append(a))
    with run_node(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        since = _last_rowid(node)
        r = http.get(URL)
        assert r.status_code == 200 and r.content == data
        r = http.get(URL, headers={"Range": "bytes=300000-1300000"})
        assert r.status_code == 206 and r.content == data[300000:1300001]
        assert _wait_audited(node, since, 2) == [len(data), 1_000_001]
    assert seen == []
