"""Bad input to the disaster services: areas, element sets, webhooks; the orbits and
activations command lines; a webhook that keeps failing ends in the dead letters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eoshare.cli import app
from eoshare.disaster.alerts import check_webhook
from eoshare.disaster.areas import MAX_VERTICES, parse_area
from eoshare.disaster.orbits import OrbitService, load_platforms, parse_elements
from eoshare.disaster.store import DisasterStore
from eoshare.errors import InvalidRequestError, PayloadTooLargeError

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def test_areas_are_read_safely() -> None:
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": SQUARE}]}
    assert parse_area(json.dumps(fc))["type"] == "Polygon"
    for bad, words in [
        ("{", "not valid JSON"),
        ({"type": "Point", "coordinates": [0, 0]}, "polygons"),
        ({**SQUARE, "crs": {"type": "name"}}, "crs"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [1, 1], [0, 0]]]}, "outside"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [0, 0], [0, 0], [0, 0]]]}, "empty"),
        ({"type": "FeatureCollection", "features": []}, "no features"),
    ]:
        with pytest.raises(InvalidRequestError, match=words):
            parse_area(bad)
    ring = [[i * 1e-4, 0] for i in range(MAX_VERTICES + 1)] + [[0, 1], [0, 0]]
    with pytest.raises(PayloadTooLargeError):
        parse_area({"type": "Polygon", "coordinates": [ring]})


def test_element_sets_tle_omm_and_refusals(shared_data: Path) -> None:
    text = (shared_data / "tle" / "celestrak_resource_2024-10-05.tle").read_bytes()
    sets = parse_elements(text)
    assert len(sets) == 165
    l8 = next(e for e in sets if e.norad == 39084)
    omm = [{"OBJECT_NAME": "LANDSAT 8", "OBJECT_ID": "2013-008A",
            "EPOCH": "2024-10-05T03:29:20.502",
            "MEAN_MOTION": 14.57, "ECCENTRICITY": 0.0001, "INCLINATION": 98.2,
            "RA_OF_ASC_NODE": 340.0, "ARG_OF_PERICENTER": 90.0, "MEAN_ANOMALY": 270.0,
            "EPHEMERIS_TYPE": 0, "CLASSIFICATION_TYPE": "U", "NORAD_CAT_ID": 39084,
            "ELEMENT_SET_NO": 999, "REV_AT_EPOCH": 1, "BSTAR": 0.0001,
            "MEAN_MOTION_DOT": 0.0, "MEAN_MOTION_DDOT": 0}]  # fmt: skip
    from_omm = parse_elements(json.dumps(omm).encode())
    assert from_omm[0].norad == 39084 and from_omm[0].epoch.date() == l8.epoch.date()
    broken = text.decode().splitlines()
    broken[1] = broken[1][:-1] + str((int(broken[1][-1]) + 1) % 10)
    with pytest.raises(InvalidRequestError, match="checksum"):
        parse_elements("\n".join(broken).encode())
    with pytest.raises(InvalidRequestError, match="DOCTYPE"):
        parse_elements(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><ndm/>')


def test_omm_json_and_xml_of_the_same_elements_agree(shared_data: Path) -> None:
    """OMM (CCSDS, as JSON and as XML) written from the real Landsat 8 TLE: same satellite,
    same epoch, same positions an hour later."""
    from sgp4.api import Satrec
    from sgp4.exporter import export_omm

    text = (shared_data / "tle" / "celestrak_resource_2024-10-05.tle").read_bytes()
    l8 = next(e for e in parse_elements(text) if e.norad == 39084)
    fields = export_omm(Satrec.twoline2rv(l8.line1, l8.line2), "LANDSAT 8")
    meta = ("OBJECT_NAME", "OBJECT_ID", "CENTER_NAME", "REF_FRAME", "TIME_SYSTEM",
            "MEAN_ELEMENT_THEORY")  # fmt: skip
    tle = ("EPHEMERIS_TYPE", "CLASSIFICATION_TYPE", "NORAD_CAT_ID", "ELEMENT_SET_NO",
           "REV_AT_EPOCH", "BSTAR", "MEAN_MOTION_DOT", "MEAN_MOTION_DDOT")  # fmt: skip

    def tags(names: Any) -> str:
        return "".join(f"<{k}>{fields[k]}</{k}>" for k in names if k in fields)

    mean = [k for k in fields if k not in meta and k not in tle]
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><ndm><omm><body><segment>'
        f"<metadata>{tags(meta)}</metadata><data><meanElements>{tags(mean)}</meanElements>"
        f"<tleParameters>{tags(tle)}</tleParameters></data></segment></body></omm></ndm>"
    )
    from_json = parse_elements(json.dumps([fields]).encode(), "l8.json")[0]
    from_xml = parse_elements(xml.encode(), "l8.xml")[0]
    for e in (from_json, from_xml):
        assert e.norad == 39084 and e.name == "LANDSAT 8"
        assert abs((e.epoch - l8.epoch).total_seconds()) < 1
        jd, fr = e.satrec().jdsatepoch, e.satrec().jdsatepochF + 1 / 24
        _, r, _ = e.satrec().sgp4(jd, fr)
        _, r0, _ = l8.satrec().sgp4(jd, fr)
        assert max(abs(a - b) for a, b in zip(r, r0, strict=True)) < 0.01  # km


def test_history_is_kept_and_old_elements_warn(shared_data: Path, tmp_path: Path) -> None:
    store = DisasterStore(tmp_path / "d.db")
    orbits = OrbitService(store, load_platforms())
    text = (shared_data / "tle" / "celestrak_resource_2024-10-05.tle").read_bytes()
    fresh = orbits.load(text, source="a.tle", now=datetime(2024, 10, 6, tzinfo=UTC))
    assert fresh["added"] == 165 and fresh["warnings"] == []
    again = orbits.load(text, source="b.tle", now=datetime(2024, 10, 20, tzinfo=UTC))
    assert again["added"] == 0
    assert any("LANDSAT 8" in w and "days old" in w for w in again["warnings"])
    assert len(orbits.member_satellites()) >= 20
    store.close()


def test_webhooks_to_private_addresses_are_refused() -> None:
    for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]/x",
                "http://169.254.169.254/latest"):  # fmt: skip
        with pytest.raises(InvalidRequestError, match="non-public"):
            check_webhook(url, allow_private=False)
    check_webhook("http://127.0.0.1:9/x", allow_private=True)
    for url in ("ftp://example.org/x", "http://user:pw@example.org/x", "/relative"):
        with pytest.raises(InvalidRequestError):
            check_webhook(url, allow_private=True)


def test_orbits_and_activations_command_line(shared_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    tle = shared_data / "tle" / "celestrak_resource_2024-10-05.tle"
    r = runner.invoke(app, ["orbits", "load", str(tle), "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "165 element sets" in r.output and "days old" in r.output  # they are old now
    r = runner.invoke(app, ["orbits", "list", "--data-dir", str(tmp_path), "--json"])
    assert r.exit_code == 0 and "sentinel-2a" in r.output
    r = runner.invoke(app, ["activations", "list", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0 and r.output == ""
    r = runner.invoke(app, ["activations", "approve", "act-nope", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1 and r.output.strip() == "error: activation 'act-nope' does not exist"
    for verb in ("list", "request", "approve", "reject", "close", "show"):
        assert runner.invoke(app, ["activations", verb, "--help"]).exit_code == 0
