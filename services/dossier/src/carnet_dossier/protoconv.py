"""Conversions every part of dossier shares: actors (token ↔ stored JSON ↔ proto) and timestamps."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import json_format, timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet_kit.auth import Principal


def actor_record(principal: Principal) -> dict[str, Any]:
    """How an actor is stored (access log, ``deposited_by``, ``created_by``): the Actor as JSON."""
    return json_format.MessageToDict(principal.to_actor(), preserving_proto_field_name=True)


def actor_proto(record: dict[str, Any]) -> common_pb2.Actor:
    """A stored actor back as the proto."""
    return json_format.ParseDict(record, common_pb2.Actor(), ignore_unknown_fields=True)


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A datetime as a Timestamp (None stays unset)."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def datetime_of(message: Any, field: str) -> dt.datetime | None:
    """A Timestamp field of a message as an aware datetime; None when unset."""
    if not message.HasField(field):
        return None
    value: dt.datetime = getattr(message, field).ToDatetime(tzinfo=dt.UTC)
    return value
