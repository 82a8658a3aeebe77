"""Benchmark of the web UI: what a browser must fetch, how fast eoshare serves it, and
how long the page takes to be usable in Debian's Chromium. Never part of ``make test``.

    python benchmarks/bench_web.py               # prints, and appends to RESULTS.md
    python benchmarks/bench_web.py --no-write    # prints only

Side by side, in one run:

1. page weight: every file the UI loads, raw and gzip-compressed as the node sends it;
2. serving: ``/ui/...`` (eoshare's own handler: ETag, CSP, no-cache) against Starlette's
   ``StaticFiles`` on the same folder, and ``/`` for a browser (the UI) against ``/``
   for a STAC client (JSON); requests per second through uvicorn on 127.0.0.1, and
   revalidation (``If-None-Match`` -> 304) against full downloads;
3. the browser: navigation to "ready" (first search shown) on the small demo, a cold
   start (new profile) against a warm one (reload with the cache).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.staticfiles import StaticFiles

from eoshare.api.app import create_app
from eoshare.settings import Settings
from eoshare.web import STATIC

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "web"
RESULTS = HERE / "RESULTS.md"
CHROMIUM = Path(os.environ.get("EOSHARE_CHROMIUM", "/usr/bin/chromium"))
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
UI_FILES = [
    "",
    "css/app.css",
    "js/app.js",
    "js/api.js",
    "js/i18n.js",
    "js/map.js",
    "i18n/en.json",
    "img/favicon.svg",
    "vendor/leaflet/leaflet.css",
    "vendor/leaflet/leaflet.js",
    "vendor/topojson-client/topojson-client.min.js",
    "vendor/world-atlas/countries-110m.json",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """An ASGI app served by uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def page_weight(client: httpx.Client, url: str) -> tuple[int, int]:
    raw = gz = 0
    for name in UI_FILES:
        plain = client.get(f"{url}/ui/{name}", headers={"Accept-Encoding": "identity"})
        packed = client.get(f"{url}/ui/{name}", headers={"Accept-Encoding": "gzip"})
        assert plain.status_code == packed.status_code == 200, name
        raw += len(plain.content)
        # httpx decodes gzip; the bytes on the wire are in the raw stream
        gz += int(packed.headers.get("content-length", len(plain.content)))
    return raw, gz


Target = tuple[str, dict[str, str]]


def compare(client: httpx.Client, a: Target, b: Target, n: int) -> tuple[float, float]:
    """Requests per second of ``a`` and of ``b``, measured in alternating blocks of 25 so
    that the load of a shared machine falls on both alike."""
    spent = {0: 0.0, 1: 0.0}
    for url, headers in (a, b):
        for _ in range(10):
            client.get(url, headers=headers)
    done = 0
    while done < n:
        block = min(25, n - done)
        for i, (url, headers) in enumerate((a, b)):
            started = time.perf_counter()
            for _ in range(block):
                response = client.get(url, headers=headers)
                assert response.status_code in (200, 304), (url, response.status_code)
            spent[i] += time.perf_counter() - started
        done += block
    return n / spent[0], n / spent[1]


def browser_ready_times(url: str, runs: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    cold: list[float] = []
    warm: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            started = time.perf_counter()
            page.goto(f"{url}/")
            page.wait_for_selector("body[data-ready=true]", state="attached", timeout=60_000)
            page.wait_for_selector("#results li", timeout=60_000)
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            page.reload()
            page.wait_for_selector("body[data-ready=true]", state="attached", timeout=60_000)
            page.wait_for_selector("#results li", timeout=60_000)
            warm.append(time.perf_counter() - started)
            context.close()
        browser.close()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5, help="browser runs")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    from eoshare.demo.build import build_demo

    build_demo(WORK / "data", progress=False, scale="small")
    app = create_app(Settings(data_dir=WORK / "data", log_level="warning"))
    # Starlette's StaticFiles on the same folder, behind the same middleware, to compare
    app.mount("/static-bench", StaticFiles(directory=STATIC), name="static-bench")

    rows: list[tuple[str, str]] = []
    with Server(app) as url, httpx.Client(timeout=30) as client:
        raw, gz = page_weight(client, url)
        n = args.requests
        leaflet = "/ui/vendor/leaflet/leaflet.js"
        etag = client.get(f"{url}{leaflet}", headers={"Accept-Encoding": "identity"}).headers[
            "etag"
        ]
        static = f"{url}/static-bench/vendor/leaflet/leaflet.js"
        identity = {"Accept-Encoding": "identity"}
        ours, theirs = compare(client, (f"{url}{leaflet}", identity), (static, identity), n)
        revalidate, full = compare(
            client, (f"{url}{leaflet}", {"If-None-Match": etag}), (f"{url}{leaflet}", identity), n
        )
        gzipped, plain = compare(
            client,
            (f"{url}{leaflet}", {"Accept-Encoding": "gzip"}),
            (f"{url}{leaflet}", identity),
            n,
        )
        ui_page, landing = compare(
            client,
            (f"{url}/", {"Accept": BROWSER_ACCEPT}),
            (f"{url}/", {"Accept": "application/json"}),
            n,
        )
        browser = None
        if CHROMIUM.is_file():
            # uvicorn in a subprocess, as in production, so the browser's requests do not
            # share this process's interpreter lock with the benchmark
            port = _free_port()
            env = {**os.environ, "EOSHARE_DATA_DIR": str(WORK / "data")}
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "eoshare.api.app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                env=env,
            )  # fmt: skip
            try:
                live = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"{live}/conformance").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("eoshare did not start")
                    time.sleep(0.2)
                browser = browser_ready_times(live, args.runs)
            finally:
                proc.terminate()
                proc.wait(timeout=15)

    def ratio(a: float, b: float) -> str:
        return f"{a:.0f} vs {b:.0f} (ratio {a / b:.2f})"

    rows += [
        ("UI page weight, all files (raw / gzip)", f"{raw >> 10} KiB / {gz >> 10} KiB"),
        ("leaflet.js: eoshare /ui handler vs StaticFiles, req/s", ratio(ours, theirs)),
        ("leaflet.js: 304 revalidation vs full body, req/s", ratio(revalidate, full)),
        ("leaflet.js: gzip vs identity, req/s", ratio(gzipped, plain)),
        ("GET / as a browser (UI) vs as a STAC client (JSON), req/s", ratio(ui_page, landing)),
    ]
    if browser:
        cold, warm = browser
        c, w = statistics.median(cold) * 1000, statistics.median(warm) * 1000
        rows.append(
            (
                f"Chromium: navigation to first results, median of {len(cold)}, cold vs warm, ms",
                ratio(c, w),
            )
        )
    else:
        rows.append(("Chromium", f"not measured: {CHROMIUM} is missing (make browser)"))

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        "## Web UI (bench_web.py)",
        "",
        f"- date: {now}",
        f"- machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"{platform.platform()}; python {platform.python_version()}",
        f"- method: `python benchmarks/bench_web.py`; {args.requests} sequential requests per "
        "side, the two sides of a row alternating in blocks of 25, after 10 warm-up ones, "
        "one client, uvicorn (one worker) on 127.0.0.1 in-process "
        "(StaticFiles mounted in the same app, behind the same middleware); "
        "browser: Debian Chromium headless via Playwright on the small demo, uvicorn in a "
        "subprocess; the machine was shared with other test runs",
        "",
        "| measure | result |",
        "|---|---:|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        with RESULTS.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
