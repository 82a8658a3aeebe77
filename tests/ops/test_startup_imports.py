"""What a start imports: a node loads its drawing libraries (rio-tiler, rasterio, xarray,
dask, pandas, morecantile) on its first picture, not when the app is made or answers
``/health``; the command line's ``--help`` and access commands load no numpy, shapely or
cryptography. (Start-up time itself is measured by ``benchmarks/bench_startup.py``;
here only which modules are loaded, in fresh processes.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DRAWING = ("rio_tiler", "rasterio", "xarray", "dask", "pandas", "morecantile", "pyproj")

_APP = """
import json, sys
from fastapi.testclient import TestClient
from eoshare.api.app import create_app
from eoshare.settings import Settings
d = sys.argv[1]
app = create_app(Settings(data_dir=d, catalog=f"sqlite:///{d}/catalog.db", log_level="warning"))
seen = {}
with TestClient(app) as client:
    assert client.get("/health").status_code == 200
    seen["health"] = sorted(m for m in DRAWING if m in sys.modules)
    r = client.get("/tiles/tileMatrixSets/WebMercatorQuad")
    assert r.status_code == 200, r.text
    seen["tms"] = sorted(m for m in DRAWING if m in sys.modules)
    # the service itself, built on first use: the drawing libraries load then
    getattr(app.state.tiles, "service", None)
    seen["picture"] = sorted(m for m in DRAWING if m in sys.modules)
print(json.dumps(seen))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}


def test_a_node_loads_the_drawing_libraries_on_its_first_picture(tmp_path: Path) -> None:
    code = f"DRAWING = {DRAWING!r}\n{_APP}"
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["health"] == []
    assert seen["tms"] == ["morecantile", "pyproj"]
    assert {"rio_tiler", "rasterio"} <= set(seen["picture"])


def test_the_command_line_help_loads_no_numpy_or_crypto(tmp_path: Path) -> None:
    code = (
        "import runpy, sys\n"
        "sys.argv = ['eoshare', '--help']\n"
        "try:\n"
        "    runpy.run_module('eoshare.cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('numpy', 'shapely', 'cryptography', 'httpx', *" + repr(DRAWING) + ")\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
