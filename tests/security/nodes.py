"""Small data folders for the security tests: one open collection with one item whose
asset is held by the node's store."""

from __future__ import annotations

from pathlib import Path

from eoshare.catalog import open_catalog
from eoshare.storage import open_store

CID, IID = "sec-test", "scene-1"
DATA = b"held bytes " * 100


def build_small_catalog(data_dir: Path) -> None:
    """``CID`` with the item ``IID``, its asset ``data`` (``DATA``) in the store."""
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    store = open_store((data_dir / "store").resolve().as_uri())
    try:
        catalog.create_collection(
            {
                "type": "Collection",
                "stac_version": "1.0.0",
                "id": CID,
                "description": "security tests",
                "license": "CC-BY-4.0",
                "extent": {
                    "spatial": {"bbox": [[36.0, -2.0, 37.0, -1.0]]},
                    "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
                },
                "links": [],
            }
        )
        key = f"{CID}/{IID}/data.bin"
        store.put_bytes(key, DATA)
        catalog.upsert_items(
            [
                {
                    "type": "Feature",
                    "stac_version": "1.0.0",
                    "id": IID,
                    "collection": CID,
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[36, -2], [37, -2], [37, -1], [36, -1], [36, -2]]],
                    },
                    "bbox": [36.0, -2.0, 37.0, -1.0],
                    "properties": {"datetime": "2024-05-01T08:00:00Z"},
                    "links": [],
                    "assets": {
                        "data": {
                            "href": key,
                            "type": "application/octet-stream",
                            "roles": ["data"],
                            "eoshare:key": key,
                        }
                    },
                }
            ]
        )
    finally:
        catalog.close()
