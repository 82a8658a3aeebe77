"""The browser UI's page and static files, under ``/ui/``; and the negotiation that
gives a browser asking ``/`` for HTML the UI instead of the STAC landing page.

The files are in the ``eoshare.web`` package (``eoshare/web/static``). None of these
routes is part of the API, so they are left out of the OpenAPI document.
"""

from __future__ import annotations

import gzip
import mimetypes
import os
from functools import lru_cache
from pathlib import Path
from stat import S_ISREG
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import FileResponse, Response

from eoshare import web
from eoshare.api.links import base_url
from eoshare.errors import NotFoundError

router = APIRouter(tags=["Web UI"], include_in_schema=False)

# The page is small and changes with each release: browsers revalidate it (ETag) every
# time rather than keep a stale copy that loads scripts of another version.
REVALIDATE = "no-cache"
SECURITY_HEADERS = {
    # no inline script or style anywhere in the UI; tiles and thumbnails may come from
    # wherever an item's links point (a peer node, an object store)
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data: blob: http: https:; connect-src 'self' http: https:; "
        "font-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
# text files are sent gzip-compressed to clients that accept it, compressed once per
# version of the file (the app-wide GZip middleware would compress on every request)
_COMPRESSIBLE = {".js", ".css", ".json", ".svg", ".html", ".txt"}
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_JSON_TYPES = ("application/json", "application/geo+json", "application/ld+json")


def _accept_q(accept: str, wanted: tuple[str, ...]) -> float:
    """The highest q the Accept header gives any of ``wanted``, by exact type only."""
    best = 0.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() not in wanted:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = max(best, q)
    return best


def prefers_html(accept: str | None) -> bool:
    """Whether a client asked for HTML before JSON: browsers do, STAC clients don't.

    Only explicit ``text/html`` counts; ``*/*`` (or no header) keeps the JSON that every
    STAC client expects at ``/``. JSON is compared with its own q, or with ``*/*``'s."""
    if not accept:
        return False
    html_q = _accept_q(accept, _HTML_TYPES)
    if html_q <= 0:
        return False
    json_q = max(_accept_q(accept, _JSON_TYPES), _accept_q(accept, ("*/*",)) - 1e-9)
    return html_q > json_q


def _base_href(request: Request) -> str:
    path = urlsplit(base_url(request)).path.rstrip("/")
    return f"{path}/ui/"


def ui_page(request: Request) -> Response:
    """The UI's one page, in the language the browser prefers (the UI can switch)."""
    lang = web.negotiate_language(request.headers.get("accept-language"))
    options = request.app.state.settings.web
    body = web.index_html(
        _base_href(request),
        lang,
        basemap_url=options.basemap_url,
        basemap_attribution=options.basemap_attribution,
    )
    return HTMLResponse(
        body,
        headers={
            **SECURITY_HEADERS,
            "Cache-Control": REVALIDATE,
            "Vary": "Accept, Accept-Language",
        },
    )


@router.get("/ui")
def ui_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(_base_href(request), status_code=308)


@router.get("/ui/", response_class=HTMLResponse)
def ui_index(request: Request) -> Response:
    """The web UI."""
    return ui_page(request)


@lru_cache(maxsize=1)
def _root() -> Path:
    return web.STATIC.resolve()


def _static_file(path: str) -> tuple[Path, os.stat_result]:
    """The file under the static folder that ``path`` names, and its stat; NotFoundError
    otherwise (``..``, hidden names, folders and anything outside the folder)."""
    parts = [p for p in path.split("/") if p]
    if not parts or any(p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
        raise NotFoundError(f"no file /ui/{path}")
    root = _root()
    candidate = root.joinpath(*parts).resolve()
    if not candidate.is_relative_to(root):
        raise NotFoundError(f"no file /ui/{path}")
    try:
        stat = candidate.stat()
    except OSError:
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        raise NotFoundError(f"no file /ui/{path}")
    return candidate, stat


@lru_cache(maxsize=256)
def _gzipped(path: Path, mtime_ns: int, size: int) -> bytes:
    """A file's bytes, gzip-compressed; the key changes whenever the file does."""
    return gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            q = params.replace(" ", "").lower().removeprefix("q=")
            try:
                return not params or float(q) > 0
            except ValueError:
                return False
    return False


@router.get("/ui/{path:path}")
def ui_static(request: Request, path: str) -> Response:
    """A static file of the UI (scripts, styles, translations, vendored libraries)."""
    if path == "index.html":
        return ui_page(request)
    file, stat = _static_file(path)
    media_type = _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
    headers = {**SECURITY_HEADERS, "Cache-Control": REVALIDATE}
    compress = file.suffix in _COMPRESSIBLE
    if compress:
        headers["Vary"] = "Accept-Encoding"
    response = FileResponse(
        file,
        media_type=media_type or "application/octet-stream",
        headers=headers,
        stat_result=stat,  # sets ETag and Last-Modified now, not when sent
    )
    etag = response.headers["etag"]
    use_gzip = compress and _accepts_gzip(request)
    if use_gzip:
        # each encoding of a file is its own representation, with its own tag
        etag = f'{etag[:-1]}-gzip"'
    if etag in request.headers.get("if-none-match", ""):
        not_modified = {"ETag": etag, "Cache-Control": REVALIDATE}
        if compress:
            not_modified["Vary"] = "Accept-Encoding"
        return Response(status_code=304, headers=not_modified)
    if not use_gzip:
        return response
    return Response(
        _gzipped(file, stat.st_mtime_ns, stat.st_size),
        media_type=media_type,
        headers={
            **headers,
            "ETag": etag,
            "Last-Modified": response.headers["last-modified"],
            "Content-Encoding": "gzip",
        },
    )
