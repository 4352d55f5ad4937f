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


_ACTOR_FIELDS = frozenset(field.name for field in common_pb2.Actor.DESCRIPTOR.fields)


def actor_proto(record: dict[str, Any]) -> common_pb2.Actor:
    """A stored actor back as the proto."""
    # Stored actors are MessageToDict's output: field names, enum names, lists of strings.
    # The constructor takes those as they are, ten times faster than json_format; anything
    # else (a field this build does not know, an odd value) goes through ParseDict.
    if record.keys() <= _ACTOR_FIELDS and not isinstance(record.get("scopes", ()), str):
        try:
            return common_pb2.Actor(**record)
        except (TypeError, ValueError):
            pass
    return json_format.ParseDict(record, common_pb2.Actor(), ignore_unknown_fields=True)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)


def set_timestamp(target: timestamp_pb2.Timestamp, value: dt.datetime) -> None:
    """Set a Timestamp (a message's field, in place) to a datetime; a naive one is taken as UTC.

    The same value as ``Timestamp.FromDatetime``, in integers and a third of its time.
    """
    delta = value - (_EPOCH if value.tzinfo is not None else _NAIVE_EPOCH)
    target.seconds = delta.days * 86_400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A datetime as a Timestamp (None stays unset)."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    set_timestamp(stamp, value)
    return stamp


def datetime_of(message: Any, field: str) -> dt.datetime | None:
    """A Timestamp field of a message as an aware datetime; None when unset."""
    if not message.HasField(field):
        return None
    value: dt.datetime = getattr(message, field).ToDatetime(tzinfo=dt.UTC)
    return value
