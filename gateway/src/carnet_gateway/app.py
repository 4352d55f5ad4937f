"""The gateway application: routes, problem+json errors, tracing of every request."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.exceptions import HTTPException as StarletteHTTPException

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

    @app.middleware("http")
    async def trace_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        route = request.url.path
        context = propagate.extract(dict(request.headers))
        with tracer.start_as_current_span(
            f"{request.method} {route}",
            context=context,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method, "url.path": route},
        ) as span:
            response = await call_next(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            trace_id = format(span.get_span_context().trace_id, "032x")
            response.headers["traceparent"] = f"00-{trace_id}-{format(span.get_span_context().span_id, '016x')}-01"
            return response

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
