"""Help text that names values as people read them: ``PATH...``, ``TEXT``, ``INTEGER``
and nothing for on/off flags, instead of the Python type names Typer shows
(``<list[Path]>``, ``<str>``, ``<bool>``).

Typer builds the type column of ``--help`` in one method,
``typer.core._TyperParameter.display_type``; ``install()`` wraps it once, for every
command of the ``eoshare`` CLI (called by ``eoshare.cli`` at import).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_NAMES = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "NUMBER",
    "Path": "PATH",
    "path": "PATH",
    "dir": "DIR",
    "file": "FILE",
    "datetime": "DATETIME",
    "date": "DATE",
    "UUID": "UUID",
}
_LIST = re.compile(r"^list\[(.*)\]$")


def plain(label: str | None) -> str | None:
    """A Typer type label (``<list[Path]>``) as a help metavar (``PATH...``); ``""``
    for flags, which take no value."""
    if label is None or not (label.startswith("<") and label.endswith(">")):
        return label
    inner = label[1:-1]
    if inner == "bool":
        return ""
    many = _LIST.match(inner)
    if many:
        return f"{plain('<' + many.group(1) + '>')}..."
    if inner in _NAMES:
        return _NAMES[inner]
    if "|" in inner or inner.islower():  # choices: [a|b|c]
        return f"[{inner}]"
    return inner.upper()


_installed = False


def install() -> None:
    """Wrap Typer's type labels once (idempotent)."""
    global _installed
    if _installed:
        return
    from typer import core

    original: Callable[..., Any] = core._TyperParameter.display_type

    def display_type(self: Any, ctx: Any) -> Any:
        return plain(original(self, ctx))

    core._TyperParameter.display_type = display_type  # type: ignore[method-assign]
    _installed = True
