"""Malformed requests get a 4xx ``application/problem+json`` that says what is wrong:
never a 500, never a stack trace."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import LANDSAT, Server

POLY = [[[4, 52], [6, 52], [6, 53], [4, 53], [4, 52]]]


def problem(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    for key in ("detail", "code", "description", "title"):
        assert isinstance(body.get(key), str) and body[key], body
    assert "Traceback" not in r.text and 'File "' not in r.text
    for word in words:
        assert word.lower() in body["detail"].lower(), body
    return body


POST_SEARCH: list[tuple[str, Any, tuple[str, ...]]] = [
    (
        "lon-out-of-range",
        {"intersects": {"type": "Point", "coordinates": [200, 10]}},
        ("longitude",),
    ),
    (
        "lat-out-of-range",
        {"intersects": {"type": "Point", "coordinates": [10, -95]}},
        ("latitude",),
    ),
    (
        "unclosed-ring",
        {"intersects": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}},
        ("closed",),
    ),
    ("unknown-geometry", {"intersects": {"type": "Circle", "coordinates": [0, 0]}}, ("Circle",)),
    ("bad-datetime", {"datetime": "2022-13-45T00:00:00Z"}, ("datetime",)),
    ("not-rfc3339", {"datetime": "yesterday"}, ("RFC 3339",)),
    ("reversed-range", {"datetime": "2022-02-01T00:00:00Z/2021-01-01T00:00:00Z"}, ("after",)),
    ("bbox-lat-reversed", {"bbox": [0, 10, 1, 5]}, ("latitude",)),
    ("bbox-3-numbers", {"bbox": [0, 10, 1]}, ("bbox",)),
    (
        "bbox-and-intersects",
        {"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}},
        ("together",),
    ),
    ("cql2-syntax", {"filter": "eo:cloud_cover <<< 3", "filter-lang": "cql2-text"}, ("CQL2",)),
    ("cql2-json-garbage", {"filter": {"op": "~~", "args": []}, "filter-lang": "cql2-json"}, ()),
    (
        "unknown-queryable",
        {"filter": "no_such_property = 3", "filter-lang": "cql2-text"},
        ("queryable",),
    ),
    ("unknown-filter-lang", {"filter": "id = 'a'", "filter-lang": "sql"}, ("filter-lang",)),
    ("limit-0", {"limit": 0}, ("limit",)),
    ("limit-negative", {"limit": -1}, ("limit",)),
    ("bad-token", {"token": "!!not-a-token!!"}, ("token",)),
    ("sort-unknown", {"sortby": [{"field": "no_such_property"}]}, ("sort",)),
    ("sort-direction", {"sortby": [{"field": "id", "direction": "sideways"}]}, ("direction",)),
    ("query-operator", {"query": {"eo:cloud_cover": {"about": 3}}}, ("operator",)),
    ("fields-null", {"fields": None}, ("fields",)),
    ("collections-not-list", {"collections": 5}, ("collections",)),
]


@pytest.mark.parametrize(
    "body,words", [p[1:] for p in POST_SEARCH], ids=[p[0] for p in POST_SEARCH]
)
def test_post_search_rejects(http: httpx.Client, body: Any, words: tuple[str, ...]) -> None:
    problem(http.post("/search", json=body), 400, *words)


GET_SEARCH: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("bbox-text", {"bbox": "a,b,c,d"}, ("bbox",)),
    ("bbox-lat-reversed", {"bbox": "0,10,1,5"}, ("latitude",)),
    ("intersects-not-json", {"intersects": "{nope"}, ("intersects",)),
    ("datetime", {"datetime": "2022-02-30T00:00:00Z"}, ("datetime",)),
    ("open-both-ends", {"datetime": "../.."}, ("open",)),
    ("limit-0", {"limit": "0"}, ("limit",)),
    ("limit-negative", {"limit": "-1"}, ("limit",)),
    ("limit-text", {"limit": "ten"}, ("limit",)),
    ("cql2-syntax", {"filter": "id = = 'x'"}, ("CQL2",)),
    ("unknown-queryable", {"filter": "not_a_field > 1"}, ("queryable",)),
    ("query-not-json", {"query": "{eo:cloud_cover"}, ("query",)),
]


@pytest.mark.parametrize(
    "params,words", [g[1:] for g in GET_SEARCH], ids=[g[0] for g in GET_SEARCH]
)
def test_get_search_rejects(
    http: httpx.Client, params: dict[str, str], words: tuple[str, ...]
) -> None:
    problem(http.get("/search", params=params), 400, *words)
    if set(params) <= {"bbox", "datetime", "limit"}:
        # the same parameters on a collection's items
        r = http.get(f"/collections/{LANDSAT}/items", params=params)
        problem(r, 400, *words)


def test_malformed_json(http: httpx.Client) -> None:
    headers = {"content-type": "application/json"}
    problem(http.post("/search", content=b"{not json", headers=headers), 400, "JSON")
    problem(http.post("/search", content=b"[1, 2]", headers=headers), 400)


def test_unknown_things_are_404(http: httpx.Client) -> None:
    problem(http.get("/collections/no-such-collection"), 404, "no-such-collection")
    problem(http.get("/collections/no-such-collection/items"), 404)
    problem(http.get(f"/collections/{LANDSAT}/items/no-such-item"), 404, "no-such-item")
    problem(http.get("/collections/no-such-collection/queryables"), 404)
    problem(http.get("/no/such/route"), 404)


def test_method_not_allowed(http: httpx.Client) -> None:
    problem(http.request("DELETE", "/search"), 405)


def test_oversized_body_is_413(live_server: Server, http: httpx.Client) -> None:
    big = b'{"ids": ["' + b"x" * (17 * 1024 * 1024) + b'"]}'
    r = http.post("/search", content=big, headers={"content-type": "application/json"})
    problem(r, 413, "limit")


def test_transactions_need_the_token(live_server: Server, http: httpx.Client) -> None:
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "x",
        "geometry": None,
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "links": [],
        "assets": {},
    }
    url = f"/collections/{LANDSAT}/items"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ):
        r = http.post(url, json=item, headers=headers)
        body = problem(r, 401)
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
        assert live_server.token not in body["detail"]
        problem(
            http.delete(f"{url}/{live_server.loaded.of(LANDSAT)[0]['id']}", headers=headers), 401
        )
        problem(http.post("/collections", json={"id": "x"}, headers=headers), 401)


INVALID_ITEMS: list[tuple[str, dict[str, Any], str]] = [
    ("no-type", {"type": "Nope"}, "type"),
    ("no-datetime", {"properties": {}}, "datetime"),
    ("bad-datetime", {"properties": {"datetime": "2020-31-01"}}, "datetime"),
    (
        "bad-geometry",
        {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}},
        "ring",
    ),
    ("asset-without-href", {"assets": {"data": {"type": "image/tiff"}}}, "href"),
    ("slash-in-id", {"id": "a/b"}, "id"),
    ("bbox-without-geometry", {"geometry": None, "bbox": [0, 0, 1, 1]}, "bbox"),
    ("wrong-collection", {"collection": "sentinel-2-l2a"}, "collection"),
]


@pytest.mark.parametrize(
    "change,word", [i[1:] for i in INVALID_ITEMS], ids=[i[0] for i in INVALID_ITEMS]
)
def test_invalid_items_are_400(
    live_server: Server, http: httpx.Client, change: dict[str, Any], word: str
) -> None:
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "invalid-probe",
        "collection": "validator-transactions",
        "geometry": {"type": "Point", "coordinates": [1, 2]},
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "links": [],
        "assets": {},
        **change,
    }
    r = http.post(
        "/collections/validator-transactions/items", json=item, headers=live_server.admin()
    )
    problem(r, 400, word)
