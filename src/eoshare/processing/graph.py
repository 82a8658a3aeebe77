"""Process graphs: the checks made before anything runs, and the ``load_collection``
calls a graph makes (resolved against the catalogue before it runs).

A graph is refused with an openEO error when it is not an object of nodes, when a node
names no process or one this node does not run, when a ``from_node`` names no node, when
the nodes form a cycle, or when there is not exactly one result node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eoshare.processing.errors import (
    ProcessGraphInvalid,
    ProcessGraphMissing,
    ProcessParameterInvalid,
    ProcessUnsupported,
)

JSON = dict[str, Any]
MAX_NODES = 1000


def graph_of(body: Any) -> JSON:
    """The ``process_graph`` of a request body (``{"process": {"process_graph": ...}}``,
    ``{"process_graph": ...}`` or the bare graph)."""
    if not isinstance(body, dict):
        raise ProcessGraphMissing("The request body must be a JSON object with a process graph.")
    process = body.get("process", body)
    if not isinstance(process, dict):
        raise ProcessGraphMissing("'process' must be an object with a 'process_graph'.")
    graph = process.get("process_graph")
    if graph is None:
        raise ProcessGraphMissing("Invalid process specified. It doesn't contain a process graph.")
    if not isinstance(graph, dict) or not graph:
        raise ProcessGraphInvalid("The process graph must be a non-empty object of nodes.")
    return graph


def _children(value: Any) -> Iterator[JSON]:
    """Callback graphs (``{"process_graph": {...}}``) inside an argument value."""
    if isinstance(value, dict):
        if isinstance(value.get("process_graph"), dict):
            yield value["process_graph"]
            return
        for v in value.values():
            yield from _children(v)
    elif isinstance(value, list):
        for v in value:
            yield from _children(v)


def _refs(value: Any) -> Iterator[str]:
    """``from_node`` names in an argument value (not inside callbacks)."""
    if isinstance(value, dict):
        if "process_graph" in value:
            return
        ref = value.get("from_node")
        if isinstance(ref, str) and len(value) == 1:
            yield ref
            return
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def validate(graph: JSON, known: set[str], *, user_processes: set[str] | None = None) -> None:
    """Raise an openEO error when ``graph`` cannot run here (see the module docstring)."""
    seen = [0]
    _validate(graph, known, user_processes or set(), seen)


def _validate(graph: JSON, known: set[str], udps: set[str], seen: list[int]) -> None:
    if not isinstance(graph, dict) or not graph:
        raise ProcessGraphInvalid("A process graph must be a non-empty object of nodes.")
    results = 0
    edges: dict[str, list[str]] = {}
    for node_id, node in graph.items():
        seen[0] += 1
        if seen[0] > MAX_NODES:
            raise ProcessGraphInvalid(f"The process graph has more than {MAX_NODES} nodes.")
        if not isinstance(node, dict) or not isinstance(node.get("process_id"), str):
            raise ProcessGraphInvalid(f"Node '{node_id}' must be an object with a 'process_id'.")
        pid = node["process_id"]
        namespace = node.get("namespace")
        if namespace not in (None, "backend", "predefined", "user"):
            raise ProcessUnsupported(
                f"Process with identifier '{pid}' is not available in namespace '{namespace}'."
            )
        if pid not in known and pid not in udps:
            raise ProcessUnsupported(
                f"Process with identifier '{pid}' is not available in namespace "
                f"'{namespace or 'backend'}'."
            )
        args = node.get("arguments", {})
        if not isinstance(args, dict):
            raise ProcessGraphInvalid(f"The arguments of node '{node_id}' must be an object.")
        if node.get("result") is True:
            results += 1
        edges[node_id] = []
        for value in args.values():
            for ref in _refs(value):
                if ref not in graph:
                    raise ProcessGraphInvalid(
                        f"Node '{node_id}' refers to node '{ref}', which does not exist."
                    )
                edges[node_id].append(ref)
            for child in _children(value):
                _validate(child, known, udps, seen)
    if results != 1:
        raise ProcessGraphInvalid(
            f"A process graph needs exactly one node with 'result': true (found {results})."
        )
    _no_cycle(edges)


def _no_cycle(edges: dict[str, list[str]]) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    for start in edges:
        if state.get(start) == 2:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(edges[start]))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise ProcessGraphInvalid(f"The process graph has a cycle through node '{nxt}'.")
            elif state.get(nxt) is None:
                state[nxt] = 1
                stack.append((nxt, iter(edges[nxt])))


@dataclass
class LoadCall:
    """One ``load_collection`` (or ``load_stac`` of a collection of this node)."""

    collection: str
    bbox: tuple[float, float, float, float] | None
    start: str | None
    end: str | None
    bands: list[str] | None


def load_calls(graph: JSON, base_url: str | None = None) -> list[LoadCall]:
    """Every load_collection / load_stac in ``graph`` (callbacks included), with its
    literal arguments. Arguments given by parameters cannot be checked before the graph
    runs, so they are refused."""
    out: list[LoadCall] = []
    for node in graph.values():
        for value in node.get("arguments", {}).values():
            for child in _children(value):
                out.extend(load_calls(child, base_url))
        pid = node["process_id"]
        if pid not in ("load_collection", "load_stac"):
            continue
        args = node.get("arguments", {})
        if pid == "load_collection":
            cid = args.get("id")
        else:
            cid = collection_of_url(args.get("url"), base_url)
        if not isinstance(cid, str) or not cid:
            raise ProcessParameterInvalid(
                f"The value passed for parameter '{'id' if pid == 'load_collection' else 'url'}'"
                f" in process '{pid}' is invalid: it must be a collection of this node."
            )
        out.append(
            LoadCall(
                collection=cid,
                bbox=_bbox(args.get("spatial_extent"), pid),
                start=_time(args.get("temporal_extent"), 0, pid),
                end=_time(args.get("temporal_extent"), 1, pid),
                bands=_bands(args.get("bands"), pid),
            )
        )
    return out


def collection_of_url(url: Any, base_url: str | None) -> str | None:
    """``load_stac``'s URL as a collection id of this node, or None."""
    if not isinstance(url, str):
        return None
    marker = "/collections/"
    if base_url and not url.startswith(base_url.rstrip("/") + "/"):
        return None
    if marker not in url:
        return None
    rest = url.split(marker, 1)[1].strip("/")
    return rest if rest and "/" not in rest else None


def _bad(pid: str, name: str, why: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(
        f"The value passed for parameter '{name}' in process '{pid}' is invalid: {why}"
    )


def _bbox(value: Any, pid: str) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(pid, "spatial_extent", "only a bounding box object is supported")
    try:
        w, s, e, n = (float(value[k]) for k in ("west", "south", "east", "north"))
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(pid, "spatial_extent", "west, south, east and north must be numbers") from exc
    crs = value.get("crs", 4326)
    if crs not in (4326, "4326", "EPSG:4326", None):
        from pyproj import CRS, Transformer
        from pyproj.exceptions import CRSError

        try:
            tr = Transformer.from_crs(CRS.from_user_input(crs), 4326, always_xy=True)
        except CRSError as exc:
            raise _bad(pid, "spatial_extent", f"unknown crs {crs!r}") from exc
        w, s, e, n = tr.transform_bounds(w, s, e, n)
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90) or w > e:
        raise _bad(pid, "spatial_extent", "the box is not within -180..180, -90..90")
    return (w, s, e, n)


def _time(value: Any, index: int, pid: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise _bad(pid, "temporal_extent", "it must be a list of two dates (or null)")
    v = value[index]
    if v is not None and not isinstance(v, str):
        raise _bad(pid, "temporal_extent", "dates must be RFC 3339 strings or null")
    return v


def _bands(value: Any, pid: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(b, str) for b in value):
        raise _bad(pid, "bands", "it must be a list of band names")
    return list(value)
