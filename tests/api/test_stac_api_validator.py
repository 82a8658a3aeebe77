"""stac-api-validator, the community's conformance checker, against the live server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from shapely.geometry import mapping, shape

from .conftest import LANDSAT, VALIDATOR_TX, Server

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
]


def _validator() -> str:
    exe = Path(sys.executable).with_name("stac-api-validator")
    assert exe.is_file(), f"stac-api-validator is not installed beside {sys.executable}"
    return str(exe)


def test_stac_api_validator_reports_no_errors(live_server: Server, stac_schemas: Path) -> None:
    items = live_server.loaded.of(LANDSAT)
    # a footprint that really holds items: the first Netherlands scene's, shrunk
    netherlands = next(i for i in items if i["geometry"]["coordinates"][0][0][0] > 0)
    geometry = mapping(shape(netherlands["geometry"]).centroid.buffer(0.2, quad_segs=2))
    clouds = sorted({i["properties"]["eo:cloud_cover"] for i in items})
    middle = clouds[len(clouds) // 2]
    platforms = sorted({i["properties"]["platform"] for i in items})
    args = [
        _validator(),
        "--root-url", live_server.url,
        "--collection", LANDSAT,
        "--geometry", json.dumps(geometry),
        "--auth-bearer-token", live_server.token,
        "--transaction-collection", VALIDATOR_TX,
        "--fields-nested-property", "properties.eo:cloud_cover",
        "--query-comparison-field", "eo:cloud_cover",
        "--query-eq-value", str(middle),
        "--query-neq-value", str(middle),
        "--query-lt-value", str(middle),
        "--query-lte-value", str(middle),
        "--query-gt-value", str(middle),
        "--query-gte-value", str(middle),
        "--query-substring-field", "platform",
        "--query-starts-with-value", platforms[0][:4],
        "--query-ends-with-value", platforms[0][-2:],
        "--query-contains-value", platforms[0][2:6],
        "--query-in-field", "platform",
        "--query-in-values", ",".join(platforms),
    ]
    for c in CONFORMANCE:
        args += ["--conformance", c]
    env = {**os.environ, "PYTHONPATH": str(stac_schemas)}
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    out = run.stdout + run.stderr
    errors = _section(out, "Errors")
    warnings = _section(out, "Warnings")
    print(out)
    assert "[stac-schemas/offline] MISSING" not in out, out
    assert run.returncode == 0, out
    assert errors == [], out
    # every warning is a finding too; none are expected
    assert warnings == [], out


def _section(out: str, name: str) -> list[str]:
    """The entries printed under 'Errors:' or 'Warnings:' ('none' -> [])."""
    match = re.search(rf"^{name}:\s*(.*?)(?=^\w+:|\Z)", out, re.S | re.M)
    assert match, f"no {name} section in the validator output:\n{out}"
    body = match.group(1).strip()
    if body.lower() in ("none", ""):
        return []
    return [line.strip(" -") for line in body.splitlines() if line.strip(" -")]
