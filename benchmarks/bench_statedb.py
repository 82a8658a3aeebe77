"""Node state on SQLite and on PostgreSQL (``EOSHARE_DATABASE``), side by side: the store
operations on the request path (token check, audit insert, quota reservation) per call,
and ``eoshare migrate``'s state copy (rows per second, SQLite to PostgreSQL and back).

PostgreSQL is a throwaway cluster started here (``tests/pg.py``: initdb + pg_ctl in a
temporary folder on 127.0.0.1, durability settings of a test cluster).

    .venv/bin/python benchmarks/bench_statedb.py [--calls 2000] [--audit-rows 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from eoshare.access.agreements import Member  # noqa: E402
from eoshare.access.store import AccessStore, QuotaClaim  # noqa: E402
from eoshare.state_migrate import migrate_state  # noqa: E402


def _per_call(fn: Callable[[int], Any], calls: int) -> tuple[float, float]:
    """p50 and p95 in microseconds."""
    times = []
    for n in range(calls):
        t = time.perf_counter()
        fn(n)
        times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


def _requests(location: Any, calls: int) -> dict[str, tuple[float, float]]:
    store = AccessStore(location)
    store.put_member(Member("vn", "Viet Nam", "VN"), who="bench")
    store.put_user("v", member="vn", roles=["analyst"], who="bench")
    _, secret = store.create_token("v", days=1, who="bench")
    claim = [QuotaClaim("u:v", "c", "bytes", 1, 10**12)]
    try:
        return {
            "token check": _per_call(lambda n: store.user_and_token(secret), calls),
            "audit insert": _per_call(
                lambda n: store.record(
                    username="v",
                    member="vn",
                    country="VN",
                    collection="c",
                    item=f"i{n}",
                    asset="data",
                    action="download",
                    decision="full",
                    nbytes=n,
                ),
                calls,
            ),
            "quota reserve": _per_call(lambda n: store.reserve(claim, "2026-01-01"), calls),
        }
    finally:
        store.close()


def _fill_audit(path: Path, rows: int) -> None:
    store = AccessStore(path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with store._tx() as conn:
        conn.executemany(
            "INSERT INTO audit (at, day, username, member, country, collection, item, asset, "
            "action, decision, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    (start + timedelta(seconds=n)).isoformat(),
                    "2026-01-01",
                    f"u{n % 50}",
                    "vn",
                    "VN",
                    "c",
                    f"i{n}",
                    "data",
                    "download",
                    "full",
                    n,
                )
                for n in range(rows)
            ],
        )
    store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--audit-rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    from pg import pg_cluster

    print(f"# load average at start: {os.getloadavg()[0]:.1f}")
    with pg_cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sqlite = _requests(folder / "req" / "access.db", args.calls)
        url = cluster.url(cluster.new_state_database())
        postgres = _requests(url, args.calls)
        print("| operation | SQLite p50/p95 µs | PostgreSQL p50/p95 µs | ratio p50 |")
        print("|---|---|---|---|")
        for op in sqlite:
            s, p = sqlite[op], postgres[op]
            print(f"| {op} | {s[0]:.0f} / {s[1]:.0f} | {p[0]:.0f} / {p[1]:.0f} | "
                  f"{p[0] / s[0]:.1f}x |")  # fmt: skip
        embedded = folder / "embedded"
        embedded.mkdir()
        _fill_audit(embedded / "access.db", args.audit_rows)
        target = cluster.url(cluster.new_state_database())
        t = time.perf_counter()
        up = migrate_state(lambda f: embedded / f, lambda f: target)
        up_s = time.perf_counter() - t
        back = folder / "back"
        back.mkdir()
        t = time.perf_counter()
        down = migrate_state(lambda f: target, lambda f: back / f)
        down_s = time.perf_counter() - t
        assert up.ok and down.ok, up.problems + down.problems
        print(f"\nmigrate state, {up.rows} rows (with verification): SQLite -> PostgreSQL "
              f"{up_s:.1f} s ({up.rows / up_s:,.0f} rows/s), back {down_s:.1f} s "
              f"({down.rows / down_s:,.0f} rows/s)")  # fmt: skip
    print(f"# load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
