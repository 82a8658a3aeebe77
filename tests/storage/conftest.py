"""Fixtures of the storage tests: a real S3-compatible server (SeaweedFS, see
``s3_weed.py``) for the session, and ``store``, which parametrizes a test over both
backends: ``local`` and ``s3``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_weed import ACCESS_KEY, SECRET_KEY, WeedServer

from eoshare.storage.base import Store
from eoshare.storage.local import LocalStore
from eoshare.storage.s3 import S3Store


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedServer]:
    """A SeaweedFS server with S3 on 127.0.0.1, for the whole session."""
    server = WeedServer(tmp_path_factory.mktemp("weed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def s3_store(server: WeedServer, bucket: str, prefix: str = "") -> S3Store:
    store = S3Store.from_url(
        server.store_url(bucket, prefix), access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY
    )
    assert isinstance(store, S3Store)
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A fresh, empty store of each kind."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server: WeedServer = request.getfixturevalue("weed")
    bucket = f"t{uuid.uuid4().hex[:12]}"
    server.make_bucket(bucket)
    return s3_store(server, bucket, prefix="archive")


@pytest.fixture(scope="session")
def s3_credentials() -> dict[str, str]:
    return {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}
