"""The one place where processing reads its inputs.

``resolve_collection`` answers, for one ``load_collection``: which items of the collection
the caller may process (the catalogue's visibility filter), then, for every asset the
cube needs, the node's one path for bytes (``access.egress.AssetGate``: key bound to the
item, ``decide(PROCESS)``, quota, audit), and where GDAL reads each granted asset (the
store's ``gdal_path``). A reduced decision is a refusal for processing (the gate's rule:
full-resolution files are not handed out); a scene refused is left out of the cube, and
a cube with nothing left is a ``PermissionsInsufficient`` that says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eoshare.access.base import AccessPolicy, Action, Principal
from eoshare.access.egress import AssetGate, AssetGrant
from eoshare.catalog.base import Catalog, SearchQuery
from eoshare.errors import NotFoundError
from eoshare.processing.errors import CollectionNotFound, PermissionsInsufficient
from eoshare.storage.base import Store

JSON = dict[str, Any]
# the most items one load_collection reads (a bigger request is refused, never truncated)
MAX_ITEMS = 500


@dataclass(frozen=True)
class Band:
    """One band of a collection as openEO names it: the asset that holds it."""

    name: str
    asset: str
    common_name: str | None = None
    resolution_m: float | None = None
    data_type: str | None = None
    nodata: float | None = None

    def to_dict(self) -> JSON:
        out: JSON = {"name": self.name}
        if self.common_name:
            out["common_name"] = self.common_name
        if self.resolution_m:
            out["gsd"] = self.resolution_m
        return out


@dataclass
class CollectionInput:
    """What one ``load_collection`` may read; plain data, so it crosses to job processes."""

    collection: str
    bands: list[Band]
    # STAC items with the hrefs of the needed assets replaced by GDAL paths
    items: list[JSON] = field(default_factory=list)
    gdal_env: dict[str, str] = field(default_factory=dict)
    # None: native resolution; else the finest the caller may get, in metres
    max_resolution_m: float | None = None
    # the agreement collections the inputs came under (for the results' agreement)
    agreements: list[str] = field(default_factory=list)

    def to_dict(self) -> JSON:
        return {
            "collection": self.collection,
            "bands": [vars(b) for b in self.bands],
            "items": self.items,
            "gdal_env": self.gdal_env,
            "max_resolution_m": self.max_resolution_m,
            "agreements": self.agreements,
        }

    @classmethod
    def from_dict(cls, d: JSON) -> CollectionInput:
        return cls(
            collection=d["collection"],
            bands=[Band(**b) for b in d["bands"]],
            items=d["items"],
            gdal_env=d["gdal_env"],
            max_resolution_m=d["max_resolution_m"],
            agreements=d["agreements"],
        )


def item_bands(item: JSON) -> list[Band]:
    """The single-band data assets of an item as openEO bands (STAC 1.1 ``bands`` or
    ``eo:bands``; the band's name, else the asset key)."""
    out: list[Band] = []
    for key, asset in (item.get("assets") or {}).items():
        if not isinstance(asset, dict) or "data" not in (asset.get("roles") or ["data"]):
            continue
        bands = asset.get("bands") or asset.get("eo:bands") or [{}]
        if len(bands) != 1 or not isinstance(bands[0], dict):
            continue
        b = bands[0]
        res = b.get("raster:spatial_resolution") or asset.get("gsd") or b.get("gsd")
        nodata = b.get("nodata")
        out.append(
            Band(
                name=key,
                asset=key,
                common_name=b.get("eo:common_name") or b.get("common_name"),
                resolution_m=float(res) if isinstance(res, int | float) else None,
                data_type=b.get("data_type"),
                nodata=float(nodata) if isinstance(nodata, int | float) else None,
            )
        )
    return out


def visible_collection(
    catalog: Catalog, policy: AccessPolicy, principal: Principal, collection_id: str
) -> JSON:
    """The collection, or CollectionNotFound when it is absent or hidden from the caller."""
    view = getattr(policy, "collection_view", None)
    if view is not None and view(principal, collection_id) == "hidden":
        raise CollectionNotFound(f"Collection '{collection_id}' does not exist.")
    try:
        return catalog.get_collection(collection_id)
    except NotFoundError as exc:
        raise CollectionNotFound(f"Collection '{collection_id}' does not exist.") from exc


def collection_bands(
    catalog: Catalog, policy: AccessPolicy, principal: Principal, collection_id: str
) -> list[Band]:
    """The bands of a collection, from one of its items (collections carry no summaries).
    Called for a collection the caller may see; its band names are part of what they see,
    even while every scene is still under embargo."""
    visible_collection(catalog, policy, principal, collection_id)
    page = catalog.search(SearchQuery(collections=(collection_id,), limit=1, count=False))
    return item_bands(page.items[0]) if page.items else []


def resolve_collection(
    catalog: Catalog,
    gate: AssetGate,
    store: Store,
    principal: Principal,
    collection_id: str,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    bands: list[str] | None = None,
) -> CollectionInput:
    """Everything one ``load_collection`` may read. Raises CollectionNotFound (absent or
    hidden), ProcessParameterInvalid (unknown band) or PermissionsInsufficient (nothing
    in the extent may be processed by this caller)."""
    from eoshare.processing.errors import ProcessParameterInvalid

    policy = gate.policy
    visible_collection(catalog, policy, principal, collection_id)
    query = SearchQuery(
        collections=(collection_id,),
        bbox=bbox,
        datetime_start=start,
        datetime_end=end,
        limit=MAX_ITEMS + 1,
        visible=policy.visible_filter(principal),
        count=False,
    )
    items = catalog.search(query).items
    if len(items) > MAX_ITEMS:
        from eoshare.processing.errors import ProcessGraphComplexity

        raise ProcessGraphComplexity(
            f"load_collection of '{collection_id}' would read more than {MAX_ITEMS} scenes: "
            "narrow the spatial or temporal extent"
        )
    all_bands: dict[str, Band] = {}
    for item in items:
        for b in item_bands(item):
            all_bands.setdefault(b.name, b)
    if bands:
        by_common = {b.common_name: b for b in all_bands.values() if b.common_name}
        chosen: list[Band] = []
        for name in bands:
            band = all_bands.get(name) or by_common.get(name)
            if band is None:
                if not items:
                    break
                raise ProcessParameterInvalid(
                    f"The value passed for parameter 'bands' in process 'load_collection' is "
                    f"invalid: collection '{collection_id}' has no band {name!r} (it has "
                    f"{', '.join(sorted(all_bands)) or 'none'})"
                )
            chosen.append(band)
    else:
        chosen = list(all_bands.values())
    out = CollectionInput(collection=collection_id, bands=chosen)
    reasons: list[str] = []
    for item in items:
        keep = dict(item)
        assets: JSON = {}
        refused = None
        grants: list[AssetGrant] = []
        for band in chosen:
            result = gate.try_grant(principal, item, band.asset, Action.PROCESS)
            if isinstance(result, NotFoundError):
                continue  # not held here (or not in this scene)
            if not isinstance(result, AssetGrant):
                refused = result.detail
                break
            grants.append(result)
        if refused is not None:
            reasons.append(refused)
            continue
        for grant in grants:
            path, env = store.gdal_path(grant.store_key)
            out.gdal_env.update(env)
            assets[grant.asset_key] = {**grant.asset, "href": path}
            if grant.decision.kind == "reduced" and grant.decision.max_resolution_m is not None:
                out.max_resolution_m = max(
                    out.max_resolution_m or 0.0, grant.decision.max_resolution_m
                )
        if not assets:
            continue
        keep["assets"] = assets
        out.items.append(keep)
        for grant in grants:
            size = int(grant.asset.get("file:size") or 0)
            grant.reserve(size)(size)  # the process quota, and the audit log
            agreement = grant.decision.agreement
            if agreement and agreement not in out.agreements:
                out.agreements.append(agreement)
    if not out.items and reasons:
        raise PermissionsInsufficient(reasons[0])
    return out
