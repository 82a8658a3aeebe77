"""Collections that ingest and load make on the user's behalf.

Used by ``eoshare ingest --create-collection`` (raster.py) and
``eoshare load --create-collections`` (stacdocs.py): a minimal valid STAC 1.1
collection first, and its extent set from its items once they are in.
"""

from __future__ import annotations

from eoshare import STAC_VERSION
from eoshare.catalog.base import JSON, Catalog


def minimal_collection(collection_id: str, *, made_by: str) -> JSON:
    """A minimal valid STAC 1.1 collection; its extent is filled in afterwards."""
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": collection_id,
        "title": collection_id,
        "description": f"Collection {collection_id}, created by {made_by}.",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


def refresh_extent(catalog: Catalog, collection_id: str) -> None:
    """Set a collection's extent to that of its items (``Catalog.collection_extent``)."""
    extent = catalog.collection_extent(collection_id)
    if extent is None:
        return
    collection = catalog.get_collection(collection_id)
    if collection.get("extent") == extent:
        return
    collection["extent"] = extent
    catalog.update_collection(collection_id, collection)
