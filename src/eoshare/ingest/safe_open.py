"""Opening rasters that come from users, so that they cannot read the server or make it
fetch URLs.

Every raster whose bytes a user chose (a resumable upload, ``eoshare ingest`` of user
files, a URL ingest, a processing input) is opened through :func:`open_user_raster`, never
with a bare ``rasterio.open``. GDAL is a general-purpose reader: given a file named
``x.tif`` that is really a VRT, it follows the VRT's sources to any path on the server or
to any URL (``/vsicurl/``); given a GeoTIFF, it reads ``.ovr``, ``.aux.xml`` and ``.msk``
files beside it, which may hold other pixels and other georeferencing. So the opener:

1. checks the file's first bytes (TIFF or BigTIFF, either byte order) before GDAL sees it;
2. refuses side-car files beside it (``.ovr``, ``.aux.xml``, ``.msk``...), and tells GDAL
   the directory is empty anyway (``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``), turns off
   ``.aux.xml`` (``GDAL_PAM_ENABLED=NO``) and world files (``GDAL_GEOREF_SOURCES``);
3. opens it with an allow-list of drivers (``GTiff``: GeoTIFF and COG), so that a VRT, a
   netCDF or anything else is refused by GDAL itself;
4. keeps GDAL's network readers shut while the file is open (``/vsicurl/`` accepts no
   extension, no HTTP retries), in case a reader ever follows a reference;
5. refuses declared sizes over a cap (width x height x bands) and "bombs": files whose
   declared pixels are many times their size on disk (a highly compressed or sparse file
   that would take minutes and gigabytes to decode).

Every refusal is an :class:`UnsafeRasterError` (an ``IngestError``: a 400 problem on the
HTTP side, one line on the command line) that names the limit.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors

from eoshare.errors import IngestError

# TIFF: "II*\0" / "MM\0*"; BigTIFF: "II+\0" / "MM\0+"
_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# a URL, also as pathlib writes it ("http:/host/x")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
# GDAL drivers a user raster may be opened with (GTiff reads both GeoTIFF and COG).
ALLOWED_DRIVERS: tuple[str, ...] = ("GTiff",)  # rasterio takes one: the first is used
# Files GDAL reads beside a raster: overviews, masks, auxiliary metadata, georeferencing.
_SIDECAR_SUFFIXES = (".ovr", ".aux.xml", ".aux", ".msk", ".tfw", ".wld", ".tifw", ".rpb")

# GDAL configuration while a user raster is open: nothing outside the file is read.
SAFE_GDAL_CONFIG: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no side-car files are even looked for
    "GDAL_PAM_ENABLED": "NO",  # no .aux.xml read (or written)
    "GDAL_GEOREF_SOURCES": "INTERNAL",  # no .tfw/.wld/.tab georeferencing
    "GDAL_VRT_ENABLE_PYTHON": "NO",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".eoshare-no-network",  # /vsicurl/ opens nothing
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_HTTP_TIMEOUT": "1",
}


class UnsafeRasterError(IngestError):
    """A user raster was refused before its pixels were read (the detail says why)."""


@dataclass(frozen=True)
class RasterLimits:
    """Limits on a user raster (``EOSHARE_INGEST__*``; see the README)."""

    # width x height x bands, declared in the file's header
    max_samples: int = 10_000_000_000
    # declared uncompressed bytes / bytes on disk, checked once over inflation_floor_bytes
    max_inflation: float = 200.0
    inflation_floor_bytes: int = 256 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> RasterLimits:
        """From an ``IngestSettings`` (``settings.ingest``)."""
        return cls(
            max_samples=settings.max_samples,
            max_inflation=settings.max_inflation,
            inflation_floor_bytes=settings.inflation_floor_bytes,
        )


def check_magic(path: Path) -> None:
    """Refuse a file that does not start like a TIFF (before GDAL sees it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except IsADirectoryError as exc:
        raise UnsafeRasterError("is a directory, not a raster file") from exc
    except FileNotFoundError as exc:
        raise UnsafeRasterError("no such file") from exc
    if head.lstrip().startswith(b"<"):
        raise UnsafeRasterError(
            "is an XML document (a GDAL VRT?), not a GeoTIFF: formats that can refer to "
            "other files or URLs are refused"
        )
    if head not in _MAGIC:
        # only GeoTIFF/COG are accepted
        raise UnsafeRasterError("not a raster file that GDAL can read")


def sidecars(path: Path) -> list[Path]:
    """Side-car files beside ``path`` that GDAL would read with it."""
    found: list[Path] = []
    for suffix in _SIDECAR_SUFFIXES:
        for candidate in (path.with_name(path.name + suffix), path.with_suffix(suffix)):
            if candidate != path and candidate.exists() and candidate not in found:
                found.append(candidate)
    return found


def check_size(ds: Any, file_bytes: int, limits: RasterLimits) -> None:
    """Refuse declared sizes over the cap, and bombs (see the module docstring)."""
    samples = int(ds.width) * int(ds.height) * int(ds.count)
    if samples > limits.max_samples:
        raise UnsafeRasterError(
            f"declares {ds.width} x {ds.height} pixels x {ds.count} bands = {samples} "
            f"samples, over the limit of {limits.max_samples} (EOSHARE_INGEST__MAX_SAMPLES)"
        )
    declared = sum(int(ds.width) * int(ds.height) * np.dtype(t).itemsize for t in ds.dtypes)
    if declared > limits.inflation_floor_bytes and declared > limits.max_inflation * max(
        file_bytes, 1
    ):
        raise UnsafeRasterError(
            f"declares {declared} bytes of pixels in a file of {file_bytes} bytes "
            f"({declared / max(file_bytes, 1):.0f}x), over the limit of "
            f"{limits.max_inflation:g}x (EOSHARE_INGEST__MAX_INFLATION): a decompression bomb"
        )


@contextlib.contextmanager
def safe_gdal_env() -> Iterator[None]:
    """GDAL configured so that nothing outside an opened file is read (see the module
    docstring). Everything done with a user raster (conversion, statistics) runs inside."""
    with rasterio.Env(**SAFE_GDAL_CONFIG):
        yield


@contextlib.contextmanager
def open_user_raster(path: Path, limits: RasterLimits | None = None) -> Iterator[Any]:
    """Open a raster a user supplied, or raise :class:`UnsafeRasterError`.

    Yields the open rasterio dataset, inside :func:`safe_gdal_env`. Callers that go on to
    read or convert the file should stay inside the block (the configuration holds only
    there)."""
    limits = limits or RasterLimits()
    path = Path(path)
    if str(path).startswith("/vsi") or _URL.match(str(path)):
        raise UnsafeRasterError("must be a local file, not a GDAL virtual path or a URL")
    if path.is_symlink():
        raise UnsafeRasterError("is a symbolic link; give the file itself")
    check_magic(path)
    found = sidecars(path)
    if found:
        names = ", ".join(p.name for p in found[:3])
        raise UnsafeRasterError(
            f"has side-car files beside it ({names}) that GDAL would read with it; "
            "external overviews, masks and .aux.xml files are refused: put everything "
            "in the GeoTIFF itself"
        )
    file_bytes = os.stat(path).st_size
    with safe_gdal_env():
        try:
            ds = rasterio.open(str(path.resolve()), driver=ALLOWED_DRIVERS[0])
        except rasterio.errors.RasterioIOError as exc:
            raise UnsafeRasterError(
                "is not a GeoTIFF that GDAL can read with the allowed drivers "
                f"({', '.join(ALLOWED_DRIVERS)})"
            ) from exc
        with ds:
            if ds.driver not in ALLOWED_DRIVERS:
                raise UnsafeRasterError(f"was opened by the {ds.driver} driver, which is refused")
            check_size(ds, file_bytes, limits)
            yield ds
