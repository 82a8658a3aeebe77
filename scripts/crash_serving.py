"""Crash anywhere, the serving half: ``kill -9`` of a running node in the middle of a
resumable upload (and its completion), of an order's zip stream and of a processing job,
and of ``eoshare harvest`` in the middle of a pull from a live peer. Used by
``crash_anywhere.py`` (scenarios ``upload``, ``zip``, ``job`` and ``harvest``).

Each kill lands at a random moment (fixed seed) within the time an uninterrupted run of the
same work took. After every kill the node is started again and checked (``eoshare verify``:
nothing missing, corrupt or orphaned; the catalogue's integrity; nothing half-visible), then
the client does what a real one would: resumes the upload from the chunks the node says are
missing, downloads the zip again, starts the job again, runs the harvest again, and the
result must be whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
from crash_anywhere import (  # type: ignore[import-not-found]
    RASTERS,
    SHARED,
    Outcome,
    check_node,
    env_for,
    leftovers,
)

TOKEN = "crash-operator-token"
# a window of the Sentinel-2 scene (lon/lat): a job of a few seconds
BBOX = {"west": -11.9, "south": 24.4, "east": -11.5, "north": 24.8}
S2 = "S2A_29RKH_20200219_0_L2A"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eoshare.cli", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


class Node:
    """``eoshare serve`` on a free port, started again after every kill."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir, self.env = data_dir, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eoshare.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", str(self.data_dir)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the node exited at start: see " + str(log.name))
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the node did not answer within 120 s")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def _kill_during(node: Node, work: Callable[[], None], after_s: float) -> bool:
    """Run ``work`` (a client) in a thread; kill the node after ``after_s`` seconds.
    True if the client was still at work when the node died."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except (httpx.HTTPError, OSError, zipfile.BadZipFile):
            pass  # the node died under it: expected
        except BaseException as exc:  # reported below
            failure.append(exc)

    client = threading.Thread(target=run, daemon=True)
    client.start()
    client.join(after_s)
    running = client.is_alive()
    node.kill()
    client.join(60)
    if failure:
        raise RuntimeError(f"the client failed before the kill: {failure[0]!r}")
    return running


def _timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _node_problems(data_dir: Path) -> list[str]:
    return check_node(data_dir, deep=True)


def _finish(outcome: Outcome, node: Node, data_dir: Path, tmp: Path, final: list[str]) -> Outcome:
    node.stop()
    final = final + _node_problems(data_dir)
    log = (data_dir / "server.log").read_text(errors="replace")
    if "Traceback" in log:
        final.append("the node's log has a traceback: " + log[log.index("Traceback") :][:300])
    stale = leftovers(tmp)
    if stale:
        final.append(f"temporary folders left by killed runs: {stale[:3]}")
    outcome.problems += [f"final: {p}" for p in final]
    outcome.final_ok = not final
    return outcome


def _ingest(env: dict[str, str], collection: str, files: list[str], *extra: str) -> None:
    done = _cli(env, "ingest", *files, "-c", collection, "--create-collection", *extra)
    if done.returncode != 0:
        raise RuntimeError(f"ingest failed: {done.stderr[-300:]}")


# --- upload ---------------------------------------------------------------------------
def scenario_upload(work: Path, kills: int, rng: random.Random) -> Outcome:
    """A provider's resumable upload of a real 2.4 MB GeoTIFF in 128 KiB chunks, then its
    completion (verify + COG + item). Killed anywhere; then resumed from ``missing``."""
    data_dir, tmp = work / "upload", work / "upload-tmp"
    tmp.mkdir(parents=True)
    env = env_for(data_dir, tmp) | {
        "EOSHARE_API__ADMIN_TOKEN": TOKEN,
        "EOSHARE_DOWNLOADS__UPLOAD_CHUNK_BYTES": str(128 * 1024),
    }
    _ingest(env, "crash-up", [str(SHARED / "raster" / f"{S2}_SCL.tif")], "--id", "seed",
            "--one-item")  # fmt: skip
    payload = (SHARED / "raster" / f"{S2}_B08.tif").read_bytes()
    sha = hashlib.sha256(payload).hexdigest()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    node = Node(data_dir, env)
    node.start()
    outcome = Outcome("upload")
    state: dict[str, str] = {}

    def send(upload_id: str, chunks: list[int], chunk: int) -> None:
        for n in chunks:
            part = payload[n * chunk : (n + 1) * chunk]
            r = httpx.put(
                f"{node.url}/uploads/{upload_id}/chunks/{n}", content=part,
                headers=auth | {"X-Chunk-SHA256": hashlib.sha256(part).hexdigest()}, timeout=60,
            )  # fmt: skip
            r.raise_for_status()

    def upload(item_id: str) -> None:
        r = httpx.post(
            f"{node.url}/uploads", headers=auth, timeout=60,
            json={"collection": "crash-up", "filename": f"{S2}_B08.tif", "size": len(payload),
                  "sha256": sha, "item_id": item_id},
        )  # fmt: skip
        r.raise_for_status()
        doc = r.json()
        state[item_id] = doc["id"]
        send(doc["id"], list(range(doc["chunk_count"])), doc["chunk_bytes"])
        done = httpx.post(f"{node.url}/uploads/{doc['id']}/complete", headers=auth, timeout=120)
        if done.status_code != 200:
            raise RuntimeError(f"completing the upload: {done.status_code} {done.text[:300]}")

    def resume(item_id: str) -> list[str]:
        """What a client does after the node came back: finish the same upload."""
        upload_id = state.get(item_id)
        if upload_id is None:  # killed before the node answered: start again
            upload(item_id)
        else:
            doc = httpx.get(f"{node.url}/uploads/{upload_id}", headers=auth, timeout=60).json()
            if doc.get("state") != "complete":
                send(upload_id, doc["missing"], doc["chunk_bytes"])
                r = httpx.post(
                    f"{node.url}/uploads/{upload_id}/complete", headers=auth, timeout=120
                )
                if r.status_code != 200:
                    return [f"completing {item_id} again: {r.status_code} {r.text[:200]}"]
        got = httpx.get(f"{node.url}/collections/crash-up/items/{item_id}", timeout=60)
        return [] if got.status_code == 200 else [f"{item_id} missing after its upload resumed"]

    probe_s = _timed(lambda: upload("probe"))
    for k in range(kills):
        after = rng.uniform(0.0, probe_s * 0.9)
        item_id = f"up-{k:03d}"
        outcome.kills += 1
        if _kill_during(node, lambda item_id=item_id: upload(item_id), after):
            outcome.killed_while_running += 1
        found = _node_problems(data_dir)
        node.start()
        # nothing half-visible: the item is either absent or whole (verify checked its bytes)
        got = httpx.get(f"{node.url}/collections/crash-up/items/{item_id}", timeout=60)
        if got.status_code not in (200, 404):
            found.append(f"item {item_id} answers {got.status_code}")
        found += resume(item_id)
        outcome.problems += [f"kill {outcome.kills} at {after:.2f}s: {p}" for p in found]
    started = time.perf_counter()
    upload("last")
    outcome.full_run_s = time.perf_counter() - started
    with sqlite3.connect(data_dir / "catalog.db") as conn:
        n = conn.execute("SELECT count(*) FROM items WHERE collection = 'crash-up'").fetchone()[0]
    final = [] if n == kills + 3 else [f"{n} items, expected {kills + 3}"]
    staged = [p.name for p in (data_dir / "uploads").glob("*") if p.is_dir() and any(p.iterdir())]
    if staged:
        final.append(f"staged bytes left of completed uploads: {staged[:3]}")
    return _finish(outcome, node, data_dir, tmp, final)


# --- order zip ------------------------------------------------------------------------
def scenario_zip(work: Path, kills: int, rng: random.Random) -> Outcome:
    """An order of six real rasters' COGs read as one zip by a slow client (64 KiB every
    20 ms); the node is killed while it streams. The order survives and the zip, fetched
    again, is whole: every entry's bytes equal the stored object."""
    data_dir, tmp = work / "zip", work / "zip-tmp"
    tmp.mkdir(parents=True)
    env = env_for(data_dir, tmp) | {"EOSHARE_API__ADMIN_TOKEN": TOKEN}
    _ingest(env, "crash-zip", [str(SHARED / "raster" / name) for name in RASTERS])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    node = Node(data_dir, env)
    node.start()
    outcome = Outcome("zip")
    items = httpx.get(f"{node.url}/collections/crash-zip/items", timeout=60).json()["features"]
    ids = [{"collection": "crash-zip", "id": i["id"]} for i in items]
    created = httpx.post(f"{node.url}/orders", json={"ids": ids}, headers=auth, timeout=60)
    if created.status_code != 201:
        raise RuntimeError(f"the order was refused: {created.text[:300]}")
    order_id = created.json()["id"]

    def stream(slow: bool = True) -> bytes:
        buf = io.BytesIO()
        url = f"{node.url}/orders/{order_id}/download.zip"
        with httpx.stream("GET", url, headers=auth, timeout=120) as r:
            r.raise_for_status()
            for part in r.iter_bytes(64 * 1024):
                buf.write(part)
                if slow:
                    time.sleep(0.02)
        return buf.getvalue()

    def whole(body: bytes) -> list[str]:
        bad = []
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            if zf.testzip() is not None:
                return ["the zip fetched again has a corrupt entry"]
            names = zf.namelist()
            for name in names:
                collection, item, file = name.split("/")[-3:]
                stored = data_dir / "store" / collection / item / file
                if stored.is_file() and zf.read(name) != stored.read_bytes():
                    bad.append(f"zip entry {name} differs from the stored object")
        if len(names) < len(RASTERS):
            bad.append(f"the zip has {len(names)} entries, expected ≥ {len(RASTERS)}")
        return bad

    probe_s = _timed(stream)
    for _ in range(kills):
        after = rng.uniform(0.0, probe_s * 0.9)
        outcome.kills += 1
        if _kill_during(node, stream, after):
            outcome.killed_while_running += 1
        found = _node_problems(data_dir)
        node.start()
        status = httpx.get(f"{node.url}/orders/{order_id}", headers=auth, timeout=60)
        if status.status_code != 200:
            found.append(f"the order answers {status.status_code} after the kill")
        else:
            found += whole(stream(slow=False))
        outcome.problems += [f"kill {outcome.kills} at {after:.2f}s: {p}" for p in found]
    started = time.perf_counter()
    final = whole(stream(slow=False))
    outcome.full_run_s = time.perf_counter() - started
    return _finish(outcome, node, data_dir, tmp, final)


# --- processing job -------------------------------------------------------------------
def _job_user(data_dir: Path) -> str:
    from eoshare.access.agreements import Member
    from eoshare.access.store import AccessStore

    store = AccessStore(data_dir / "access.db")
    try:
        store.put_member(Member("kenya", "Kenya Space Agency", "KE"), who="crash")
        store.put_user("alice", member="kenya", roles=frozenset({"analyst"}), who="crash")
        return store.create_token("alice", days=1, who="crash")[1]
    finally:
        store.close()


def scenario_job(work: Path, kills: int, rng: random.Random) -> Outcome:
    """An openEO batch job (NDVI of a real Sentinel-2 scene, saved as GeoTIFF and published
    back) killed with its node. After the restart the job is never left 'running' or
    'queued'; started again, it finishes, and its results are whole."""
    data_dir, tmp = work / "job", work / "job-tmp"
    tmp.mkdir(parents=True)
    env = env_for(data_dir, tmp) | {"EOSHARE_PROCESSING__WORKERS": "1"}
    _ingest(env, "s2", [str(SHARED / "raster" / f"{S2}_{b}.tif") for b in ("B04", "B08")])
    token = _job_user(data_dir)
    auth = {"Authorization": f"Bearer basic//{token}"}
    node = Node(data_dir, env)
    node.start()
    outcome = Outcome("job")
    api = lambda: f"{node.url}/openeo/1.2"  # noqa: E731
    graph = {
        "load": {"process_id": "load_collection",
                 "arguments": {"id": "s2", "spatial_extent": BBOX, "temporal_extent": None,
                               "bands": ["B04", "B08"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"},
                                                     "nir": "B08", "red": "B04"}},
        "save": {"process_id": "save_result",
                 "arguments": {"data": {"from_node": "ndvi"}, "format": "GTiff"},
                 "result": True},
    }  # fmt: skip
    jobs: dict[str, str] = {}

    def wait(job_id: str, timeout_s: float = 300) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            doc = httpx.get(f"{api()}/jobs/{job_id}", headers=auth, timeout=60).json()
            if doc["status"] in ("finished", "error", "canceled"):
                return str(doc["status"])
            time.sleep(0.1)
        return "timeout"

    def run_job(name: str) -> None:
        r = httpx.post(f"{api()}/jobs", headers=auth, timeout=60,
                       json={"title": name, "process": {"process_graph": graph}})  # fmt: skip
        r.raise_for_status()
        jobs[name] = r.headers["OpenEO-Identifier"]
        httpx.post(f"{api()}/jobs/{jobs[name]}/results", headers=auth, timeout=60)
        status = wait(jobs[name])
        if status != "finished":
            raise RuntimeError(f"the uninterrupted job ended {status}")

    def results_whole(job_id: str) -> list[str]:
        doc = httpx.get(f"{api()}/jobs/{job_id}/results", headers=auth, timeout=60)
        if doc.status_code != 200:
            return [f"results of {job_id}: {doc.status_code} {doc.text[:200]}"]
        bad = []
        for asset in doc.json().get("assets", {}).values():
            got = httpx.get(asset["href"], headers=auth, timeout=120, follow_redirects=True)
            if got.status_code != 200 or not got.content.startswith((b"II*\0", b"MM\0*")):
                bad.append(f"result asset {asset['href']} is not a whole GeoTIFF")
        return bad

    probe_s = _timed(lambda: run_job("probe"))
    for k in range(kills):
        after = rng.uniform(0.0, probe_s * 0.9)
        name = f"job-{k:03d}"
        outcome.kills += 1
        if _kill_during(node, lambda name=name: run_job(name), after):
            outcome.killed_while_running += 1
        found = _node_problems(data_dir)
        node.start()
        job_id = jobs.get(name)
        if job_id is not None:
            doc = httpx.get(f"{api()}/jobs/{job_id}", headers=auth, timeout=60).json()
            if doc["status"] in ("running", "queued"):
                # a restarted node must say what became of it, not keep it 'running'
                found.append(f"job {job_id} is still {doc['status']} after the restart")
            if doc["status"] != "finished":
                httpx.post(f"{api()}/jobs/{job_id}/results", headers=auth, timeout=60)
                status = wait(job_id)
                if status != "finished":
                    found.append(f"job {job_id} started again ended {status}")
            if not found:
                found += results_whole(job_id)
        found += _node_problems(data_dir) if not found else []
        outcome.problems += [f"kill {outcome.kills} at {after:.2f}s: {p}" for p in found]
    started = time.perf_counter()
    run_job("last")
    outcome.full_run_s = time.perf_counter() - started
    return _finish(outcome, node, data_dir, tmp, results_whole(jobs["last"]))


# --- harvest --------------------------------------------------------------------------
HARVEST_ITEMS = 600


def scenario_harvest(work: Path, kills: int, rng: random.Random) -> Outcome:
    """``eoshare harvest`` of 600 real items (new ids) from a live peer, killed anywhere:
    nothing half-written, and the run after the kills ends with exactly the peer's items."""
    from eoshare.federation.identity import b64, load_or_create_identity
    from eoshare.federation.peers import Peer, PeerRegistry

    peer_dir, hub_dir, tmp = work / "peer", work / "hub", work / "harvest-tmp"
    for d in (peer_dir, hub_dir, tmp):
        d.mkdir(parents=True)
    source = work / "peer-items.ndjson"
    originals = [
        json.loads(line)
        for line in (SHARED / "stac" / "sentinel-2-l2a_pc_and_earthsearch.ndjson")
        .read_text()
        .splitlines()
        if line.strip()
    ]
    with source.open("w") as out:
        for n in range(HARVEST_ITEMS):
            doc = json.loads(json.dumps(originals[n % len(originals)]))
            doc.update(id=f"h-{n:05d}", collection="open-s2", links=[])
            out.write(json.dumps(doc) + "\n")
    peer_env = env_for(peer_dir, tmp) | {"EOSHARE_FEDERATION__NAME": "peer"}
    loaded = _cli(peer_env, "load", str(source), "--create-collections")
    if loaded.returncode != 0:
        raise RuntimeError(f"load failed: {loaded.stderr[-300:]}")
    hub_env = env_for(hub_dir, tmp) | {
        "EOSHARE_FEDERATION__NAME": "hub",
        "EOSHARE_FEDERATION__HARVEST_BATCH": "20",
    }
    hub_id = load_or_create_identity(hub_dir / "node-key.pem", name="hub", member=None)
    peer_id = load_or_create_identity(peer_dir / "node-key.pem", name="peer", member=None)
    hub_peers = PeerRegistry(peer_dir / "federation.db")
    hub_peers.add(Peer("hub", "http://hub.invalid", "eoshare", fingerprint=hub_id.fingerprint,
                       public_key=b64(hub_id.public_raw)))  # fmt: skip
    hub_peers.close()
    node = Node(peer_dir, peer_env)
    node.start()
    registry = PeerRegistry(hub_dir / "federation.db")
    registry.add(Peer("peer", node.url, "eoshare", fingerprint=peer_id.fingerprint,
                      public_key=b64(peer_id.public_raw)))  # fmt: skip
    registry.close()
    cmd = [sys.executable, "-m", "eoshare.cli", "harvest", "peer"]
    outcome = Outcome("harvest")

    def local_ids() -> list[str]:
        db = hub_dir / "catalog.db"
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT id FROM items").fetchall()
        return [r[0] for r in rows]

    def consistent() -> list[str]:
        found = check_node(hub_dir, deep=False) if (hub_dir / "catalog.db").exists() else []
        ids = local_ids()
        if len(ids) != len(set(ids)):
            found.append("an item harvested twice")
        return found

    probe_env = hub_env | {"EOSHARE_DATA_DIR": str(work / "hub-probe")}
    (work / "hub-probe").mkdir()
    for name in ("node-key.pem", "federation.db"):
        (work / "hub-probe" / name).write_bytes((hub_dir / name).read_bytes())
    started = time.perf_counter()
    probe = subprocess.run(cmd, env=probe_env, capture_output=True, text=True, timeout=600)
    probe_s = time.perf_counter() - started
    if probe.returncode != 0:
        outcome.problems.append(f"the uninterrupted harvest failed: {probe.stderr[-300:]}")
        node.stop()
        return outcome
    for _ in range(kills):
        after = rng.uniform(0.0, probe_s * 0.9)
        outcome.kills += 1
        proc = subprocess.Popen(cmd, env=hub_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            proc.wait(timeout=after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            outcome.killed_while_running += 1
        outcome.problems += [f"kill {outcome.kills} at {after:.2f}s: {p}" for p in consistent()]
    started = time.perf_counter()
    done = subprocess.run(cmd, env=hub_env, capture_output=True, text=True, timeout=600)
    outcome.full_run_s = time.perf_counter() - started
    final = [] if done.returncode == 0 else [f"the run after the kills: {done.stderr[-300:]}"]
    ids = sorted(local_ids())
    want = sorted(f"h-{n:05d}" for n in range(HARVEST_ITEMS))
    if ids != want:
        final.append(f"{len(ids)} items harvested ({len(set(ids))} distinct), expected {len(want)}")
    final += consistent()
    node.stop()
    stale = leftovers(tmp)
    if stale:
        final.append(f"temporary folders left by killed runs: {stale[:3]}")
    outcome.problems += [f"final: {p}" for p in final]
    outcome.final_ok = not final
    return outcome


SERVING_SCENARIOS: dict[str, Callable[[Path, int, random.Random], Outcome]] = {
    "upload": scenario_upload,
    "zip": scenario_zip,
    "job": scenario_job,
    "harvest": scenario_harvest,
}
