"""PNG thumbnails of rasters, made at ingest time.

Called by ``eoshare.ingest.raster`` once per item on the asset that looks best (a
true-colour image, else a three-band image, else the first band). The image is read at
reduced resolution (GDAL picks an overview, so this is cheap even for big COGs), each
band stretched between its 2nd and 98th percentile, and nodata made transparent.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from PIL import Image
from rasterio.enums import Resampling

MAX_SIZE = 256


def thumbnail_shape(width: int, height: int, max_size: int = MAX_SIZE) -> tuple[int, int]:
    """(height, width) of a thumbnail no larger than ``max_size`` on its longer side."""
    scale = max(width, height) / max_size
    if scale <= 1:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


def _stretch(band: NDArray[np.floating], valid: NDArray[np.bool_]) -> NDArray[np.uint8]:
    values = band[valid]
    if values.size == 0:
        return np.zeros(band.shape, dtype=np.uint8)
    lo, hi = np.percentile(values, [2.0, 98.0])
    if hi <= lo:
        hi = lo + 1.0
    scaled = (band - lo) / (hi - lo) * 255.0
    out: NDArray[np.uint8] = np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    return out


def render_thumbnail(path: Path, *, rgb: bool, max_size: int = MAX_SIZE) -> bytes:
    """A PNG (RGBA, or grey + alpha) of the raster at ``path``; ``rgb`` uses bands 1-3."""
    with rasterio.open(path) as ds:
        indexes = [1, 2, 3] if rgb and ds.count >= 3 else [1]
        height, width = thumbnail_shape(ds.width, ds.height, max_size)
        data = ds.read(
            indexes,
            out_shape=(len(indexes), height, width),
            masked=True,
            resampling=Resampling.nearest,
        )
    mask = np.ma.getmaskarray(data)
    valid: NDArray[np.bool_] = np.asarray(~mask.any(axis=0), dtype=bool)
    floats = data.astype("float64").filled(np.nan)
    channels = [_stretch(floats[i], valid) for i in range(len(indexes))]
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    # (h, w, 4) uint8 becomes RGBA and (h, w, 2) LA; Pillow infers the mode from the shape.
    image = Image.fromarray(np.dstack([*channels, alpha]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
