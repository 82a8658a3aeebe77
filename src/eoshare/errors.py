"""The exceptions eoshare raises. No HTTP here: ``eoshare.api.errors`` maps them to
status codes in one table.

    EoshareError
    ├── InvalidRequestError (ValueError)      a caller sent something malformed
    │   ├── InvalidItemError                  a STAC item or collection fails validation
    │   └── InvalidFilterError                CQL2 syntax, unknown queryable, bad operand
    ├── NotFoundError (LookupError)           absent, or hidden from the caller
    ├── ConflictError                         already exists
    ├── PayloadTooLargeError                  a body or a request over a configured limit
    ├── NotAuthenticatedError                 credentials missing or not valid
    ├── AccessDeniedError (PermissionError)   known caller, not allowed
    │   └── QuotaExceededError                a daily quota has no room for this request
    ├── StorageError (OSError)                the store failed (disk, object store)
    │   └── InsufficientStorageError          the disk (or a quota of it) is full
    ├── IngestError                           a file could not be turned into an item
    ├── RateLimitedError                      too many requests or sign-ins (Retry-After)
    └── UpstreamError                         a service we call failed (peer node, S3)

Lower-layer errors are re-raised as the most specific of these with ``raise ... from exc``.
"""

from __future__ import annotations

import errno


class EoshareError(Exception):
    """Root of every error eoshare raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequestError(EoshareError, ValueError):
    """The request is malformed: the caller must change it."""


class InvalidItemError(InvalidRequestError):
    """A STAC item or collection document is not valid."""


class InvalidFilterError(InvalidRequestError):
    """A CQL2 filter cannot be parsed or refers to something unknown."""


class NotFoundError(EoshareError, LookupError):
    """The thing does not exist, or the caller may not know that it does."""


class ConflictError(EoshareError):
    """The thing already exists."""


class PayloadTooLargeError(InvalidRequestError):
    """A body or a requested size is over a configured limit."""


class NotAuthenticatedError(EoshareError):
    """Credentials are missing, malformed, expired or forged."""


class AccessDeniedError(EoshareError, PermissionError):
    """The caller is known but may not do this."""


class StorageError(EoshareError, OSError):
    """The store could not read or write."""


class InsufficientStorageError(StorageError):
    """No space left where the node writes: nothing was written; retry once freed."""


def storage_error(detail: str, exc: OSError) -> StorageError:
    """The StorageError for a failed write: ``InsufficientStorageError`` when the disk
    (or the user's disk quota) is full, so that callers can say so."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return (InsufficientStorageError if full else StorageError)(detail)


# SQLite's result code for "database or disk is full"
_SQLITE_FULL = 13


def database_error(detail: str, exc: Exception) -> StorageError:
    """The StorageError for a failed database write (``InsufficientStorageError`` when
    SQLite says the disk is full)."""
    if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
        return InsufficientStorageError(f"{detail}: no space left on the device")
    if isinstance(exc, OSError):
        return storage_error(detail, exc)
    return StorageError(f"{detail}: {exc}")


class IngestError(EoshareError):
    """A file or document could not be turned into a catalogue entry."""


class RateLimitedError(EoshareError):
    """Too many requests, or too many failed sign-ins: try again after ``retry_after_s``."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = max(1, int(retry_after_s))


class UpstreamError(EoshareError):
    """A service that eoshare depends on failed or is unreachable."""


class QuotaExceededError(AccessDeniedError):
    """A daily quota has no room for this request; ``remaining`` says how much is left
    (in ``unit``: bytes or tiles). The problem document carries both."""

    def __init__(self, detail: str, *, remaining: int, unit: str) -> None:
        super().__init__(detail)
        self.remaining = remaining
        self.unit = unit
        self.problem_extra = {"remaining": remaining, "unit": unit}
