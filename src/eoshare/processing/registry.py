"""The processes this node runs: their openEO specs (for ``GET /processes``) and their
implementations (for the graph executor).

Most come from ``openeo-processes-dask``; this node adds its own ``load_collection``,
``load_stac`` (this node's collections only), ``save_result`` and the ready-made
algorithms of ``algorithms.py``. Processes that would run code or fetch URLs that the
caller chooses (``run_udf``, the library's own ``load_stac``) are not offered.
"""

from __future__ import annotations

import importlib.resources
import inspect
import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

JSON = dict[str, Any]
log = logging.getLogger("eoshare.processing")

# Processes of the library that this node does not offer, and why.
WITHHELD = {
    "run_udf": "runs code that the caller sends",
    "load_stac": "replaced by this node's own (its collections only, through access checks)",
    "load_collection": "replaced by this node's own",
    "save_result": "replaced by this node's own",
    "inspect": "writes to the server log",
}


def _library_specs() -> dict[str, JSON]:
    root = importlib.resources.files("openeo_processes_dask") / "specs" / "openeo-processes"
    out: dict[str, JSON] = {}
    for entry in root.iterdir():
        if entry.name.endswith(".json"):
            spec = json.loads(entry.read_text(encoding="utf-8"))
            out[str(spec["id"])] = spec
    return out


def _own_specs() -> dict[str, JSON]:
    from eoshare.processing.algorithms import SPECS

    return dict(SPECS)


def _library_implementations() -> dict[str, Callable[..., Any]]:
    import openeo_processes_dask.process_implementations as impl

    out: dict[str, Callable[..., Any]] = {}
    for name, func in inspect.getmembers(impl, inspect.isfunction):
        if name.startswith("__"):
            continue
        pid = name.strip("_")  # ``_min`` implements ``min`` (a Python builtin)
        if pid in WITHHELD:
            continue
        if name.startswith("_") and pid == name:
            continue
        out[pid] = func
    return out


@cache
def catalogue() -> tuple[dict[str, JSON], dict[str, Callable[..., Any]]]:
    """(specs, implementations) of every library process this node offers, read once."""
    specs = _library_specs()
    impls = _library_implementations()
    offered = {pid: specs[pid] for pid in sorted(impls) if pid in specs}
    return offered, {pid: impls[pid] for pid in offered}


def process_specs(extra: dict[str, JSON] | None = None) -> dict[str, JSON]:
    """Every process's openEO spec: the library's, this node's own and ``extra``."""
    specs, _ = catalogue()
    # load_collection / save_result / load_stac have the standard specs of the library
    library = _library_specs()
    out = dict(specs)
    for pid in ("load_collection", "save_result", "load_stac"):
        out[pid] = library[pid]
    out.update(_own_specs())
    if extra:
        out.update(extra)
    return dict(sorted(out.items()))


def make_registry(own: dict[str, Callable[..., Any]]) -> Any:
    """A process registry for one run: the library's processes plus ``own`` (the run's
    ``load_collection``/``save_result`` and the node's algorithms), each wrapped by the
    library's ``@process`` (which resolves parameter references)."""
    from openeo_pg_parser_networkx import ProcessRegistry
    from openeo_pg_parser_networkx.process_registry import Process
    from openeo_processes_dask.process_implementations.core import process

    _specs, impls = catalogue()
    all_specs = process_specs()
    registry = ProcessRegistry(wrap_funcs=[process])
    for pid, func in {**impls, **own}.items():
        registry["predefined", pid] = Process(
            spec=all_specs.get(pid, {"id": pid}), implementation=func
        )
    return registry


def own_processes(run: Any) -> dict[str, Callable[..., Any]]:
    """This node's own implementations, bound to one ``execute.Run``."""
    from eoshare.processing import algorithms

    return {
        "load_collection": run.load_collection,
        "load_stac": run.load_stac,
        "save_result": run.save_result,
        **algorithms.IMPLEMENTATIONS,
    }
