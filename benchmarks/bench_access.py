"""What enforcing agreements costs.

1. Search latency at N items (100k by default) with and without the visibility filter,
   side by side in one run: the same queries alternate between ``visible=None`` and the
   filter an anonymous caller gets (one provider-only collection hidden, one embargoed
   for 365 days), through the real SQLite catalogue. p50/p95 and the p50 ratio.
   Target: under 10 % added at p50.
2. The per-request cost of access on a tile or download path: ``visible_filter`` (cached),
   ``decide`` for a tile (open; reduced) and for a download (with terms: one indexed
   read), and authenticating an API token. Target: under 1 ms.

The catalogue is ``benchmarks/.work/access-catalog-<N>.db``, built (once, then kept) from
``make_items.py``'s items through the real load path, as ``bench_catalog.py`` does; each
run works on a copy made with SQLite's backup API.

    python benchmarks/bench_access.py                # 100k items
    python benchmarks/bench_access.py --size 10000   # quicker
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
sys.path.insert(0, str(HERE))

import bench_catalog  # noqa: E402
from eoshare.access.agreements import Member, agreement_from_dict  # noqa: E402
from eoshare.access.base import Action, Principal  # noqa: E402
from eoshare.access.policy import AgreementPolicy  # noqa: E402
from eoshare.access.store import AccessStore  # noqa: E402
from eoshare.catalog import open_catalog  # noqa: E402
from eoshare.catalog.base import SearchQuery  # noqa: E402
from eoshare.catalog.geometry import bbox_geometry  # noqa: E402
from eoshare.catalog.validate import parse_datetime  # noqa: E402


def catalogue(size: int, into: Path) -> Path:
    # its own copy, built like bench_catalog's, so that the two never share a file
    src = WORK / f"access-catalog-{size}.db"
    if not src.exists():
        ndjson = WORK / f"items-{size}.ndjson"
        WORK.mkdir(parents=True, exist_ok=True)
        if not ndjson.exists():
            import subprocess

            subprocess.run(
                [sys.executable, str(HERE / "make_items.py"), str(size), str(ndjson)], check=True
            )
        bench_catalog.run_load(src, ndjson)
    dst = into / "catalog.db"
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def queries(rng: random.Random, ids: list[str], collections: list[str]) -> list[SearchQuery]:
    x, y = rng.uniform(-178, 176), rng.uniform(-78, 76)
    year = rng.randrange(2015, 2025)
    _ = bbox_geometry
    return [
        SearchQuery(
            bbox=(x, y, x + 2, y + 2),
            datetime_start=parse_datetime(f"{year}-01-01T00:00:00Z"),
            datetime_end=parse_datetime(f"{year}-12-31T23:59:59Z"),
            limit=10,
        ),
        SearchQuery(ids=tuple(rng.sample(ids, 5))),
        SearchQuery(collections=(rng.choice(collections),), limit=10),
        SearchQuery(limit=10, offset=490),
    ]


KINDS = ["bbox+datetime, limit 10", "ids (5)", "one collection, page 1", "all, page 50"]


def bench_search(db: Path, access_db: Path, n: int, seed: int) -> dict[str, Any]:
    catalog = open_catalog(f"sqlite:///{db}")
    conn = sqlite3.connect(db)
    # smallest collection first: it is the provider-only one, the next one embargoed,
    # the largest open (most data open, as on a real node)
    collections = [
        r[0]
        for r in conn.execute(
            "SELECT collection FROM items GROUP BY collection ORDER BY count(*), collection"
        )
    ]
    ids = [r[0] for r in conn.execute("SELECT id FROM items ORDER BY random() LIMIT 2000")]
    conn.close()
    store = AccessStore(access_db)
    for code, country in (("ke", "KE"), ("vn", "VN")):
        store.put_member(Member(code, code, country), who="bench")
    # the smallest collection provider-only, the next embargoed a year, the rest open
    terms = [
        {"access": "provider"},
        {"access": "partners", "partners": ["vn"], "embargo_days": 365},
    ]
    for cid, t in zip(collections, terms, strict=False):
        store.put_agreement(
            agreement_from_dict({"collection": cid, "provider": "ke", **t}), who="bench"
        )
    policy = AgreementPolicy(store)
    scenarios = {
        # hides the smallest collection and the last year of the next one
        "anonymous": policy.visible_filter(Principal()),
        # a partner of the embargoed collection: only the provider-only one is hidden
        "partner member": policy.visible_filter(Principal(user="binh", member="vn")),
    }
    out = {
        name: _search_rows(catalog, visible, ids, collections, n, seed)
        for name, visible in scenarios.items()
    }
    catalog.close()
    store.close()
    return {"scenarios": out, "filters": scenarios}


def _search_rows(
    catalog: Any, visible: Any, ids: list[str], collections: list[str], n: int, seed: int
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    times: dict[tuple[str, bool], list[float]] = {(k, f): [] for k in KINDS for f in (0, 1)}
    matched: dict[bool, int] = {False: 0, True: 0}
    for i in range(n + 10):
        batch = queries(rng, ids, collections)
        order = (False, True) if i % 2 == 0 else (True, False)
        for kind, q in zip(KINDS, batch, strict=True):
            for filtered in order:
                query = replace(q, visible=visible if filtered else None)
                t0 = time.perf_counter()
                page = catalog.search(query)
                dt = (time.perf_counter() - t0) * 1000
                if i >= 10:  # warm-up
                    times[(kind, filtered)].append(dt)
                    matched[filtered] += len(page.items)
    rows = []
    for kind in KINDS:
        off, on = times[(kind, False)], times[(kind, True)]
        rows.append(
            {
                "kind": kind,
                "off": (statistics.median(off), pct(off, 0.95)),
                "on": (statistics.median(on), pct(on, 0.95)),
                "ratio": statistics.median(on) / statistics.median(off),
            }
        )
    return rows


def bench_decisions(access_db: Path, n: int) -> list[tuple[str, float, float]]:
    store = AccessStore(access_db)
    for code, country in (("ke", "KE"), ("vn", "VN")):
        store.put_member(Member(code, code, country), who="bench")
    for cid, t in {
        "open": {"access": "open"},
        "reduced": {"access": "provider", "reduced_resolution_m": 100},
        "terms": {"access": "open", "terms": "Peaceful use only."},
    }.items():
        store.put_agreement(
            agreement_from_dict({"collection": cid, "provider": "ke", **t}), who="b"
        )
    store.put_user("amina", member="vn", roles=["analyst"], who="b")
    store.accept_terms("amina", "terms")
    _, token = store.create_token("amina", days=1, who="b")
    policy = AgreementPolicy(store)
    caller = Principal(user="amina", member="vn", country="VN")
    when = datetime.now(UTC).isoformat()

    def item(cid: str) -> dict[str, Any]:
        return {"id": "x", "collection": cid, "properties": {"datetime": when}}

    cases: list[tuple[str, Callable[[], object]]] = [
        ("visible_filter (cached)", lambda: policy.visible_filter(caller)),
        ("decide tile, open", lambda: policy.decide(caller, item("open"), "B04", Action.TILE)),
        (
            "decide tile, reduced to 100 m",
            lambda: policy.decide(caller, item("reduced"), "B04", Action.TILE),
        ),
        (
            "decide download, terms accepted",
            lambda: policy.decide(caller, item("terms"), "B04", Action.DOWNLOAD),
        ),
        ("authenticate API token", lambda: store.user_for_token(token)),
    ]
    out = []
    for name, fn in cases:
        for _ in range(200):
            fn()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e6)
        out.append((name, statistics.median(samples), pct(samples, 0.99)))
    store.close()
    return out


def render(size: int, search: dict[str, Any], decisions: list[tuple[str, float, float]],
           n: int, m: dict[str, str]) -> str:  # fmt: skip
    lines = [
        "## Access enforcement (bench_access.py)",
        "",
        *(f"- {k}: {v}" for k, v in m.items()),
        f"- method: `python benchmarks/bench_access.py --size {size}`; {n} rounds per query "
        "kind after 10 warm-up ones, in-process on the SQLite catalogue, with and without "
        "the anonymous caller's visibility filter alternating in the same run",
        "- agreements: the smallest collection provider-only; the next partners-only "
        "(partner `vn`) with a 365-day embargo; the largest has none (open)",
        *(f"- filter, {name}: `{f}`" for name, f in search["filters"].items()),
    ]
    for name, rows in search["scenarios"].items():
        lines += [
            "",
            f"### Search at {bench_catalog._n(size)} items, caller {name}, ms (p50 / p95), "
            "target < 10 % at p50",
            "",
            "| query | no filter | with filter | p50 ratio |",
            "|---|---:|---:|---:|",
        ]
        for r in rows:
            ok = "" if r["ratio"] < 1.10 else " ✗"
            lines.append(
                f"| {r['kind']} | {r['off'][0]:.2f} / {r['off'][1]:.2f} | "
                f"{r['on'][0]:.2f} / {r['on'][1]:.2f} | {r['ratio']:.2f}{ok} |"
            )
    lines += [
        "",
        "### Per-request decision cost, µs (p50 / p99), target < 1000",
        "",
        "| step | p50 | p99 |",
        "|---|---:|---:|",
        *(f"| {name} | {p50:.1f} | {p99:.1f} |" for name, p50, p99 in decisions),
    ]
    return "\n".join(lines) + "\n" + NOTES


NOTES = """
### Reading these figures

- A decision on a tile or download path costs microseconds (target < 1 ms: met by
  more than two orders of magnitude); authenticating an API token (SHA-256 plus one
  indexed read) about 20 µs.
- Search: queries that read a page through an index (bbox+datetime, ids, one
  collection's first page) add 0-12 % at p50 (noisy at this size on a shared 2-core
  machine: sub-millisecond queries). The misses are queries whose cost is the
  `numberMatched` count over most of the catalogue ("all, page 50"; "one collection"
  when the filter must drop rows of it): unfiltered, SQLite counts a table or index range
  with its count opcode; filtered, it must test the predicate on each of the ~100k index
  entries (still a covering-index scan, no document is read). The filter's own cost per
  row is what remains: a member whose filter hides 0.2 % of the items still pays +58 % on
  "all, page 50". Target not met there. The fix belongs to the catalogue (fold the
  collection terms of the visibility filter against the query's `collections` before
  translating, and keep per-collection counts so that `NOT collection IN (...)` becomes
  total minus the hidden collections' counts); the access side already gives the
  smallest filter it can (none for operators and callers who may see everything).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="Print only.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eoshare-bench-access-") as tmp:
        db = catalogue(args.size, Path(tmp))
        search = bench_search(db, Path(tmp) / "access.db", args.rounds, args.seed)
        decisions = bench_decisions(Path(tmp) / "decisions.db", 5000)
    text = render(args.size, search, decisions, args.rounds, bench_catalog.machine())
    print(text)
    if not args.no_write:
        bench_catalog.update_results(text.rstrip("\n"), "Access enforcement (bench_access.py)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
