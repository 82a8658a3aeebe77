"""Per-peer harvest schedules: two processes of one node (one identity, one peers
database, here each with its own catalogue so that the test sees who harvested) run
their housekeeping every second; the due harvest of beta runs once, in one of them."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from eoshare.catalog import open_catalog
from eoshare.federation.identity import b64, load_or_create_identity
from eoshare.federation.peers import Peer
from federation.conftest import Federation, run_cli
from live import live_node


def _harvest_runs(db: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute("SELECT peer, started FROM harvest_runs").fetchall()


def _count(data_dir: Path, collection: str) -> int:
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    try:
        return sum(1 for _ in catalog.iter_items(collection))
    except Exception:
        return 0
    finally:
        catalog.close()


def test_scheduled_harvest_runs_once_across_two_processes(
    federation: Federation, tmp_path: Path
) -> None:
    beta = federation.beta
    shared = tmp_path / "node"
    shared.mkdir()
    key, db = shared / "node-key.pem", shared / "federation.db"
    identity = load_or_create_identity(key, name="hub3", member=None)
    beta.registry.add(
        Peer(
            "hub3",
            "http://hub3.invalid",
            "eoshare",
            fingerprint=identity.fingerprint,
            public_key=b64(identity.public_raw),
        )
    )
    env = {
        "EOSHARE_FEDERATION__NAME": "hub3",
        "EOSHARE_FEDERATION__KEY_FILE": str(key),
        "EOSHARE_FEDERATION__DB": str(db),
        "EOSHARE_HOUSEKEEPING__INTERVAL_S": "1",
        "EOSHARE_LOG_LEVEL": "warning",
    }
    try:
        added = run_cli(
            "peers", "add", beta.url, "--fingerprint", beta.fingerprint,
            "--harvest-every", "1h", "--harvest-window", "bad", "--data-dir", str(shared),
            env=env,
        )  # fmt: skip
        assert added.returncode != 0 and "HH:MM-HH:MM" in added.stderr
        added = run_cli(
            "peers", "add", beta.url, "--fingerprint", beta.fingerprint,
            "--harvest-every", "1h", "--data-dir", str(shared), env=env,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        listed = run_cli("peers", "list", "--data-dir", str(shared), env=env)
        assert "harvest:every 3600s" in listed.stdout, listed.stdout
        dirs = [tmp_path / "p1", tmp_path / "p2"]
        for d in dirs:
            d.mkdir()
        with live_node(dirs[0], env), live_node(dirs[1], env):
            deadline = time.monotonic() + 90
            while not _harvest_runs(db):
                assert time.monotonic() < deadline, "no scheduled harvest ran"
                time.sleep(0.5)
            (first,) = _harvest_runs(db)
            time.sleep(4)  # a few more housekeeping passes in both processes
            assert _harvest_runs(db) == [first]  # not due again for an hour
            counts = [_count(d, "beta.b-open") for d in dirs]
        public = len(beta.items["b-open"])
        assert sorted(counts) == [0, public], counts  # one process harvested, once
        for d in dirs:
            assert "Traceback" not in (d / "server.log").read_text()
        due = run_cli("harvest", "--due", "--data-dir", str(dirs[0]), env=env)
        assert due.returncode == 0, due.stderr
        assert "no harvest is due" in due.stdout
        off = run_cli("peers", "set", "beta", "--harvest-every", "off", env=env)
        assert off.returncode == 0 and "by hand" in off.stdout, off.stderr
    finally:
        beta.registry.remove("hub3")


@pytest.mark.parametrize(
    ("window", "hour", "inside"),
    [("22:00-06:00", 23, True), ("22:00-06:00", 5, True), ("22:00-06:00", 12, False),
     ("08:00-17:30", 12, True), ("08:00-17:30", 18, False)],
)  # fmt: skip
def test_harvest_window(window: str, hour: int, inside: bool) -> None:
    from datetime import UTC, datetime

    from eoshare.federation.schedule import in_window

    assert in_window(window, datetime(2026, 1, 1, hour, 15, tzinfo=UTC)) is inside


def test_schedule_units_and_lease(tmp_path: Path) -> None:
    from eoshare.errors import InvalidRequestError
    from eoshare.federation.schedule import Lease, is_due, parse_every

    assert parse_every("90s") == 90 and parse_every("15m") == 900 and parse_every("2d") == 172800
    assert parse_every("off") is None
    for bad in ("1w", "-1h", "0", "soon"):
        with pytest.raises(InvalidRequestError):
            parse_every(bad)
    peer = Peer("p", "http://p", "stac", harvest_every_s=3600)
    now = time.time()
    assert is_due(peer, None, now)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 100))
    assert not is_due(peer, stamp, now)
    assert is_due(peer, stamp, now + 3600)
    assert not is_due(Peer("q", "http://q", "stac"), None, now)  # by hand only
    # two holders of one lease (two processes): one at a time; it lapses when not given back
    from eoshare.leases import Leases

    clock = [now]
    leases = Leases(tmp_path / "node.db", clock=lambda: clock[0])
    a, b = Lease(leases), Lease(leases)
    assert a.acquire(60) and not b.acquire(60)
    clock[0] = now + 1
    assert a.acquire(60)  # its holder extends it
    clock[0] = now + 62
    assert b.acquire(60)  # a died: lapsed
    b.release()
    clock[0] = now + 63
    assert a.acquire(60)
    leases.close()


def test_a_second_runner_waits_while_the_first_harvests(tmp_path: Path) -> None:
    """Two runners of the scheduled harvests at once (two processes): while the first is
    harvesting, the second finds the lease taken and harvests nothing."""
    import threading

    from eoshare.federation.peers import PeerRegistry
    from eoshare.federation.schedule import Lease, run_due_harvests
    from eoshare.leases import Leases

    registry = PeerRegistry(tmp_path / "f.db")
    registry.add(Peer("p", "http://p.invalid", "stac", harvest_every_s=3600))
    leases = Leases(tmp_path / "node.db")
    started, finish = threading.Event(), threading.Event()
    harvested: list[str] = []

    def slow(peer: Peer) -> None:
        harvested.append(peer.name)
        started.set()
        assert finish.wait(30)

    first = threading.Thread(
        target=run_due_harvests, args=(registry, slow), kwargs={"lease": Lease(leases)}
    )
    first.start()
    try:
        assert started.wait(30)
        assert run_due_harvests(registry, slow, lease=Lease(leases)) is None
    finally:
        finish.set()
        first.join(30)
    assert harvested == ["p"]
    leases.close()
