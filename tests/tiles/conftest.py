"""Fixtures for the tile tests: real Sentinel-2 and Landsat 8 rasters from
``../shared/data/raster`` ingested into a fresh node, served by the real app.

Access decisions come from ``ScriptedPolicy``, an ``AccessPolicy`` whose answers each
test sets (hidden items, denied or reduced decisions) and which keeps every grant it is
asked to record, so the tests can check both enforcement and the audit.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rio_tiler.io import Reader

from eoshare.access import Action, Decision, Principal
from eoshare.api.app import create_app
from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.settings import load_settings
from eoshare.storage import open_store
from live import live_node

JSON = dict[str, Any]
S2 = "S2A_29RKH_20200219_0_L2A"
S2_LATER = "S2A_29RKH_later"
L8 = "LC08_L1TP_016037_20170813_20170814_01_RT"
S2C = "s2"
L8C = "l8"


@dataclass
class ScriptedPolicy:
    """An AccessPolicy with answers set by the test; records what it grants. Wraps the
    node's real policy (``inner``): its visibility is ANDed in, and what other areas ask
    of it beyond the protocol (collection views for the agreements decorator) goes to it."""

    hidden: set[str] = field(default_factory=set)
    decisions: dict[str, Decision] = field(default_factory=dict)
    grants: list[tuple[str | None, str | None, str, int]] = field(default_factory=list)
    inner: Any = None

    def __getattr__(self, name: str) -> Any:
        if name == "inner" or self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)

    def visible_filter(self, principal: Principal) -> JSON | None:
        base = self.inner.visible_filter(principal) if self.inner is not None else None
        if not self.hidden:
            return base
        mine = {
            "op": "not",
            "args": [{"op": "in", "args": [{"property": "id"}, sorted(self.hidden)]}],
        }
        return mine if base is None else {"op": "and", "args": [base, mine]}

    def decide(
        self, principal: Principal, item: JSON, asset_key: str | None, action: Action
    ) -> Decision:
        if action != Action.TILE:  # other areas (downloads...) ask too; not scripted here
            return Decision.full()
        return self.decisions.get(str(item.get("id")), Decision.full())

    def record(
        self,
        principal: Principal,
        item: JSON,
        asset_key: str | None,
        action: Action,
        decision: Decision,
        nbytes: int,
    ) -> None:
        self.grants.append((item.get("id"), asset_key, decision.kind, nbytes))

    def reset(self) -> None:
        self.hidden.clear()
        self.decisions.clear()
        self.grants.clear()


@pytest.fixture(scope="session")
def tiles_data(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A data directory with S2 B04/B08/SCL/TCI (twice: a later copy for mosaics) and
    Landsat 8 B4/B5 ingested through ``ingest_rasters``."""
    raster = shared_data / "raster"
    data_dir = tmp_path_factory.mktemp("eoshare-tiles")
    settings = load_settings(data_dir=data_dir)
    catalog = open_catalog(settings.catalog_url)
    store = open_store(settings.storage_url)
    try:
        s2 = [raster / f"{S2}_{band}.tif" for band in ("B04", "B08", "SCL", "TCI")]
        for kwargs in ({}, {"item_id": S2_LATER, "datetime": datetime(2020, 3, 1, tzinfo=UTC)}):
            report = ingest_rasters(
                s2, catalog=catalog, store=store, collection_id=S2C, create_collection=True,
                **kwargs,  # type: ignore[arg-type]
            )  # fmt: skip
            assert report.ok, report.failures
        l8 = [raster / f"{L8}_{band}.TIF" for band in ("B4", "B5")]
        report = ingest_rasters(
            l8, catalog=catalog, store=store, collection_id=L8C, create_collection=True
        )
        assert report.ok, report.failures
    finally:
        catalog.close()
    return data_dir


@pytest.fixture(scope="session")
def policy() -> ScriptedPolicy:
    return ScriptedPolicy()


@pytest.fixture(scope="session")
def tiles_app(tiles_data: Path, policy: ScriptedPolicy) -> FastAPI:
    app = create_app(load_settings(data_dir=tiles_data, log_level="warning"))
    policy.inner = app.state.access
    app.state.access = policy
    app.state.gate.policy = policy  # the one path for bytes asks the same policy
    return app


@pytest.fixture(scope="session")
def session_client(tiles_app: FastAPI) -> Iterator[TestClient]:
    # one client for the session: leaving it runs the app's shutdown (closes the catalogue)
    with TestClient(tiles_app) as c:
        yield c


@pytest.fixture()
def client(session_client: TestClient, policy: ScriptedPolicy) -> Iterator[TestClient]:
    policy.reset()
    yield session_client
    policy.reset()


@pytest.fixture()
def store_path(tiles_app: FastAPI) -> Any:
    """The local file of an item's asset, for independent reads with rasterio."""

    def path(collection: str, item: str, asset: str) -> str:
        doc = tiles_app.state.catalog.get_item(collection, item)
        gdal_path, _ = tiles_app.state.store.gdal_path(doc["assets"][asset]["eoshare:key"])
        return str(gdal_path)

    return path


@contextlib.contextmanager
def quiet_reader(path: str) -> Iterator[Reader]:
    """rio-tiler's Reader for the independent in-process reads of the tests, without
    affine's PendingDeprecationWarning, which rasterio raises inside rio-tiler."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Use `@` matmul", category=PendingDeprecationWarning
        )
        with Reader(path) as reader:
            yield reader


@pytest.fixture(scope="session")
def live_tiles(tiles_data: Path) -> Iterator[str]:
    """``uvicorn --factory eoshare.api.app:create_app`` over the tile data on 127.0.0.1,
    for clients that talk real HTTP (OWSLib)."""
    with live_node(tiles_data, {"EOSHARE_LOG_LEVEL": "warning"}) as url:
        yield url
    log = (tiles_data / "server.log").read_text()
    assert "Traceback" not in log, log
