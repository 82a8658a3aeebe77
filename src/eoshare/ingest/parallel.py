"""The CPU side of ``eoshare load``: NDJSON lines parsed, checked and prepared in worker
processes, handed back in file order to the one process that writes (``stacdocs``).

Per line, a worker does everything that needs no database (``prepare_line``): parse,
tell items from collections, strip the node's own asset fields (``eoshare:key``),
validate (``catalog.prepared.prepare_item``) and derive the stored row and what the
item adds to its collection's summaries. The writer only checks collections and
conflicts, and writes each batch in one transaction.

Workers are plain processes with a pipe each way; a feeder thread reads the file in
chunks of lines and deals them round-robin, and results are read back in the same
order, so the file order is kept. Memory stays bounded: each worker holds at most one
chunk to do and one done. A worker dies with the writer (``PR_SET_PDEATHSIG`` and the
end of its pipe): ``kill -9`` of ``eoshare load`` leaves no process behind. With
``workers=0`` the same functions run in the calling process (small files, tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from eoshare.catalog.assetkeys import strip_node_fields
from eoshare.catalog.prepared import interned, prepare_item
from eoshare.errors import InvalidRequestError
from eoshare.ingest.collections import SummaryFacts, summary_facts

# One line's outcome, in file order:
#   ("problem", location, reason)                   not loaded (bad JSON, not an item...)
#   ("collection", location, document)              a Collection document
#   ("invalid", location, collection, id, reason)   an item that fails validation
#   ("item", location, PreparedItem, SummaryFacts | None)  a valid item, ready to write
Outcome = tuple[Any, ...]
# A line of the file: (line number, its bytes) or (line number, why it was not read)
Line = tuple[int, bytes | str]

CHUNK_LINES = 200


def doc_type(doc: Any) -> str | None:
    """``Feature``, ``Collection``... A pre-1.0 collection had no ``type`` (STAC added it
    in 1.0.0-rc.1); one with ``extent`` and ``license`` gets ``"type": "Collection"``
    here, the only change ever made to a loaded document."""
    if not isinstance(doc, dict):
        return None
    value = doc.get("type")
    if value is None and "extent" in doc and "license" in doc:
        doc["type"] = value = "Collection"
    return value if isinstance(value, str) else None


def prepare_doc(location: str, doc: Any, plain: frozenset[str] = frozenset()) -> Outcome:
    """What ``eoshare load`` does with one parsed document before writing it. Items of
    the ``plain`` collections (ones eoshare keeps no summaries of) come without their
    summary facts (None)."""
    kind = doc_type(doc)
    if kind == "Collection":
        return ("collection", location, doc)
    if kind != "Feature":
        return ("problem", location, f"expected a STAC Item (type 'Feature'), got type {kind!r}")
    collection = doc.get("collection")
    if not isinstance(collection, str) or not collection:
        return ("problem", location, f"item {doc.get('id')!r} names no 'collection'")
    # Store keys are the node's own (ingest, upload): never taken from a document.
    doc = strip_node_fields(doc)
    item_id = doc.get("id")
    try:
        row, stored = prepare_item(doc)
    except InvalidRequestError as exc:
        return ("invalid", location, collection, item_id if isinstance(item_id, str) else None,
                exc.detail)  # fmt: skip
    facts: SummaryFacts | None = None
    if collection not in plain:
        static, cloud = summary_facts(stored)
        with contextlib.suppress(TypeError):  # (unhashable: a list as "gsd"...)
            static = interned(static)
        facts = (static, cloud)
    return ("item", location, row, facts)


def prepare_lines(
    path: str, lines: list[Line], plain: frozenset[str] = frozenset()
) -> list[Outcome]:
    """``prepare_doc`` for a chunk of NDJSON lines (what a worker does per task)."""
    out: list[Outcome] = []
    for lineno, data in lines:
        location = f"{path}:{lineno}"
        if isinstance(data, str):
            out.append(("problem", location, data))
            continue
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            out.append(("problem", location, f"not valid JSON: {exc}"))
            continue
        try:
            out.append(prepare_doc(location, doc, plain))
        except Exception as exc:  # a shape no check foresaw: this line, not the load
            out.append(("problem", location, f"cannot be loaded: {type(exc).__name__}: {exc}"))
    return out


def read_lines(
    path: Path, max_line_bytes: int, chunk_lines: int = CHUNK_LINES
) -> Iterator[list[Line]]:
    """The non-blank lines of an NDJSON file in chunks; an over-long line comes as the
    reason it was not read (without ever holding it whole)."""
    chunk: list[Line] = []
    with open(path, "rb") as f:
        lineno = 0
        while True:
            line = f.readline(max_line_bytes + 1)
            if not line:
                break
            lineno += 1
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                while (rest := f.readline(1024 * 1024)) and not rest.endswith(b"\n"):
                    pass  # skip the rest of the over-long line, without holding it
                chunk.append(
                    (
                        lineno,
                        f"the line is longer than {max_line_bytes} bytes "
                        "(EOSHARE_INGEST__MAX_NDJSON_LINE_BYTES)",
                    )
                )
            elif line.strip():
                chunk.append((lineno, line))
            if len(chunk) >= chunk_lines:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(0)


def _worker(tasks: Connection, results: Connection, parent: int) -> None:
    _die_with_parent(parent)
    # Each chunk's documents are freed as soon as it is done (no cycles): the cyclic
    # collector's full passes over them would only cost time.
    gc.freeze()
    gc.set_threshold(100_000, 100, 100)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the writer's to handle
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        kind, path, payload, plain = task
        if kind == "chunk":
            results.send(("chunk", prepare_lines(path, payload, plain)))
        else:  # "end" / "fail": the feeder's marker, echoed in order
            results.send((kind, payload))


def default_workers() -> int:
    """Worker processes for a big load: one per CPU, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


class PreparePool:
    """``workers`` processes preparing NDJSON chunks; ``prepare_file`` yields each
    chunk's outcomes in file order. A context manager: the workers stop on exit."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._tasks: list[Connection] = []
        self._results: list[Connection] = []
        self._procs: list[Any] = []
        if workers <= 0:
            return
        methods = multiprocessing.get_all_start_methods()
        ctx: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        for _ in range(workers):
            task_r, task_w = ctx.Pipe(duplex=False)
            res_r, res_w = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker, args=(task_r, res_w, os.getpid()), daemon=True, name="eoshare-load"
            )
            proc.start()
            task_r.close()
            res_w.close()
            self._tasks.append(task_w)
            self._results.append(res_r)
            self._procs.append(proc)

    def __enter__(self) -> PreparePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._tasks:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._results:
            conn.close()
        self._tasks, self._results, self._procs = [], [], []

    def prepare_file(
        self,
        path: Path,
        max_line_bytes: int,
        plain: Callable[[], frozenset[str]] = frozenset,
    ) -> Generator[list[Outcome], None, None]:
        """The outcomes of every line of ``path``, a chunk at a time, in file order;
        ``plain()``: the collections whose items need no summary facts (asked for each
        chunk). Raises OSError when the file cannot be read."""
        if self.workers <= 0:
            for lines in read_lines(path, max_line_bytes):
                yield prepare_lines(str(path), lines, plain())
            return
        n = len(self._tasks)
        cancel = threading.Event()

        def feed() -> None:
            k = 0
            try:
                for lines in read_lines(path, max_line_bytes):
                    if cancel.is_set():
                        break
                    self._tasks[k % n].send(("chunk", str(path), lines, plain()))
                    k += 1
                marker: tuple[str, str, Any, Any] = ("end", "", None, None)
            except Exception as exc:
                marker = ("fail", "", exc, None)
            with contextlib.suppress(OSError):
                self._tasks[k % n].send(marker)

        feeder = threading.Thread(target=feed, name="eoshare-load-reader", daemon=True)
        feeder.start()
        k = 0
        finished = False
        try:
            while True:
                try:
                    kind, payload = self._results[k % n].recv()
                except (EOFError, OSError) as exc:
                    finished = True  # a worker died: nothing more will come
                    raise OSError("a load worker process stopped unexpectedly") from exc
                k += 1
                if kind == "end":
                    finished = True
                    return
                if kind == "fail":
                    finished = True
                    raise payload
                yield payload
        finally:
            if not finished:  # the caller stopped early: let the feeder stop, drain
                cancel.set()
                with contextlib.suppress(EOFError, OSError):
                    while self._results[k % n].recv()[0] == "chunk":
                        k += 1
            feeder.join()
