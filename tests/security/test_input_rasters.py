"""Hole 2 of issue 8 through ``eoshare ingest``, and the safe opener itself: a user's
raster is GeoTIFF only, with nothing read from outside the file."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import rasterio
from typer.testing import CliRunner

from eoshare.cli import app
from eoshare.ingest.safe_open import (
    RasterLimits,
    UnsafeRasterError,
    open_user_raster,
    safe_gdal_env,
)

from .input_nodes import (
    SECRET_VALUE,
    bomb_tiff,
    geotiff,
    huge_tiff,
    listener,
    tiny_tiff_header,
    vrt_raw_file,
    vrt_simple_source,
)


def _ingest(data_dir: Path, *files: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(
        app,
        ["ingest", *map(str, files), "-c", "user-files", "--create-collection",
         "--data-dir", str(data_dir)],
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return result.exit_code, lines


def _nothing_stored(data_dir: Path) -> None:
    store = data_dir / "store"
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]


def test_cli_refuses_a_vrt_that_reads_a_server_file(tmp_path: Path) -> None:
    secret = geotiff(tmp_path / "secret.tif", value=SECRET_VALUE)
    keys = tmp_path / "signing-keys.json"
    keys.write_text('{"keys": [{"kid": "k1", "secret": "' + "s" * 64 + '"}]}')
    a = tmp_path / "in" / "a_20240101.tif"
    a.parent.mkdir()
    a.write_bytes(vrt_simple_source(str(secret)))
    b = tmp_path / "in" / "b_20240101.tif"
    b.write_bytes(vrt_raw_file(keys))
    data = tmp_path / "data"
    code, errors = _ingest(data, a, b)
    assert code == 1
    assert len(errors) == 2
    assert all("VRT" in e and "refused" in e for e in errors), errors
    _nothing_stored(data)


def test_cli_refuses_a_vrt_with_a_url_and_never_connects(tmp_path: Path) -> None:
    with listener() as ear:
        f = tmp_path / "remote_20240101.tif"
        f.write_bytes(vrt_simple_source(f"/vsicurl/{ear.url}"))
        code, errors = _ingest(tmp_path / "data", f)
        assert ear.hits == []
    assert code == 1 and len(errors) == 1 and "VRT" in errors[0]


@pytest.mark.parametrize("sidecar", [".ovr", ".aux.xml", ".msk"])
def test_cli_refuses_a_geotiff_with_side_car_files(tmp_path: Path, sidecar: str) -> None:
    f = geotiff(tmp_path / "scene_20240101.tif", value=3)
    # the side-car holds other pixels (a secret raster) that GDAL would show as overviews
    shutil.copyfile(geotiff(tmp_path / "other.tif", value=SECRET_VALUE, size=32),
                    tmp_path / f"scene_20240101.tif{sidecar}")  # fmt: skip
    data = tmp_path / "data"
    code, errors = _ingest(data, f)
    assert code == 1
    assert errors == [
        f"error: {f}: has side-car files beside it (scene_20240101.tif{sidecar}) that GDAL "
        "would read with it; external overviews, masks and .aux.xml files are refused: put "
        "everything in the GeoTIFF itself"
    ]
    _nothing_stored(data)


def test_cli_refuses_huge_declared_dimensions_and_bombs(tmp_path: Path) -> None:
    huge = huge_tiff(tmp_path / "huge_20240101.tif")
    bomb = bomb_tiff(tmp_path / "bomb_20240101.tif")
    data = tmp_path / "data"
    started = time.monotonic()
    code, errors = _ingest(data, huge, bomb)
    assert time.monotonic() - started < 30  # a safety bound: nothing was decoded
    assert code == 1
    assert "1000000 x 1000000 pixels" in errors[0] and "MAX_SAMPLES" in errors[0]
    assert "decompression bomb" in errors[1] and "MAX_INFLATION" in errors[1]
    _nothing_stored(data)


def test_cli_still_ingests_a_plain_geotiff(tmp_path: Path) -> None:
    f = geotiff(tmp_path / "plain_20240101.tif", value=9)
    code, errors = _ingest(tmp_path / "data", f)
    assert (code, errors) == (0, [])


# --- the opener itself ----------------------------------------------------------------
def test_the_safe_environment_hides_side_car_overviews(tmp_path: Path) -> None:
    """Defence in depth: even if a side-car slipped past the check, GDAL does not read it."""
    f = geotiff(tmp_path / "scene.tif", value=3, size=64)
    # an external overview: a half-size GeoTIFF of other pixels named scene.tif.ovr
    shutil.copyfile(geotiff(tmp_path / "other.tif", value=SECRET_VALUE, size=32),
                    tmp_path / "scene.tif.ovr")  # fmt: skip
    with rasterio.open(f) as ds:
        assert ds.overviews(1) == [2]  # GDAL alone reads the side-car
        assert ds.read(1, out_shape=(32, 32)).max() == SECRET_VALUE
    with safe_gdal_env(), rasterio.open(f, driver="GTiff") as ds:
        assert ds.overviews(1) == []
        assert ds.read(1, out_shape=(32, 32)).max() == 3


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_limits_are_configurable(tmp_path: Path) -> None:
    f = tmp_path / "small.tif"
    f.write_bytes(tiny_tiff_header(100, 100))
    limits = RasterLimits(max_samples=9999)
    with (
        pytest.raises(UnsafeRasterError, match="10000 samples, over the limit of 9999"),
        open_user_raster(f, limits),
    ):
        pass


@pytest.mark.parametrize("name", ["/vsicurl/http://127.0.0.1:1/x.tif", "http://127.0.0.1:1/x.tif"])
def test_gdal_virtual_paths_and_urls_are_refused(name: str) -> None:
    with pytest.raises(UnsafeRasterError, match="local file"), open_user_raster(Path(name)):
        pass
