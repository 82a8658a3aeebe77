"""Passes of member satellites over an area: SGP4 propagation (``sgp4``), the TEME frame
turned to Earth-fixed by the sidereal angle, closest approach to the area's centre found
on a coarse grid and refined to a fraction of a second.

For each pass: the time of closest approach, the off-nadir angle needed to look at the
centre, whether the instrument may point there (its field of regard), the swath as a
GeoJSON segment and the fraction of the area it covers, the sun's elevation at the target
(optical instruments need daylight) and whether the satellite is ascending or descending.
The sun comes from a short analytic series (good to ~0.01°): nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from sgp4.api import Satrec
from shapely.geometry import mapping, shape

from eoshare.disaster.orbits import Elements, Platform

JSON = dict[str, Any]
FloatArray = NDArray[np.float64]
_A = 6378.137  # WGS84, km
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_J2000 = datetime(2000, 1, 1, 12, tzinfo=UTC)
STEP_S = 20.0
SEGMENT_S = 45.0  # the swath segment drawn: closest approach ± this


def julian(t: datetime) -> tuple[float, float]:
    """(whole, fraction) Julian date of a UTC instant, for sgp4."""
    days = (t - _J2000).total_seconds() / 86400.0
    whole = math.floor(days) + 2451545.0
    return whole, days - math.floor(days)


def gmst(jd: FloatArray) -> FloatArray:
    """Greenwich mean sidereal angle (IAU 1982), radians; UT1 taken as UTC."""
    t = (jd - 2451545.0) / 36525.0
    seconds = 67310.54841 + (876600.0 * 3600 + 8640184.812866) * t + 0.093104 * t**2 - 6.2e-6 * t**3
    return np.asarray(np.radians((seconds % 86400.0) / 240.0), dtype=np.float64)


def teme_to_ecef(r: FloatArray, jd: FloatArray) -> FloatArray:
    theta = gmst(jd)
    c, s = np.cos(theta), np.sin(theta)
    x = c * r[:, 0] + s * r[:, 1]
    y = -s * r[:, 0] + c * r[:, 1]
    return np.stack([x, y, r[:, 2]], axis=1)


def geodetic_to_ecef(lon: float, lat: float, h: float = 0.0) -> FloatArray:
    lo, la = math.radians(lon), math.radians(lat)
    n = _A / math.sqrt(1 - _E2 * math.sin(la) ** 2)
    return np.array(
        [
            (n + h) * math.cos(la) * math.cos(lo),
            (n + h) * math.cos(la) * math.sin(lo),
            (n * (1 - _E2) + h) * math.sin(la),
        ]
    )


def ecef_to_lonlat(p: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Geodetic lon/lat (degrees) of Earth-fixed points (Bowring, one step)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    lon = np.degrees(np.arctan2(y, x))
    rho = np.hypot(x, y)
    b = _A * (1 - _F)
    ep2 = (_A**2 - b**2) / b**2
    th = np.arctan2(z * _A, rho * b)
    lat = np.arctan2(z + ep2 * b * np.sin(th) ** 3, rho - _E2 * _A * np.cos(th) ** 3)
    return lon, np.degrees(lat)


def sun_elevation(t: datetime, lon: float, lat: float) -> float:
    """The sun's elevation (degrees) at a place and time (low-precision series)."""
    jd = sum(julian(t))
    d = jd - 2451545.0
    g = math.radians((357.529 + 0.98560028 * d) % 360)
    q = (280.459 + 0.98564736 * d) % 360
    ecl_lon = math.radians(q + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
    eps = math.radians(23.439 - 0.00000036 * d)
    ra = math.atan2(math.cos(eps) * math.sin(ecl_lon), math.cos(ecl_lon))
    dec = math.asin(math.sin(eps) * math.sin(ecl_lon))
    theta = float(gmst(np.array([jd]))[0])
    ha = theta + math.radians(lon) - ra
    la = math.radians(lat)
    s = math.sin(la) * math.sin(dec) + math.cos(la) * math.cos(dec) * math.cos(ha)
    return math.degrees(math.asin(max(-1.0, min(1.0, s))))


def _destination(lon: float, lat: float, bearing: float, km: float) -> tuple[float, float]:
    """The point ``km`` from (lon, lat) along ``bearing`` (degrees), on a sphere."""
    r = 6371.0088
    la1, lo1, b = math.radians(lat), math.radians(lon), math.radians(bearing)
    d = km / r
    la2 = math.asin(math.sin(la1) * math.cos(d) + math.cos(la1) * math.sin(d) * math.cos(b))
    lo2 = lo1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(la1), math.cos(d) - math.sin(la1) * math.sin(la2)
    )
    return (math.degrees(lo2) + 540) % 360 - 180, math.degrees(la2)


def _bearing(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    la1, la2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(la2)
    x = math.cos(la1) * math.sin(la2) - math.sin(la1) * math.cos(la2) * math.cos(dl)
    return math.degrees(math.atan2(y, x))


@dataclass(frozen=True)
class Pass:
    norad: int
    name: str
    platform: str
    instrument: str
    time: datetime
    off_nadir_deg: float
    elevation_deg: float
    within_field_of_regard: bool
    coverage: float
    sun_elevation_deg: float
    daylight: bool
    orbit_state: str
    usable: bool
    swath: JSON

    def to_dict(self) -> JSON:
        return {
            "norad": self.norad,
            "satellite": self.name,
            "platform": self.platform,
            "instrument": self.instrument,
            "time": self.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
            "off_nadir_deg": round(self.off_nadir_deg, 2),
            "elevation_deg": round(self.elevation_deg, 2),
            "within_field_of_regard": self.within_field_of_regard,
            "coverage": round(self.coverage, 4),
            "sun_elevation_deg": round(self.sun_elevation_deg, 2),
            "daylight": self.daylight,
            "orbit_state": self.orbit_state,
            "usable": self.usable,
        }

    def feature(self) -> JSON:
        return {
            "type": "Feature",
            "id": f"{self.norad}-{self.time.strftime('%Y%m%dT%H%M%S')}",
            "geometry": self.swath,
            "properties": self.to_dict(),
        }

    def opportunity(self) -> JSON:
        """A STAPI opportunity (the STAC API tasking extension's shape)."""
        start = self.time - timedelta(seconds=SEGMENT_S)
        end = self.time + timedelta(seconds=SEGMENT_S)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return {
            "type": "Feature",
            "id": f"{self.norad}-{self.time.strftime('%Y%m%dT%H%M%S')}",
            "geometry": self.swath,
            "properties": {
                "datetime": f"{start.strftime(fmt)}/{end.strftime(fmt)}",
                "product_id": f"{self.platform}-{self.instrument}".lower().replace(" ", "-"),
                "platform": self.platform,
                "constellation": self.platform.rsplit("-", 1)[0],
                "instruments": [self.instrument],
                "view:off_nadir": round(self.off_nadir_deg, 2),
                "view:sun_elevation": round(self.sun_elevation_deg, 2),
                "sat:orbit_state": self.orbit_state,
                "eoshare:coverage": round(self.coverage, 4),
                "eoshare:usable": self.usable,
            },
        }


class _Geometry:
    """Off-nadir and elevation of a target seen from the satellite, over time."""

    def __init__(self, sat: Satrec, target: FloatArray) -> None:
        self.sat = sat
        self.target = target
        self.up = target / np.linalg.norm(target)

    def state(self, jd: FloatArray, fr: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Earth-fixed positions, TEME velocities (km/s) and error codes."""
        e, r, v = self.sat.sgp4_array(jd, fr)
        return teme_to_ecef(np.asarray(r), jd + fr), np.asarray(v), np.asarray(e)

    def angles(self, pos: FloatArray) -> tuple[FloatArray, FloatArray]:
        to_target = self.target - pos
        dist = np.linalg.norm(to_target, axis=1)
        nadir = -pos / np.linalg.norm(pos, axis=1)[:, None]
        cos_off = np.einsum("ij,ij->i", nadir, to_target) / dist
        off = np.degrees(np.arccos(np.clip(cos_off, -1, 1)))
        sin_el = np.einsum("ij,j->i", -to_target, self.up) / dist
        el = np.degrees(np.arcsin(np.clip(sin_el, -1, 1)))
        return off, el


def _jd_arrays(times: list[datetime]) -> tuple[FloatArray, FloatArray]:
    pairs = [julian(t) for t in times]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def find_passes(
    elements: Elements,
    platform: Platform,
    area: JSON,
    start: datetime,
    hours: float,
    *,
    max_off_nadir_deg: float | None = None,
) -> list[Pass]:
    """The passes of one satellite over ``area`` (a GeoJSON geometry) in the window:
    every closest approach whose off-nadir angle is under ``max_off_nadir_deg`` (by
    default what the instrument may reach, widened by the area's own size)."""
    geom = shape(area)
    centre = geom.centroid
    if max_off_nadir_deg is None:
        radius_km = max(
            _haversine(centre.x, centre.y, x, y) for x, y in shapely.get_coordinates(geom)
        )
        altitude = 700.0  # coarse: only to skip passes far out of reach before refining
        reach = max(
            platform.off_nadir_max_deg, math.degrees(math.atan(platform.swath_km / 2 / altitude))
        )
        max_off_nadir_deg = min(80.0, reach + math.degrees(math.atan(radius_km / altitude)) + 3.0)
    target = geodetic_to_ecef(centre.x, centre.y)
    g = _Geometry(elements.satrec(), target)
    n = int(hours * 3600 / STEP_S) + 1
    jd0, fr0 = julian(start)
    fr = np.asarray(fr0 + np.arange(n) * STEP_S / 86400.0, dtype=np.float64)
    jd = np.full(n, jd0)
    pos, _, err = g.state(jd, fr)
    off, el = g.angles(pos)
    off[err != 0] = 180.0
    out: list[Pass] = []
    mid = off[1:-1]
    minima = np.nonzero(
        (mid <= off[:-2]) & (mid < off[2:]) & (mid <= max_off_nadir_deg) & (el[1:-1] > 0)
    )[0]
    for i in (int(k) + 1 for k in minima):
        t_best = _refine(g, jd0, fr[i - 1], fr[i + 1])
        p = _describe(g, elements, platform, geom, centre.x, centre.y, t_best)
        if p is not None:
            out.append(p)
    return out


def _refine(g: _Geometry, jd0: float, lo: float, hi: float) -> float:
    """The instant of the smallest off-nadir angle between two day fractions: one
    vectorised propagation on a 0.25 s grid, then a parabola through the three samples
    around the minimum (sub-second; the angle is smooth there)."""
    fine = np.arange(lo, hi, 0.25 / 86400.0, dtype=np.float64)
    pos, _, _ = g.state(np.full(len(fine), jd0), fine)
    off = g.angles(pos)[0]
    k = int(np.argmin(off))
    if 0 < k < len(fine) - 1:
        y0, y1, y2 = float(off[k - 1]), float(off[k]), float(off[k + 1])
        denom = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / denom if denom > 0 else 0.0
        return jd0 + float(fine[k]) + max(-1.0, min(1.0, shift)) * 0.25 / 86400.0
    return jd0 + float(fine[k])


def _describe(
    g: _Geometry,
    elements: Elements,
    platform: Platform,
    geom: Any,
    lon: float,
    lat: float,
    jd_best: float,
) -> Pass | None:
    when = _J2000 + timedelta(days=jd_best - 2451545.0)
    whole = math.floor(jd_best - 0.5) + 0.5
    ts = [(jd_best - whole) + k * 10.0 / 86400.0 for k in range(-5, 6)]  # ± SEGMENT_S
    jd = np.full(len(ts), whole)
    fr = np.array(ts)
    pos, vel, err = g.state(jd, fr)
    if np.any(err != 0):
        return None
    off_all, el_all = g.angles(pos)
    off, el = float(off_all[5]), float(el_all[5])
    altitude = float(np.linalg.norm(pos[5])) - _A
    lons, lats = ecef_to_lonlat(pos)
    # half the swath as an angle from nadir (flat-Earth approximation at this altitude)
    half_swath_deg = math.degrees(math.atan(platform.swath_km / 2 / altitude))
    within = off <= max(platform.off_nadir_max_deg, half_swath_deg)
    # a pointable instrument centres its swath on the target; a fixed one looks at nadir
    nadir_lon, nadir_lat = float(lons[5]), float(lats[5])
    track = _bearing(float(lons[4]), float(lats[4]), float(lons[6]), float(lats[6]))
    to_target = _bearing(nadir_lon, nadir_lat, lon, lat)
    side = 1.0 if math.sin(math.radians(to_target - track)) >= 0 else -1.0
    cross_km = _cross_track_km(nadir_lon, nadir_lat, lon, lat, track)
    max_shift = altitude * math.tan(math.radians(platform.off_nadir_max_deg))
    shift = 0.0
    if off > half_swath_deg and platform.off_nadir_max_deg > half_swath_deg:
        shift = side * min(abs(cross_km), max_shift)
    left: list[tuple[float, float]] = []
    right: list[tuple[float, float]] = []
    for k in range(len(ts)):
        k0, k1 = max(k - 1, 0), min(k + 1, len(ts) - 1)
        heading = _bearing(float(lons[k0]), float(lats[k0]), float(lons[k1]), float(lats[k1]))
        for offset, side_list in ((shift - platform.swath_km / 2, left),
                                  (shift + platform.swath_km / 2, right)):  # fmt: skip
            bearing = heading + (90.0 if offset >= 0 else -90.0)
            side_list.append(_destination(float(lons[k]), float(lats[k]), bearing, abs(offset)))
    ring = [*left, *reversed(right), left[0]]
    swath = shapely.make_valid(shapely.Polygon(ring))
    coverage = 0.0
    if geom.area > 0:
        coverage = float(shapely.intersection(swath, geom).area / geom.area)
    sun = sun_elevation(when, lon, lat)
    daylight = sun > 0.0
    ascending = float(vel[5][2]) > 0
    usable = within and coverage > 0 and (daylight or not platform.optical)
    return Pass(
        norad=elements.norad,
        name=elements.name,
        platform=platform.platform,
        instrument=platform.instrument,
        time=when,
        off_nadir_deg=off,
        elevation_deg=el,
        within_field_of_regard=within,
        coverage=min(coverage, 1.0),
        sun_elevation_deg=sun,
        daylight=daylight,
        orbit_state="ascending" if ascending else "descending",
        usable=usable,
        swath=mapping(swath),
    )


def _cross_track_km(lon0: float, lat0: float, lon: float, lat: float, track: float) -> float:
    r = 6371.0088
    d13 = _haversine(lon0, lat0, lon, lat) / r
    b13 = math.radians(_bearing(lon0, lat0, lon, lat))
    return math.asin(math.sin(d13) * math.sin(b13 - math.radians(track))) * r


def _haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    la1, la2 = math.radians(lat1), math.radians(lat2)
    dla, dlo = la2 - la1, math.radians(lon2 - lon1)
    h = math.sin(dla / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin(dlo / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, h)))


def plan(
    satellites: list[tuple[Elements, Platform]],
    area: JSON,
    start: datetime,
    hours: float,
    *,
    usable_only: bool = False,
) -> list[Pass]:
    """Every member satellite's passes over ``area``, in time order."""
    out: list[Pass] = []
    for elements, platform in satellites:
        for p in find_passes(elements, platform, area, start, hours):
            if p.within_field_of_regard and (p.coverage > 0 or not usable_only):
                if usable_only and not p.usable:
                    continue
                out.append(p)
    return sorted(out, key=lambda p: p.time)
