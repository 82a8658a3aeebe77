"""Unicode text folding for CQL2's ``casei`` and ``accenti`` (backend-neutral).

SQLite's ``lower()`` folds ASCII only, and its LIKE is ASCII-case-insensitive only, so
``CASEI(title) = casei('москва')`` would not match "Москва". Backends register these two
functions (SQLite: ``create_function``) and the filter translator calls them.
"""

from __future__ import annotations

import unicodedata
from typing import Any


def casei(value: Any) -> Any:
    """Unicode case folding (``str.casefold``: 'Straße' -> 'strasse');
    other values pass through unchanged."""
    return value.casefold() if isinstance(value, str) else value


def accenti(value: Any) -> Any:
    """Accents and other combining marks removed: canonical decomposition (NFD), the
    marks (Unicode category M: Latin acutes, Greek tonos, Arabic harakat...) dropped,
    then recomposed (NFC) so that what remains compares like ordinary text."""
    if not isinstance(value, str):
        return value
    decomposed = unicodedata.normalize("NFD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))
    return unicodedata.normalize("NFC", stripped)
