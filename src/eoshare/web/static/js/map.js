// The map: an offline base map (Natural Earth country outlines), the footprints of the
// results, the preview tiles of the selected scene, and a rectangle tool for the area.
/* global L, topojson */

import { authHeaders, getJSON } from "./api.js";
import { t } from "./i18n.js";

const FOOTPRINT = { color: "#0b6e69", weight: 2, fillOpacity: 0.08 };
const HIGHLIGHT = { color: "#d9480f", weight: 3, fillOpacity: 0.18 };
const SELECTED = { color: "#d9480f", weight: 3, fillOpacity: 0, dashArray: "6 4" };

// Tiles fetched with the caller's bearer token: an <img> cannot send one itself.
const AuthTileLayer = L.TileLayer.extend({
  createTile(coords, done) {
    const tile = document.createElement("img");
    tile.alt = "";
    tile.setAttribute("role", "presentation");
    fetch(this.getTileUrl(coords), { headers: authHeaders(), credentials: "same-origin" })
      .then((response) => (response.ok ? response.blob() : Promise.reject(response.status)))
      .then((blob) => {
        const objectUrl = URL.createObjectURL(blob);
        tile.onload = () => {
          URL.revokeObjectURL(objectUrl);
          done(null, tile);
        };
        tile.onerror = () => done(new Error("tile"), tile);
        tile.src = objectUrl;
      })
      .catch((error) => done(error instanceof Error ? error : new Error(String(error)), tile));
    return tile;
  },
});

/** A CSS class name from any id. */
function cssName(text) {
  return text.replace(/[^A-Za-z0-9_-]/g, "_");
}

function linkOf(item, rel) {
  return (item.links || []).find((l) => l.rel === rel);
}

/** Leaflet wants {z}/{x}/{y} literally; a URL builder may have escaped the braces. */
function cleanTemplate(href) {
  return href.replace(/%7B/gi, "{").replace(/%7D/gi, "}");
}

// the base map switches to the 1:50m outlines from this zoom on
const FINE_BASE_ZOOM = 4;

// Natural Earth rings that cross the antimeridian jump from +180 to -180; drawn as they
// are, they make stripes across the whole map. Each ring is made continuous instead
// (longitudes may then pass 180), which Leaflet draws where the country is.
function unwrapRing(ring) {
  const out = [];
  let shift = 0;
  for (let i = 0; i < ring.length; i += 1) {
    const [lon, lat] = ring[i];
    if (i > 0) {
      const jump = lon + shift - out[i - 1][0];
      if (jump > 180) shift -= 360;
      else if (jump < -180) shift += 360;
    }
    out.push([lon + shift, lat]);
  }
  return out;
}

export function unwrapAntimeridian(collection) {
  for (const feature of collection.features) {
    const g = feature.geometry;
    if (!g) continue;
    if (g.type === "Polygon") g.coordinates = g.coordinates.map(unwrapRing);
    else if (g.type === "MultiPolygon") g.coordinates = g.coordinates.map((p) => p.map(unwrapRing));
  }
  return collection;
}

export class MapView {
  constructor(element) {
    this.map = L.map(element, {
      worldCopyJump: true,
      minZoom: 1,
      maxZoom: 18,
      zoomSnap: 0.5,
      attributionControl: false,
    }).setView([15, 40], 2);
    this.attribution = L.control.attribution({ prefix: false }).addTo(this.map);
    this.map.createPane("base").style.zIndex = 150;
    this.map.createPane("preview").style.zIndex = 250;
    this.footprints = L.featureGroup().addTo(this.map);
    this.byId = new Map();
    this.preview = null;
    this.selected = null;
    this.area = null;
    this.drawing = null;
    this.loadBaseMap();
  }

  async loadBaseMap() {
    // an online base map when the operator configured one (EOSHARE_WEB__BASEMAP_URL)
    const online = document.querySelector('meta[name="eoshare-basemap"]');
    if (online && online.content) {
      L.tileLayer(online.content, {
        pane: "base",
        maxZoom: 19,
        attribution: online.dataset.attribution || "",
      }).addTo(this.map);
      return;
    }
    // offline: Natural Earth outlines, 1:110m for the world, 1:50m once zoomed in
    const style = { color: "#9aa89f", weight: 0.7, fillColor: "#f4f1e8", fillOpacity: 1 };
    const outlines = async (scale) => {
      const response = await fetch(`vendor/world-atlas/countries-${scale}.json`);
      const topology = await response.json();
      const countries = unwrapAntimeridian(topojson.feature(topology, topology.objects.countries));
      return L.geoJSON(countries, { pane: "base", interactive: false, style });
    };
    try {
      this.baseCoarse = await outlines("110m");
      this.baseCoarse.addTo(this.map);
    } catch (error) {
      console.warn("eoshare: base map not loaded", error);
      return;
    }
    const swap = async () => {
      const fine = this.map.getZoom() >= FINE_BASE_ZOOM;
      if (fine && !this.baseFine) {
        // one fetch however many zoom events arrive while it runs
        this.baseFineLoading ??= outlines("50m");
        try {
          this.baseFine = await this.baseFineLoading;
        } catch (error) {
          console.warn("eoshare: detailed base map not loaded", error);
          return;
        }
        if (this.map.getZoom() < FINE_BASE_ZOOM) return; // zoomed out meanwhile
      }
      const [show, hide] = fine ? [this.baseFine, this.baseCoarse] : [this.baseCoarse, this.baseFine];
      if (hide && this.map.hasLayer(hide)) hide.remove();
      if (show && !this.map.hasLayer(show)) show.addTo(this.map);
    };
    this.map.on("zoomend", swap);
    await swap();
  }

  translate() {
    this.attribution.remove();
    this.attribution = L.control.attribution({ prefix: false }).addTo(this.map);
    this.attribution.addAttribution(t("map.attribution"));
  }

  showFootprints(features, { onSelect, replace = true } = {}) {
    if (replace) {
      this.footprints.clearLayers();
      this.byId.clear();
    }
    for (const feature of features) {
      if (!feature.geometry) continue;
      const key = `${feature.collection}/${feature.id}`;
      const className = `footprint footprint-${cssName(key)}`;
      // the outline, and a dot at its centre that stays visible when zoomed out
      const layer = L.featureGroup([L.geoJSON(feature, { style: { ...FOOTPRINT, className } })]);
      const center = L.geoJSON(feature).getBounds().getCenter();
      layer.addLayer(
        L.circleMarker(center, { ...FOOTPRINT, radius: 5, fillOpacity: 0.7, className: `${className} dot` }),
      );
      layer.bindTooltip(feature.properties?.title || feature.id, { sticky: true });
      layer.on("click", () => onSelect?.(feature));
      layer.addTo(this.footprints);
      this.byId.set(key, layer);
    }
  }

  footprintCount() {
    return this.byId.size;
  }

  fitFootprints() {
    const bounds = this.footprints.getBounds();
    if (bounds.isValid()) this.map.fitBounds(bounds, { padding: [24, 24], maxZoom: 12 });
  }

  highlight(key, on) {
    const layer = this.byId.get(key);
    if (!layer) return;
    layer.setStyle(on ? HIGHLIGHT : FOOTPRINT);
    if (on) layer.bringToFront();
  }

  /** Show a scene: its outline and its preview tiles (from its tilejson or xyz link). */
  async showItem(item) {
    this.clearItem();
    if (item.geometry) {
      this.selected = L.geoJSON(item, { style: SELECTED, interactive: false }).addTo(this.map);
    }
    if (item.bbox) this.zoomToBbox(item.bbox);
    const source = await this.tileSource(item);
    if (!source) return false;
    const Layer = authHeaders().Authorization ? AuthTileLayer : L.TileLayer;
    const options = {
      pane: "preview",
      minZoom: 0,
      maxZoom: 22,
      maxNativeZoom: source.maxzoom ?? 18,
      minNativeZoom: source.minzoom ?? 0,
      bounds: source.bounds,
      crossOrigin: false,
      className: "preview-tiles",
    };
    try {
      this.preview = new Layer(source.template, options).addTo(this.map);
    } catch (error) {
      console.warn("eoshare: preview tiles not shown", error);
      return false;
    }
    return true;
  }

  async tileSource(item) {
    const bbox = item.bbox;
    const bounds = bbox ? L.latLngBounds([bbox[1], bbox[0]], [bbox[3], bbox[2]]) : undefined;
    const tilejson = linkOf(item, "tilejson");
    if (tilejson) {
      try {
        const doc = await getJSON(tilejson.href);
        if (doc.tiles?.length) {
          const b = doc.bounds;
          return {
            template: cleanTemplate(doc.tiles[0]),
            minzoom: doc.minzoom,
            maxzoom: doc.maxzoom,
            bounds: b ? L.latLngBounds([b[1], b[0]], [b[3], b[2]]) : bounds,
          };
        }
      } catch (error) {
        console.warn("eoshare: tilejson not read", error);
      }
    }
    const xyz = linkOf(item, "xyz");
    if (xyz) return { template: cleanTemplate(xyz.href), bounds };
    return null;
  }

  clearItem() {
    if (this.preview) this.preview.remove();
    if (this.selected) this.selected.remove();
    this.preview = null;
    this.selected = null;
  }

  zoomToBbox(bbox) {
    this.map.fitBounds(
      [
        [bbox[1], bbox[0]],
        [bbox[3], bbox[2]],
      ],
      { padding: [24, 24], maxZoom: 13 },
    );
  }

  viewBbox() {
    const b = this.map.getBounds();
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    return [
      clamp(b.getWest(), -180, 180),
      clamp(b.getSouth(), -90, 90),
      clamp(b.getEast(), -180, 180),
      clamp(b.getNorth(), -90, 90),
    ];
  }

  showArea(bbox) {
    if (this.area) this.area.remove();
    this.area = null;
    if (!bbox) return;
    this.area = L.rectangle(
      [
        [bbox[1], bbox[0]],
        [bbox[3], bbox[2]],
      ],
      { color: "#5c3d99", weight: 2, fillOpacity: 0.05, dashArray: "4 4", interactive: false },
    ).addTo(this.map);
  }

  /** Draw a rectangle with the pointer (mouse, pen or finger); calls onDone(bbox). */
  startDrawing(onDone) {
    this.stopDrawing();
    const container = this.map.getContainer();
    container.classList.add("drawing");
    this.map.dragging.disable();
    let start = null;
    let rect = null;
    const latlngOf = (event) => this.map.mouseEventToLatLng(event);
    const down = (event) => {
      if (event.button !== undefined && event.button !== 0) return;
      start = latlngOf(event);
      container.setPointerCapture?.(event.pointerId);
      event.preventDefault();
    };
    const move = (event) => {
      if (!start) return;
      const bounds = L.latLngBounds(start, latlngOf(event));
      if (rect) rect.setBounds(bounds);
      else {
        rect = L.rectangle(bounds, { color: "#5c3d99", weight: 2, interactive: false });
        rect.addTo(this.map);
      }
    };
    const up = (event) => {
      if (!start) return;
      const end = latlngOf(event);
      const bounds = L.latLngBounds(start, end);
      start = null;
      if (rect) rect.remove();
      this.stopDrawing();
      const wrapped = [bounds.getSouthWest().wrap(), bounds.getNorthEast().wrap()];
      const bbox = [wrapped[0].lng, wrapped[0].lat, wrapped[1].lng, wrapped[1].lat];
      if (bbox[0] !== bbox[2] && bbox[1] !== bbox[3]) onDone(bbox);
      else onDone(null);
    };
    container.addEventListener("pointerdown", down);
    container.addEventListener("pointermove", move);
    container.addEventListener("pointerup", up);
    this.drawing = () => {
      container.removeEventListener("pointerdown", down);
      container.removeEventListener("pointermove", move);
      container.removeEventListener("pointerup", up);
      container.classList.remove("drawing");
      this.map.dragging.enable();
      if (rect) rect.remove();
    };
  }

  stopDrawing() {
    if (this.drawing) {
      const stop = this.drawing;
      this.drawing = null;
      stop();
    }
  }

  invalidate() {
    this.map.invalidateSize();
  }
}
