"""Protos as JSON for the REST API: conversion both ways and JSON Schemas for OpenAPI.

Field names stay as declared (snake_case); enums travel as their names; a
``carnet.common.v1.Date`` is also accepted as an ISO ``YYYY-MM-DD`` string.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from carnet_kit.errors import InvalidArgument

DATE_MESSAGE = "carnet.common.v1.Date"
_WELL_KNOWN = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "3600s"},
    "google.protobuf.FieldMask": {"type": "string", "example": "field_one,field_two"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object"},
}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "int64"},
}


def to_json(message: Message) -> dict[str, Any]:
    """A proto as JSON with its declared field names."""
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


def _normalise_dates(data: Any, descriptor: Any, path: str) -> Any:
    if not isinstance(data, dict):
        return data
    for field in descriptor.fields:
        if field.name not in data or field.message_type is None:
            continue
        value = data[field.name]
        name = f"{path}{field.name}"
        if field.message_type.full_name == DATE_MESSAGE and isinstance(value, str):
            try:
                parsed = dt.date.fromisoformat(value)
            except ValueError:
                raise InvalidArgument(f"{name} must be a date YYYY-MM-DD", field=name) from None
            data[field.name] = {"year": parsed.year, "month": parsed.month, "day": parsed.day}
        elif field.is_repeated and isinstance(value, list):
            data[field.name] = [_normalise_dates(v, field.message_type, f"{name}.") for v in value]
        else:
            data[field.name] = _normalise_dates(value, field.message_type, f"{name}.")
    return data


def from_json(data: Any, message: Message, *, prefix: str = "") -> Message:
    """Fill ``message`` from JSON; InvalidArgument naming the field on a mismatch."""
    if not isinstance(data, dict):
        raise InvalidArgument("the body must be a JSON object", field=prefix.rstrip(".") or "body")
    try:
        json_format.ParseDict(_normalise_dates(dict(data), message.DESCRIPTOR, prefix), message)
    except json_format.ParseError as exc:
        raise InvalidArgument(f"the body does not fit {message.DESCRIPTOR.name}: {exc}", field=prefix.rstrip(".") or "body") from None
    return message


def json_schema(descriptor: Any, depth: int = 0) -> dict[str, Any]:
    """The JSON Schema of a message (nesting cut at a few levels, enough for docs)."""
    if descriptor.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[descriptor.full_name])
    if descriptor.full_name == DATE_MESSAGE:
        return {"type": "string", "format": "date", "description": "YYYY-MM-DD"}
    if depth > 4:
        return {"type": "object"}
    properties: dict[str, Any] = {}
    for field in descriptor.fields:
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                inner = (
                    json_schema(value_field.message_type, depth + 1)
                    if value_field.message_type is not None
                    else dict(_SCALARS.get(value_field.type, {"type": "string"}))
                )
                properties[field.name] = {"type": "object", "additionalProperties": inner}
                continue
            schema = json_schema(field.message_type, depth + 1)
        elif field.enum_type is not None:
            schema = {"type": "string", "enum": [value.name for value in field.enum_type.values]}
        else:
            schema = dict(_SCALARS.get(field.type, {"type": "string"}))
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        properties[field.name] = schema
    return {"type": "object", "title": descriptor.name, "properties": properties}
