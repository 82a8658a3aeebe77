"""The lease table (``eoshare.leases``) on SQLite and PostgreSQL: one holder at a time,
renewed by its holder, taken over once expired, given up on release; many processes
racing for a free lease, exactly one wins."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from eoshare.leases import Leases


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "node.db")
    cluster: Any = request.getfixturevalue("pg")
    url: str = cluster.new_catalog_url()
    return url


def test_one_holder_renewal_expiry_and_release(location: str) -> None:
    now = [1000.0]
    leases = Leases(location, clock=lambda: now[0])
    try:
        assert leases.acquire("chore", "p1", ttl_s=10)
        assert not leases.acquire("chore", "p2", ttl_s=10)
        now[0] += 5
        assert leases.acquire("chore", "p1", ttl_s=10)  # renewed: now until 1015
        first = leases.get("chore")
        assert first is not None and first.holder == "p1" and first.expires_at == 1015.0
        now[0] += 9  # 1014: not expired yet
        assert not leases.acquire("chore", "p2", ttl_s=10)
        now[0] += 2  # 1016: p1 died without renewing
        assert leases.acquire("chore", "p2", ttl_s=10)
        assert not leases.acquire("chore", "p1", ttl_s=10)
        taken = leases.get("chore")
        assert taken is not None and taken.holder == "p2" and taken.acquired_at == 1016.0
        leases.release("chore", "p1")  # not its lease: nothing happens
        assert leases.get("chore") is not None
        leases.release("chore", "p2")
        assert leases.get("chore") is None
        assert leases.acquire("chore", "p1", ttl_s=10)
        assert leases.acquire("other", "p2", ttl_s=10)  # leases are per name
    finally:
        leases.close()


def _race(location: str, holder: str, start: Any, results: Any) -> None:
    leases = Leases(location)
    try:
        start.wait()
        results.put((holder, leases.acquire("race", holder, ttl_s=60)))
    finally:
        leases.close()


def test_processes_racing_for_a_free_lease_one_wins(location: str) -> None:
    first = Leases(location)
    assert first.get("race") is None  # the table exists before the race
    first.close()
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(location, f"p{n}", start, results)) for n in range(5)]
    for p in procs:
        p.start()
    start.set()
    outcome = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    winners = [h for h, won in outcome if won]
    assert len(winners) == 1, outcome
    leases = Leases(location)
    try:
        lease = leases.get("race")
        assert lease is not None and lease.holder == winners[0]
    finally:
        leases.close()
