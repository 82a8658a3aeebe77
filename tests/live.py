"""A real eoshare node for tests: uvicorn in a subprocess on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def live_node(
    data_dir: Path, env: dict[str, str], *, ready_path: str = "/", timeout_s: float = 90.0
) -> Iterator[str]:
    """Serve ``data_dir`` with ``uvicorn --factory eoshare.api.app:create_app`` on a free
    port and yield its URL. The server's environment is this process's without any
    EOSHARE_* or PYTHONPATH, plus ``env``; its output goes to ``data_dir/server.log``.
    A server that exits or does not answer in time fails the test (never a skip)."""
    port = free_port()
    server_env = {
        k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_") and k != "PYTHONPATH"
    }
    server_env.update({"EOSHARE_DATA_DIR": str(data_dir), **env})
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "eoshare.api.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            env=server_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    log.flush()
                    pytest.fail("the server exited:\n" + log_path.read_text(), pytrace=False)
                try:
                    if httpx.get(url + ready_path, timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the server did not answer within {timeout_s:.0f} s", pytrace=False
                    )
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
