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
import queue
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO

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
# A range of lines prepared: how many lines it had, and their outcomes (in order)
Chunk = tuple[int, list[Outcome]]

# bytes of NDJSON per task (about 160 items of 12.5 KB)
CHUNK_BYTES = 2 * 1024 * 1024
# ...and at most this many read at once by a worker (more: one line at a time)
BLOCK_BYTES = 8 * 1024 * 1024
# lines per chunk of a file read as a stream (a named pipe)
STREAM_LINES = 200
# how much lower the workers' CPU priority is than the writer's
WORKER_NICENESS = 5
# prepared chunks waiting for the writer (a batch of 1,000 such items is 6 chunks)
QUEUED_CHUNKS = 16


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


def prepare_doc(location: Any, doc: Any, plain: frozenset[str] = frozenset()) -> Outcome:
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


def prepare_lines(lines: Iterable[Line], plain: frozenset[str] = frozenset()) -> list[Outcome]:
    """``prepare_doc`` for NDJSON lines (what a worker does per task); each outcome's
    place is the line number it comes with."""
    out: list[Outcome] = []
    for lineno, data in lines:
        if isinstance(data, str):
            out.append(("problem", lineno, data))
            continue
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            out.append(("problem", lineno, f"not valid JSON: {exc}"))
            continue
        try:
            out.append(prepare_doc(lineno, doc, plain))
        except Exception as exc:  # a shape no check foresaw: this line, not the load
            out.append(("problem", lineno, f"cannot be loaded: {type(exc).__name__}: {exc}"))
    return out


def read_lines(
    f: BinaryIO, max_line_bytes: int, end: int | None = None, counted: list[int] | None = None
) -> Iterator[Line]:
    """The non-blank lines of an open NDJSON file from where it stands up to byte
    ``end`` (a line boundary; None: the end of the file), numbered from 1 (``counted``:
    set to the lines read so far); an over-long line comes as the reason it was not
    read (without ever holding it whole)."""
    lineno = 0
    pos = f.tell() if end is not None else 0  # (a pipe has no position)
    while end is None or pos < end:
        line = f.readline(max_line_bytes + 1)
        if not line:
            break
        lineno += 1
        if counted is not None:
            counted[0] = lineno
        pos += len(line)
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while (rest := f.readline(1024 * 1024)) and not rest.endswith(b"\n"):
                pos += len(rest)  # skip the rest of the over-long line, without holding it
            pos += len(rest)
            yield lineno, _too_long(max_line_bytes)
        elif line.strip():
            yield lineno, line


def _too_long(max_line_bytes: int) -> str:
    return f"the line is longer than {max_line_bytes} bytes (EOSHARE_INGEST__MAX_NDJSON_LINE_BYTES)"


def ranges(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, int]]:
    """The file cut into pieces of about ``chunk_bytes`` that end at line ends (a
    long line makes its piece longer: skipped over, never held whole)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = 0
        while start < size:
            if start + chunk_bytes >= size:
                yield start, size
                return
            f.seek(start + chunk_bytes - 1)
            while (piece := f.readline(1024 * 1024)) and not piece.endswith(b"\n"):
                pass
            end = min(f.tell(), size)
            yield start, end
            start = end


def _split_lines(block: bytes, max_line_bytes: int, counted: list[int]) -> Iterator[Line]:
    """``read_lines`` of a block of whole lines held in memory."""
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # (the block ends with its last line's end)
    counted[0] = len(lines)
    for lineno, line in enumerate(lines, 1):
        if len(line) > max_line_bytes:
            yield lineno, _too_long(max_line_bytes)
        elif line.strip():
            yield lineno, line


def prepare_range(
    path: str, start: int, end: int, max_line_bytes: int, plain: frozenset[str] = frozenset()
) -> Chunk:
    """A worker's task: the lines between bytes ``start`` and ``end`` (line
    boundaries) of ``path`` prepared. Their number and their outcomes, placed by line
    numbers counted from the range's start (the writer adds the lines before)."""
    counted = [0]
    with open(path, "rb") as f:
        f.seek(start)
        if end - start <= BLOCK_BYTES:  # read at once (a long line: one at a time)
            lines = _split_lines(f.read(end - start), max_line_bytes, counted)
        else:
            lines = read_lines(f, max_line_bytes, end, counted)
        outcomes = prepare_lines(lines, plain)
    return counted[0], outcomes


def _stream(
    path: Path, max_line_bytes: int, plain: Callable[[], frozenset[str]]
) -> Iterator[Chunk]:
    """``prepare_file`` for a file that cannot be read in ranges (a named pipe)."""
    with open(path, "rb") as f:
        counted = [0]
        base = 0  # lines before the chunk
        lines: list[Line] = []
        for lineno, data in read_lines(f, max_line_bytes, None, counted):
            lines.append((lineno - base, data))
            if len(lines) >= STREAM_LINES:
                yield counted[0] - base, prepare_lines(lines, plain())
                base, lines = counted[0], []
        yield counted[0] - base, prepare_lines(lines, plain())


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
    # The one writer is what a load waits for: where CPUs are short, it goes first
    # (the workers only have to keep ahead of it).
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        kind, payload = task
        if kind == "range":
            try:
                results.send(("chunk", prepare_range(*payload)))
            except OSError as exc:  # the file went away meanwhile...
                results.send(("error", exc))
        else:  # "end" / "fail": the feeder's marker, echoed in order
            results.send((kind, payload))


@contextlib.contextmanager
def few_collections() -> Iterator[None]:
    """The cyclic garbage collector kept quiet while the writer handles millions of
    rows (tuples without cycles, freed batch by batch): its passes over the objects of
    the chunks waiting would take more time than the writing. Restored afterwards."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 100, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


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
    ) -> Generator[Chunk, None, None]:
        """Every line of ``path`` prepared, a chunk (``prepare_range``) at a time, in
        file order; ``plain()``: the collections whose items need no summary facts
        (asked for each chunk). Raises OSError when the file cannot be read.

        A reader thread here hands the workers byte ranges of the file (they read the
        lines themselves); a receiver thread takes the results back in the same order
        into a bounded queue, so that the workers go on while this process writes."""
        if not path.is_file():  # a named pipe...: read as it comes, here
            yield from _stream(path, max_line_bytes, plain)
            return
        if self.workers <= 0:
            for start, end in ranges(path):
                yield prepare_range(str(path), start, end, max_line_bytes, plain())
            return
        n = len(self._tasks)
        cancel = threading.Event()
        slots = threading.Semaphore(2 * n + 2)  # tasks sent and not yet taken back
        done: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=QUEUED_CHUNKS)

        def feed() -> None:
            k = 0
            try:
                for start, end in ranges(path):
                    slots.acquire()
                    if cancel.is_set():
                        break
                    task = (str(path), start, end, max_line_bytes, plain())
                    self._tasks[k % n].send(("range", task))
                    k += 1
                marker: tuple[str, Any] = ("end", None)
            except Exception as exc:
                marker = ("fail", exc)
            with contextlib.suppress(OSError):
                self._tasks[k % n].send(marker)

        def receive() -> None:
            k = 0
            while True:
                try:
                    kind, payload = self._results[k % n].recv()
                except BaseException as exc:  # (EOF: a worker died; anything: the end)
                    done.put(("dead", exc))
                    return
                slots.release()
                k += 1
                done.put((kind, payload))
                if kind in ("end", "fail"):
                    return

        feeder = threading.Thread(target=feed, name="eoshare-load-reader", daemon=True)
        receiver = threading.Thread(target=receive, name="eoshare-load-receiver", daemon=True)
        feeder.start()
        receiver.start()
        finished = False  # the receiver is done
        try:
            while True:
                kind, payload = done.get()
                if kind == "chunk":
                    yield payload
                    continue
                if kind == "error":  # this file cannot be read any more
                    raise payload
                finished = True
                if kind == "end":
                    return
                if kind == "fail":
                    raise payload
                # a worker died: nothing more will come
                raise OSError("a load worker process stopped unexpectedly") from payload
        finally:
            cancel.set()
            for _ in range(n + 1):  # (a feeder waiting for a slot sees the cancel)
                slots.release()
            if not finished:  # the caller stopped early: drain what was asked for
                while done.get()[0] in ("chunk", "error"):
                    pass
            receiver.join()
            feeder.join()
