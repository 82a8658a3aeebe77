"""HTTP byte ranges and validators (RFC 9110 sections 13 and 14), without HTTP objects:
the route passes header values in and gets a plan back.

* one range ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` -> 206 with that part;
* a range that starts at or past the end -> 416 (``Content-Range: bytes */size``);
* a malformed ``Range`` or a multi-range request -> the whole object (200): RFC 9110
  lets a server ignore Range, and download managers and GDAL send single ranges;
* ``If-Range`` with a different validator -> the whole object;
* ``If-None-Match`` matching the ETag -> 304.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Plan:
    """What to answer: a status, and for 200/206 the bytes ``[start, end)``."""

    status: int  # 200, 206, 304 or 416
    start: int = 0
    end: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start


def etag_matches(header: str | None, etag: str, *, weak: bool = True) -> bool:
    """Whether an If-None-Match / If-Match list names ``etag`` (``*`` matches any)."""
    if header is None:
        return False
    for raw in header.split(","):
        tag = raw.strip()
        if tag == "*":
            return True
        if weak and tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """``(start, end)`` for one satisfiable range; False when unsatisfiable; None when
    the header is malformed or asks for several ranges (then it is ignored)."""
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0:
            return False
        return max(0, size - suffix), size
    start = int(first)
    end = size if last == "" else int(last) + 1
    if last != "" and int(last) < start:
        return None  # "bytes=5-2" is invalid syntax: ignore it
    if start >= size:
        return False
    return start, min(end, size)


def plan(
    size: int,
    etag: str,
    *,
    range_header: str | None,
    if_range: str | None,
    if_none_match: str | None,
) -> Plan:
    """Decide the answer for a GET/HEAD of an object of ``size`` bytes."""
    if etag_matches(if_none_match, etag):
        return Plan(304)
    if range_header is None:
        return Plan(200, 0, size)
    if if_range is not None and if_range.strip() != etag:
        # If-Range needs a strong match; a date or another tag means "changed": send all.
        return Plan(200, 0, size)
    parsed = parse_range(range_header, size)
    if parsed is None:
        return Plan(200, 0, size)
    if parsed is False:
        return Plan(416)
    assert not isinstance(parsed, bool)
    return Plan(206, parsed[0], parsed[1])
