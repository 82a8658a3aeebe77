"""Opening store objects with rasterio/GDAL: ``rasterio_env(options)`` applies the GDAL
options that ``Store.gdal_path`` returns.

rasterio refuses AWS credentials passed as plain ``Env`` options (it wants a boto3
session, and eoshare does not depend on boto3), so the credentials travel in a small
rasterio ``Session`` of our own and the rest (endpoint, HTTPS, virtual hosting) as options::

    path, options = store.gdal_path(key)
    with rasterio_env(options), rasterio.open(path) as ds:
        ...
"""

from __future__ import annotations

from typing import Any

import rasterio
from rasterio.session import Session

_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class _StaticCredentials(Session):  # type: ignore[misc]
    """Credentials given as GDAL options, handed to GDAL when the Env starts."""

    def __init__(self, options: dict[str, str]) -> None:
        self._options = options

    @classmethod
    def hascreds(cls, config: dict[str, Any]) -> bool:
        return "AWS_ACCESS_KEY_ID" in config

    @property
    def credentials(self) -> dict[str, str]:
        return dict(self._options)

    def get_credential_options(self) -> dict[str, str]:
        return dict(self._options)


def rasterio_env(options: dict[str, str]) -> Any:
    """A ``rasterio.Env`` with the options of ``Store.gdal_path`` (credentials included)."""
    creds = {k: v for k, v in options.items() if k in _CREDENTIALS}
    rest = {k: v for k, v in options.items() if k not in _CREDENTIALS}
    if creds:
        return rasterio.Env(session=_StaticCredentials(creds), **rest)
    return rasterio.Env(**rest)
