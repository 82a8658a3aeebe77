"""``GET /usage``: what the grants of bytes added up to.

Operators see everything (optionally one member); a member's users see their own
member's use. The report sums grants by member, country, collection and day, and says
how many countries the data reached and which collections were used most.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request

from eoshare.access.policy import is_operator
from eoshare.api.deps import Caller
from eoshare.api.responses import JSONResponse
from eoshare.api.routes.auth import require_user, services
from eoshare.errors import AccessDeniedError, InvalidRequestError

router = APIRouter(tags=["Usage"])
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _day(value: str | None, name: str) -> str | None:
    if value is not None and not _DAY.match(value):
        raise InvalidRequestError(f"{name} must be a date such as 2024-05-31")
    return value


@router.get("/usage", response_class=JSONResponse, summary="Usage: grants of bytes")
def usage(
    request: Request,
    caller: Caller,
    member: Annotated[str | None, Query(description="operators: one member only")] = None,
    since: Annotated[str | None, Query(description="first day, YYYY-MM-DD (UTC)")] = None,
    until: Annotated[str | None, Query(description="last day, YYYY-MM-DD (UTC)")] = None,
) -> JSONResponse:
    require_user(caller)
    if not is_operator(caller):
        if caller.member is None:
            raise AccessDeniedError("usage is reported to operators and to member users")
        if member is not None and member != caller.member:
            raise AccessDeniedError("member users see their own member's usage only")
        member = caller.member
    report = services(request).store.usage(
        member=member, since=_day(since, "since"), until=_day(until, "until")
    )
    return JSONResponse({"member": member, "since": since, "until": until, **report})
