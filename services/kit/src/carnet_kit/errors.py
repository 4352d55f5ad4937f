"""One small error hierarchy, raised by domain code and mapped once at each boundary.

A :class:`CarnetError` carries a machine-readable ``reason`` (UPPER_SNAKE) and the
``domain`` of the service that raised it (``<service>.carnet``); the gRPC
interceptor turns it into a ``google.rpc.Status`` with one ``ErrorInfo``, and the
gateway turns that status into an HTTP problem+json body.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

_DEFAULT_DOMAIN = "carnet"


class CarnetError(Exception):
    """Base of every error a Carnet service raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"
    http_status = 500

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        domain: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.domain = domain or _DEFAULT_DOMAIN
        self.metadata: dict[str, str] = dict(metadata or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(CarnetError):
    """The request is malformed; ``metadata['field']`` names the offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        domain: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        merged = dict(metadata or {})
        if field:
            merged["field"] = field
        super().__init__(message, reason=reason, domain=domain, metadata=merged)


class NotFound(CarnetError):
    """The named resource does not exist (or the caller may not know it exists)."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"
    http_status = 404


class Conflict(CarnetError):
    """The resource already exists with other content."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"
    http_status = 409


class FailedPrecondition(CarnetError):
    """The system is not in a state where the operation is allowed."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"
    http_status = 409


class PermissionDenied(CarnetError):
    """The caller is known but not allowed to do this."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"
    http_status = 403


class Unauthenticated(CarnetError):
    """The caller presented no valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"
    http_status = 401


class ResourceExhausted(CarnetError):
    """A quota, rate limit or size limit was exceeded."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"
    http_status = 429


class Unavailable(CarnetError):
    """A dependency is down; the call may be retried later."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"
    http_status = 503


class Unimplemented(CarnetError):
    """The method is part of the contract but not served by this version."""

    code = grpc.StatusCode.UNIMPLEMENTED
    default_reason = "NOT_IMPLEMENTED"
    http_status = 501


class DataLoss(CarnetError):
    """Stored data failed an integrity check."""

    code = grpc.StatusCode.DATA_LOSS
    default_reason = "DATA_LOSS"
    http_status = 500


_BY_CODE: dict[grpc.StatusCode, type[CarnetError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        Conflict,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Unavailable,
        Unimplemented,
        DataLoss,
    )
}

HTTP_STATUS_BY_CODE: dict[grpc.StatusCode, int] = {
    **{code: cls.http_status for code, cls in _BY_CODE.items()},
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.ABORTED: 409,
}


def error_class_for(code: grpc.StatusCode) -> type[CarnetError]:
    """The error class that corresponds to a gRPC status code."""
    return _BY_CODE.get(code, CarnetError)
