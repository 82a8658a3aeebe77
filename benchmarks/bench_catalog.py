"""Catalogue benchmarks: load rate and peak memory, then search latency through HTTP.

For each size (10k, 100k, 1M items by default):

1. make ``benchmarks/.work/items-<N>.ndjson`` with ``make_items.py`` (once; kept);
2. load it into a fresh ``benchmarks/.work/catalog-<N>.db`` through the real load path
   (``eoshare.ingest.stacdocs.load_documents``, as ``eoshare load`` does) in a child
   process of its own, measuring items/s and peak RSS (``ru_maxrss``), so that one size
   cannot pollute the figures of another;
3. start the real server (uvicorn, ``eoshare.api.app:create_app``) on 127.0.0.1 and a
   free port, and time each query kind over ``--requests`` requests after a warm-up,
   sequentially, with httpx; p50/p95 of the wall time of each request.

Prints a table and writes it to ``benchmarks/RESULTS.md`` (a section per ``--label``,
replaced when the label is already there).

    python benchmarks/bench_catalog.py --quick               # 10k only
    python benchmarks/bench_catalog.py --sizes 10000,100000
    python benchmarks/bench_catalog.py                        # 10k, 100k, 1M
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
RESULTS = HERE / "RESULTS.md"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
TARGET_BBOX_MS = 20.0
TARGET_OTHER_MS = 50.0
TARGET_LOAD_RATE = 5_000.0

sys.path.insert(0, str(HERE))


# --- loading (runs in a child process) -----------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_anon_bytes() -> int:
    """Resident memory that is the process's own (not pages of mapped files such as the
    catalogue, which SQLite reads through mmap)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def load_child(db: Path, ndjson: Path) -> dict[str, Any]:
    """Load one file into a fresh catalogue; what it cost. Runs in its own process."""
    from eoshare.catalog import open_catalog
    from eoshare.ingest.stacdocs import load_documents

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    rss_before = _rss_bytes()
    samples: list[int] = []
    anon: list[int] = [_rss_anon_bytes()]
    stop = threading.Event()

    def sample() -> None:  # RSS every second, to show whether it grows with the file
        while not stop.wait(1.0):
            samples.append(_rss_bytes())
            anon.append(_rss_anon_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    catalog = open_catalog(f"sqlite:///{db}")
    started = time.perf_counter()
    report = load_documents(
        [ndjson], catalog=catalog, on_conflict="error", create_collections=True, batch_size=1000
    )
    catalog.close()  # the last connection: SQLite checkpoints the WAL here
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if not report.ok:
        raise SystemExit(f"load failed: {report.problems[:5]}")
    n = report.inserted
    third = max(len(samples) // 3, 1)
    return {
        "items": n,
        "seconds": seconds,
        "items_per_s": n / seconds,
        "rss_before_mb": rss_before / 2**20,
        # ru_maxrss is in KiB on Linux
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_anon_mb": max(anon) / 2**20,
        # the median RSS over the first and the last third of the load: equal if flat
        "rss_first_third_mb": statistics.median(samples[:third]) / 2**20 if samples else None,
        "rss_last_third_mb": statistics.median(samples[-third:]) / 2**20 if samples else None,
        "db_mb": db.stat().st_size / 2**20,
    }


def run_load(db: Path, ndjson: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "_load", str(db), str(ndjson)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- the server ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``uvicorn eoshare.api.app:create_app --factory`` on 127.0.0.1, in a child process."""

    def __init__(self, db: Path, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "EOSHARE_DATA_DIR": str(data_dir),
            "EOSHARE_CATALOG": f"sqlite:///{db}",
            "EOSHARE_LOG_LEVEL": "warning",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "eoshare.api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            cwd=ROOT,
        )

    def wait_ready(self, client: Any, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with {self.proc.returncode}")
            try:
                if client.get(f"{self.base}/").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not answer within 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the queries --------------------------------------------------------------------------
@dataclass
class Kind:
    name: str
    target_ms: float
    # (rng, ids) -> query parameters of one request
    make: Callable[[random.Random, list[str]], list[tuple[str, str]]]


def _bbox_datetime(rng: random.Random, ids: list[str]) -> list[tuple[str, str]]:
    x, y = rng.uniform(-178, 176), rng.uniform(-78, 76)
    year = rng.randrange(2015, 2025)
    return [
        ("bbox", f"{x:.4f},{y:.4f},{x + 2:.4f},{y + 2:.4f}"),
        ("datetime", f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z"),
        ("limit", "10"),
    ]


def _cql2_cloud(rng: random.Random, ids: list[str]) -> list[tuple[str, str]]:
    return [
        ("filter", f"eo:cloud_cover < {rng.randrange(5, 20)}"),
        ("filter-lang", "cql2-text"),
        ("limit", "10"),
    ]


def _ids(rng: random.Random, ids: list[str]) -> list[tuple[str, str]]:
    return [("ids", ",".join(rng.sample(ids, 5)))]


def _sort_desc(rng: random.Random, ids: list[str]) -> list[tuple[str, str]]:
    return [("sortby", "-datetime"), ("limit", "10")]


COLLECTIONS = ("landsat-8-c2-l2", "sentinel-2-l2a")


def _page(page: int) -> Callable[[random.Random, list[str]], list[tuple[str, str]]]:
    from eoshare.api.params import encode_token

    def make(rng: random.Random, ids: list[str]) -> list[tuple[str, str]]:
        params = [("collections", rng.choice(COLLECTIONS)), ("limit", "10")]
        if page > 1:
            params.append(("token", encode_token((page - 1) * 10)))
        return params

    return make


KINDS = [
    Kind("bbox+datetime, limit 10", TARGET_BBOX_MS, _bbox_datetime),
    Kind("CQL2 eo:cloud_cover < x", TARGET_OTHER_MS, _cql2_cloud),
    Kind("ids (5)", TARGET_OTHER_MS, _ids),
    Kind("sortby -datetime", TARGET_OTHER_MS, _sort_desc),
    Kind("paged search, page 1", TARGET_OTHER_MS, _page(1)),
    Kind("paged search, page 50", TARGET_OTHER_MS, _page(50)),
]


@dataclass
class Latency:
    kind: str
    target_ms: float
    times_ms: list[float] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    capped: bool = False

    def pct(self, p: float) -> float:
        data = sorted(self.times_ms)
        k = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        return data[k]


def check_paging(client: Any, base: str) -> None:
    """The 50th page is reached with a token; make sure our token is what the API's next
    link carries (follow one next link)."""
    from urllib.parse import parse_qs, urlparse

    from eoshare.api.params import decode_token

    body = client.get(f"{base}/search", params={"collections": COLLECTIONS[0], "limit": 10}).json()
    nxt = next(link for link in body["links"] if link["rel"] == "next")
    token = parse_qs(urlparse(nxt["href"]).query)["token"][0]
    if decode_token(token) != 10:
        raise SystemExit(f"unexpected paging token {token!r} in {nxt['href']}")


def measure(
    base: str, ids: list[str], *, requests: int, warmup: int, budget_s: float, seed: int
) -> list[Latency]:
    import httpx

    results = []
    with httpx.Client(timeout=120.0) as client:
        check_paging(client, base)
        for kind in KINDS:
            rng = random.Random(f"{seed}-{kind.name}")
            lat = Latency(kind.name, kind.target_ms)
            # Warm-up, then timed requests; both bounded in count and in time (a slow
            # kind gets fewer requests, at least 5 timed ones, and is flagged).
            warm_deadline = time.monotonic() + budget_s / 4
            for _ in range(warmup):
                r = client.get(f"{base}/search", params=tuple(kind.make(rng, ids)))
                if r.status_code != 200:
                    raise SystemExit(f"{kind.name}: HTTP {r.status_code}: {r.text[:500]}")
                if time.monotonic() > warm_deadline:
                    break
            deadline = time.monotonic() + budget_s
            for _ in range(requests):
                params = kind.make(rng, ids)
                t0 = time.perf_counter()
                r = client.get(f"{base}/search", params=tuple(params))
                dt = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise SystemExit(f"{kind.name}: HTTP {r.status_code}: {r.text[:500]}")
                lat.times_ms.append(dt)
                lat.returned.append(r.json()["numberReturned"])
                if time.monotonic() > deadline and len(lat.times_ms) >= 5:
                    lat.capped = True
                    break
            results.append(lat)
            print(
                f"  {kind.name:28s} p50 {lat.pct(50):8.1f} ms  p95 {lat.pct(95):8.1f} ms"
                f"  (n={len(lat.times_ms)}, returned~{statistics.mean(lat.returned):.1f})",
                flush=True,
            )
    return results


def sample_ids(db: Path, n: int, seed: int) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (maxrow,) = conn.execute("SELECT max(rowid) FROM items").fetchone()
        rng = random.Random(seed)
        rows = [rng.randrange(1, maxrow + 1) for _ in range(n)]
        ids = []
        for r in rows:
            row = conn.execute("SELECT id FROM items WHERE rowid = ?", (r,)).fetchone()
            if row:
                ids.append(row[0])
        return ids
    finally:
        conn.close()


# --- reporting ----------------------------------------------------------------------------
def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} cores, {model}",
        "ram": f"{mem_kb / 2**20:.1f} GiB",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": platform.platform(),
        "commit": commit,
    }


def _n(size: int) -> str:
    return (
        f"{size // 1_000_000}M"
        if size >= 1_000_000 and size % 1_000_000 == 0
        else (f"{size // 1000}k" if size % 1000 == 0 else str(size))
    )


def render(
    label: str,
    info: dict[str, str],
    loads: dict[int, dict[str, Any]],
    lats: dict[int, list[Latency]],
    args: argparse.Namespace,
) -> str:
    sizes = sorted(loads)
    out = [f"## {label}", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [
        f"- method: `python benchmarks/bench_catalog.py --sizes {','.join(map(str, sizes))}`; "
        f"{args.requests} requests per kind after {args.warmup} warm-up ones, sequential, "
        f"one client, through HTTP (uvicorn, one worker) on 127.0.0.1",
        "",
        "### Load (`load_documents`, batches of 1000, one process per size)",
        "",
        "| items | seconds | items/s | peak RSS (MiB) | peak anon RSS (MiB) "
        "| RSS 1st third / last third (MiB) | catalogue (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        r = loads[s]
        third = (
            f"{r['rss_first_third_mb']:.0f} / {r['rss_last_third_mb']:.0f}"
            if r.get("rss_first_third_mb") is not None
            else "-"
        )
        out.append(
            f"| {_n(s)} | {r['seconds']:.1f} | {r['items_per_s']:.0f} | {r['peak_rss_mb']:.0f} "
            f"| {r.get('peak_rss_anon_mb', 0):.0f} | {third} | {r['db_mb']:.0f} |"
        )
    out += ["", "### Search latency, ms (p50 / p95)", ""]
    header = "| query | target p50 | " + " | ".join(_n(s) for s in sizes) + " |"
    out += [header, "|---|---:|" + "---:|" * len(sizes)]
    for i, kind in enumerate(KINDS):
        cells = []
        for s in sizes:
            if s not in lats:
                cells.append("-")
                continue
            lat = lats[s][i]
            mark = "" if lat.pct(50) < kind.target_ms else " ✗"
            cap = f" (n={len(lat.times_ms)})" if lat.capped else ""
            cells.append(f"{lat.pct(50):.1f} / {lat.pct(95):.1f}{mark}{cap}")
        out.append(f"| {kind.name} | < {kind.target_ms:.0f} | " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


def update_results(section: str, label: str, path: Path = RESULTS) -> None:
    head = (
        "# Benchmark results\n\n"
        "`make bench` runs every script in `benchmarks/` (see `benchmarks/README.md`).\n\n"
    )
    text = path.read_text() if path.exists() else head
    pattern = re.compile(rf"^## {re.escape(label)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


# --- main ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="comma-separated item counts (default 10000,100000,1000000)",
    )
    parser.add_argument("--quick", action="store_true", help="10k items only")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per kind")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per kind first")
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds at most per query kind and size (then fewer requests)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep an already loaded catalogue (skip the load measurement)",
    )
    parser.add_argument("--label", default="Latest run", help="the RESULTS.md section to write")
    parser.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    sizes = [10_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]

    from make_items import write_ndjson

    info = machine()
    loads: dict[int, dict[str, Any]] = {}
    lats: dict[int, list[Latency]] = {}
    for size in sizes:
        ndjson = WORK / f"items-{size}.ndjson"
        db = WORK / f"catalog-{size}.db"
        if not ndjson.exists():
            print(f"[{_n(size)}] writing {ndjson.name} ...", flush=True)
            write_ndjson(size, ndjson, seed=args.seed)
        if args.reuse and db.exists() and (WORK / f"load-{size}.json").exists():
            loads[size] = json.loads((WORK / f"load-{size}.json").read_text())
            print(f"[{_n(size)}] reusing {db.name}", flush=True)
        else:
            print(f"[{_n(size)}] loading ...", flush=True)
            loads[size] = run_load(db, ndjson)
            (WORK / f"load-{size}.json").write_text(json.dumps(loads[size]))
        r = loads[size]
        print(
            f"[{_n(size)}] load: {r['items']} items in {r['seconds']:.1f} s = "
            f"{r['items_per_s']:.0f} items/s, peak RSS {r['peak_rss_mb']:.0f} MiB",
            flush=True,
        )
        ids = sample_ids(db, 2000, args.seed)
        server = Server(db, WORK / f"data-{size}")
        try:
            import httpx

            with httpx.Client(timeout=10.0) as c:
                server.wait_ready(c)
            print(f"[{_n(size)}] search latency through {server.base}:", flush=True)
            lats[size] = measure(
                server.base,
                ids,
                requests=args.requests,
                warmup=args.warmup,
                budget_s=args.budget,
                seed=args.seed,
            )
        finally:
            server.stop()

    section = render(args.label, info, loads, lats, args)
    print()
    print(section)
    if not args.no_results:
        update_results(section, args.label)
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_load":
        print(json.dumps(load_child(Path(sys.argv[2]), Path(sys.argv[3]))))
        raise SystemExit(0)
    raise SystemExit(main())
