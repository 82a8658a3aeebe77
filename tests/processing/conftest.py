"""A live eoshare node with the real Sentinel-2 B04/B08/SCL of ``../shared/data/raster``
ingested by ``eoshare ingest`` (the command users run), members, users, tokens and
agreements, served on 127.0.0.1 for the openEO tests."""

from __future__ import annotations

import json
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

from .oidc_issuer import AUDIENCE, oidc_issuer

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
    issuer: str = ""


# a synthetic Sentinel-2-like tile made here, two dates, for the ready-made algorithms
SYNTH_BANDS = ("B03", "B04", "B08", "B12", "SCL")
SYNTH_DATES = ("20240601", "20240701")
SYNTH_ORIGIN = (300000.0, 2700000.0)  # EPSG:32629, 10 m pixels
SYNTH_SIZE = 64


def synth_arrays() -> dict[tuple[str, str], np.ndarray]:
    rng = np.random.default_rng(42)
    out: dict[tuple[str, str], np.ndarray] = {}
    for date in SYNTH_DATES:
        for band in SYNTH_BANDS:
            if band == "SCL":
                arr = rng.choice([3, 4, 5, 6, 8, 9, 10], size=(SYNTH_SIZE, SYNTH_SIZE))
                out[date, band] = arr.astype("uint8")
            else:
                arr = rng.integers(100, 5000, size=(SYNTH_SIZE, SYNTH_SIZE))
                out[date, band] = arr.astype("uint16")
    return out


def ingest_synthetic(data_dir: Path, folder: Path) -> None:
    from affine import Affine

    transform = Affine(10.0, 0.0, SYNTH_ORIGIN[0], 0.0, -10.0, SYNTH_ORIGIN[1])
    arrays = synth_arrays()
    for date in SYNTH_DATES:
        files = []
        for band in SYNTH_BANDS:
            arr = arrays[date, band]
            path = folder / f"S2X_T29ABC_{date}_{band}.tif"
            with rasterio.open(
                path, "w", driver="GTiff", width=SYNTH_SIZE, height=SYNTH_SIZE, count=1,
                dtype=arr.dtype, crs="EPSG:32629", transform=transform,
            ) as ds:  # fmt: skip
                ds.write(arr, 1)
            files.append(str(path))
        proc = subprocess.run(
            [sys.executable, "-m", "eoshare.cli", "ingest", *files, "--collection", "synth",
             "--create-collection", "--datetime", f"{date[:4]}-{date[4:6]}-{date[6:]}",
             "--data-dir", str(data_dir)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr


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
        # s2-embargo: each scene opens to everyone a century after its acquisition
        store.put_agreement(
            agreement_from_dict(
                {"collection": "s2-embargo", "provider": "kenya", "access": "provider",
                 "embargo_days": 36500}
            ),
            who="test",
        )  # fmt: skip
        return {name: store.create_token(name, days=1, who="test")[1] for name in ("alice", "bob")}
    finally:
        store.close()


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    data_dir = tmp_path_factory.mktemp("openeo-node")
    for cid in ("s2", "s2-private", "s2-reduced", "s2-embargo"):
        ingest(data_dir, cid)
    ingest_synthetic(data_dir, tmp_path_factory.mktemp("synth"))
    tokens = setup_access(data_dir)
    # the openEO test suite signs in with OIDC only: an issuer of the member kenya
    with oidc_issuer(subject="suite-runner", member="kenya") as issuer:
        oidc = [{"issuer": issuer, "audience": AUDIENCE, "jwks_url": f"{issuer}/jwks"}]
        env = {
            "EOSHARE_PROCESSING__WORKERS": "2",
            "EOSHARE_PROCESSING__SYNC_MAX_PIXELS": "2000000",
            "EOSHARE_ACCESS__OIDC": json.dumps(oidc),
        }
        with live_node(data_dir, env) as url:
            yield Node(url, data_dir, tokens, issuer)


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
