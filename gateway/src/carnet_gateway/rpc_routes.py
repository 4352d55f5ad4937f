"""REST endpoints that map one-to-one onto a gRPC method, declared as data.

Each :class:`RpcRoute` says which method it calls, where the JSON body goes in the
request, which path and query parameters fill which fields, and which fields default
to the caller (a holder managing their own space). The gateway only translates: the
services decide who may do what.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from carnet_gateway.protojson import from_json, json_schema, to_json
from carnet_gateway.security import Caller, authenticate, bearer_scheme
from carnet_kit.errors import InvalidArgument

# Where a request field defaults from when the caller did not give it.
CALLER_SUBJECT = "subject"  # the caller's own id (a holder's person id)
CALLER_HOLDER = "holder"  # the holder the caller acts for: themself, or acting_for


@dataclass(frozen=True)
class RpcRoute:
    """One REST endpoint calling one gRPC method."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    service: str
    rpc: str
    request: type[Message]
    body_field: str | None = None  # "" = the whole request is the body; None = no body
    path_fields: dict[str, str] = field(default_factory=dict)
    query_fields: tuple[str, ...] = ()
    caller_defaults: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    public: bool = False


def _set(message: Message, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    target = message
    for name in parents:
        target = getattr(target, name)
    field_descriptor = target.DESCRIPTOR.fields_by_name[leaf]
    message_type = field_descriptor.message_type
    if message_type is not None and message_type.full_name == "google.protobuf.Timestamp" and isinstance(value, str):
        getattr(target, leaf).CopyFrom(parse_timestamp(value, leaf))
        return
    if field_descriptor.is_repeated and isinstance(value, str):
        # A repeated field in a query: comma-separated values (enum names for enums).
        items: list[Any] = [item.strip() for item in value.split(",") if item.strip()]
        if field_descriptor.enum_type is not None:
            numbers = []
            for item in items:
                enum_value = field_descriptor.enum_type.values_by_name.get(item)
                if enum_value is None:
                    raise InvalidArgument(
                        f"{leaf} must be among {[v.name for v in field_descriptor.enum_type.values]}", field=leaf
                    )
                numbers.append(enum_value.number)
            items = numbers
        getattr(target, leaf).extend(items)
        return
    if field_descriptor.enum_type is not None and isinstance(value, str):
        enum_value = field_descriptor.enum_type.values_by_name.get(value)
        if enum_value is None:
            raise InvalidArgument(f"{leaf} must be one of {[v.name for v in field_descriptor.enum_type.values]}", field=leaf)
        value = enum_value.number
    elif field_descriptor.type in (field_descriptor.TYPE_INT32, field_descriptor.TYPE_INT64) and isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise InvalidArgument(f"{leaf} must be a number", field=leaf) from None
    elif field_descriptor.type == field_descriptor.TYPE_BOOL and isinstance(value, str):
        value = value.lower() in ("1", "true", "yes")
    setattr(target, leaf, value)


def parse_timestamp(value: str, name: str) -> timestamp_pb2.Timestamp:
    """An ISO 8601 date or date-time (UTC when no offset is given) as a Timestamp."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            f"{name} must be an ISO 8601 date or date-time, e.g. 2026-01-31T08:00:00Z", field=name
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _get(message: Message, dotted: str) -> Any:
    target: Any = message
    for name in dotted.split("."):
        target = getattr(target, name)
    return target


def _caller_value(caller: Caller, source: str) -> str:
    principal = caller.principal
    if source == CALLER_SUBJECT:
        return principal.subject
    if principal.role == "holder":
        return principal.subject
    return principal.acting_for


def _endpoint(route: RpcRoute) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        caller: Caller | None = None
        if not route.public:
            caller = await authenticate(request, await bearer_scheme(request))
        message = route.request()
        if route.body_field is not None:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"the body is not JSON: {exc.msg}", field="body") from None
            if route.body_field == "":
                from_json(body, message)
            else:
                from_json(body, getattr(message, route.body_field), prefix=f"{route.body_field}.")
        for name, value in route.fixed.items():
            _set(message, name, value)
        for parameter, target in route.path_fields.items():
            _set(message, target, request.path_params[parameter])
        for name in route.query_fields:
            if name in request.query_params:
                _set(message, name, request.query_params[name])
        if caller is not None:
            for target, source in route.caller_defaults.items():
                if not _get(message, target):
                    _set(message, target, _caller_value(caller, source))
        stub = getattr(request.app.state.backends, route.service)
        metadata = caller.metadata if caller is not None else ()
        response = await getattr(stub, route.rpc)(message, metadata=metadata)
        if route.status == 204:
            return Response(status_code=204)
        return JSONResponse(to_json(response), status_code=route.status)

    endpoint.__name__ = route.operation_id
    return endpoint


def _openapi_extra(route: RpcRoute) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in route.path_fields
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in route.query_fields
    ]
    extra: dict[str, Any] = {"parameters": parameters}
    if route.body_field is not None:
        descriptor: Any = route.request.DESCRIPTOR
        if route.body_field:
            descriptor = descriptor.fields_by_name[route.body_field].message_type
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": json_schema(descriptor)}},
        }
    if not route.public:
        extra["security"] = [{"HTTPBearer": []}]
    output = _output_descriptor(route)
    if output is not None and route.status != 204:
        extra["responses"] = {
            str(route.status): {
                "description": output.name,
                "content": {"application/json": {"schema": json_schema(output)}},
            }
        }
    return extra


def _output_descriptor(route: RpcRoute) -> Any:
    for service in route.request.DESCRIPTOR.file.services_by_name.values():
        method = service.methods_by_name.get(route.rpc)
        if method is not None:
            return method.output_type
    return None


def router_for(routes: list[RpcRoute]) -> APIRouter:
    """A router with one endpoint per route."""
    router = APIRouter()
    for route in routes:
        router.add_api_route(
            route.path,
            _endpoint(route),
            methods=[route.method],
            operation_id=route.operation_id,
            summary=route.summary,
            tags=[route.tag],
            status_code=route.status,
            openapi_extra=_openapi_extra(route),
            response_class=JSONResponse,
        )
    return router
