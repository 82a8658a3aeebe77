"""Load, the short version: ``benchmarks/load_test.py`` with 16 clients for 20 seconds
(half anonymous, half a member's analyst) mixing searches, item pages, tiles, byte
ranges and signed links against ``eoshare serve``. No request may fail, the server's
memory must stay flat after warm-up and its file descriptors bounded. ``make bench``
runs 64 clients for five minutes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load_test.py"


def test_sixteen_clients_for_twenty_seconds(shared_data: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--clients", "16", "--seconds", "20",
         "--workdir", str(tmp_path / "work"), "--json", str(report_path)],
        capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "EOSHARE_SHARED_DATA": str(shared_data)},
    )  # fmt: skip
    assert report_path.exists(), done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    assert report["errors"] == 0, report["first_errors"]
    assert set(report["latency_ms"]) == {"search", "item", "tile", "download", "sign", "signed"}
    assert all(k["n"] > 0 for k in report["latency_ms"].values())
    assert report["rss_mib"]["growth"] <= 0.25, report["rss_mib"]
    assert report["fds"]["end"] <= report["fds"]["after_warmup"] + 64, report["fds"]
    # the catalogue's connections are a pool of at most 8 (one per thread that ever ran
    # a query used to pile up); the state databases keep one per live thread (up to
    # anyio's 40), closed with their thread
    assert report["catalog_files_open"]["highest"] <= 8, report["catalog_files_open"]
    assert report["sqlite_files_open"]["highest"] <= 160, report["sqlite_files_open"]
    assert done.returncode == 0, done.stdout + done.stderr
