"""Fixtures of the catalogue tests: ``catalog`` parametrizes a test over every backend
of the ``Catalog`` protocol (``sqlite`` and ``pgstac``); ``catalog_url`` gives a fresh,
empty catalogue's URL of each kind, for tests that go through ``open_catalog``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eoshare.catalog import Catalog, open_catalog

BACKENDS = ["sqlite", "pgstac"]


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalogue of each backend, as the URL ``EOSHARE_CATALOG`` takes."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    from pg import PgCluster

    cluster: PgCluster = request.getfixturevalue("pg")
    return cluster.new_catalog_url()


@pytest.fixture()
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """A fresh, empty catalogue of each backend."""
    cat = open_catalog(catalog_url)
    try:
        yield cat
    finally:
        cat.close()
