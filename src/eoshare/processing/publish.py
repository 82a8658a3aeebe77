"""Results published back: a finished job's files become a STAC item, with provenance,
in a collection of the caller's member under the strictest agreement of the inputs.

Agreements are per collection and visibility is decided per collection, so a result goes
to ``results-<member>`` when every input lets derived products be open, and otherwise to
``results-<member>-<digest>``: a collection whose agreement is the strictest combination
of its inputs' agreements (``strictest``). Whoever could not see every input cannot see
the result.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from eoshare.access.agreements import ACCESS_LEVELS, Agreement
from eoshare.processing.execute import Output

JSON = dict[str, Any]
_SAFE = re.compile(r"[^a-z0-9_.-]+")


def strictest(inputs: list[Agreement | None], *, collection: str, owner: str) -> Agreement | None:
    """The agreement of products derived from ``inputs`` (None: an input with no agreement,
    open on this node). None when every input lets derived products be open.

    A member may see the result only if it could see every input: the strictest access
    level, the partners every restricted input shares, the longest embargo, no reduced
    view unless every input has one (then the coarsest), every licence and term."""
    real = [a for a in inputs if a is not None]
    if all(a.derived_open or a.access == "open" for a in real):
        return None
    restricted = [a for a in real if not (a.derived_open or a.access == "open")]
    level = max((ACCESS_LEVELS.index(a.access) for a in restricted), default=0)
    access = ACCESS_LEVELS[level]
    partners: frozenset[str] = frozenset()
    if access == "partners":
        sets = [
            a.partners | {a.provider} for a in restricted if a.access in ("partners", "provider")
        ]
        partners = frozenset.intersection(*sets) - {owner} if sets else frozenset()
    embargoes = [a.embargo_days for a in restricted if a.embargo_days is not None]
    reduced = [a.reduced_resolution_m for a in restricted]
    licences = sorted({a.licence for a in real if a.licence})
    terms = [a.terms for a in restricted if a.terms]
    return Agreement(
        collection=collection,
        provider=owner,
        access=access,
        partners=partners,
        embargo_days=max(embargoes) if embargoes else None,
        embargo_opens_to=(
            "members"
            if any(a.embargo_opens_to == "members" for a in restricted if a.embargo_days)
            else "public"
        ),
        reduced_resolution_m=(
            max(r for r in reduced if r is not None)
            if reduced and all(r is not None for r in reduced)
            else None
        ),
        licence="; ".join(licences) if licences else None,
        terms="\n\n".join(dict.fromkeys(terms)) if terms else None,
        disaster_release=all(a.disaster_release for a in restricted),
    )


def results_collection_id(owner: str, agreement: Agreement | None) -> str:
    """``results-<owner>`` for open results, ``results-<owner>-<digest of the terms>``."""
    base = f"results-{_SAFE.sub('-', owner.lower())}"
    if agreement is None:
        return base
    terms = {k: v for k, v in agreement.to_dict().items() if k != "collection"}
    digest = hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).hexdigest()[:10]
    return f"{base}-{digest}"


def results_collection(cid: str, owner: str, agreement: Agreement | None) -> JSON:
    kind = "open" if agreement is None else agreement.summary()
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "title": f"Processing results of {owner}",
        "description": (
            f"Results of openEO jobs run on this node by users of {owner}. Sharing: {kind}"
        ),
        "license": (agreement.licence if agreement and agreement.licence else "other"),
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


def software() -> dict[str, str]:
    out = {}
    for pkg in (
        "eoshare",
        "openeo-processes-dask",
        "openeo-pg-parser-networkx",
        "dask",
        "odc-stac",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def _instant(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def result_item(
    *,
    job_id: str,
    collection: str,
    process: JSON,
    outputs: list[Output],
    keys: list[str],
    sizes: list[JSON],
    inputs: list[JSON],
    title: str | None,
    owner_user: str | None,
) -> JSON:
    """The STAC item of one job's results. ``inputs`` are the input items (collection +
    id + datetime), ``keys`` the store keys of ``outputs``, ``sizes`` their file fields."""
    boxes = [o.bbox for o in outputs if o.bbox]
    if boxes:
        bbox = [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
    else:
        bbox = [-180.0, -90.0, 180.0, 90.0]
    w, s, e, n = bbox
    geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    # in time order, not text order: "…:25Z" is before "…:25.405Z" (fractions sort after)
    times = sorted(
        {str(i["datetime"]) for i in inputs if i.get("datetime")}
        | {o.datetime for o in outputs if o.datetime},
        key=_instant,
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    props: JSON = {
        "title": title or f"Result of job {job_id}",
        "created": now,
        "processing:lineage": json.dumps(process, sort_keys=True),
        "processing:software": software(),
        "processing:facility": "eoshare",
        "eoshare:job": job_id,
    }
    if owner_user:
        props["eoshare:owner"] = owner_user
    if len(times) <= 1:
        props["datetime"] = times[0] if times else now
    else:
        props["datetime"] = times[-1]
        props["start_datetime"] = times[0]
        props["end_datetime"] = times[-1]
    epsgs = {o.epsg for o in outputs if o.epsg}
    if len(epsgs) == 1:
        props["proj:code"] = f"EPSG:{epsgs.pop()}"
    assets: JSON = {}
    for n, (out, key, size) in enumerate(zip(outputs, keys, sizes, strict=True)):
        name = "result" if n == 0 else f"result-{n}"
        asset: JSON = {
            "href": key,
            "type": out.media_type,
            "roles": ["data"],
            "title": out.path.name,
            "eoshare:key": key,
            **size,
        }
        if out.shape:
            asset["proj:shape"] = list(out.shape)
        if out.transform:
            asset["proj:transform"] = out.transform
        if out.datetime:
            asset["datetime"] = out.datetime
        assets[name] = asset
    links = [
        {
            "rel": "derived_from",
            "href": f"../../{i['collection']}/items/{i['id']}",
            "type": "application/geo+json",
            "title": f"{i['collection']}/{i['id']}",
        }
        for i in inputs
    ]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/file/v2.1.0/schema.json",
        ],
        "id": job_id,
        "collection": collection,
        "bbox": bbox,
        "geometry": geometry,
        "properties": props,
        "links": links,
        "assets": assets,
    }
