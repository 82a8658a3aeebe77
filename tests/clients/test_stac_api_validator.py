"""stac-api-validator, the community's conformance checker, against the live server: every
conformance class the node claims, one at a time, so that each class's errors and
warnings are counted on their own (they are written to
``.artifacts/clients/stac-api-validator.json``). The validator runs offline against the
schema mirror (``../shared/stac-schemas``); here and in CI, no skips.

Where the validator asks for more than the specifications, the node follows the
specification and the run is set up accordingly (docs/adr/0010-interoperability.md):
PUT/PATCH answer 204 only on ``Prefer: return=minimal``, and DELETE of an absent item
is 404, so the item its transaction check begins by deleting is seeded first."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from shapely.geometry import mapping, shape

from api.conftest import LANDSAT, VALIDATOR_TX, Server

CONFORMANCE = [
    "core",
    "collections",
    "features",
    "item-search",
    "filter",
    "item-search#sort",
    "item-search#fields",
    "item-search#query",
    "features#sort",
    "features#fields",
    "features#query",
    "transaction",
    "children",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "clients"
COUNTS: dict[str, dict[str, int]] = {}


def _validator() -> str:
    exe = Path(sys.executable).with_name("stac-api-validator")
    assert exe.is_file(), f"stac-api-validator is not installed beside {sys.executable}"
    return str(exe)


def _arguments(live_server: Server) -> list[str]:
    """The validator's command line, less the conformance class."""
    items = live_server.loaded.of(LANDSAT)
    # a footprint that really holds items: the first Netherlands scene's, shrunk
    netherlands = next(i for i in items if i["geometry"]["coordinates"][0][0][0] > 0)
    geometry = mapping(shape(netherlands["geometry"]).centroid.buffer(0.2, quad_segs=2))
    clouds = sorted({i["properties"]["eo:cloud_cover"] for i in items})
    middle = clouds[len(clouds) // 2]
    platforms = sorted({i["properties"]["platform"] for i in items})
    wrs_types = sorted({i["properties"]["landsat:wrs_type"] for i in items})
    assert all(len(v) == 1 for v in wrs_types)
    seed_transaction_item(live_server)
    args = [
        _validator(),
        "--root-url",
        live_server.url,
        "--collection",
        LANDSAT,
        "--geometry",
        json.dumps(geometry),
        "--auth-bearer-token",
        live_server.token,
        "--transaction-collection",
        VALIDATOR_TX,
        "--fields-nested-property",
        "properties.eo:cloud_cover",
        "--query-comparison-field",
        "eo:cloud_cover",
        "--query-eq-value",
        str(middle),
        "--query-neq-value",
        str(middle),
        "--query-lt-value",
        str(middle),
        "--query-lte-value",
        str(middle),
        "--query-gt-value",
        str(middle),
        "--query-gte-value",
        str(middle),
        "--query-substring-field",
        "platform",
        "--query-starts-with-value",
        platforms[0][:4],
        "--query-ends-with-value",
        platforms[0][-2:],
        "--query-contains-value",
        platforms[0][2:6],
        # the validator compares set(value) with the 'in' values, which only works for
        # arrays or one-character strings: landsat:wrs_type ("2") is one
        "--query-in-field",
        "landsat:wrs_type",
        "--query-in-values",
        ",".join(wrs_types),
        # OGC API Features Part 4 allows 200 or 204 for PUT/PATCH; the validator wants
        # 204, which RFC 7240's return=minimal asks for
        "-H",
        "Prefer: return=minimal",
    ]
    return args


@pytest.fixture(scope="module")
def validator_runs(live_server: Server, stac_schemas: Path) -> dict[str, tuple[int, str]]:
    """One validator run per class, four readers at a time (most of a run is waiting on
    the node): class -> (exit status, output)."""
    args = _arguments(live_server)
    env = {**os.environ, "PYTHONPATH": str(stac_schemas)}

    def run(conformance: str) -> tuple[int, str]:
        done = subprocess.run(
            [*args, "--conformance", conformance],
            env=env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        return done.returncode, done.stdout + done.stderr

    # the transaction class writes and deletes items: alone, after the readers
    readers = [c for c in CONFORMANCE if c != "transaction"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = dict(zip(readers, pool.map(run, readers), strict=True))
    runs["transaction"] = run("transaction")
    return runs


@pytest.mark.parametrize("conformance", CONFORMANCE)
def test_stac_api_validator_class(
    validator_runs: dict[str, tuple[int, str]], conformance: str
) -> None:
    returncode, out = validator_runs[conformance]
    errors = _section(out, "Errors")
    warnings = _section(out, "Warnings")
    COUNTS[conformance] = {"errors": len(errors), "warnings": len(warnings)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "stac-api-validator.json").write_text(json.dumps(COUNTS, indent=2))
    print(f"{conformance}: {len(errors)} errors, {len(warnings)} warnings")
    assert "[stac-schemas/offline] MISSING" not in out, out
    assert returncode == 0, out
    assert errors == [], out
    unexplained = [w for w in warnings if not _identity_fields_warning(w)]
    assert unexplained == [], out


# With a fields ``include``, eoshare also returns the item's identity (type,
# stac_version, id, collection; the extension calls include a hint). The validator
# warns about those. For the nested case it also counts 'properties' as extra, since
# it looks for 'properties.eo:cloud_cover' at the top level.
_IDENTITY = {"type", "stac_version", "id", "collection"}
_EXTRA = re.compile(
    r"^\[Item Search - Fields Ext\] : (.*) response contained extra fields (\[.*\])$"
)


def _identity_fields_warning(warning: str) -> bool:
    m = _EXTRA.match(warning)
    if not m:
        return False
    extras = set(json.loads(m.group(2).replace("'", '"')))
    allowed = _IDENTITY | ({"properties"} if "properties.eo:cloud_cover" in m.group(1) else set())
    return extras <= allowed


# The item stac-api-validator's transaction check writes. It begins with "DELETE it if
# it exists" and wants 204, but DELETE of an absent item is 404 (OGC API Features
# Part 4), so the item is made to exist first, as after an earlier run.
VALIDATOR_ITEM_ID = "S2A_47XNF_20230423_0_L2A"


def seed_transaction_item(server: Server) -> None:
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": VALIDATOR_ITEM_ID,
        "collection": VALIDATOR_TX,
        "geometry": {"type": "Point", "coordinates": [100.0, 77.0]},
        "properties": {"datetime": "2023-04-23T06:47:03.048000Z"},
        "assets": {},
        "links": [],
    }
    url = f"{server.url}/collections/{VALIDATOR_TX}/items"
    r = httpx.post(url, json=item, headers=server.admin(), timeout=30)
    if r.status_code == 409:
        r = httpx.put(f"{url}/{VALIDATOR_ITEM_ID}", json=item, headers=server.admin(), timeout=30)
    assert r.status_code in (200, 201), r.text


def _section(out: str, name: str) -> list[str]:
    """The entries printed under 'Errors:' or 'Warnings:' ('none' -> [])."""
    match = re.search(rf"^{name}:\s*(.*?)(?=^\w+:|\Z)", out, re.S | re.M)
    assert match, f"no {name} section in the validator output:\n{out}"
    body = match.group(1).strip()
    if body.lower() in ("none", ""):
        return []
    return [line.strip(" -") for line in body.splitlines() if line.strip(" -")]
