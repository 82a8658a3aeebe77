"""Orbits are data: element sets (TLE, 2- or 3-line; OMM as CCSDS JSON or XML) loaded with
their history, and the member satellites' platforms (``platforms.toml``): the STAC
``platform`` names of each NORAD catalogue number and its instrument's swath and field of
regard.

Nothing is downloaded: files come from the operator (``eoshare orbits load FILE``).
"""

from __future__ import annotations

import io
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from sgp4 import exporter, omm
from sgp4.api import Satrec

from eoshare.disaster.store import DisasterStore, iso
from eoshare.errors import InvalidRequestError, PayloadTooLargeError

JSON = dict[str, Any]
MAX_FILE_BYTES = 20 * 1024 * 1024
STALE_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class Platform:
    """A member satellite's main instrument, as data."""

    norad: int
    names: tuple[str, ...]
    instrument: str
    swath_km: float
    off_nadir_max_deg: float
    optical: bool

    @property
    def platform(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Elements:
    """One element set of one satellite."""

    norad: int
    name: str
    epoch: datetime
    line1: str
    line2: str

    def satrec(self) -> Satrec:
        return Satrec.twoline2rv(self.line1, self.line2)


def load_platforms(path: Path | None = None) -> dict[int, Platform]:
    """The platforms file (the packaged one by default)."""
    if path is None:
        text = resources.files("eoshare.disaster").joinpath("platforms.toml").read_text()
    else:
        text = path.read_text()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequestError(f"platforms file: not valid TOML: {exc}") from exc
    out: dict[int, Platform] = {}
    for p in doc.get("platform", []):
        try:
            names = p["platform"]
            out[int(p["norad"])] = Platform(
                norad=int(p["norad"]),
                names=tuple(str(n).lower() for n in ([names] if isinstance(names, str) else names)),
                instrument=str(p.get("instrument", "")),
                swath_km=float(p["swath_km"]),
                off_nadir_max_deg=float(p["off_nadir_max_deg"]),
                optical=bool(p.get("optical", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequestError(f"platforms file: entry {p!r}: {exc}") from exc
    return out


def _epoch(sat: Satrec) -> datetime:
    jd = sat.jdsatepoch + sat.jdsatepochF
    return (datetime(2000, 1, 1, 12, tzinfo=UTC) + timedelta(days=jd - 2451545.0)).replace(
        microsecond=0
    )


def _from_satrec(sat: Satrec, name: str) -> Elements:
    line1, line2 = exporter.export_tle(sat)
    return Elements(int(sat.satnum), name.strip() or str(sat.satnum), _epoch(sat), line1, line2)


def _parse_tle(text: str) -> list[Elements]:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    out: list[Elements] = []
    i = 0
    while i < len(lines):
        name = ""
        if not lines[i].startswith("1 "):
            name = lines[i].removeprefix("0 ").strip()
            i += 1
        if (
            i + 1 >= len(lines)
            or not lines[i].startswith("1 ")
            or not lines[i + 1].startswith("2 ")
        ):
            raise InvalidRequestError(f"TLE line {i + 1}: expected a '1 ' line then a '2 ' line")
        l1, l2 = lines[i], lines[i + 1]
        for ln in (l1, l2):
            if len(ln) < 69 or not _checksum_ok(ln):
                raise InvalidRequestError(f"TLE line {ln[:20]!r}...: bad length or checksum")
        try:
            sat = Satrec.twoline2rv(l1, l2)
        except ValueError as exc:
            raise InvalidRequestError(f"TLE for {name or l1[2:7]}: {exc}") from exc
        out.append(Elements(int(sat.satnum), name or str(sat.satnum), _epoch(sat), l1, l2))
        i += 2
    return out


def _checksum_ok(line: str) -> bool:
    total = sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68])
    return line[68].isdigit() and total % 10 == int(line[68])


def _omm_records(fields: list[dict[str, str]]) -> list[Elements]:
    out: list[Elements] = []
    for f in fields:
        sat = Satrec()
        try:
            omm.initialize(sat, f)
        except (KeyError, ValueError) as exc:
            raise InvalidRequestError(f"OMM record {f.get('OBJECT_NAME', '?')}: {exc}") from exc
        out.append(_from_satrec(sat, f.get("OBJECT_NAME", "")))
    return out


def parse_elements(data: bytes, filename: str = "") -> list[Elements]:
    """Element sets from TLE text, OMM JSON (a list of CCSDS OMM objects, CelesTrak's
    format) or OMM XML (CCSDS NDM/XML)."""
    if len(data) > MAX_FILE_BYTES:
        raise PayloadTooLargeError(f"{filename}: over {MAX_FILE_BYTES} bytes")
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    head = text.lstrip()[:1]
    if head in ("[", "{"):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"{filename}: not valid OMM JSON: {exc}") from exc
        records = doc if isinstance(doc, list) else [doc]
        if not all(isinstance(r, dict) for r in records):
            raise InvalidRequestError(f"{filename}: OMM JSON is a list of objects")
        return _omm_records([{k: str(v) for k, v in r.items()} for r in records])
    if head == "<":
        if "<!DOCTYPE" in text or "<!ENTITY" in text:
            # no DTDs: no entity expansion, no external references
            raise InvalidRequestError(f"{filename}: XML with a DOCTYPE or entities is refused")
        try:
            return _omm_records(list(omm.parse_xml(io.StringIO(text))))
        except Exception as exc:  # the XML parser's many error types
            raise InvalidRequestError(f"{filename}: not valid OMM XML: {exc}") from exc
    return _parse_tle(text)


class OrbitService:
    """Element sets in the disaster database and the platforms they map to."""

    def __init__(self, store: DisasterStore, platforms: dict[int, Platform]) -> None:
        self.store = store
        self.platforms = platforms
        self._cache: tuple[int, list[Elements]] | None = None

    def load(self, data: bytes, *, source: str, now: datetime) -> JSON:
        elements = parse_elements(data, source)
        if not elements:
            raise InvalidRequestError(f"{source}: no element sets found")
        rows = [(e.norad, iso(e.epoch), e.name, e.line1, e.line2, source) for e in elements]
        added = self.store.add_elements(rows, at=now)
        self._cache = None
        return {
            "read": len(elements),
            "added": added,
            "satellites": len({e.norad for e in elements}),
            "warnings": self.stale_warnings(now),
        }

    def newest(self) -> list[Elements]:
        rows = self.store.newest_elements()
        key = len(rows) and hash(tuple((r[0], r[1]) for r in rows))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out = [
            Elements(norad, name, datetime.fromisoformat(epoch.replace("Z", "+00:00")), l1, l2)
            for norad, epoch, name, l1, l2 in rows
        ]
        self._cache = (key, out)
        return out

    def stale_warnings(self, now: datetime) -> list[str]:
        """One line per mapped satellite whose newest elements are more than a week from
        ``now`` (older, or newer: propagating backwards is as wrong)."""
        out = []
        for e in self.newest():
            if e.norad in self.platforms and abs(now - e.epoch) > STALE_AFTER:
                days = (now - e.epoch).total_seconds() / 86400
                age = f"{days:.1f} days old" if days > 0 else f"{-days:.1f} days in the future"
                out.append(
                    f"{e.name} ({e.norad}): newest elements are {age} "
                    f"(epoch {iso(e.epoch)}); passes drift by kilometres — load fresh ones"
                )
        return out

    def member_satellites(self) -> list[tuple[Elements, Platform]]:
        return [(e, self.platforms[e.norad]) for e in self.newest() if e.norad in self.platforms]

    def listing(self, now: datetime) -> list[JSON]:
        out = []
        for e in self.newest():
            p = self.platforms.get(e.norad)
            out.append(
                {
                    "norad": e.norad,
                    "name": e.name,
                    "epoch": iso(e.epoch),
                    "age_days": round((now - e.epoch).total_seconds() / 86400, 2),
                    "platform": p.platform if p else None,
                    "instrument": p.instrument if p else None,
                    "swath_km": p.swath_km if p else None,
                    "off_nadir_max_deg": p.off_nadir_max_deg if p else None,
                    "history": len(self.store.element_history(e.norad)),
                }
            )
        return out
