"""E-mail notifications through a real SMTP server: content, sender, idempotency, retries."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import grpc
import pytest

from carnet.common.v1 import common_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import Principal
from carnet_kit.status import parse_rpc_error
from carnet_kit.testing import free_port, wait_until

IDENTITY = Principal(subject="identity", role="service")
OPERATOR = Principal(subject="op-support", role="operator")
Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]


def otp_request(email: str, code: str = "123456", request_id: str | None = None) -> Any:
    return notify_service_pb2.CreateNotificationRequest(
        notification=resources_pb2.Notification(
            recipient_id=f"person-{uuid.uuid4().hex[:12]}",
            kind=resources_pb2.NOTIFICATION_KIND_ONE_TIME_CODE,
            channels=[common_pb2.DELIVERY_CHANNEL_EMAIL],
            parameters={"code": code},
            email=email,
        ),
        request_id=request_id if request_id is not None else uuid.uuid4().hex,
    )


def mailbox() -> str:
    return f"camille.{uuid.uuid4().hex[:8]}@demo.carnet.test"


async def deliveries_of(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, notification_id: str
) -> list[Any]:
    response = await stub.ListDeliveries(
        notify_service_pb2.ListDeliveriesRequest(notification_id=notification_id), metadata=as_caller(OPERATOR)
    )
    return list(response.deliveries)


async def test_one_time_code_email_arrives_with_the_code_from_the_configured_sender(
    stub: notify_service_pb2_grpc.NotifyServiceStub, smtp_sink: Any, as_caller: Metadata
) -> None:
    to = mailbox()
    await stub.CreateNotification(otp_request(to, "123456"), metadata=as_caller(IDENTITY))
    [mail] = await wait_until(lambda: [m for m in smtp_sink.received() if to in m.envelope_to])
    assert mail.envelope_from == "ne-pas-repondre@carnet.test"
    assert "ne-pas-repondre@carnet.test" in mail.message["From"]
    assert mail.message["To"] == to
    assert mail.message["Subject"] == "Votre code de connexion Carnet"
    assert "Votre code de connexion Carnet : 123456 (valable 10 minutes)" in mail.text()
    assert "<strong>123456</strong>" in mail.html()
    assert mail.message["Content-Language"] == "fr"


async def test_same_request_id_twice_sends_one_mail_and_returns_the_same_notification(
    stub: notify_service_pb2_grpc.NotifyServiceStub, smtp_sink: Any, as_caller: Metadata
) -> None:
    to = mailbox()
    request = otp_request(to, "654321", request_id=f"login-{uuid.uuid4().hex}")
    first = await stub.CreateNotification(request, metadata=as_caller(IDENTITY))
    await wait_until(lambda: [m for m in smtp_sink.received() if to in m.envelope_to])
    second = await stub.CreateNotification(request, metadata=as_caller(IDENTITY))
    assert second.notification_id == first.notification_id
    await asyncio.sleep(0.5)  # several worker polls: a second mail would have gone by now
    assert len([m for m in smtp_sink.received() if to in m.envelope_to]) == 1
    assert len(await deliveries_of(stub, as_caller, first.notification_id)) == 1


async def test_codes_are_masked_in_answers_and_removed_from_storage_once_sent(
    stub: notify_service_pb2_grpc.NotifyServiceStub, smtp_sink: Any, as_caller: Metadata, database_url: str
) -> None:
    to = mailbox()
    created = await stub.CreateNotification(otp_request(to, "246810"), metadata=as_caller(IDENTITY))
    assert created.parameters["code"] == "******"
    await wait_until(lambda: [m for m in smtp_sink.received() if to in m.envelope_to])

    async def stored_parameters() -> Any:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval(
                "SELECT parameters::text FROM notify.notifications WHERE notification_id = $1",
                uuid.UUID(created.notification_id),
            )
        finally:
            await conn.close()

    await wait_until(lambda: _without_code(stored_parameters()))


async def _without_code(parameters: Any) -> bool:
    return "246810" not in await parameters


async def test_smtp_down_then_up_is_retried_with_backoff_and_delivered(
    run_app: Any, start_smtp_sink: Any, as_caller: Metadata
) -> None:
    port = free_port()
    async with run_app(smtp_port=port) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = notify_service_pb2_grpc.NotifyServiceStub(channel)
        to = mailbox()
        created = await stub.CreateNotification(otp_request(to, "111222"), metadata=as_caller(IDENTITY))

        async def failed_twice() -> bool:
            [delivery] = await deliveries_of(stub, as_caller, created.notification_id)
            return len(delivery.attempts) >= 2 and delivery.state == resources_pb2.DELIVERY_STATE_RETRYING

        await wait_until(failed_twice)
        sink = start_smtp_sink(port)
        await wait_until(lambda: [m for m in sink.received() if to in m.envelope_to])
        [mail] = sink.received()
        assert "111222" in mail.text()

        async def delivered() -> Any:
            [delivery] = await deliveries_of(stub, as_caller, created.notification_id)
            return delivery if delivery.state == resources_pb2.DELIVERY_STATE_DELIVERED else None

        delivery = await wait_until(delivered)
    outcomes = [attempt.outcome for attempt in delivery.attempts]
    assert outcomes[-1] == resources_pb2.ATTEMPT_OUTCOME_SUCCEEDED
    assert set(outcomes[:-1]) == {resources_pb2.ATTEMPT_OUTCOME_TRANSIENT_FAILURE}
    assert [a.attempt_number for a in delivery.attempts] == list(range(1, len(outcomes) + 1))
    assert delivery.masked_destination.startswith("c***@")
    gaps = [b.start_time.ToDatetime() - a.start_time.ToDatetime() for a, b in itertools.pairwise(delivery.attempts)]
    assert gaps[1].total_seconds() > gaps[0].total_seconds() * 1.5, "backoff grows"


async def test_delivery_gives_up_after_the_last_attempt_and_keeps_the_record(run_app: Any, as_caller: Metadata) -> None:
    async with run_app(smtp_port=free_port(), max_delivery_attempts=2) as app, grpc.aio.insecure_channel(
        f"127.0.0.1:{app.port}"
    ) as channel:
        stub = notify_service_pb2_grpc.NotifyServiceStub(channel)
        created = await stub.CreateNotification(otp_request(mailbox()), metadata=as_caller(IDENTITY))

        async def failed() -> Any:
            [delivery] = await deliveries_of(stub, as_caller, created.notification_id)
            return delivery if delivery.state == resources_pb2.DELIVERY_STATE_FAILED else None

        delivery = await wait_until(failed)
        await asyncio.sleep(0.5)
        [after] = await deliveries_of(stub, as_caller, created.notification_id)
    assert len(after.attempts) == 2
    assert not delivery.HasField("next_attempt_time")


async def test_holder_cannot_create_notifications(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    holder = Principal(subject="person-x", role="holder")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateNotification(otp_request(mailbox()), metadata=as_caller(holder))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_missing_template_parameter_is_invalid_argument_naming_it(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    request = otp_request(mailbox())
    del request.notification.parameters["code"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateNotification(request, metadata=as_caller(IDENTITY))
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "TEMPLATE_PARAMETER_MISSING"
    assert error.metadata["parameter"] == "code"


async def test_email_without_address_is_failed_precondition(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateNotification(otp_request(""), metadata=as_caller(IDENTITY))
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "NO_DELIVERY_CHANNEL"


async def test_malformed_email_address_is_invalid_argument(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateNotification(otp_request("x@y.z\r\nBcc: all@evil.test"), metadata=as_caller(IDENTITY))
    assert parse_rpc_error(raised.value).metadata["field"] == "notification.email"


async def test_activation_notice_email_carries_code_and_opposition_deadline(
    stub: notify_service_pb2_grpc.NotifyServiceStub, smtp_sink: Any, as_caller: Metadata
) -> None:
    to = mailbox()
    request = notify_service_pb2.CreateNotificationRequest(
        notification=resources_pb2.Notification(
            recipient_id="person-jean",
            kind=resources_pb2.NOTIFICATION_KIND_ACTIVATION_NOTICE,
            parameters={"activation_code": "K7QX-M2PD", "opposition_deadline": "15 mars 2026", "first_name": "Jean"},
            email=to,
        ),
        request_id=uuid.uuid4().hex,
    )
    await stub.CreateNotification(request, metadata=as_caller(IDENTITY))
    [mail] = await wait_until(lambda: [m for m in smtp_sink.received() if to in m.envelope_to])
    assert mail.text().startswith("Bonjour Jean,")
    assert "K7QX-M2PD" in mail.text() and "15 mars 2026" in mail.text()


async def test_new_document_email_carries_no_clinical_title(
    stub: notify_service_pb2_grpc.NotifyServiceStub, smtp_sink: Any, as_caller: Metadata
) -> None:
    to = mailbox()
    request = notify_service_pb2.CreateNotificationRequest(
        notification=resources_pb2.Notification(
            recipient_id="person-camille",
            kind=resources_pb2.NOTIFICATION_KIND_NEW_DOCUMENT,
            channels=[common_pb2.DELIVERY_CHANNEL_EMAIL],
            parameters={"document_title": "Compte rendu de consultation de psychiatrie"},
            email=to,
        ),
        request_id=uuid.uuid4().hex,
    )
    await stub.CreateNotification(request, metadata=as_caller(OPERATOR))
    [mail] = await wait_until(lambda: [m for m in smtp_sink.received() if to in m.envelope_to])
    assert "psychiatrie" not in mail.text() and "psychiatrie" not in mail.html()
    assert "Un nouveau document a été ajouté à votre dossier médical." in mail.text()
