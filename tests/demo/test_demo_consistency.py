"""The demo's STAC metadata and its agreements say the same thing: each demo collection's
licence is its agreement's licence, and its producer is the member agency the agreement
names (the UI shows both side by side)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from eoshare.demo import build

AGREEMENTS = Path(build.__file__).with_name("agreements.toml")


def test_collections_and_agreements_agree() -> None:
    doc = tomllib.loads(AGREEMENTS.read_text())
    members = {m["code"]: m["name"] for m in doc["members"]}
    agreements = {a["collection"]: a for a in doc["agreements"]}
    missions = {m.collection_id: m for m in build.MISSIONS}
    assert set(missions) == set(agreements)
    for cid, mission in missions.items():
        agreement = agreements[cid]
        assert mission.license == agreement["licence"], cid
        assert mission.agency.removesuffix(" (fictional)") == members[agreement["provider"]], cid
