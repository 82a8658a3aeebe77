"""A real eoshare server for the API tests.

The catalogue is built through the catalogue API (``open_catalog`` +
``create_collection`` + ``upsert_items``) from the real STAC documents in
``../shared/data/stac``, plus a few antimeridian-crossing items made here from
Chatham Islands scenes. Then uvicorn serves it from a subprocess on 127.0.0.1, as in
production; the tests talk to it over HTTP only.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from eoshare.catalog import open_catalog
from eoshare.errors import InvalidItemError
from live import live_node

JSON = dict[str, Any]
ADMIN_TOKEN = "test-admin-token-0123456789"

LANDSAT = "landsat-8-c2-l2"
S1 = "sentinel-1-grd"
S2 = "sentinel-2-l2a"
ANTI = "antimeridian-test"
VALIDATOR_TX = "validator-transactions"

# the collections that hold the shared data; tests that compare with an independent
# computation restrict their searches to these (transaction tests add others)
DATA_COLLECTIONS = (LANDSAT, S1, S2, ANTI)


@dataclass
class Loaded:
    """What was put into the catalogue: the independent truth the tests compare with."""

    collections: dict[str, JSON] = field(default_factory=dict)
    items: dict[tuple[str, str], JSON] = field(default_factory=dict)
    # true shapes of the antimeridian test items in unwrapped longitudes (x < -180)
    unwrapped: dict[str, list[list[list[float]]]] = field(default_factory=dict)
    invalid: list[tuple[str, str]] = field(default_factory=list)

    def of(self, *collections: str) -> list[JSON]:
        wanted = set(collections or DATA_COLLECTIONS)
        return [i for (c, _), i in self.items.items() if c in wanted]


@dataclass
class Server:
    url: str
    loaded: Loaded
    token: str = ADMIN_TOKEN

    def __repr__(self) -> str:  # keep pytest and hypothesis reports short
        return f"Server({self.url})"

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _ndjson(path: Path) -> list[JSON]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _collection_from(template: JSON, cid: str, title: str) -> JSON:
    doc = copy.deepcopy(template)
    doc["id"] = cid
    doc["title"] = title
    # the copy keeps the template's titled links only (license, about, ...): its
    # Planetary Computer self/root links make no sense here
    doc["links"] = [
        x
        for x in doc.get("links", [])
        if x.get("title") and x.get("rel") not in ("self", "root", "parent", "items")
    ]
    return doc


Rings = list[list[list[float]]]


def antimeridian_items(chatham: list[JSON]) -> tuple[list[JSON], dict[str, Rings]]:
    """Chatham Islands scenes moved west by 3.5 degrees so that they straddle 180 degrees.

    Written in both styles found in the wild: a MultiPolygon split at +-180 with a bbox
    whose minx > maxx (RFC 7946), and one ring whose longitudes jump across the line
    (some with a bbox, some without, so that the server computes it)."""
    out: list[JSON] = []
    unwrapped: dict[str, Rings] = {}
    valid = [i for i in chatham if all("href" in a for a in i.get("assets", {}).values())]
    for n, src in enumerate(valid[:12]):
        ring = [[p[0] - 3.5, p[1]] for p in src["geometry"]["coordinates"][0]]
        xs = [p[0] for p in ring]
        if not (min(xs) < -180.0 < max(xs)):
            continue
        ident = f"anti-{n:02d}-{src['id']}"
        unwrapped[ident] = [ring]
        lats = [p[1] for p in ring]
        bbox = [min(xs) + 360.0, min(lats), max(xs), max(lats)]
        item = copy.deepcopy(src)
        item["id"] = ident
        item["collection"] = ANTI
        item["links"] = []
        if n % 2 == 0:
            import shapely
            from shapely.geometry import Polygon, box, mapping

            poly = Polygon(ring)
            west = poly.intersection(box(-540.0, -90.0, -180.0, 90.0))
            east = poly.intersection(box(-180.0, -90.0, 180.0, 90.0))
            west = shapely.affinity.translate(west, xoff=360.0)
            parts = [
                [[list(p) for p in r] for r in mapping(g)["coordinates"]] for g in (west, east)
            ]
            # snap the cut edge exactly to +-180 (shapely may leave 1e-13 noise)
            for part in parts:
                for r in part:
                    for p in r:
                        if abs(abs(p[0]) - 180.0) < 1e-9:
                            p[0] = 180.0 if p[0] > 0 else -180.0
            item["geometry"] = {"type": "MultiPolygon", "coordinates": parts}
            item["bbox"] = bbox
        else:
            item["geometry"] = {
                "type": "Polygon",
                "coordinates": [[[x + 360.0 if x < -180.0 else x, y] for x, y in ring]],
            }
            if n % 4 == 1:
                item["bbox"] = bbox
            else:
                item.pop("bbox", None)
        out.append(item)
    return out, unwrapped


def probe_item(src: JSON) -> JSON:
    """A Netherlands scene moved to 20.5E 20.5N: stac-api-validator checks that ``ids``
    does not override the other parameters with a search in bbox 20,20,21,21 of the
    collection, and needs an item there."""
    item = copy.deepcopy(src)
    ring = src["geometry"]["coordinates"][0]
    cx = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
    cy = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
    moved = [[p[0] - cx + 20.5, p[1] - cy + 20.5] for p in ring]
    item["id"] = "probe-" + src["id"].lower()
    item["geometry"] = {"type": "Polygon", "coordinates": [moved]}
    xs, ys = [p[0] for p in moved], [p[1] for p in moved]
    item["bbox"] = [min(xs), min(ys), max(xs), max(ys)]
    item["links"] = []
    return item


def populate(catalog_url: str, stac: Path) -> Loaded:
    """Load the shared STAC documents into a fresh catalogue (through its API)."""
    loaded = Loaded()
    catalog = open_catalog(catalog_url)
    try:
        templates = {
            cid: json.loads((stac / f"collection_{cid}_pc.json").read_text())
            for cid in ("landsat-c2-l2", "sentinel-1-grd", "sentinel-2-l2a")
        }
        collections = [
            templates["landsat-c2-l2"],
            _collection_from(templates["landsat-c2-l2"], LANDSAT, "Landsat 8 Collection 2 L2"),
            _collection_from(templates["sentinel-1-grd"], S1, "Sentinel-1 GRD"),
            templates["sentinel-2-l2a"],
            _collection_from(templates["landsat-c2-l2"], ANTI, "Antimeridian test scenes"),
            _collection_from(templates["sentinel-2-l2a"], VALIDATOR_TX, "Validator scratch"),
        ]
        # the shared sentinel-1-grd collection has the id we want already
        collections[2] = templates["sentinel-1-grd"]
        for doc in collections:
            catalog.create_collection(doc)
            loaded.collections[doc["id"]] = doc

        chatham = _ndjson(stac / "landsat-8-c2-l2_chatham-islands_pc.ndjson")
        anti, loaded.unwrapped = antimeridian_items(chatham)
        netherlands = _ndjson(stac / "landsat-8-c2-l2_netherlands_pc.ndjson")
        batches = [
            [*netherlands, probe_item(netherlands[0])],
            chatham,
            _ndjson(stac / "sentinel-2-l2a_pc_and_earthsearch.ndjson"),
            _ndjson(stac / "sentinel-1-grd_earthsearch.ndjson"),
            [json.loads((stac / "item_S1A_IW_GRDH_1SDV_20220428T034417_pc.json").read_text())],
            anti,
        ]

        def refused(item: JSON, exc: InvalidItemError) -> None:
            loaded.invalid.append((str(item.get("id")), exc.detail))

        for batch in batches:
            before = len(loaded.invalid)
            catalog.upsert_items(batch, on_invalid=refused)
            bad = {ident for ident, _ in loaded.invalid[before:]}
            for item in batch:
                if item["id"] not in bad:
                    loaded.items[(item["collection"], item["id"])] = item
    finally:
        catalog.close()
    return loaded


@contextlib.contextmanager
def serve(
    data_dir: Path, *, token: str | None = ADMIN_TOKEN, catalog_url: str | None = None
) -> Iterator[str]:
    """Run ``uvicorn --factory eoshare.api.app:create_app`` on a free port; yield its URL."""
    env = {
        "EOSHARE_CATALOG": catalog_url or f"sqlite:///{data_dir / 'catalog.db'}",
        "EOSHARE_LOG_LEVEL": "warning",
    }
    if token:
        env["EOSHARE_API__ADMIN_TOKEN"] = token
    with live_node(data_dir, env, timeout_s=60) as url:
        yield url


# the test modules that run against both catalogue backends (the others: SQLite only)
ON_BOTH_BACKENDS = {"test_search_semantics", "test_transactions", "test_bad_input"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "live_server" in metafunc.fixturenames and module in ON_BOTH_BACKENDS:
        metafunc.parametrize(
            "catalog_backend", ["sqlite", "pgstac"], indirect=True, scope="session"
        )


# the running live_server, shared by the conftests that import the fixture
_RUNNING: list[Server] = []


@pytest.fixture(scope="session")
def catalog_backend(request: pytest.FixtureRequest) -> str:
    """The catalogue backend of ``live_server``: sqlite, unless a module asks for both."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory,
    shared_data: Path,
    catalog_backend: str,
    request: pytest.FixtureRequest,
) -> Iterator[Server]:
    """The real server over the shared data, transactions enabled with ``ADMIN_TOKEN``."""
    if _RUNNING:  # tests/clients asks for the same node: one instance per session
        yield _RUNNING[0]
        return
    data_dir = tmp_path_factory.mktemp("eoshare-live")
    catalog_url = f"sqlite:///{data_dir / 'catalog.db'}"
    if catalog_backend == "pgstac":
        catalog_url = request.getfixturevalue("pg").new_catalog_url()
    loaded = populate(catalog_url, shared_data / "stac")
    with serve(data_dir, catalog_url=catalog_url) as url:
        _RUNNING.append(Server(url, loaded))
        try:
            yield _RUNNING[0]
        finally:
            _RUNNING.clear()
        log = (data_dir / "server.log").read_text()
    # a traceback in the server log is a bug even when the response looked fine
    assert "Traceback" not in log, log


@pytest.fixture()
def http(live_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


# On PostgreSQL, test_every_parameter_combination runs every single parameter, every pair
# and all of them together (38 of 256): the full set doubles the suite's longest test.
PG_COMBINATIONS = 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        names = params.get("names")
        if (
            params.get("catalog_backend") == "pgstac"
            and getattr(item, "originalname", "") == "test_every_parameter_combination"
            and names is not None
            and PG_COMBINATIONS < len(names) < 8
        ):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
