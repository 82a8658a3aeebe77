"""A batch job's own process: ``python -m eoshare.processing.worker PLAN.json``.

The node resolves the job's inputs (access decisions included) before it starts this
process, and writes them into the plan; this process only computes and writes files into
the plan's ``out_dir``: ``log.jsonl`` (log lines and progress as it goes),
``outputs.json`` when it succeeds, ``error.json`` when it fails. Cancelling a job kills
this process, which frees its threads (and, on a Dask cluster, its client's tasks) at once.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from eoshare.processing.errors import OpenEOError, ProcessParameterInvalid

JSON = dict[str, Any]


class _Progress:
    """Dask callbacks that write the share of finished tasks to the log (local scheduler)."""

    def __init__(self, emit: Any) -> None:
        from dask.callbacks import Callback

        self.emit = emit
        self.total = 0
        self.done = 0
        self.last = 0.0
        outer = self

        class _CB(Callback):
            def _start_state(self, dsk: Any, state: Any) -> None:
                outer.total += len(state["ready"]) + len(state["waiting"])

            def _posttask(self, *args: Any) -> None:
                outer.done += 1
                now = time.monotonic()
                if outer.total and now - outer.last > 0.5:
                    outer.last = now
                    outer.emit({"progress": min(99.0, 100.0 * outer.done / outer.total)})

        self.callback = _CB()  # type: ignore[no-untyped-call]


def main(argv: list[str]) -> int:
    plan = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    out_dir = Path(plan["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    log_file: TextIO = (out_dir / "log.jsonl").open("a", encoding="utf-8")

    def emit(record: JSON) -> None:
        with lock:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    def logger(level: str, message: str) -> None:
        emit({"level": level, "message": message})

    try:
        from eoshare.processing.execute import Run
        from eoshare.processing.inputs import CollectionInput
        from eoshare.processing.registry import make_registry, own_processes

        inputs = {k: CollectionInput.from_dict(v) for k, v in plan["inputs"].items()}

        def resolver(cid: str, bbox: Any, start: Any, end: Any, bands: Any) -> CollectionInput:
            if cid not in inputs:
                raise ProcessParameterInvalid(f"collection '{cid}' was not resolved for this job")
            narrowed: CollectionInput = _narrow(inputs[cid], start, end)
            return narrowed

        run = Run(resolver, out_dir / "files", logger=logger, dask_address=plan.get("dask"))
        registry = make_registry(own_processes(run))
        logger("info", "computing")
        progress = _Progress(emit)
        with progress.callback:
            _, outputs = run.execute(plan["graph"], registry)
        (out_dir / "outputs.json").write_text(
            json.dumps([o.to_dict() for o in outputs]), encoding="utf-8"
        )
        logger("info", f"wrote {len(outputs)} file(s)")
        return 0
    except OpenEOError as exc:
        (out_dir / "error.json").write_text(
            json.dumps({"code": exc.code, "message": exc.detail}), encoding="utf-8"
        )
        logger("error", exc.detail)
        return 1
    except Exception as exc:
        logger("error", "".join(traceback.format_exception_only(exc)).strip()[:2000])
        (out_dir / "error.json").write_text(
            json.dumps({"code": "Internal", "message": f"{type(exc).__name__}: {exc}"[:2000]}),
            encoding="utf-8",
        )
        return 1
    finally:
        log_file.close()


def run_in_child(plan_path: str, output: str) -> None:
    """The target of a job process forked by the node's fork server: output to a file,
    exit status 0 or 1."""
    import os

    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.exit(main(["worker", plan_path]))


def _narrow(inp: Any, start: datetime | None, end: datetime | None) -> Any:
    """The resolved input, less the scenes outside [start, end] (a graph may load a
    shorter period of a collection than the union the node resolved)."""
    from eoshare.access.policy import item_acquired
    from eoshare.processing.inputs import CollectionInput

    if start is None and end is None:
        return inp
    kept = []
    for item in inp.items:
        when = item_acquired(item)
        if when is None or ((start is None or when >= start) and (end is None or when <= end)):
            kept.append(item)
    out: CollectionInput = CollectionInput.from_dict({**inp.to_dict(), "items": kept})
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv))
