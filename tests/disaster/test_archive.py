"""The archive ranking on hand-made cases: each factor (coverage, cloud, resolution,
time from the event) decides when the others are equal, and post-event comes first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from eoshare.disaster.archive import rank

EVENT = datetime(2024, 10, 5, 6, 0, tzinfo=UTC)
AREA = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
FULL = [[[-0.5, -0.5], [1.5, -0.5], [1.5, 1.5], [-0.5, 1.5], [-0.5, -0.5]]]
HALF = [[[0, 0], [0.5, 0], [0.5, 1], [0, 1], [0, 0]]]
AWAY = [[[5, 5], [6, 5], [6, 6], [5, 6], [5, 5]]]


def item(iid: str, hours: float, coords: Any = FULL, **props: Any) -> dict[str, Any]:
    when = (EVENT + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": iid, "collection": "c",
        "geometry": {"type": "Polygon", "coordinates": coords},
        "properties": {"datetime": when, "gsd": 10, "eo:cloud_cover": 0, **props},
        "assets": {}, "links": [],
    }  # fmt: skip


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in rank(items, AREA, EVENT)]


def test_post_event_first_then_pre_event() -> None:
    assert ids([item("pre", -2), item("post", 30)]) == ["post", "pre"]


def test_coverage_of_the_area_decides() -> None:
    assert ids([item("half", 5, HALF), item("full", 5)]) == ["full", "half"]
    ranked = rank([item("half", 5, HALF)], AREA, EVENT)
    assert ranked[0]["properties"]["eoshare:coverage"] == 0.5


def test_scenes_off_the_area_are_left_out() -> None:
    assert ids([item("away", 1, AWAY), item("on", 1)]) == ["on"]


def test_cloud_over_the_area_beats_the_scene_figure() -> None:
    cloudy = item("cloudy", 5, **{"eo:cloud_cover": 80})
    clear_here = item("clear-here", 5, **{"eo:cloud_cover": 90, "eoshare:area_cloud_cover": 0})
    assert ids([cloudy, clear_here]) == ["clear-here", "cloudy"]


def test_radar_ignores_cloud_and_resolution_counts() -> None:
    sar = item("sar", 5, **{"eo:cloud_cover": None, "sar:polarizations": ["VV"], "gsd": 10})
    coarse = item("coarse", 5, gsd=300)
    optical_cloudy = item("cloudy", 5, **{"eo:cloud_cover": 60})
    assert ids([coarse, optical_cloudy, sar]) == ["sar", "cloudy", "coarse"]


def test_closer_to_the_event_wins_and_ranks_are_numbered() -> None:
    ranked = rank([item("late", 24 * 14), item("soon", 12), item("pre", -24)], AREA, EVENT)
    assert [i["id"] for i in ranked] == ["soon", "late", "pre"]
    assert [i["properties"]["eoshare:rank"] for i in ranked] == [1, 2, 3]
    assert ranked[2]["properties"]["eoshare:phase"] == "pre"
    assert ranked[0]["properties"]["eoshare:hours_from_event"] == 12.0
