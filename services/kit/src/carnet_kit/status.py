"""Conversions between :class:`CarnetError` and ``google.rpc.Status`` with ``ErrorInfo``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from carnet_kit.errors import CarnetError, error_class_for

DETAILS_METADATA_KEY = "grpc-status-details-bin"


def to_status_proto(error: CarnetError) -> status_pb2.Status:
    """The rich status for an error: code, message and one ErrorInfo."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=error.domain, metadata=error.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=[detail])


def trailing_metadata_for(error: CarnetError) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata that carries the rich status to the client."""
    return ((DETAILS_METADATA_KEY, to_status_proto(error).SerializeToString()),)


@dataclass(frozen=True)
class RemoteError:
    """What a failed gRPC call said: status code, message and its ErrorInfo if any."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def to_error(self) -> CarnetError:
        """Re-raise a downstream failure as the same kind of Carnet error."""
        cls = error_class_for(self.code)
        return cls(self.message, reason=self.reason or None, domain=self.domain or None, metadata=self.metadata)


def _code_from_int(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


def parse_rpc_error(error: grpc.aio.AioRpcError | grpc.RpcError) -> RemoteError:
    """Read code, message and ErrorInfo from a failed call."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    trailing: Any = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == DETAILS_METADATA_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return RemoteError(
                        _code_from_int(status.code),
                        status.message,
                        info.reason,
                        info.domain,
                        dict(info.metadata),
                    )
    return RemoteError(code, message or "")
