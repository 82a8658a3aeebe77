"""Offline bundles: ``eoshare export`` at alpha, ``eoshare import`` at a new node, which
then passes ``eoshare verify``; a damaged bundle is refused before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from eoshare.access.store import AccessStore
from federation.conftest import Federation, run_cli


def test_export_import_verify(federation: Federation, tmp_path: Path) -> None:
    alpha = federation.alpha
    bundle = tmp_path / "bundle"
    out = run_cli(
        "export", str(bundle), "--collection", "a-open", "--data-dir", str(alpha.data_dir)
    )
    assert out.returncode == 0, out.stderr
    assert "3 item(s), 3 file(s)" in out.stdout
    catalog = json.loads((bundle / "catalog.json").read_text())
    assert catalog["type"] == "Catalog"
    sums = (bundle / "SHA256SUMS").read_text().splitlines()
    assert any(line.endswith("a-open/collection.json") for line in sums)
    assert json.loads((bundle / "agreements.json").read_text())["agreements"][0]["access"] == "open"

    # into an empty folder only
    again = run_cli(
        "export", str(bundle), "--collection", "a-open", "--data-dir", str(alpha.data_dir)
    )
    assert again.returncode == 1 and "not empty" in again.stderr

    node = tmp_path / "node"
    imported = run_cli("import", str(bundle), "--data-dir", str(node))
    assert imported.returncode == 0, imported.stderr
    verified = run_cli("verify", "--data-dir", str(node))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    access = AccessStore(node / "access.db")
    try:
        agreement = access.find_agreement("a-open")
        assert agreement is not None and agreement.provider == "vn-vnsc"
    finally:
        access.close()


def test_damaged_bundle_is_refused(federation: Federation, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    out = run_cli(
        "export", str(bundle), "--collection", "a-open",
        "--data-dir", str(federation.alpha.data_dir),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    data = next(damaged.glob("a-open/*/data.tif"))
    raw = bytearray(data.read_bytes())
    raw[10] ^= 0xFF
    data.write_bytes(bytes(raw))
    node = tmp_path / "node"
    r = run_cli("import", str(damaged), "--data-dir", str(node))
    assert r.returncode == 1
    assert "does not match its checksum" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (node / "catalog.db").exists() or not list((node / "store").rglob("*.tif"))
