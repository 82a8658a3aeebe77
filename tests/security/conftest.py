"""Fixtures of the security tests. Each helper module's fixtures are re-exported here
(``secbytes_*``: the byte-path attack tests), plus a live node with the access tests'
members, users, tokens and one collection per kind of agreement
(``tests/access/conftest.py``) for the adversarial tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from access.conftest import Node, build_node, serve

from .bytes_node import secbytes_node

__all__ = ["secbytes_node"]


@pytest.fixture(scope="session")
def access_node(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Node]:
    data_dir = tmp_path_factory.mktemp("eoshare-security")
    built, env = build_node(data_dir, shared_data)
    with serve(data_dir, env) as url:
        built.url = url
        yield built
        log = (data_dir / "server.log").read_text()
    assert "Traceback" not in log, log


@pytest.fixture()
def http(access_node: Node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=access_node.url, timeout=60) as client:
        yield client
