"""Client channels to other services: a deadline on every call, the caller's token
forwarded, OpenTelemetry context propagated, and retries on UNAVAILABLE for the
idempotent methods only, declared in the channel's service config.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

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

_tracer = trace.get_tracer("carnet_kit.channels")


def service_config(idempotent: Mapping[str, Sequence[str]]) -> str:
    """The JSON service config with a retry policy for each idempotent method."""
    names = [{"service": service, "method": method} for service, methods in idempotent.items() for method in methods]
    config: dict[str, Any] = {"methodConfig": []}
    if names:
        config["methodConfig"].append({"name": names, "retryPolicy": RETRY_POLICY})
    return json.dumps(config)


# The metadata the caller's trace context travels in, written by the propagator.
_Carrier = dict[str, str]


class _TracedUnaryCall:
    """A call with one response: awaiting it ends its client span with the call's status.

    Everything else (``code()``, ``cancel()``, ``initial_metadata()``…) is the call's own.
    """

    __slots__ = ("_call", "_ended", "_span")

    def __init__(self, call: Any, span: Span) -> None:
        self._call = call
        self._span = span
        self._ended = False

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    async def _result(self) -> Any:
        try:
            response = await self._call
        except grpc.aio.AioRpcError as error:
            self._end(error)
            raise
        except BaseException:
            self._end(None)
            raise
        self._end(None)
        return response

    def _end(self, error: grpc.aio.AioRpcError | None) -> None:
        if self._ended:
            return
        self._ended = True
        _end_span(self._span, error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class _TracedStreamCall:
    """A call with a stream of responses: its client span ends when the stream does."""

    __slots__ = ("_call", "_span")

    def __init__(self, call: Any, span: Span) -> None:
        self._call = call
        self._span = span

    async def __aiter__(self) -> AsyncIterator[Any]:
        error: grpc.aio.AioRpcError | None = None
        try:
            async for response in self._call:
                yield response
        except grpc.aio.AioRpcError as exc:
            error = exc
            raise
        finally:
            _end_span(self._span, error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


def _end_span(span: Span, error: grpc.aio.AioRpcError | None) -> None:
    if error is not None:
        span.set_attribute("rpc.grpc.status_code", error.code().value[0])
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.record_exception(error)
    span.end()


class _Multicallable:
    """One method of a :class:`TracedChannel`: deadline, token, client span, trace context."""

    __slots__ = ("_attributes", "_inner", "_method", "_streaming_out", "_timeout", "_token")

    def __init__(self, inner: Any, method: str, timeout: float, token: Callable[[], str], streaming_out: bool) -> None:
        self._inner = inner
        self._method = method
        service, _, name = method.lstrip("/").partition("/")
        self._attributes: dict[str, AttributeValue] = {
            "rpc.system": "grpc",
            "rpc.grpc.status_code": 0,
            "rpc.method": name,
            "rpc.service": service,
        }
        self._timeout = timeout
        self._token = token
        self._streaming_out = streaming_out

    def __call__(
        self,
        request: Any = None,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        span = _tracer.start_span(self._method, kind=SpanKind.CLIENT, attributes=self._attributes)
        outgoing: list[tuple[str, str | bytes]] = list(metadata or ())
        if not any(key == "authorization" for key, _ in outgoing):
            bearer = self._token()
            if bearer:
                outgoing.append(("authorization", f"Bearer {bearer}"))
        carrier: _Carrier = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        outgoing.extend(carrier.items())
        try:
            call = self._inner(
                request,
                timeout=self._timeout if timeout is None else timeout,
                metadata=tuple(outgoing),
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )
        except BaseException:
            span.end()
            raise
        return _TracedStreamCall(call, span) if self._streaming_out else _TracedUnaryCall(call, span)


class TracedChannel(grpc.aio.Channel):
    """A channel whose calls get the default deadline, the forwarded bearer token, a client span
    and the trace context, without client interceptors.

    (grpc.aio runs every call of a channel with interceptors through extra tasks and wrapper
    calls: OpenTelemetry's interceptor and one of Carnet's cost about as much CPU as the call
    itself.)
    """

    def __init__(self, channel: grpc.aio.Channel, timeout: float, token: Callable[[], str]) -> None:
        self._channel = channel
        self._timeout = timeout
        self._token = token

    def _multicallable(self, inner: Any, method: str, streaming_out: bool) -> Any:
        return _Multicallable(inner, method, self._timeout, self._token, streaming_out)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable(self._channel.unary_unary(method, *args, **kwargs), method, False)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable(self._channel.stream_unary(method, *args, **kwargs), method, False)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable(self._channel.unary_stream(method, *args, **kwargs), method, True)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable(self._channel.stream_stream(method, *args, **kwargs), method, True)

    async def __aenter__(self) -> TracedChannel:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self._channel.close(None)

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()


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
    return TracedChannel(grpc.aio.insecure_channel(str(target), options=options), timeout, token)
