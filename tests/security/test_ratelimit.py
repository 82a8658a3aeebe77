"""Hole 4 of issue 8: no brute force. Sign-in locks an account after ten wrong passwords
(429 + Retry-After, no password hash computed while locked) until an operator lifts it
(``eoshare users unlock`` or ``POST /admin/users/{name}/unlock``); an address that fails
too often is refused; the whole API has a per-caller rate limit when configured."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import eoshare.access.store as access_store
from eoshare.access.store import AccessStore
from eoshare.api.app import create_app
from eoshare.settings import Settings

from .input_nodes import ServedNode, prepare_data_dir, serve

PASSWORD = "correct-horse-battery"
PER_ADDRESS = 40


def _add_users(data_dir: Path, *names: str) -> None:
    store = AccessStore(data_dir / "access.db")
    try:
        for name in names:
            store.put_user(name, member=None, roles="viewer", password=PASSWORD, who="test")
    finally:
        store.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    data_dir = tmp_path_factory.mktemp("ratelimit")
    prepare_data_dir(data_dir)
    _add_users(data_dir, "alice", "bob")
    env = {
        "EOSHARE_ACCESS__COOKIE_SECURE": "false",
        "EOSHARE_SECURITY__LOGIN_MAX_FAILURES_PER_ADDRESS": str(PER_ADDRESS),
    }
    with serve(data_dir, env) as served:
        yield served


@pytest.fixture()
def http(node: ServedNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=30) as client:
        yield client


def _login(http: httpx.Client, user: str, password: str) -> httpx.Response:
    return http.post("/auth/login", json={"username": user, "password": password})


def _lock(http: httpx.Client, user: str) -> httpx.Response:
    for attempt in range(1, 11):
        r = _login(http, user, f"wrong-guess-{attempt}")
        assert r.status_code == 401, (attempt, r.text)
    return _login(http, user, "wrong-guess-11")


def test_the_eleventh_wrong_password_gets_429_and_the_lock_holds(
    node: ServedNode, http: httpx.Client
) -> None:
    r = _lock(http, "alice")
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert 0 < int(r.headers["Retry-After"]) <= 15 * 60
    assert "locked" in r.json()["detail"]
    # the right password does not get through a lock either
    assert _login(http, "alice", PASSWORD).status_code == 429
    # the other accounts are not affected
    assert _login(http, "bob", PASSWORD).status_code == 200


def test_the_command_lifts_the_lock(node: ServedNode, http: httpx.Client) -> None:
    assert _login(http, "alice", PASSWORD).status_code == 429
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    done = subprocess.run(
        [sys.executable, "-m", "eoshare.cli", "users", "unlock", "alice",
         "--data-dir", str(node.data_dir)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unlocked alice"
    r = _login(http, "alice", PASSWORD)
    assert r.status_code == 200, r.text


def test_an_operator_lifts_the_lock_through_the_admin_api(
    node: ServedNode, http: httpx.Client
) -> None:
    assert _lock(http, "bob").status_code == 429
    assert http.post("/admin/users/bob/unlock").status_code == 401  # anonymous
    r = http.post("/admin/users/bob/unlock", headers=node.admin())
    assert r.status_code == 200, r.text
    assert r.json() == {"username": "bob", "unlocked": True}
    assert _login(http, "bob", PASSWORD).status_code == 200


def test_unknown_names_lock_like_known_ones(http: httpx.Client) -> None:
    r = _lock(http, "nobody-" + secrets.token_hex(4))
    assert r.status_code == 429
    assert "locked" in r.json()["detail"]


def test_an_address_that_fails_too_often_is_refused(http: httpx.Client) -> None:
    """Guessing one password for many accounts: refused by address (run last: it blocks
    this client's address for the rest of the window)."""
    for attempt in range(PER_ADDRESS + 1):
        r = _login(http, f"spray-{attempt}", "Winter2026!")
        if r.status_code == 429:
            break
        assert r.status_code == 401
    assert r.status_code == 429, "never refused"
    assert "address" in r.json()["detail"]
    assert int(r.headers["Retry-After"]) > 0


# --- in process: what a lock costs, and the API-wide rate limit -------------------------
def test_no_password_hash_is_computed_while_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_users(tmp_path, "carol")
    calls: list[str] = []
    real = access_store.check_password

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(access_store, "check_password", counting)
    settings = Settings(data_dir=tmp_path, log_level="warning")
    with TestClient(create_app(settings)) as client:
        for attempt in range(10):
            r = client.post("/auth/login", json={"username": "carol", "password": f"x{attempt}"})
            assert r.status_code == 401
        assert len(calls) == 10
        for _ in range(20):
            r = client.post("/auth/login", json={"username": "carol", "password": PASSWORD})
            assert r.status_code == 429
        assert len(calls) == 10  # not one scrypt more


def test_the_api_rate_limit_when_configured(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        log_level="warning",
        api={"admin_token": "rate-admin"},
        security={"rate_limit_per_minute": 60, "rate_limit_burst": 5},
    )
    with TestClient(create_app(settings)) as client:
        codes = [client.get("/conformance").status_code for _ in range(8)]
        assert codes[:5] == [200] * 5
        assert 429 in codes[5:]
        r = client.get("/conformance")
        assert r.status_code == 429
        assert r.headers["content-type"].startswith("application/problem+json")
        assert int(r.headers["Retry-After"]) >= 1
        # another caller (a token) has a bucket of its own
        other = client.get("/conformance", headers={"Authorization": "Bearer rate-admin"})
        assert other.status_code == 200


def test_the_api_rate_limit_is_off_by_default(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, log_level="warning"))) as client:
        assert all(client.get("/conformance").status_code == 200 for _ in range(100))


def test_openeo_basic_credentials_share_the_lockout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """openEO's ``/credentials/basic`` checks passwords too: the same lock applies."""
    import base64

    _add_users(tmp_path, "erin")
    calls: list[str] = []
    real = access_store.check_password

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(access_store, "check_password", counting)

    def basic(password: str) -> dict[str, str]:
        raw = base64.b64encode(f"erin:{password}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    with TestClient(create_app(Settings(data_dir=tmp_path, log_level="warning"))) as client:
        url = "/openeo/1.2/credentials/basic"
        for attempt in range(10):
            assert client.get(url, headers=basic(f"guess-{attempt}")).status_code in (401, 403)
        locked = client.get(url, headers=basic(PASSWORD))
        assert locked.status_code == 429, locked.text
        assert int(locked.headers["Retry-After"]) > 0
        assert len(calls) == 10
        # and the browser sign-in sees the same lock
        r = client.post("/auth/login", json={"username": "erin", "password": PASSWORD})
        assert r.status_code == 429
