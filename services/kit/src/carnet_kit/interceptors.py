"""The server interceptor: each call's span, caller authentication and error mapping.

It wraps the method handler's behaviour rather than the handler lookup, so that what it
sets (the span, the caller) and what it catches (domain errors) live in the same task as
the servicer code, for unary and streaming methods alike.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from carnet_kit.auth import TokenVerifier, bind_caller, unbind_caller
from carnet_kit.errors import CarnetError, Unauthenticated, Unimplemented
from carnet_kit.status import trailing_metadata_for

log = logging.getLogger(__name__)
tracer = trace.get_tracer("carnet_kit.server")

Behaviour = Callable[..., Any]
Wrapper = Callable[[Behaviour, bool, bool], Behaviour]

# Methods of the standard services that never need a token.
ALWAYS_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _rewrap(handler: grpc.RpcMethodHandler[Any, Any], wrap: Wrapper) -> grpc.RpcMethodHandler[Any, Any]:
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, False, False),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, False, True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, True, False),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        wrap(handler.stream_stream, True, True),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'", reason="TOKEN_MALFORMED")
    return ""


def _status_of(code: grpc.StatusCode, details: str) -> Status | None:
    """The span status of a server-side outcome (as OpenTelemetry's gRPC instrumentation sets it)."""
    if code in _SERVER_ERRORS:
        return Status(StatusCode.ERROR, f"{code}:{details}")
    return None


_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Every call's server span, its caller's authentication and the mapping of its errors.

    One wrapper per call does all three (OpenTelemetry's own interceptor and one interceptor
    per concern would wrap each call three times, which costs as much CPU as a small call's
    own work). From the outside in:

    - the server span, named after the method and continuing the caller's trace (its
      ``traceparent`` metadata), with the ``rpc.*`` attributes and the status code;
    - error mapping: :class:`CarnetError` becomes a status with ErrorInfo, an unexpected
      failure INTERNAL without its details, ``NotImplementedError`` UNIMPLEMENTED;
    - authentication: the bearer token is verified (except for public methods) and the
      caller bound for the servicer code (:func:`carnet_kit.auth.current_principal`).
    """

    def __init__(self, verifier: TokenVerifier, public_methods: frozenset[str], domain: str) -> None:
        self._verifier = verifier
        self._public = public_methods
        self._domain = domain

    def _fill_domain(self, error: CarnetError) -> CarnetError:
        if error.domain == "carnet":
            error.domain = self._domain
        return error

    def _unimplemented(self) -> CarnetError:
        # The generated servicer base raises NotImplementedError for methods of the
        # contract that a service does not serve yet: that is UNIMPLEMENTED, not a crash.
        return Unimplemented("this method is not available yet", domain=self._domain)

    def _wrap_for(self, method: str, metadata: Any) -> Wrapper:
        interceptor = self
        verifier = self._verifier
        public = method in self._public or method.startswith(ALWAYS_PUBLIC_PREFIXES)
        domain = self._domain
        carrier: dict[str, str] = {}
        for key, value in metadata or ():
            if key in _PROPAGATED:
                carrier[key] = value.decode() if isinstance(value, bytes) else value
        service, _, name = method.lstrip("/").partition("/")
        attributes: dict[str, AttributeValue] = {"rpc.system": "grpc", "rpc.grpc.status_code": 0, "rpc.method": name, "rpc.service": service}

        async def authenticate() -> Any:
            token = _bearer(metadata)
            if not token:
                if public:
                    return bind_caller(None, "")
                raise Unauthenticated("this call needs an access token", reason="TOKEN_MISSING", domain=domain)
            try:
                principal = await verifier.verify(token)
            except Unauthenticated:
                if public:
                    return bind_caller(None, "")
                raise
            return bind_caller(principal, token)

        def start_span() -> Any:
            return tracer.start_as_current_span(
                method,
                context=propagate.extract(carrier) if carrier else None,
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            )

        async def abort(span: Span, context: grpc.aio.ServicerContext[Any, Any], error: CarnetError) -> None:
            _end_status(span, error.code, error.message)
            await context.abort(error.code, error.message, trailing_metadata=trailing_metadata_for(error))

        def aborted(span: Span, context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
            # The servicer aborted by itself (context.abort): its code is the call's.
            code = context.code()
            if isinstance(code, grpc.StatusCode) and span.is_recording():
                _end_status(span, code, context.details() or "")
            span.record_exception(exc)

        def wrap(behaviour: Behaviour, _streaming_in: bool, streaming_out: bool) -> Behaviour:
            if streaming_out:

                async def stream_behaviour(request: Any, context: Any) -> AsyncIterator[Any]:
                    with start_span() as span:
                        try:
                            # Each RPC runs in its own task, so the binding cannot leak; an async
                            # generator may be finalised in another context, where a reset fails.
                            await authenticate()
                            async for response in behaviour(request, context):
                                yield response
                        except CarnetError as error:
                            await abort(span, context, interceptor._fill_domain(error))
                        except grpc.aio.AbortError as exc:
                            aborted(span, context, exc)
                            raise
                        except GeneratorExit:
                            raise
                        except NotImplementedError:
                            await abort(span, context, interceptor._unimplemented())
                        except Exception:
                            log.exception("unexpected failure in a streaming RPC")
                            await abort(span, context, CarnetError("internal error", domain=domain))

                return stream_behaviour

            async def unary_behaviour(request: Any, context: Any) -> Any:
                with start_span() as span:
                    try:
                        bound = await authenticate()
                        try:
                            return await behaviour(request, context)
                        finally:
                            unbind_caller(bound)
                    except CarnetError as error:
                        await abort(span, context, interceptor._fill_domain(error))
                    except grpc.aio.AbortError as exc:
                        aborted(span, context, exc)
                        raise
                    except NotImplementedError:
                        await abort(span, context, interceptor._unimplemented())
                    except Exception:
                        log.exception("unexpected failure in an RPC")
                        await abort(span, context, CarnetError("internal error", domain=domain))

            return unary_behaviour

        return wrap

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return _rewrap(handler, self._wrap_for(handler_call_details.method, handler_call_details.invocation_metadata))


# The metadata a caller's trace context travels in (W3C trace context and baggage).
_PROPAGATED = frozenset({"traceparent", "tracestate", "baggage"})


def _end_status(span: Span, code: grpc.StatusCode, details: str) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    status = _status_of(code, details)
    if status is not None:
        span.set_status(status)
