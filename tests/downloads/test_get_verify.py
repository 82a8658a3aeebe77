"""``eoshare get`` (resume, parallel, checksums) and ``eoshare verify`` on a real node."""

from __future__ import annotations

import shutil
from pathlib import Path

from dl_nodes import COLLECTION, ITEM, Node, ingest_scene, make_settings
from typer.testing import CliRunner

from eoshare.catalog import open_catalog
from eoshare.cli import app
from eoshare.downloads.client import get
from eoshare.storage import open_store
from eoshare.storage.verify import verify


def test_get_downloads_resumes_and_skips(node: Node, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = get(node.url, out, search={"ids": [ITEM]}, parallel=3)
    assert report.ok, report.failures
    assert report.downloaded == 3
    folder = out / COLLECTION / ITEM
    store = node.data_dir / "store" / COLLECTION / ITEM
    assert (folder / "B04.tif").read_bytes() == (store / "B04.tif").read_bytes()
    assert (folder / "TCI.tif").read_bytes() == (store / "TCI.tif").read_bytes()
    # simulate an interrupted run: half a part file (with its etag) and no final file
    data = (folder / "B04.tif").read_bytes()
    (folder / "B04.tif").unlink()
    part = folder / "B04.tif.part"
    part.write_bytes(data[: len(data) // 2])
    etag = __import__("httpx").head(f"{node.url}/download/{COLLECTION}/{ITEM}/B04").headers["etag"]
    (folder / "B04.tif.part.etag").write_text(etag)
    again = get(node.url, out, search={"ids": [ITEM]}, parallel=2)
    assert again.ok, again.failures
    # B04 resumed, TCI skipped (its checksum matches), the thumbnail (no checksum in
    # the catalogue, so it cannot be trusted) fetched again
    assert (again.downloaded, again.resumed, again.skipped) == (2, 1, 1)
    thumb = (store / "thumbnail.png").stat().st_size
    assert again.bytes == len(data) - len(data) // 2 + thumb
    assert (folder / "B04.tif").read_bytes() == data
    assert not part.exists()


def test_get_cli(node: Node, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["get", node.url, "--ids", ITEM, "--assets", "TCI", "-o", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / COLLECTION / ITEM / "TCI.tif").is_file()
    assert not (tmp_path / COLLECTION / ITEM / "B04.tif").exists()
    bad = CliRunner().invoke(app, ["get", "http://127.0.0.1:9", "--ids", ITEM, "-o", str(tmp_path)])
    assert bad.exit_code == 1
    assert "error:" in bad.output
    assert "Traceback" not in bad.output


def test_verify_finds_missing_corrupt_and_orphaned(tmp_path: Path, shared_data: Path) -> None:
    settings = make_settings(tmp_path / "node")
    ingest_scene(settings, shared_data)
    store = open_store(settings.storage_url)
    catalog = open_catalog(settings.catalog_url)
    try:
        assert verify(catalog, store).ok
        root = tmp_path / "node" / "store" / COLLECTION / ITEM
        (root / "thumbnail.png").unlink()
        data = bytearray((root / "TCI.tif").read_bytes())
        data[5000] ^= 0xFF  # one flipped byte, same size
        (root / "TCI.tif").write_bytes(bytes(data))
        shutil.copy(root / "B04.tif", root / "stray.tif")
        report = verify(catalog, store)
        assert [f.key for f in report.of("missing")] == [f"{COLLECTION}/{ITEM}/thumbnail.png"]
        assert [f.key for f in report.of("corrupt")] == [f"{COLLECTION}/{ITEM}/TCI.tif"]
        assert [f.key for f in report.of("orphaned")] == [f"{COLLECTION}/{ITEM}/stray.tif"]
        assert verify(catalog, store, deep=False).of("corrupt") == []  # sizes only
    finally:
        catalog.close()
    result = CliRunner().invoke(app, ["verify", "--data-dir", str(tmp_path / "node")])
    assert result.exit_code == 1
    assert "corrupt: " in result.output and "missing: " in result.output
