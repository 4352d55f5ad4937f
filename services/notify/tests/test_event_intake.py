"""Dossier's events on the Redis stream become inbox items, each event exactly once."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
from google.protobuf import json_format

from carnet.common.v1 import common_pb2
from carnet.dossier.v1 import events_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import Principal
from carnet_kit.db import create_pool
from carnet_kit.outbox import OutboxRelay, enqueue, install_outbox
from carnet_kit.server import ServiceApp
from carnet_kit.testing import wait_until

Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]
DEPOSITED = "carnet.dossier.v1.DocumentDepositedEvent"


def deposited_event(holder_id: str, title: str = "Compte rendu de biologie", **flags: bool) -> Any:
    return events_pb2.DocumentDepositedEvent(
        event_id=str(uuid.uuid4()),
        document_id=f"doc-{uuid.uuid4().hex[:8]}",
        holder_id=holder_id,
        title=title,
        type_code="11502-2",
        class_code="LAB",
        deposited_by=common_pb2.Actor(subject="client-lab", role=common_pb2.ROLE_CLIENT, client_id="lab-demo"),
        **flags,
    )


async def xadd_like_the_relay(client: redis.Redis, stream: str, event: Any, event_type: str = DEPOSITED) -> bytes:
    """XADD with exactly the fields OutboxRelay writes."""
    message_id: bytes = await client.xadd(
        stream,
        {
            "event_id": event.event_id,
            "type": event_type,
            "payload": json.dumps(json_format.MessageToDict(event, preserving_proto_field_name=True)),
            "traceparent": "",
        },
    )
    return message_id


async def consumed_up_to(client: redis.Redis, stream: str, message_id: bytes) -> bool:
    """The notify group has read and acked everything up to ``message_id``."""
    groups = await client.xinfo_groups(stream)
    for group in groups:
        if group["name"] == b"notify":
            return bool(group["last-delivered-id"] >= message_id and group["pending"] == 0)
    return False


async def inbox(stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, holder_id: str) -> Any:
    return await stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=holder_id),
        metadata=as_caller(Principal(subject=holder_id, role="holder")),
    )


@pytest.fixture
def stream(app: ServiceApp) -> str:
    return str(app.settings.dossier_events_stream)  # type: ignore[attr-defined]


async def test_deposited_event_delivered_twice_makes_one_inbox_item(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, redis_client: redis.Redis, stream: str
) -> None:
    holder_id = f"person-{uuid.uuid4().hex[:12]}"
    event = deposited_event(holder_id, title="Compte rendu de biologie du 3 mars")
    await xadd_like_the_relay(redis_client, stream, event)
    second = await xadd_like_the_relay(redis_client, stream, event)
    await wait_until(lambda: consumed_up_to(redis_client, stream, second))
    listed = await inbox(stub, as_caller, holder_id)
    [item] = listed.items
    assert item.title == "Nouveau document dans votre dossier"
    assert "Compte rendu de biologie du 3 mars" in item.body
    assert item.kind == resources_pb2.NOTIFICATION_KIND_NEW_DOCUMENT
    assert item.parameters["document_id"] == event.document_id
    assert item.source_event_id == event.event_id
    assert listed.unread_count == 1


async def test_event_published_through_the_outbox_relay_reaches_the_inbox(
    stub: notify_service_pb2_grpc.NotifyServiceStub,
    as_caller: Metadata,
    redis_client: redis.Redis,
    stream: str,
    producer: tuple[asyncpg.Pool, str],
) -> None:
    producer_pool, schema = producer
    holder_id = f"person-{uuid.uuid4().hex[:12]}"
    event = deposited_event(holder_id)
    async with producer_pool.acquire() as conn, conn.transaction():
        await enqueue(conn, schema=schema, stream=stream, event_type=DEPOSITED, payload=event, event_id=event.event_id)
    assert await OutboxRelay(producer_pool, redis_client, schema).publish_pending() == 1
    listed = await wait_until(lambda: _items_of(inbox(stub, as_caller, holder_id)))
    assert [item.source_event_id for item in listed] == [event.event_id]


async def _items_of(response: Any) -> list[Any]:
    return list((await response).items)


@pytest.fixture
async def producer(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A scratch schema standing in for dossier's, with the kit's outbox."""
    schema = f"producer_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, schema)
    await install_outbox(pool, schema)
    yield pool, schema
    async with pool.acquire() as conn:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await pool.close()


async def test_document_invisible_to_holder_or_deposited_by_holder_is_not_announced(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, redis_client: redis.Redis, stream: str
) -> None:
    holder_id = f"person-{uuid.uuid4().hex[:12]}"
    await xadd_like_the_relay(redis_client, stream, deposited_event(holder_id, invisible_to_holder=True))
    last = await xadd_like_the_relay(redis_client, stream, deposited_event(holder_id, holder_own=True))
    await wait_until(lambda: consumed_up_to(redis_client, stream, last))
    listed = await inbox(stub, as_caller, holder_id)
    assert list(listed.items) == [] and listed.unread_count == 0


async def test_other_event_types_are_acked_and_ignored(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, redis_client: redis.Redis, stream: str
) -> None:
    holder_id = f"person-{uuid.uuid4().hex[:12]}"
    last = await xadd_like_the_relay(
        redis_client, stream, deposited_event(holder_id), event_type="carnet.dossier.v1.DocumentChangedEvent"
    )
    await wait_until(lambda: consumed_up_to(redis_client, stream, last))
    assert list((await inbox(stub, as_caller, holder_id)).items) == []
    assert await redis_client.xlen(f"{stream}:dead") == 0

