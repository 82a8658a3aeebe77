"""curl and wget, the download tools every user has, on the node's asset links: byte
ranges, resumed downloads (``curl -C -``, ``wget -c``) and signed links (``?sign=true``),
compared byte for byte with the stored file. Both come from Debian (scripts/install-
clients.sh installs them when missing); here and in CI, no skips.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from .conftest import L8, L8C, RasterNode


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is missing: run scripts/install-clients.sh", pytrace=False)
    return exe


def _asset(node: RasterNode, http: httpx.Client, *, signed: bool = False) -> tuple[str, bytes]:
    """The B4 asset's href as served, and the stored file's bytes."""
    item = http.get(f"/collections/{L8C}/items/{L8}", params={"sign": "true"} if signed else {})
    asset = item.json()["assets"]["B4"]
    stored = (node.data_dir / "store" / asset["eoshare:key"]).read_bytes()
    assert asset["file:checksum"] == "1220" + hashlib.sha256(stored).hexdigest()
    return asset["href"], stored


def test_curl_ranges(raster_node: RasterNode, raster_http: httpx.Client, tmp_path: Path) -> None:
    href, stored = _asset(raster_node, raster_http)
    for spec, want in (
        ("0-99", stored[:100]),
        ("1000-1999", stored[1000:2000]),
        (f"{len(stored) - 10}-", stored[-10:]),
        ("-25", stored[-25:]),
    ):
        done = subprocess.run(
            [_tool("curl"), "-sS", "--fail", "-r", spec, href], capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == want, spec
    # a range past the end: 416, which curl --fail reports as an error
    done = subprocess.run(
        [_tool("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-r",
         f"{len(stored) + 10}-", href],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout == "416"


def test_curl_and_wget_resume(
    raster_node: RasterNode, raster_http: httpx.Client, tmp_path: Path
) -> None:
    href, stored = _asset(raster_node, raster_http)
    for tool, resume in (
        ("curl", ["-sS", "--fail", "-C", "-", "-o"]),
        ("wget", ["-q", "-c", "-O"]),
    ):
        target = tmp_path / f"{tool}.tif"
        target.write_bytes(stored[:40_000])  # an interrupted earlier download
        done = subprocess.run(
            [_tool(tool), *resume, str(target), href], capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert target.read_bytes() == stored, tool


def test_signed_links(raster_node: RasterNode, raster_http: httpx.Client, tmp_path: Path) -> None:
    href, stored = _asset(raster_node, raster_http, signed=True)
    assert "sig=" in href
    out = tmp_path / "signed.tif"
    for command in (
        [_tool("curl"), "-sS", "--fail", "-o", str(out), href],
        [_tool("wget"), "-q", "-O", str(out), href],
    ):
        out.unlink(missing_ok=True)
        done = subprocess.run(command, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == stored
    # a tampered signature is refused
    tampered = href[:-4] + ("AAAA" if not href.endswith("AAAA") else "BBBB")
    done = subprocess.run(
        [_tool("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_code}", tampered],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout == "403"
