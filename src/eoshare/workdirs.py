"""Temporary work folders that a killed process cannot leave behind for long.

A command that needs scratch space (ingest, storage migrate) makes its folder with
``workdir(prefix)``: the name carries the process id, ``eoshare-ingest-<pid>-xxxx``. A
``kill -9`` skips the clean-up, so the next run of any such command first removes the
folders whose process is gone (``sweep(prefix)``), and ``eoshare housekeeping`` can too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# folders of older eoshare versions carry no pid: removed once they are a day old
_LEGACY_AGE_S = 24 * 3600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def stale(prefix: str, root: Path | None = None) -> list[Path]:
    """The ``<prefix><pid>-*`` folders whose process no longer runs (and legacy ones a
    day old), without removing them (``eoshare housekeeping --dry-run``)."""
    root = Path(root or tempfile.gettempdir())
    pattern = re.compile(re.escape(prefix) + r"(?:(\d+)-)?")
    found = []
    for path in root.glob(f"{prefix}*"):
        match = pattern.match(path.name)
        if not match or not path.is_dir() or path.is_symlink():
            continue
        pid = match.group(1)
        is_stale = False
        if pid is not None:
            is_stale = int(pid) != os.getpid() and not _alive(int(pid))
        else:
            with contextlib.suppress(OSError):
                is_stale = time.time() - path.stat().st_mtime > _LEGACY_AGE_S
        if is_stale:
            found.append(path)
    return sorted(found)


def sweep(prefix: str, root: Path | None = None) -> list[Path]:
    """Remove ``<prefix><pid>-*`` folders whose process no longer runs; returns them."""
    removed = stale(prefix, root)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A fresh scratch folder named after this process, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-") as tmp:
        yield Path(tmp)
