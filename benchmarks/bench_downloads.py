"""Download and upload throughput, side by side in one run (``make bench``).

1. one file (``--size-mb``, 1024 by default) in the local store, fetched whole by curl
   from eoshare (``/download/...``) and from nginx (Debian's package) serving the same
   file: one stream, then ``--clients`` streams at once; the ratio eoshare/nginx;
2. the same file in an S3 store (SeaweedFS on 127.0.0.1): through eoshare against curl
   reading the object from the S3 server itself (SigV4): streamed by the node (spliced
   from the S3 server's socket to the client's, see eoshare.storage.s3raw), and with the
   operator option of a redirect to a presigned URL;
3. uploads: the file sent in chunks to /uploads (MB/s), and the resume overhead: the
   same upload interrupted half-way, its status asked, the rest sent.

Prints a Markdown section; ``--append`` adds it to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "storage"))

from s3_weed import ACCESS_KEY, SECRET_KEY, WeedServer  # noqa: E402

from eoshare.catalog import open_catalog  # noqa: E402
from eoshare.ingest.collections import minimal_collection  # noqa: E402
from eoshare.storage import open_store  # noqa: E402

TOKEN = "bench-operator-token"
KEY = "bench/big/data.bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(url, timeout=2)
            return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def make_file(path: Path, size_mb: int) -> None:
    if path.is_file() and path.stat().st_size == size_mb * 1024 * 1024:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1024 * 1024)
    with path.open("wb") as f:
        for i in range(size_mb):
            f.write(hashlib.sha256(block + i.to_bytes(4, "big")).digest() * 32768)


def catalogue(data_dir: Path, size: int) -> None:
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    try:
        with contextlib.suppress(Exception):
            catalog.create_collection(minimal_collection("bench", made_by="bench"))
        item = {
            "type": "Feature", "stac_version": "1.1.0", "id": "big", "collection": "bench",
            "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}, "bbox": [0, 0, 0, 0],
            "properties": {"datetime": "2024-01-01T00:00:00Z"}, "links": [],
            "assets": {"data": {"href": "data.bin", "type": "application/octet-stream",
                                "roles": ["data"], "eoshare:key": KEY, "file:size": size}},
        }  # fmt: skip
        catalog.upsert_items([item], on_conflict="update")
    finally:
        catalog.close()


@contextlib.contextmanager
def eoshare(
    data_dir: Path,
    storage: str = "",
    *,
    workers: int = 2,
    procs: list[subprocess.Popen[bytes]] | None = None,
    **extra_env: str,
) -> Iterator[str]:
    """``eoshare serve --workers N`` on a free port; its process is appended to ``procs``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.update({"EOSHARE_DATA_DIR": str(data_dir), "EOSHARE_LOG_LEVEL": "warning",
                "EOSHARE_API__ADMIN_TOKEN": TOKEN, "EOSHARE_STORAGE": storage,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})  # fmt: skip
    env.update(extra_env)
    log = (data_dir / "server.log").open("ab")
    proc = subprocess.Popen(
        # what an operator runs: `eoshare serve` (zero-copy file bodies, see
        # eoshare.api.zerocopy); two server processes, like nginx's worker_processes 2
        [sys.executable, "-m", "eoshare.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    if procs is not None:
        procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/api")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@contextlib.contextmanager
def nginx(root: Path, work: Path, upstream: str | None = None, store: Path | None = None
          ) -> Iterator[str]:  # fmt: skip
    """nginx serving ``root``; with ``upstream``, a proxy to eoshare that serves the
    store's files handed over with X-Accel-Redirect (docs/deployment.md)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise SystemExit("nginx is missing: run scripts/install-nginx.sh")
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    if upstream is None:
        server = f"server {{ listen 127.0.0.1:{port}; root {root}; }}"
    else:
        server = f"""server {{ listen 127.0.0.1:{port};
        location / {{ proxy_pass {upstream}; proxy_buffering off; }}
        location /_eoshare_store/ {{ internal; alias {store}/; }} }}"""
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    {server}
}}
""")
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def curl_many(url: str, clients: int, extra: list[str] | None = None) -> float:
    """MB/s over all clients fetching ``url`` whole at once (curl, output discarded)."""
    args = ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}\n", *(extra or []), url]
    start = time.monotonic()
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE) for _ in range(clients)]
    total = 0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"curl failed on {url}: exit {p.returncode}")
        total += int(out.strip() or 0)
    return total / (time.monotonic() - start) / 1e6


def best(fn: object, runs: int) -> float:
    return max(fn() for _ in range(runs))  # type: ignore[operator]


def side_by_side(ours: object, ref: object, runs: int, repeat: int) -> tuple[float, float, float]:
    """``repeat`` rounds of (ours, reference), each the best of ``runs``, interleaved so
    that both see the same moments of a shared machine; the medians of the MB/s and of
    the per-round ratios."""
    pairs = [(best(ours, runs), best(ref, runs)) for _ in range(repeat)]
    return (
        statistics.median(e for e, _ in pairs),
        statistics.median(r for _, r in pairs),
        statistics.median(e / r for e, r in pairs),
    )


def upload_bench(url: str, path: Path, chunk: int, resume: bool) -> float:
    data_size = path.stat().st_size
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    h = {"Authorization": f"Bearer {TOKEN}"}
    start = time.monotonic()
    with httpx.Client(base_url=url, headers=h, timeout=120) as c:
        up = c.post("/uploads", json={"collection": "bench", "filename": "data.bin",
                                      "size": data_size, "sha256": sha}).json()  # fmt: skip
        n = up["chunk_count"]
        with path.open("rb") as f:
            order = list(range(n))
            if resume:  # half, then an interruption: a new client asks what is missing
                for i in order[: n // 2]:
                    f.seek(i * up["chunk_bytes"])
                    c.put(f"/uploads/{up['id']}/chunks/{i}", content=f.read(up["chunk_bytes"]))
                order = c.get(f"/uploads/{up['id']}").json()["missing"]
            for i in order:
                f.seek(i * up["chunk_bytes"])
                block = f.read(up["chunk_bytes"])
                digest = hashlib.sha256(block).hexdigest()
                r = c.put(f"/uploads/{up['id']}/chunks/{i}", content=block,
                          headers={"X-Chunk-SHA256": digest})  # fmt: skip
                r.raise_for_status()
        assert c.get(f"/uploads/{up['id']}").json()["missing"] == []
        elapsed = time.monotonic() - start
        c.delete(f"/uploads/{up['id']}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--runs", type=int, default=2, help="best of this many per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the median ratio is shown")
    ap.add_argument("--upload-mb", type=int, default=256)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument(
        "--s3-copy", action="store_true", help="also S3 with zero_copy off (obstore, copied)"
    )
    ap.add_argument("--no-local", action="store_true", help="skip the local store rows")
    ap.add_argument("--no-accel", action="store_true", help="skip eoshare behind nginx")
    ap.add_argument("--no-upload", action="store_true")
    ap.add_argument("--append", action="store_true", help="append to benchmarks/RESULTS.md")
    args = ap.parse_args()
    work = HERE / ".work" / "downloads"
    data_dir = work / "node"
    big = data_dir / "store" / KEY
    make_file(big, args.size_mb)
    size = big.stat().st_size
    catalogue(data_dir, size)
    load = [os.getloadavg()[0]]
    rows: list[tuple[str, float, float, float]] = []

    def measure(what: str, ours: str, ref: str, clients: int, ours_extra: list[str],
                ref_extra: list[str]) -> None:  # fmt: skip
        e, r, ratio = side_by_side(
            lambda: curl_many(ours, clients, ours_extra),
            lambda: curl_many(ref, clients, ref_extra),
            args.runs,
            args.repeat,
        )
        rows.append((what, e, r, ratio))
        load.append(os.getloadavg()[0])
        print(f"{what}: {e:.0f} vs {r:.0f} MB/s, median ratio {ratio:.2f}", flush=True)

    with eoshare(data_dir) as eo, nginx(big.parent, work / "nginx") as ng:
        for clients in () if args.no_local else (1, args.clients):
            measure(f"local store, {clients} stream(s): eoshare vs nginx",
                    f"{eo}/download/bench/big/data", f"{ng}/data.bin", clients, [], [])  # fmt: skip
    if not args.no_accel:
        # behind nginx: the node decides and audits, nginx sends (X-Accel-Redirect)
        accel = {"EOSHARE_DOWNLOADS__ACCEL_REDIRECT": "/_eoshare_store/"}
        store_dir = (data_dir / "store").resolve()
        with (
            eoshare(data_dir, **accel) as eo,
            nginx(big.parent, work / "nginx-accel", eo, store_dir) as front,
            nginx(big.parent, work / "nginx") as ng,
        ):
            for clients in (1, args.clients):
                measure(
                    f"local store behind nginx (X-Accel-Redirect), {clients} stream(s) vs nginx",
                    f"{front}/download/bench/big/data", f"{ng}/data.bin", clients, [], [],
                )  # fmt: skip
    if not args.no_s3:
        weed = WeedServer(work / "weed")
        shutil.rmtree(work / "weed", ignore_errors=True)
        weed.start()
        try:
            weed.make_bucket("bench")
            s3_url = weed.store_url("bench", "eo")
            store = open_store(s3_url, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
            store.put_file(KEY, big)
            direct = f"{weed.endpoint}/bench/eo/{KEY}"
            sig = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}"]
            with eoshare(data_dir, s3_url) as eo:
                for clients in (1, args.clients):
                    measure(f"S3 store streamed, {clients} stream(s): eoshare vs S3 direct",
                            f"{eo}/download/bench/big/data", direct, clients, [], sig)  # fmt: skip
            if args.s3_copy:  # the path before splicing: obstore reads, the node copies
                with eoshare(data_dir, s3_url, EOSHARE_DOWNLOADS__ZERO_COPY="false") as eo:
                    for clients in (1, args.clients):
                        measure(
                            f"S3 store copied (zero_copy off), {clients} stream(s) vs direct",
                            f"{eo}/download/bench/big/data", direct, clients, [], sig,
                        )  # fmt: skip
            with eoshare(data_dir, s3_url, EOSHARE_DOWNLOADS__REDIRECT="true") as eo:
                for clients in (1, args.clients):
                    measure(
                        f"S3 store, redirect to presigned URL, {clients} stream(s) vs direct",
                        f"{eo}/download/bench/big/data", direct, clients, ["-L"], sig,
                    )  # fmt: skip
        finally:
            weed.stop()
    upload = ""
    if not args.no_upload:
        up_file = work / "upload.bin"
        make_file(up_file, args.upload_mb)
        with eoshare(data_dir) as eo:
            straight = upload_bench(eo, up_file, 0, resume=False)
            resumed = upload_bench(eo, up_file, 0, resume=True)
        mb = up_file.stat().st_size / 1e6
        upload = (
            f"Uploads of {mb:.0f} MB in {8} MiB chunks with per-chunk sha256 (local store): "
            f"{mb / straight:.0f} MB/s straight; interrupted at half and resumed: "
            f"{mb / resumed:.0f} MB/s, resume overhead {100 * (resumed / straight - 1):+.1f} %."
        )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    lines = [
        f"\n## Downloads and uploads ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, commit {commit})\n",
        f"`python benchmarks/bench_downloads.py {' '.join(sys.argv[1:])}`; eoshare is "
        "`eoshare serve --workers 2`, nginx has 2 worker processes; curl clients on the same "
        "machine; each "
        f"measurement is the best of {args.runs} runs, repeated {args.repeat} times side by side; "
        "median MB/s and median ratio; load average (1 min) during the run "
        f"{min(load):.1f} to {max(load):.1f}.\n",
        "| what | eoshare MB/s | reference MB/s | ratio (median) |",
        "|---|---:|---:|---:|",
        *[f"| {w} | {e:.0f} | {r:.0f} | {ratio:.2f} |" for w, e, r, ratio in rows],
        "",
        upload,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with (HERE / "RESULTS.md").open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
