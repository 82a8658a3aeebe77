"""A live eoshare node with the real Sentinel-2 B04/B08/SCL of ``../shared/data/raster``
ingested by ``eoshare ingest`` (the command users run), members, users, tokens and
agreements, served on 127.0.0.1 for the openEO tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.store import AccessStore
from live import live_node

RASTER = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raster"
S2 = "S2A_29RKH_20200219_0_L2A"
BANDS = ("B04", "B08", "SCL")
PASSWORD = "openeo-test-pw-123"
# a small window of the scene (lon/lat), inside its footprint
BBOX = {"west": -11.9, "south": 24.4, "east": -11.5, "north": 24.8}


@dataclass
class Node:
    url: str
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)


def ingest(data_dir: Path, collection: str) -> None:
    files = [str(RASTER / f"{S2}_{b}.tif") for b in BANDS]
    proc = subprocess.run(
        [sys.executable, "-m", "eoshare.cli", "ingest", *files, "--collection", collection,
         "--create-collection", "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def setup_access(data_dir: Path) -> dict[str, str]:
    store = AccessStore(data_dir / "access.db")
    try:
        store.put_member(Member("kenya", "Kenya Space Agency", "KE"), who="test")
        store.put_member(Member("viet", "Vietnam Space Centre", "VN"), who="test")
        store.put_user("alice", member="kenya", roles=frozenset({"analyst"}),
                       password=PASSWORD, who="test")  # fmt: skip
        store.put_user("bob", member="viet", roles=frozenset({"analyst"}), who="test")
        # s2: no agreement (open); s2-private: the provider's users only;
        # s2-reduced: others see 300 m previews but may not process the files
        store.put_agreement(
            agreement_from_dict(
                {"collection": "s2-private", "provider": "kenya", "access": "provider",
                 "licence": "proprietary", "terms": None}
            ),
            who="test",
        )  # fmt: skip
        store.put_agreement(
            agreement_from_dict(
                {"collection": "s2-reduced", "provider": "kenya", "access": "provider",
                 "reduced_resolution_m": 300}
            ),
            who="test",
        )  # fmt: skip
        return {name: store.create_token(name, days=1, who="test")[1] for name in ("alice", "bob")}
    finally:
        store.close()


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    data_dir = tmp_path_factory.mktemp("openeo-node")
    for cid in ("s2", "s2-private", "s2-reduced"):
        ingest(data_dir, cid)
    tokens = setup_access(data_dir)
    with live_node(data_dir, {"EOSHARE_PROCESSING__WORKERS": "2"}) as url:
        yield Node(url, data_dir, tokens)


def numpy_ndvi(transform: list[float], shape: tuple[int, int]) -> np.ndarray:
    """NDVI from the original files over the grid of a result (same CRS and pixel size)."""
    from rasterio.windows import Window

    with (
        rasterio.open(RASTER / f"{S2}_B04.tif") as red_ds,
        rasterio.open(RASTER / f"{S2}_B08.tif") as nir_ds,
    ):
        src = red_ds.transform
        col = round((transform[2] - src.c) / src.a)
        row = round((transform[5] - src.f) / src.e)
        window = Window(col, row, shape[1], shape[0])
        red = red_ds.read(1, window=window).astype("float64")
        nir = nir_ds.read(1, window=window).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    ndvi[(red == 0) | (nir == 0)] = np.nan
    return ndvi
