"""openEO's error codes as eoshare errors.

Each class is also the eoshare family it belongs to (``ProcessGraphInvalid`` is an
``InvalidRequestError``), so code outside the openEO routes treats it like any other error;
the openEO routes answer it as an openEO error document ``{"id", "code", "message"}`` with
the status that the openEO API's ``errors.json`` gives the code.
"""

from __future__ import annotations

from eoshare.errors import (
    AccessDeniedError,
    ConflictError,
    EoshareError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotFoundError,
)


class OpenEOError(EoshareError):
    """An error with an openEO code. ``status`` is the HTTP status the spec names."""

    code = "Internal"
    status = 500


class ProcessGraphMissing(OpenEOError, InvalidRequestError):
    code, status = "ProcessGraphMissing", 400


class ProcessGraphInvalid(OpenEOError, InvalidRequestError):
    code, status = "ProcessGraphInvalid", 400


class ProcessUnsupported(OpenEOError, InvalidRequestError):
    code, status = "ProcessUnsupported", 400


class ProcessParameterInvalid(OpenEOError, InvalidRequestError):
    code, status = "ProcessParameterInvalid", 400


class ProcessGraphComplexity(OpenEOError, InvalidRequestError):
    code, status = "ProcessGraphComplexity", 400


class FormatUnsupported(OpenEOError, InvalidRequestError):
    code, status = "FormatUnsupported", 400


class CollectionNotFound(OpenEOError, NotFoundError):
    code, status = "CollectionNotFound", 404


class JobNotFound(OpenEOError, NotFoundError):
    code, status = "JobNotFound", 404


class ProcessGraphNotFound(OpenEOError, NotFoundError):
    code, status = "ProcessGraphNotFound", 404


class JobNotFinished(OpenEOError, InvalidRequestError):
    code, status = "JobNotFinished", 400


class JobLocked(OpenEOError, InvalidRequestError):
    code, status = "JobLocked", 400


class JobNotStarted(OpenEOError, InvalidRequestError):
    code, status = "JobNotStarted", 400


class PermissionsInsufficient(OpenEOError, AccessDeniedError):
    code, status = "PermissionsInsufficient", 403


class CredentialsInvalid(OpenEOError, NotAuthenticatedError):
    code, status = "CredentialsInvalid", 403


class AuthenticationRequired(OpenEOError, NotAuthenticatedError):
    code, status = "AuthenticationRequired", 401


class QuotaExceeded(OpenEOError, ConflictError):
    code, status = "PaymentRequired", 402


class ExecutionFailed(OpenEOError):
    """The graph was valid but computing it failed (a process raised)."""

    code, status = "Internal", 500


# The code for a plain eoshare error of each status (the openEO routes' fallback).
CODE_FOR_STATUS = {
    400: "BadRequest",
    401: "AuthenticationRequired",
    403: "PermissionsInsufficient",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "ContentTypeInvalid",
    500: "Internal",
    502: "ServiceUnavailable",
    503: "ServiceUnavailable",
}
