"""CQL2 JSON -> SQLite SQL for the items table.

Every literal becomes a bound parameter (never spliced into the SQL text). Property
names are checked against the queryables before use, so an unknown name is a clear
400 rather than a silently empty result. Spatial tests call the ``eo_spatial`` SQL
function (shapely, registered per connection); timestamps are normalised to the
sortable UTC text form that the indexes use.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import date
from typing import Any, NamedTuple

import shapely

from eoshare.catalog.geometry import Bbox, bbox_geometry, check_bbox, check_geometry, index_geometry
from eoshare.catalog.validate import iso, parse_datetime
from eoshare.errors import InvalidFilterError, InvalidRequestError

JSON = dict[str, Any]


class Fragment(NamedTuple):
    sql: str
    params: list[Any]


# Core queryables that live in columns, not in the JSON document.
COLUMNS = {
    "id": "items.id",
    "collection": "items.collection",
    "datetime": "items.dt_start",
    "start_datetime": "items.dt_start",
    "end_datetime": "items.dt_end",
}
TEMPORAL_COLUMNS = {"datetime", "start_datetime", "end_datetime"}

_COMPARISONS = {"=": "=", "<>": "<>", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_SPATIAL = {
    "s_intersects",
    "s_equals",
    "s_disjoint",
    "s_touches",
    "s_within",
    "s_overlaps",
    "s_crosses",
    "s_contains",
}
_ARRAY = {"a_equals", "a_contains", "a_containedby", "a_overlaps"}
_ARITH = {"+": "+", "-": "-", "*": "*", "/": "/", "%": "%", "div": "/"}


def json_path(name: str) -> str:
    """The json_extract path of an item property."""
    if '"' in name or "\\" in name:
        raise InvalidFilterError(f"property name {name!r} may not contain quotes or backslashes")
    return f'$.properties."{name}"'


class FilterTranslator:
    """Translates one CQL2 JSON expression; collects the bound parameters.

    ``known`` decides whether a property name is a queryable (None: anything goes,
    used for the access layer's own filters)."""

    def __init__(self, known: Callable[[str], bool] | None = None) -> None:
        self.params: list[Any] = []
        self._known = known

    # --- entry points -----------------------------------------------------------------
    def translate(self, expr: Any) -> str:
        if not isinstance(expr, dict) or "op" not in expr:
            if isinstance(expr, bool):
                return "1" if expr else "0"
            raise InvalidFilterError("the filter must be a boolean expression")
        return self._bool(expr)

    def _p(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def _frag(self, make: Callable[[], str]) -> Fragment:
        """Translate a sub-expression apart, keeping its own parameters, so that it can
        be placed (even twice) anywhere in a template."""
        saved, self.params = self.params, []
        try:
            sql = make()
            return Fragment(sql, self.params)
        finally:
            self.params = saved

    def _compose(self, template: str, **frags: Fragment) -> str:
        """Fill a template with fragments, adding their parameters in the order the
        placeholders appear in the text (positional ``?`` parameters need that)."""
        out: list[str] = []
        for literal, field, _, _ in string.Formatter().parse(template):
            out.append(literal)
            if field is not None:
                frag = frags[field]
                out.append(frag.sql)
                self.params.extend(frag.params)
        return "".join(out)

    # --- properties and literals --------------------------------------------------------
    def property_sql(self, name: str) -> str:
        if name.startswith("properties."):
            name = name[len("properties.") :]
        if self._known is not None and not self._known(name):
            raise InvalidFilterError(
                f"{name!r} is not a queryable; "
                "GET /queryables lists the properties a filter may use"
            )
        if name in COLUMNS:
            return COLUMNS[name]
        if name == "geometry":
            raise InvalidFilterError("'geometry' can only be used in spatial operators")
        return f"json_extract(items.content, {self._p(json_path(name))})"

    def _is_temporal(self, arg: Any) -> bool:
        if isinstance(arg, dict):
            if "timestamp" in arg or "date" in arg or "interval" in arg:
                return True
            if "property" in arg:
                name = str(arg["property"]).removeprefix("properties.")
                return name in TEMPORAL_COLUMNS
        return False

    def _instant(self, value: Any, *, end: bool = False) -> str:
        """A timestamp/date literal as normalised text."""
        if isinstance(value, dict) and "timestamp" in value:
            return iso(parse_datetime(value["timestamp"], what="timestamp"))
        if isinstance(value, dict) and "date" in value:
            try:
                d = date.fromisoformat(value["date"])
            except (TypeError, ValueError) as exc:
                raise InvalidFilterError(f"{value['date']!r} is not a date (YYYY-MM-DD)") from exc
            suffix = "T23:59:59.999999Z" if end else "T00:00:00.000000Z"
            return d.isoformat() + suffix
        if isinstance(value, str):
            if value == "..":
                return "9999-12-31T23:59:59.999999Z" if end else "0000-01-01T00:00:00.000000Z"
            if len(value) == 10:
                return self._instant({"date": value}, end=end)
            return iso(parse_datetime(value, what="timestamp"))
        raise InvalidFilterError(f"{value!r} is not a timestamp, date or interval bound")

    def _value(self, arg: Any, *, temporal: bool = False) -> str:
        if isinstance(arg, dict):
            if "property" in arg:
                name = str(arg["property"])
                sql = self.property_sql(name)
                plain = name.removeprefix("properties.")
                if temporal and plain not in COLUMNS:
                    return f"eo_ts({sql})"
                return sql
            if "timestamp" in arg or "date" in arg:
                return self._p(self._instant(arg))
            if "op" in arg:
                op = arg["op"]
                if op in ("casei", "accenti"):
                    inner = self._value(arg["args"][0])
                    return f"eo_{op}({inner})"
                if op in _ARITH and len(arg.get("args", [])) == 2:
                    a, b = (self._value(x) for x in arg["args"])
                    return f"({a} {_ARITH[op]} {b})"
                return self._bool(arg)
            raise InvalidFilterError(f"unsupported operand {str(arg)[:100]}")
        if isinstance(arg, bool):
            return self._p(1 if arg else 0)
        if isinstance(arg, int | float | str):
            if temporal and isinstance(arg, str):
                return self._p(self._instant(arg))
            return self._p(arg)
        if arg is None:
            return "NULL"
        raise InvalidFilterError(f"unsupported operand {str(arg)[:100]}")

    # --- boolean expressions ------------------------------------------------------------
    def _bool(self, expr: JSON) -> str:
        op = str(expr.get("op", "")).lower() if expr.get("op") not in _COMPARISONS else expr["op"]
        args = expr.get("args", [])
        if not isinstance(args, list):
            raise InvalidFilterError(f"operator {op!r} needs an 'args' array")
        if op in ("and", "or"):
            if len(args) < 1:
                raise InvalidFilterError(f"'{op}' needs operands")
            return "(" + f" {op.upper()} ".join(self._bool_arg(a) for a in args) + ")"
        if op == "not":
            self._arity(op, args, 1)
            return f"(NOT {self._bool_arg(args[0])})"
        if op in _COMPARISONS:
            self._arity(op, args, 2)
            temporal = any(self._is_temporal(a) for a in args)
            a, b = (self._value(x, temporal=temporal) for x in args)
            return f"({a} {_COMPARISONS[op]} {b})"
        if op == "like":
            self._arity(op, args, 2)
            a, b = (self._value(x) for x in args)
            return f"({a} LIKE {b} ESCAPE '\\')"
        if op == "between":
            self._arity(op, args, 3)
            temporal = self._is_temporal(args[0])
            a, lo, hi = (self._value(x, temporal=temporal) for x in args)
            return f"({a} BETWEEN {lo} AND {hi})"
        if op == "in":
            self._arity(op, args, 2)
            if not isinstance(args[1], list) or not args[1]:
                raise InvalidFilterError("'in' needs a non-empty list")
            a = self._value(args[0])
            return f"({a} IN ({', '.join(self._value(v) for v in args[1])}))"
        if op == "isnull":
            self._arity(op, args, 1)
            return f"({self._value(args[0])} IS NULL)"
        if op in _SPATIAL:
            return self._spatial(op, args)
        if op.startswith("t_"):
            return self._temporal(op, args)
        if op in _ARRAY:
            return self._array(op, args)
        raise InvalidFilterError(f"operator {expr.get('op')!r} is not supported")

    def _bool_arg(self, arg: Any) -> str:
        if isinstance(arg, bool):
            return "1" if arg else "0"
        if not isinstance(arg, dict) or "op" not in arg:
            raise InvalidFilterError(f"expected a boolean expression, got {str(arg)[:100]}")
        return self._bool(arg)

    @staticmethod
    def _arity(op: str, args: list[Any], n: int) -> None:
        if len(args) != n:
            raise InvalidFilterError(f"'{op}' takes {n} operand(s), got {len(args)}")

    # --- spatial ------------------------------------------------------------------------
    def _spatial(self, op: str, args: list[Any]) -> str:
        self._arity(op, args, 2)
        prop, lit = args
        if isinstance(lit, dict) and "property" in lit:
            prop, lit = lit, prop
        if not (isinstance(prop, dict) and str(prop.get("property")) in ("geometry", "geom")):
            raise InvalidFilterError(f"'{op}' compares the 'geometry' property with a geometry")
        if self._known is not None and not self._known("geometry"):
            raise InvalidFilterError("'geometry' is not a queryable")
        geom = literal_geometry(lit)
        return f"eo_spatial({self._p(op)}, items.geom, {self._p(shapely.to_wkb(geom))})"

    # --- temporal -----------------------------------------------------------------------
    def _bound(self, value: Any, *, end: bool) -> str:
        if isinstance(value, dict) and "property" in value:
            return self._value(value, temporal=True)
        return self._p(self._instant(value, end=end))

    def _interval(self, arg: Any) -> tuple[Fragment, Fragment]:
        """(start, end) of a temporal operand, as fragments."""
        if isinstance(arg, dict) and "interval" in arg:
            bounds = arg["interval"]
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise InvalidFilterError("an interval has two bounds")
            return (
                self._frag(lambda: self._bound(bounds[0], end=False)),
                self._frag(lambda: self._bound(bounds[1], end=True)),
            )
        if isinstance(arg, dict) and "property" in arg:
            name = str(arg["property"]).removeprefix("properties.")
            if name == "datetime":
                self.property_sql(name)
                return Fragment("items.dt_start", []), Fragment("items.dt_end", [])
        if isinstance(arg, dict) and "date" in arg:
            return (
                self._frag(lambda: self._p(self._instant(arg))),
                self._frag(lambda: self._p(self._instant(arg, end=True))),
            )
        v = self._frag(lambda: self._value(arg, temporal=True))
        return v, v

    _TEMPORAL_RULES = {
        "t_intersects": "({s1} <= {e2} AND {e1} >= {s2})",
        "t_disjoint": "({s1} > {e2} OR {e1} < {s2})",
        "t_equals": "({s1} = {s2} AND {e1} = {e2})",
        "t_before": "({e1} < {s2})",
        "t_after": "({s1} > {e2})",
        "t_meets": "({e1} = {s2})",
        "t_metby": "({s1} = {e2})",
        "t_overlaps": "({s1} < {s2} AND {e1} > {s2} AND {e1} < {e2})",
        "t_overlappedby": "({s2} < {s1} AND {e2} > {s1} AND {e2} < {e1})",
        "t_starts": "({s1} = {s2} AND {e1} < {e2})",
        "t_startedby": "({s1} = {s2} AND {e1} > {e2})",
        "t_during": "({s1} > {s2} AND {e1} < {e2})",
        "t_contains": "({s1} < {s2} AND {e1} > {e2})",
        "t_finishes": "({s1} > {s2} AND {e1} = {e2})",
        "t_finishedby": "({s1} < {s2} AND {e1} = {e2})",
    }

    def _temporal(self, op: str, args: list[Any]) -> str:
        self._arity(op, args, 2)
        if op not in self._TEMPORAL_RULES:
            raise InvalidFilterError(f"temporal operator {op!r} is not supported")
        (s1, e1), (s2, e2) = self._interval(args[0]), self._interval(args[1])
        return self._compose(self._TEMPORAL_RULES[op], s1=s1, e1=e1, s2=s2, e2=e2)

    # --- arrays -------------------------------------------------------------------------
    def _array(self, op: str, args: list[Any]) -> str:
        self._arity(op, args, 2)
        prop, lit = args
        if not (isinstance(prop, dict) and "property" in prop) or not isinstance(lit, list):
            raise InvalidFilterError(f"'{op}' compares an array property with a literal array")
        col = self._frag(lambda: self.property_sql(str(prop["property"])))
        values = self._frag(lambda: ", ".join(self._value(v) for v in lit) or "NULL")
        n = Fragment(str(len({str(v) for v in lit})), [])
        inside = "(SELECT count(DISTINCT value) FROM json_each({col}) WHERE value IN ({values}))"
        total = "(SELECT count(DISTINCT value) FROM json_each({col}))"
        template = {
            "a_contains": f"({inside} = {{n}})",
            "a_overlaps": f"({inside} > 0)",
            "a_containedby": f"({inside} = {total})",
            "a_equals": f"({inside} = {{n}} AND {total} = {{n}})",
        }[op]
        return self._compose(template, col=col, values=values, n=n)


def literal_geometry(value: Any) -> Any:
    """A shapely geometry (inside [-180, 180]) from a CQL2 geometry literal or bbox."""
    if isinstance(value, dict) and "bbox" in value:
        try:
            box: Bbox = check_bbox(value["bbox"])
        except InvalidRequestError as exc:
            raise InvalidFilterError(exc.detail) from exc
        return bbox_geometry(box)
    try:
        check_geometry(value, what="filter geometry")
    except InvalidRequestError as exc:
        raise InvalidFilterError(exc.detail) from exc
    return index_geometry(value)
