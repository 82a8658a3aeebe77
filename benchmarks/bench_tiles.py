"""Tile benchmarks: eoshare through HTTP, side by side in one run with rio-tiler called
in-process and with ``titiler.application`` serving the same file.

1. ingest the Sentinel-2 B04/B08/TCI COGs of ``../shared/data/raster`` into a fresh data
   directory under ``benchmarks/.work/tiles`` (as ``eoshare ingest`` does);
2. start three servers on 127.0.0.1 (uvicorn, one worker each): eoshare with its tile
   cache off (every tile rendered: "cold"), eoshare with its cache on, and titiler
   (``titiler.application.main:app``) reading the very file eoshare stored;
3. the same tiles everywhere: zooms 8-14 over the scene, B04 rescaled 0-6000 as PNG;
   latency p50/p95 (sequential, one keep-alive client), then tiles per second with 1, 4
   and 16 concurrent clients; rio-tiler in-process is timed doing the same work
   (open the COG, read the tile, rescale, encode PNG) in the same run.

    python benchmarks/bench_tiles.py                 # prints, and appends to RESULTS.md
    python benchmarks/bench_tiles.py --rounds 1 --no-write
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import morecantile
from rio_tiler.io import Reader

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work" / "tiles"
RESULTS = HERE / "RESULTS.md"
SHARED = Path(os.environ.get("EOSHARE_SHARED_DATA", REPO.parent / "shared" / "data"))
SCENE = "S2A_29RKH_20200219_0_L2A"
ZOOMS = range(8, 15)
PER_ZOOM = 6
RESCALE = "0,6000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare() -> tuple[Path, str]:
    """Ingest the scene; return the data dir and the stored B04 path."""
    from eoshare.catalog import open_catalog
    from eoshare.ingest.raster import ingest_rasters
    from eoshare.settings import load_settings
    from eoshare.storage import open_store

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    settings = load_settings(data_dir=WORK)
    catalog = open_catalog(settings.catalog_url)
    store = open_store(settings.storage_url)
    raster = SHARED / "raster"
    files = [raster / f"{SCENE}_{b}.tif" for b in ("B04", "B08", "TCI")]
    report = ingest_rasters(files, catalog=catalog, store=store, collection_id="s2",
                            create_collection=True)  # fmt: skip
    assert report.ok, report.failures
    item = catalog.get_item("s2", SCENE)
    catalog.close()
    path, _ = store.gdal_path(item["assets"]["B04"]["eoshare:key"])
    return WORK, path


def tiles_over(path: str) -> list[morecantile.Tile]:
    """PER_ZOOM tiles per zoom inside the scene, spread from its centre outwards."""
    tms = morecantile.tms.get("WebMercatorQuad")
    ring = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, -1), (2, 0), (0, 2)]
    out = []
    with quiet(), Reader(path) as src:
        west, south, east, north = src.get_geographic_bounds(tms.geographic_crs)
        for z in ZOOMS:
            centre = tms.tile((west + east) / 2, (south + north) / 2, z)
            candidates = [morecantile.Tile(centre.x + dx, centre.y + dy, z) for dx, dy in ring]
            inside = [t for t in candidates if src.tile_exists(t.x, t.y, t.z)]
            out += inside[:PER_ZOOM]
    return out


@contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextmanager
def server(args: list[str], env: dict[str, str], health: str) -> Iterator[str]:
    port = _free_port()
    full_env = {**os.environ, **env}
    log = (WORK / f"server-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env=full_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + health, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server {args} did not start; see {log.name}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(fetch: Callable[[morecantile.Tile], None], tiles: list[morecantile.Tile],
            rounds: int) -> tuple[float, float]:  # fmt: skip
    times = []
    for _ in range(rounds):
        for t in tiles:
            start = time.perf_counter()
            fetch(t)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), pct(times, 95)


def throughput(make: Callable[[], Callable[[morecantile.Tile], None]],
               tiles: list[morecantile.Tile], clients: int, total: int) -> float:  # fmt: skip
    """Tiles per second: ``total`` requests shared by ``clients`` threads."""
    lock = threading.Lock()
    counter = [0]

    def work() -> None:
        fetch = make()
        while True:
            with lock:
                n = counter[0]
                counter[0] += 1
            if n >= total:
                return
            fetch(tiles[n % len(tiles)])

    threads = [threading.Thread(target=work) for _ in range(clients)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return total / (time.perf_counter() - start)


def http_fetcher(url_of: Callable[[morecantile.Tile], str]) -> Callable[[], Callable[..., None]]:
    def make() -> Callable[[morecantile.Tile], None]:
        client = httpx.Client(timeout=60)

        def fetch(t: morecantile.Tile) -> None:
            r = client.get(url_of(t))
            if r.status_code != 200 or not r.content.startswith(b"\x89PNG"):
                raise SystemExit(f"{url_of(t)}: {r.status_code} {r.text[:200]}")

        return fetch

    return make


def inprocess_fetcher(path: str) -> Callable[[], Callable[..., None]]:
    lo, hi = (float(v) for v in RESCALE.split(","))

    def make() -> Callable[[morecantile.Tile], None]:
        def fetch(t: morecantile.Tile) -> None:
            with quiet(), Reader(path) as src:
                img = src.tile(t.x, t.y, t.z)
                img.rescale(in_range=((lo, hi),))
                img.render(img_format="PNG")

        return fetch

    return make


def paired(rounds: int, requests: int) -> None:
    """Side by side on a busy machine: each measurement of eoshare is followed at once by
    the same measurement of the reference, ``rounds`` times; the medians of the ratios."""
    data_dir, path = prepare()
    tiles = tiles_over(path)
    item = f"/tiles/collections/s2/items/{SCENE}/tiles/WebMercatorQuad"
    env = {"EOSHARE_DATA_DIR": str(data_dir), "EOSHARE_LOG_LEVEL": "warning",
           "EOSHARE_TILES__CACHE_BYTES": "0"}  # fmt: skip
    load = [os.getloadavg()[0]]
    with (
        server(["--factory", "eoshare.api.app:create_app"], env, "/") as cold,
        server(["titiler.application.main:app"], {}, "/healthz") as titiler,
    ):
        ours = http_fetcher(
            lambda t: f"{cold}{item}/{t.z}/{t.x}/{t.y}.png?assets=B04&rescale={RESCALE}"
        )
        ref = http_fetcher(
            lambda t: (
                f"{titiler}/cog/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
                f"?url={path}&rescale={RESCALE}"
            )
        )
        inproc = inprocess_fetcher(path)()
        one = ours()
        for t in tiles:  # warm up both servers and the page cache
            one(t)
            ref()(t)
            inproc(t)
        ratios: dict[str, list[float]] = {f"c{c}": [] for c in (1, 4, 16)}
        per_tile: list[float] = []
        for r in range(rounds):
            mine, theirs = [], []
            for t in tiles:  # per tile: in-process, then through eoshare, alternately
                start = time.perf_counter()
                inproc(t)
                theirs.append(time.perf_counter() - start)
                start = time.perf_counter()
                one(t)
                mine.append(time.perf_counter() - start)
            per_tile.append(statistics.median(mine) / statistics.median(theirs))
            for c in (1, 4, 16):
                e = throughput(ours, tiles, c, requests)
                ti = throughput(ref, tiles, c, requests)
                ratios[f"c{c}"].append(e / ti)
            load.append(os.getloadavg()[0])
            done = ", ".join(f"{k} {v[-1]:.2f}" for k, v in ratios.items())
            print(f"round {r + 1}: per tile {per_tile[-1]:.2f}, throughput {done}", flush=True)
    print(
        f"median of {rounds} rounds: eoshare uncached / rio-tiler in-process per tile (HTTP "
        f"p50 / in-process p50) {statistics.median(per_tile):.2f}; throughput eoshare "
        "uncached / titiler.application: "
        + ", ".join(f"{k[1:]} clients {statistics.median(v):.2f}" for k, v in ratios.items())
        + f"; load average {min(load):.1f} to {max(load):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="latency passes over the tiles")
    parser.add_argument("--requests", type=int, default=240, help="requests per throughput run")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="instead: N interleaved rounds of eoshare (uncached) vs titiler and per-tile "
        "eoshare vs rio-tiler in-process; prints median ratios (for a shared machine)",
    )
    args = parser.parse_args()
    if args.pairs:
        paired(args.pairs, args.requests)
        return

    data_dir, path = prepare()
    tiles = tiles_over(path)
    item = f"/tiles/collections/s2/items/{SCENE}/tiles/WebMercatorQuad"
    base_env = {"EOSHARE_DATA_DIR": str(data_dir), "EOSHARE_LOG_LEVEL": "warning"}
    factory = ["--factory", "eoshare.api.app:create_app"]
    rows: dict[str, dict[str, float]] = {}
    inproc = inprocess_fetcher(path)
    rows["rio-tiler in-process"] = {}
    with (
        server(factory, {**base_env, "EOSHARE_TILES__CACHE_BYTES": "0"}, "/") as cold,
        server(factory, base_env, "/") as warm,
        server(["titiler.application.main:app"], {}, "/healthz") as titiler,
    ):
        fetchers = {
            "rio-tiler in-process": inproc,
            "eoshare, uncached": http_fetcher(
                lambda t: f"{cold}{item}/{t.z}/{t.x}/{t.y}.png?assets=B04&rescale={RESCALE}"
            ),
            "titiler.application": http_fetcher(
                lambda t: (
                    f"{titiler}/cog/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
                    f"?url={path}&rescale={RESCALE}"
                )
            ),
            "eoshare, cached": http_fetcher(
                lambda t: f"{warm}{item}/{t.z}/{t.x}/{t.y}.png?assets=B04&rescale={RESCALE}"
            ),
        }
        for name, make in fetchers.items():
            fetch = make()
            for t in tiles:  # warm up: connections, GDAL block cache, the tile cache
                fetch(t)
            p50, p95 = latency(fetch, tiles, args.rounds)
            rows[name] = {"p50": p50, "p95": p95}
            for clients in (1, 4, 16):
                rows[name][f"c{clients}"] = throughput(make, tiles, clients, args.requests)
            print(name, {k: round(v, 2) for k, v in rows[name].items()}, flush=True)

    ref = rows["rio-tiler in-process"]
    cold_row, tit, cached = (
        rows["eoshare, uncached"],
        rows["titiler.application"],
        rows["eoshare, cached"],
    )
    beats_titiler = all(cold_row[f"c{c}"] >= tit[f"c{c}"] for c in (1, 4, 16))
    lines = [
        "",
        "## Tiles: eoshare vs rio-tiler in-process vs titiler.application",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"{platform.platform()}; python {platform.python_version()}",
        f"- method: `python benchmarks/bench_tiles.py`; {len(tiles)} Web Mercator tiles over "
        f"zooms {ZOOMS.start}-{ZOOMS.stop - 1} of {SCENE} B04 (COG, 100 m), rescale "
        f"{RESCALE}, PNG; latency over {args.rounds} sequential passes after a warm-up pass "
        f"(one keep-alive client); throughput = {args.requests} requests shared by N "
        "client threads; each server is uvicorn with one worker on 127.0.0.1; the machine "
        "was shared with other test runs",
        "",
        "| setup | p50 ms | p95 ms | tiles/s, 1 client | 4 clients | 16 clients |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['p50']:.2f} | {r['p95']:.2f} | {r['c1']:.0f} | {r['c4']:.0f} "
            f"| {r['c16']:.0f} |"
        )
    lines += [
        "",
        f"- uncached p50 / in-process p50: {cold_row['p50'] / ref['p50']:.2f} "
        f"(target <= 1.15) {'✓' if cold_row['p50'] <= ref['p50'] * 1.15 else '✗'}",
        f"- cached p50: {cached['p50']:.2f} ms (target < 2 ms) {'✓' if cached['p50'] < 2 else '✗'}",
        "- uncached throughput / titiler: "
        + ", ".join(f"{c} clients {cold_row[f'c{c}'] / tit[f'c{c}']:.2f}" for c in (1, 4, 16))
        + f" (target >= 1) {'✓' if beats_titiler else '✗'}",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        with RESULTS.open("a") as f:
            f.write(section)


if __name__ == "__main__":
    main()
