"""Wiring of the notify service: pool, migrations, verifier, senders, delivery worker, event intake,
secure messaging (object store, attachment keys, identity and dossier), gRPC."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc
from carnet_kit.auth import TokenVerifier
from carnet_kit.bootstrap import open_foundations
from carnet_kit.config import env_name
from carnet_kit.objectstore import object_store_from_settings
from carnet_kit.outbox import StreamConsumer, replica_name
from carnet_kit.server import GrpcService, ServiceApp
from carnet_kit.service_tokens import ServiceTokens
from carnet_notify.attachment_keys import AttachmentKeys
from carnet_notify.attachments import AttachmentService
from carnet_notify.delivery import ChannelSender, DeliveryWorker, EmailSender, SmtpTransport
from carnet_notify.domain import RecipientRateLimit, RetryPolicy
from carnet_notify.events import CONSUMER_GROUP, dossier_event_handler
from carnet_notify.intake import EventIntake, IntakeStore
from carnet_notify.kinds import Channel
from carnet_notify.messaging_service import MessagingService
from carnet_notify.messaging_store import MessagingStore
from carnet_notify.peers import DossierRecord, HolderContacts, IdentityPersons, ParticipantNames
from carnet_notify.prevention_job import PreventionJob
from carnet_notify.servicer import NotifyServicer
from carnet_notify.settings import NotifySettings
from carnet_notify.space_erasure import SpaceErasure
from carnet_notify.store import SCHEMA, NotifyStore
from carnet_notify.webhooks import WebhookSender

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = notify_service_pb2.DESCRIPTOR.services_by_name["NotifyService"].full_name
SERVICE_CLIENT_NAME = "notify"
"""The name notify's service secret is filed under at identity."""
log = logging.getLogger(__name__)



def _rewrapper(keys: AttachmentKeys) -> Callable[[], Coroutine[Any, Any, None]]:
    """At start, rewrap the data keys still wrapped by a retired master key (nothing to do otherwise)."""

    async def rewrap() -> None:
        if not keys.ring.retired:
            return
        done = await keys.rewrap_all()
        log.info("rewrapped %d attachment data keys under master key %s", done, keys.ring.current.key_id)

    return rewrap


async def build(settings: NotifySettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """Everything the notify process runs."""
    ring = settings.master_keys()  # before connecting anywhere: a bad key file stops the start at once
    service_secret = settings.service_secret()
    base = await open_foundations(settings, SCHEMA, MIGRATIONS, outbox=True, verifier=verifier)
    store = NotifyStore(base.pool)
    smtp = SmtpTransport(
        host=settings.smtp_host,
        port=settings.smtp_port,
        mail_from=settings.mail_from,
        timeout=settings.smtp_timeout_seconds,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password,
    )
    senders: dict[Channel, ChannelSender] = {Channel.EMAIL: EmailSender(smtp, settings.mail_from)}
    unavailable: dict[Channel, str] = {}
    http = httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
    base.resources.push_async_callback(http.aclose)
    for channel, url, secret, field_name in (
        (Channel.SMS, settings.sms_webhook_url, settings.sms_webhook_secret, "sms_webhook_url"),
        (Channel.PUSH, settings.push_webhook_url, settings.push_webhook_secret, "push_webhook_url"),
    ):
        if url:
            senders[channel] = WebhookSender(channel, url, http, secret)
        else:
            unavailable[channel] = f"no {channel.value} provider configured ({env_name(field_name)} is empty)"
    worker = DeliveryWorker(
        store,
        senders,
        retry=RetryPolicy(
            max_attempts=settings.max_delivery_attempts,
            initial_seconds=settings.retry_initial_seconds,
            max_seconds=settings.retry_max_seconds,
        ),
        rate_limit=RecipientRateLimit(settings.recipient_rate_limit, settings.recipient_rate_window_seconds),
        # An attempt that outlives this lease (a crashed replica) is tried again.
        lease_seconds=settings.lease_seconds,
        poll_seconds=settings.delivery_poll_seconds,
    )
    blobs = object_store_from_settings(settings)
    base.resources.push_async_callback(blobs.close)
    tokens = ServiceTokens(base.identity, SERVICE_CLIENT_NAME, service_secret, timeout=settings.call_timeout_seconds)
    contacts = HolderContacts(base.identity, tokens, timeout=settings.call_timeout_seconds)
    intake = EventIntake(
        store,
        IntakeStore(base.pool),
        contacts,
        unavailable=unavailable,
        on_new_deliveries=worker.wake,
        erasure=SpaceErasure(base.pool, blobs),
    )
    consumers = [
        StreamConsumer(
            base.redis,
            settings.dossier_events_stream,
            CONSUMER_GROUP,
            replica_name("notify"),
            intake.dossier_handler(dossier_event_handler(store)),
        ),
        StreamConsumer(
            base.redis, settings.identity_events_stream, CONSUMER_GROUP, replica_name("notify"), intake.identity_handler()
        ),
        StreamConsumer(
            base.redis, settings.consent_events_stream, CONSUMER_GROUP, replica_name("notify"), intake.consent_handler()
        ),
    ]
    dossier = DossierRecord(settings)
    base.resources.push_async_callback(dossier.close)
    keys = AttachmentKeys(base.pool, ring)
    messaging_store = MessagingStore(base.pool)
    attachments = AttachmentService(messaging_store, blobs, keys, dossier, max_bytes=settings.max_attachment_bytes)
    messaging = MessagingService(
        messaging_store,
        store,
        attachments,
        contacts,
        ParticipantNames(base.identity, tokens, timeout=settings.call_timeout_seconds),
        on_new_deliveries=worker.wake,
        unavailable=unavailable,
    )
    prevention = PreventionJob(
        base.pool,
        store,
        IdentityPersons(base.identity, tokens, timeout=settings.call_timeout_seconds),
        unavailable=unavailable,
        on_new_deliveries=worker.wake,
        run_hour=settings.prevention_run_hour,
        check_seconds=settings.prevention_check_seconds,
    )
    servicer = NotifyServicer(
        store,
        on_new_deliveries=worker.wake,
        unavailable=unavailable,
        messaging=messaging,
        attachments=attachments,
        prevention=prevention,
    )
    service = GrpcService(
        full_name=SERVICE_NAME,
        add_to_server=lambda server: notify_service_pb2_grpc.add_NotifyServiceServicer_to_server(servicer, server),
    )
    return ServiceApp(
        name="notify",
        settings=settings,
        services=[service],
        verifier=base.verifier,
        background=[
            worker.run,
            *(consumer.run for consumer in consumers),
            _rewrapper(keys),
            *([prevention.run_daily] if settings.prevention_job else []),
        ],
        resources=base.resources,
    )
