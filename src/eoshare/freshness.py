"""Cached views that follow changes made by any process of the node, at once.

The node keeps a few views in memory because they are asked for many times per request:
the agreements and members behind every access decision and visibility filter
(``AgreementPolicy``), the live disaster grants, the peers, the answers about signed
links' holders. Each comes from a shared database that carries a *version* (a single
integer bumped in the same transaction as every change: ``meta.version`` of the access,
disaster and peers databases). A view is valid while the version it was built from is
the current one.

When to read the version again is what this module decides (``VersionCheck.due``):

* inside an HTTP request (``FreshPerRequest`` marks each one), once per request and
  view: the first time the request asks, the version is read (one indexed row; a few
  microseconds on SQLite, one round trip on PostgreSQL) and the view rebuilt if it
  changed. So a change committed by another process (another worker, another
  ``eoshare serve`` on the same data, the CLI) governs every request that *starts* after
  the commit, while one request sees one consistent view however often it asks;
* outside requests (background work, the CLI), at most every ``max_age_s`` (50 ms).

PostgreSQL's LISTEN/NOTIFY could push changes instead of this read, but a notice arrives
after the commit, asynchronously: a request reaching the other process right after the
writer answered could still be decided on the old view. Reading the version is exact and
costs one small query per request and view."""

from __future__ import annotations

import contextvars
import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

# the views already checked in the current request (shared by the threads the request
# uses: anyio copies the context, the set itself is the same object)
_checked: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar(
    "eoshare_fresh_checked", default=None
)


class FreshPerRequest:
    """Plain ASGI middleware: each HTTP request gets its own set of checked views."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _checked.set(set())
        try:
            await self.app(scope, receive, send)
        finally:
            _checked.reset(token)


class request_scope:
    """The same as a request, for code that runs outside one (tests, background work that
    must see changes at once)."""

    def __enter__(self) -> None:
        self._token = _checked.set(set())

    def __exit__(self, *exc: Any) -> None:
        _checked.reset(self._token)


class VersionCheck:
    """Says when a cached view should read its version again (see the module text)."""

    def __init__(self, max_age_s: float = 0.05) -> None:
        self.max_age_s = max_age_s
        self._last = 0.0

    def due(self) -> bool:
        checked = _checked.get()
        if checked is not None:
            key = id(self)
            if key in checked:
                return False
            checked.add(key)
            return True
        now = time.monotonic()
        if now - self._last >= self.max_age_s:
            self._last = now
            return True
        return False

    def reset(self) -> None:
        """Read the version at the next question, wherever it comes from."""
        self._last = 0.0
        checked = _checked.get()
        if checked is not None:
            checked.discard(id(self))
