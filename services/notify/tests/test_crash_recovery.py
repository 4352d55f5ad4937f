"""Notify killed in the middle of a delivery: after a restart the event's e-mail goes out exactly once.

Notify runs as a real process (``python -m carnet_notify``) against the real identity (the
holder's address, notify's service token) and a real SMTP server that holds its answer to
the first message's DATA. While notify waits for that answer it is killed with SIGKILL:
the server never said 250, so the message was not accepted. Restarted, notify finds the
event already handled (nothing new is made of it) and the delivery's lease over, and sends
the e-mail again; the server accepts it, once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as redis
from aiosmtpd.controller import Controller

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import events_pb2 as identity_events
from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet.identity.v1 import resources_pb2 as identity_resources
from carnet_kit.auth import Principal
from carnet_kit.server import ServiceApp
from carnet_kit.testing import free_port, publish_event, wait_until

pytestmark = pytest.mark.asyncio

OPERATOR = Principal(subject="op-crash", role="operator")
LEASE_SECONDS = 4


class HoldingSmtpServer:
    """Holds its answer to the first message's DATA (the sender waits), accepts every later one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.data_seen = threading.Event()
        self.accepted: list[list[str]] = []
        self._first = True
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            hold, self._first = self._first, False
        if hold:
            self.data_seen.set()
            await asyncio.sleep(3600)  # the sender dies waiting; nothing is accepted
        with self._lock:
            self.accepted.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"

    def __enter__(self) -> HoldingSmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[HoldingSmtpServer]:
    with HoldingSmtpServer(free_port()) as server:
        yield server


def _notify_process(environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "carnet_notify"], env=environ, stdout=out, stderr=out)


async def test_a_notify_killed_while_sending_sends_the_e_mail_once_after_a_restart(
    identity_app: ServiceApp,
    as_caller: Any,
    smtp_server: HoldingSmtpServer,
    database_url: str,
    redis_url: str,
    master_key_file: Path,
    service_secrets_dir: Path,
    tmp_path: Path,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{identity_app.port}") as channel:
        nir = f"2{random.randint(50, 99)}{random.randint(1, 12):02d}75{random.randint(1, 999):03d}{random.randint(1, 999):03d}"
        address = f"crash-{uuid.uuid4().hex[:8]}@test.carnet.test"
        person = await identity_service_pb2_grpc.IdentityServiceStub(channel).CreatePerson(
            identity_service_pb2.CreatePersonRequest(
                person=identity_resources.Person(
                    ins=f"{nir}{97 - int(nir) % 97:02d}",
                    name=common_pb2.PersonName(birth_name="ESSAI", first_names=["Claude"]),
                    sex=common_pb2.SEX_FEMALE,
                    birth_date=common_pb2.Date(year=1980, month=1, day=1),
                    email=address,
                    department_code="75",
                )
            ),
            metadata=as_caller(OPERATOR),
        )
    stream = f"carnet:test:{uuid.uuid4().hex}:events:identity"
    environ = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("CARNET_", "OTEL_"))},
        "CARNET_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
        "CARNET_DATABASE_URL": database_url,
        "CARNET_REDIS_URL": redis_url,
        "CARNET_PROFILE": "test",
        "CARNET_IDENTITY_ADDR": f"127.0.0.1:{identity_app.port}",
        "CARNET_SMTP_HOST": "127.0.0.1",
        "CARNET_SMTP_PORT": str(smtp_server.port),
        "CARNET_SMTP_TIMEOUT_SECONDS": "2",
        "CARNET_WEBHOOK_TIMEOUT_SECONDS": "2",
        "CARNET_DELIVERY_LEASE_SECONDS": str(LEASE_SECONDS),
        "CARNET_DELIVERY_POLL_SECONDS": "0.2",
        "CARNET_MAIL_FROM": "ne-pas-repondre@carnet.test",
        "CARNET_MASTER_KEY_FILE": str(master_key_file),
        "CARNET_SERVICE_SECRET_FILE": str(service_secrets_dir / "notify"),
        "CARNET_BLOB_DIR": str(tmp_path / "blobs"),
        "CARNET_IDENTITY_EVENTS_STREAM": stream,
        "CARNET_DOSSIER_EVENTS_STREAM": f"carnet:test:{uuid.uuid4().hex}:events:dossier",
        "CARNET_CONSENT_EVENTS_STREAM": f"carnet:test:{uuid.uuid4().hex}:events:consent",
        "CARNET_PREVENTION_JOB": "false",
        "CARNET_GRACE_SECONDS": "0",
        "TCP_NODELAY": "1",
    }
    log = tmp_path / "notify.log"
    client = redis.Redis.from_url(redis_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    first = _notify_process(environ, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        closed = identity_events.AccountStateChangedEvent(
            person_id=person.person_id,
            previous_state=identity_resources.ACCOUNT_STATE_ACTIVE,
            state=identity_resources.ACCOUNT_STATE_CLOSED,
        )
        event_id = await publish_event(client, stream, closed)
        # The e-mail is on the wire, the server holds its answer: notify dies mid-delivery.
        started = time.monotonic()
        while not smtp_server.data_seen.is_set():
            assert first.poll() is None, log.read_text()
            assert time.monotonic() - started < 60, "notify never sent the e-mail:\n" + log.read_text()
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert smtp_server.accepted == []

        async def deliveries() -> list[asyncpg.Record]:
            return await pool.fetch(
                "SELECT d.channel, d.state FROM notify.deliveries d JOIN notify.notifications n USING (notification_id)"
                " WHERE n.recipient_id = $1 AND n.kind = 'CLOSURE_CONFIRMATION' ORDER BY d.channel",
                person.person_id,
            )

        assert [(row["channel"], row["state"]) for row in await deliveries()] == [
            ("EMAIL", "PENDING"),
            ("IN_APP", "DELIVERED"),
        ]

        second = _notify_process(environ, log)
        await wait_until(lambda: smtp_server.accepted, timeout=60)
        await wait_until(
            lambda: _email_state(deliveries, "DELIVERED"),
            timeout=30,
        )
        # Time for a duplicate to show, were there one: another lease, several polls, the stream re-read.
        await asyncio.sleep(LEASE_SECONDS + 1)
        assert smtp_server.accepted == [[address]]
        assert await pool.fetchval(
            "SELECT count(*) FROM notify.notifications WHERE recipient_id = $1", person.person_id
        ) == 1
        assert await pool.fetchval(
            "SELECT count(*) FROM notify.inbox_items WHERE recipient_id = $1", person.person_id
        ) == 1
        assert await pool.fetchval(
            "SELECT count(*) FROM notify.processed_events WHERE event_id = $1", event_id
        ) == 1
        attempts = await pool.fetch(
            "SELECT a.outcome FROM notify.delivery_attempts a JOIN notify.deliveries d USING (delivery_id)"
            " JOIN notify.notifications n USING (notification_id)"
            " WHERE n.recipient_id = $1 AND d.channel = 'EMAIL' ORDER BY a.start_time",
            person.person_id,
        )
        # The killed attempt never ended; the one after the restart succeeded.
        assert [row["outcome"] for row in attempts] == [None, "SUCCEEDED"]
        # The stream entry was acknowledged: nothing pending for the group.
        pending = await client.xpending(stream, "notify")
        assert pending["pending"] == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(20)
        await client.delete(stream, f"{stream}:dead")
        await client.aclose()
        await pool.close()


async def _email_state(deliveries: Any, state: str) -> bool:
    return any(row["channel"] == "EMAIL" and row["state"] == state for row in await deliveries())
