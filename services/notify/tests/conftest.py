"""Fixtures of notify's tests: a real SMTP server (aiosmtpd), the app on a free port, stubs."""

from __future__ import annotations

import contextlib
import email
import email.policy
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from aiosmtpd.controller import Controller

from carnet.notify.v1 import notify_service_pb2_grpc
from carnet_kit.auth import Principal
from carnet_kit.config import HostPort
from carnet_kit.server import ServiceApp
from carnet_kit.testing import TokenFactory, free_port
from carnet_notify.app import build
from carnet_notify.settings import NotifySettings

MAIL_FROM = "ne-pas-repondre@carnet.test"


@dataclass
class ReceivedMail:
    """One message as the SMTP server saw it."""

    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage

    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())  # type: ignore[attr-defined]

    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None
        return str(body.get_content())  # type: ignore[attr-defined]


@dataclass
class SmtpSink:
    """An in-process SMTP server on a port of its own, collecting what it receives."""

    port: int
    mails: list[ReceivedMail] = field(default_factory=list)
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self._lock:
            self.mails.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self.mails)


@pytest.fixture
def start_smtp_sink() -> Iterator[Callable[[int], SmtpSink]]:
    """Start SMTP servers on chosen ports (e.g. one that was down a moment ago)."""
    started: list[SmtpSink] = []

    def start(port: int) -> SmtpSink:
        sink = SmtpSink(port=port)
        sink.start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def smtp_sink(start_smtp_sink: Callable[[int], SmtpSink]) -> SmtpSink:
    return start_smtp_sink(free_port())


@pytest.fixture
def base_settings(database_url: str, redis_url: str) -> NotifySettings:
    return NotifySettings(
        grpc_listen=HostPort("127.0.0.1", 0),
        database_url=database_url,
        redis_url=redis_url,
        profile="test",
        smtp_host="127.0.0.1",
        smtp_port=1,
        mail_from=MAIL_FROM,
        smtp_timeout_seconds=2.0,
        max_delivery_attempts=5,
        retry_initial_seconds=0.2,
        retry_max_seconds=1.0,
        delivery_poll_seconds=0.05,
        dossier_events_stream=f"carnet:test:{uuid.uuid4().hex}:events:dossier",
    )


AppFactory = Callable[..., contextlib.AbstractAsyncContextManager[ServiceApp]]


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def run_app(
    base_settings: NotifySettings, token_factory: TokenFactory, redis_client: redis.Redis
) -> Iterator[AppFactory]:
    """Start the notify app in-process with settings overrides; stop it (and drop its streams) after."""
    streams: list[str] = []

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[ServiceApp]:
        settings = replace(base_settings, grpc_listen=HostPort("127.0.0.1", free_port()), **overrides)
        streams.append(settings.dossier_events_stream)
        app = await build(settings, verifier=token_factory.verifier())
        await app.start()
        try:
            yield app
        finally:
            await app.stop(0)
            for stream in streams:
                await redis_client.delete(stream, f"{stream}:dead")

    yield start


@pytest.fixture
async def app(run_app: AppFactory, smtp_sink: SmtpSink) -> AsyncIterator[ServiceApp]:
    async with run_app(smtp_port=smtp_sink.port) as running:
        yield running


@pytest.fixture
async def stub(app: ServiceApp) -> AsyncIterator[notify_service_pb2_grpc.NotifyServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield notify_service_pb2_grpc.NotifyServiceStub(channel)


@pytest.fixture
def as_caller(token_factory: TokenFactory) -> Callable[[Principal], tuple[tuple[str, str], ...]]:
    def metadata(principal: Principal) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token_factory.mint(principal)}"),)

    return metadata

