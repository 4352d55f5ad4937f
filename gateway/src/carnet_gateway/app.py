"""The gateway application: routes, problem+json errors, tracing of every request."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carnet_gateway import api, devtools, notify_routes, record_routes, space_routes
from carnet_gateway.backends import Backends
from carnet_gateway.problems import (
    handle_carnet_error,
    handle_http_error,
    handle_rpc_error,
    handle_validation_error,
    problem,
)
from carnet_gateway.settings import GatewaySettings
from carnet_kit.auth import TokenVerifier
from carnet_kit.errors import CarnetError

tracer = trace.get_tracer("carnet_gateway")

DESCRIPTION = (
    "Carnet's HTTP API for front-ends and professional software. Authenticate with "
    "`POST /oauth/token` (software clients) or `POST /api/v1/auth/login` + `/api/v1/auth/otp` "
    "(people), then send `Authorization: Bearer <access_token>`. Errors are "
    "`application/problem+json` with a machine-readable `reason`."
)


class TraceRequests:
    """One server span per HTTP request, continuing the caller's trace and returning its traceparent.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would run every request in a
    task group of its own, with memory streams between it and the app, which costs more CPU
    than the request's own work on a small call.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, route = scope["method"], scope["path"]
        carrier = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        with tracer.start_as_current_span(
            f"{method} {route}",
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": route},
        ) as span:
            context = span.get_span_context()
            traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-01".encode()

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                    message["headers"] = [
                        *(header for header in message.get("headers", ()) if header[0].lower() != b"traceparent"),
                        (b"traceparent", traceparent),
                    ]
                await send(message)

            await self.app(scope, receive, send_traced)


def create_app(settings: GatewaySettings, *, verifier: TokenVerifier | None = None) -> FastAPI:
    """The gateway; ``verifier`` replaces the JWKS-backed token check (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Channels belong to the event loop that serves the app: open them here.
        backends = Backends.open(settings)
        if verifier is not None:
            backends.verifier = verifier
        app.state.backends = backends
        try:
            yield
        finally:
            await app.state.backends.close()

    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # Recent FastAPI traces requests natively; the middleware below does it once,
        # continuing the caller's trace and returning the traceparent.
        options["telemetry"] = {"tracing": False}
    app = FastAPI(
        **options,
        title="Carnet API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(grpc.aio.AioRpcError, handle_rpc_error)
    app.add_exception_handler(CarnetError, handle_carnet_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)

    app.add_middleware(TraceRequests)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        statuses = await request.app.state.backends.health()
        if all(status == "SERVING" for status in statuses.values()):
            return JSONResponse({"status": "ready", "services": statuses})
        return problem(503, "some services are not serving", reason="NOT_READY", extra={"services": statuses})

    app.include_router(api.router)
    app.include_router(space_routes.router)
    app.include_router(space_routes.rpc_router)
    app.include_router(record_routes.router)
    app.include_router(record_routes.rpc_router)
    app.include_router(notify_routes.router)
    app.include_router(notify_routes.rpc_router)
    app.include_router(devtools.router)
    return app
