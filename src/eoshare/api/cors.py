"""Cross-origin requests (CORS), fitted to how eoshare authenticates.

STAC Browser, other members' web apps and notebooks running in browsers are hosted on
other origins; without CORS headers a browser hides every answer from them.

- **Any origin, no credentials.** Every route answers every origin with
  ``Access-Control-Allow-Origin: *`` and never ``Access-Control-Allow-Credentials``. A
  browser then sends no cookie with such a request (and refuses a ``credentials:
  "include"`` one), so another site only ever acts as the public, or with a bearer token
  that its own code holds and sets: tokens are not ambient, so that is no forgery.
- **Credentials only from the allow-list.** An origin listed in ``api.cors_origins``
  (``EOSHARE_API__CORS_ORIGINS='["https://browser.example.org"]'``) gets its own origin
  echoed and ``Access-Control-Allow-Credentials: true``: a UI of the same organisation
  may use the session cookie.
- **CSRF stays as it is.** Writes authenticated by the session cookie still need an
  ``Origin`` of this node or ``X-Requested-With`` (api/routes/auth.py); the latter
  forces a preflight, which grants credentials to listed origins only.
- **Preflights on every route.** ``OPTIONS`` with ``Access-Control-Request-Method`` is
  answered here (204), before routing, authentication or body limits.

Headers are added to every answer, errors included (a 401 or 413 problem must be
readable by the page that caused it), so this middleware is the outermost one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# what a page may read from an answer beyond the CORS-safelisted headers
EXPOSE_HEADERS = (
    "Accept-Ranges, Content-Disposition, Content-Encoding, Content-Length, Content-Range, "
    "ETag, Last-Modified, Link, Location, Preference-Applied, Retry-After, WWW-Authenticate, "
    # a hub's list of peers that did not answer a search (api.routes.federation)
    "Eoshare-Federation-Missing"
)
MAX_AGE_S = 600
_HEADER_LIST = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")


class CorsMiddleware:
    """CORS headers on every answer; preflight ``OPTIONS`` answered directly."""

    def __init__(self, app: ASGIApp, credentialed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.credentialed = frozenset(o.rstrip("/") for o in credentialed_origins)

    def _origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        if origin in self.credentialed:
            return [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"vary", b"Origin"),
            ]
        return [(b"access-control-allow-origin", b"*")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        wanted = headers.get("access-control-request-method")
        if scope["method"] == "OPTIONS" and wanted is not None:
            await self._preflight(origin, headers, send)
            return
        extra = [
            *self._origin_headers(origin),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
        ]

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in extra:
                    if name == b"vary" and "vary" in out:
                        out.add_vary_header(value.decode())
                    else:
                        out[name.decode()] = value.decode()
            await send(message)

        await self.app(scope, receive, add_headers)

    async def _preflight(self, origin: str, headers: Headers, send: Send) -> None:
        asked = headers.get("access-control-request-headers", "").strip()
        out = [
            *self._origin_headers(origin),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-max-age", str(MAX_AGE_S).encode()),
            (b"content-length", b"0"),
        ]
        # any request header may be sent (Authorization included: a bearer token is
        # set by the page's own code, never sent by the browser on its own)
        if asked and _HEADER_LIST.match(asked):
            out.append((b"access-control-allow-headers", asked.encode("latin-1")))
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})
