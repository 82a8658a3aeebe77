"""Fixtures of the download tests (the helpers live in ``nodes.py``)."""

from __future__ import annotations

from dl_nodes import http, node

__all__ = ["http", "node"]
