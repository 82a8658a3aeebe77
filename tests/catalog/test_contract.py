"""The Catalog contract, written once and run against every backend (sqlite, pgstac).

Each test builds a tiny catalogue of its own and compares what a search returns with
what a plain Python evaluation of the same question over the loaded items says."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from eoshare.catalog import Catalog, SearchQuery, SortField
from eoshare.errors import ConflictError, InvalidItemError, InvalidRequestError, NotFoundError

JSON = dict[str, Any]


def collection(cid: str, **extra: Any) -> JSON:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "description": f"collection {cid}",
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
        **extra,
    }


def item(cid: str, k: int, **props: Any) -> JSON:
    """Item k of a collection: a 1x1 degree square at (k, k/2), acquired on day k of 2020."""
    x, y = float(k % 170), float(k % 80) / 2
    ring = [[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"{cid}-{k:03d}",
        "collection": cid,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [x, y, x + 1, y + 1],
        "properties": {
            "datetime": f"2020-{1 + k % 12:02d}-{1 + k % 28:02d}T10:00:00Z",
            "eo:cloud_cover": (k * 7) % 100,
            "platform": "sentinel-2a" if k % 2 else "landsat-8",
            "title": f"scene number {k}",
            **props,
        },
        "links": [],
        "assets": {"data": {"href": f"https://example.com/{cid}/{k}.tif", "roles": ["data"]}},
    }


def ids(page_items: list[JSON]) -> list[str]:
    return [i["id"] for i in page_items]


@pytest.fixture()
def filled(catalog: Catalog) -> Catalog:
    """Two collections: ``a`` with 30 items, ``b`` with 20."""
    catalog.create_collection(collection("a"))
    catalog.create_collection(collection("b"))
    report = catalog.upsert_items([item("a", k) for k in range(30)])
    assert report.inserted == 30
    catalog.upsert_items([item("b", k) for k in range(20)], collection_id="b")
    return catalog


def everything(catalog: Catalog) -> list[JSON]:
    return list(catalog.iter_items())


def when(i: JSON) -> str:
    return str(i["properties"]["datetime"])


# --- collections ---------------------------------------------------------------------


def test_collections_round_trip(catalog: Catalog) -> None:
    assert catalog.list_collections() == []
    doc = collection("zeta", title="Zeta", keywords=["x"])
    catalog.create_collection(doc)
    catalog.create_collection(collection("alpha"))
    assert catalog.get_collection("zeta") == doc
    assert [c["id"] for c in catalog.list_collections()] == ["alpha", "zeta"]
    with pytest.raises(ConflictError):
        catalog.create_collection(collection("zeta"))
    changed = collection("zeta", title="Zeta 2")
    assert catalog.update_collection("zeta", changed) == changed
    assert catalog.get_collection("zeta")["title"] == "Zeta 2"


def test_collection_errors(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError):
        catalog.get_collection("nope")
    with pytest.raises(NotFoundError):
        catalog.update_collection("nope", collection("nope"))
    with pytest.raises(NotFoundError):
        catalog.delete_collection("nope")
    with pytest.raises(InvalidItemError):
        catalog.create_collection({"type": "Collection", "id": "x"})
    catalog.create_collection(collection("a"))
    with pytest.raises(InvalidItemError):
        catalog.update_collection("a", collection("b"))


def test_delete_collection_deletes_its_items(filled: Catalog) -> None:
    filled.delete_collection("a")
    assert [c["id"] for c in filled.list_collections()] == ["b"]
    assert {i["collection"] for i in everything(filled)} == {"b"}
    with pytest.raises(NotFoundError):
        filled.get_item("a", "a-001")
    assert filled.search(SearchQuery(collections=("a",))).items == []
    # the id can be used again, empty
    filled.create_collection(collection("a"))
    assert filled.collection_extent("a") is None


def test_collection_extent(filled: Catalog) -> None:
    extent = filled.collection_extent("b")
    assert extent is not None
    items = [i for i in everything(filled) if i["collection"] == "b"]
    (bbox,) = extent["spatial"]["bbox"]
    assert bbox == pytest.approx(
        [
            min(i["bbox"][0] for i in items),
            min(i["bbox"][1] for i in items),
            max(i["bbox"][2] for i in items),
            max(i["bbox"][3] for i in items),
        ]
    )
    ((start, end),) = extent["temporal"]["interval"]
    assert (start, end) == (min(map(when, items)), max(map(when, items)))


# --- items ---------------------------------------------------------------------------


def test_item_round_trip(catalog: Catalog) -> None:
    catalog.create_collection(collection("a"))
    doc = item("a", 1, **{"sat:orbit_state": "ascending", "nested": {"k": [1, 2]}})
    got = catalog.create_item("a", copy.deepcopy(doc))
    assert got == doc
    assert catalog.get_item("a", "a-001") == doc
    with pytest.raises(ConflictError):
        catalog.create_item("a", doc)
    changed = copy.deepcopy(doc)
    changed["properties"]["eo:cloud_cover"] = 99
    assert catalog.update_item("a", "a-001", changed)["properties"]["eo:cloud_cover"] == 99
    assert catalog.get_item("a", "a-001")["properties"]["eo:cloud_cover"] == 99
    catalog.delete_item("a", "a-001")
    with pytest.raises(NotFoundError):
        catalog.get_item("a", "a-001")
    with pytest.raises(NotFoundError):
        catalog.delete_item("a", "a-001")


def test_item_gets_collection_and_bbox(catalog: Catalog) -> None:
    catalog.create_collection(collection("a"))
    doc = item("a", 3)
    del doc["collection"], doc["bbox"]
    got = catalog.create_item("a", doc)
    assert got["collection"] == "a"
    assert got["bbox"] == pytest.approx([3.0, 1.5, 4.0, 2.5])


def test_item_errors(catalog: Catalog) -> None:
    catalog.create_collection(collection("a"))
    with pytest.raises(NotFoundError):
        catalog.create_item("nope", item("nope", 1))
    with pytest.raises(NotFoundError):
        catalog.get_item("a", "missing")
    with pytest.raises(NotFoundError):
        catalog.update_item("a", "a-001", item("a", 1))
    with pytest.raises(InvalidItemError):
        catalog.update_item("a", "a-001", item("a", 2))
    with pytest.raises(InvalidItemError):
        catalog.create_item("a", {"type": "Feature", "id": "x"})
    with pytest.raises(InvalidItemError):
        catalog.create_item("a", item("b", 1))  # names another collection


def test_same_item_id_in_two_collections(catalog: Catalog) -> None:
    catalog.create_collection(collection("a"))
    catalog.create_collection(collection("b"))
    one, two = item("a", 1), item("b", 1)
    two["id"] = one["id"]
    catalog.upsert_items([one, two])
    assert catalog.get_item("a", one["id"])["collection"] == "a"
    assert catalog.get_item("b", one["id"])["collection"] == "b"
    page = catalog.search(SearchQuery(ids=(one["id"],)))
    assert sorted(i["collection"] for i in page.items) == ["a", "b"]


def test_upsert_conflict_modes(catalog: Catalog) -> None:
    catalog.create_collection(collection("a"))
    catalog.upsert_items([item("a", k) for k in range(5)])
    with pytest.raises(ConflictError):
        catalog.upsert_items([item("a", 5), item("a", 1)])
    # the failed batch was rolled back whole: a-005 is not there
    assert len(everything(catalog)) == 5
    report = catalog.upsert_items([item("a", k) for k in range(3, 8)], on_conflict="skip")
    assert (report.inserted, report.skipped, report.updated) == (3, 2, 0)
    changed = [item("a", k, title=f"new {k}") for k in range(6, 10)]
    report = catalog.upsert_items(changed, on_conflict="update")
    assert (report.inserted, report.updated) == (2, 2)
    assert catalog.get_item("a", "a-007")["properties"]["title"] == "new 7"
    assert len(everything(catalog)) == 10


def test_upsert_reports_invalid_items(catalog: Catalog) -> None:
    catalog.create_collection(collection("a"))
    bad = item("a", 2)
    bad["properties"]["datetime"] = "yesterday"
    refused: list[str] = []
    report = catalog.upsert_items(
        [item("a", 1), bad, item("a", 3)], on_invalid=lambda i, e: refused.append(i["id"])
    )
    assert (report.inserted, report.invalid, refused) == (2, 1, ["a-002"])
    with pytest.raises(InvalidItemError):
        catalog.upsert_items([bad])


def test_upsert_into_a_missing_collection(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError):
        catalog.upsert_items([item("nope", 1)])


def test_iter_items(filled: Catalog) -> None:
    assert len(everything(filled)) == 50
    assert sorted(ids(list(filled.iter_items("b")))) == [f"b-{k:03d}" for k in range(20)]


# --- search --------------------------------------------------------------------------


def test_default_order_is_newest_first_and_pages_are_stable(filled: Catalog) -> None:
    seen: list[JSON] = []
    offset: int | None = 0
    while offset is not None:
        page = filled.search(SearchQuery(limit=7, offset=offset))
        assert page.number_matched == 50
        seen += page.items
        offset = page.next_offset
    assert len(seen) == 50 and len(set(ids(seen))) == 50
    times = [when(i) for i in seen]
    assert times == sorted(times, reverse=True)


def test_paging_offsets(filled: Catalog) -> None:
    first = filled.search(SearchQuery(collections=("a",), limit=10))
    assert (first.next_offset, first.prev_offset, first.number_matched) == (10, None, 30)
    last = filled.search(SearchQuery(collections=("a",), limit=10, offset=20))
    assert (last.next_offset, last.prev_offset, len(last.items)) == (None, 10, 10)
    beyond = filled.search(SearchQuery(collections=("a",), limit=10, offset=40))
    assert beyond.items == [] and beyond.next_offset is None
    uncounted = filled.search(SearchQuery(limit=3, count=False))
    assert uncounted.number_matched is None and len(uncounted.items) == 3


def test_collections_and_ids(filled: Catalog) -> None:
    page = filled.search(SearchQuery(collections=("b",), limit=100))
    assert sorted(ids(page.items)) == [f"b-{k:03d}" for k in range(20)]
    page = filled.search(SearchQuery(ids=("a-004", "b-004", "zzz"), limit=100))
    assert sorted(ids(page.items)) == ["a-004", "b-004"]
    page = filled.search(SearchQuery(ids=("a-004", "b-004"), collections=("b",)))
    assert ids(page.items) == ["b-004"] and page.number_matched == 1
    assert filled.search(SearchQuery(collections=("nope",))).items == []


def test_bbox_and_datetime(filled: Catalog) -> None:
    start = datetime(2020, 3, 1, tzinfo=UTC)
    end = datetime(2020, 8, 31, 23, 59, 59, tzinfo=UTC)
    box = (5.5, 2.0, 20.0, 10.0)
    page = filled.search(SearchQuery(bbox=box, datetime_start=start, datetime_end=end, limit=100))
    expected = {
        i["id"]
        for i in everything(filled)
        if i["bbox"][0] <= box[2]
        and i["bbox"][2] >= box[0]
        and i["bbox"][1] <= box[3]
        and i["bbox"][3] >= box[1]
        and "2020-03-01" <= when(i)[:10] <= "2020-08-31"
    }
    assert expected and set(ids(page.items)) == expected
    assert page.number_matched == len(expected)
    # open-ended intervals
    after = filled.search(SearchQuery(datetime_start=start, limit=100))
    assert {i["id"] for i in after.items} == {
        i["id"] for i in everything(filled) if when(i) >= "2020-03"
    }
    before = filled.search(SearchQuery(datetime_end=start, limit=100))
    assert {i["id"] for i in before.items} == {
        i["id"] for i in everything(filled) if when(i) < "2020-03"
    }


def test_intersects_is_exact(catalog: Catalog) -> None:
    catalog.create_collection(collection("a"))
    catalog.upsert_items([item("a", k) for k in range(10)])
    # a thin diagonal line through squares 2..4 only; its bbox touches more
    line = {"type": "LineString", "coordinates": [[2.2, 1.2], [4.8, 2.3]]}
    page = catalog.search(SearchQuery(intersects=line, limit=100))
    assert sorted(ids(page.items)) == ["a-002", "a-003", "a-004"]
    point = {"type": "Point", "coordinates": [7.5, 3.7]}
    assert ids(catalog.search(SearchQuery(intersects=point)).items) == ["a-007"]


def test_antimeridian(catalog: Catalog) -> None:
    catalog.create_collection(collection("a"))
    crossing = item("a", 1)
    crossing["geometry"] = {
        "type": "MultiPolygon",
        "coordinates": [
            [[[179, -1], [180, -1], [180, 1], [179, 1], [179, -1]]],
            [[[-180, -1], [-179, -1], [-179, 1], [-180, 1], [-180, -1]]],
        ],
    }
    crossing["bbox"] = [179, -1, -179, 1]
    catalog.upsert_items([crossing, item("a", 2)])
    for box in ((-179.5, -0.5, -179.2, 0.5), (179.2, -0.5, 179.5, 0.5), (170, -1, -170, 1)):
        assert ids(catalog.search(SearchQuery(bbox=box)).items) == ["a-001"], box
    assert catalog.search(SearchQuery(bbox=(100, -1, 170, 1))).items == []


def test_cql2_filter(filled: Catalog) -> None:
    expr = {
        "op": "and",
        "args": [
            {"op": "<", "args": [{"property": "eo:cloud_cover"}, 30]},
            {"op": "=", "args": [{"property": "platform"}, "landsat-8"]},
            {
                "op": "t_after",
                "args": [{"property": "datetime"}, {"timestamp": "2020-02-01T00:00:00Z"}],
            },
        ],
    }
    page = filled.search(SearchQuery(filter=expr, limit=100))
    expected = {
        i["id"]
        for i in everything(filled)
        if i["properties"]["eo:cloud_cover"] < 30
        and i["properties"]["platform"] == "landsat-8"
        and when(i) > "2020-02-01T00:00:00Z"
    }
    assert expected and set(ids(page.items)) == expected
    assert page.number_matched == len(expected)
    like = {"op": "like", "args": [{"property": "title"}, "scene number 1%"]}
    got = ids(filled.search(SearchQuery(filter=like, collections=("b",), limit=100)).items)
    assert sorted(got) == ["b-001"] + [f"b-{k:03d}" for k in range(10, 20)]
    spatial = {
        "op": "s_intersects",
        "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [3.5, 1.7]}],
    }
    assert sorted(ids(filled.search(SearchQuery(filter=spatial)).items)) == ["a-003", "b-003"]
    in_ids = {"op": "in", "args": [{"property": "id"}, ["a-001", "b-002"]]}
    assert sorted(ids(filled.search(SearchQuery(filter=in_ids)).items)) == ["a-001", "b-002"]


def test_query_extension(filled: Catalog) -> None:
    page = filled.search(
        SearchQuery(query={"eo:cloud_cover": {"gte": 50, "lt": 80}}, collections=("a",), limit=100)
    )
    expected = {
        i["id"]
        for i in everything(filled)
        if i["collection"] == "a" and 50 <= i["properties"]["eo:cloud_cover"] < 80
    }
    assert expected and set(ids(page.items)) == expected
    page = filled.search(SearchQuery(query={"platform": {"startsWith": "sentinel"}}, limit=100))
    assert len(page.items) == 25


def test_free_text(filled: Catalog) -> None:
    page = filled.search(SearchQuery(q=("number 7",), limit=100))
    assert sorted(ids(page.items)) == ["a-007", "b-007"]
    page = filled.search(SearchQuery(q=("number 7", "number 12"), collections=("a",)))
    assert sorted(ids(page.items)) == ["a-007", "a-012"]
    assert filled.search(SearchQuery(q=("nothing-like-this",))).items == []


def test_sortby(filled: Catalog) -> None:
    sort = (SortField("eo:cloud_cover", ascending=False), SortField("id"))
    page = filled.search(SearchQuery(sortby=sort, limit=100))
    expected = sorted(everything(filled), key=lambda i: i["id"])
    expected.sort(key=lambda i: i["properties"]["eo:cloud_cover"], reverse=True)
    assert ids(page.items) == ids(expected)
    page = filled.search(SearchQuery(sortby=(SortField("datetime"),), collections=("b",), limit=5))
    oldest = sorted((i for i in everything(filled) if i["collection"] == "b"), key=when)[:5]
    assert [when(i) for i in page.items] == [when(i) for i in oldest]
    by_id = filled.search(SearchQuery(sortby=(SortField("id", ascending=False),), limit=3))
    assert ids(by_id.items) == ["b-019", "b-018", "b-017"]


def test_sort_by_unknown_field_is_refused(filled: Catalog) -> None:
    with pytest.raises(InvalidRequestError):
        filled.search(SearchQuery(sortby=(SortField("no:such:thing"),)))


def test_filter_on_unknown_property_is_refused(filled: Catalog) -> None:
    with pytest.raises(InvalidRequestError):
        filled.search(SearchQuery(filter={"op": "=", "args": [{"property": "nonesuch"}, 1]}))
    # common metadata is always known: it matches nothing rather than failing
    mission = {"op": "=", "args": [{"property": "mission"}, "x"]}
    assert filled.search(SearchQuery(filter=mission)).items == []


# --- visibility ----------------------------------------------------------------------

EMBARGO = {  # all of a; the items of b acquired before June 2020
    "op": "or",
    "args": [
        {"op": "=", "args": [{"property": "collection"}, "a"]},
        {
            "op": "and",
            "args": [
                {"op": "=", "args": [{"property": "collection"}, "b"]},
                {
                    "op": "<",
                    "args": [{"property": "datetime"}, {"timestamp": "2020-06-01T00:00:00Z"}],
                },
            ],
        },
    ],
}


def _seen(i: JSON) -> bool:
    return i["collection"] == "a" or when(i) < "2020-06-01"


def test_visibility_filter_hides_items(filled: Catalog) -> None:
    visible = {i["id"] for i in everything(filled) if _seen(i)}
    page = filled.search(SearchQuery(visible=EMBARGO, limit=100))
    assert set(ids(page.items)) == visible and page.number_matched == len(visible)
    paged = filled.search(SearchQuery(visible=EMBARGO, collections=("b",), limit=2, offset=2))
    assert paged.number_matched == sum(
        1 for i in everything(filled) if i["collection"] == "b" and _seen(i)
    )
    # the caller's own filter cannot widen what it sees
    widen = {"op": "=", "args": [{"property": "collection"}, "b"]}
    page = filled.search(SearchQuery(visible=EMBARGO, filter=widen, limit=100))
    assert {i["id"] for i in page.items} == {i for i in visible if i.startswith("b-")}
    hidden = next(i for i in everything(filled) if not _seen(i))
    assert filled.search(SearchQuery(visible=EMBARGO, ids=(hidden["id"],))).items == []
    with pytest.raises(NotFoundError):
        filled.get_item("b", hidden["id"], visible=EMBARGO)
    shown = next(i for i in everything(filled) if i["collection"] == "b" and _seen(i))
    assert filled.get_item("b", shown["id"], visible=EMBARGO)["id"] == shown["id"]


def test_visibility_filter_pages_in_order(filled: Catalog) -> None:
    """Newest-first pages under a filter that differs by collection (pgstac answers these
    one branch per collection): every page, in order, with and without a filter of the
    caller's own, and a collection hidden whole."""
    seen = sorted(
        (i for i in everything(filled) if _seen(i)),
        key=lambda i: (when(i), i["collection"], i["id"]),
        reverse=True,
    )
    for offset in (0, 3, 10, 30, 45):
        page = filled.search(SearchQuery(visible=EMBARGO, limit=4, offset=offset))
        assert ids(page.items) == ids(seen[offset : offset + 4]), offset
        assert page.next_offset == (offset + 4 if offset + 4 < len(seen) else None)
    early = {"op": "<", "args": [{"property": "datetime"}, {"timestamp": "2020-03-01T00:00:00Z"}]}
    want = [i for i in seen if when(i) < "2020-03-01"]
    page = filled.search(SearchQuery(visible=EMBARGO, filter=early, limit=5, offset=2))
    assert ids(page.items) == ids(want[2:7])
    only_b = {
        "op": "and",
        "args": [
            {"op": "=", "args": [{"property": "collection"}, "b"]},
            {"op": "<", "args": [{"property": "datetime"}, {"timestamp": "2020-06-01T00:00:00Z"}]},
        ],
    }
    want = [i for i in seen if i["collection"] == "b"]
    page = filled.search(SearchQuery(visible=only_b, limit=3, offset=1))
    assert ids(page.items) == ids(want[1:4])
    oldest = sorted(seen, key=lambda i: (when(i), i["collection"], i["id"]))
    ascending = (SortField("datetime", ascending=True),)
    for offset in (0, 7, 40):
        page = filled.search(SearchQuery(visible=EMBARGO, sortby=ascending, limit=4, offset=offset))
        assert ids(page.items) == ids(oldest[offset : offset + 4]), offset
    # a property that only one collection's items have is no error for the others
    filled.upsert_items([item("a", 99, only_a=1)])
    own = {"op": "=", "args": [{"property": "only_a"}, 1]}
    page = filled.search(SearchQuery(visible=EMBARGO, filter=own, limit=10))
    assert ids(page.items) == ["a-099"] and page.number_matched == 1


def test_visibility_filter_of_nothing(filled: Catalog) -> None:
    nothing = {"op": "=", "args": [{"property": "collection"}, "no-such-collection"]}
    page = filled.search(SearchQuery(visible=nothing, limit=100, offset=0))
    assert page.items == [] and page.number_matched == 0
    with pytest.raises(NotFoundError):
        filled.get_item("a", "a-001", visible=nothing)


# --- queryables ----------------------------------------------------------------------


def test_queryables(filled: Catalog) -> None:
    filled.upsert_items([item("b", 50, **{"sar:polarizations": ["VV", "VH"]})])
    everywhere = filled.queryables()
    props = everywhere["properties"]
    for name in ("id", "collection", "geometry", "datetime", "eo:cloud_cover", "platform"):
        assert name in props, name
    assert props["eo:cloud_cover"]["type"] == "number"
    assert props["sar:polarizations"]["type"] == "array"
    assert "sar:polarizations" not in filled.queryables("a")["properties"]
    assert "sar:polarizations" in filled.queryables("b")["properties"]
    with pytest.raises(NotFoundError):
        filled.queryables("nope")
