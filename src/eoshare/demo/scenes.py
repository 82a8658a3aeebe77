"""Synthetic but plausible satellite scenes for the demo node.

Nothing here is real data. Each demo *site* (a city and its surroundings) is a small
procedural world: terrain, lakes, a river or a coast, a city, farmland, desert. The
world is a function of ground position (metres east/north of the site's centre), so a
10 m optical tile, a 30 m optical scene, a 20 m radar scene and a 300 m wide-swath
scene of the same site all show the same river in the same place, and repeated dates
form a time series (seasonal greenness, a monsoon flood, different clouds).

``build.py`` calls :func:`render` for each :class:`SceneSpec` of its plan and
:func:`write_scene` to turn the result into GeoTIFFs that go through the ordinary
ingest path. The tests call :func:`render` again to learn where the vegetation, the
water and the clouds are, and check the ingested pixels against it.

Everything is deterministic: the same spec gives the same bytes on every machine
(seeded hashing, no global random state).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import rasterio
from rasterio.features import rasterize
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform
from shapely.affinity import rotate
from shapely.geometry import Polygon, box
from shapely.geometry.polygon import orient

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]

EARTH_RADIUS_M = 6_371_008.8

OPTICAL_BANDS = ("blue", "green", "red", "nir")
SAR_BANDS = ("vv", "vh")

# Surface reflectance x 10 000 (the Sentinel-2 L2A / Landsat C2 convention: DN * 1e-4),
# per land-cover class, in OPTICAL_BANDS order. Values follow typical library spectra:
# water absorbs NIR (NDVI < 0), green leaves reflect it strongly (NDVI ~0.8), sand is
# bright and flat (NDVI ~0.07).
_SPECTRA: dict[str, tuple[float, float, float, float]] = {
    "water": (520.0, 480.0, 270.0, 140.0),
    "forest": (300.0, 620.0, 330.0, 3400.0),
    "crop": (420.0, 820.0, 480.0, 3100.0),
    "soil": (900.0, 1200.0, 1500.0, 2000.0),
    "dry_grass": (700.0, 1000.0, 1350.0, 2200.0),
    "desert": (1900.0, 2650.0, 3350.0, 3800.0),
    "urban": (1150.0, 1230.0, 1320.0, 1650.0),
}
_CLOUD = (7600.0, 7400.0, 7300.0, 7450.0)

# Radar backscatter (sigma0, dB) per class as (VV, VH): calm water is a mirror (dark),
# vegetation a volume scatterer (VH relatively high), buildings double-bounce (bright).
_SIGMA0_DB: dict[str, tuple[float, float]] = {
    "water": (-22.5, -29.0),
    "forest": (-7.0, -12.5),
    "crop": (-9.5, -16.0),
    "soil": (-12.0, -20.0),
    "dry_grass": (-11.0, -18.5),
    "desert": (-15.0, -24.0),
    "urban": (2.0, -6.0),
}
# equivalent number of looks of a Sentinel-1 IW GRD product: sets the speckle strength
_ENL = 4.4

# nodata for every generated file: 0 is never a valid reflectance DN, visual byte or
# linear backscatter here (valid values are clipped to >= 1 / > 0)
NODATA = 0


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Site:
    """A demo location: a real city's position, an invented landscape around it."""

    id: str
    name: str
    country: str
    # ISO 3166-1 alpha-3
    country_code: str
    lon: float
    lat: float
    seed: int
    # 0 = humid delta, 1 = hyper-arid desert
    aridity: float
    # lakes where the terrain noise is below this (about -1..1); lower = fewer lakes
    lake_level: float = -0.55
    # a river through the site: (flow direction in degrees from east, width m, offset m)
    river: tuple[float, float, float] | None = None
    # a sea: (direction of the sea from the centre in degrees from east, distance m)
    sea: tuple[float, float] | None = None
    city_radius_m: float = 4000.0
    # day of year of the greenness peak and how much greenness drops off-season (0..1)
    green_peak_doy: int = 240
    green_amplitude: float = 0.3
    # day of year of the flood peak and how far the lakes rise then (terrain units)
    flood_peak_doy: int | None = None
    flood_rise: float = 0.0
    # (east, north) metres from the city centre to the centre of the 10 m tile, so that
    # the small tile shows the city edge and farmland rather than only roofs
    tile_offset_m: tuple[float, float] = (3000.0, -2000.0)


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform (pixel corner convention) and shape."""

    crs: str
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)


def utm_epsg(lon: float, lat: float) -> int:
    """The EPSG code of the WGS 84 / UTM zone that contains a point."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def utm_grid(site: Site, gsd: float, size: int, offset_m: tuple[float, float] = (0, 0)) -> Grid:
    """A square UTM grid of ``size`` pixels of ``gsd`` metres centred near the site,
    snapped to whole pixels like a fixed tiling grid (MGRS, WRS), so that every date of
    one sensor over one site shares exactly the same pixels."""
    epsg = utm_epsg(site.lon, site.lat)
    xs, ys = warp_transform("EPSG:4326", f"EPSG:{epsg}", [site.lon], [site.lat])
    half = gsd * size / 2.0
    x0 = round((xs[0] + offset_m[0] - half) / gsd) * gsd
    y1 = round((ys[0] + offset_m[1] + half) / gsd) * gsd
    return Grid(f"EPSG:{epsg}", Affine(gsd, 0.0, x0, 0.0, -gsd, y1), size, size)


def geographic_grid(site: Site, pixel_deg: float, size: int) -> Grid:
    """A square EPSG:4326 grid centred on the site (wide-swath products are often
    delivered on a plain latitude/longitude grid)."""
    half = pixel_deg * size / 2.0
    x0 = round((site.lon - half) / pixel_deg) * pixel_deg
    y1 = round((site.lat + half) / pixel_deg) * pixel_deg
    return Grid("EPSG:4326", Affine(pixel_deg, 0.0, x0, 0.0, -pixel_deg, y1), size, size)


def _local_metres(site: Site, lon: F64, lat: F64) -> tuple[F64, F64]:
    """Metres east/north of the site centre (equirectangular: exact enough within a few
    hundred km, and the same formula for every grid, which is what keeps sensors aligned)."""
    k = math.pi / 180.0 * EARTH_RADIUS_M
    return (lon - site.lon) * k * math.cos(math.radians(site.lat)), (lat - site.lat) * k


def ground_coordinates(site: Site, grid: Grid) -> tuple[F64, F64]:
    """Local metres (east, north) of every pixel centre of a grid."""
    cols = np.arange(grid.width, dtype=np.float64) + 0.5
    rows = np.arange(grid.height, dtype=np.float64) + 0.5
    t = grid.transform
    if grid.crs == "EPSG:4326":
        lon = t.c + t.a * cols
        lat = t.f + t.e * rows
        x, y = _local_metres(site, lon[np.newaxis, :], lat[:, np.newaxis])
        return np.broadcast_to(x, (grid.height, grid.width)), np.broadcast_to(
            y, (grid.height, grid.width)
        )
    # Projecting every pixel through PROJ is slow; over one scene the map from UTM to
    # local metres is affine to well under a pixel, so fit it on a 5 x 5 sample.
    s = np.linspace(0.0, 1.0, 5)
    left, bottom, right, top = grid.bounds
    ex, ny = np.meshgrid(left + s * (right - left), bottom + s * (top - bottom))
    lons, lats = warp_transform(grid.crs, "EPSG:4326", ex.ravel().tolist(), ny.ravel().tolist())
    lx, ly = _local_metres(site, np.asarray(lons), np.asarray(lats))
    design = np.column_stack([ex.ravel(), ny.ravel(), np.ones(ex.size)])
    cx, *_ = np.linalg.lstsq(design, lx, rcond=None)
    cy, *_ = np.linalg.lstsq(design, ly, rcond=None)
    e = (t.c + t.a * cols)[np.newaxis, :]
    n = (t.f + t.e * rows)[:, np.newaxis]
    return cx[0] * e + cx[1] * n + cx[2], cy[0] * e + cy[1] * n + cy[2]


# --------------------------------------------------------------------------- noise


_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M3 = np.uint64(0x165667B19E3779F9)
_S33 = np.uint64(33)
_S29 = np.uint64(29)
_S32 = np.uint64(32)
_S11 = np.uint64(11)


def _hash01(ix: npt.NDArray[np.int64], iy: npt.NDArray[np.int64], seed: int) -> F64:
    """A uniform [0, 1) value per integer lattice point: a position hash, so the value
    at a point never depends on the grid it is sampled on."""
    # mix the seed in Python integers: numpy warns on (intended) scalar wrap-around
    salt = np.uint64((seed * 0x165667B19E3779F9) % 2**64)
    h = ix.view(np.uint64) * _M1
    h ^= iy.view(np.uint64) * _M2 + salt
    h ^= h >> _S33
    h *= _M2
    h ^= h >> _S29
    h *= _M3
    h ^= h >> _S32
    return (h >> _S11).astype(np.float64) * (1.0 / 2**53)


def value_noise(x: F32 | F64, y: F32 | F64, cell: float, seed: int) -> F32:
    """Smoothly interpolated lattice noise in [-1, 1] with features about ``cell`` m."""
    # float32 halves the memory traffic, and its ~1e-7 relative error is a few mm here
    inv = np.float32(1.0 / cell)
    gx = x.astype(np.float32, copy=False) * inv
    gy = y.astype(np.float32, copy=False) * inv
    fx0 = np.floor(gx)
    fy0 = np.floor(gy)
    tx = gx - fx0
    ty = gy - fy0
    tx = tx * tx * (3.0 - 2.0 * tx)
    ty = ty * ty * (3.0 - 2.0 * ty)
    ix = fx0.astype(np.int64)
    iy = fy0.astype(np.int64)
    # hash each lattice point once into a small table, then gather the four corners of
    # every pixel from it: far cheaper than hashing four corners per pixel
    x0 = int(ix.min())
    y0 = int(iy.min())
    nx = int(ix.max()) - x0 + 2
    ny = int(iy.max()) - y0 + 2
    lx, ly = np.meshgrid(
        np.arange(x0, x0 + nx, dtype=np.int64), np.arange(y0, y0 + ny, dtype=np.int64)
    )
    table = (_hash01(lx, ly, seed) * 2.0 - 1.0).astype(np.float32).ravel()
    idx = (iy - y0) * nx + (ix - x0)
    a = np.take(table, idx)
    b = np.take(table, idx + 1)
    c = np.take(table, idx + nx)
    d = np.take(table, idx + nx + 1)
    top = a + (b - a) * tx
    bottom = c + (d - c) * tx
    out: F32 = top + (bottom - top) * ty
    return out


def fractal_noise(
    x: F32 | F64, y: F32 | F64, *, cell: float, octaves: int, seed: int, min_cell: float = 0.0
) -> F32:
    """Fractional Brownian motion: octaves of value noise, each half the size and half
    the weight of the last, normalised to roughly [-1, 1]. Octaves finer than
    ``min_cell`` (a couple of pixels) are skipped: they would only alias, and they
    are what the render time goes on."""
    x32 = x.astype(np.float32, copy=False)
    y32 = y.astype(np.float32, copy=False)
    total = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.float32)
    weight = 1.0
    norm = 0.0
    for octave in range(octaves):
        size = cell / 2**octave
        if octave > 0 and size < min_cell:
            break
        total += np.float32(weight) * value_noise(x32, y32, size, seed * 131 + octave)
        norm += weight
        weight *= 0.5
    total *= np.float32(1.6 / norm)
    return total


# --------------------------------------------------------------------------- land cover


@dataclass
class LandCover:
    """Fractional cover of each class per pixel (they sum to 1), for one grid and date."""

    grid: Grid
    fractions: dict[str, F32]
    # terrain relief in about [-1, 1]; modulates brightness and radar slopes
    relief: F32
    # fine texture (~1 pixel) in about [-1, 1]: fields, roofs, dunes
    texture: F32

    def dominant(self, cls: str, threshold: float = 0.8) -> Bool:
        """Pixels where one class covers at least ``threshold`` of the ground."""
        return self.fractions[cls] >= threshold


def _greenness(site: Site, when: date) -> float:
    doy = when.timetuple().tm_yday
    phase = math.cos(2.0 * math.pi * (doy - site.green_peak_doy) / 365.25)
    return 1.0 - site.green_amplitude * 0.5 * (1.0 - phase)


def _flood(site: Site, when: date) -> float:
    if site.flood_peak_doy is None:
        return 0.0
    doy = when.timetuple().tm_yday
    d = abs(doy - site.flood_peak_doy)
    d = min(d, 365 - d)
    return site.flood_rise * math.exp(-((d / 35.0) ** 2))


@dataclass(frozen=True)
class _Terrain:
    """The date-independent fields of one site on one grid (see ``_terrain``)."""

    relief: F32
    moisture: F32
    texture: F32
    # distance to the river's centre line (m), or None when the site has no river
    river_dist: F32 | None
    sea: Bool
    urban: F32
    parcel: F32


@functools.lru_cache(maxsize=4)
def _terrain(site: Site, grid: Grid) -> _Terrain:
    """Everything about a site that does not change with the date. Cached because one
    sensor sees one site on the same grid on every date of a time series, and these
    noise fields are most of the render time."""
    x, y = ground_coordinates(site, grid)
    gsd_m = _gsd_metres(grid)
    s = site.seed
    two_px = 2.0 * gsd_m
    relief = fractal_noise(x, y, cell=12_000.0, octaves=8, seed=s, min_cell=two_px)
    # cities grow on the higher, drier ground: keep the centre out of the lakes
    r = np.hypot(x, y)
    relief += (0.6 * np.exp(-((r / (2.5 * site.city_radius_m)) ** 2))).astype(np.float32)
    moisture = fractal_noise(x, y, cell=9_000.0, octaves=5, seed=s + 1, min_cell=two_px)
    texture = value_noise(x, y, max(two_px, 25.0), s + 2)

    river_dist: F32 | None = None
    if site.river is not None:
        angle, _width, offset = site.river
        a = math.radians(angle)
        along = x * math.cos(a) + y * math.sin(a)
        across = -x * math.sin(a) + y * math.cos(a) - offset
        meander = 900.0 * np.sin(along / 2300.0) + 600.0 * value_noise(
            along, np.zeros_like(along), 5000.0, s + 3
        )
        river_dist = np.abs(across - meander).astype(np.float32)
    sea = np.zeros(x.shape, dtype=bool)
    if site.sea is not None:
        bearing, distance = site.sea
        b = math.radians(bearing)
        seaward = x * math.cos(b) + y * math.sin(b)
        alongshore = -x * math.sin(b) + y * math.cos(b)
        coast = distance + 1500.0 * fractal_noise(
            alongshore, np.zeros_like(alongshore), cell=8000.0, octaves=4, seed=s + 4
        )
        sea = seaward > coast

    # the city: a lobed blob round the centre plus a few satellite towns
    lobes = 0.55 + 0.45 * fractal_noise(x, y, cell=3000.0, octaves=4, seed=s + 5, min_cell=two_px)
    score = np.exp(-((r / site.city_radius_m) ** 2)) * lobes
    towns = value_noise(x, y, 7000.0, s + 6)
    score = np.maximum(score, (towns - 0.82) * 2.5)
    urban = np.clip((score - 0.3) * 6.0, 0.0, 1.0).astype(np.float32)
    # farmland: ~170 x 240 m parcels, each with its own crop stage (a position hash)
    parcel = _hash01(
        np.floor(x / 240.0).astype(np.int64), np.floor(y / 170.0).astype(np.int64), s + 7
    ).astype(np.float32)
    terrain = _Terrain(relief, moisture, texture, river_dist, sea, urban, parcel)
    for arr in (relief, moisture, texture, river_dist, sea, urban, parcel):
        if arr is not None:
            # shared between renders through the cache: nobody may write into them
            arr.setflags(write=False)
    return terrain


def land_cover(site: Site, grid: Grid, when: date) -> LandCover:
    """The ground truth of one site on one grid and date. ``render`` draws pixels from
    it; tests use it to know which pixels are water or vegetation."""
    t = _terrain(site, grid)
    flood = _flood(site, when)

    # water: lakes in terrain hollows (higher in the flood season), a river, a sea
    water = (t.relief < site.lake_level + flood) | t.sea
    near_water = np.zeros_like(t.relief)
    if site.river is not None and t.river_dist is not None:
        water |= t.river_dist < site.river[1] / 2.0 * (1.0 + flood)
        # a floodplain: wet soil and green fields for ~10 km on each side (the Nile effect)
        near_water = np.exp(t.river_dist / np.float32(-6000.0))

    # vegetation: wetter ground and floodplains are green, arid sites are not
    wet = 0.5 * t.moisture + 0.9 * near_water + 0.6 * (0.5 - site.aridity) - 0.25 * t.relief
    veg = np.clip((wet + 0.05) * 2.5, 0.0, 1.0) * np.float32(_greenness(site, when))
    cropland = veg * (t.parcel > 0.35)
    forest = veg - cropland
    crop_green = cropland * np.sqrt(np.clip((t.parcel - 0.35) * 2.2, 0.0, 1.0))
    crop_bare = cropland - crop_green
    bare = 1.0 - veg
    desert_share = np.clip((site.aridity - 0.35) * 2.2 + 0.3 * t.relief, 0.0, 1.0)

    land = (~water).astype(np.float32)
    rural = land * (1.0 - t.urban)
    fractions = {
        "water": water.astype(np.float32),
        "urban": land * t.urban,
        "forest": rural * forest,
        "crop": rural * crop_green,
        "soil": rural * (crop_bare + bare * (1.0 - desert_share) * 0.4),
        "dry_grass": rural * bare * (1.0 - desert_share) * 0.6,
        "desert": rural * bare * desert_share,
    }
    return LandCover(
        grid=grid,
        fractions={k: v.astype(np.float32, copy=False) for k, v in fractions.items()},
        relief=t.relief,
        texture=t.texture,
    )


def _gsd_metres(grid: Grid) -> float:
    pixel = abs(float(grid.transform.a))
    if grid.crs == "EPSG:4326":
        return pixel * math.pi / 180.0 * EARTH_RADIUS_M
    return pixel


# --------------------------------------------------------------------------- scenes


Footprint = Literal["full", "rotated", "swath_edge"]


@dataclass(frozen=True)
class Sensor:
    """What a demo instrument delivers: pixel kind, resolution, grid and size."""

    kind: Literal["optical", "sar"]
    # metres for UTM grids; the nominal ground resolution for geographic grids
    gsd: float
    size: int
    geographic: bool = False
    # radiometric noise, as a fraction of the signal
    noise: float = 0.015


@dataclass(frozen=True)
class SceneSpec:
    """One acquisition to synthesise. ``build.py`` makes the plan; tests re-render."""

    site: Site
    sensor: Sensor
    when: date
    # fraction (0..1) of valid pixels that end up under opaque cloud; 0 = clear sky
    cloud_target: float = 0.0
    footprint: Footprint = "full"
    seed: int = 0

    def grid(self) -> Grid:
        if self.sensor.geographic:
            pixel_deg = self.sensor.gsd / (math.pi / 180.0 * EARTH_RADIUS_M)
            # round to a tidy number of micro-degrees so the grid is easy to read
            return geographic_grid(self.site, round(pixel_deg, 6), self.sensor.size)
        offset = self.site.tile_offset_m if self.sensor.gsd <= 10.0 else (0.0, 0.0)
        return utm_grid(self.site, self.sensor.gsd, self.sensor.size, offset)


@dataclass
class RenderedScene:
    """Pixels and the truth behind them. ``bands`` maps band name to an array of the
    file's dtype (uint16 DN for optical, float32 linear sigma0 for radar)."""

    spec: SceneSpec
    grid: Grid
    bands: dict[str, npt.NDArray[np.uint16] | F32]
    # True inside the acquisition footprint
    valid: Bool
    # True where a pixel is under opaque cloud (always False for radar and clear scenes)
    cloud: Bool
    cover: LandCover
    # the 3-band true-colour rendering (uint8), optical only
    visual: npt.NDArray[np.uint8] | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def cloud_cover(self) -> float:
        """Percentage of valid pixels under cloud, as ``eo:cloud_cover`` reports it."""
        n = int(self.valid.sum())
        return 0.0 if n == 0 else round(100.0 * int((self.cloud & self.valid).sum()) / n, 2)

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean())


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]))


def footprint_pixels(spec: SceneSpec) -> Polygon:
    """The part of the grid the instrument saw, as a polygon in pixel coordinates
    (column, row). Real scenes rarely fill their tile: a path/row scene is a tilted
    rectangle with nodata corners; a tile at the edge of a swath is cut by a slanted
    line. ``build.py`` turns it into the item geometry; ``render`` into the nodata mask.
    """
    g = spec.grid()
    w, h = float(g.width), float(g.height)
    tile = box(0.0, 0.0, w, h)
    if spec.footprint == "full":
        return tile
    # its own random stream, so the footprint does not shift when pixels change
    rng = _rng(spec.site.seed, spec.seed, spec.when.toordinal(), 7)
    # a sun-synchronous descending pass runs ~10-14 degrees off north-south
    tilt = rng.uniform(9.0, 14.0)
    if spec.footprint == "swath_edge":
        # the swath's edge crosses the tile; keep 55-85 % of it
        keep = rng.uniform(0.55, 0.85)
        half_plane = box(-10.0 * w, -10.0 * h, w * keep, 11.0 * h)
        cut = rotate(half_plane, tilt, origin=(w * keep, h / 2.0))
        clipped = cut.intersection(tile)
        assert isinstance(clipped, Polygon)
        return clipped
    cx = w / 2.0 + rng.uniform(-0.04, 0.04) * w
    cy = h / 2.0 + rng.uniform(-0.04, 0.04) * h
    scene = box(cx - 0.42 * w, cy - 0.44 * h, cx + 0.42 * w, cy + 0.44 * h)
    rotated = rotate(scene, tilt, origin=(cx, cy))
    assert isinstance(rotated, Polygon)
    return rotated


def footprint_lonlat(spec: SceneSpec) -> Polygon:
    """The footprint as a counter-clockwise lon/lat polygon (an item's geometry)."""
    g = spec.grid()
    pixel_poly = footprint_pixels(spec)
    cols, rows = (np.asarray(v) for v in pixel_poly.exterior.coords.xy)
    t = g.transform
    xs = t.c + t.a * cols + t.b * rows
    ys = t.f + t.d * cols + t.e * rows
    if g.crs == "EPSG:4326":
        lons, lats = xs.tolist(), ys.tolist()
    else:
        lons, lats = warp_transform(g.crs, "EPSG:4326", xs.tolist(), ys.tolist())
    ring = [(round(x, 7), round(y, 7)) for x, y in zip(lons, lats, strict=True)]
    return orient(Polygon(ring), 1.0)


def _footprint_mask(spec: SceneSpec, grid: Grid) -> Bool:
    """Pixels whose centre lies inside the footprint (GDAL's rasterize rule)."""
    poly = footprint_pixels(spec)
    burnt = rasterize(
        [(poly, 1)], out_shape=(grid.height, grid.width), transform=Affine.identity(), fill=0,
        dtype="uint8",
    )  # fmt: skip
    mask: Bool = burnt.astype(bool)
    return mask


def _clouds(
    spec: SceneSpec, x: F64, y: F64, valid: Bool, rng: np.random.Generator
) -> tuple[F64, Bool, F64]:
    """Cloud opacity (0..1), the opaque-cloud mask and a shadow weight. The threshold is
    the quantile of a cumulus-like noise field over the valid pixels, so the opaque
    fraction is the spec's target (to within a pixel or two), not an estimate."""
    h, w = x.shape
    zeros = np.zeros((h, w), dtype=np.float64)
    if spec.cloud_target <= 0.0:
        return zeros, np.zeros((h, w), dtype=bool), zeros
    gsd = _gsd_metres(spec.grid())
    cell = max(2500.0, gsd * spec.sensor.size / 3.0)
    seed = spec.seed + 1009 * spec.site.seed
    field_ = fractal_noise(x, y, cell=cell, octaves=7, seed=seed, min_cell=2.0 * gsd)
    target = min(max(spec.cloud_target, 0.0), 1.0)
    threshold = float(np.quantile(field_[valid], 1.0 - target)) if valid.any() else 1.0
    # soft edges over ~0.08 noise units: thin haze round each cloud is not counted
    alpha = np.clip((field_ - threshold) / 0.08 + 0.5, 0.0, 1.0)
    opaque = alpha >= 0.5
    # the shadow falls away from the sun, a few hundred metres to a few km off
    dx = int(rng.integers(-1, 2) * max(3, 600 / gsd)) or 4
    dy = int(max(3, 900 / gsd))
    shifted = np.roll(np.roll(alpha, dy, axis=0), dx, axis=1)
    shadow = shifted * (1.0 - alpha)
    return alpha, opaque, shadow


def render(spec: SceneSpec) -> RenderedScene:
    """Synthesise one acquisition: pixels, footprint, clouds and the land cover truth."""
    grid = spec.grid()
    rng = _rng(spec.site.seed, spec.seed, spec.when.toordinal())
    cover = land_cover(spec.site, grid, spec.when)
    valid = _footprint_mask(spec, grid)
    if spec.sensor.kind == "sar":
        return _render_sar(spec, grid, cover, valid, rng)
    return _render_optical(spec, grid, cover, valid, rng)


def _render_optical(
    spec: SceneSpec, grid: Grid, cover: LandCover, valid: Bool, rng: np.random.Generator
) -> RenderedScene:
    h, w = grid.height, grid.width
    x, y = ground_coordinates(spec.site, grid)
    alpha, opaque, shadow = _clouds(spec, x, y, valid, rng)
    # brightness varies with relief (slopes facing the sun) and with texture (roofs,
    # furrows); urban texture is stronger than that of fields
    brightness = 1.0 + 0.06 * cover.relief + 0.08 * cover.texture
    urban_tex = 1.0 + 0.25 * cover.texture * cover.fractions["urban"]
    cloud_tex = 0.88 + 0.12 * value_noise(x, y, 700.0, spec.seed + 17)
    bands: dict[str, npt.NDArray[np.uint16] | F32] = {}
    for i, name in enumerate(OPTICAL_BANDS):
        surface = np.zeros((h, w), dtype=np.float32)
        for cls, frac in cover.fractions.items():
            surface += frac * np.float32(_SPECTRA[cls][i])
        surface *= (brightness * urban_tex).astype(np.float32)
        # a little atmospheric path radiance, strongest in the blue
        surface += (120.0, 60.0, 20.0, 0.0)[i]
        surface *= (1.0 - 0.55 * shadow).astype(np.float32)
        value = (1.0 - alpha) * surface + alpha * _CLOUD[i] * cloud_tex
        value *= 1.0 + spec.sensor.noise * rng.standard_normal((h, w), dtype=np.float32)
        dn = np.clip(np.rint(value), 1, 10_000)
        dn[~valid] = NODATA
        bands[name] = dn.astype(np.uint16)
    return RenderedScene(
        spec=spec,
        grid=grid,
        bands=bands,
        valid=valid,
        cloud=opaque & valid,
        cover=cover,
        visual=true_colour(bands, valid),
    )


def _render_sar(
    spec: SceneSpec, grid: Grid, cover: LandCover, valid: Bool, rng: np.random.Generator
) -> RenderedScene:
    h, w = grid.height, grid.width
    bands: dict[str, npt.NDArray[np.uint16] | F32] = {}
    # slopes facing the radar are brighter, those facing away darker (foreshortening)
    slope_db = 2.5 * cover.relief
    for i, name in enumerate(SAR_BANDS):
        linear = np.zeros((h, w), dtype=np.float32)
        for cls, frac in cover.fractions.items():
            db = _SIGMA0_DB[cls][i] + (0.0 if cls == "water" else slope_db)
            linear += frac * np.power(10.0, db / 10.0).astype(np.float32)
        # wind roughens open water a little; roofs add strong point scatterers
        linear *= (1.0 + 0.3 * cover.texture * cover.fractions["urban"]).astype(np.float32)
        # multiplicative speckle: gamma-distributed intensity with mean 1
        speckle = rng.gamma(_ENL, 1.0 / _ENL, size=(h, w)).astype(np.float32)
        value = np.maximum(linear * speckle, 1e-5).astype(np.float32)
        value[~valid] = NODATA
        bands[name] = value
    return RenderedScene(
        spec=spec, grid=grid, bands=bands, valid=valid, cloud=np.zeros((h, w), bool), cover=cover
    )


def true_colour(
    bands: dict[str, npt.NDArray[np.uint16] | F32], valid: Bool
) -> npt.NDArray[np.uint8]:
    """A (3, h, w) uint8 red/green/blue rendering like a TCI/"visual" product: a gamma
    stretch that keeps vegetation green and sand bright; 0 only outside the footprint."""
    out = np.zeros((3, *valid.shape), dtype=np.uint8)
    for i, name in enumerate(("red", "green", "blue")):
        refl = bands[name].astype(np.float32) / 4000.0
        v = np.clip(np.power(np.clip(refl, 0.0, 1.0), 1.0 / 1.8) * 255.0, 1.0, 255.0)
        out[i] = np.where(valid, np.rint(v), NODATA).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- files


def write_scene(scene: RenderedScene, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write one rendered scene as single-band GeoTIFFs (one per band, like Sentinel-2
    and Landsat deliveries) plus, for optical scenes, a 3-band ``visual`` file. Returns
    {asset key: path}. The files are plain tiled GeoTIFFs; ingest makes the COGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, data in scene.bands.items():
        path = out_dir / f"{stem}_{name}.tif"
        is_sar = scene.spec.sensor.kind == "sar"
        _write(
            path,
            scene.grid,
            data[np.newaxis, ...],
            descriptions=(name,),
            # reflectance DNs carry their scale so readers can get physical values
            scales=None if is_sar else (1e-4,),
            tags={
                "EOSHARE_SYNTHETIC": "true",
                "UNITS": "linear sigma0" if is_sar else "reflectance*10000",
            },
        )
        written[name] = path
    if scene.visual is not None:
        path = out_dir / f"{stem}_visual.tif"
        _write(
            path,
            scene.grid,
            scene.visual,
            descriptions=("red", "green", "blue"),
            scales=None,
            tags={"EOSHARE_SYNTHETIC": "true"},
            photometric="RGB",
        )
        written["visual"] = path
    return written


def _write(
    path: Path,
    grid: Grid,
    data: npt.NDArray[np.uint16] | npt.NDArray[np.uint8] | F32,
    *,
    descriptions: tuple[str, ...],
    scales: tuple[float, ...] | None,
    tags: dict[str, str],
    photometric: str | None = None,
) -> None:
    count, h, w = data.shape
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": data.dtype.name,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        # fast to write; ingest recompresses into the COG anyway
        "compress": "none",
    }
    if photometric:
        profile["photometric"] = photometric
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions, start=1):
            dst.set_band_description(i, d)
        if scales:
            dst.scales = scales
        dst.update_tags(**tags)
