"""Hole 2 of issue 8 for STAC documents (``eoshare load``): a .json document and an
NDJSON line are bounded in size, deep nesting is refused, and a bad document is one line
of error while the others load."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from eoshare.cli import app


def _item(i: int, pad: int = 0) -> dict[str, object]:
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": f"doc-{i}", "collection": "docs",
        "geometry": {"type": "Point", "coordinates": [30.0, 10.0]}, "bbox": [30, 10, 30, 10],
        "properties": {"datetime": "2024-01-01T00:00:00Z", "pad": "x" * pad},
        "links": [], "assets": {},
    }  # fmt: skip


def _load(tmp_path: Path, *files: Path, **env: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(
        app,
        ["load", *map(str, files), "--create-collections", "--data-dir", str(tmp_path / "d")],
        env=env,
    )
    return result.exit_code, [x for x in result.stderr.splitlines() if x.startswith("error:")]


def test_an_oversized_json_document_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"type": "FeatureCollection", "features": [_item(1, 5000)]}))
    code, errors = _load(tmp_path, big, EOSHARE_INGEST__MAX_JSON_BYTES="4096")
    assert code == 1
    assert len(errors) == 1 and "MAX_JSON_BYTES" in errors[0], errors


def test_an_oversized_ndjson_line_is_skipped_and_the_rest_loads(tmp_path: Path) -> None:
    lines = tmp_path / "items.ndjson"
    lines.write_text("\n".join(json.dumps(_item(i, 5000 if i == 1 else 0)) for i in range(3)))
    code, errors = _load(tmp_path, lines, EOSHARE_INGEST__MAX_NDJSON_LINE_BYTES="4096")
    assert code == 1
    assert errors == [
        f"error: {lines}:2: the line is longer than 4096 bytes "
        "(EOSHARE_INGEST__MAX_NDJSON_LINE_BYTES)"
    ]


def test_deeply_nested_json_is_refused_not_a_crash(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, errors = _load(tmp_path, deep)
    assert code == 1
    assert len(errors) == 1 and "not valid JSON" in errors[0]
