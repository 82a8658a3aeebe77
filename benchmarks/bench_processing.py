"""NDVI three ways on the same files: eoshare's synchronous openEO ``/result``, an openEO
batch job, and a hand-written rasterio + numpy script; on the shared Sentinel-2 scene
(B04/B08, 1098 x 1098 at 100 m) and on a synthetic scene stored as a COG (10980 x 10980
by default; ``--size`` for a smaller run).

Peak memory: the script's own peak RSS; for eoshare, the peak RSS of the node process
(synchronous, over its idle baseline) and of the job's process (batch), sampled every
0.1 s from /proc.

    python benchmarks/bench_processing.py [--size 10980] [--no-append]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import rasterio
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
RASTER = REPO.parent / "shared" / "data" / "raster"
S2 = "S2A_29RKH_20200219_0_L2A"
RESULTS = REPO / "benchmarks" / "RESULTS.md"

SCRIPT = r"""
import resource, sys, time
import numpy as np, rasterio
red_path, nir_path, out = sys.argv[1:4]
t = time.perf_counter()
with rasterio.open(red_path) as r, rasterio.open(nir_path) as n:
    profile = r.profile
    red = r.read(1).astype("float32"); nir = n.read(1).astype("float32")
with np.errstate(divide="ignore", invalid="ignore"):
    ndvi = (nir - red) / (nir + red)
ndvi[(red == 0) | (nir == 0)] = np.nan
profile.update(dtype="float32", nodata=None, compress="deflate", tiled=True,
               blockxsize=512, blockysize=512, driver="GTiff")
with rasterio.open(out, "w", **profile) as d:
    d.write(ndvi, 1)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            out.append(int(p.name))
            out.extend(descendants(int(p.name)))
    return out


class Peak:
    """Samples the RSS of a process (and, separately, its children) every 0.1 s."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.node = 0.0
        self.children = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.node = max(self.node, rss_mib(self.pid))
            kids = [rss_mib(k) for k in descendants(self.pid)]
            self.children = max([self.children, *kids])
            time.sleep(0.1)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_scene(folder: Path, size: int) -> tuple[Path, Path]:
    """A smooth synthetic red/NIR pair as COGs (deflate), written in strips."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    paths = []
    transform = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 2800020.0)
    for band, base in (("B04", 1200), ("B08", 2600)):
        raw = folder / f"raw_{band}.tif"
        with rasterio.open(raw, "w", driver="GTiff", width=size, height=size, count=1,
                           dtype="uint16", crs="EPSG:32629", transform=transform,
                           tiled=True, blockxsize=512, blockysize=512) as ds:  # fmt: skip
            x = np.arange(size, dtype="float32")
            for y0 in range(0, size, 512):
                rows = np.arange(y0, min(size, y0 + 512), dtype="float32")[:, None]
                block = base + 400 * np.sin(x / 700.0) * np.cos(rows / 900.0) + (rows % 7)
                ds.write(block.astype("uint16"), 1,
                         window=rasterio.windows.Window(0, y0, size, len(rows)))  # fmt: skip
        out = folder / f"SYN_T29XXX_20240601_{band}.tif"
        cog_translate(raw, out, cog_profiles.get("deflate"), quiet=True)
        raw.unlink()
        paths.append(out)
    return paths[0], paths[1]


def run(cmd: list[str], **kw: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")


def start_node(data: Path, extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.update({"EOSHARE_DATA_DIR": str(data), "EOSHARE_LOG_LEVEL": "warning", **extra})
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "eoshare.api.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/openeo/1.2/", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    return server, url


def dask_scaling(data: Path, work: Path, token: str, workers: int) -> float:
    """Seconds of one synchronous NDVI of the synthetic scene on a Dask cluster of
    ``workers`` single-threaded worker processes started on 127.0.0.1."""
    import openeo
    from openeo.rest.auth.auth import BasicBearerAuth

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--dashboard-address", ":0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    for _ in range(workers):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host",
             "127.0.0.1", "--nthreads", "1", "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
    server, url = start_node(data, {"EOSHARE_DASK": address})
    try:
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)
        con = openeo.connect(url)
        con.auth = BasicBearerAuth(token)
        cube = con.load_collection("syn", bands=["B04", "B08"]).ndvi().save_result("GTiff")
        cube.download(work / "warm-dask.tif")  # the workers import and warm up
        t = time.perf_counter()
        cube.download(work / f"dask-{workers}.tif")
        return time.perf_counter() - t
    finally:
        server.terminate()
        server.wait(timeout=30)
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--no-dask", action="store_true", help="skip the 1 and 2 worker runs")
    args = ap.parse_args()
    import openeo

    work = Path(tempfile.mkdtemp(prefix="bench-processing-"))
    data = work / "data"
    rows: list[tuple[str, str, float, float]] = []
    try:
        eoshare = [sys.executable, "-m", "eoshare.cli"]
        s2 = [str(RASTER / f"{S2}_{b}.tif") for b in ("B04", "B08")]
        run([*eoshare, "ingest", *s2, "-c", "s2", "--create-collection", "--data-dir", str(data)])
        t = time.perf_counter()
        red, nir = make_scene(work, args.size)
        print(f"synthetic {args.size}x{args.size} COGs in {time.perf_counter() - t:.1f} s")
        run([*eoshare, "ingest", str(red), str(nir), "-c", "syn", "--create-collection",
             "--datetime", "2024-06-01", "--data-dir", str(data)])  # fmt: skip
        server, url = start_node(data, {})
        try:
            con = openeo.connect(url)
            # anonymous callers may not run batch jobs: a token of an operator user
            from eoshare.access.store import AccessStore

            store = AccessStore(data / "access.db")
            store.put_user("bench", member=None, roles=frozenset({"operator"}), who="bench")
            token = store.create_token("bench", days=1, who="bench")[1]
            store.close()
            from openeo.rest.auth.auth import BasicBearerAuth

            con.auth = BasicBearerAuth(token)
            # warm-up: the node imports the processing libraries on its first call
            warm = con.load_collection(
                "s2", spatial_extent={"west": -11.9, "south": 24.4, "east": -11.8, "north": 24.5},
                bands=["B04", "B08"],
            )  # fmt: skip
            warm.ndvi().save_result("GTiff").download(work / "warm.tif")
            # the first job starts the node's fork server (it imports the libraries once)
            warm.ndvi().save_result("GTiff").create_job().start_and_wait(
                max_poll_interval=0.5, print=lambda *a: None
            )
            cases = [
                ("Sentinel-2 1098²", "s2", s2),
                (f"synthetic {args.size}²", "syn", [str(red), str(nir)]),
            ]
            for label, cid, files in cases:
                # the hand-written script
                out = work / f"{cid}-script.tif"
                p = subprocess.run([sys.executable, "-c", SCRIPT, *files, str(out)],
                                   capture_output=True, text=True, check=True)  # fmt: skip
                secs, peak = (float(v) for v in p.stdout.split())
                rows.append((label, "rasterio + numpy script", secs, peak))
                cube = con.load_collection(cid, bands=["B04", "B08"]).ndvi()
                result = cube.save_result("GTiff")
                # synchronous
                base = rss_mib(server.pid)
                with Peak(server.pid) as pk:
                    t = time.perf_counter()
                    result.download(work / f"{cid}-sync.tif")
                    secs = time.perf_counter() - t
                rows.append((label, "eoshare /result (sync)", secs, pk.node - base))
                # batch
                with Peak(server.pid) as pk:
                    t = time.perf_counter()
                    job = result.create_job()
                    job.start_and_wait(max_poll_interval=0.5, print=lambda *a: None)
                    job.get_results().download_files(work / f"{cid}-job")
                    secs = time.perf_counter() - t
                rows.append((label, "eoshare batch job", secs, pk.children))
                for row in rows[-3:]:
                    print(f"{row[0]:>22} | {row[1]:<24} | {row[2]:8.2f} s | {row[3]:6.0f} MiB")
        finally:
            server.terminate()
            server.wait(timeout=20)
        if not args.no_dask:
            for n in (1, 2):
                secs = dask_scaling(data, work, token, n)
                label = f"synthetic {args.size}²"
                rows.append((label, f"eoshare /result, Dask cluster, {n} worker(s)", secs, 0.0))
                print(f"{label:>22} | Dask, {n} worker(s)        | {secs:8.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=REPO, check=False).stdout.strip()  # fmt: skip
    lines = [
        "",
        f"## Processing: NDVI, openEO sync / batch vs rasterio + numpy (size {args.size})",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- cpu: {os.cpu_count()} cores; python {platform.python_version()}; commit {commit}",
        "- method: `python benchmarks/bench_processing.py --size "
        f"{args.size}`; one run each after a small warm-up (one sync call, one batch job); "
        "Dask local threaded scheduler; the openeo client over HTTP on 127.0.0.1; times "
        "include writing the GeoTIFF and the download",
        "- memory: script = its peak RSS; sync = node peak RSS over its idle RSS; batch = "
        "peak RSS of the largest process under the node (the job's)",
        "- Dask cluster rows: `EOSHARE_DASK` pointing at a scheduler and 1 or 2 single-threaded "
        "`dask worker` processes on this machine (after one warm-up call)",
        "",
        "| scene | how | seconds | peak MiB | time / script |",
        "|---|---|---:|---:|---:|",
    ]
    for label in dict.fromkeys(r[0] for r in rows):
        group = [r for r in rows if r[0] == label]
        ref = group[0][2]
        for _, how, secs, peak in group:
            mem = f"{peak:.0f}" if peak else "n/a"
            lines.append(f"| {label} | {how} | {secs:.2f} | {mem} | {secs / ref:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
