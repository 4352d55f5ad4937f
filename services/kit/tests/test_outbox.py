"""The outbox publishes exactly what was committed; consumers are idempotent and resilient."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis
from opentelemetry import trace

from carnet_kit.db import create_pool
from carnet_kit.outbox import (
    Event,
    OutboxRelay,
    StreamConsumer,
    claim_event,
    dead_letter_stream,
    enqueue,
    install_outbox,
)
from carnet_kit.redis_client import create_redis
from carnet_kit.telemetry import RingSpanExporter
from carnet_kit.testing import wait_until


@pytest.fixture
async def schema_pool(database_url: str) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    schema = f"o_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, schema)
    await install_outbox(pool, schema)
    yield schema, pool
    await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await pool.close()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = create_redis(redis_url)
    yield connection
    await connection.aclose()


async def test_only_committed_events_are_published(
    schema_pool: tuple[str, asyncpg.Pool], client: redis.Redis
) -> None:
    schema, pool = schema_pool
    stream = f"test:{uuid.uuid4().hex}"
    async with pool.acquire() as conn:
        async with conn.transaction():
            kept = await enqueue(conn, schema=schema, stream=stream, event_type="t.Kept", payload={"n": 1})
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await enqueue(conn, schema=schema, stream=stream, event_type="t.Lost", payload={"n": 2})
                raise RuntimeError("roll back")
    relay = OutboxRelay(pool, client, schema)
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0
    entries = await client.xrange(stream)
    assert [fields[b"event_id"].decode() for _, fields in entries] == [kept]
    assert entries[0][1][b"type"] == b"t.Kept"
    await client.delete(stream)


async def test_relay_wakes_on_commit(schema_pool: tuple[str, asyncpg.Pool], client: redis.Redis) -> None:
    schema, pool = schema_pool
    stream = f"test:{uuid.uuid4().hex}"
    relay = OutboxRelay(pool, client, schema, poll_interval=30)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.2)
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, schema=schema, stream=stream, event_type="t.E", payload={})
        # The poll interval is 30 s: only NOTIFY can publish this quickly.
        await wait_until(lambda: client.xlen(stream), timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.delete(stream)


async def test_consumer_handles_each_event_once_and_links_the_producer_span(
    schema_pool: tuple[str, asyncpg.Pool], client: redis.Redis, spans: RingSpanExporter
) -> None:
    schema, pool = schema_pool
    stream = f"test:{uuid.uuid4().hex}"
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("producer") as producer:
        async with pool.acquire() as conn, conn.transaction():
            event_id = await enqueue(conn, schema=schema, stream=stream, event_type="t.E", payload={"x": 1})
    relay = OutboxRelay(pool, client, schema)
    await relay.publish_pending()
    # Publish the same row again, as a relay crashing before its mark would.
    await pool.execute("UPDATE outbox SET published_at = NULL")
    await relay.publish_pending()
    assert await client.xlen(stream) == 2

    handled: list[str] = []

    async def handler(event: Event) -> None:
        async with pool.acquire() as conn, conn.transaction():
            if await claim_event(conn, "test", event.event_id):
                handled.append(event.event_id)

    consumer = StreamConsumer(client, stream, "g", "c1", handler, block_ms=100)
    await consumer.ensure_group()
    await consumer.poll_once()
    assert handled == [event_id]
    assert (await client.xpending(stream, "g"))["pending"] == 0
    consumer_spans = [s for s in spans.spans() if s.name == "consume t.E"]
    assert consumer_spans
    assert consumer_spans[-1].links[0].context.span_id == producer.get_span_context().span_id
    await client.delete(stream)


async def test_failing_events_are_retried_then_dead_lettered(client: redis.Redis) -> None:
    stream = f"test:{uuid.uuid4().hex}"
    await client.xadd(stream, {"event_id": str(uuid.uuid4()), "type": "t.Bad", "payload": "{}", "traceparent": ""})
    attempts = 0

    async def handler(event: Event) -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError("cannot handle")

    consumer = StreamConsumer(client, stream, "g", "c1", handler, max_deliveries=3, claim_idle_ms=0, block_ms=50)
    await consumer.ensure_group()
    for _ in range(6):
        await consumer.poll_once()
    assert attempts == 3
    dead = await client.xrange(dead_letter_stream(stream))
    assert len(dead) == 1
    assert dead[0][1][b"type"] == b"t.Bad"
    assert (await client.xpending(stream, "g"))["pending"] == 0
    await client.delete(stream, dead_letter_stream(stream))


async def test_a_crashed_consumers_pending_events_are_reclaimed(client: redis.Redis) -> None:
    stream = f"test:{uuid.uuid4().hex}"
    await client.xadd(stream, {"event_id": str(uuid.uuid4()), "type": "t.E", "payload": "{}", "traceparent": ""})
    seen: list[str] = []

    async def crash(event: Event) -> None:
        raise ConnectionError("consumer died mid-way")

    async def record(event: Event) -> None:
        seen.append(event.event_type)

    first = StreamConsumer(client, stream, "g", "dead-one", crash, block_ms=50)
    await first.ensure_group()
    await first.poll_once()
    second = StreamConsumer(client, stream, "g", "survivor", record, claim_idle_ms=0, block_ms=50)
    await second.poll_once()
    assert seen == ["t.E"]
    assert (await client.xpending(stream, "g"))["pending"] == 0
    await client.delete(stream)
