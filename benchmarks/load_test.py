#!/usr/bin/env python3
"""Load: many clients at once against one ``eoshare serve``, mixing what users do.

    .venv/bin/python benchmarks/load_test.py --clients 16 --seconds 20      # the short one
    .venv/bin/python benchmarks/load_test.py --clients 64 --seconds 300     # make bench

The node holds the shared real Sentinel-2 scene (ingested: tiles, downloads) and ~300
real STAC items (searches). Half the clients are anonymous, half a member's analyst with
a token. Each client loops over: a search (random box and dates), an item page, a map
tile, a byte range of an asset, and a signed link fetched and followed (range). Every
request counts; an error is a transport failure or any status other than the expected.

While it runs, the server's resident memory (all its processes), open file descriptors
and open SQLite files are sampled every second. The report gives requests, errors,
p50/p95/p99 per kind, throughput, and memory/fd figures: first sample after warm-up,
last, highest. Exit status 1 when any request failed, memory grew by more than
``--max-growth`` after warm-up, or descriptors kept climbing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import morecantile

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EOSHARE_SHARED_DATA", REPO.parent / "shared" / "data"))
SCENE = "S2A_29RKH_20200219_0_L2A"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float, error: str | None = None) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            if error is not None and len(self.errors) < 1000:
                self.errors.append(f"{kind}: {error}")


def eoshare(data_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env["EOSHARE_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-m", "eoshare.cli", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"error: eoshare {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def build_node(data_dir: Path) -> str:
    """Ingest the scene, load real items, add a member, an analyst and a token."""
    raster = SHARED / "raster"
    eoshare(
        data_dir, "ingest", *(str(raster / f"{SCENE}_{b}.tif") for b in ("B04", "B08", "TCI")),
        "-c", "s2-load", "--create-collection",
    )  # fmt: skip
    items = data_dir.parent / "items.ndjson"
    with items.open("w") as out:
        for name in (
            "landsat-8-c2-l2_netherlands_pc.ndjson",
            "sentinel-2-l2a_pc_and_earthsearch.ndjson",
        ):
            for line in (SHARED / "stac" / name).read_text().splitlines():
                if line.strip():
                    doc = json.loads(line)
                    doc["links"] = []
                    out.write(json.dumps(doc) + "\n")
    eoshare(data_dir, "load", str(items), "--create-collections", "--on-conflict", "skip")
    eoshare(data_dir, "members", "add", "ld-ag", "--country", "KE", "--name", "Load agency")
    eoshare(data_dir, "users", "add", "loader", "--member", "ld-ag", "--roles", "analyst")
    return eoshare(data_dir, "tokens", "create", "loader", "--days", "1")


def serve(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.update({"EOSHARE_DATA_DIR": str(data_dir), "EOSHARE_LOG_LEVEL": "warning"})
    with (data_dir / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eoshare.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(workers)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(
                f"error: the node did not start: {(data_dir / 'serve.log').read_text()}"
            )
        time.sleep(0.2)


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            pids += process_tree(int(child))
    return pids


def sample(pid: int) -> dict[str, int]:
    rss = fds = sqlite_files = catalog_files = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss += int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
            for fd in Path(f"/proc/{p}/fd").iterdir():
                fds += 1
                try:
                    target = os.readlink(fd)
                    if target.endswith(".db"):
                        sqlite_files += 1
                        catalog_files += target.endswith("catalog.db")
                except OSError:
                    pass
        except (OSError, StopIteration):
            continue
    return {
        "rss_kib": rss, "fds": fds, "sqlite_files": sqlite_files, "catalog_files": catalog_files
    }  # fmt: skip


def client_loop(
    url: str, token: str | None, deadline: float, tally: Tally, seed: int, item: dict[str, Any]
) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    asset = item["assets"]["B04"]
    size = int(asset["file:size"])
    # tiles inside the scene's footprint, zooms 8 to 11
    west, south, east, north = item["bbox"]
    mercator = morecantile.tms.get("WebMercatorQuad")
    tiles = []
    for z in (8, 9, 10, 11):
        for fx, fy in ((0.3, 0.3), (0.5, 0.5), (0.7, 0.6)):
            t = mercator.tile(west + fx * (east - west), south + fy * (north - south), z)
            tiles.append((t.x, t.y, t.z))
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:

        def call(kind: str, method: str, target: str, expect: tuple[int, ...], **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                answer = http.request(method, target, **kw)
            except httpx.HTTPError as exc:
                tally.add(kind, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
                return None
            error = None if answer.status_code in expect else f"{answer.status_code} {target}"
            tally.add(kind, time.perf_counter() - started, error)
            return answer

        while time.monotonic() < deadline:
            lon, lat = rng.uniform(-20, 20), rng.uniform(20, 56)
            year = rng.choice([2017, 2019, 2020, 2021, 2022])
            box = f"{lon - 5},{lat - 3},{lon + 5},{lat + 3}"
            when = f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z"
            call("search", "GET", f"/search?bbox={box}&datetime={when}&limit=10", (200,))
            call("item", "GET", f"/collections/s2-load/items/{SCENE}", (200,))
            tx, ty, tz = tiles[rng.randrange(len(tiles))]
            call("tile", "GET", f"/tiles/collections/s2-load/items/{SCENE}/tiles/WebMercatorQuad/"
                 f"{tz}/{tx}/{ty}.png?assets=B04&rescale=0,3000", (200,))  # fmt: skip
            start = rng.randrange(0, max(size - 65536, 1))
            call("download", "GET", asset["href"].removeprefix(url), (206,),
                 headers={"Range": f"bytes={start}-{start + 65535}"})  # fmt: skip
            signed = call("sign", "GET", f"/collections/s2-load/items/{SCENE}?sign=true", (200,))
            if signed is not None and signed.status_code == 200:
                href = signed.json()["assets"]["B04"]["href"]
                call("signed", "GET", href.removeprefix(url), (206,),
                     headers={"Range": "bytes=0-4095"})  # fmt: skip


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--max-growth", type=float, default=0.25,
                        help="largest allowed RSS growth after warm-up (fraction)")  # fmt: skip
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()
    if not (SHARED / "PROVENANCE.md").is_file():
        print(f"error: the shared test data is missing: {SHARED}", file=sys.stderr)
        return 1
    work = args.workdir or Path(tempfile.mkdtemp(prefix="eoshare-load-"))
    data_dir = work / "node"
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"building the node in {data_dir} ...", file=sys.stderr)
    token = build_node(data_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = serve(data_dir, port, args.workers)
    url = f"http://127.0.0.1:{port}"
    tally = Tally()
    samples: list[tuple[float, dict[str, int]]] = []
    try:
        item = httpx.get(f"{url}/collections/s2-load/items/{SCENE}").json()
        started = time.monotonic()
        deadline = started + args.seconds
        clients = [
            threading.Thread(
                target=client_loop,
                args=(url, token if n % 2 else None, deadline, tally, n, item),
                daemon=True,
            )
            for n in range(args.clients)
        ]
        for c in clients:
            c.start()
        while any(c.is_alive() for c in clients):
            samples.append((time.monotonic() - started, sample(proc.pid)))
            time.sleep(1.0)
        elapsed = time.monotonic() - started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    warm = [s for t, s in samples if t >= args.seconds * 0.2] or [samples[-1][1]]
    first, last = warm[0], warm[-1]
    highest = max(s["rss_kib"] for _, s in samples)
    growth = (last["rss_kib"] - first["rss_kib"]) / max(first["rss_kib"], 1)
    total = sum(len(v) for v in tally.latencies.values())
    report = {
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "workers": args.workers,
        "requests": total,
        "errors": len(tally.errors),
        "throughput_rps": round(total / elapsed, 1),
        "latency_ms": {
            kind: {
                "n": len(v),
                "p50": round(statistics.median(v) * 1000, 1),
                "p95": round(pct(v, 0.95), 1),
                "p99": round(pct(v, 0.99), 1),
            }
            for kind, v in sorted(tally.latencies.items())
        },
        "rss_mib": {
            "after_warmup": round(first["rss_kib"] / 1024),
            "end": round(last["rss_kib"] / 1024),
            "highest": round(highest / 1024),
            "growth": round(growth, 3),
        },
        "fds": {
            "after_warmup": first["fds"],
            "end": last["fds"],
            "highest": max(s["fds"] for _, s in samples),
        },
        "sqlite_files_open": {
            "end": last["sqlite_files"],
            "highest": max(s["sqlite_files"] for _, s in samples),
        },
        # connections to the catalogue (its pool: at most 8 per server process)
        "catalog_files_open": {
            "end": last["catalog_files"],
            "highest": max(s["catalog_files"] for _, s in samples),
        },
        "first_errors": tally.errors[:10],
    }
    print(f"{args.clients} clients, {elapsed:.0f} s, {total} requests, {len(tally.errors)} errors, "
          f"{report['throughput_rps']} req/s")  # fmt: skip
    for kind, figures in report["latency_ms"].items():
        print(f"  {kind:9} n={figures['n']:6}  p50 {figures['p50']:7.1f} ms  "
              f"p95 {figures['p95']:7.1f} ms  p99 {figures['p99']:7.1f} ms")  # fmt: skip
    print(
        f"  memory  {report['rss_mib']}  fds {report['fds']}  sqlite {report['sqlite_files_open']}"
        f"  catalogue {report['catalog_files_open']}"
    )
    for error in tally.errors[:10]:
        print(f"  error: {error}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    fds_climbing = last["fds"] > first["fds"] + 4 * args.clients
    return 1 if tally.errors or growth > args.max_growth or fds_climbing else 0


if __name__ == "__main__":
    sys.exit(main())
