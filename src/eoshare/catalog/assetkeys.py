"""Store keys of assets: made by the node, bound to the item that owns them.

An asset held in this node's store carries ``eoshare:key``, the key of its object in the
``Store``. Only the node writes that field (ingest, upload, mirror): the key is always
``<collection id>/<item id>/<file name>``, so an item can only ever name objects under
its own prefix. Client documents (the transaction routes, ``eoshare load``) never set it:
:func:`strip_node_fields` removes it, and :func:`keep_node_keys` carries the node's keys
of an existing item over a PUT or PATCH.

Every reader of held bytes (``AssetGate``, tiles, orders, verify) asks :func:`bound_key`,
which answers the key only when it lies under the item's own prefix: an item whose
document names another item's object (a forged key, an old catalogue) holds nothing.
See docs/adr/0006-one-path-for-bytes.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

JSON = dict[str, Any]

KEY_FIELD = "eoshare:key"
# fields only the node may write on an asset
NODE_FIELDS = (KEY_FIELD,)
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+=,-]{0,255}$")


def store_key(collection_id: str, item_id: str, file_name: str) -> str:
    """The key the node gives a file of an item: ``<collection>/<item>/<file>``."""
    return f"{collection_id}/{item_id}/{file_name}"


def bound_key(item: JSON, asset_key: str) -> str | None:
    """The store key of ``asset_key`` when the node holds it for this very item, else
    None (an external href, or a key that points outside the item's own prefix)."""
    assets = item.get("assets")
    asset = assets.get(asset_key) if isinstance(assets, dict) else None
    if not isinstance(asset, dict):
        return None
    return key_of(item, asset)


def key_of(item: JSON, asset: JSON) -> str | None:
    """``asset``'s store key if it is bound to ``item`` (see :func:`bound_key`)."""
    key = asset.get(KEY_FIELD)
    cid, iid = item.get("collection"), item.get("id")
    if not isinstance(key, str) or not isinstance(cid, str) or not isinstance(iid, str):
        return None
    if "/" in cid or "/" in iid or not cid or not iid:
        return None
    prefix = f"{cid}/{iid}/"
    if not key.startswith(prefix):
        return None
    name = key[len(prefix) :]
    if ".." in name or not _FILE_NAME.match(name):
        return None
    return key


def held_assets(item: JSON) -> Iterator[tuple[str, JSON, str]]:
    """(asset key, asset, store key) of every asset this node holds for the item."""
    assets = item.get("assets")
    if not isinstance(assets, dict):
        return
    for name, asset in assets.items():
        if isinstance(asset, dict):
            key = key_of(item, asset)
            if key is not None:
                yield name, asset, key


def strip_node_fields(doc: JSON) -> JSON:
    """A copy of a client's item document without the fields only the node writes."""
    assets = doc.get("assets")
    if not isinstance(assets, dict) or not _has_node_fields(assets):
        return doc
    out = dict(doc)
    out["assets"] = {
        k: ({f: v for f, v in a.items() if f not in NODE_FIELDS} if isinstance(a, dict) else a)
        for k, a in assets.items()
    }
    return out


def _has_node_fields(assets: JSON) -> bool:
    # (a plain loop: called for every item of a bulk load)
    for a in assets.values():
        if isinstance(a, dict):
            for f in NODE_FIELDS:
                if f in a:
                    return True
    return False


def keep_node_keys(new: JSON, old: JSON) -> JSON:
    """``new`` (a client's replacement of ``old``, node fields stripped) with the node's
    store keys of ``old`` put back on the assets that keep their name."""
    new = strip_node_fields(new)
    new_assets, old_assets = new.get("assets"), old.get("assets")
    if not isinstance(new_assets, dict) or not isinstance(old_assets, dict):
        return new
    merged = dict(new_assets)
    for name, asset in new_assets.items():
        before = old_assets.get(name)
        if isinstance(asset, dict) and isinstance(before, dict):
            key = key_of(old, before)
            if key is not None:
                merged[name] = {**asset, KEY_FIELD: key}
    return {**new, "assets": merged}
