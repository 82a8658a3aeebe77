"""Passes from real element sets (CelesTrak, 2024-10-05) against an independent
computation by skyfield from the same elements: every pass we report with the target
well above the horizon has a skyfield culmination within 10 s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from skyfield.api import EarthSatellite, load, wgs84

from eoshare.disaster.orbits import load_platforms, parse_elements
from eoshare.disaster.passes import find_passes, plan, sun_elevation

START = datetime(2024, 10, 5, 0, 0, tzinfo=UTC)
# a 0.4° box in the Western Sahara (the Sentinel-2 tile 29RKH)
LON, LAT = -11.4, 24.8
AREA = {
    "type": "Polygon",
    "coordinates": [[[-11.6, 24.6], [-11.2, 24.6], [-11.2, 25.0], [-11.6, 25.0], [-11.6, 24.6]]],
}


@pytest.fixture(scope="module")
def elements(shared_data: Path) -> dict[int, object]:
    tle = shared_data / "tle" / "celestrak_resource_2024-10-05.tle"
    return {e.norad: e for e in parse_elements(tle.read_bytes(), tle.name)}


@pytest.mark.parametrize("norad", [39084, 40697, 42063, 49260])  # Landsat 8/9, Sentinel-2A/B
def test_pass_times_match_skyfield_within_10_s(elements: dict[int, object], norad: int) -> None:
    e = elements[norad]
    platform = load_platforms()[norad]
    ours = find_passes(e, platform, AREA, START, 72, max_off_nadir_deg=60.0)  # type: ignore[arg-type]
    ts = load.timescale(builtin=True)
    sat = EarthSatellite(e.line1, e.line2, e.name, ts)  # type: ignore[attr-defined]
    times, kinds = sat.find_events(
        wgs84.latlon(LAT, LON),
        ts.from_datetime(START),
        ts.from_datetime(START + timedelta(hours=72)),
        altitude_degrees=0.0,
    )
    culminations = [t.utc_datetime() for t, k in zip(times, kinds, strict=True) if k == 1]
    high = [p for p in ours if p.elevation_deg >= 20]
    assert len(high) >= 2, [p.to_dict() for p in ours]
    for p in high:
        nearest = min(culminations, key=lambda c: abs((c - p.time).total_seconds()))
        assert abs((nearest - p.time).total_seconds()) <= 10.0, (p.to_dict(), nearest)


def test_the_plan_says_what_an_operator_needs(elements: dict[int, object]) -> None:
    platforms = load_platforms()
    sats = [(elements[n], p) for n, p in platforms.items() if n in elements]
    assert len(sats) >= 20
    passes = plan(sats, AREA, START, 72)  # type: ignore[arg-type]
    assert passes == sorted(passes, key=lambda p: p.time)
    assert {p.orbit_state for p in passes} == {"ascending", "descending"}
    assert all(p.within_field_of_regard for p in passes)
    # a small area under a wide swath is covered whole; optical passes at night unusable
    assert any(p.coverage == 1.0 for p in passes)
    for p in passes:
        if p.platform.startswith("sentinel-2") and not p.daylight:
            assert not p.usable
    s2 = [p for p in passes if p.platform == "sentinel-2a"]
    assert s2 and all(p.orbit_state == "descending" for p in s2 if p.daylight)
    feature = passes[0].feature()
    assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_sun_elevation_against_skyfield_free_reference() -> None:
    # solar noon at the equator on an equinox: the sun is near the zenith
    noon = datetime(2024, 3, 20, 12, 7, tzinfo=UTC)
    assert sun_elevation(noon, 0.0, 0.0) > 88.0
    assert sun_elevation(noon, 180.0, 0.0) < -88.0
