"""SMS and push through the providers' HTTP webhooks: content, retries, refusals, missing providers."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
import pytest

from carnet.common.v1 import common_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import Principal
from carnet_kit.config import ConfigError, load
from carnet_kit.status import parse_rpc_error
from carnet_kit.testing import free_port, wait_until
from carnet_notify.domain import RetryPolicy
from carnet_notify.kinds import AttemptOutcome, Channel, DeliveryState, Kind
from carnet_notify.settings import NotifySettings
from carnet_notify.templates import render_push, render_sms
from carnet_notify.webhooks import WebhookSender, retry_after_seconds

IDENTITY = Principal(subject="identity", role="service")
DOSSIER = Principal(subject="dossier", role="service")
OPERATOR = Principal(subject="op-support", role="operator")
Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]
Stub = notify_service_pb2_grpc.NotifyServiceStub


def a_phone() -> str:
    return "+336" + str(uuid.uuid4().int)[:8]


def code_by_sms(phone: str, code: str = "482913", recipient_id: str | None = None) -> Any:
    return notify_service_pb2.CreateNotificationRequest(
        notification=resources_pb2.Notification(
            recipient_id=recipient_id or f"person-{uuid.uuid4().hex[:12]}",
            kind=resources_pb2.NOTIFICATION_KIND_ONE_TIME_CODE,
            channels=[common_pb2.DELIVERY_CHANNEL_SMS],
            parameters={"code": code},
            phone=phone,
        ),
        request_id=uuid.uuid4().hex,
    )


def new_document(recipient_id: str, channels: list[Any], title: str = "Compte rendu", **contact: str) -> Any:
    return notify_service_pb2.CreateNotificationRequest(
        notification=resources_pb2.Notification(
            recipient_id=recipient_id,
            kind=resources_pb2.NOTIFICATION_KIND_NEW_DOCUMENT,
            channels=channels,
            parameters={"document_title": title, "document_id": f"doc-{uuid.uuid4().hex[:8]}"},
            **contact,
        ),
        request_id=uuid.uuid4().hex,
    )


async def deliveries_of(stub: Stub, as_caller: Metadata, notification_id: str) -> dict[int, Any]:
    response = await stub.ListDeliveries(
        notify_service_pb2.ListDeliveriesRequest(notification_id=notification_id), metadata=as_caller(OPERATOR)
    )
    return {delivery.channel: delivery for delivery in response.deliveries}


async def settled(stub: Stub, as_caller: Metadata, notification_id: str, channel: Any, state: Any) -> Any:
    """The delivery of ``channel`` once it reached ``state``."""

    async def reached() -> Any:
        delivery = (await deliveries_of(stub, as_caller, notification_id)).get(channel)
        return delivery if delivery is not None and delivery.state == state else None

    return await wait_until(reached)


async def state_detail(database_url: str, delivery_id: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return str(
            await conn.fetchval(
                "SELECT state_detail FROM notify.deliveries WHERE delivery_id = $1", uuid.UUID(delivery_id)
            )
        )
    finally:
        await conn.close()


# ----------------------------------------------------------------------------- content


async def test_code_by_sms_reaches_the_provider_with_the_code_the_number_and_the_bearer_secret(
    webhook_stub: Stub, webhook_receiver: Any, as_caller: Metadata
) -> None:
    phone = a_phone()
    created = await webhook_stub.CreateNotification(code_by_sms(phone, "482913"), metadata=as_caller(IDENTITY))
    [post] = await wait_until(lambda: webhook_receiver.received("/sms", to=phone))
    assert post.body["text"] == (
        "Carnet : votre code de connexion est 482913 (valable 10 min). Ne le communiquez à personne."
    )
    assert post.body["channel"] == "SMS" and post.body["kind"] == "ONE_TIME_CODE"
    assert post.headers["authorization"] == "Bearer sms-provider-token"
    assert post.headers["content-type"] == "application/json"
    delivery = await settled(
        webhook_stub, as_caller, created.notification_id, common_pb2.DELIVERY_CHANNEL_SMS,
        resources_pb2.DELIVERY_STATE_DELIVERED,
    )
    assert post.body["message_id"] == delivery.delivery_id == post.headers["idempotency-key"]
    [attempt] = delivery.attempts
    assert attempt.outcome == resources_pb2.ATTEMPT_OUTCOME_SUCCEEDED
    assert attempt.detail.startswith("HTTP 202 Accepted: {") and '"prov-' in attempt.detail
    assert delivery.masked_destination == phone[:3] + "*" * (len(phone) - 5) + phone[-2:]


async def test_new_document_by_sms_and_push_says_only_that_a_document_arrived(
    webhook_stub: Stub, webhook_receiver: Any, as_caller: Metadata
) -> None:
    holder_id, phone = f"person-{uuid.uuid4().hex[:12]}", a_phone()
    channels = [common_pb2.DELIVERY_CHANNEL_IN_APP, common_pb2.DELIVERY_CHANNEL_SMS, common_pb2.DELIVERY_CHANNEL_PUSH]
    await webhook_stub.CreateNotification(
        new_document(holder_id, channels, title="Compte rendu de psychiatrie", phone=phone), metadata=as_caller(DOSSIER)
    )
    [sms] = await wait_until(lambda: webhook_receiver.received("/sms", to=phone))
    [push] = await wait_until(lambda: webhook_receiver.received("/push", to=holder_id))
    assert sms.body["text"] == (
        "Carnet : un nouveau document a été ajouté à votre espace. Connectez-vous pour le consulter."
    )
    assert push.body["title"] == "Carnet"
    assert push.body["text"] == "Un nouveau document a été ajouté à votre espace."
    for post in (sms, push):
        assert "psychiatrie" not in json.dumps(post.body, ensure_ascii=False)
        assert "document_id" not in post.body
    assert "authorization" not in push.headers, "no secret configured for push"
    inbox = await webhook_stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=holder_id), metadata=as_caller(OPERATOR)
    )
    assert "psychiatrie" in inbox.items[0].body, "the title stays in the inbox, behind the login"


async def test_code_with_only_a_phone_and_no_channel_named_goes_by_sms(
    webhook_stub: Stub, webhook_receiver: Any, as_caller: Metadata
) -> None:
    phone = a_phone()
    request = code_by_sms(phone)
    del request.notification.channels[:]
    created = await webhook_stub.CreateNotification(request, metadata=as_caller(IDENTITY))
    assert list(created.channels) == [common_pb2.DELIVERY_CHANNEL_SMS]
    await wait_until(lambda: webhook_receiver.received("/sms", to=phone))


async def test_phone_not_in_e164_is_invalid_argument_naming_it(webhook_stub: Stub, as_caller: Metadata) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await webhook_stub.CreateNotification(code_by_sms("06 12 34 56 78"), metadata=as_caller(IDENTITY))
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.metadata["field"] == "notification.phone"


async def test_code_cannot_go_by_push(webhook_stub: Stub, as_caller: Metadata) -> None:
    request = code_by_sms(a_phone())
    request.notification.channels[:] = [common_pb2.DELIVERY_CHANNEL_PUSH]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await webhook_stub.CreateNotification(request, metadata=as_caller(IDENTITY))
    assert parse_rpc_error(raised.value).metadata["field"] == "notification.channels"


# ----------------------------------------------------------------------------- failures


async def test_provider_busy_then_accepting_is_retried_with_backoff_under_one_idempotency_key(
    webhook_stub: Stub, webhook_receiver: Any, as_caller: Metadata
) -> None:
    webhook_receiver.answer_next("/sms", 503, '{"error": "maintenance"}')
    webhook_receiver.answer_next("/sms", 429, '{"error": "slow down"}')
    phone = a_phone()
    created = await webhook_stub.CreateNotification(code_by_sms(phone), metadata=as_caller(IDENTITY))
    delivery = await settled(
        webhook_stub, as_caller, created.notification_id, common_pb2.DELIVERY_CHANNEL_SMS,
        resources_pb2.DELIVERY_STATE_DELIVERED,
    )
    assert [a.outcome for a in delivery.attempts] == [
        resources_pb2.ATTEMPT_OUTCOME_TRANSIENT_FAILURE,
        resources_pb2.ATTEMPT_OUTCOME_TRANSIENT_FAILURE,
        resources_pb2.ATTEMPT_OUTCOME_SUCCEEDED,
    ]
    assert delivery.attempts[0].detail == 'HTTP 503 Service Unavailable: {"error": "maintenance"}'
    assert delivery.attempts[1].detail == 'HTTP 429 Too Many Requests: {"error": "slow down"}'
    posts = webhook_receiver.received("/sms", to=phone)
    assert len(posts) == 3
    assert {post.headers["idempotency-key"] for post in posts} == {delivery.delivery_id}
    gaps = [b.start_time.ToDatetime() - a.start_time.ToDatetime() for a, b in itertools.pairwise(delivery.attempts)]
    assert gaps[0].total_seconds() >= 0.2 and gaps[1].total_seconds() >= 0.4, "retry_initial_seconds × 2^(n−1)"


async def test_provider_retry_after_is_honoured(
    webhook_stub: Stub, webhook_receiver: Any, as_caller: Metadata
) -> None:
    webhook_receiver.answer_next("/sms", 503, "{}", {"Retry-After": "1"})
    created = await webhook_stub.CreateNotification(code_by_sms(a_phone()), metadata=as_caller(IDENTITY))
    delivery = await settled(
        webhook_stub, as_caller, created.notification_id, common_pb2.DELIVERY_CHANNEL_SMS,
        resources_pb2.DELIVERY_STATE_DELIVERED,
    )
    first, second = delivery.attempts
    assert (second.start_time.ToDatetime() - first.start_time.ToDatetime()).total_seconds() >= 1.0


async def test_provider_down_then_up_is_retried_and_delivered(
    run_app: Any, smtp_sink: Any, start_webhook_receiver: Any, as_caller: Metadata
) -> None:
    port = free_port()
    async with run_app(
        smtp_port=smtp_sink.port, sms_webhook_url=f"http://127.0.0.1:{port}/sms"
    ) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = Stub(channel)
        phone = a_phone()
        created = await stub.CreateNotification(code_by_sms(phone, "777001"), metadata=as_caller(IDENTITY))
        retrying = await settled(
            stub, as_caller, created.notification_id, common_pb2.DELIVERY_CHANNEL_SMS,
            resources_pb2.DELIVERY_STATE_RETRYING,
        )
        assert retrying.attempts[0].detail.startswith("ConnectError")
        receiver = start_webhook_receiver(port)
        [post] = await wait_until(lambda: receiver.received("/sms", to=phone))
        assert "777001" in post.body["text"]
        delivery = await settled(
            stub, as_caller, created.notification_id, common_pb2.DELIVERY_CHANNEL_SMS,
            resources_pb2.DELIVERY_STATE_DELIVERED,
        )
    outcomes = [attempt.outcome for attempt in delivery.attempts]
    assert outcomes[-1] == resources_pb2.ATTEMPT_OUTCOME_SUCCEEDED
    assert set(outcomes[:-1]) == {resources_pb2.ATTEMPT_OUTCOME_TRANSIENT_FAILURE}


async def test_provider_refusal_fails_the_delivery_after_one_attempt(
    webhook_stub: Stub, webhook_receiver: Any, as_caller: Metadata
) -> None:
    webhook_receiver.answer_next("/sms", 400, '{"error": "number not reachable"}')
    phone = a_phone()
    created = await webhook_stub.CreateNotification(code_by_sms(phone), metadata=as_caller(IDENTITY))
    delivery = await settled(
        webhook_stub, as_caller, created.notification_id, common_pb2.DELIVERY_CHANNEL_SMS,
        resources_pb2.DELIVERY_STATE_FAILED,
    )
    [attempt] = delivery.attempts
    assert attempt.outcome == resources_pb2.ATTEMPT_OUTCOME_PERMANENT_FAILURE
    assert attempt.detail == 'HTTP 400 Bad Request: {"error": "number not reachable"}'
    assert not delivery.HasField("next_attempt_time")
    await asyncio.sleep(0.5)  # many worker polls: no second try
    assert len(webhook_receiver.received("/sms", to=phone)) == 1


async def test_provider_echoing_the_code_does_not_put_it_in_the_attempt_log(
    webhook_stub: Stub, webhook_receiver: Any, as_caller: Metadata
) -> None:
    webhook_receiver.answer_next("/sms", 200, '{"sent": "Carnet : votre code de connexion est 615243"}')
    created = await webhook_stub.CreateNotification(code_by_sms(a_phone(), "615243"), metadata=as_caller(IDENTITY))
    delivery = await settled(
        webhook_stub, as_caller, created.notification_id, common_pb2.DELIVERY_CHANNEL_SMS,
        resources_pb2.DELIVERY_STATE_DELIVERED,
    )
    assert delivery.attempts[0].detail == 'HTTP 200 OK: {"sent": "Carnet : votre code de connexion est ******"}'


# ----------------------------------------------------------------------------- no provider configured


async def test_without_sms_provider_a_code_by_sms_is_refused_naming_the_setting(
    stub: Stub, as_caller: Metadata
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateNotification(code_by_sms(a_phone()), metadata=as_caller(IDENTITY))
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "NO_DELIVERY_CHANNEL"
    assert "CARNET_SMS_WEBHOOK_URL" in error.message


async def test_without_push_provider_push_is_suppressed_and_the_inbox_item_kept(
    stub: Stub, as_caller: Metadata, database_url: str
) -> None:
    holder_id = f"person-{uuid.uuid4().hex[:12]}"
    channels = [common_pb2.DELIVERY_CHANNEL_IN_APP, common_pb2.DELIVERY_CHANNEL_PUSH]
    created = await stub.CreateNotification(new_document(holder_id, channels), metadata=as_caller(DOSSIER))
    deliveries = await deliveries_of(stub, as_caller, created.notification_id)
    push = deliveries[common_pb2.DELIVERY_CHANNEL_PUSH]
    assert push.state == resources_pb2.DELIVERY_STATE_SUPPRESSED and list(push.attempts) == []
    assert deliveries[common_pb2.DELIVERY_CHANNEL_IN_APP].state == resources_pb2.DELIVERY_STATE_DELIVERED
    assert await state_detail(database_url, push.delivery_id) == (
        "no PUSH provider configured (CARNET_PUSH_WEBHOOK_URL is empty)"
    )
    inbox = await stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=holder_id), metadata=as_caller(OPERATOR)
    )
    assert len(inbox.items) == 1


# ----------------------------------------------------------------------------- pure parts


def test_sms_texts_fit_in_one_message_and_the_code_is_shown() -> None:
    text = render_sms(Kind.ONE_TIME_CODE, {"code": "123456"})
    assert "123456" in text and len(text) <= 160
    assert len(render_sms(Kind.NEW_DOCUMENT, {"document_title": "Bilan"})) <= 160
    assert "Bilan" not in render_push(Kind.NEW_DOCUMENT, {"document_title": "Bilan"}).body


def test_kinds_without_an_sms_or_push_text_cannot_render_one() -> None:
    with pytest.raises(KeyError):
        render_push(Kind.ONE_TIME_CODE, {"code": "1"})
    with pytest.raises(KeyError):
        render_sms(Kind.ACTIVATION_NOTICE, {"activation_code": "X", "opposition_deadline": "1 mars"})


def test_webhook_sender_is_for_sms_and_push_only() -> None:
    with pytest.raises(ValueError, match="EMAIL"):
        WebhookSender(Channel.EMAIL, "http://127.0.0.1:1/", client=None)  # type: ignore[arg-type]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Sun, 01 Mar 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_retry_after_lengthens_the_backoff_within_its_ceiling_and_never_shortens_it() -> None:
    policy = RetryPolicy(max_attempts=5, initial_seconds=30, max_seconds=600)
    assert policy.after(AttemptOutcome.TRANSIENT_FAILURE, 1, retry_after=120) == (DeliveryState.RETRYING, 120)
    assert policy.after(AttemptOutcome.TRANSIENT_FAILURE, 1, retry_after=5) == (DeliveryState.RETRYING, 30)
    assert policy.after(AttemptOutcome.TRANSIENT_FAILURE, 1, retry_after=86400) == (DeliveryState.RETRYING, 600)


BASE_ENV = {
    "CARNET_GRPC_LISTEN": "127.0.0.1:50055",
    "CARNET_DATABASE_URL": "postgresql://postgres@127.0.0.1/carnet",
    "CARNET_REDIS_URL": "redis://127.0.0.1:6379/0",
    "CARNET_SMTP_HOST": "127.0.0.1",
    "CARNET_SMTP_PORT": "2525",
    "CARNET_MAIL_FROM": "ne-pas-repondre@carnet.test",
    "CARNET_MASTER_KEY_FILE": "/run/secrets/master-keys",
    "CARNET_SERVICE_SECRET_FILE": "/run/secrets/service-secret",
    "CARNET_BLOB_DIR": "/var/lib/carnet/notify",
}


def test_webhook_and_rate_limit_settings_have_safe_defaults_and_load_from_the_environment() -> None:
    defaults = load(NotifySettings, BASE_ENV)
    assert (defaults.sms_webhook_url, defaults.push_webhook_url) == ("", "")
    assert (defaults.recipient_rate_limit, defaults.recipient_rate_window_seconds) == (20, 3600)
    settings = load(
        NotifySettings,
        {
            **BASE_ENV,
            "CARNET_SMS_WEBHOOK_URL": "https://sms.provider.example/v1/messages",
            "CARNET_SMS_WEBHOOK_SECRET": "s3cret",
            "CARNET_PUSH_WEBHOOK_URL": "http://127.0.0.1:9000/push",
            "CARNET_WEBHOOK_TIMEOUT_SECONDS": "4",
            "CARNET_RECIPIENT_RATE_LIMIT": "5",
            "CARNET_RECIPIENT_RATE_WINDOW_SECONDS": "60",
        },
    )
    assert settings.sms_webhook_secret == "s3cret" and settings.webhook_timeout_seconds == 4
    assert settings.lease_seconds == 3 * 10 + 30, "the longest of the SMTP and webhook time-outs"
    assert (settings.recipient_rate_limit, settings.recipient_rate_window_seconds) == (5, 60)


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"CARNET_SMS_WEBHOOK_URL": "sms.provider.example"}, "CARNET_SMS_WEBHOOK_URL"),
        ({"CARNET_PUSH_WEBHOOK_URL": "ftp://push.example/"}, "CARNET_PUSH_WEBHOOK_URL"),
        ({"CARNET_SMS_WEBHOOK_URL": "https://user:pw@sms.example/"}, "CARNET_SMS_WEBHOOK_URL"),
        ({"CARNET_SMS_WEBHOOK_URL": "http://sms.provider.example/"}, "CARNET_SMS_WEBHOOK_URL"),
        ({"CARNET_PUSH_WEBHOOK_SECRET": "s3cret"}, "CARNET_PUSH_WEBHOOK_SECRET"),
        ({"CARNET_WEBHOOK_TIMEOUT_SECONDS": "0"}, "CARNET_WEBHOOK_TIMEOUT_SECONDS"),
        ({"CARNET_RECIPIENT_RATE_LIMIT": "0"}, "CARNET_RECIPIENT_RATE_LIMIT"),
        ({"CARNET_RECIPIENT_RATE_WINDOW_SECONDS": "ten"}, "CARNET_RECIPIENT_RATE_WINDOW_SECONDS"),
    ],
)
def test_bad_webhook_or_rate_limit_settings_name_the_variable(change: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(NotifySettings, {**BASE_ENV, **change})
    assert raised.value.variable == variable


def test_plain_http_provider_is_allowed_outside_production() -> None:
    settings = load(
        NotifySettings,
        {**BASE_ENV, "CARNET_PROFILE": "embedded", "CARNET_SMS_WEBHOOK_URL": "http://sms.local.test:8025/sms"},
    )
    assert settings.sms_webhook_url == "http://sms.local.test:8025/sms"
