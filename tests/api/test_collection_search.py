# ruff: noqa: RUF001  (collection titles in Cyrillic and Arabic on purpose)
"""Collection search (bbox, datetime, free text, paging) and STAC API - Children against
an independent computation (issue 12, item 5): shapely boxes on the cylinder, plain
Python intervals and words, over the collections as the server shows them."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from shapely.geometry import box

from .conftest import Server
from .oracle import meets, query_box, when

JSON = dict[str, Any]


def _collection(cid: str, title: str, boxes: list[list[float]], intervals: list[Any]) -> JSON:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "title": title,
        "description": f"Collection search test: {title}.",
        "license": "CC-BY-4.0",
        "extent": {"spatial": {"bbox": boxes}, "temporal": {"interval": intervals}},
        "links": [],
    }


COLLECTIONS = [
    _collection(
        "cs-delta",
        "Delta Radar Mosaic",
        [[88.0, 20.0, 93.0, 27.0]],
        [["2020-01-01T00:00:00Z", "2020-12-31T23:59:59Z"]],
    )
    | {"keywords": ["flood", "SAR"]},
    # across the antimeridian, open-ended in time, with accents
    _collection(
        "cs-pacific",
        "Océan Pacifique Sud",
        [[170.0, -50.0, -170.0, -30.0]],
        [["2018-06-01T00:00:00Z", None]],
    ),
    # an overall box and interval, then the precise ones (which count)
    _collection(
        "cs-multi",
        "Сахара и Калахари",
        [[-20.0, -40.0, 60.0, 40.0], [-20.0, 10.0, -10.0, 20.0], [50.0, -40.0, 60.0, -30.0]],
        [
            ["2015-01-01T00:00:00Z", "2024-12-31T23:59:59Z"],
            ["2015-01-01T00:00:00Z", "2015-12-31T23:59:59Z"],
            ["2024-01-01T00:00:00Z", "2024-12-31T23:59:59Z"],
        ],
    ),
    # a 3D box, open at the start
    _collection(
        "cs-ancient",
        "Ancient archive",
        [[100.0, 0.0, -10.0, 110.0, 10.0, 100.0]],
        [[None, "2010-01-01T00:00:00Z"]],
    )
    | {"keywords": ["Landsat 5", "TM"]},
    _collection(
        "cs-arabic",
        "الأرشيف العربي",
        [[35.0, 15.0, 60.0, 35.0]],
        [["2022-01-01T00:00:00Z", "2022-06-30T00:00:00Z"]],
    ),
]


@pytest.fixture(scope="module")
def shown(live_server: Server) -> Iterator[list[JSON]]:
    """The test collections created, then every collection as the server shows it."""
    with httpx.Client(base_url=live_server.url, headers=live_server.admin(), timeout=60) as a:
        for doc in COLLECTIONS:
            a.delete(f"/collections/{doc['id']}")
            r = a.post("/collections", json=doc)
            assert r.status_code == 201, r.text
        everything = a.get("/collections", params={"limit": 1000}).json()["collections"]
        assert {c["id"] for c in COLLECTIONS} <= {c["id"] for c in everything}
        yield everything
        for doc in COLLECTIONS:
            a.delete(f"/collections/{doc['id']}")


# --- the independent computation ---------------------------------------------------------


def _boxes(collection: JSON) -> list[Any]:
    raw = collection["extent"]["spatial"]["bbox"]
    chosen = raw[1:] if len(raw) > 1 else raw
    out = []
    for b in chosen:
        x0, y0, x1, y1 = (b[0], b[1], b[3], b[4]) if len(b) == 6 else b
        out.append(box(x0, y0, x1 + 360.0 if x0 > x1 else x1, y1))  # unwrapped east
    return out


def _intervals(collection: JSON) -> list[tuple[datetime | None, datetime | None]]:
    raw = collection["extent"]["temporal"]["interval"]
    chosen = raw[1:] if len(raw) > 1 else raw
    return [(when(a) if a else None, when(b) if b else None) for a, b in chosen]


def _plain_words(text: str) -> list[str]:
    decomposed = unicodedata.normalize("NFD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))
    return re.findall(r"[^\W_]+", bare)


def _text_hit(collection: JSON, terms: list[str]) -> bool:
    fields = [collection["id"], collection.get("title", ""), collection.get("description", "")]
    fields += collection.get("keywords", [])
    for term in terms:
        phrase = _plain_words(term)
        for f in fields:
            w = _plain_words(f)
            if any(w[i : i + len(phrase)] == phrase for i in range(len(w) - len(phrase) + 1)):
                return True
    return False


def truth(collections: list[JSON], params: dict[str, str]) -> list[str]:
    out = []
    for c in collections:
        if "bbox" in params:
            qbox = query_box(tuple(float(v) for v in params["bbox"].split(",")))  # type: ignore[arg-type]
            if not any(meets(b, qbox) for b in _boxes(c)):
                continue
        if "datetime" in params:
            a, _, b = (
                params["datetime"].partition("/")
                if "/" in params["datetime"]
                else (params["datetime"], "/", params["datetime"])
            )
            lo = when(a) if a not in ("", "..") else None
            hi = when(b) if b not in ("", "..") else None
            if not any(
                (hi is None or s is None or s <= hi) and (lo is None or e is None or e >= lo)
                for s, e in _intervals(c)
            ):
                continue
        if "q" in params and not _text_hit(c, params["q"].split(",")):
            continue
        out.append(c["id"])
    return out


QUERIES: list[dict[str, str]] = [
    {"bbox": "89,21,90,22"},  # the delta
    {"bbox": "175,-45,179,-40"},  # west of the date line, in the Pacific box
    {"bbox": "-179,-45,-175,-40"},  # east of it
    {"bbox": "178,-60,-178,-55"},  # across it, south of everything
    {"bbox": "0,0,5,5"},  # inside cs-multi's overall box, outside its precise ones
    {"bbox": "-15,12,-14,13"},  # inside one precise box
    {"bbox": "105,5,106,6"},  # the 3D box
    {"datetime": "2016-06-01T00:00:00Z/2017-01-01T00:00:00Z"},  # a gap of cs-multi
    {"datetime": "2024-03-01T00:00:00Z"},
    {"datetime": "../2009-12-31T00:00:00Z"},
    {"datetime": "2022-03-01T00:00:00Z/.."},
    {"q": "radar"},
    {"q": "ocean pacifique"},  # accents ignored
    {"q": "КАЛАХАРИ"},  # Cyrillic, case ignored
    {"q": "العربي"},
    {"q": "landsat 5,flood"},  # OR of a keyword phrase and a keyword
    {"q": "pacifique sud ocean"},  # words out of order: no phrase
    {"bbox": "80,-60,180,40", "datetime": "2020-06-01T00:00:00Z/2022-02-01T00:00:00Z"},
    {"bbox": "-180,-90,180,90", "q": "collection search test", "datetime": "2019-01-01T00:00:00Z"},
]


@pytest.mark.parametrize(
    "params", QUERIES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items())
)
def test_collection_search(http: httpx.Client, shown: list[JSON], params: dict[str, str]) -> None:
    expected = truth(shown, params)
    got: list[str] = []
    r = http.get("/collections", params={**params, "limit": 2})
    for _ in range(100):
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["numberMatched"] == len(expected)
        assert page["numberReturned"] == len(page["collections"]) <= 2
        got += [c["id"] for c in page["collections"]]
        nxt = [x["href"] for x in page["links"] if x["rel"] == "next"]
        if not nxt:
            break
        r = http.get(nxt[0])
    assert got == expected  # every match once, in the server's order (by id)


def test_collection_search_matches_something(shown: list[JSON]) -> None:
    # the queries are not vacuous: each test collection is found by some query
    found = {cid for p in QUERIES for cid in truth(shown, p)}
    assert {c["id"] for c in COLLECTIONS} <= found


def test_children(http: httpx.Client, shown: list[JSON], live_server: Server) -> None:
    root = http.get("/").json()
    (children_link,) = [x for x in root["links"] if x["rel"] == "children"]
    assert children_link["href"] == f"{live_server.url}/children"
    assert "https://api.stacspec.org/v1.0.0-rc.2/children" in root["conformsTo"]
    r = http.get("/children")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    rels = {x["rel"]: x["href"] for x in body["links"]}
    assert rels["self"] == children_link["href"] and rels["root"] == f"{live_server.url}/"
    # every child link of the landing page, exactly as its own URL gives it
    child_docs = [http.get(x["href"]).json() for x in root["links"] if x["rel"] == "child"]
    assert sorted(body["children"], key=lambda c: c["id"]) == sorted(
        child_docs, key=lambda c: c["id"]
    )
    assert {c["id"] for c in body["children"]} == {c["id"] for c in shown}
