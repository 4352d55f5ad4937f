"""Wiring of the notify service: pool, migrations, verifier, delivery worker, event intake, gRPC."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc
from carnet_kit.auth import TokenVerifier
from carnet_kit.bootstrap import open_foundations
from carnet_kit.outbox import StreamConsumer
from carnet_kit.server import GrpcService, ServiceApp
from carnet_notify.delivery import DeliveryWorker, SmtpTransport
from carnet_notify.domain import RetryPolicy
from carnet_notify.events import CONSUMER_GROUP, dossier_event_handler
from carnet_notify.servicer import NotifyServicer
from carnet_notify.settings import NotifySettings
from carnet_notify.store import SCHEMA, NotifyStore

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = notify_service_pb2.DESCRIPTOR.services_by_name["NotifyService"].full_name


def consumer_name() -> str:
    """This replica's name within the consumer group."""
    return f"notify-{socket.gethostname()}-{os.getpid()}"


async def build(settings: NotifySettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """Everything the notify process runs."""
    base = await open_foundations(settings, SCHEMA, MIGRATIONS, outbox=True, verifier=verifier)
    store = NotifyStore(base.pool)
    transport = SmtpTransport(
        host=settings.smtp_host,
        port=settings.smtp_port,
        mail_from=settings.mail_from,
        timeout=settings.smtp_timeout_seconds,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password,
    )
    worker = DeliveryWorker(
        store,
        transport,
        mail_from=settings.mail_from,
        retry=RetryPolicy(
            max_attempts=settings.max_delivery_attempts,
            initial_seconds=settings.retry_initial_seconds,
            max_seconds=settings.retry_max_seconds,
        ),
        # An attempt that outlives this lease (a crashed replica) is tried again.
        lease_seconds=3 * settings.smtp_timeout_seconds + 30,
        poll_seconds=settings.delivery_poll_seconds,
    )
    consumer = StreamConsumer(
        base.redis, settings.dossier_events_stream, CONSUMER_GROUP, consumer_name(), dossier_event_handler(store)
    )
    # The methods of later issues answer UNIMPLEMENTED through the generated base class.
    servicer = NotifyServicer(store, on_new_deliveries=worker.wake)  # type: ignore[abstract]
    service = GrpcService(
        full_name=SERVICE_NAME,
        add_to_server=lambda server: notify_service_pb2_grpc.add_NotifyServiceServicer_to_server(servicer, server),
    )
    return ServiceApp(
        name="notify",
        settings=settings,
        services=[service],
        verifier=base.verifier,
        background=[worker.run, consumer.run],
        resources=base.resources,
    )
