"""Hole 14 of issue 8: no secret in any log line. A live node started as an operator
starts it (``eoshare serve``, uvicorn's access log on) is sent signed links, bearer
tokens (admin, API, JWT-shaped), session cookies and passwords; its log is then read, and
none of those secrets may appear in it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from eoshare.access.store import AccessStore
from eoshare.logs import setup_logging

from .input_nodes import ADMIN, ServedNode, geotiff, prepare_data_dir, serve, upload

PASSWORD = "log-redaction-password"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedNode, str]]:
    data_dir = tmp_path_factory.mktemp("log-redaction")
    prepare_data_dir(data_dir)
    store = AccessStore(data_dir / "access.db")
    try:
        store.put_user("dana", member=None, roles="viewer", password=PASSWORD, who="test")
        _, api_token = store.create_token("dana", days=1, who="test")
    finally:
        store.close()
    env = {
        "EOSHARE_LOG_LEVEL": "debug",
        "EOSHARE_ACCESS__COOKIE_SECURE": "false",
        # the node's own access log (Combined Log Format) as well as uvicorn's
        "EOSHARE_API__ACCESS_LOG": str(data_dir / "access.log"),
    }
    with serve(data_dir, env) as node:
        yield node, api_token


def test_no_secret_reaches_the_server_log(served: tuple[ServedNode, str], tmp_path: Path) -> None:
    node, api_token = served
    secrets: list[str] = [ADMIN, api_token, PASSWORD]
    with httpx.Client(base_url=node.url, timeout=60) as http:
        # a signed link, made and followed
        done = upload(
            http, node.admin(), "logs_20240101.tif", geotiff(tmp_path / "a.tif").read_bytes()
        )
        assert done.status_code == 200, done.text
        item_url = done.json()["result"]["items"][0]
        item = http.get(item_url, params={"sign": "true"}, headers=node.admin()).json()
        href = item["assets"]["data"]["href"]
        sig = parse_qs(urlsplit(href).query)["sig"][0]
        secrets.append(sig)
        assert http.get(href).status_code == 200
        assert http.get(href + "x").status_code == 403  # a refused signature is logged too
        # bearer tokens: the API token, a JWT-shaped one, a wrong one
        assert (
            http.get("/auth/me", headers={"Authorization": f"Bearer {api_token}"}).status_code
            == 200
        )
        jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJlLXNlY3JldA"
        secrets.append(jwt_like)
        http.get("/search", headers={"Authorization": f"Bearer {jwt_like}"})
        wrong = "eos_0123456789ab_" + "W" * 43
        secrets.append(wrong)
        assert http.get("/search", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        # a token in a query string
        http.get("/search", params={"access_token": api_token})
        # sign-in: a wrong password, then the right one and its session cookie
        http.post("/auth/login", json={"username": "dana", "password": "not-" + PASSWORD})
        secrets.append("not-" + PASSWORD)
        ok = http.post("/auth/login", json={"username": "dana", "password": PASSWORD})
        assert ok.status_code == 200
        cookie = ok.cookies["eoshare_session"]
        secrets.append(cookie)
        assert http.get("/auth/me").json()["via"] == "session"
        # a signed link as the Referer of another request
        http.get("/conformance", headers={"Referer": href})
    log = node.log() + (node.data_dir / "access.log").read_text()
    assert '"logger": "uvicorn.access"' in log  # the access log was on
    for secret in secrets:
        assert secret not in log, f"a secret reached the log: {secret[:12]}..."
    assert "/download/" in log and "sig=[redacted]" in log


def test_the_filter_redacts_arguments_extras_and_exceptions() -> None:
    stream = io.StringIO()
    setup_logging("info", stream=stream)
    log = logging.getLogger("eoshare.test-redaction")
    try:
        log.info("GET %s", "/download/a/b/c?exp=1&kid=k1&sig=SIGSECRET1")
        log.info(
            "header",
            extra={"authorization": "Bearer BEARERSECRET2", "cookie": "eoshare_session=COOKIE3"},
        )
        try:
            raise ValueError("bad password=PASSWORD4 in eos_0123456789ab_APITOKEN5")
        except ValueError:
            log.exception("failed")
    finally:
        setup_logging("warning")
    text = stream.getvalue()
    for secret in ("SIGSECRET1", "BEARERSECRET2", "COOKIE3", "PASSWORD4", "APITOKEN5"):
        assert secret not in text, text
    assert text.count("[redacted]") >= 5
