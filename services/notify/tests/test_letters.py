"""An activation notice goes by e-mail when the person has an address, by letter otherwise."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from carnet.common.v1 import common_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import Principal
from carnet_kit.testing import wait_until

IDENTITY = Principal(subject="identity", role="service")
Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]


def notice(email: str = "", channels: list[int] | None = None) -> notify_service_pb2.CreateNotificationRequest:
    return notify_service_pb2.CreateNotificationRequest(
        notification=resources_pb2.Notification(
            recipient_id=str(uuid.uuid4()),
            kind=resources_pb2.NOTIFICATION_KIND_ACTIVATION_NOTICE,
            channels=channels or [],
            parameters={"activation_code": "K7PX2M9Q4T", "opposition_deadline": "2027-01-04", "first_name": "Jean"},
            email=email,
        ),
        request_id=f"notice-{uuid.uuid4().hex}",
    )


async def test_without_an_email_the_notice_is_queued_as_a_letter_with_the_code(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, database_url: str
) -> None:
    request = notice()
    created = await stub.CreateNotification(request, metadata=as_caller(IDENTITY))
    assert list(created.channels) == [common_pb2.DELIVERY_CHANNEL_LETTER]
    conn = await asyncpg.connect(database_url)
    try:
        letter = await conn.fetchrow(
            "SELECT l.subject, l.body, l.printed_time, d.state FROM notify.letters l"
            " JOIN notify.deliveries d USING (delivery_id) WHERE l.recipient_id = $1",
            request.notification.recipient_id,
        )
    finally:
        await conn.close()
    assert letter is not None
    assert "K7PX2M9Q4T" in letter["body"]
    assert letter["printed_time"] is None
    assert letter["state"] == "DELIVERED"


async def test_with_an_email_the_notice_is_mailed_and_no_letter_is_queued(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, smtp_sink: Any, database_url: str
) -> None:
    to = f"jean.{uuid.uuid4().hex[:8]}@demo.carnet.test"
    request = notice(email=to)
    created = await stub.CreateNotification(request, metadata=as_caller(IDENTITY))
    assert list(created.channels) == [common_pb2.DELIVERY_CHANNEL_EMAIL]
    [mail] = await wait_until(lambda: [m for m in smtp_sink.received() if to in m.envelope_to])
    assert "K7PX2M9Q4T" in mail.text()
    conn = await asyncpg.connect(database_url)
    try:
        letters = await conn.fetchval(
            "SELECT count(*) FROM notify.letters WHERE recipient_id = $1", request.notification.recipient_id
        )
    finally:
        await conn.close()
    assert letters == 0
