"""Mirror throughput against a plain HTTP copy, and the cost of resuming.

One real eoshare node (the origin, a separate process) holds ``--files`` files of
``--mib`` MiB of random bytes in an open collection. In this process:

* **plain copy**: httpx streams every file from the origin's ``/download`` route to a
  local folder (no signature, no checks);
* **mirror**: ``Mirrorer.run`` of a mirror of that collection (signed requests, a search,
  partial files fsync'd, sha256 of every byte, ``Store.put_file``, catalogue writes);
* **interrupted + resumed**: the same mirror into an empty node, stopped when half of the
  bytes are in (``Mirrorer.stop``, as the node's shutdown stops it; the partial file
  stays), then run again: the total against one uninterrupted mirror.

Each figure is the median of ``--rounds`` rounds, plain copy and mirror alternating.
Results go to benchmarks/RESULTS.md ("Federation mirror") unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.store import AccessStore
from eoshare.catalog import open_catalog
from eoshare.federation.identity import b64, load_or_create_identity
from eoshare.federation.mirror import Mirror, MirrorBook, Mirrorer
from eoshare.federation.peers import Peer, PeerRegistry
from eoshare.storage import open_store

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("EOSHARE_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
MIB = 1024 * 1024
CID = "p-mirror"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def node(data_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.update(
        {
            "EOSHARE_DATA_DIR": str(data_dir),
            "EOSHARE_LOG_LEVEL": "warning",
            "EOSHARE_FEDERATION__NAME": "origin",
            "EOSHARE_FEDERATION__MEMBER": "ke-kspa",
        }
    )
    with (data_dir / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "eoshare.api.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
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


def make_origin(origin: Path, files: int, mib: int) -> None:
    tpl = json.loads(
        (SHARED / "stac" / "sentinel-2-l2a_pc_and_earthsearch.ndjson").read_text().splitlines()[0]
    )
    coll = json.loads((SHARED / "stac" / "collection_sentinel-2-l2a_pc.json").read_text())
    coll.update({"id": CID, "links": []})
    catalog = open_catalog(f"sqlite:///{origin / 'catalog.db'}")
    store = open_store((origin / "store").resolve().as_uri())
    catalog.create_collection(coll)
    items = []
    for n in range(files):
        data = os.urandom(mib * MIB)
        item = copy.deepcopy(tpl)
        item.update({"id": f"{CID}-{n}", "collection": CID, "links": []})
        key = f"{CID}/{item['id']}/data.tif"
        store.put_bytes(key, data)
        item["assets"] = {
            "data": {"href": key, "type": "image/tiff", "roles": ["data"], "eoshare:key": key,
                     "file:size": len(data),
                     "file:checksum": "1220" + hashlib.sha256(data).hexdigest()}
        }  # fmt: skip
        items.append(item)
    catalog.upsert_items(items)
    catalog.close()
    access = AccessStore(origin / "access.db")
    access.put_member(Member("ke-kspa", "Kenya Space Agency", "KE"), who="bench")
    access.put_agreement(
        agreement_from_dict({"collection": CID, "provider": "ke-kspa", "access": "open"}),
        who="bench",
    )
    access.close()


class Hub:
    """A fresh, empty mirroring node (data directory only; it does not serve), whose key
    the origin learns."""

    def __init__(self, root: Path, url: str, origin_doc: dict[str, Any]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hub-", dir=root))
        self.identity = load_or_create_identity(self.dir / "node-key.pem", name="hub", member=None)
        PeerRegistry(root / "origin" / "federation.db").add(
            Peer(self.dir.name.lower().replace(".", "-")[:60], f"http://{self.dir.name}.invalid",
                 "eoshare", fingerprint=self.identity.fingerprint,
                 public_key=b64(self.identity.public_raw))
        )  # fmt: skip
        self.registry = PeerRegistry(self.dir / "federation.db")
        self.registry.add(
            Peer("origin", url, "eoshare", fingerprint=origin_doc["fingerprint"],
                 public_key=origin_doc["public_key"]["raw"], member="ke-kspa")
        )  # fmt: skip
        self.book = MirrorBook(self.dir / "federation.db", self.dir / "mirror-partial")
        self.book.add(Mirror(id="m", peer="origin", collections=(CID,)))
        self.catalog = open_catalog(f"sqlite:///{self.dir / 'catalog.db'}")
        self.access = AccessStore(self.dir / "access.db")
        self.access.put_member(Member("ke-kspa", "Kenya Space Agency", "KE"), who="bench")
        store = open_store((self.dir / "store").resolve().as_uri())
        self.mirrorer = Mirrorer(self.book, self.registry, self.identity, self.catalog, store,
                                 self.access)  # fmt: skip

    def close(self) -> None:
        self.catalog.close()
        self.access.close()
        self.book.close()
        self.registry.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def plain_copy(url: str, files: int, root: Path) -> float:
    out = Path(tempfile.mkdtemp(prefix="plain-", dir=root))
    t0 = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for n in range(files):
            href = f"{url}/download/{CID}/{CID}-{n}/data"
            with client.stream("GET", href) as r, (out / f"{n}.tif").open("wb") as f:
                r.raise_for_status()
                for chunk in r.iter_raw(64 * 1024):
                    f.write(chunk)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out)
    return seconds


def mirror_once(root: Path, url: str, doc: dict[str, Any], expect: int) -> float:
    hub = Hub(root, url, doc)
    try:
        report = hub.mirrorer.run("m", now=True)
        assert report.files_done == expect and not report.errors, report
        return report.seconds
    finally:
        hub.close()


def mirror_interrupted(root: Path, url: str, doc: dict[str, Any], expect: int) -> dict[str, Any]:
    hub = Hub(root, url, doc)
    try:
        half: list[int] = []

        def progress(kind: str, n: int) -> None:
            if kind == "plan":
                half.append(n // 2)
            elif kind == "bytes":
                half[0] -= n
                if half[0] <= 0:
                    hub.mirrorer.stop.set()

        first = hub.mirrorer.run("m", now=True, progress=progress)
        hub.mirrorer.stop.clear()
        second = hub.mirrorer.run("m", now=True)
        assert second.files_done == expect and not second.errors, second
        return {
            "first_s": first.seconds, "second_s": second.seconds,
            "total_s": first.seconds + second.seconds, "resumed": second.resumed,
            "fetched": first.fetched + second.fetched,
        }  # fmt: skip
    finally:
        hub.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    total = args.files * args.mib * MIB
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        root = Path(tmp)
        origin = root / "origin"
        origin.mkdir()
        make_origin(origin, args.files, args.mib)
        with node(origin) as url:
            doc = httpx.get(url + "/.well-known/eoshare-node").json()
            loads: list[float] = []
            plain, mirrored, resumed = [], [], []
            for _ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                plain.append(plain_copy(url, args.files, root))
                mirrored.append(mirror_once(root, url, doc, args.files))
                resumed.append(mirror_interrupted(root, url, doc, args.files))
                loads.append(os.getloadavg()[0])
    p, m = statistics.median(plain), statistics.median(mirrored)
    r = statistics.median(x["total_s"] for x in resumed)
    rows = {
        "plain": (p, total / p / MIB),
        "mirror": (m, total / m / MIB),
        "resume": (r, total / r / MIB),
    }
    for name, (s, rate) in rows.items():
        print(f"{name:8s} {s:7.2f} s  {rate:7.1f} MiB/s")
    print(f"mirror/plain {m / p:.2f}x   interrupted+resumed/uninterrupted {r / m:.2f}x")
    print(f"resume runs: {resumed}")
    if not args.no_write:
        write_results(args, rows, m / p, r / m, loads, resumed)


def write_results(
    args: argparse.Namespace,
    rows: dict[str, tuple[float, float]],
    ratio: float,
    resume_ratio: float,
    loads: list[float],
    resumed: list[dict[str, Any]],
) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()  # fmt: skip
    lines = [
        "",
        "## Federation mirror (bench_mirror.py)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{min(loads):.1f}-{max(loads):.1f} during the run (shared machine). One origin node "
        f"(a separate process) on 127.0.0.1; {args.files} files x {args.mib} MiB of random "
        f"bytes; median of {args.rounds} rounds.",
        "",
        "| copy | seconds | MiB/s |",
        "|---|---|---|",
        f"| plain HTTP copy (httpx streaming of /download to files) | {rows['plain'][0]:.2f} | "
        f"{rows['plain'][1]:.1f} |",
        f"| `eoshare mirror` (signed, sha256 checked, fsync, put into the store, items "
        f"written) | {rows['mirror'][0]:.2f} | {rows['mirror'][1]:.1f} |",
        f"| mirror stopped at 50 % + resumed (both runs) | {rows['resume'][0]:.2f} | "
        f"{rows['resume'][1]:.1f} |",
        "",
        f"Mirror / plain copy: **{ratio:.2f}x** the time. Interrupted at 50 % and resumed / "
        f"uninterrupted mirror: **{resume_ratio:.2f}x** (each resumed run re-reads its partial "
        f"file to hash it and repeats the search; bytes fetched in both runs together: "
        f"{statistics.median(x['fetched'] for x in resumed) / MIB:.1f} MiB of "
        f"{args.files * args.mib} MiB).",
        "",
    ]
    with (HERE / "RESULTS.md").open("a") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
