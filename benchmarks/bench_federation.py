"""Federation benchmarks (issue 10's targets):

1. fan-out latency: a hub (a real eoshare node, uvicorn subprocess) over three STAC peers
   that answer after 20, 60 and 120 ms; target: hub p50 <= slowest peer + 20 ms. Then
   with a dead peer (closed port) and a black-hole peer (never answers): target <= the
   hub's deadline.
2. harvest rate: a peer eoshare node with ``--items`` items; ``Harvester`` pulls them
   into an empty node; target >= 0.5 x the node's own load rate (``upsert_items`` of the
   same items).

    python benchmarks/bench_federation.py              # prints, and appends to RESULTS.md
    python benchmarks/bench_federation.py --no-write --items 500 --rounds 5
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from eoshare.catalog import open_catalog
from eoshare.federation.harvest import Harvester
from eoshare.federation.identity import b64, load_or_create_identity
from eoshare.federation.peers import Peer, PeerRegistry
from eoshare.ingest.stacdocs import load_documents

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("EOSHARE_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
DEADLINE_S = 1.0
DELAYS_MS = (20, 60, 120)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def node(data_dir: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    full.update({"EOSHARE_DATA_DIR": str(data_dir), "EOSHARE_LOG_LEVEL": "warning", **env})
    with (data_dir / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "eoshare.api.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            env=full, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/conformance", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def make_items(n: int, collection: str) -> list[dict[str, Any]]:
    path = SHARED / "stac" / "sentinel-2-l2a_pc_and_earthsearch.ndjson"
    tpl = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    base = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        item = copy.deepcopy(tpl[i % len(tpl)])
        item.update({"id": f"{collection}-{i}", "collection": collection, "links": []})
        when = base - timedelta(minutes=i)
        item["properties"]["datetime"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        item["properties"]["updated"] = base.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(item)
    return out


class _DelayedPeer(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        name = self.path.strip("/").split("/")[0]
        if name == "blackhole":
            time.sleep(30)
            return
        delay = int(name.removeprefix("d")) / 1000
        time.sleep(delay)
        feats = [
            {
                "type": "Feature",
                "stac_version": "1.1.0",
                "id": f"{name}-{i}",
                "collection": name,
                "geometry": None,
                "bbox": None,
                "properties": {"datetime": f"2024-01-01T00:{i:02d}:00Z"},
                "assets": {},
                "links": [],
            }
            for i in range(10)
        ]
        body = json.dumps({"type": "FeatureCollection", "features": feats, "links": []}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/geo+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def timed_searches(url: str, rounds: int) -> list[float]:
    out = []
    with httpx.Client(timeout=30) as client:
        client.get(url + "/search", params={"limit": 10})  # warm
        for _ in range(rounds):
            t0 = time.perf_counter()
            r = client.get(url + "/search", params={"limit": 10})
            out.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    return out


def bench_fanout(work: Path, rounds: int) -> dict[str, float]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _DelayedPeer)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    hub_dir = work / "hub"
    hub_dir.mkdir()
    registry = PeerRegistry(hub_dir / "federation.db")
    for d in DELAYS_MS:
        registry.add(Peer(f"d{d}", f"{base}/d{d}", "stac"))
    env = {"EOSHARE_FEDERATION__DEADLINE_S": str(DEADLINE_S), "EOSHARE_FEDERATION__NAME": "hub"}
    result: dict[str, float] = {}
    try:
        with node(hub_dir, env) as hub:
            result["fanout_p50_ms"] = statistics.median(timed_searches(hub, rounds))
            registry.add(Peer("dead", f"http://127.0.0.1:{free_port()}", "stac"))
            registry.add(Peer("blackhole", f"{base}/blackhole", "stac"))
            time.sleep(2.2)  # the hub re-reads its peers every 2 s
            result["faulty_p50_ms"] = statistics.median(timed_searches(hub, max(3, rounds // 4)))
    finally:
        server.shutdown()
        server.server_close()
    return result


def bench_harvest(work: Path, n: int, batch: int = 500) -> dict[str, float]:
    peer_dir, hub_dir = work / "peer", work / "hub2"
    peer_dir.mkdir()
    hub_dir.mkdir()
    items = make_items(n, "p-open")
    coll = json.loads((SHARED / "stac" / "collection_sentinel-2-l2a_pc.json").read_text())
    coll.update({"id": "p-open", "links": []})
    # the node's own load rate, two ways: `eoshare load` of an ndjson file (what the CLI
    # runs: read, parse, check, write) and the catalogue's upsert of ready documents
    ndjson = work / "items.ndjson"
    ndjson.write_text("".join(json.dumps(i) + "\n" for i in items))
    scratch = open_catalog(f"sqlite:///{work / 'load-check.db'}")
    scratch.create_collection(coll)
    t0 = time.perf_counter()
    load_documents([ndjson], catalog=scratch)
    cli_load_rate = n / (time.perf_counter() - t0)
    scratch.close()
    catalog = open_catalog(f"sqlite:///{peer_dir / 'catalog.db'}")
    catalog.create_collection(coll)
    t0 = time.perf_counter()
    catalog.upsert_items(items)
    load_rate = n / (time.perf_counter() - t0)
    catalog.close()
    hub = load_or_create_identity(hub_dir / "node-key.pem", name="hub2", member=None)
    PeerRegistry(peer_dir / "federation.db").add(
        Peer("hub2", "http://hub2.invalid", "eoshare", fingerprint=hub.fingerprint,
             public_key=b64(hub.public_raw))
    )  # fmt: skip
    with node(peer_dir, {"EOSHARE_FEDERATION__NAME": "peer"}) as url:
        doc = httpx.get(url + "/.well-known/eoshare-node").json()
        registry = PeerRegistry(hub_dir / "federation.db")
        peer = registry.add(
            Peer("peer", url, "eoshare", fingerprint=doc["fingerprint"],
                 public_key=doc["public_key"]["raw"])
        )  # fmt: skip
        local = open_catalog(f"sqlite:///{hub_dir / 'catalog.db'}")
        try:
            report = Harvester(local, registry, hub, batch=batch).harvest(peer)
        finally:
            local.close()
    assert report.written == n and not report.errors, report
    return {
        "load_rate": load_rate,
        "cli_load_rate": cli_load_rate,
        "harvest_rate": n / report.seconds,
        "items": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--batch", type=int, default=500, help="items per harvest request")
    ap.add_argument("--harvest-only", action="store_true", help="skip the fan-out part")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        har = bench_harvest(Path(tmp), args.items, args.batch)
        if args.harvest_only:
            rate, load, cli = har["harvest_rate"], har["load_rate"], har["cli_load_rate"]
            print(
                f"harvest {rate:.0f} items/s; eoshare load {cli:.0f} items/s "
                f"({rate / cli:.2f} x); upsert_items {load:.0f} items/s ({rate / load:.2f} x)"
            )
            return
        fan = bench_fanout(Path(tmp), args.rounds)
    slowest = max(DELAYS_MS)
    ok_fan = fan["fanout_p50_ms"] <= slowest + 20
    ok_dead = fan["faulty_p50_ms"] <= DEADLINE_S * 1000
    ok_har = har["harvest_rate"] >= 0.5 * har["cli_load_rate"]
    load_avg = " ".join(f"{x:.1f}" for x in os.getloadavg())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    text = f"""
## Federation (bench_federation.py)

- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
- cpu: {os.cpu_count()} cores ({platform.machine()}), shared with other agents' jobs
- python: {platform.python_version()}
- commit: {commit}
- load average at the start: {load_avg}
- method: `python benchmarks/bench_federation.py --items {args.items} --rounds {args.rounds}`;
  hub and peer are eoshare nodes (uvicorn subprocesses); the fan-out peers are STAC stubs
  on 127.0.0.1 answering after {", ".join(map(str, DELAYS_MS))} ms; medians over the rounds

| measure | target | result |
|---|---:|---:|
| fan-out /search p50, peers at {"/".join(map(str, DELAYS_MS))} ms | <= {slowest + 20} ms | {fan["fanout_p50_ms"]:.1f} ms {"✓" if ok_fan else "✗"} |
| same + a dead and a black-hole peer (deadline {DEADLINE_S:g} s) | <= {DEADLINE_S * 1000:.0f} ms | {fan["faulty_p50_ms"]:.1f} ms {"✓" if ok_dead else "✗"} |
| harvest, {har["items"]} items from a peer node (batch {args.batch}) | >= 0.5 x load | {har["harvest_rate"]:.0f} items/s = {har["harvest_rate"] / har["cli_load_rate"]:.2f} x {"✓" if ok_har else "✗"} |
| · the node's own `eoshare load` rate (same items, ndjson), same run | | {har["cli_load_rate"]:.0f} items/s |
| · the catalogue's upsert of ready documents (no parsing), same run | | {har["load_rate"]:.0f} items/s |
"""  # noqa: E501
    print(text)
    if not args.no_write:
        with (HERE / "RESULTS.md").open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
