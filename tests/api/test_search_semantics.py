"""Search results on the shared data equal an independent computation (``oracle``:
shapely and plain Python over the loaded documents)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon, shape

from .conftest import ANTI, DATA_COLLECTIONS, LANDSAT, S1, S2, Server
from .oracle import (
    expect,
    interval,
    item_geometry,
    meets,
    query_box,
    search_all,
    text_matches,
    when,
)

JSON = dict[str, Any]
ALL = list(DATA_COLLECTIONS)


def ids_of(features: list[JSON]) -> list[str]:
    return [f["id"] for f in features]


def run(http: httpx.Client, body: JSON) -> tuple[list[str], list[int | None]]:
    features, matched = search_all(http, {"collections": ALL, "limit": 100, **body})
    got = ids_of(features)
    assert len(got) == len(set(got)), "an item came twice across pages"
    return got, matched


def check(http: httpx.Client, body: JSON, expected: set[str]) -> None:
    got, matched = run(http, body)
    assert set(got) == expected
    assert all(m == len(expected) for m in matched)


def spatial_truth(server: Server, query: Any) -> set[str]:
    un = server.loaded.unwrapped
    return expect(server.loaded.of(), lambda i: meets(item_geometry(i, un), query))


BOXES = [
    (3.0, 50.0, 7.0, 54.0),  # the Netherlands
    (5.0, 52.0, 5.5, 52.5),  # inside one scene
    (-178.0, -46.0, -175.0, -43.0),  # Chatham Islands
    (100.0, 0.0, 101.0, 1.0),  # nothing
    (-180.0, -90.0, 180.0, 90.0),  # the world
    (170.0, 50.0, 180.0, 60.0),  # Sentinel-2 tiles east of the date line
    (179.0, -47.0, -179.5, -42.0),  # across the antimeridian
    (178.0, -50.0, -170.0, -40.0),  # across, reaching the Chatham scenes
]


@pytest.mark.parametrize("bbox", BOXES, ids=[",".join(map(str, b)) for b in BOXES])
def test_bbox(live_server: Server, http: httpx.Client, bbox: tuple[float, ...]) -> None:
    expected = spatial_truth(live_server, query_box(bbox))  # type: ignore[arg-type]
    check(http, {"bbox": list(bbox)}, expected)
    # the GET form answers the same
    r = http.get(
        "/search",
        params={"bbox": ",".join(map(str, bbox)), "collections": ",".join(ALL), "limit": 1000},
    )
    assert r.status_code == 200, r.text
    assert set(ids_of(r.json()["features"])) == expected


def test_antimeridian_items_are_found_from_both_sides(
    live_server: Server, http: httpx.Client
) -> None:
    anti = {i["id"] for i in live_server.loaded.of(ANTI)}
    # every antimeridian scene straddles 180: a thin box on each side finds all of them
    west = spatial_truth(live_server, query_box((179.9, -47.0, 180.0, -42.0)))
    east = spatial_truth(live_server, query_box((-180.0, -47.0, -179.9, -42.0)))
    assert anti <= west and anti <= east
    check(http, {"bbox": [179.9, -47.0, 180.0, -42.0]}, west)
    check(http, {"bbox": [-180.0, -47.0, -179.9, -42.0]}, east)
    # both styles (split MultiPolygon, jumping ring; with and without bbox) are there
    docs = live_server.loaded.of(ANTI)
    assert {d["geometry"]["type"] for d in docs} == {"Polygon", "MultiPolygon"}
    assert any("bbox" not in d for d in docs)


def test_item_without_bbox_gets_one(live_server: Server, http: httpx.Client) -> None:
    docs = [i for i in live_server.loaded.of() if "bbox" not in i]
    assert docs
    for doc in docs[:5]:
        r = http.get(f"/collections/{doc['collection']}/items/{doc['id']}")
        assert r.status_code == 200
        # the stored document is served as given; search still finds it by its footprint
        minx, miny, maxx, maxy = (
            shape(doc["geometry"]).bounds
            if doc["collection"] != ANTI
            else (179.99, -45.0, 180.0, -44.9)
        )
        inner = [minx + (maxx - minx) / 3, miny + (maxy - miny) / 3]
        inner += [inner[0] + (maxx - minx) / 10, inner[1] + (maxy - miny) / 10]
        got, _ = run(http, {"bbox": inner, "ids": [doc["id"]]})
        assert got == [doc["id"]]


INTERSECTS = [
    {"type": "Polygon", "coordinates": [[[4, 52], [6, 52], [5, 53.5], [4, 52]]]},
    {"type": "Point", "coordinates": [-176.5, -44.0]},
    {"type": "LineString", "coordinates": [[0, 51], [10, 53]]},
    # a MultiPolygon split at the antimeridian
    {
        "type": "MultiPolygon",
        "coordinates": [
            [[[179.5, -46], [180, -46], [180, -43], [179.5, -43], [179.5, -46]]],
            [[[-180, -46], [-179.6, -46], [-179.6, -43], [-180, -43], [-180, -46]]],
        ],
    },
]


@pytest.mark.parametrize("geometry", INTERSECTS, ids=lambda g: g["type"])
def test_intersects(live_server: Server, http: httpx.Client, geometry: JSON) -> None:
    query = shape(geometry)
    if isinstance(query, MultiPolygon):
        # the true shape of the split polygon, continuing east past 180
        query = Polygon([[179.5, -46], [180.4, -46], [180.4, -43], [179.5, -43]])
    expected = spatial_truth(live_server, query)
    check(http, {"intersects": geometry}, expected)
    if geometry["type"] == "MultiPolygon":
        assert {i["id"] for i in live_server.loaded.of(ANTI)} <= expected


def _overlaps(lo: datetime | None, hi: datetime | None) -> Callable[[JSON], bool]:
    def keep(item: JSON) -> bool:
        start, end = interval(item)
        return (lo is None or end >= lo) and (hi is None or start <= hi)

    return keep


def test_datetime_instant(live_server: Server, http: httpx.Client) -> None:
    for doc in [live_server.loaded.of(S1)[0], live_server.loaded.of(LANDSAT)[3]]:
        text = doc["properties"].get("datetime") or doc["properties"]["start_datetime"]
        t = when(text)
        check(http, {"datetime": text}, expect(live_server.loaded.of(), _overlaps(t, t)))


@pytest.mark.parametrize(
    "text",
    [
        "2022-01-01T00:00:00Z/2022-03-31T23:59:59Z",
        "2019-01-01T00:00:00Z/..",
        "../2019-06-30T00:00:00Z",
        "/2021-12-31T00:00:00+01:00",
        "2025-07-31T00:00:00Z/",
    ],
)
def test_datetime_ranges(live_server: Server, http: httpx.Client, text: str) -> None:
    a, b = text.split("/")
    lo = when(a) if a not in ("", "..") else None
    hi = when(b) if b not in ("", "..") else None
    expected = expect(live_server.loaded.of(), _overlaps(lo, hi))
    assert expected
    check(http, {"datetime": text}, expected)


def prop(name: str) -> Callable[[JSON], Any]:
    return lambda i: i["properties"].get(name)


FILTERS: list[tuple[str, Any, Callable[[JSON], bool]]] = [
    (
        "comparison",
        '"eo:cloud_cover" <= 12.5',
        lambda i: prop("eo:cloud_cover")(i) is not None and prop("eo:cloud_cover")(i) <= 12.5,
    ),
    ("like", "id LIKE 'S2B%'", lambda i: i["id"].startswith("S2B")),
    (
        "in",
        {"op": "in", "args": [{"property": "platform"}, ["sentinel-1a", "landsat-8"]]},
        lambda i: prop("platform")(i) in ("sentinel-1a", "landsat-8"),
    ),
    (
        "between",
        '"view:sun_elevation" BETWEEN 20 AND 40',
        lambda i: (
            prop("view:sun_elevation")(i) is not None and 20 <= prop("view:sun_elevation")(i) <= 40
        ),
    ),
    (
        "s_intersects",
        "S_INTERSECTS(geometry, POLYGON((4 52, 6 52, 6 53, 4 53, 4 52)))",
        lambda i: meets(item_geometry(i), Polygon([(4, 52), (6, 52), (6, 53), (4, 53)])),
    ),
    (
        "t_intersects",
        "T_INTERSECTS(datetime, INTERVAL('2022-02-01T00:00:00Z', '2022-02-28T23:59:59Z'))",
        _overlaps(when("2022-02-01T00:00:00Z"), when("2022-02-28T23:59:59Z")),
    ),
    ("isNull", '"eo:cloud_cover" IS NULL', lambda i: prop("eo:cloud_cover")(i) is None),
    (
        "and/or/not",
        "(platform = 'landsat-8' AND NOT \"eo:cloud_cover\" > 30) OR collection = 'sentinel-1-grd'",
        lambda i: (
            (
                prop("platform")(i) == "landsat-8"
                and not (prop("eo:cloud_cover")(i) is not None and prop("eo:cloud_cover")(i) > 30)
            )
            or i["collection"] == S1
        ),
    ),
]


@pytest.mark.parametrize("name,cql,keep", FILTERS, ids=[f[0] for f in FILTERS])
def test_cql2_filters(
    live_server: Server, http: httpx.Client, name: str, cql: Any, keep: Callable[[JSON], bool]
) -> None:
    docs = [i for i in live_server.loaded.of() if i["collection"] != ANTI]
    expected = expect(docs, keep)
    assert expected, "a filter that matches nothing proves little"
    body = {"collections": [LANDSAT, S1, S2], "filter": cql}
    if isinstance(cql, str):
        body["filter-lang"] = "cql2-text"
    features, matched = search_all(http, {**body, "limit": 100})
    assert set(ids_of(features)) == expected
    assert matched[0] == len(expected)


def test_sort_orders_every_page(live_server: Server, http: httpx.Client) -> None:
    docs = live_server.loaded.of(LANDSAT)
    got, _ = run(
        http,
        {
            "collections": [LANDSAT],
            "limit": 50,
            "sortby": [
                {"field": "properties.eo:cloud_cover", "direction": "desc"},
                {"field": "id", "direction": "asc"},
            ],
        },
    )
    truth = sorted(docs, key=lambda i: (-i["properties"]["eo:cloud_cover"], i["id"]))
    assert got == [i["id"] for i in truth]
    # the default order: newest first
    got, _ = run(http, {"collections": [LANDSAT], "limit": 64})
    by_id = {i["id"]: i for i in docs}
    times = [interval(by_id[i])[0] for i in got]
    assert times == sorted(times, reverse=True)
    assert set(got) == set(by_id)


@pytest.mark.parametrize("limit", [1, 7, 100, 1000])
def test_paging_is_complete(live_server: Server, http: httpx.Client, limit: int) -> None:
    expected = expect(live_server.loaded.of(S2, S1), lambda i: True)
    if limit == 1:
        got, matched = run(http, {"collections": [S1], "limit": 1})
        assert set(got) == {i["id"] for i in live_server.loaded.of(S1)}
        return
    got, matched = run(http, {"collections": [S2, S1], "limit": limit})
    assert set(got) == expected
    assert all(m == len(expected) for m in matched)
    assert len(matched) == -(-len(expected) // limit)


# --- random boxes and date ranges against the oracle ---------------------------------

lons = st.floats(-180, 180, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 3))
lats = st.floats(-90, 90, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 3))


@st.composite
def boxes(draw: st.DrawFn) -> tuple[float, float, float, float]:
    # half near the data (the Netherlands, Chatham Islands, the date line), half anywhere
    centre = draw(st.sampled_from([(5.0, 52.0), (-176.5, -44.5), (179.8, -44.5), (174.0, 58.0)]))
    if draw(st.booleans()):
        x0 = centre[0] + draw(st.floats(-4, 4))
        y0 = centre[1] + draw(st.floats(-3, 3))
        w, h = draw(st.floats(0.01, 5)), draw(st.floats(0.01, 3))
        x1 = x0 + w
        x0, x1 = ((x0 + 540) % 360) - 180, ((x1 + 540) % 360) - 180
        return (round(x0, 3), round(max(-90, y0), 3), round(x1, 3), round(min(90, y0 + h), 3))
    a, b = draw(lats), draw(lats)
    return (draw(lons), min(a, b), draw(lons), max(a, b))


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(bbox=boxes())
def test_random_bboxes(live_server: Server, http: httpx.Client, bbox: tuple[float, ...]) -> None:
    expected = spatial_truth(live_server, query_box(bbox))  # type: ignore[arg-type]
    check(http, {"bbox": list(bbox)}, expected)


START = datetime(2018, 6, 1, tzinfo=UTC)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    a=st.integers(0, 8 * 365 * 24),
    span=st.integers(0, 400 * 24),
    open_start=st.booleans(),
    open_end=st.booleans(),
)
def test_random_date_ranges(
    live_server: Server, http: httpx.Client, a: int, span: int, open_start: bool, open_end: bool
) -> None:
    lo = START + timedelta(hours=a)
    hi = lo + timedelta(hours=span)
    if open_start and open_end:
        open_end = False
    text = ("../" if open_start else lo.strftime("%Y-%m-%dT%H:%M:%SZ/")) + (
        ".." if open_end else hi.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    expected = expect(
        live_server.loaded.of(), _overlaps(None if open_start else lo, None if open_end else hi)
    )
    check(http, {"datetime": text}, expected)


# --- every combination of the search parameters, numberMatched each time ---------------

PARAMETERS = ("collections", "ids", "bbox", "intersects", "datetime", "filter", "query", "q")
COMBINATIONS = [
    tuple(name for bit, name in enumerate(PARAMETERS) if mask >> bit & 1)
    for mask in range(1 << len(PARAMETERS))
]
CUT = {
    "type": "MultiPolygon",
    "coordinates": [
        [[[4.0, 52.0], [6.0, 52.0], [6.0, 54.0], [4.0, 54.0], [4.0, 52.0]]],
        [[[-177.0, -45.0], [-175.0, -45.0], [-175.0, -43.0], [-177.0, -43.0], [-177.0, -45.0]]],
    ],
}


def _combination_values(server: Server) -> tuple[JSON, dict[str, Callable[[JSON], bool]]]:
    """One value per parameter, each cutting the shared data differently, and the
    independent predicate of each."""
    docs = sorted(server.loaded.of(), key=lambda i: i["id"])
    ids = [d["id"] for d in docs[::4]]
    # the Landsat path/row most of the Netherlands scenes share, as a free-text term
    rows = [
        d["id"].split("_")[2] for d in server.loaded.of(LANDSAT) if "bbox" in d and d["bbox"][1] > 0
    ]
    row = max(set(rows), key=rows.count)
    lo, hi = when("2020-01-01T00:00:00Z"), when("2021-12-31T23:59:59Z")
    cut = shape(CUT)

    def number(name: str, test: Callable[[float], bool]) -> Callable[[JSON], bool]:
        def keep(i: JSON) -> bool:
            v = i["properties"].get(name)
            return isinstance(v, int | float) and test(v)

        return keep

    values: JSON = {
        "collections": [LANDSAT, S2],
        "ids": ids,
        "bbox": [-180.0, -50.0, 8.0, 53.0],
        "intersects": CUT,
        "datetime": "2020-01-01T00:00:00Z/2021-12-31T23:59:59Z",
        "filter": {"op": ">", "args": [{"property": "view:sun_elevation"}, 25]},
        "query": {"eo:cloud_cover": {"lt": 30}},
        "q": ["msi", row],
    }
    un = server.loaded.unwrapped
    keep: dict[str, Callable[[JSON], bool]] = {
        "collections": lambda i: i["collection"] in (LANDSAT, S2),
        "ids": lambda i: i["id"] in set(ids),
        "bbox": lambda i: meets(item_geometry(i, un), query_box((-180.0, -50.0, 8.0, 53.0))),
        "intersects": lambda i: meets(item_geometry(i, un), cut),
        "datetime": _overlaps(lo, hi),
        "filter": number("view:sun_elevation", lambda v: v > 25),
        "query": number("eo:cloud_cover", lambda v: v < 30),
        "q": lambda i: text_matches(i, ["msi", row]),
    }
    return values, keep


@pytest.mark.parametrize("names", COMBINATIONS, ids=lambda c: "+".join(c) or "none")
def test_every_parameter_combination(
    live_server: Server, http: httpx.Client, names: tuple[str, ...]
) -> None:
    values, keep = _combination_values(live_server)
    body: JSON = {name: values[name] for name in names}
    if "bbox" in body and "intersects" in body:
        r = http.post("/search", json=body)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        return
    # without collections the search covers the whole node: the data collections plus
    # whatever other tests have put in other collections (taken as the server has them)
    universe = live_server.loaded.of()
    if "collections" not in body:
        others = http.get("/collections").json()["collections"]
        extra = [c["id"] for c in others if c["id"] not in DATA_COLLECTIONS]
        if extra:
            universe = universe + search_all(http, {"collections": extra, "limit": 1000})[0]
    expected = expect(universe, lambda i: all(keep[name](i) for name in names))
    # a small first page: numberMatched is then counted, not the length of the page
    first = http.post("/search", json={**body, "limit": 3})
    assert first.status_code == 200, first.text
    assert first.json()["numberMatched"] == len(expected)
    features, matched = search_all(http, {**body, "limit": 200})
    got = ids_of(features)
    assert len(got) == len(set(got))
    assert set(got) == expected
    assert all(m == len(expected) for m in matched), matched
