"""The per-recipient rate limit: over N deliveries per channel and window, the rest waits for the next window."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc

from carnet.common.v1 import common_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import Principal
from carnet_kit.testing import wait_until
from carnet_notify.domain import RecipientRateLimit
from carnet_notify.kinds import Channel, Kind

Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]
Stub = notify_service_pb2_grpc.NotifyServiceStub
IDENTITY = Principal(subject="identity", role="service")
DOSSIER = Principal(subject="dossier", role="service")
OPERATOR = Principal(subject="op-support", role="operator")
SMS, PUSH = common_pb2.DELIVERY_CHANNEL_SMS, common_pb2.DELIVERY_CHANNEL_PUSH


def new_document(recipient_id: str, channel: Any, phone: str = "") -> Any:
    return notify_service_pb2.CreateNotificationRequest(
        notification=resources_pb2.Notification(
            recipient_id=recipient_id,
            kind=resources_pb2.NOTIFICATION_KIND_NEW_DOCUMENT,
            channels=[channel],
            parameters={"document_title": "Compte rendu"},
            phone=phone,
        ),
        request_id=uuid.uuid4().hex,
    )


async def deliveries_to(stub: Stub, as_caller: Metadata, recipient_id: str, channel: Any) -> list[Any]:
    response = await stub.ListDeliveries(
        notify_service_pb2.ListDeliveriesRequest(recipient_id=recipient_id, channel=channel, page_size=100),
        metadata=as_caller(OPERATOR),
    )
    return list(response.deliveries)


async def away_from_a_window_end(window_seconds: int, margin: float) -> None:
    """Wait out the end of the current window if it is less than ``margin`` seconds away (so a test fits in one)."""
    left = window_seconds - time.time() % window_seconds
    if left < margin:
        await asyncio.sleep(left + 0.05)


async def test_the_21st_delivery_in_an_hour_waits_for_the_next_hour_and_a_code_never_waits(
    webhook_stub: Stub, webhook_receiver: Any, as_caller: Metadata, database_url: str
) -> None:
    await away_from_a_window_end(3600, margin=20)
    holder_id, phone = f"person-{uuid.uuid4().hex[:12]}", "+33655501234"
    for _ in range(21):
        await webhook_stub.CreateNotification(new_document(holder_id, SMS, phone), metadata=as_caller(DOSSIER))

    next_hour = datetime.fromtimestamp((int(time.time()) // 3600 + 1) * 3600, UTC)

    async def twenty_delivered_one_postponed() -> list[Any]:
        deliveries = await deliveries_to(webhook_stub, as_caller, holder_id, SMS)
        done = [d for d in deliveries if d.state == resources_pb2.DELIVERY_STATE_DELIVERED]
        # The worker has seen the last one once it is due in the future (postponed), not at its creation.
        seen = [d for d in deliveries if d.next_attempt_time.ToDatetime(tzinfo=UTC) > datetime.now(UTC)]
        return deliveries if len(done) == 20 and len(seen) == 1 else []

    deliveries = await wait_until(twenty_delivered_one_postponed)
    [held] = [d for d in deliveries if d.state != resources_pb2.DELIVERY_STATE_DELIVERED]
    assert held.state == resources_pb2.DELIVERY_STATE_PENDING
    assert list(held.attempts) == [], "postponing is not a failed attempt"
    assert held.next_attempt_time.ToDatetime(tzinfo=UTC) == next_hour
    conn = await asyncpg.connect(database_url)
    try:
        detail = await conn.fetchval(
            "SELECT state_detail FROM notify.deliveries WHERE delivery_id = $1", uuid.UUID(held.delivery_id)
        )
    finally:
        await conn.close()
    assert detail == "postponed: over 20 deliveries per 3600 s for this recipient and channel"

    # Security kinds are never held back, and the limit counts per channel.
    await webhook_stub.CreateNotification(
        notify_service_pb2.CreateNotificationRequest(
            notification=resources_pb2.Notification(
                recipient_id=holder_id,
                kind=resources_pb2.NOTIFICATION_KIND_ONE_TIME_CODE,
                channels=[SMS],
                parameters={"code": "310457"},
                phone=phone,
            ),
            request_id=uuid.uuid4().hex,
        ),
        metadata=as_caller(IDENTITY),
    )
    await webhook_stub.CreateNotification(new_document(holder_id, PUSH), metadata=as_caller(DOSSIER))
    await wait_until(lambda: [p for p in webhook_receiver.received("/sms", to=phone) if "310457" in p.body["text"]])
    await wait_until(lambda: webhook_receiver.received("/push", to=holder_id))
    await asyncio.sleep(0.3)  # several worker polls: the held one stays held
    documents = [p for p in webhook_receiver.received("/sms", to=phone) if p.body["kind"] == "NEW_DOCUMENT"]
    assert len(documents) == 20


async def test_a_postponed_delivery_goes_out_once_in_the_next_window(
    run_app: Any, smtp_sink: Any, webhook_receiver: Any, as_caller: Metadata
) -> None:
    window = 2
    async with run_app(
        smtp_port=smtp_sink.port,
        push_webhook_url=webhook_receiver.url("/push"),
        recipient_rate_limit=1,
        recipient_rate_window_seconds=window,
    ) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = Stub(channel)
        await away_from_a_window_end(window, margin=0.5)
        holder_id = f"person-{uuid.uuid4().hex[:12]}"
        for _ in range(2):
            await stub.CreateNotification(new_document(holder_id, PUSH), metadata=as_caller(DOSSIER))

        async def both_delivered() -> list[Any]:
            deliveries = await deliveries_to(stub, as_caller, holder_id, PUSH)
            states = {d.state for d in deliveries}
            return deliveries if states == {resources_pb2.DELIVERY_STATE_DELIVERED} else []

        deliveries = await wait_until(both_delivered, timeout=3 * window + 5)
    assert len(deliveries) == 2 and len(webhook_receiver.received("/push", to=holder_id)) == 2
    assert all(len(d.attempts) == 1 for d in deliveries), "held back, not failed and retried"
    started = sorted(d.attempts[0].start_time.ToDatetime(tzinfo=UTC).timestamp() for d in deliveries)
    windows = [int(t) // window for t in started]
    assert windows[0] < windows[1], "at most one per window"


def test_windows_are_fixed_and_aligned_and_security_kinds_are_exempt() -> None:
    limit = RecipientRateLimit(limit=20, window_seconds=3600)
    start, end = limit.window(datetime(2026, 3, 1, 14, 37, 12, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 3, 1, 14, tzinfo=UTC), datetime(2026, 3, 1, 15, tzinfo=UTC))
    assert limit.applies_to(Kind.NEW_DOCUMENT, Channel.SMS)
    assert limit.applies_to(Kind.NEW_DOCUMENT, Channel.EMAIL)
    assert not limit.applies_to(Kind.NEW_DOCUMENT, Channel.IN_APP)
    for kind in (Kind.ONE_TIME_CODE, Kind.ACTIVATION_NOTICE, Kind.BREAK_GLASS_ACCESS, Kind.CLOSURE_CONFIRMATION):
        assert not limit.applies_to(kind, Channel.SMS)
