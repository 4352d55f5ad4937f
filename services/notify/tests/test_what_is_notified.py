"""What is notified: dossier's access alerts, agenda reminders and announced documents, identity's
closed accounts and treating physicians, consent's opposition receipts — each event once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from google.protobuf import timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import events_pb2 as consent_events
from carnet.consent.v1 import resources_pb2 as consent_resources
from carnet.dossier.v1 import events_pb2 as dossier_events
from carnet.identity.v1 import events_pb2 as identity_events
from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet.identity.v1 import resources_pb2 as identity_resources
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import Principal
from carnet_kit.config import HostPort
from carnet_kit.server import ServiceApp
from carnet_kit.testing import TokenFactory, publish_event, wait_until
from carnet_notify.kinds import Kind
from carnet_notify.templates import render_email, render_push, render_sms

Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]
OPERATOR = Principal(subject="operator-1", role="operator")
MEDICAL = ("Chimiothérapie", "oncologie", "VIH", "Compte rendu")


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _at(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


def _streams(app: ServiceApp) -> tuple[str, str, str]:
    settings: Any = app.settings
    return settings.dossier_events_stream, settings.identity_events_stream, settings.consent_events_stream


async def _consumed(client: redis.Redis, stream: str) -> bool:
    """The notify group has read and acked everything on ``stream``."""
    info = await client.xinfo_stream(stream)
    for group in await client.xinfo_groups(stream):
        if group["name"] == b"notify":
            return bool(group["last-delivered-id"] >= info["last-generated-id"] and group["pending"] == 0)
    return False


async def _publish(client: redis.Redis, stream: str, message: Any, *, event_id: str | None = None) -> str:
    event_id = await publish_event(client, stream, message, event_id=event_id)
    await wait_until(lambda: _consumed(client, stream))
    return event_id


async def _inbox(stub: Any, as_caller: Metadata, recipient: str, role: str = "holder") -> list[Any]:
    listed = await stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=recipient),
        metadata=as_caller(Principal(subject=recipient, role=role)),
    )
    return list(listed.items)


async def _deliveries(stub: Any, as_caller: Metadata, recipient: str) -> dict[int, int]:
    """Channel → state of the recipient's deliveries."""
    listed = await stub.ListDeliveries(
        notify_service_pb2.ListDeliveriesRequest(recipient_id=recipient), metadata=as_caller(OPERATOR)
    )
    return {delivery.channel: delivery.state for delivery in listed.deliveries}


def _break_glass(holder_id: str, *, to_physician: bool = True) -> dossier_events.AccessAlertEvent:
    return dossier_events.AccessAlertEvent(
        holder_id=holder_id,
        kind=dossier_events.ACCESS_ALERT_KIND_BREAK_GLASS,
        actor=common_pb2.Actor(
            subject="pro-urgentiste",
            role=common_pb2.ROLE_PROFESSIONAL,
            profession_code="10",
            organisation_id="CHU Nord",
        ),
        actor_display_name="Dr Jeanne Martin",
        reason="Patient inconscient, suspicion de VIH",
        access_log_entry_id="log-1",
        notify_holder=True,
        notify_treating_physician=to_physician,
        occur_time=_at(1_773_000_000),
    )


async def test_break_glass_tells_the_holder_and_the_treating_physician_once(
    app: ServiceApp, stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, redis_client: redis.Redis
) -> None:
    dossier, identity, _ = _streams(app)
    holder, physician = _id("person"), _id("pro")
    await _publish(
        redis_client,
        identity,
        identity_events.TreatingPhysicianChangedEvent(holder_id=holder, professional_id=physician, occur_time=_at(10)),
    )
    alert = _break_glass(holder)
    event_id = await _publish(redis_client, dossier, alert)
    await _publish(redis_client, dossier, alert, event_id=event_id)  # redelivered: nothing more

    [item] = await _inbox(stub, as_caller, holder)
    assert item.kind == resources_pb2.NOTIFICATION_KIND_BREAK_GLASS_ACCESS
    assert item.source_event_id == event_id
    assert "médecin" in item.body and "CHU Nord" in item.body
    assert "Jeanne Martin" not in item.body and "VIH" not in item.body
    [told] = await _inbox(stub, as_caller, physician, role="professional")
    assert told.kind == resources_pb2.NOTIFICATION_KIND_BREAK_GLASS_ACCESS
    assert holder in told.body and "VIH" not in told.body
    # The holder's e-mail went nowhere (identity is down): suppressed, the inbox item kept.
    assert await _deliveries(stub, as_caller, holder) == {
        common_pb2.DELIVERY_CHANNEL_IN_APP: resources_pb2.DELIVERY_STATE_DELIVERED,
        common_pb2.DELIVERY_CHANNEL_EMAIL: resources_pb2.DELIVERY_STATE_SUPPRESSED,
    }
    assert await _deliveries(stub, as_caller, physician) == {
        common_pb2.DELIVERY_CHANNEL_IN_APP: resources_pb2.DELIVERY_STATE_DELIVERED
    }


async def test_an_older_physician_event_arriving_late_does_not_win(
    app: ServiceApp, stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, redis_client: redis.Redis
) -> None:
    dossier, identity, _ = _streams(app)
    holder, current, former = _id("person"), _id("pro"), _id("pro")
    for professional, when in ((current, 20), (former, 10)):
        await _publish(
            redis_client,
            identity,
            identity_events.TreatingPhysicianChangedEvent(
                holder_id=holder, professional_id=professional, occur_time=_at(when)
            ),
        )
    await _publish(redis_client, dossier, _break_glass(holder))
    assert len(await _inbox(stub, as_caller, current, role="professional")) == 1
    assert await _inbox(stub, as_caller, former, role="professional") == []


async def test_new_organisation_access_tells_the_holder(
    app: ServiceApp, stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, redis_client: redis.Redis
) -> None:
    dossier, _, _ = _streams(app)
    holder = _id("person")
    alert = dossier_events.AccessAlertEvent(
        holder_id=holder,
        kind=dossier_events.ACCESS_ALERT_KIND_NEW_ORGANISATION,
        actor=common_pb2.Actor(subject="pro-1", role=common_pb2.ROLE_PROFESSIONAL, organisation_id="Clinique Sud"),
        notify_holder=True,
        occur_time=_at(1_773_000_000),
    )
    await _publish(redis_client, dossier, alert)
    [item] = await _inbox(stub, as_caller, holder)
    assert item.kind == resources_pb2.NOTIFICATION_KIND_NEW_ORGANISATION_ACCESS
    assert "Clinique Sud" in item.body


async def test_agenda_reminder_uses_the_channels_of_the_event(
    app: ServiceApp, stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, redis_client: redis.Redis
) -> None:
    dossier, _, _ = _streams(app)
    holder = _id("person")
    due = dossier_events.AgendaReminderDueEvent(
        agenda_event_id="agenda-1",
        holder_id=holder,
        title="Chimiothérapie, séance 3",
        start_time=_at(1_773_050_400),
        channels=[common_pb2.DELIVERY_CHANNEL_SMS],
    )
    await _publish(redis_client, dossier, due)
    [item] = await _inbox(stub, as_caller, holder)
    assert item.kind == resources_pb2.NOTIFICATION_KIND_AGENDA_REMINDER
    assert "Chimiothérapie" in item.body  # behind the login only
    # The inbox always; SMS as asked (no SMS provider in this app: suppressed); no e-mail since not asked.
    assert await _deliveries(stub, as_caller, holder) == {
        common_pb2.DELIVERY_CHANNEL_IN_APP: resources_pb2.DELIVERY_STATE_DELIVERED,
        common_pb2.DELIVERY_CHANNEL_SMS: resources_pb2.DELIVERY_STATE_SUPPRESSED,
    }


async def test_an_announced_document_is_notified_and_an_invisible_deposit_tells_nobody(
    app: ServiceApp, stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, redis_client: redis.Redis
) -> None:
    dossier, _, _ = _streams(app)
    holder = _id("person")
    deposited = dossier_events.DocumentDepositedEvent(
        document_id="doc-1", holder_id=holder, title="Compte rendu d'oncologie", invisible_to_holder=True
    )
    await _publish(redis_client, dossier, deposited)
    assert await _inbox(stub, as_caller, holder) == []
    assert await _deliveries(stub, as_caller, holder) == {}
    announced = dossier_events.DocumentChangedEvent(
        document_id="doc-1", holder_id=holder, change=dossier_events.DOCUMENT_CHANGE_ANNOUNCED
    )
    event_id = await _publish(redis_client, dossier, announced)
    await _publish(redis_client, dossier, announced, event_id=event_id)
    [item] = await _inbox(stub, as_caller, holder)
    assert item.kind == resources_pb2.NOTIFICATION_KIND_NEW_DOCUMENT
    assert item.parameters["document_id"] == "doc-1"
    archived = dossier_events.DocumentChangedEvent(
        document_id="doc-1", holder_id=holder, change=dossier_events.DOCUMENT_CHANGE_ARCHIVED
    )
    await _publish(redis_client, dossier, archived)
    assert len(await _inbox(stub, as_caller, holder)) == 1


async def test_opposition_receipt_carries_its_number(
    app: ServiceApp, stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, redis_client: redis.Redis
) -> None:
    _, _, consent = _streams(app)
    holder = _id("person")
    recorded = consent_events.OppositionChangedEvent(
        opposition_id="opp-1",
        holder_id=holder,
        state=consent_resources.OPPOSITION_STATE_ACTIVE,
        receipt_number="OPP-2026-000123",
    )
    event_id = await _publish(redis_client, consent, recorded)
    await _publish(redis_client, consent, recorded, event_id=event_id)
    [item] = await _inbox(stub, as_caller, holder)
    assert item.kind == resources_pb2.NOTIFICATION_KIND_OPPOSITION_RECEIPT
    assert "OPP-2026-000123" in item.body
    assert await _deliveries(stub, as_caller, holder) == {
        common_pb2.DELIVERY_CHANNEL_IN_APP: resources_pb2.DELIVERY_STATE_DELIVERED,
        common_pb2.DELIVERY_CHANNEL_EMAIL: resources_pb2.DELIVERY_STATE_SUPPRESSED,
    }


class _Identity(identity_service_pb2_grpc.IdentityServiceServicer):
    """An identity stand-in knowing one e-mail address per person, and telling them only to notify itself:
    the service token it grants for notify's secret (there is no caller behind an event)."""

    def __init__(self, emails: dict[str, str], secret: str, tokens: TokenFactory) -> None:
        self.emails = emails
        self._secret = secret
        self._tokens = tokens

    async def ExchangeClientCredentials(self, request: Any, context: Any) -> identity_service_pb2.TokenSet:
        if (request.client_id, request.client_secret) != ("notify", self._secret):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown client or wrong secret")
        token = self._tokens.mint(Principal(subject="notify", role="service"))
        return identity_service_pb2.TokenSet(access_token=token, token_type="Bearer", expires_in=300)

    async def GetPerson(self, request: Any, context: Any) -> identity_resources.Person:
        bearer = dict(context.invocation_metadata()).get("authorization", "").removeprefix("Bearer ")
        principal = await self._tokens.verifier().verify(bearer) if bearer else None
        if principal is None or (principal.role, principal.subject) != ("service", "notify"):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "only notify's service token reads contact points")
        return identity_resources.Person(person_id=request.person_id, email=self.emails.get(request.person_id, ""))


@pytest.fixture
async def identity_port(
    service_secrets_dir: Path, token_factory: TokenFactory
) -> AsyncIterator[tuple[int, dict[str, str]]]:
    emails: dict[str, str] = {}
    server = grpc.aio.server()
    secret = (service_secrets_dir / "notify").read_text().strip()
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(_Identity(emails, secret, token_factory), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port, emails
    await server.stop(0)


async def test_closure_confirmation_goes_to_the_inbox_and_by_e_mail_once(
    run_app: Any,
    smtp_sink: Any,
    identity_port: tuple[int, dict[str, str]],
    as_caller: Metadata,
    redis_client: redis.Redis,
) -> None:
    port, emails = identity_port
    holder = _id("person")
    emails[holder] = "camille@example.org"
    async with run_app(smtp_port=smtp_sink.port, identity_addr=HostPort("127.0.0.1", port)) as app:
        _, identity, _ = _streams(app)
        closed = identity_events.AccountStateChangedEvent(
            person_id=holder,
            previous_state=identity_resources.ACCOUNT_STATE_ACTIVE,
            state=identity_resources.ACCOUNT_STATE_CLOSED,
            occur_time=_at(1_773_000_000),
        )
        event_id = await _publish(redis_client, identity, closed)
        await _publish(redis_client, identity, closed, event_id=event_id)
        suspended = identity_events.AccountStateChangedEvent(
            person_id=holder, state=identity_resources.ACCOUNT_STATE_SUSPENDED
        )
        await _publish(redis_client, identity, suspended)
        mails = await wait_until(lambda: [m for m in smtp_sink.received() if "camille@example.org" in m.envelope_to])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = notify_service_pb2_grpc.NotifyServiceStub(channel)
            [item] = await _inbox(stub, as_caller, holder)
            assert item.kind == resources_pb2.NOTIFICATION_KIND_CLOSURE_CONFIRMATION
            await wait_until(
                lambda: _delivered(stub, as_caller, holder),
            )
    [mail] = mails
    assert "fermeture" in mail.text().lower()
    assert "mars 2026" in mail.text()
    assert not any(word in mail.text() or word in mail.html() for word in MEDICAL)


async def _delivered(stub: Any, as_caller: Metadata, holder: str) -> bool:
    states = await _deliveries(stub, as_caller, holder)
    return states.get(common_pb2.DELIVERY_CHANNEL_EMAIL) == resources_pb2.DELIVERY_STATE_DELIVERED


@pytest.mark.parametrize("kind", [Kind.BREAK_GLASS_ACCESS, Kind.NEW_ORGANISATION_ACCESS, Kind.AGENDA_REMINDER])
def test_e_mail_sms_and_push_never_carry_the_medical_parameters(kind: Kind) -> None:
    params = {
        "actor_role": "médecin",
        "organisation": "CHU Nord",
        "access_time": "8 mars 2026 à 21 h 00",
        "start_time": "9 mars 2026 à 10 h 00",
        "agenda_title": "Chimiothérapie, séance 3",
        "holder_id": "person-1",
    }
    email = render_email(kind, params)
    for text in (email.subject, email.text, email.html, render_sms(kind, params), render_push(kind, params).body):
        assert "Chimiothérapie" not in text and "person-1" not in text
