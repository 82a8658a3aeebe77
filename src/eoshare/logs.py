"""Logging as JSON lines: one object per record, easy to grep and to ship.

Set up once by the CLI (``eoshare serve``, ``ingest``, ``load``, ``demo``) with the level
from ``Settings.log_level``. Library code only calls ``logging.getLogger(__name__)`` and
passes context with ``extra={...}``; those keys become fields of the JSON object.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


_HANDLER_NAME = "eoshare-json"

# Secrets that must never reach a log line: link signatures and other credentials in
# query strings, bearer tokens, API tokens, JWTs, cookies, passwords. Applied to the
# message, its arguments, the extras and the finished line (uvicorn's access log included:
# its records pass through the same handler).
_REDACTED = "[redacted]"
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # query parameters: ?sig=...&token=... (also percent-encoded "=" as %3D)
    (
        re.compile(
            r"(?i)(?<![A-Za-z0-9_])(sig|signature|token|access_token|id_token|refresh_token|"
            r"api_key|apikey|key|secret|password|passwd|code|session|x-amz-signature|"
            r"x-amz-credential|x-amz-security-token)(=|%3D)([^&\s\"'<>]+)"
        ),
        r"\1\2" + _REDACTED,
    ),
    # Authorization values: "Bearer abc", "Basic abc"
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + _REDACTED),
    # header-like or JSON-like fields: authorization / cookie / password / secret: value
    (
        re.compile(
            r"(?i)([\"']?(?:authorization|cookie|set-cookie|password|secret)"
            r"[\"']?\s*[:=]\s*[\"']?)([^\"',}\n]+)"
        ),
        r"\1" + _REDACTED,
    ),
    # eoshare API tokens and JWTs wherever they appear
    (re.compile(r"eos_[0-9a-f]{6,}_[A-Za-z0-9_-]+"), "eos_" + _REDACTED),
    (re.compile(r"\bey[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), _REDACTED),
    # session cookies by name
    (re.compile(r"(eoshare_session=)[^;\s\"']+"), r"\1" + _REDACTED),
]


def redact(text: str) -> str:
    """``text`` with every credential it holds replaced by ``[redacted]``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """A logging filter that redacts secrets from a record before any handler formats it
    (the message with its arguments applied, and every string extra)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


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
        # the last word: nothing that looks like a credential leaves, whatever its field
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


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
    handler.addFilter(RedactSecrets())
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


class HumanFormatter(logging.Formatter):
    """One short line a person reads: ``warning: <message> (key=value, ...)``."""

    def format(self, record: logging.LogRecord) -> str:
        extras = [
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")
        ]
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        return f"{line} ({', '.join(extras)})" if extras else line


def setup_cli_logging(level: str = "info", *, fmt: str = "", file: str | None = None) -> None:
    """Logging for the command line, whose own output is for people.

    ``fmt="json"`` (``EOSHARE_LOG_FORMAT=json``) asks for JSON lines on stderr, as the
    server writes them. Otherwise stderr gets warnings and errors only, as short human
    lines, between the command's own messages; ``file`` (``EOSHARE_LOG_FILE``) also
    receives every record at ``level`` as JSON lines."""
    if fmt == "json":
        setup_logging(level)
        return
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() in (_HANDLER_NAME, _FILE_HANDLER_NAME):
            root.removeHandler(old)
            old.close()
    human: logging.Handler = _StderrHandler()
    human.setFormatter(HumanFormatter())
    human.setLevel(max(numeric, logging.WARNING))
    human.set_name(_HANDLER_NAME)
    root.addHandler(human)
    if file:
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(JsonFormatter())
        to_file.set_name(_FILE_HANDLER_NAME)
        root.addHandler(to_file)
    root.setLevel(numeric if file else max(numeric, logging.WARNING))
    for noisy in ("rasterio", "rio_cogeo", "fiona"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


_FILE_HANDLER_NAME = "eoshare-file"
