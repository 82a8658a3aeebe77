"""The browser UI: a map on which to search, preview and download, in six languages.

Everything the browser loads lives in ``static/`` inside this package and is served by
eoshare itself under ``/ui/`` (``eoshare.api.routes.web``), so the UI works offline:

* ``static/index.html`` — the one page; ``__BASE__``, ``__LANG__``, ``__DIR__`` and
  ``__NOSCRIPT__`` are filled in per request by :func:`index_html`;
* ``static/js/`` — plain JavaScript modules (no framework), ``static/css/`` — the style;
* ``static/i18n/<lang>.json`` — the UI's strings, one file per UN language, same keys;
* ``static/vendor/`` — Leaflet, topojson-client and Natural Earth outlines, copied from
  npm packages pinned in ``web/package-lock.json`` by ``make web``.

The UI speaks only the public STAC API and follows the links and assets of the
documents it gets (tiles, downloads), so it needs nothing from here but these files.
No HTTP in this module: the router is in ``eoshare.api.routes.web``.
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
from importlib.resources import files
from pathlib import Path

STATIC = Path(str(files("eoshare.web") / "static"))

# the six UN languages; the first is the default
LANGUAGES: tuple[str, ...] = ("en", "ar", "zh", "fr", "ru", "es")
DEFAULT_LANGUAGE = "en"
RTL_LANGUAGES = frozenset({"ar"})


@cache
def messages(lang: str) -> dict[str, str]:
    """The UI strings of one language (``static/i18n/<lang>.json``)."""
    if lang not in LANGUAGES:
        raise KeyError(lang)
    data: dict[str, str] = json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
    return data


@cache
def _template() -> str:
    return (STATIC / "index.html").read_text("utf-8")


def negotiate_language(accept_language: str | None) -> str:
    """The best of the UI's languages for an ``Accept-Language`` header (RFC 9110)."""
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        # earlier entries win ties, as browsers list preferences in order
        q -= position * 1e-6
        if q > best_q:
            best, best_q = primary, q
    return best


def index_html(
    base_href: str,
    lang: str = DEFAULT_LANGUAGE,
    *,
    basemap_url: str = "",
    basemap_attribution: str = "",
) -> str:
    """The UI's page, with its base URL (``<root>/ui/``), first language and the online
    base map an operator configured (empty: the offline one)."""
    if lang not in LANGUAGES:
        lang = DEFAULT_LANGUAGE
    return (
        _template()
        .replace("__BASEMAP_URL__", escape(basemap_url, quote=True))
        .replace("__BASEMAP_ATTRIBUTION__", escape(basemap_attribution, quote=True))
        .replace("__BASE__", escape(base_href, quote=True))
        .replace("__LANG__", lang)
        .replace("__DIR__", "rtl" if lang in RTL_LANGUAGES else "ltr")
        .replace("__NOSCRIPT__", escape(messages(lang)["app.noscript"]))
    )
