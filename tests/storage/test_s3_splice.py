"""Zero-copy downloads from the S3 store: a node that runs what ``eoshare serve`` runs
(uvicorn with ``eoshare.api.zerocopy``) on SeaweedFS splices each large body from a socket
of its own to the client (``S3Store.raw_body`` -> ``zerocopy.splice``). Here: the bytes,
ranges and the audit over that path; a client that leaves mid-body audited with fewer
bytes; small ranges, ``zero_copy`` off and an https:// endpoint taking obstore's copy path;
and ``splice`` itself on socket pairs (a reader that leaves, a source that ends early)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from s3_weed import ACCESS_KEY, SECRET_KEY, WeedServer

from eoshare.api import zerocopy
from eoshare.api.app import create_app
from eoshare.api.routes import downloads
from eoshare.catalog import open_catalog
from eoshare.errors import NotFoundError
from eoshare.ingest.raster import ingest_rasters
from eoshare.settings import Settings
from eoshare.storage import open_store
from eoshare.storage.s3 import S3Store

ITEM = "S2A_29RKH_20200219_0_L2A"
COLLECTION = "s2-splice"
B04 = f"/download/{COLLECTION}/{ITEM}/B04"
BIG = f"/download/{COLLECTION}/big/data"
BIG_SIZE = 48 * 1024 * 1024


@dataclass
class SpliceNode:
    url: str
    settings: Settings
    b04: bytes
    big: bytes


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _serve(settings: Settings) -> Iterator[str]:
    port = _port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None,
        access_log=False, ws="none", http=zerocopy.protocol(),
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the node did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _settings(data_dir: Path, storage: str, **downloads: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        catalog=f"sqlite:///{data_dir / 'catalog.db'}",
        storage=storage,
        log_level="warning",
        s3={"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},  # type: ignore[arg-type]
        downloads=downloads,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def spliced(
    weed: WeedServer, tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[SpliceNode]:
    """A node on the S3 store holding a real COG (B04) and a 48 MiB object."""
    weed.make_bucket("splice")
    data_dir = tmp_path_factory.mktemp("splice-node")
    settings = _settings(data_dir, weed.store_url("splice", "eo"))
    store = open_store(settings.storage_url, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    big = os.urandom(BIG_SIZE)
    store.put_bytes(f"{COLLECTION}/big/data.bin", big)
    catalog = open_catalog(settings.catalog_url)
    try:
        report = ingest_rasters(
            [shared_data / "raster" / f"{ITEM}_B04.tif"], catalog=catalog, store=store,
            collection_id=COLLECTION, create_collection=True,
        )  # fmt: skip
        assert report.ok, report.failures
        item = {
            "type": "Feature", "stac_version": "1.1.0", "id": "big", "collection": COLLECTION,
            "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}, "bbox": [0, 0, 0, 0],
            "properties": {"datetime": "2024-01-01T00:00:00Z"}, "links": [],
            "assets": {"data": {"href": "data.bin", "type": "application/octet-stream",
                                "roles": ["data"], "eoshare:key": f"{COLLECTION}/big/data.bin",
                                "file:size": BIG_SIZE}},
        }  # fmt: skip
        catalog.upsert_items([item], on_conflict="update")
    finally:
        catalog.close()
    b04 = (shared_data / "raster" / f"{ITEM}_B04.tif").read_bytes()
    with _serve(settings) as url:
        yield SpliceNode(url, settings, b04, big)


@pytest.fixture()
def splices(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The count of every splice the node makes during the test."""
    seen: list[int] = []
    real = zerocopy.splice

    async def counted(sock_fd: int, in_fd: int, count: int) -> int:
        seen.append(count)
        return await real(sock_fd, in_fd, count)

    monkeypatch.setattr(zerocopy, "splice", counted)
    return seen


def _last_rowid(node: SpliceNode) -> int:
    with sqlite3.connect(node.settings.access_db_path) as db:
        return int(db.execute("SELECT coalesce(max(rowid), 0) FROM audit").fetchone()[0])


def _audited(node: SpliceNode, since: int, n: int) -> list[int]:
    """The bytes of the first ``n`` download records after ``since`` (waits for them)."""
    deadline = time.monotonic() + 15
    rows: list[int] = []
    while time.monotonic() < deadline:
        with sqlite3.connect(node.settings.access_db_path) as db:
            rows = [int(r[0]) for r in db.execute(
                "SELECT bytes FROM audit WHERE rowid > ? AND action = 'download' ORDER BY rowid",
                (since,),
            ).fetchall()]  # fmt: skip
        if len(rows) >= n:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"expected {n} audit record(s), found {rows}")


def test_whole_objects_and_ranges_are_spliced(spliced: SpliceNode, splices: list[int]) -> None:
    since = _last_rowid(spliced)
    with httpx.Client(base_url=spliced.url, timeout=60) as http:
        r = http.get(B04)
        assert r.status_code == 200 and r.content == spliced.b04
        assert r.headers["content-length"] == str(len(spliced.b04))
        etag = r.headers["etag"]
        r = http.get(B04, headers={"Range": "bytes=1000-1500999"})
        assert r.status_code == 206 and r.content == spliced.b04[1000:1501000]
        assert r.headers["content-range"] == f"bytes 1000-1500999/{len(spliced.b04)}"
        r = http.get(BIG, headers={"Range": f"bytes=-{3 * 1024 * 1024}"})
        assert r.status_code == 206 and r.content == spliced.big[-3 * 1024 * 1024 :]
        r = http.get(BIG)
        assert r.status_code == 200 and r.content == spliced.big
        # the same connection serves again after a spliced body
        assert http.get("/api").status_code == 200
        # HEAD and a matching If-None-Match send no body: nothing is spliced
        assert http.head(B04).headers["content-length"] == str(len(spliced.b04))
        assert http.get(B04, headers={"If-None-Match": etag}).status_code == 304
    # the S3 server's first body bytes come with its headers: each splice is the rest
    assert len(splices) == 4
    lengths = [len(spliced.b04), 1_500_000, 3 * 1024 * 1024, BIG_SIZE]
    assert all(0 < n <= want for n, want in zip(splices, lengths, strict=True))
    assert _audited(spliced, since, 4) == lengths


def test_a_client_that_leaves_mid_body_is_audited_with_fewer_bytes(
    spliced: SpliceNode, splices: list[int]
) -> None:
    since = _last_rowid(spliced)
    host, port = spliced.url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.connect((host, int(port)))
        s.sendall(f"GET {BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while len(got) < 1024 * 1024:
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and spliced.big.startswith(body)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    (audited,) = _audited(spliced, since, 1)
    assert len(body) <= audited < BIG_SIZE
    assert len(splices) == 1
    # the node serves on
    r = httpx.get(spliced.url + B04, headers={"Range": "bytes=0-1048575"}, timeout=60)
    assert r.status_code == 206 and r.content == spliced.b04[: 1024 * 1024]


def test_small_ranges_take_obstores_path(spliced: SpliceNode, splices: list[int]) -> None:
    since = _last_rowid(spliced)
    r = httpx.get(spliced.url + B04, headers={"Range": "bytes=100-16483"}, timeout=60)
    assert r.status_code == 206 and r.content == spliced.b04[100:16484]
    assert splices == []
    assert _audited(spliced, since, 1) == [16384]


def test_zero_copy_off_copies_the_same_bytes(
    spliced: SpliceNode, splices: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy path (zero_copy off; so too over TLS, or to a server without the
    extension): same bytes, ranges and audit, nothing spliced."""
    settings = spliced.settings.model_copy(
        update={"downloads": spliced.settings.downloads.model_copy(update={"zero_copy": False})}
    )
    opened: list[Any] = []
    monkeypatch.setattr(S3Store, "raw_body", lambda *a, **k: opened.append(a))
    with _serve(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        since = _last_rowid(spliced)
        r = http.get(B04)
        assert r.status_code == 200 and r.content == spliced.b04
        r = http.get(BIG, headers={"Range": "bytes=5000000-7999999"})
        assert r.status_code == 206 and r.content == spliced.big[5_000_000:8_000_000]
        assert _audited(spliced, since, 2) == [len(spliced.b04), 3_000_000]
    assert splices == [] and opened == []


def test_raw_bodies_only_over_plain_http(weed: WeedServer) -> None:
    """An https:// endpoint (TLS needs the bytes in user space) gets no raw body: the
    route reads with obstore; over http://, a missing object is NotFoundError."""
    tls = S3Store("b", endpoint="https://s3.example.invalid", access_key_id="a",
                  secret_access_key="b")  # fmt: skip
    assert tls.raw_body("c/i/x.tif", 0, 10, whole=True) is None
    aws = S3Store("b", access_key_id="a", secret_access_key="b")
    assert aws.raw_body("c/i/x.tif", 0, 10, whole=True) is None
    weed.make_bucket("splice-raw")
    store = S3Store.from_url(weed.store_url("splice-raw"), access_key_id=ACCESS_KEY,
                             secret_access_key=SECRET_KEY)  # fmt: skip
    with pytest.raises(NotFoundError):
        store.raw_body("c/i/missing.bin", 0, 10, whole=True)
    store.put_bytes("c/i/x.bin", b"0123456789" * 100)
    body = store.raw_body("c/i/x.bin", 10, 30, whole=False)
    assert body is not None
    try:
        assert body.length == 20
        data = body.head
        body.sock.setblocking(True)
        while len(data) < 20:
            data += body.sock.recv(20 - len(data))
        assert data == (b"0123456789" * 3)[10:30]
    finally:
        body.close()


def test_the_download_route_splices_only_where_the_server_offers_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No extension in the scope (a TLS connection, plain uvicorn): no raw body."""
    asked: list[Any] = []

    class Store:
        def raw_body(self, *a: Any, **k: Any) -> None:
            asked.append(a)

    class Answer:
        length, start, end, status = 10 * 1024 * 1024, 0, 10 * 1024 * 1024, 200

    class Request:
        scope: dict[str, Any] = {"extensions": {}}

    settings = Settings(downloads={"zero_copy": True})  # type: ignore[arg-type]
    req: Any = Request()
    assert downloads._spliceable(req, Store(), "k", Answer(), settings) is None
    assert asked == []
    req.scope = {"extensions": {zerocopy.EXTENSION: {}}}
    downloads._spliceable(req, Store(), "k", Answer(), settings)
    assert len(asked) == 1


# --- splice on socket pairs ------------------------------------------------------------
def _splice(out: socket.socket, source: socket.socket, count: int) -> int:
    """``zerocopy.splice`` with no idle timeout; a splice that never ends fails here."""
    coro = zerocopy.splice(out.fileno(), source.fileno(), count)
    return asyncio.run(asyncio.wait_for(coro, 120))


@pytest.fixture(autouse=True)
def _no_idle_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zerocopy, "IDLE_TIMEOUT_S", 3600.0)


def _pairs() -> tuple[socket.socket, socket.socket, socket.socket, socket.socket]:
    """(source writer, source reader, client's socket, client), the two the node holds
    non-blocking."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    b.setblocking(False)
    c.setblocking(False)
    return a, b, c, d


def test_splice_moves_every_byte_and_no_more() -> None:
    data = os.urandom(8 * 1024 * 1024 + 123)
    after = b"the next response"
    src_w, src_r, out, client = _pairs()
    received = bytearray()
    feeder = threading.Thread(target=src_w.sendall, args=(data + after,), daemon=True)

    def read_all() -> None:
        while chunk := client.recv(1 << 20):
            received.extend(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    feeder.start()
    reader.start()
    sent = _splice(out, src_r, len(data))
    out.close()
    feeder.join()
    reader.join()
    assert sent == len(data) and bytes(received) == data
    src_r.setblocking(True)
    assert src_r.recv(100) == after  # what follows the body is left in the source
    for s in (src_w, src_r, client):
        s.close()


def test_splice_stops_when_the_client_goes_away() -> None:
    data = os.urandom(32 * 1024 * 1024)
    src_w, src_r, out, client = _pairs()
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    received = bytearray()

    def read_then_close() -> None:
        while len(received) < 512 * 1024:
            received.extend(client.recv(65536))
        client.close()

    def feed() -> None:
        with contextlib.suppress(OSError):
            src_w.sendall(data)

    feeder = threading.Thread(target=feed, daemon=True)
    reader = threading.Thread(target=read_then_close, daemon=True)
    feeder.start()
    reader.start()
    sent = _splice(out, src_r, len(data))
    reader.join()
    src_r.close()
    feeder.join()
    out.close()
    src_w.close()
    assert len(received) <= sent < len(data)
    assert bytes(received) == data[: len(received)]


def test_splice_stops_where_the_source_ends() -> None:
    src_w, src_r, out, client = _pairs()
    src_w.sendall(b"x" * 3000)
    src_w.close()
    sent = _splice(out, src_r, 10_000)
    out.close()
    assert sent == 3000
    got = b""
    while chunk := client.recv(65536):
        got += chunk
    assert got == b"x" * 3000
    src_r.close()
    client.close()
