"""Ready-made algorithms, offered as processes (their specs are in ``specs/``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {}
