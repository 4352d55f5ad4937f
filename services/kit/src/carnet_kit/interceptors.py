"""Server interceptors: caller authentication and error mapping.

Both wrap the method handler's behaviour rather than the handler lookup, so that
what they set (the caller) and what they catch (domain errors) live in the same
task as the servicer code, for unary and streaming methods alike.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc

from carnet_kit.auth import TokenVerifier, bind_caller, unbind_caller
from carnet_kit.errors import CarnetError, Unauthenticated, Unimplemented
from carnet_kit.status import trailing_metadata_for

log = logging.getLogger(__name__)

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


async def _abort_with(context: grpc.aio.ServicerContext[Any, Any], error: CarnetError) -> None:
    await context.abort(error.code, error.message, trailing_metadata=trailing_metadata_for(error))


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Turns :class:`CarnetError` into a status with ErrorInfo; hides unexpected failures."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    def _fill_domain(self, error: CarnetError) -> CarnetError:
        if error.domain == "carnet":
            error.domain = self._domain
        return error

    def _unimplemented(self) -> CarnetError:
        # The generated servicer base raises NotImplementedError for methods of the
        # contract that a service does not serve yet: that is UNIMPLEMENTED, not a crash.
        return Unimplemented("this method is not available yet", domain=self._domain)

    def _wrap(self, behaviour: Behaviour, _streaming_in: bool, streaming_out: bool) -> Behaviour:
        interceptor = self

        if streaming_out:

            async def stream_behaviour(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                try:
                    async for response in behaviour(request, context):
                        yield response
                except CarnetError as error:
                    await _abort_with(context, interceptor._fill_domain(error))
                except (grpc.aio.AbortError, GeneratorExit):
                    raise
                except NotImplementedError:
                    await _abort_with(context, interceptor._unimplemented())
                except Exception:
                    log.exception("unexpected failure in a streaming RPC")
                    await _abort_with(context, CarnetError("internal error", domain=interceptor._domain))

            return stream_behaviour

        async def unary_behaviour(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behaviour(request, context)
            except CarnetError as error:
                await _abort_with(context, interceptor._fill_domain(error))
            except grpc.aio.AbortError:
                raise
            except NotImplementedError:
                await _abort_with(context, interceptor._unimplemented())
            except Exception:
                log.exception("unexpected failure in an RPC")
                await _abort_with(context, CarnetError("internal error", domain=interceptor._domain))

        return unary_behaviour

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return _rewrap(handler, self._wrap)


def _bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'", reason="TOKEN_MALFORMED")
    return ""


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Verifies the bearer token of every call except public methods, and binds the caller."""

    def __init__(self, verifier: TokenVerifier, public_methods: frozenset[str], domain: str) -> None:
        self._verifier = verifier
        self._public = public_methods
        self._domain = domain

    def _wrap_for(self, method: str, metadata: Any) -> Wrapper:
        verifier = self._verifier
        public = method in self._public or method.startswith(ALWAYS_PUBLIC_PREFIXES)
        domain = self._domain

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

        def wrap(behaviour: Behaviour, _streaming_in: bool, streaming_out: bool) -> Behaviour:
            if streaming_out:

                async def stream_behaviour(request: Any, context: Any) -> AsyncIterator[Any]:
                    # Each RPC runs in its own task, so the binding cannot leak; an async
                    # generator may be finalised in another context, where a reset fails.
                    await authenticate()
                    async for response in behaviour(request, context):
                        yield response

                return stream_behaviour

            async def unary_behaviour(request: Any, context: Any) -> Any:
                bound = await authenticate()
                try:
                    return await behaviour(request, context)
                finally:
                    unbind_caller(bound)

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
