"""Fixtures of the security tests. Each helper's fixtures live in their own module and are
re-exported here under prefixed names (``secbytes_*``: the byte-path attack tests)."""

from __future__ import annotations

from .bytes_node import secbytes_node

__all__ = ["secbytes_node"]
