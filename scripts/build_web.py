"""Vendor the browser UI's front-end packages into the Python package (``make web``).

The packages are pinned in ``web/package-lock.json``. This copies the few files the UI
loads into ``src/eoshare/web/static/vendor/`` and writes ``VENDORED.json`` beside them:
the version and integrity of each package (from the lock) and the SHA-256 of each
copied file. The UI is then served by eoshare itself, with no CDN.

The copies are build output, not committed (eoshare's repository holds only its own
files). When ``VENDORED.json`` already matches the lock and every file's checksum,
nothing is done; otherwise it runs ``npm ci`` in ``web/`` (installing npm from Debian's
archive first when it is missing and we are root) and copies again.
``tests/web/test_ui_assets.py`` checks the same agreement, so a lock bump without
``make web`` fails the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
LOCK = WEB / "package-lock.json"
VENDOR = REPO / "src" / "eoshare" / "web" / "static" / "vendor"
STAMP = VENDOR / "VENDORED.json"

# package -> {source path inside node_modules/<package>: destination under vendor/<package>}
FILES: dict[str, dict[str, str]] = {
    "leaflet": {
        "dist/leaflet.js": "leaflet.js",
        "dist/leaflet.css": "leaflet.css",
        "dist/images/layers.png": "images/layers.png",
        "dist/images/layers-2x.png": "images/layers-2x.png",
        "dist/images/marker-icon.png": "images/marker-icon.png",
        "dist/images/marker-icon-2x.png": "images/marker-icon-2x.png",
        "dist/images/marker-shadow.png": "images/marker-shadow.png",
        "LICENSE": "LICENSE.txt",
    },
    "topojson-client": {
        "dist/topojson-client.min.js": "topojson-client.min.js",
        "LICENSE": "LICENSE.txt",
    },
    # Natural Earth country outlines: the offline base map
    "world-atlas": {
        "countries-110m.json": "countries-110m.json",
        "countries-50m.json": "countries-50m.json",
        "LICENSE": "LICENSE.txt",
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def locked_packages() -> dict[str, dict[str, str]]:
    """Version, integrity and licence of each vendored package, as the lock pins them."""
    lock = json.loads(LOCK.read_text())
    out = {}
    for name in FILES:
        entry = lock["packages"].get(f"node_modules/{name}")
        if entry is None:
            raise SystemExit(f"error: {name} is not in {LOCK.relative_to(REPO)}")
        out[name] = {
            "version": entry["version"],
            "integrity": entry.get("integrity", ""),
            "license": entry.get("license", ""),
        }
    return out


def up_to_date() -> bool:
    """Whether the vendored files are exactly what the lock and the stamp say."""
    if not STAMP.is_file():
        return False
    stamp = json.loads(STAMP.read_text())
    if stamp.get("packages") != locked_packages():
        return False
    expected = {f"{pkg}/{dest}" for pkg, files in FILES.items() for dest in files.values()}
    if set(stamp.get("files", {})) != expected:
        return False
    return all(
        (VENDOR / rel).is_file() and sha256(VENDOR / rel) == digest
        for rel, digest in stamp["files"].items()
    )


def find_npm() -> str:
    """npm, installed from Debian's archive when missing and we are root."""
    npm = shutil.which("npm")
    if npm is None and shutil.which("apt-get") and os.geteuid() == 0:
        print("installing Node.js and npm with apt (for make web)", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        lock = ["-o", "DPkg::Lock::Timeout=600"]
        subprocess.run(["apt-get", *lock, "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", "npm"],
            check=True,
            env=env,
        )
        npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "error: the web assets are not built and npm is missing; install Node.js and "
            "npm (apt-get install npm), then run 'make web'"
        )
    return npm


def build() -> None:
    npm = find_npm()
    subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=WEB,
        check=True,
    )
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    files = {}
    for pkg, mapping in FILES.items():
        for src, dest in mapping.items():
            target = VENDOR / pkg / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(WEB / "node_modules" / pkg / src, target)
            files[f"{pkg}/{dest}"] = sha256(target)
    STAMP.write_text(
        json.dumps(
            {
                "note": "written by scripts/build_web.py (make web); do not edit",
                "packages": locked_packages(),
                "files": dict(sorted(files.items())),
            },
            indent=2,
        )
        + "\n"
    )


def main() -> int:
    if "--check" in sys.argv[1:]:
        ok = up_to_date()
        print("web assets up to date" if ok else "web assets differ from the lock: run make web")
        return 0 if ok else 1
    if up_to_date():
        print("web assets up to date", file=sys.stderr)
        return 0
    build()
    print(f"web assets vendored into {VENDOR.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
