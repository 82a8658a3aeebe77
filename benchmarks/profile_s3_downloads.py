"""Where the CPU goes when eoshare streams an S3 object (a companion of bench_downloads).

Starts SeaweedFS on 127.0.0.1 with one object of ``--size-mb``, an ``eoshare serve`` on
that store, and fetches the object with curl ``--clients`` at once, directly from the S3
server and through eoshare, several rounds interleaved. For each it prints the MB/s and the
CPU seconds per GB taken by SeaweedFS, by eoshare (all its processes) and by curl: on a
machine with few cores the sum is what bounds the rate. A third contender, nginx as a
plain reverse proxy of the S3 server (``proxy_pass``, what an operator would put in
front of a private bucket), shows what any proxy in between costs.

    python benchmarks/profile_s3_downloads.py --size-mb 256 --clients 16
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench_downloads import (
    ACCESS_KEY,
    HERE,
    KEY,
    SECRET_KEY,
    WeedServer,
    catalogue,
    eoshare,
    free_port,
    make_file,
    open_store,
)

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        todo.extend(int(k) for k in kids)
    return total


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fetch(url: str, clients: int, extra: list[str], pids: dict[str, int]) -> dict[str, float]:
    args = ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}\n", *extra, url]
    before = {k: tree_cpu(p) for k, p in pids.items()}
    curl0 = children_cpu()
    start = time.monotonic()
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE) for _ in range(clients)]
    total = 0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"curl failed on {url}: exit {p.returncode}")
        total += int(out.strip() or 0)
    wall = time.monotonic() - start
    gb = total / 1e9
    out = {"MB/s": total / wall / 1e6}
    for k, p in pids.items():
        out[f"{k} s/GB"] = (tree_cpu(p) - before[k]) / gb
    out["curl s/GB"] = (children_cpu() - curl0) / gb
    return out


def nginx_proxy(upstream: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """nginx (2 workers) proxying everything to ``upstream``; the Host header is passed
    on, so that a SigV4 signature made for the proxy's address holds."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    (work / "nginx.conf").write_text(f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    server {{ listen 127.0.0.1:{port};
        location / {{ proxy_pass {upstream}; proxy_set_header Host $http_host;
                     proxy_http_version 1.1; proxy_buffering off; }} }}
}}
""")
    proc = subprocess.Popen([binary, "-c", str(work / "nginx.conf"), "-p", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.0)
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    work = HERE / ".work" / "downloads"
    data_dir = work / "node"
    big = data_dir / "store" / KEY
    make_file(big, args.size_mb)
    catalogue(data_dir, big.stat().st_size)
    weed = WeedServer(work / "weed-profile")
    shutil.rmtree(work / "weed-profile", ignore_errors=True)
    weed.start()
    try:
        weed.make_bucket("bench")
        s3_url = weed.store_url("bench", "eo")
        store = open_store(s3_url, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
        store.put_file(KEY, big)
        direct = f"{weed.endpoint}/bench/eo/{KEY}"
        sig = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}"]
        assert weed.proc is not None
        procs: list[subprocess.Popen[bytes]] = []
        proxy, proxied = nginx_proxy(weed.endpoint, work / "nginx-s3-proxy")
        try:
            with eoshare(data_dir, s3_url, workers=args.workers, procs=procs) as eo:
                pids = {"weed": weed.proc.pid, "eoshare": procs[0].pid, "nginx": proxy.pid}
                run_all(args, pids, direct, f"{proxied}/bench/eo/{KEY}", eo, sig)
        finally:
            proxy.terminate()
            proxy.wait(timeout=20)
    finally:
        weed.stop()


def run_all(args: argparse.Namespace, pids: dict[str, int], direct: str, proxied: str,
            eo: str, sig: list[str]) -> None:  # fmt: skip
    for clients in sorted({1, args.clients}):
        rows: dict[str, list[dict[str, float]]] = {"direct": [], "eoshare": [], "nginx": []}
        for _ in range(args.repeat):
            rows["direct"].append(fetch(direct, clients, sig, pids))
            rows["eoshare"].append(fetch(f"{eo}/download/bench/big/data", clients, [], pids))
            rows["nginx"].append(fetch(proxied, clients, sig, pids))
        for what, runs in rows.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            cells = ", ".join(
                f"{k} {v:.2f}" if "s/GB" in k else f"{k} {v:.0f}"
                for k, v in med.items()
                if "s/GB" not in k or k.split()[0] in ("weed", "curl", what)
            )
            ratio = statistics.median(
                r["MB/s"] / d["MB/s"] for r, d in zip(runs, rows["direct"], strict=True)
            )
            print(f"{clients:>2} stream(s) {what:>8}: {cells}; ratio to direct {ratio:.2f}; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
