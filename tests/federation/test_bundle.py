"""Offline bundles: ``eoshare export`` at alpha, ``eoshare import`` at a new node, which
then passes ``eoshare verify``; a damaged bundle is refused before anything is written."""

from __future__ import annotations

import hashlib
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


def test_a_bundle_cannot_write_over_another_items_file(
    federation: Federation, tmp_path: Path
) -> None:
    """A hostile bundle (consistent checksums) names another collection's store key in
    its item: the import writes under the item's own key, never over the other file
    (store keys are the node's, ADR 0006)."""
    bundle = tmp_path / "bundle"
    out = run_cli(
        "export", str(bundle), "--collection", "a-open",
        "--data-dir", str(federation.alpha.data_dir),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    item_path = next(p for p in bundle.glob("a-open/*/*.json"))
    item = json.loads(item_path.read_text())
    item["assets"]["data"]["eoshare:key"] = "victim/secret/data.tif"
    item_path.write_text(json.dumps(item))
    sums = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bundle).as_posix()}"
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != "SHA256SUMS"
    ]
    (bundle / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    node = tmp_path / "node"
    victim = node / "store" / "victim" / "secret" / "data.tif"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"the victim's bytes")
    r = run_cli("import", str(bundle), "--data-dir", str(node))
    assert r.returncode == 0, r.stderr
    assert victim.read_bytes() == b"the victim's bytes"
    assert (node / "store" / "a-open" / item["id"] / "data.tif").is_file()
