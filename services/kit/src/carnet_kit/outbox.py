"""Transactional outbox, its relay to Redis Streams, and idempotent stream consumers.

A state change and the event it causes are written in one PostgreSQL transaction
(:func:`enqueue`); the :class:`OutboxRelay` publishes unpublished rows to Redis
Streams and marks them. A crash between the publish and the mark publishes the row
again, so consumers are idempotent on ``event_id`` (:func:`claim_event`). Each event
carries the producer's ``traceparent``; the consumer's span links back to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as redis
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from carnet_kit.db import migrate
from carnet_kit.telemetry import ATTR_EVENT_ID, ATTR_EVENT_TYPE, extract_context, inject_traceparent

log = logging.getLogger(__name__)
tracer = trace.get_tracer("carnet_kit.outbox")

KIT_MIGRATIONS = Path(__file__).parent / "migrations"
KIT_MIGRATIONS_TABLE = "kit_schema_migrations"
STREAM_MAXLEN = 1_000_000


def stream_name(service: str) -> str:
    """The Redis stream a service publishes its events to."""
    return f"carnet:events:{service}"


def dead_letter_stream(stream: str) -> str:
    """Where a consumer parks events it failed to handle too many times."""
    return f"{stream}:dead"


async def install_outbox(pool: asyncpg.Pool, schema: str) -> None:
    """Create the kit's outbox and processed-events tables in a service schema."""
    await migrate(pool, schema, KIT_MIGRATIONS, table=KIT_MIGRATIONS_TABLE)


def wake_channel(schema: str) -> str:
    """The NOTIFY channel that wakes a schema's relay."""
    return f"{schema}_outbox"


@dataclass(frozen=True)
class OutboxRow:
    """An event ready to be written to the outbox: the values of one ``outbox`` row."""

    event_id: uuid.UUID
    stream: str
    event_type: str
    payload: dict[str, Any]
    traceparent: str


def outbox_row(
    *, stream: str, event_type: str, payload: Message | Mapping[str, Any], event_id: str | None = None
) -> OutboxRow:
    """The row :func:`enqueue` writes, for callers that write it inside a statement of their own."""
    body = (
        json_format.MessageToDict(payload, preserving_proto_field_name=True)
        if isinstance(payload, Message)
        else dict(payload)
    )
    return OutboxRow(uuid.UUID(event_id) if event_id else uuid.uuid4(), stream, event_type, body, inject_traceparent())


# One round trip: the row, and the relay's wake-up, delivered on commit only (so the relay never
# wakes for a rolled-back event).
_ENQUEUE = (
    "WITH written AS (INSERT INTO outbox (event_id, stream, event_type, payload, traceparent)"
    " VALUES ($1, $2, $3, $4, $5) RETURNING 1)"
    " SELECT pg_notify($6, '') FROM written"
)


async def enqueue(
    conn: asyncpg.Connection,
    *,
    schema: str,
    stream: str,
    event_type: str,
    payload: Message | Mapping[str, Any],
    event_id: str | None = None,
) -> str:
    """Write an event in the caller's transaction; return its id."""
    row = outbox_row(stream=stream, event_type=event_type, payload=payload, event_id=event_id)
    await conn.execute(
        _ENQUEUE, row.event_id, row.stream, row.event_type, row.payload, row.traceparent, wake_channel(schema)
    )
    return str(row.event_id)


class OutboxRelay:
    """Publishes a schema's outbox to Redis Streams, woken by NOTIFY or a poll."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: redis.Redis,
        schema: str,
        *,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        gather_delay: float = 0.01,
    ) -> None:
        self._pool = pool
        self._redis = client
        self._schema = schema
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._gather_delay = gather_delay
        self._wake = asyncio.Event()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished events; return how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, event_id, stream, event_type, payload, traceparent FROM outbox"
                " WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            if not rows:
                return 0
            pipe = self._redis.pipeline(transaction=False)
            for row in rows:
                pipe.xadd(
                    row["stream"],
                    {
                        "event_id": str(row["event_id"]),
                        "type": row["event_type"],
                        "payload": json.dumps(row["payload"]),
                        "traceparent": row["traceparent"],
                    },
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
            await pipe.execute()
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", [row["id"] for row in rows]
            )
            return len(rows)

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled; survives Redis or PostgreSQL hiccups."""
        listener: asyncpg.Connection | None = None
        try:
            while True:
                # Cleared before the publish, so that a commit notified during it is not missed.
                self._wake.clear()
                try:
                    if listener is None or listener.is_closed():
                        listener = await self._pool.acquire()
                        await listener.add_listener(wake_channel(self._schema), self._on_notify)
                    while await self.publish_pending() == self._batch_size:
                        pass
                except (OSError, asyncpg.PostgresError, redis.RedisError, asyncpg.InterfaceError) as exc:
                    log.warning("outbox relay of %s: %s; retrying", self._schema, exc)
                    if listener is not None:
                        with contextlib.suppress(Exception):
                            await self._pool.release(listener)
                        listener = None
                    self._wake.clear()  # wait the poll interval before trying again
                if not self._wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval)
                if self._wake.is_set() and self._gather_delay > 0:
                    # Under load commits come faster than publishes: let a few more arrive, so
                    # that one publish (a transaction and a Redis round trip) carries several.
                    await asyncio.sleep(self._gather_delay)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.remove_listener(wake_channel(self._schema), self._on_notify)
                    await self._pool.release(listener)


@dataclass(frozen=True)
class Event:
    """One event read from a stream."""

    stream: str
    message_id: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    traceparent: str

    def parse(self, message: Message) -> Message:
        """Fill ``message`` from the JSON payload (unknown fields ignored)."""
        json_format.ParseDict(self.payload, message, ignore_unknown_fields=True)
        return message


Handler = Callable[[Event], Awaitable[None]]


def replica_name(prefix: str = "") -> str:
    """This process's consumer name in consumer groups: host and pid, so replicas never share one."""
    name = f"{socket.gethostname()}-{os.getpid()}"
    return f"{prefix}-{name}" if prefix else name


async def claim_event(conn: asyncpg.Connection, consumer: str, event_id: str) -> bool:
    """Record in the handler's transaction that ``consumer`` handles ``event_id``.

    False means it was handled before: the handler must do nothing (a redelivery).
    """
    inserted = await conn.fetchval(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        uuid.UUID(event_id),
    )
    return bool(inserted)


def _decode(fields: Mapping[bytes, bytes]) -> tuple[str, str, dict[str, Any], str]:
    def get(name: str) -> str:
        return fields.get(name.encode(), b"").decode()

    return get("event_id"), get("type"), json.loads(get("payload") or "{}"), get("traceparent")


class StreamConsumer:
    """Reads a stream in a consumer group; acks only after the handler succeeded.

    Entries left pending by a crashed consumer are reclaimed after ``claim_idle_ms``;
    an entry delivered more than ``max_deliveries`` times goes to the dead-letter stream.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        max_deliveries: int = 5,
        claim_idle_ms: int = 30_000,
        block_ms: int = 1000,
        batch_size: int = 50,
    ) -> None:
        self._redis = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._handler = handler
        self._max_deliveries = max_deliveries
        self._claim_idle_ms = claim_idle_ms
        self._block_ms = block_ms
        self._batch_size = batch_size

    async def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start) if it does not exist."""
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _dead_letter(self, message_id: str, fields: Mapping[bytes, bytes], reason: str) -> None:
        await self._redis.xadd(
            dead_letter_stream(self.stream),
            {**{k.decode(): v for k, v in fields.items()}, "group": self.group, "reason": reason, "origin_id": message_id},
        )
        await self._redis.xack(self.stream, self.group, message_id)
        log.error("event %s of %s moved to dead letters after %s", message_id, self.stream, reason)

    async def _deliveries(self, message_id: str) -> int:
        pending = await self._redis.xpending_range(self.stream, self.group, min=message_id, max=message_id, count=1)
        return int(pending[0]["times_delivered"]) if pending else 1

    async def _handle(self, message_id: str, fields: Mapping[bytes, bytes], *, reclaimed: bool) -> bool:
        """Handle one entry; True when the handler succeeded and the entry is to be acknowledged."""
        if reclaimed and await self._deliveries(message_id) > self._max_deliveries:
            await self._dead_letter(message_id, fields, f"more than {self._max_deliveries} deliveries")
            return False
        try:
            event_id, event_type, payload, traceparent = _decode(fields)
        except (ValueError, UnicodeDecodeError) as exc:
            await self._dead_letter(message_id, fields, f"undecodable: {exc}")
            return False
        event = Event(self.stream, message_id, event_id, event_type, payload, traceparent)
        producer = trace.get_current_span(extract_context(traceparent)).get_span_context()
        links = [Link(producer)] if producer.is_valid else []
        with tracer.start_as_current_span(
            f"consume {event_type}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={ATTR_EVENT_ID: event_id, ATTR_EVENT_TYPE: event_type, "messaging.destination.name": self.stream},
        ) as span:
            try:
                await self._handler(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                span.record_exception(exc)
                log.warning("handler of %s failed for %s: %s (will be retried)", self.group, message_id, exc)
                return False
        return True

    async def _ack(self, message_ids: list[str]) -> None:
        # One XACK for the entries of a read: a crash before it redelivers them, which the
        # handlers' idempotence (claim_event) makes harmless.
        if message_ids:
            await self._redis.xack(self.stream, self.group, *message_ids)

    async def poll_once(self) -> int:
        """Reclaim stale pending entries, then read new ones; return how many were seen."""
        seen = 0
        claimed: Any = await self._redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=self._claim_idle_ms, start_id="0-0", count=self._batch_size
        )
        handled: list[str] = []
        for message_id, fields in claimed[1]:
            if fields is None:
                continue
            seen += 1
            if await self._handle(message_id.decode(), fields, reclaimed=True):
                handled.append(message_id.decode())
        await self._ack(handled)
        batches: Any = await self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=self._batch_size, block=self._block_ms
        )
        handled = []
        for _stream, entries in batches or []:
            for message_id, fields in entries:
                seen += 1
                if await self._handle(message_id.decode(), fields, reclaimed=False):
                    handled.append(message_id.decode())
        await self._ack(handled)
        return seen

    async def run(self) -> None:
        """Consume until cancelled; survives Redis hiccups."""
        while True:
            try:
                await self.ensure_group()
                while True:
                    await self.poll_once()
            except asyncio.CancelledError:
                raise
            except (OSError, redis.RedisError) as exc:
                log.warning("consumer %s on %s: %s; retrying", self.group, self.stream, exc)
                await asyncio.sleep(1.0)
