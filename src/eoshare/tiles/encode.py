"""PNG encoding of finished 8-bit pictures with Pillow.

rio-tiler renders through GDAL (a MEM dataset copied to the PNG driver), which costs
several milliseconds of set-up per tile on top of zlib; Pillow writes the same PNG
(grey, grey+alpha, RGB or RGBA, 8 bits) straight from the array. Anything else (16-bit
data, colour maps) goes back to rio-tiler (``None`` here).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

_MODES = {(1, False): "L", (1, True): "LA", (3, False): "RGB", (3, True): "RGBA"}


def encode_png(array: np.ma.MaskedArray, *, add_mask: bool, level: int) -> bytes | None:
    """The PNG of a (bands, rows, cols) uint8 masked array with 1 or 3 bands, the mask
    (if asked) as alpha: opaque where any band has data, as rio-tiler draws it; None
    when Pillow cannot write it as rio-tiler would."""
    if array.dtype != np.uint8 or array.ndim != 3:
        return None
    count = array.shape[0]
    mode = _MODES.get((count, add_mask))
    if mode is None:
        return None
    planes = [np.asarray(array.data[i]) for i in range(count)]
    if add_mask:
        masked = np.ma.getmaskarray(array)
        alpha = np.where(masked.all(axis=0), 0, 255).astype(np.uint8)
        planes.append(alpha)
    pixels = planes[0] if len(planes) == 1 else np.ascontiguousarray(np.dstack(planes))
    out = io.BytesIO()
    image = Image.fromarray(pixels)
    if image.mode != mode:
        return None
    image.save(out, "PNG", compress_level=level)
    return out.getvalue()
