"""The request rate limit of the whole API (``EOSHARE_SECURITY__RATE_LIMIT_PER_MINUTE``):
plain ASGI, outermost, so that a refused request costs no authentication, no parsing and
no database work. Off by default; see ``eoshare.access.ratelimit.RequestRateLimiter``."""

from __future__ import annotations

import math

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from eoshare.access.ratelimit import RequestRateLimiter
from eoshare.api import errors


class RateLimitMiddleware:
    """429 problem with ``Retry-After`` once a caller has used up its bucket."""

    def __init__(self, app: ASGIApp, per_minute: int, burst: int, cookie_name: str) -> None:
        self.app = app
        self.limiter = RequestRateLimiter(per_minute, burst)
        self.cookie_name = cookie_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        credential = headers.get("authorization")
        if not credential:
            cookies = headers.get("cookie", "")
            credential = next(
                (
                    part.strip()
                    for part in cookies.split(";")
                    if part.strip().startswith(self.cookie_name + "=")
                ),
                None,
            )
        client = scope.get("client")
        address = client[0] if client else None
        wait = self.limiter.take(RequestRateLimiter.caller_key(credential, address))
        if wait > 0:
            response = errors.problem(
                429,
                "too many requests from this caller; slow down and try again later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
