"""Housekeeping: expired uploads are refused and purged (staged bytes and rows), expired
orders are forgotten, stale ``eoshare-ingest-*`` folders are removed — by a live node on
its own, every ``EOSHARE_HOUSEKEEPING__INTERVAL_S``, and by ``eoshare housekeeping``."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from eoshare.downloads.orders import OrderAsset, OrderBook
from eoshare.downloads.uploads import UploadBook
from eoshare.errors import NotFoundError
from eoshare.housekeeping import Housekeeper
from live import free_port, live_node

from .nodes import CID, IID, build_small_catalog

ADMIN_TOKEN = "housekeeping-admin-token-0123456789"
OP = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DAY = 24 * 3600


def _new_upload(book: UploadBook, *, ttl_s: float, body: bytes = b"x" * 1000) -> str:
    upload = book.create(
        "owner", collection=CID, filename="scene.tif", size=len(body),
        sha256=hashlib.sha256(body).hexdigest(), chunk_bytes=4096, max_bytes=10**6,
        ttl_s=ttl_s,
    )  # fmt: skip
    book.write_chunk(upload, 0, body, None)
    return upload.id


def _rows(db: Path, table: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute(f"SELECT id FROM {table}")]
    finally:
        conn.close()


def _aged(path: Path, seconds: float) -> Path:
    path.mkdir(parents=True)
    (path / "part.tif").write_bytes(b"left over")
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def _ids(book: UploadBook) -> list[str]:
    return [r[0] for r in book.db.read("SELECT id FROM uploads")]


def test_an_expired_upload_is_refused_and_purged(tmp_path: Path, state_location: Any) -> None:
    book = UploadBook(state_location("uploads.db"), tmp_path / "uploads")
    try:
        live = _new_upload(book, ttl_s=3600)
        gone = _new_upload(book, ttl_s=0.2)
        time.sleep(0.3)
        assert book.get(live).id == live
        with pytest.raises(NotFoundError, match=r"expired at .*start a new upload"):
            book.get(gone)
        assert not (tmp_path / "uploads" / gone).exists()
        assert _ids(book) == [live]
        with pytest.raises(NotFoundError):
            book.get(gone)
    finally:
        book.close()


def test_passes_from_several_processes_at_once_are_safe(
    tmp_path: Path, state_location: Any
) -> None:
    """Four housekeepers (as ``serve --workers 4`` runs) over the same data: every
    expired upload goes once, nothing fails."""
    books = [UploadBook(state_location("uploads.db"), tmp_path / "uploads") for _ in range(4)]
    orders = [OrderBook(state_location("orders.db")) for _ in range(4)]
    try:
        ids = {_new_upload(books[0], ttl_s=0.1) for _ in range(30)}
        keep = _new_upload(books[0], ttl_s=3600)
        time.sleep(0.2)
        keepers = [
            Housekeeper(
                b,
                o,
                lock_path=tmp_path / "housekeeping.lock",
                order_retention_s=0,
                temp_max_age_s=DAY,
                temp_root=tmp_path / "tmp",
            )
            for b, o in zip(books, orders, strict=True)
        ]
        removed: list[str] = []
        errors: list[BaseException] = []

        def work(k: Housekeeper) -> None:
            try:
                for _ in range(5):
                    removed.extend(uid for uid, _ in k.run().uploads)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in keepers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(removed) == sorted(ids)
        assert _ids(books[0]) == [keep]
        assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == [keep]
    finally:
        for b in books:
            b.close()
        for o in orders:
            o.close()


def test_a_live_node_purges_on_its_own(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    build_small_catalog(data_dir)
    tmp = tmp_path / "tmp"
    stale = _aged(tmp / "eoshare-ingest-crashed", 2 * DAY)
    fresh = _aged(tmp / "eoshare-ingest-running", 10)
    other = _aged(tmp / "someone-elses", 2 * DAY)
    # named after a process: gone as soon as the process is, kept while it runs
    dead = _aged(tmp / "eoshare-ingest-999999999-x1y2", 10)
    alive = _aged(tmp / f"eoshare-ingest-{os.getpid()}-z3", 2 * DAY)
    env = {
        "EOSHARE_API__ADMIN_TOKEN": ADMIN_TOKEN,
        "EOSHARE_HOUSEKEEPING__INTERVAL_S": "0.3",
        "EOSHARE_HOUSEKEEPING__ORDER_RETENTION_S": "0",
        "EOSHARE_DOWNLOADS__UPLOAD_TTL_S": "2",
        "EOSHARE_DOWNLOADS__ORDER_TTL_S": "2",
        "TMPDIR": str(tmp),
    }
    with live_node(data_dir, env) as url, httpx.Client(base_url=url, timeout=30) as http:
        body = b"not yet a raster" * 64
        r = http.post(
            "/uploads",
            json={"collection": CID, "filename": "scene.tif", "size": len(body),
                  "sha256": hashlib.sha256(body).hexdigest()},
            headers=OP,
        )  # fmt: skip
        assert r.status_code == 201, r.text
        upload = r.json()["id"]
        r = http.put(f"/uploads/{upload}/chunks/0", content=body, headers=OP)
        assert r.status_code == 200, r.text
        r = http.post("/orders", json={"ids": [{"collection": CID, "id": IID}]}, headers=OP)
        assert r.status_code == 201, r.text
        order = r.json()["id"]
        assert (data_dir / "uploads" / upload).is_dir()
        assert _rows(data_dir / "orders.db", "orders") == [order]
        # the first pass runs at start: the crashed ingest's folder is gone at once
        deadline = time.monotonic() + 15
        while (stale.exists() or dead.exists()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not stale.exists() and not dead.exists()
        # the upload and the order expire after 2 s; the node purges them by itself
        # (no request touches them meanwhile)
        while time.monotonic() < deadline and (
            (data_dir / "uploads" / upload).exists()
            or _rows(data_dir / "uploads.db", "uploads")
            or _rows(data_dir / "orders.db", "orders")
        ):
            time.sleep(0.2)
        assert not (data_dir / "uploads" / upload).exists()
        assert _rows(data_dir / "uploads.db", "uploads") == []
        assert _rows(data_dir / "orders.db", "orders") == []
        assert fresh.is_dir() and other.is_dir() and alive.is_dir()
        assert http.get(f"/uploads/{upload}", headers=OP).status_code == 404
        r = http.put(f"/uploads/{upload}/chunks/0", content=body, headers=OP)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert http.get(f"/orders/{order}", headers=OP).status_code == 404
    log = (data_dir / "server.log").read_text()
    assert "housekeeping: removed" in log and "Traceback" not in log


def _cli(data_dir: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(data_dir), "TMPDIR": str(tmp)}
    return subprocess.run(
        [sys.executable, "-m", "eoshare.cli", "housekeeping", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_the_housekeeping_command(tmp_path: Path) -> None:
    data_dir, tmp = tmp_path / "data", tmp_path / "tmp"
    data_dir.mkdir()
    stale = _aged(tmp / "eoshare-ingest-abc123", 2 * DAY)
    stray = _aged(data_dir / "uploads" / "no-such-upload", 2 * DAY)
    book = UploadBook(data_dir / "uploads.db", data_dir / "uploads")
    orders = OrderBook(data_dir / "orders.db")
    try:
        expired = _new_upload(book, ttl_s=0.1)
        kept = _new_upload(book, ttl_s=3600)
        asset = OrderAsset(CID, IID, "data", "k", 1, None)
        old_order = orders.create("o", [asset], [(CID, IID)], [], ttl_s=-40 * DAY).id
        new_order = orders.create("o", [asset], [(CID, IID)], [], ttl_s=3600).id
    finally:
        book.close()
        orders.close()
    time.sleep(0.2)

    dry = _cli(data_dir, tmp, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert sorted(dry.stdout.splitlines()) == sorted(
        [f"upload {expired} (receiving)", f"order {old_order}", f"folder {stray}",
         f"folder {stale}"]
    )  # fmt: skip
    assert dry.stderr.strip().endswith(
        "would remove 1 expired uploads, 1 expired orders, 2 stale temporary folders"
    )
    assert stale.exists() and stray.exists() and (data_dir / "uploads" / expired).exists()

    real = _cli(data_dir, tmp)
    assert real.returncode == 0, real.stderr
    assert real.stdout == dry.stdout
    assert "removed 1 expired uploads" in real.stderr
    assert not stale.exists() and not stray.exists()
    assert not (data_dir / "uploads" / expired).exists()
    assert _rows(data_dir / "uploads.db", "uploads") == [kept]
    assert _rows(data_dir / "orders.db", "orders") == [new_order]

    again = _cli(data_dir, tmp)
    assert again.returncode == 0 and again.stdout == ""
    assert "removed 0 expired uploads, 0 expired orders, 0 stale" in again.stderr
    r = _cli(tmp_path / "absent", tmp)
    assert r.returncode == 1 and r.stderr.startswith("error: no data folder")
    assert _cli(data_dir, tmp, "--help").returncode == 0


def test_serve_with_two_workers_purges_without_errors(tmp_path: Path) -> None:
    """``eoshare serve --workers 2``: both processes run housekeeping; what expired goes
    once, and neither logs an error."""
    data_dir, tmp = tmp_path / "data", tmp_path / "tmp"
    data_dir.mkdir()
    book = UploadBook(data_dir / "uploads.db", data_dir / "uploads")
    try:
        expired = [_new_upload(book, ttl_s=0.1) for _ in range(20)]
        kept = _new_upload(book, ttl_s=3600)
    finally:
        book.close()
    dead = _aged(tmp / "eoshare-ingest-999999998-a1", 10)
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(tmp),
        "EOSHARE_DATA_DIR": str(data_dir),
        "EOSHARE_HOUSEKEEPING__INTERVAL_S": "0.2",
        "EOSHARE_LOG_LEVEL": "info",
    }
    log_path = data_dir / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eoshare.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (
            dead.exists() or len(_rows(data_dir / "uploads.db", "uploads")) > 1
        ):
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.2)
        assert _rows(data_dir / "uploads.db", "uploads") == [kept]
        assert not dead.exists()
        assert sorted(p.name for p in (data_dir / "uploads").iterdir()) == [kept]
        time.sleep(1)  # a few more passes from both workers
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert "Traceback" not in text and '"level": "error"' not in text, text
    assert len(expired) == 20


def test_a_stopping_node_waits_for_the_pass_under_way(tmp_path: Path) -> None:
    """The periodic pass runs in a worker thread, which a stop cannot cancel: the app's
    lifespan must wait for it (and start no further chore) before closing the stores the
    pass uses, so that no housekeeping thread outlives the app and logs after it is gone."""
    from fastapi.testclient import TestClient

    from eoshare.api.app import create_app
    from eoshare.settings import Settings

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    app = create_app(
        Settings(data_dir=data_dir, catalog=f"sqlite:///{data_dir / 'c.db'}", log_level="warning")
    )
    started, release = threading.Event(), threading.Event()
    events: list[str] = []

    def slow_chore() -> None:
        started.set()
        release.wait(20)
        events.append("chore done")

    keeper = app.state.housekeeper
    keeper.chores[:0] = [slow_chore, lambda: events.append("next chore")]
    catalog = app.state.catalog
    close_catalog = catalog.close

    def close() -> None:
        events.append("catalog closed")
        close_catalog()

    catalog.close = close
    with TestClient(app):
        assert started.wait(30), "the first pass did not start"
        # the stop begins while the chore still runs; it finishes half a second later
        threading.Timer(0.5, release.set).start()
    assert events == ["chore done", "catalog closed"]
