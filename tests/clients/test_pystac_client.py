"""pystac-client, the most used STAC client, against the live server; every warning it
raises (missing conformance, deprecated behaviour) is an error here (the suite runs
with ``filterwarnings = error``, and each call is wrapped in ``simplefilter("error")``
too). Runs here and in CI (a dev dependency)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pystac_client import Client
from shapely.geometry import box, shape

from api.conftest import LANDSAT, S1, S2, Server
from api.oracle import interval, item_geometry, strip_server


@pytest.fixture()
def client(live_server: Server) -> Iterator[Client]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield Client.open(live_server.url)


def _ids(items: object) -> set[str]:
    return {i.id for i in items}  # type: ignore[attr-defined]


def test_open_and_list_collections(client: Client, live_server: Server) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client.id == "eoshare"
        ids = {c.id for c in client.get_collections()}
        assert ids == set(live_server.loaded.collections)
        landsat = client.get_collection(LANDSAT)
        assert landsat.id == LANDSAT


def test_bbox_and_datetime(client: Client, live_server: Server) -> None:
    bbox = (3.0, 50.5, 7.5, 54.0)
    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 12, 31, 23, 59, 59, tzinfo=UTC)
    expected = {
        i["id"]
        for i in live_server.loaded.of(LANDSAT)
        if item_geometry(i).intersects(box(*bbox))
        and interval(i)[0] <= end
        and interval(i)[1] >= start
    }
    assert expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = client.search(
            collections=[LANDSAT], bbox=bbox, datetime="2022-01-01/2022-12-31T23:59:59Z", limit=7
        )
        assert search.matched() == len(expected)
        got = [i.id for i in search.items()]
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected


def test_intersects(client: Client, live_server: Server) -> None:
    area = {"type": "Polygon", "coordinates": [[[4, 52], [6, 52], [6, 53], [4, 53], [4, 52]]]}
    expected = {
        i["id"]
        for i in live_server.loaded.of(LANDSAT, S1, S2)
        if item_geometry(i).intersects(shape(area))
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _ids(client.search(collections=[LANDSAT, S1, S2], intersects=area).items())
    assert got == expected and expected


def test_cql2_text_and_json(client: Client, live_server: Server) -> None:
    expected = {
        i["id"]
        for i in live_server.loaded.of(LANDSAT)
        if i["properties"]["eo:cloud_cover"] < 20 and i["properties"]["landsat:wrs_path"] == "197"
    }
    assert expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = client.search(
            collections=[LANDSAT],
            filter='"eo:cloud_cover" < 20 AND "landsat:wrs_path" = \'197\'',
            filter_lang="cql2-text",
        )
        as_json = client.search(
            collections=[LANDSAT],
            filter={
                "op": "and",
                "args": [
                    {"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]},
                    {"op": "=", "args": [{"property": "landsat:wrs_path"}, "197"]},
                ],
            },
        )
        assert _ids(text.items()) == expected
        assert _ids(as_json.items()) == expected
        assert text.matched() == as_json.matched() == len(expected)


def test_sortby_and_fields(client: Client, live_server: Server) -> None:
    truth = sorted(
        live_server.loaded.of(S2), key=lambda i: (-i["properties"]["eo:cloud_cover"], i["id"])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # exclude only (pystac-client sends include: []): the default set less assets
        slim = list(
            client.search(
                collections=[S2], sortby=["-eo:cloud_cover", "+id"], fields=["-assets"], limit=10
            ).items_as_dicts()
        )
        # include: the identity and the cloud cover, nothing else
        picked = list(
            client.search(
                collections=[S2],
                sortby="-eo:cloud_cover,+id",
                fields=["properties.eo:cloud_cover"],
                limit=10,
            ).items_as_dicts()
        )
    assert [i["id"] for i in slim] == [i["id"] for i in truth]
    assert [i["id"] for i in picked] == [i["id"] for i in truth]
    for got, want in zip(slim, truth, strict=True):
        assert "assets" not in got
        assert got["geometry"] == want["geometry"]
        assert got["properties"] == {"datetime": want["properties"]["datetime"]}
    for got, want in zip(picked, truth, strict=True):
        assert set(got) == {"type", "stac_version", "id", "collection", "properties"}
        assert got["properties"] == {"eo:cloud_cover": want["properties"]["eo:cloud_cover"]}


def test_paging_through_many_pages(client: Client, live_server: Server) -> None:
    expected = {i["id"] for i in live_server.loaded.of(LANDSAT)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = client.search(collections=[LANDSAT], limit=37, method="GET")
        pages = list(search.pages())
        got = [i.id for page in pages for i in page]
        assert search.matched() == len(expected)
    assert len(pages) == -(-len(expected) // 37)
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected


def test_max_items_stops_early(client: Client) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = list(client.search(collections=[LANDSAT], limit=5, max_items=12).items())
    assert len(got) == 12


def test_get_item(client: Client, live_server: Server) -> None:
    truth = live_server.loaded.of(S1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        item = client.get_collection(S1).get_item(truth["id"])
    assert item is not None
    assert item.id == truth["id"]
    # pystac migrates extension fields (proj:epsg -> proj:code) on read, so compare the
    # raw documents for equality
    assert item.geometry == truth["geometry"]
    assert set(item.assets) == set(truth["assets"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (raw,) = client.search(ids=[truth["id"]], collections=[S1]).items_as_dicts()
    assert strip_server(raw) == strip_server(truth)


def test_item_collection(client: Client, live_server: Server) -> None:
    """``item_collection()``: every page gathered into a pystac ItemCollection, each item
    parsed (and migrated) by pystac without a warning."""
    truth = {i["id"] for i in live_server.loaded.of(LANDSAT)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = client.search(collections=[LANDSAT], limit=100)
        found = search.item_collection()
        matched = search.matched()
    assert {i.id for i in found} == truth
    assert matched == len(truth)
    assert all(i.collection_id == LANDSAT for i in found)
    # the projection fields survive pystac's migration: proj:code from proj:epsg
    assert all(i.properties.get("proj:code", "").startswith("EPSG:") for i in found)


def test_collection_search(client: Client) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = client.collection_search(q="Sentinel", limit=1)
        ids = {c.id for c in found.collections()}
    assert {S1, S2} <= ids
    assert LANDSAT not in ids
