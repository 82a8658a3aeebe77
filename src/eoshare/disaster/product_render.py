"""The map image (PNG) and the one-page report (PDF) of a value-added product, drawn with
matplotlib's Agg and PDF backends (no network, no display): the product with the
activation's area outlined, a legend, a scale bar, a north arrow, the dates, the sources
and their licences; the report adds the area, the scenes and the statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Patch, Rectangle

from eoshare.processing.algorithms import DNBR_CLASSES

JSON = dict[str, Any]
MAP_SIZE_PX = (1200, 900)
DPI = 100
# the web UI's offline base map: Natural Earth 1:110m countries (world-atlas, TopoJSON)
WORLD = Path(__file__).resolve().parent.parent / "web/static/vendor/world-atlas/countries-110m.json"


def world_arcs() -> list[Any]:
    """The country borders and coasts of the offline base map, as lon/lat polylines."""
    import json

    try:
        topo = json.loads(WORLD.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    sx, sy = topo["transform"]["scale"]
    tx, ty = topo["transform"]["translate"]
    out = []
    for arc in topo["arcs"]:
        q = np.cumsum(np.asarray(arc, dtype="float64"), axis=0)  # delta-encoded
        out.append(np.column_stack((q[:, 0] * sx + tx, q[:, 1] * sy + ty)))
    return out


@dataclass
class Facts:
    title: str
    activation: str
    hazard: str
    kind: str
    area: JSON
    area_km2: float
    event: str
    pre: str
    post: str
    scenes: list[str]
    sources: str
    headline: str
    stats: JSON


def _style(kind: str) -> tuple[Any, Any, list[Patch] | None, str]:
    from eoshare.disaster.products import DNBR_COLOURS, FLOOD_CLASSES

    if kind == "flood":
        cmap = ListedColormap([c for _, _, c in FLOOD_CLASSES])
        norm = BoundaryNorm([-1.5, -0.5, 0.5, 1.5, 2.5], cmap.N)
        patches = [Patch(color=c, label=label) for _, label, c in FLOOD_CLASSES]
        return cmap, norm, patches, "Water change"
    if kind == "fire":
        cmap = ListedColormap(list(DNBR_COLOURS))
        norm = BoundaryNorm([0.5 + i for i in range(8)], cmap.N)
        patches = [
            Patch(color=DNBR_COLOURS[code - 1], label=label) for _, code, label in DNBR_CLASSES
        ]
        return cmap, norm, patches, "Burn severity (dNBR)"
    from matplotlib.colors import Normalize

    return plt.get_cmap("BrBG"), Normalize(-0.5, 0.5), None, "NDVI change"


def _nice(length: float) -> float:
    exp = 10 ** np.floor(np.log10(length))
    for m in (5, 2, 1):
        if m * exp <= length:
            return float(m * exp)
    return float(exp)


def map_png(product: Any, transform: Any, crs: Any, facts: Facts, path: Path) -> None:
    """The map image: 1200 x 900 px."""
    from rasterio.warp import transform_geom

    h, w = product.shape
    left, top = transform.c, transform.f
    right, bottom = left + transform.a * w, top + transform.e * h
    data = product.astype("float64")
    if product.dtype.kind != "f":
        data = np.where(product == 0, np.nan, data)
    cmap, norm, patches, label = _style(facts.kind)
    fig = plt.figure(figsize=(MAP_SIZE_PX[0] / DPI, MAP_SIZE_PX[1] / DPI), dpi=DPI)
    ax = fig.add_axes((0.08, 0.24, 0.58, 0.68))
    ax.set_facecolor("#e8e8e8")  # no data: light grey
    img = ax.imshow(data, extent=(left, right, bottom, top), cmap=cmap, norm=norm,
                    interpolation="nearest")  # fmt: skip
    geom = transform_geom("EPSG:4326", crs, facts.area) if crs is not None else facts.area
    rings = (
        geom["coordinates"]
        if geom["type"] == "Polygon"
        else [r for poly in geom["coordinates"] for r in poly]
    )
    for ring in rings:
        xs, ys = zip(*ring, strict=False)
        ax.plot(xs, ys, color="black", linewidth=1.5, label="activation area")
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_title(facts.title, fontsize=12)
    # scale bar (projected CRS in metres; degrees otherwise, at the centre latitude)
    width = right - left
    metres = crs is not None and not crs.is_geographic
    per_km = 1000.0 if metres else 1.0 / (111.32 * np.cos(np.radians((top + bottom) / 2)))
    km = _nice(width / per_km / 4)
    x0, y0 = left + width * 0.05, bottom + (top - bottom) * 0.05
    ax.plot([x0, x0 + km * per_km], [y0, y0], color="black", linewidth=4)
    ax.text(x0, y0 + (top - bottom) * 0.015, f"{km:g} km", fontsize=9)
    # north arrow
    ax.annotate("N", xy=(0.93, 0.95), xytext=(0.93, 0.83), xycoords="axes fraction",
                ha="center", fontsize=14, fontweight="bold",
                arrowprops={"facecolor": "black", "width": 4, "headwidth": 12})  # fmt: skip
    # legend panel
    lax = fig.add_axes((0.70, 0.40, 0.28, 0.50))
    lax.axis("off")
    lax.set_title(label, fontsize=11, loc="left")
    if patches is not None:
        area = Patch(facecolor="none", edgecolor="black", label="activation area")
        lax.legend(handles=[*patches, area], loc="upper left", fontsize=9, frameon=False)
    else:
        cax = fig.add_axes((0.72, 0.45, 0.03, 0.4))
        fig.colorbar(img, cax=cax, label="NDVI post - pre")
    _locator(fig, facts.area)
    text = (
        f"Activation {facts.activation} ({facts.hazard})\n"
        f"Event: {facts.event}\nBefore: {facts.pre}\nAfter: {facts.post}\n"
        f"{facts.headline}\nSources: {facts.sources}\nScenes: {', '.join(facts.scenes)}\n"
        f"CRS: {crs.to_string() if crs is not None else 'EPSG:4326'}; made by eoshare"
    )
    fig.text(0.08, 0.02, text, fontsize=8, va="bottom", wrap=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _locator(fig: Any, area: JSON) -> None:
    """An inset: where the area lies, over the Natural Earth countries."""
    from shapely.geometry import shape

    w, s, e, n = shape(area).bounds
    cx, cy = (w + e) / 2, (s + n) / 2
    ax = fig.add_axes((0.72, 0.05, 0.24, 0.28))
    for line in world_arcs():
        ax.plot(line[:, 0], line[:, 1], color="#777777", linewidth=0.6)
    ax.add_patch(Rectangle((w, s), e - w, n - s, facecolor="red", edgecolor="red", linewidth=2))
    ax.plot([cx], [cy], marker="o", markersize=9, markerfacecolor="none", color="red")
    ax.set_xlim(cx - 15, cx + 15)
    ax.set_ylim(cy - 11, cy + 11)
    ax.set_facecolor("#eaf2fb")
    ax.tick_params(labelsize=6)
    ax.set_title("Location (Natural Earth 1:110m, public domain)", fontsize=7)


def report_pdf(facts: Facts, map_path: Path, path: Path) -> None:
    """One A4 page: the facts, the statistics and the map."""
    plt.rcParams["pdf.fonttype"] = 42  # real text, extractable
    fig = plt.figure(figsize=(8.27, 11.69))
    lines = [
        (facts.title, 14, "bold"),
        (f"Activation {facts.activation} - hazard: {facts.hazard}", 10, "normal"),
        (f"Area: {facts.area_km2:.1f} km2, bbox {_bbox_text(facts.area)}", 10, "normal"),
        (f"Event time: {facts.event}", 10, "normal"),
        (f"Pre-event scene date: {facts.pre}", 10, "normal"),
        (f"Post-event scene date: {facts.post}", 10, "normal"),
        (f"Scenes used: {'; '.join(facts.scenes)}", 9, "normal"),
        (f"Sources: {facts.sources}", 9, "normal"),
        (facts.headline, 11, "bold"),
    ]
    for key, value in facts.stats.items():
        if isinstance(value, dict):
            for k, v in value.items():
                lines.append((f"  {k}: {v} km2", 8, "normal"))
        else:
            lines.append((f"{key}: {value}", 8, "normal"))
    y = 0.96
    for text, size, weight in lines:
        fig.text(0.07, y, text, fontsize=size, fontweight=weight, va="top")
        y -= 0.022 if size < 11 else 0.03
    img = plt.imread(str(map_path))
    ax = fig.add_axes((0.05, 0.03, 0.9, max(0.2, y - 0.05)))
    ax.imshow(img)
    ax.axis("off")
    with PdfPages(path) as pdf:
        pdf.savefig(fig)
    plt.close(fig)


def _bbox_text(area: JSON) -> str:
    from shapely.geometry import shape

    w, s, e, n = shape(area).bounds
    return f"W {w:.4f} S {s:.4f} E {e:.4f} N {n:.4f}"
