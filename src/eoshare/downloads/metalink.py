"""Metalink 4 (RFC 5854) documents for download managers (aria2, DownThemAll, wget2):
one ``<file>`` per asset with its size, sha-256 and URL, so the manager can resume,
verify and fetch in parallel."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

NAMESPACE = "urn:ietf:params:xml:ns:metalink"
MEDIA_TYPE = "application/metalink4+xml"


@dataclass(frozen=True)
class MetalinkFile:
    name: str  # a relative path: "collection/item/asset.tif"
    url: str
    size: int | None = None
    sha256: str | None = None


def metalink(files: Iterable[MetalinkFile], *, generator: str, published: float) -> str:
    when = datetime.fromtimestamp(published, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<metalink xmlns="{NAMESPACE}">',
        f"  <generator>{escape(generator)}</generator>",
        f"  <published>{when}</published>",
    ]
    for f in files:
        lines.append(f"  <file name={quoteattr(f.name)}>")
        if f.size is not None:
            lines.append(f"    <size>{f.size}</size>")
        if f.sha256:
            lines.append(f'    <hash type="sha-256">{escape(f.sha256)}</hash>')
        lines.append(f"    <url>{escape(f.url)}</url>")
        lines.append("  </file>")
    lines.append("</metalink>")
    return "\n".join(lines) + "\n"
