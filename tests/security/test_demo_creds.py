"""Hole 16 of issue 8: the demo's users have a published password, so ``eoshare serve``
and ``eoshare demo`` refuse to serve them on an address other than loopback unless the
operator explicitly allows it (``--allow-demo-users`` or EOSHARE_SECURITY__ALLOW_DEMO_USERS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eoshare.access.demo import DEMO_PASSWORD, demo_declarations
from eoshare.access.store import AccessStore
from live import free_port

from .input_nodes import prepare_data_dir, serve


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.pop("PYTHONPATH", None)
    return {**env, **extra}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose access database holds the demo's users, password and all."""
    data_dir = tmp_path_factory.mktemp("demo-creds")
    prepare_data_dir(data_dir)
    store = AccessStore(data_dir / "access.db")
    try:
        for user in demo_declarations()["users"][:2]:
            store.put_user(user["username"], member=None, roles="viewer",
                           password=DEMO_PASSWORD, who="test")  # fmt: skip
    finally:
        store.close()
    return data_dir


def _serve(data_dir: Path, host: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eoshare.cli", "serve", "--host", host,
         "--port", str(free_port()), "--data-dir", str(data_dir), *extra],
        env=_env(**env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("host", ["0.0.0.0"])
def test_serve_refuses_demo_users_on_a_public_address(demo_dir: Path, host: str) -> None:
    done = _serve(demo_dir, host)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert f"refusing to serve on {host}: demo users" in errors[0]
    assert "--allow-demo-users" in errors[0]
    assert "Traceback" not in done.stderr


def test_demo_refuses_before_building_anything(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "eoshare.cli", "demo", "--host", "0.0.0.0",
         "--data-dir", str(tmp_path / "demo")],
        env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "refusing to serve on 0.0.0.0" in done.stderr
    assert not (tmp_path / "demo" / "catalog.db").exists()
    assert time.monotonic() - started < 60


def test_loopback_serves_demo_users(demo_dir: Path) -> None:
    with serve(demo_dir) as node:  # --host 127.0.0.1
        assert httpx.get(node.url + "/conformance").status_code == 200


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_an_operator_may_allow_them_explicitly(demo_dir: Path, how: str, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    extra = ["--allow-demo-users"] if how == "flag" else []
    env = {"EOSHARE_SECURITY__ALLOW_DEMO_USERS": "true"} if how == "setting" else {}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eoshare.cli", "serve", "--host", "0.0.0.0", "--port", str(port),
         "--data-dir", str(demo_dir), *extra],
        env=_env(**env), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/conformance", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_changed_passwords_are_served_anywhere(tmp_path: Path) -> None:
    prepare_data_dir(tmp_path)
    store = AccessStore(tmp_path / "access.db")
    try:
        name = demo_declarations()["users"][0]["username"]
        store.put_user(name, member=None, roles="viewer", password="a-private-password",
                       who="test")  # fmt: skip
    finally:
        store.close()
    from eoshare.access.demo import users_with_demo_password

    assert users_with_demo_password(tmp_path / "access.db") == []
