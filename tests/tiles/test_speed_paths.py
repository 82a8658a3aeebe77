"""The fast paths of tile rendering give the pictures the slow ones gave: PNGs written
by Pillow decode to the pixels rio-tiler's GDAL rendering has, and the pool of open
datasets lends a reader to one request at a time, stays within its bound and opens a
replaced file afresh."""

from __future__ import annotations

import io
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData

from eoshare.storage import open_store
from eoshare.tiles import TileService, make_spec
from eoshare.tiles.encode import encode_png
from eoshare.tiles.readers import ReaderPool
from eoshare.tiles.render import image_format
from eoshare.tiles.service import get_tms

from .conftest import S2

B04 = f"{S2}_B04.tif"
TCI = f"{S2}_TCI.tif"


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def _tile(path: Path, bands: tuple[int, ...]) -> ImageData:
    with warnings.catch_warnings(), Reader(str(path)) as src:
        warnings.simplefilter("ignore")
        # a tile across the scene's edge, so that part of it is masked
        west, _, _, north = src.get_geographic_bounds(src.tms.geographic_crs)
        t = src.tms.tile(west, north, 11)
        img = src.tile(t.x, t.y, t.z, indexes=bands)
    if img.array.dtype != np.uint8:
        img.rescale(in_range=((0, 6000),))
    return img


@pytest.mark.parametrize(
    ("name", "bands", "mask"),
    [(B04, (1,), True), (B04, (1,), False), (TCI, (1, 2, 3), True), (TCI, (1, 2, 3), False)],
)
def test_pillow_pngs_have_the_pixels_of_gdal_pngs(
    shared_data: Path, name: str, bands: tuple[int, ...], mask: bool
) -> None:
    img = _tile(shared_data / "raster" / name, bands)
    assert np.ma.getmaskarray(img.array).any() and not np.ma.getmaskarray(img.array).all()
    fast = encode_png(img.array, add_mask=mask, level=1)
    assert fast is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slow = img.render(img_format="PNG", add_mask=mask)
    a, b = _pixels(fast), _pixels(slow)
    assert a.shape == b.shape
    assert (a == b).all()


def test_what_pillow_cannot_write_goes_back_to_gdal() -> None:
    two = np.ma.masked_array(np.zeros((2, 4, 4), np.uint8))
    wide = np.ma.masked_array(np.zeros((1, 4, 4), np.uint16))
    assert encode_png(two, add_mask=True, level=1) is None
    assert encode_png(wide, add_mask=True, level=1) is None


class _Reader:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_pool_lends_each_reader_to_one_borrower_and_stays_bounded() -> None:
    pool = ReaderPool(2)
    made: list[_Reader] = []

    def make() -> _Reader:
        made.append(_Reader(len(made)))
        return made[-1]

    with pool.borrow("a", make) as r1, pool.borrow("a", make) as r2:
        assert r1 is not r2  # two requests at once: two readers
    with pool.borrow("a", make) as r3:
        assert r3 in (r1, r2)
    with pool.borrow("b", make), pool.borrow("c", make):
        pass
    assert len(pool) == 2 and len(made) == 4
    assert sum(r.closed for r in made) == 2  # the least recently used went out, closed
    with pytest.raises(RuntimeError), pool.borrow("c", make) as broken:
        raise RuntimeError("a read failed")
    assert broken.closed and len(pool) == 1  # closed, not given back
    with pytest.raises(TileOutsideBounds), pool.borrow("b", make) as fine:
        raise TileOutsideBounds("outside")
    assert not fine.closed and len(pool) == 1  # a normal refusal: kept
    pool.clear()
    assert all(r.closed for r in made) and len(pool) == 0


def test_the_pool_is_safe_under_threads() -> None:
    pool = ReaderPool(3)
    busy: set[int] = set()
    errors: list[str] = []
    lock = threading.Lock()
    made: list[_Reader] = []

    def make() -> _Reader:
        with lock:
            made.append(_Reader(len(made)))
            return made[-1]

    def work() -> None:
        for _ in range(200):
            with pool.borrow("k", make) as r:
                with lock:
                    if r.n in busy:
                        errors.append(f"reader {r.n} lent twice")
                    busy.add(r.n)
                with lock:
                    busy.discard(r.n)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(pool) <= 3


def test_a_replaced_file_is_opened_afresh(tmp_path: Path, shared_data: Path) -> None:
    """The pool's key has the file's version: a tile after the stored file changed shows
    the new file, never the pixels of an old open dataset."""
    store = open_store(str(tmp_path / "store"))
    key = "c/i/B04.tif"
    store.put_file(key, shared_data / "raster" / B04)
    item = {"type": "Feature", "id": "i", "collection": "c", "properties": {},
            "assets": {"B04": {"href": "B04.tif", "type": "image/tiff; application=geotiff",
                               "roles": ["data"], "eoshare:key": key}}}  # fmt: skip
    from eoshare.settings import TilesSettings

    svc = TileService(store, TilesSettings(cache_bytes=0))
    plan = svc.plan(item, make_spec(assets=["B04"], rescale=["0,6000"]))
    tms = get_tms("WebMercatorQuad")
    with Reader(str(store.local_path(key))) as src:
        west, south, east, north = src.get_geographic_bounds(tms.geographic_crs)
    t = tms.tile((west + east) / 2, (south + north) / 2, 10)
    png = image_format("png")
    first = svc.tile(item, plan, tms, t.z, t.x, t.y, fmt=png).content
    again = svc.tile(item, plan, tms, t.z, t.x, t.y, fmt=png).content
    assert again == first and svc.readers.reused >= 1
    # the same key, other pixels (the NIR band of the same scene)
    other = tmp_path / "other.tif"
    shutil.copy(shared_data / "raster" / f"{S2}_B08.tif", other)
    store.put_file(key, other)
    changed = svc.tile(item, plan, tms, t.z, t.x, t.y, fmt=png).content
    assert changed != first
    fresh = TileService(store, TilesSettings(cache_bytes=0, open_datasets=0))
    assert changed == fresh.tile(item, plan, tms, t.z, t.x, t.y, fmt=png).content
