"""CORS (issue 12, item 1): any origin may call the API without credentials; only the
allow-listed origins (``EOSHARE_API__CORS_ORIGINS``) get credentials; preflights work
on every route; the CSRF protection of cookie sessions is unchanged. STAC Browser in
Chromium from another origin is tests/clients/test_stac_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from eoshare.settings import Settings

from .conftest import LANDSAT, Server

ELSEWHERE = "https://browser.elsewhere.example"
LISTED = "https://ui.agency.example"

ROUTES = [
    ("GET", "/"),
    ("POST", "/search"),
    ("GET", "/collections"),
    ("GET", f"/collections/{LANDSAT}/items"),
    ("PUT", f"/collections/{LANDSAT}/items/some-item"),
    ("DELETE", f"/collections/{LANDSAT}"),
    ("GET", "/queryables"),
    ("GET", f"/download/{LANDSAT}/some-item/red"),
    ("GET", f"/tiles/collections/{LANDSAT}/WMTSCapabilities.xml"),
    ("POST", "/auth/login"),
    ("GET", "/no/such/route"),
]


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_preflight_on_every_route(http: httpx.Client, method: str, path: str) -> None:
    r = http.options(
        path,
        headers={
            "Origin": ELSEWHERE,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, range",
        },
    )
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    assert method in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "authorization, content-type, range"
    assert "access-control-allow-credentials" not in r.headers


def test_any_origin_reads_without_credentials(http: httpx.Client, live_server: Server) -> None:
    r = http.get("/collections", headers={"Origin": ELSEWHERE})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
    assert "Content-Range" in r.headers["access-control-expose-headers"]
    r = http.post("/search", json={"limit": 1}, headers={"Origin": ELSEWHERE})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    # errors are readable by the page too: 404, 400 and 401 problems
    for response in (
        http.get("/collections/nope", headers={"Origin": ELSEWHERE}),
        http.get("/search?bbox=1,2", headers={"Origin": ELSEWHERE}),
        http.get("/search", headers={"Origin": ELSEWHERE, "Authorization": "Bearer wrong"}),
    ):
        assert response.status_code in (400, 401, 404)
        assert response.headers["access-control-allow-origin"] == "*"
    # a request without Origin (not from a browser page) gets no CORS headers
    assert "access-control-allow-origin" not in http.get("/collections").headers


DECLARATIONS = {
    "members": [{"code": "ke-ssa", "name": "Savanna Space Agency", "country": "KE"}],
    "users": [
        {
            "username": "wanjiru",
            "member": "ke-ssa",
            "roles": ["analyst"],
            "password": "baobab-and-rain",
        }
    ],
}


@pytest.fixture(scope="module")
def listed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A node (in process) whose settings list one credentialed origin."""
    from eoshare.access.apply import apply_declarations
    from eoshare.access.store import AccessStore
    from eoshare.api.app import create_app

    data_dir: Path = tmp_path_factory.mktemp("cors")
    store = AccessStore(data_dir / "access.db")
    try:
        apply_declarations(store, DECLARATIONS, who="tests", allow_passwords=True)
    finally:
        store.close()
    settings = Settings(
        data_dir=data_dir,
        log_level="warning",
        api={"cors_origins": [LISTED + "/"]},  # a trailing slash is forgiven
        access={"cookie_secure": False},
    )
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client


def test_listed_origin_gets_credentials(listed_node: TestClient) -> None:
    asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-a"}
    r = listed_node.options("/auth/logout", headers={"Origin": LISTED, **asks})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == LISTED
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in r.headers["vary"]
    r = listed_node.get("/collections", headers={"Origin": LISTED})
    assert r.headers["access-control-allow-origin"] == LISTED
    assert r.headers["access-control-allow-credentials"] == "true"
    # an origin that is not listed: still answered, never with credentials
    r = listed_node.options("/auth/logout", headers={"Origin": ELSEWHERE, **asks})
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers


def test_csrf_protection_is_unchanged(listed_node: TestClient) -> None:
    r = listed_node.post("/auth/login", json={"username": "wanjiru", "password": "baobab-and-rain"})
    assert r.status_code == 200, r.text
    assert listed_node.get("/auth/me").json()["user"] == "wanjiru"
    # a cookie-authenticated write from another origin, even a listed one, still needs
    # X-Requested-With (which only a granted preflight lets a page send)
    for origin in (ELSEWHERE, LISTED):
        r = listed_node.post("/auth/logout", headers={"Origin": origin})
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        assert r.headers["access-control-allow-origin"] in ("*", LISTED)
    r = listed_node.post("/auth/logout", headers={"Origin": LISTED, "X-Requested-With": "ui"})
    assert r.status_code == 204
