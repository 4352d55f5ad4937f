"""HTTP problem+json (RFC 9457) bodies, mapped once from gRPC statuses and Carnet errors."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from carnet_kit.errors import HTTP_STATUS_BY_CODE, CarnetError
from carnet_kit.status import parse_rpc_error

PROBLEM_JSON = "application/problem+json"


def problem(status: int, detail: str, *, reason: str = "", domain: str = "", extra: dict[str, Any] | None = None) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": f"urn:carnet:problem:{reason.lower()}" if reason else "about:blank",
        "title": HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error",
        "status": status,
        "detail": detail,
    }
    if reason:
        body["reason"] = reason
    if domain:
        body["domain"] = domain
    if extra:
        body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="carnet"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# Reasons whose HTTP status says more than their gRPC code's (a size limit is not a rate limit).
_STATUS_BY_REASON = {"DOCUMENT_TOO_LARGE": 413, "ATTACHMENT_TOO_LARGE": 413}


def from_rpc_error(error: grpc.aio.AioRpcError) -> JSONResponse:
    """The problem for a failed call to a service."""
    remote = parse_rpc_error(error)
    status = HTTP_STATUS_BY_CODE.get(remote.code, 502 if remote.code == grpc.StatusCode.UNAVAILABLE else 500)
    status = _STATUS_BY_REASON.get(remote.reason, status)
    if remote.code == grpc.StatusCode.UNAVAILABLE:
        status = 503
    detail = remote.message if status < 500 or remote.reason else "a Carnet service failed"
    extra: dict[str, Any] = {}
    if remote.metadata:
        extra["metadata"] = remote.metadata
        if "field" in remote.metadata:
            extra["field"] = remote.metadata["field"]
    return problem(status, detail, reason=remote.reason or remote.code.name, domain=remote.domain, extra=extra)


def from_carnet_error(error: CarnetError) -> JSONResponse:
    """The problem for an error raised in the gateway itself."""
    extra: dict[str, Any] = {}
    if error.metadata:
        extra["metadata"] = error.metadata
        if "field" in error.metadata:
            extra["field"] = error.metadata["field"]
    return problem(error.http_status, error.message, reason=error.reason, domain="gateway.carnet", extra=extra)


async def handle_rpc_error(_request: Request, error: Exception) -> JSONResponse:
    """Exception handler for gRPC failures."""
    assert isinstance(error, grpc.aio.AioRpcError)
    return from_rpc_error(error)


async def handle_carnet_error(_request: Request, error: Exception) -> JSONResponse:
    """Exception handler for Carnet errors."""
    assert isinstance(error, CarnetError)
    return from_carnet_error(error)


async def handle_validation_error(_request: Request, error: Exception) -> JSONResponse:
    """Exception handler for malformed requests (body, query or path)."""
    assert isinstance(error, RequestValidationError)
    errors = [
        {"field": ".".join(str(part) for part in item.get("loc", ())), "message": item.get("msg", "")}
        for item in error.errors()
    ]
    first = errors[0]["field"] if errors else ""
    return problem(400, "the request is malformed", reason="INVALID_REQUEST", extra={"errors": errors, "field": first})


async def handle_http_error(_request: Request, error: Exception) -> JSONResponse:
    """Exception handler for plain HTTP errors (404 on unknown routes, 405…)."""
    assert isinstance(error, StarletteHTTPException)
    return problem(error.status_code, str(error.detail), reason=HTTPStatus(error.status_code).name)
