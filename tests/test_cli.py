"""The eoshare command line: exit codes, one-line errors, summaries."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eoshare import __version__
from eoshare.catalog import open_catalog
from eoshare.cli import app
from eoshare.storage.local import LocalStore

S2 = "S2A_29RKH_20200219_0_L2A"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("EOSHARE_CONFIG", "EOSHARE_DATA_DIR", "EOSHARE_CATALOG", "EOSHARE_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    yield
    root = logging.getLogger()  # drop the JSON handler the CLI installed
    for handler in list(root.handlers):
        if handler.get_name() == "eoshare-json":
            root.removeHandler(handler)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _no_traceback(result: Any) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_version_and_help(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"eoshare {__version__}"
    for command in ([], ["serve"], ["ingest"], ["load"], ["demo"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.stdout


def test_ingest_groups_and_summarises(runner: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    raster = shared_data / "raster"
    args = ["ingest", str(raster / f"{S2}_B04.tif"), str(raster / f"{S2}_B08.tif")]
    args += ["-c", "s2", "--create-collection", "--data-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ingested 1 item"
    again = runner.invoke(app, args)
    assert again.stdout.strip() == "ingested 1 item (0 new, 1 updated)"
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        assert [i["id"] for i in catalog.iter_items("s2")] == [S2]
    finally:
        catalog.close()


def test_ingest_bad_file_is_one_line(runner: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "fake_20200101.tif"
    bad.write_text("just text\n")
    data = tmp_path / "data"
    result = runner.invoke(
        app, ["ingest", str(bad), "-c", "x", "--create-collection", "--data-dir", str(data)]
    )
    assert result.exit_code == 1
    _no_traceback(result)
    assert _errors(result.stderr) == [f"error: {bad}: not a raster file that GDAL can read"]
    assert "ingested 0 items, 1 file failed" in result.stderr
    assert list(LocalStore(data / "store").iter_keys()) == []


def test_ingest_some_files_fail(runner: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    good = shared_data / "raster" / f"{S2}_SCL.tif"
    missing = tmp_path / "absent_20200101.tif"
    d = str(tmp_path / "d")
    result = runner.invoke(
        app,
        ["ingest", str(good), str(missing), "-c", "x", "--create-collection", "--data-dir", d],
    )
    assert result.exit_code == 1
    assert _errors(result.stderr) == [f"error: {missing}: no such file"]
    assert "ingested 1 item, 1 file failed" in result.stderr


def test_ingest_unknown_collection(runner: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    tif = shared_data / "raster" / f"{S2}_SCL.tif"
    result = runner.invoke(app, ["ingest", str(tif), "-c", "nope", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    _no_traceback(result)
    assert _errors(result.stderr) == [
        "error: collection 'nope' does not exist; create it first or pass --create-collection"
    ]


def test_ingest_bad_datetime_is_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["ingest", "x.tif", "-c", "c", "--datetime", "yesterday", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    _no_traceback(result)


def test_load_shared_files(runner: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    stac = shared_data / "stac"
    files = [
        stac / "collection_sentinel-2-l2a_pc.json",
        stac / "sentinel-2-l2a_pc_and_earthsearch.ndjson",
        stac / "rustac_100-sentinel-2-l2a-items.parquet",
        stac / "itemcollection_landsat-c2-l2_pc_stacgeoparquet.json",
        stac / "landsat-8-c2-l2_netherlands_pc.ndjson",
    ]
    d = str(tmp_path)
    result = runner.invoke(
        app,
        ["load", *map(str, files), "--create-collections", "--batch-size", "50", "--data-dir", d],
    )
    assert result.exit_code == 0, result.output
    assert "loaded 398 items (398 new)" in result.stdout


def test_load_malformed_line(runner: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "stac" / "sentinel-1-grd_earthsearch.ndjson").read_text().splitlines()
    bad = tmp_path / "bad.ndjson"
    bad.write_text(f"{lines[0]}\n{{oops\n{lines[1]}\n")
    result = runner.invoke(
        app, ["load", str(bad), "--create-collections", "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 1
    _no_traceback(result)
    errors = _errors(result.stderr)
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {bad}:2: not valid JSON")
    assert "loaded 2 items" in result.stderr


def test_load_bad_on_conflict_is_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["load", "x.ndjson", "--on-conflict", "merge"])
    assert result.exit_code == 2


def test_serve_builds_the_app(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from fastapi import FastAPI

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    result = runner.invoke(
        app, ["serve", "--host", "127.0.0.1", "--port", "8123", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert isinstance(calls[0]["app"], FastAPI)
    assert (calls[0]["host"], calls[0]["port"]) == ("127.0.0.1", 8123)
    calls[0]["app"].state.catalog.close()


def test_demo_builds_then_serves(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    built: list[tuple[Path, bool]] = []
    fake = types.ModuleType("eoshare.demo.build")
    fake.build_demo = lambda data_dir, *, progress: built.append((data_dir, progress))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "eoshare.demo.build", fake)
    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))

    result = runner.invoke(app, ["demo", "--data-dir", str(tmp_path), "--no-serve"])
    assert result.exit_code == 0, result.output
    assert built == [(tmp_path, False)]
    assert served == []

    result = runner.invoke(app, ["demo", "--data-dir", str(tmp_path), "--port", "8124"])
    assert result.exit_code == 0, result.output
    assert len(served) == 1
    served[0].state.catalog.close()


def test_demo_failure_is_one_line(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eoshare.errors import IngestError

    def broken(data_dir: Path, *, progress: bool) -> None:
        raise IngestError("demo scene could not be written")

    fake = types.ModuleType("eoshare.demo.build")
    fake.build_demo = broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "eoshare.demo.build", fake)
    result = runner.invoke(app, ["demo", "--data-dir", str(tmp_path), "--no-serve"])
    assert result.exit_code == 1
    _no_traceback(result)
    assert _errors(result.stderr) == ["error: demo scene could not be written"]
