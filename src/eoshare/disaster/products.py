"""Value-added products of an activation: the hazard's analysis over the best pre/post pair,
run by the processing engine and published in the activation's collection with a map
image (PNG) and a one-page report (PDF).

* flood: water extent (``flood_extent``: NDWI > 0, or ``flood_extent_sar`` for radar) of
  each date, and its difference (1 new water, -1 water gone);
* fire: NBR of each date, dNBR = pre - post in the USGS burn severity classes;
* other hazards: NDVI of each date and its change (post - pre).

The engine computes the per-date layer (one ``load_collection`` over the pair's dates
through the access module's gate, so only what the requesting member may process is
read); the pair's difference is taken here with numpy. The product goes to
``activation-<id>`` under the strictest agreement of its inputs
(``eoshare.processing.publish.strictest``): whoever could not see the inputs cannot see
the product. A new post-event scene re-makes it in the background (``on_post_event``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from eoshare.access.base import Principal
from eoshare.access.policy import is_operator
from eoshare.disaster.service import DisasterServices
from eoshare.disaster.store import ActivationRow, iso, parse_iso
from eoshare.errors import (
    AccessDeniedError,
    ConflictError,
    EoshareError,
    NotFoundError,
)
from eoshare.ingest.checksums import multihash_sha256, sha256_file
from eoshare.processing import publish
from eoshare.processing.algorithms import DNBR_CLASSES
from eoshare.processing.execute import Output

JSON = dict[str, Any]
log = logging.getLogger("eoshare.disaster.products")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
FLOOD_CLASSES = (
    (-1, "water receded", "#d8b365"),
    (0, "no change", "#f0f0f0"),
    (1, "new water (flooded)", "#2166ac"),
    (2, "water before and after", "#92c5de"),
)
DNBR_COLOURS = ("#1a9850", "#91cf60", "#d9d9d9", "#fee08b", "#fdae61", "#f46d43", "#a50026")


@dataclass
class Analysis:
    kind: str  # "flood", "fire", "change"
    process: str  # the engine's per-date process
    title: str


def analysis_for(hazard: str, radar: bool) -> Analysis:
    if hazard == "flood":
        how = " (SAR backscatter)" if radar else " (NDWI)"
        process = "flood_extent_sar" if radar else "flood_extent"
        return Analysis("flood", process, "Flood extent before/after" + how)
    if hazard == "fire":
        return Analysis("fire", "nbr", "Burn severity (dNBR, USGS classes)")
    return Analysis("change", "ndvi", "Vegetation change (NDVI post - pre)")


NEEDS = {"flood_extent": ("green", "nir"), "nbr": ("nir", "nir08", "swir22"),
         "ndvi": ("red", "nir")}  # fmt: skip


def _bands(item: JSON, process: str) -> list[str] | None:
    """The item's bands the process reads (by common name); None: all of them (radar)."""
    from eoshare.processing.inputs import item_bands

    need = NEEDS.get(process)
    if need is None:
        return None
    names = [b.name for b in item_bands(item) if b.common_name in need]
    return names or None


def _graph(
    collection: str, bbox: list[float], start: str, end: str, process: str, bands: Any = None
) -> JSON:
    w, s, e, n = bbox
    load: JSON = {"id": collection, "spatial_extent": {"west": w, "south": s, "east": e,
                  "north": n}, "temporal_extent": [start, end]}  # fmt: skip
    if bands:
        load["bands"] = bands
    return {
        "load": {"process_id": "load_collection", "arguments": load},
        "index": {"process_id": process, "arguments": {"data": {"from_node": "load"}}},
        "save": {
            "process_id": "save_result",
            "arguments": {"data": {"from_node": "index"}, "format": "GTiff"},
            "result": True,
        },
    }


def _z(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pixel_areas_km2(transform: Any, crs: Any, shape: tuple[int, int]) -> Any:
    """The area of each pixel in km²: exact for a projected CRS in metres (UTM), on the
    sphere of the authalic radius for a geographic CRS (rows differ by latitude)."""
    h, w = shape
    if crs is not None and not crs.is_geographic:
        return np.full(shape, abs(transform.a * transform.e) / 1e6, dtype="float64")
    r = 6371.0072  # authalic radius, km
    tops = transform.f + transform.e * np.arange(h)
    bottoms = tops + transform.e
    band = np.abs(np.sin(np.radians(tops)) - np.sin(np.radians(bottoms)))
    row = r * r * math.radians(abs(transform.a)) * band
    return np.repeat(row[:, None], w, axis=1)


def compute(kind: str, before: Any, after: Any) -> Any:
    """The product of one pair of per-date layers (float arrays, NaN where no data)."""
    if kind == "flood":
        out = np.where(np.isnan(before) | np.isnan(after), np.nan, after - before)
        both = (before == 1) & (after == 1)
        return np.where(both, 2.0, out).astype("float32")
    if kind == "fire":
        dnbr = before - after
        classes = np.zeros(dnbr.shape, dtype="uint8")  # 0: no data
        lower = -np.inf
        for upper, code, _ in DNBR_CLASSES:
            classes[(dnbr >= lower) & (dnbr < upper)] = code
            lower = upper
        return classes
    return (after - before).astype("float32")


def statistics(kind: str, product: Any, before: Any, after: Any, areas: Any) -> JSON:
    valid = ~np.isnan(product) if product.dtype.kind == "f" else product > 0
    stats: JSON = {"valid_area_km2": round(float(areas[valid].sum()), 3)}
    if kind == "flood":
        stats["water_before_km2"] = round(float(areas[before == 1].sum()), 3)
        stats["water_after_km2"] = round(float(areas[after == 1].sum()), 3)
        stats["flooded_area_km2"] = round(float(areas[product == 1].sum()), 3)
        stats["receded_area_km2"] = round(float(areas[product == -1].sum()), 3)
    elif kind == "fire":
        stats["classes_km2"] = {
            label: round(float(areas[product == code].sum()), 3) for _, code, label in DNBR_CLASSES
        }
        stats["burned_area_km2"] = round(float(areas[product >= 4].sum()), 3)
    else:
        d = product[valid]
        stats["mean_ndvi_change"] = round(float(d.mean()), 4) if d.size else None
        stats["loss_area_km2"] = round(float(areas[valid & (product < -0.1)].sum()), 3)
        stats["gain_area_km2"] = round(float(areas[valid & (product > 0.1)].sum()), 3)
    return stats


def headline(kind: str, stats: JSON) -> str:
    if kind == "flood":
        return f"Flooded area (new water): {stats['flooded_area_km2']:.3f} km2"
    if kind == "fire":
        return f"Burned area (dNBR >= 0.1): {stats['burned_area_km2']:.3f} km2"
    return (
        f"NDVI loss area (change < -0.1): {stats['loss_area_km2']:.3f} km2; "
        f"mean NDVI change {stats['mean_ndvi_change']}"
    )


class ProductService:
    """Makes, publishes and lists an activation's value-added products."""

    def __init__(self, disaster: DisasterServices, processing: Any, *, workers: int = 1) -> None:
        self.disaster = disaster
        self.processing = processing
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="product")
        self._pending: set[str] = set()
        self._again: set[str] = set()
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self._making: dict[str, threading.Lock] = {}  # one product run per activation at a time
        disaster.activations.on_post_event.append(self.post_event)
        disaster.activations.products_of = self.products

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- automatic ----------------------------------------------------------------------
    def post_event(self, a: ActivationRow, item: JSON) -> None:
        """The post-event hook: (re)make the activation's product in the background; a
        scene arriving while one is made makes it once more afterwards. Products
        themselves (in the activation's collection) are not scenes."""
        if _is_product(item):
            return
        with self._lock:
            if a.id in self._pending:
                self._again.add(a.id)
                return
            self._pending.add(a.id)
        self._pool.submit(self._auto, a.id)

    def _auto(self, aid: str) -> None:
        while True:
            try:
                self.make(None, aid, trigger="post-event scene")
            except Exception as exc:  # a failed product must not stop the next one
                self.errors.append(f"{aid}: {exc}")
                log.warning("product failed", extra={"activation": aid, "error": str(exc)})
            with self._lock:
                if aid in self._again:
                    self._again.discard(aid)
                    continue
                self._pending.discard(aid)
                return

    def wait_idle(self, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.1)
        return False

    # --- listing --------------------------------------------------------------------------
    def products(self, aid: str) -> list[JSON]:
        import orjson

        rows = self.disaster.store.products(aid)
        return [
            {"collection": c, "item": i, "created": cr, "trigger": t,
             "seconds_from_approval": s, "statistics": orjson.loads(st)}
            for i, c, cr, t, s, st in rows
        ]  # fmt: skip

    # --- making -----------------------------------------------------------------------------
    def make(self, principal: Principal | None, aid: str, *, trigger: str = "request") -> JSON:
        """Make and publish the product of activation ``aid``. ``principal`` (None: the
        node itself, for the hook) must be an operator or a user of the requesting member."""
        acts = self.disaster.activations
        a = acts._row(aid)
        if principal is not None and not (is_operator(principal) or principal.member == a.member):
            acts.get(principal, aid)  # 404 for who may not see it
            raise AccessDeniedError(
                "Only operators and users of the requesting member make products."
            )
        if a.state != "active":
            raise ConflictError(
                f"activation {aid} is {a.state}: products are made for active activations "
                "(approved, with a post-event scene)"
            )
        runner = Principal(user=a.requested_by, member=a.member)
        pre, post = self.best_pair(runner, aid)
        radar = any(k.startswith("sar:") for k in post.get("properties", {}))
        analysis = analysis_for(a.hazard, radar)
        collection = str(post["collection"])
        pre_t = parse_iso(str(pre["properties"]["datetime"]))
        post_t = parse_iso(str(post["properties"]["datetime"]))
        bbox = _bbox_of_area(a.area)
        graph = _graph(collection, bbox, _z(pre_t), _z(post_t + timedelta(seconds=1)),
                       analysis.process, _bands(post, analysis.process))  # fmt: skip
        with self._lock:
            making = self._making.setdefault(aid, threading.Lock())
        with making:
            workdir = Path(tempfile.mkdtemp(prefix="product-", dir=self.processing.work_dir))
            try:
                layers = self._run(runner, graph, workdir)
                return self._finish(a, analysis, pre, post, graph, layers, workdir, trigger)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

    def best_pair(self, runner: Principal, aid: str) -> tuple[JSON, JSON]:
        """The best-ranked post-event scene, and the best pre-event scene of its collection."""
        feats = [f for f in self.disaster.archive(runner, aid)["features"] if not _is_product(f)]
        posts = [f for f in feats if f["properties"]["eoshare:phase"] == "post"]
        if not posts:
            raise ConflictError(f"activation {aid} has no post-event scene yet")
        post = posts[0]
        pres = [
            f
            for f in feats
            if f["properties"]["eoshare:phase"] == "pre" and f["collection"] == post["collection"]
        ]
        if not pres:
            raise ConflictError(
                f"activation {aid} has no pre-event scene in {post['collection']} to compare with"
            )
        return pres[0], post

    def _run(self, runner: Principal, graph: JSON, workdir: Path) -> list[Output]:
        from eoshare.processing.execute import Run
        from eoshare.processing.registry import make_registry, own_processes
        from eoshare.processing.service import _guarded

        proc = self.processing
        proc.check(runner, graph)
        run = Run(proc._resolver(runner), workdir, max_pixels=proc.sync_max_pixels,
                  dask_address=proc.dask_address)  # fmt: skip
        _, outputs = _guarded(lambda: run.execute(graph, make_registry(own_processes(run))))
        if len(outputs) < 2:
            raise ConflictError("the pre- and post-event scenes fall on the same day")
        return sorted(outputs, key=lambda o: o.datetime or "")

    def _finish(
        self,
        a: ActivationRow,
        analysis: Analysis,
        pre: JSON,
        post: JSON,
        graph: JSON,
        layers: list[Output],
        workdir: Path,
        trigger: str,
    ) -> JSON:
        import rasterio

        with rasterio.open(layers[0].path) as src:
            before = src.read(1).astype("float64")
            profile = src.profile
            transform, crs = src.transform, src.crs
        with rasterio.open(layers[-1].path) as src:
            after = src.read(1).astype("float64")
        product = compute(analysis.kind, before, after)
        areas = pixel_areas_km2(transform, crs, product.shape)
        stats = statistics(analysis.kind, product, before, after, areas)
        tif = workdir / "product.tif"
        profile.update(count=1, dtype=str(product.dtype), compress="deflate",
                       nodata=0 if product.dtype == np.uint8 else float("nan"))  # fmt: skip
        for k in ("blockxsize", "blockysize", "tiled"):
            profile.pop(k, None)
        with rasterio.open(tif, "w", **profile) as dst:
            dst.write(product, 1)
        agreements = [self.processing._agreement(str(post["collection"]))]
        cid = f"activation-{_SAFE.sub('-', a.id)}"
        agreement = publish.strictest(agreements, collection=cid, owner=a.member)
        licence = (agreements[0].licence if agreements[0] else None) or "see the collection"
        scenes = [f"{x['collection']}/{x['id']}" for x in (pre, post)]
        pre_t = str(pre["properties"]["datetime"])
        post_t = str(post["properties"]["datetime"])
        from eoshare.disaster import product_render

        facts = product_render.Facts(
            title=f"{a.title or a.hazard.title()} - {analysis.title}",
            activation=a.id,
            hazard=a.hazard,
            kind=analysis.kind,
            area=a.area,
            area_km2=_area_km2(a.area),
            event=_z(a.event_time),
            pre=pre_t,
            post=post_t,
            scenes=scenes,
            sources=f"{post['collection']} (licence: {licence})",
            headline=headline(analysis.kind, stats),
            stats=stats,
        )
        png = workdir / "map.png"
        pdf = workdir / "report.pdf"
        product_render.map_png(product, transform, crs, facts, png)
        product_render.report_pdf(facts, png, pdf)
        item_id = _SAFE.sub("-", f"{a.id}-{analysis.kind}-{post['id']}")
        self.processing._ensure_collection(cid, a.member, agreement, Principal(user="system"))
        outputs = [
            Output(tif, "image/tiff; application=geotiff; profile=cloud-optimized", "GTIFF",
                   bbox=layers[-1].bbox, datetime=layers[-1].datetime, shape=product.shape,
                   epsg=layers[-1].epsg, transform=layers[-1].transform),
            Output(png, "image/png", "PNG"),
            Output(pdf, "application/pdf", "PDF"),
        ]  # fmt: skip
        store = self.processing.store
        catalog = self.disaster.catalog
        keys: list[str] = []
        sizes: list[JSON] = []
        try:
            for out in outputs:
                key = f"{cid}/{item_id}/{out.path.name}"
                stored = store.put_file(key, out.path)
                keys.append(key)
                digest = stored.sha256.split(":", 1)[1] if stored.sha256 else sha256_file(out.path)
                sizes.append({"file:size": stored.size, "file:checksum": multihash_sha256(digest)})
            item = publish.result_item(
                job_id=item_id, collection=cid, process=graph, outputs=outputs, keys=keys,
                sizes=sizes, owner_user=None, title=facts.title,
                inputs=[{"collection": x["collection"], "id": x["id"],
                         "datetime": x["properties"]["datetime"]} for x in (pre, post)],
            )  # fmt: skip
            item["geometry"] = a.area
            renamed = dict(zip(("product", "map", "report"), item["assets"].values(), strict=True))
            renamed["map"]["roles"] = ["overview", "visual"]
            renamed["report"]["roles"] = ["metadata", "report"]
            item["assets"] = renamed
            props = item["properties"]
            props["datetime"] = post_t
            props["start_datetime"], props["end_datetime"] = pre_t, post_t
            props.update({"eoshare:activation": a.id, "eoshare:hazard": a.hazard,
                          "eoshare:analysis": analysis.kind, "eoshare:statistics": stats,
                          "eoshare:scenes": scenes})  # fmt: skip
            with contextlib.suppress(NotFoundError):
                catalog.delete_item(cid, item_id)
            catalog.create_item(cid, item)
        except BaseException:
            for key in keys:
                with contextlib.suppress(EoshareError):
                    store.delete(key)
            raise
        now = self.disaster.now()
        seconds = (now - a.approved_at).total_seconds() if a.approved_at else 0.0
        import orjson

        self.disaster.store.record_product(
            (a.id, item_id, cid, iso(now), trigger, seconds, orjson.dumps(stats).decode())
        )
        return {"collection": cid, "item": item_id, "statistics": stats, "scenes": scenes,
                "seconds_from_approval": seconds}  # fmt: skip


def _is_product(item: JSON) -> bool:
    props = item.get("properties") or {}
    return "eoshare:activation" in props or "processing:lineage" in props


def _bbox_of_area(area: JSON) -> list[float]:
    from shapely.geometry import shape

    return [float(v) for v in shape(area).bounds]


def _area_km2(area: JSON) -> float:
    from pyproj import Geod
    from shapely.geometry import shape

    value, _ = Geod(ellps="WGS84").geometry_area_perimeter(shape(area))
    return abs(float(value)) / 1e6
