"""Areas from uploaded files: KML, GeoPackage (in UTM, turned to lon/lat) and a zipped
shapefile, each written here with GDAL; and the files that must be refused."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from eoshare.disaster.areas import parse_area_file
from eoshare.errors import InvalidRequestError, PayloadTooLargeError

KML = b"""<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2"><Document><Placemark><name>flood</name>
<Polygon><outerBoundaryIs><LinearRing><coordinates>
-11.6,24.6,0 -11.2,24.6,0 -11.2,25.0,0 -11.6,25.0,0 -11.6,24.6,0
</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark></Document></kml>"""


def _write(tmp: Path, name: str, driver: str, geom: shapely.Geometry, crs: str) -> Path:
    path = tmp / name
    pyogrio.raw.write(
        str(path), np.array([shapely.to_wkb(geom)], dtype=object), [], [],
        driver=driver, geometry_type="Polygon", crs=crs,
    )  # fmt: skip
    return path


def test_kml_area() -> None:
    area = shape(parse_area_file(KML, "flood.kml"))
    assert area.bounds == pytest.approx((-11.6, 24.6, -11.2, 25.0))


def test_geopackage_in_utm_is_turned_to_lonlat(tmp_path: Path) -> None:
    # a 10 km square in UTM zone 29N (west of its central meridian, 9 W)
    square = shapely.box(360_000, 2_740_000, 370_000, 2_750_000)
    path = _write(tmp_path, "a.gpkg", "GPKG", square, "EPSG:32629")
    area = shape(parse_area_file(path.read_bytes(), "area.gpkg"))
    to_lonlat = Transformer.from_crs(32629, 4326, always_xy=True)
    lon, lat = to_lonlat.transform(365_000, 2_745_000)
    assert area.centroid.x == pytest.approx(lon, abs=1e-3)
    assert area.centroid.y == pytest.approx(lat, abs=1e-3)
    assert -11 < lon < -10 and 24 < lat < 25.5


def test_zipped_shapefile(tmp_path: Path) -> None:
    _write(tmp_path, "zone.shp", "ESRI Shapefile", shapely.box(10, 10, 11, 11), "EPSG:4326")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for part in tmp_path.glob("zone.*"):
            z.write(part, f"folder/{part.name}")
    area = shape(parse_area_file(buf.getvalue(), "zone.zip"))
    assert area.bounds == pytest.approx((10, 10, 11, 11))


def test_unsafe_files_are_refused() -> None:
    bomb = KML.replace(b"<kml", b'<!DOCTYPE kml [<!ENTITY a "aaaa">]><kml')
    with pytest.raises(InvalidRequestError, match="DOCTYPE"):
        parse_area_file(bomb, "x.kml")
    linked = KML.replace(b"<Document>", b"<Document><NetworkLink><Link><href>http://x/y.kml"
                         b"</href></Link></NetworkLink>")  # fmt: skip
    with pytest.raises(InvalidRequestError, match="network links"):
        parse_area_file(linked, "x.kml")
    with pytest.raises(InvalidRequestError, match="GeoPackage"):
        parse_area_file(b"not sqlite", "x.gpkg")
    with pytest.raises(InvalidRequestError, match="zip"):
        parse_area_file(b"PK not a zip", "x.zip")
    with pytest.raises(InvalidRequestError, match=r"\.shp"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("../../etc/passwd", b"x")
        parse_area_file(buf.getvalue(), "x.zip")
    zeros = io.BytesIO()
    with zipfile.ZipFile(zeros, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.shp", b"\0" * (101 * 1024 * 1024))
    with pytest.raises(PayloadTooLargeError, match="unzipped"):
        parse_area_file(zeros.getvalue(), "bomb.zip")
    with pytest.raises(InvalidRequestError, match="GeoJSON"):
        parse_area_file(b"x", "area.exe")
