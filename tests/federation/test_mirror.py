"""Mirrors of a real peer's assets (``eoshare mirror``), between real nodes in separate
processes: beta (the origin, from the federation fixture) and delta, a fourth node that
mirrors from it and serves the copy. beta holds ``b-mirror`` (partners: vn-vnsc; three
1 MiB files of random bytes) and ``b-mirror-bad`` (one file whose file:checksum is
wrong). beta believes delta's word for vn-vnsc *and* bd-sparrso users, so that what
bd_user does not get is decided by beta's agreement, not by trust.

The sha256 of every mirrored file is compared with the sha256 of beta's own store file,
read from beta's disk here (not with what either node says)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from eoshare.access.agreements import agreement_from_dict
from eoshare.access.store import AccessStore
from eoshare.catalog import open_catalog
from eoshare.federation.mirror import MirrorBook
from eoshare.storage import open_store
from federation.conftest import (
    ADMIN,
    Federation,
    Node,
    as_peer,
    build,
    env_for,
    templates,
)
from live import live_node

MIB = 1024 * 1024
PARTNERS = {"access": "partners", "partners": ["vn-vnsc"]}


@dataclass
class Mirrors:
    beta: Node
    delta: Node

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``eoshare ... --data-dir delta`` in this process (a process start costs seconds
        on a loaded machine); the kill -9 test runs its own process."""
        from eoshare.cli import app

        r = CliRunner().invoke(app, [*args, "--data-dir", str(self.delta.data_dir)])
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)

    def origin_sha256(self, collection: str, item: str) -> str:
        path = self.beta.data_dir / "store" / collection / item / "data.tif"
        return hashlib.sha256(path.read_bytes()).hexdigest()

    def local_file(self, collection: str, item: str) -> Path:
        return self.delta.data_dir / "store" / f"beta.{collection}" / item / "data.tif"

    def local_sha256(self, collection: str, item: str) -> str:
        return hashlib.sha256(self.local_file(collection, item).read_bytes()).hexdigest()

    def status(self, mirror_id: str) -> dict[str, Any]:
        r = httpx.get(
            self.delta.url + "/admin/mirrors", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert r.status_code == 200, r.text
        return next(m for m in r.json()["mirrors"] if m["id"] == mirror_id)

    def partials(self, mirror_id: str) -> list[Path]:
        return sorted((self.delta.data_dir / "mirror-partial" / mirror_id).glob("*.part"))


def _origin_collection(shared: Path, beta: Node, cid: str, terms: dict[str, Any],
                       files: list[bytes], checksums: list[str] | None = None) -> None:  # fmt: skip
    tpl = templates(shared)
    catalog = open_catalog(f"sqlite:///{beta.data_dir / 'catalog.db'}")
    store = open_store((beta.data_dir / "store").resolve().as_uri())
    try:
        doc = copy.deepcopy(tpl[0])
        coll = {
            "type": "Collection", "stac_version": "1.0.0", "id": cid, "description": cid,
            "license": "proprietary", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                       "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]}},
        }  # fmt: skip
        catalog.create_collection(coll)
        items = []
        for n, data in enumerate(files):
            item = copy.deepcopy(doc)
            item.update({"id": f"{cid}-{n}", "collection": cid, "links": []})
            item["properties"]["datetime"] = f"2024-05-0{n + 1}T10:00:00Z"
            key = f"{cid}/{item['id']}/data.tif"
            store.put_bytes(key, data)
            checksum = checksums[n] if checksums else "1220" + hashlib.sha256(data).hexdigest()
            item["assets"] = {
                "data": {"href": key, "type": "image/tiff", "roles": ["data"],
                         "eoshare:key": key, "file:size": len(data), "file:checksum": checksum}
            }  # fmt: skip
            items.append(item)
        catalog.upsert_items(items)
    finally:
        catalog.close()
    access = AccessStore(beta.data_dir / "access.db")
    try:
        access.put_agreement(
            agreement_from_dict({"collection": cid, "provider": beta.member, **terms}), who="test"
        )
    finally:
        access.close()


def _drop_origin_collection(beta: Node, cid: str) -> None:
    catalog = open_catalog(f"sqlite:///{beta.data_dir / 'catalog.db'}")
    store = open_store((beta.data_dir / "store").resolve().as_uri())
    try:
        for item in list(catalog.iter_items(cid)):
            catalog.delete_item(cid, item["id"])
            store.delete(f"{cid}/{item['id']}/data.tif")
        catalog.delete_collection(cid)
    finally:
        catalog.close()
    access = AccessStore(beta.data_dir / "access.db")
    try:
        access.delete_agreement(cid, who="test")
    finally:
        access.close()


@pytest.fixture(scope="module")
def mirrors(
    federation: Federation, tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[Mirrors]:
    beta = federation.beta
    rnd = [os.urandom(MIB) for _ in range(3)]
    _origin_collection(shared_data, beta, "b-mirror", PARTNERS, rnd)
    _origin_collection(shared_data, beta, "b-mirror-bad", PARTNERS, [os.urandom(200_000)],
                       ["1220" + "0" * 64])  # fmt: skip
    delta = Node("delta", "vn-vnsc", tmp_path_factory.mktemp("mirror") / "delta")
    delta.data_dir.mkdir()
    build(delta, shared_data, {})  # members, users and tokens; no collections
    env = {**env_for(delta), "EOSHARE_FEDERATION__MIRROR_INTERVAL_S": "0"}
    try:
        with live_node(delta.data_dir, env, ready_path="/conformance") as url:
            delta.url = url
            doc = httpx.get(url + "/.well-known/eoshare-node", timeout=10).json()
            delta.fingerprint, delta.public_key = doc["fingerprint"], doc["public_key"]["raw"]
            beta.registry.add(as_peer(delta, {"vn-vnsc", "bd-sparrso"}))
            delta.registry.add(as_peer(beta))
            yield Mirrors(beta, delta)
            log = (delta.data_dir / "server.log").read_text()
            assert "Traceback" not in log, log
    finally:
        beta.registry.remove("delta")
        _drop_origin_collection(beta, "b-mirror")
        _drop_origin_collection(beta, "b-mirror-bad")


def test_every_mirror_command_has_help() -> None:
    from eoshare.cli import app

    runner = CliRunner()
    for args in (["mirror"], *[["mirror", c] for c in ("add", "list", "run", "status", "remove")]):
        r = runner.invoke(app, [*args, "--help"])
        assert r.exit_code == 0, (args, r.output)
        assert "Usage" in r.output


def test_a_member_the_origin_does_not_allow_gets_nothing(mirrors: Mirrors) -> None:
    added = mirrors.cli("mirror", "add", "beta", "-c", "b-mirror", "--as", "bd_user",
                        "--id", "m-bd")  # fmt: skip
    assert added.returncode == 0, added.stderr
    run = mirrors.cli("mirror", "run", "m-bd", "--now")
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "shows no collection 'b-mirror'" in lines[0]
    assert not (mirrors.delta.data_dir / "store" / "beta.b-mirror").exists()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    r = httpx.get(mirrors.delta.url + "/collections/beta.b-mirror/items", headers=headers)
    assert r.status_code == 404  # no local collection at all
    status = mirrors.status("m-bd")
    assert status["state"] == "failed" and "b-mirror" in status["last_error"]
    assert mirrors.cli("mirror", "remove", "m-bd").returncode == 0


def test_a_mirror_killed_mid_file_resumes_and_ends_byte_identical(mirrors: Mirrors) -> None:
    added = mirrors.cli("mirror", "add", "beta", "-c", "b-mirror", "--as", "vn_user",
                        "--limit-rate", "256K", "--id", "m-resume")  # fmt: skip
    assert added.returncode == 0, added.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eoshare.cli", "mirror", "run", "m-resume", "--now",
         "--data-dir", str(mirrors.delta.data_dir)],
        env={**env, "EOSHARE_LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        parts = mirrors.partials("m-resume")
        if parts and parts[0].stat().st_size >= 128 * 1024:
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (part,) = mirrors.partials("m-resume")
    at_kill = part.stat().st_size
    assert 0 < at_kill < MIB
    assert f".{proc.pid}.part" in part.name  # the dead process's partial, by its pid
    assert mirrors.status("m-resume")["state"] == "interrupted"

    done = mirrors.cli("mirror", "run", "m-resume", "--now", "--limit-rate", "0")
    assert done.returncode == 0, done.stderr
    assert "3/3 files" in done.stdout and "1 resumed" in done.stdout, done.stdout
    fetched = re.search(r"\((\d+\.\d) MiB fetched", done.stdout)
    assert fetched is not None and float(fetched.group(1)) < 3.0, done.stdout  # not again
    for n in range(3):
        item = f"b-mirror-{n}"
        assert mirrors.local_sha256("b-mirror", item) == mirrors.origin_sha256("b-mirror", item)
    assert mirrors.partials("m-resume") == []
    status = mirrors.status("m-resume")
    assert status == {
        **status,
        "state": "done", "files_total": 3, "files_done": 3, "bytes_total": 3 * MIB,
        "bytes_done": 3 * MIB, "last_error": None, "peer": "beta", "collections": ["b-mirror"],
    }  # fmt: skip
    # a second run finds everything there and fetches nothing
    again = mirrors.cli("mirror", "run", "m-resume", "--now")
    assert again.returncode == 0 and "3 already here" in again.stdout, again.stdout
    assert "(0 B fetched" in again.stdout
    table = mirrors.cli("mirror", "status")
    assert table.returncode == 0 and "m-resume" in table.stdout and "done" in table.stdout


def test_mirrored_items_are_served_locally_under_the_origin_agreement(mirrors: Mirrors) -> None:
    delta, url = mirrors.delta, mirrors.delta.url
    path = "/download/beta.b-mirror/b-mirror-1/data"
    origin = (mirrors.beta.data_dir / "store/b-mirror/b-mirror-1/data.tif").read_bytes()
    ok = httpx.get(url + path, headers=delta.headers("vn_user"))
    assert ok.status_code == 200 and ok.content == origin
    item = httpx.get(url + "/collections/beta.b-mirror/items/b-mirror-1",
                     headers=delta.headers("vn_user")).json()  # fmt: skip
    assert item["assets"]["data"]["href"].startswith(url + "/download/")
    assert item["properties"]["federation:origin"] == "beta"
    # a search on this hub (it fans out to beta too) shows the scene once: the local copy,
    # with beta's record as its other source
    found = httpx.get(url + "/search", params={"ids": "b-mirror-1"},
                      headers=delta.headers("vn_user")).json()  # fmt: skip
    assert [f["id"] for f in found["features"]] == ["b-mirror-1"], found
    (hit,) = found["features"]
    assert hit["assets"]["data"]["href"].startswith(url + "/download/beta.b-mirror/"), hit
    # the provider's own users too, as at the origin
    assert httpx.get(url + path, headers=delta.headers("ke_user")).status_code == 200
    # hidden stays hidden: not a partner, and the public
    for user in ("bd_user", None):
        h = delta.headers(user)
        assert httpx.get(url + path, headers=h).status_code == 404
        assert httpx.get(url + "/collections/beta.b-mirror/items/b-mirror-1",
                         headers=h).status_code == 404  # fmt: skip
        assert httpx.get(url + "/collections/beta.b-mirror", headers=h).status_code == 404
    # every grant recorded by the local audit, as any download here
    access = AccessStore(delta.data_dir / "access.db")
    try:
        assert access.bytes_today(username="vn_user") >= len(origin)
        assert access.bytes_today(username="bd_user") == 0
    finally:
        access.close()


def test_the_status_is_for_operators(mirrors: Mirrors) -> None:
    url = mirrors.delta.url + "/admin/mirrors"
    r = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200
    keys = {"id", "peer", "collections", "bbox", "datetime", "window", "state", "files_total",
            "files_done", "bytes_total", "bytes_done", "last_run", "last_error"}  # fmt: skip
    assert r.json()["mirrors"] and all(set(m) == keys for m in r.json()["mirrors"])
    denied = httpx.get(url, headers=mirrors.delta.headers("vn_user"))
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(url).status_code == 401


def test_a_damaged_partial_is_detected_and_fetched_again(mirrors: Mirrors) -> None:
    added = mirrors.cli("mirror", "add", "beta", "-c", "b-mirror", "--as", "vn_user",
                        "--id", "m-damaged")  # fmt: skip
    assert added.returncode == 0, added.stderr
    book = MirrorBook(mirrors.delta.data_dir / "federation.db",
                      mirrors.delta.data_dir / "mirror-partial")  # fmt: skip
    dead_pid = subprocess.Popen(["true"])  # a pid that no longer runs
    dead_pid.wait()
    part = book.partial_path("m-damaged", "beta.b-mirror/b-mirror-2/data.tif", dead_pid.pid)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(os.urandom(MIB // 2))  # not the origin's first half
    run = mirrors.cli("mirror", "run", "m-damaged", "--now", "--progress")  # with a bar
    assert run.returncode == 0, run.stderr
    assert "1 resumed" in run.stdout and "1 refetched" in run.stdout, run.stdout
    assert mirrors.local_sha256("b-mirror", "b-mirror-2") == mirrors.origin_sha256(
        "b-mirror", "b-mirror-2"
    )
    assert mirrors.partials("m-damaged") == []


def test_origin_bytes_that_do_not_match_their_checksum_are_refused(mirrors: Mirrors) -> None:
    added = mirrors.cli("mirror", "add", "beta", "-c", "b-mirror-bad", "--as", "vn_user",
                        "--id", "m-bad")  # fmt: skip
    assert added.returncode == 0, added.stderr
    run = mirrors.cli("mirror", "run", "m-bad", "--now")
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert "sha256 does not match its file:checksum" in run.stderr
    assert not mirrors.local_file("b-mirror-bad", "b-mirror-bad-0").exists()
    assert mirrors.partials("m-bad") == []
    status = mirrors.status("m-bad")
    assert status["state"] == "failed" and "file:checksum" in status["last_error"]
    assert status["files_done"] == 0 and status["files_total"] == 1


def test_bandwidth_limit_area_period_and_window(mirrors: Mirrors) -> None:
    # one item by area and period; 512 KiB/s for 1 MiB
    added = mirrors.cli("mirror", "add", "beta", "-c", "b-mirror", "--as", "vn_user",
                        "--datetime", "2024-05-01T00:00:00Z/2024-05-01T23:59:59Z",
                        "--bbox", "-180,-90,180,90", "--limit-rate", "512K",
                        "--id", "m-slow")  # fmt: skip
    assert added.returncode == 0, added.stderr
    run = mirrors.cli("mirror", "run", "m-slow", "--now")
    assert run.returncode == 0, run.stderr
    assert "1/1 files" in run.stdout, run.stdout
    m = re.search(r"\((\d+\.\d) MiB fetched in (\d+\.\d) s", run.stdout)
    assert m is not None, run.stdout
    rate = float(m.group(1)) * MIB / float(m.group(2))
    assert rate <= 1.5 * 512 * 1024, run.stdout  # generous: the bucket allows a burst
    assert mirrors.local_sha256("b-mirror", "b-mirror-0") == mirrors.origin_sha256(
        "b-mirror", "b-mirror-0"
    )
    # a window that does not hold the present: run does nothing without --now
    now = datetime.now(UTC)
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    window = f"{start:%H:%M}-{end:%H:%M}"
    added = mirrors.cli("mirror", "add", "beta", "-c", "b-mirror", "--as", "vn_user",
                        "--window", window, "--id", "m-night")  # fmt: skip
    assert added.returncode == 0, added.stderr
    waiting = mirrors.cli("mirror", "run", "m-night")
    assert waiting.returncode == 0 and "outside its window" in waiting.stdout, waiting.stdout
    status = mirrors.status("m-night")
    assert status["state"] == "idle" and status["window"] == window
    listed = json.loads(mirrors.cli("mirror", "list", "--json").stdout)
    assert {m["id"] for m in listed} >= {"m-night", "m-slow"}


def test_run_loop_runs_the_mirrors_in_their_window(mirrors: Mirrors) -> None:
    time.sleep(1.0)  # last_run has a resolution of one second
    before = mirrors.status("m-slow")["last_run"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eoshare.cli", "mirror", "run", "--loop", "--interval", "0.5",
         "--data-dir", str(mirrors.delta.data_dir)],
        env={**env, "EOSHARE_LOG_LEVEL": "error"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:  # a run started (last_run, state running) and ended (done)
            status = mirrors.status("m-slow")
            if status["last_run"] != before and status["state"] == "done":
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "mirror m-slow: 1/1 files" in out, out
    assert "m-night" not in out  # outside its window
    assert mirrors.status("m-night")["state"] == "idle"


def test_verify_finds_the_mirrored_files_whole_and_owned(mirrors: Mirrors) -> None:
    checked = mirrors.cli("verify")
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
    assert "checked 3 files: 0 missing, 0 corrupt, 0 orphaned" in checked.stderr


# --- the small parts, without nodes -------------------------------------------------------
def test_token_bucket_holds_the_rate() -> None:
    from eoshare.federation.mirror import TokenBucket

    clock = [0.0]

    def sleep(s: float) -> None:
        clock[0] += s

    bucket = TokenBucket(1000, 250, clock=lambda: clock[0], sleep=sleep)
    for _ in range(100):
        bucket.take(100)
    # 10,000 bytes at 1,000 B/s after a first burst of 250
    assert clock[0] == pytest.approx(9.75)


def test_windows_and_rates() -> None:
    from eoshare.errors import InvalidRequestError
    from eoshare.federation.mirror import Window, parse_rate

    night = Window.parse("22:00-06:00")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert night.contains(at.replace(hour=23)) and night.contains(at.replace(hour=5, minute=59))
    assert not night.contains(at.replace(hour=6)) and not night.contains(at.replace(hour=12))
    hanoi = Window.parse("22:00-06:00 Asia/Ho_Chi_Minh")  # UTC+7
    assert hanoi.contains(at.replace(hour=16)) and not hanoi.contains(at.replace(hour=23))
    assert str(hanoi) == "22:00-06:00 Asia/Ho_Chi_Minh"
    for bad in ("22-06", "25:00-06:00", "22:00-06:00 Mars/Olympus"):
        with pytest.raises(InvalidRequestError):
            Window.parse(bad)
    assert parse_rate("2M") == 2 * MIB and parse_rate("500K") == 500 * 1024
    assert parse_rate("1.5m") == int(1.5 * MIB) and parse_rate("0") == 0
    assert parse_rate(None) is None
    with pytest.raises(InvalidRequestError):
        parse_rate("fast")
