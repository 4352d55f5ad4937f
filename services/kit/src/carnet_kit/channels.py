"""Client channels to other services: a deadline on every call, the caller's token
forwarded, OpenTelemetry context propagated, and retries on UNAVAILABLE for the
idempotent methods only, declared in the channel's service config.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from carnet_kit.auth import current_token
from carnet_kit.config import HostPort

RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def service_config(idempotent: Mapping[str, Sequence[str]]) -> str:
    """The JSON service config with a retry policy for each idempotent method."""
    names = [{"service": service, "method": method} for service, methods in idempotent.items() for method in methods]
    config: dict[str, Any] = {"methodConfig": []}
    if names:
        config["methodConfig"].append({"name": names, "retryPolicy": RETRY_POLICY})
    return json.dumps(config)


def _with_defaults(details: grpc.aio.ClientCallDetails, timeout: float, token: Callable[[], str]) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if not any(key == "authorization" for key, _ in metadata):
        bearer = token()
        if bearer:
            metadata.add("authorization", f"Bearer {bearer}")
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout if details.timeout is not None else timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _DefaultsInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Adds the default deadline and forwards the bearer token of the RPC being served."""

    def __init__(self, timeout: float, token: Callable[[], str]) -> None:
        self._timeout = timeout
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_defaults(client_call_details, self._timeout, self._token), request)

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_defaults(client_call_details, self._timeout, self._token), request)

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_defaults(client_call_details, self._timeout, self._token), request_iterator)

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_defaults(client_call_details, self._timeout, self._token), request_iterator)


def create_channel(
    target: HostPort | str,
    *,
    idempotent: Mapping[str, Sequence[str]] | None = None,
    timeout: float = 5.0,
    token: Callable[[], str] = current_token,
) -> grpc.aio.Channel:
    """An insecure (in-cluster, mTLS by the mesh) channel to another Carnet service."""
    options = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(idempotent or {})),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    telemetry: list[Any] = aio_client_interceptors()  # type: ignore[no-untyped-call]
    interceptors: list[Any] = [*telemetry, _DefaultsInterceptor(timeout, token)]
    return grpc.aio.insecure_channel(str(target), options=options, interceptors=interceptors)
