"""``eoshare migrate --to``: a SQLite catalogue moved up to PostgreSQL/pgstac and back,
resumable, with every item's checksum compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from eoshare.catalog import open_catalog
from eoshare.cli import app

from .test_contract import collection, item


def _fill(url: str) -> list[dict[str, Any]]:
    catalog = open_catalog(url)
    try:
        catalog.create_collection(collection("a", title="A"))
        catalog.create_collection(collection("b"))
        crossing = item("b", 99)
        ring = [[179.5, 0], [-179.5, 0], [-179.5, 1], [179.5, 1], [179.5, 0]]
        crossing["geometry"] = {"type": "Polygon", "coordinates": [ring]}
        del crossing["bbox"]
        catalog.upsert_items([item("a", k) for k in range(30)])
        catalog.upsert_items([*(item("b", k) for k in range(12)), crossing])
        return sorted(catalog.iter_items(), key=lambda i: (i["collection"], i["id"]))
    finally:
        catalog.close()


def _migrate(url: str, to: str, tmp_path: Path) -> Any:
    env = {"EOSHARE_CATALOG": url, "EOSHARE_DATA_DIR": str(tmp_path / "node")}
    return CliRunner().invoke(app, ["migrate", "--to", to], env=env)


def test_migrate_up_and_back(pg: Any, tmp_path: Path) -> None:
    embedded = f"sqlite:///{tmp_path / 'a.db'}"
    before = _fill(embedded)
    shared = pg.new_catalog_url()

    up = _migrate(embedded, shared, tmp_path)
    assert up.exit_code == 0, up.output
    assert "43 items: 43 copied, 0 already there; checksums match" in up.output
    again = _migrate(embedded, shared, tmp_path)  # resumable: nothing left to copy
    assert again.exit_code == 0 and "0 copied, 43 already there" in again.output

    back = f"sqlite:///{tmp_path / 'b.db'}"
    down = _migrate(shared, back, tmp_path)
    assert down.exit_code == 0, down.output
    catalog = open_catalog(back)
    try:
        after = sorted(catalog.iter_items(), key=lambda i: (i["collection"], i["id"]))
        assert after == before
        assert catalog.get_collection("a")["title"] == "A"
    finally:
        catalog.close()


def test_migrate_reports_differences_and_bad_targets(pg: Any, tmp_path: Path) -> None:
    embedded = f"sqlite:///{tmp_path / 'a.db'}"
    _fill(embedded)
    same = _migrate(embedded, embedded, tmp_path)
    assert same.exit_code != 0 and same.output.count("\n") == 1
    assert "already uses" in same.output
    odd = _migrate(embedded, "mysql://x", tmp_path)
    assert odd.exit_code != 0 and "unsupported catalogue URL" in odd.output
    # a target holding a changed copy of an item: the checksums tell
    target = f"sqlite:///{tmp_path / 'c.db'}"
    catalog = open_catalog(target)
    try:
        catalog.create_collection(collection("a", title="A"))
        catalog.upsert_items([item("a", 5, title="changed")])
    finally:
        catalog.close()
    result = _migrate(embedded, target, tmp_path)
    assert result.exit_code == 1
    assert "collection 'a': 1 items differ after the copy (first: 'a-005')" in result.output
