"""Logging as JSON lines: one object per record, easy to grep and to ship.

Set up once by the CLI (``eoshare serve``, ``ingest``, ``load``, ``demo``) with the level
from ``Settings.log_level``. Library code only calls ``logging.getLogger(__name__)`` and
passes context with ``extra={...}``; those keys become fields of the JSON object.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


_HANDLER_NAME = "eoshare-json"

# The id of the HTTP request being served (set by api/observability.py): every line
# written while it runs carries it, so one request's lines can be found together.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "eoshare_request_id", default=None
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at set-up
    (test runners and ``typer.testing`` swap it; a handler holding the old, closed one
    would fail)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def setup_logging(level: str = "info", *, stream: TextIO | None = None) -> None:
    """Send every log record (eoshare's and its libraries') to ``stream`` as JSON lines.

    Replaces only the handler an earlier call installed (others, such as pytest's log
    capture, stay), so calling it twice is harmless."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    handler: logging.Handler = logging.StreamHandler(stream) if stream else _StderrHandler()
    handler.setFormatter(JsonFormatter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # GDAL/rasterio and rio-cogeo are chatty at INFO/DEBUG; their problems reach us as
    # exceptions, which we report ourselves.
    for noisy in ("rasterio", "rio_cogeo", "fiona"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
