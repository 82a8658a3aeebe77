"""OGC WMTS 1.0 capabilities (RESTful encoding), so that QGIS, OpenLayers, ArcGIS and
OWSLib can add an item or a collection mosaic as a layer. Built from morecantile's tile
matrix sets; the tile URLs are templates the API fills in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    import morecantile


@dataclass(frozen=True)
class WmtsLayer:
    """One layer: its identifier, bounds (lon/lat) and the tile URL template, written with
    WMTS's ``{TileMatrix}``, ``{TileCol}`` and ``{TileRow}`` placeholders."""

    identifier: str
    title: str
    bounds: tuple[float, float, float, float]
    template: str
    media_type: str
    minzoom: int
    maxzoom: int
    abstract: str = ""


def _crs_urn(tms: morecantile.TileMatrixSet) -> str:
    epsg = tms.rasterio_crs.to_epsg()
    if epsg:
        return f"urn:ogc:def:crs:EPSG::{epsg}"
    return str(tms.crs.srs)


def _limits(layer: WmtsLayer, tms: morecantile.TileMatrixSet) -> list[str]:
    west, south, east, north = layer.bounds
    # keep the corners inside the TMS (tms.tile would clamp, but not every TMS does)
    eps = 1e-9
    lines = ["      <TileMatrixSetLimits>"]
    for z in range(layer.minzoom, layer.maxzoom + 1):
        ul = tms.tile(west + eps, north - eps, z)
        lr = tms.tile(east - eps, south + eps, z)
        lines += [
            "        <TileMatrixLimits>",
            f"          <TileMatrix>{escape(str(tms.matrix(z).id))}</TileMatrix>",
            f"          <MinTileRow>{min(ul.y, lr.y)}</MinTileRow>",
            f"          <MaxTileRow>{max(ul.y, lr.y)}</MaxTileRow>",
            f"          <MinTileCol>{min(ul.x, lr.x)}</MinTileCol>",
            f"          <MaxTileCol>{max(ul.x, lr.x)}</MaxTileCol>",
            "        </TileMatrixLimits>",
        ]
    lines.append("      </TileMatrixSetLimits>")
    return lines


def _matrix_set(tms: morecantile.TileMatrixSet, maxzoom: int) -> list[str]:
    lines = [
        "    <TileMatrixSet>",
        f"      <ows:Identifier>{escape(str(tms.id))}</ows:Identifier>",
        f"      <ows:SupportedCRS>{escape(_crs_urn(tms))}</ows:SupportedCRS>",
    ]
    if tms.id == "WebMercatorQuad":
        lines.append(
            "      <WellKnownScaleSet>urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"
            "</WellKnownScaleSet>"
        )
    for z in range(0, maxzoom + 1):
        m = tms.matrix(z)
        x0, y0 = m.pointOfOrigin
        lines += [
            "      <TileMatrix>",
            f"        <ows:Identifier>{escape(str(m.id))}</ows:Identifier>",
            f"        <ScaleDenominator>{m.scaleDenominator!r}</ScaleDenominator>",
            f"        <TopLeftCorner>{x0!r} {y0!r}</TopLeftCorner>",
            f"        <TileWidth>{m.tileWidth}</TileWidth>",
            f"        <TileHeight>{m.tileHeight}</TileHeight>",
            f"        <MatrixWidth>{m.matrixWidth}</MatrixWidth>",
            f"        <MatrixHeight>{m.matrixHeight}</MatrixHeight>",
            "      </TileMatrix>",
        ]
    lines.append("    </TileMatrixSet>")
    return lines


def capabilities(
    *,
    title: str,
    url: str,
    layers: list[WmtsLayer],
    tms: morecantile.TileMatrixSet,
) -> str:
    """The capabilities document (XML text) of ``layers``, all in ``tms``; ``url`` is the
    document's own address (its ServiceMetadataURL)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<Capabilities xmlns="http://www.opengis.net/wmts/1.0"'
        ' xmlns:ows="http://www.opengis.net/ows/1.1"'
        ' xmlns:xlink="http://www.w3.org/1999/xlink"'
        ' xmlns:gml="http://www.opengis.net/gml" version="1.0.0">',
        "  <ows:ServiceIdentification>",
        f"    <ows:Title>{escape(title)}</ows:Title>",
        "    <ows:ServiceType>OGC WMTS</ows:ServiceType>",
        "    <ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion>",
        "  </ows:ServiceIdentification>",
        "  <Contents>",
    ]
    for layer in layers:
        west, south, east, north = layer.bounds
        out += [
            "    <Layer>",
            f"      <ows:Title>{escape(layer.title)}</ows:Title>",
        ]
        if layer.abstract:
            out.append(f"      <ows:Abstract>{escape(layer.abstract)}</ows:Abstract>")
        out += [
            '      <ows:WGS84BoundingBox crs="urn:ogc:def:crs:OGC:2:84">',
            f"        <ows:LowerCorner>{west!r} {south!r}</ows:LowerCorner>",
            f"        <ows:UpperCorner>{east!r} {north!r}</ows:UpperCorner>",
            "      </ows:WGS84BoundingBox>",
            f"      <ows:Identifier>{escape(layer.identifier)}</ows:Identifier>",
            '      <Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style>',
            f"      <Format>{escape(layer.media_type)}</Format>",
            "      <TileMatrixSetLink>",
            f"        <TileMatrixSet>{escape(str(tms.id))}</TileMatrixSet>",
            *["  " + line for line in _limits(layer, tms)],
            "      </TileMatrixSetLink>",
            f'      <ResourceURL format={quoteattr(layer.media_type)} resourceType="tile"'
            f" template={quoteattr(layer.template)}/>",
            "    </Layer>",
        ]
    maxzoom = max((layer.maxzoom for layer in layers), default=len(tms.tileMatrices) - 1)
    out += _matrix_set(tms, maxzoom)
    out += [
        "  </Contents>",
        f"  <ServiceMetadataURL xlink:href={quoteattr(url)}/>",
        "</Capabilities>",
        "",
    ]
    return "\n".join(out)
