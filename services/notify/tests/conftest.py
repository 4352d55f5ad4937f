"""Fixtures of notify's tests: a real SMTP server (aiosmtpd), a real HTTP webhook receiver, the app, stubs.

The app keeps attachments in a filesystem object store in a temporary directory, sealed
with a fresh master key ring; identity is pointed at a port nobody serves unless a test
starts one.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from aiosmtpd.controller import Controller

from carnet.notify.v1 import notify_service_pb2_grpc
from carnet_identity.testing import running_identity
from carnet_kit.auth import Principal
from carnet_kit.config import HostPort
from carnet_kit.crypto import new_master_key_line
from carnet_kit.server import ServiceApp
from carnet_kit.testing import TokenFactory, free_port, write_service_secrets
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


@dataclass(frozen=True)
class ReceivedPost:
    """One request as the webhook receiver saw it (header names lower-cased)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """What the receiver answers to one request."""

    status: int = 202
    body: str = '{"status": "queued"}'
    headers: dict[str, str] = field(default_factory=dict)


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _ReceiverServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        post = ReceivedPost(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw or b"{}"))
        answer = self.server.receiver.record(post)
        payload = answer.body.encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver


class WebhookReceiver:
    """An SMS/push provider stand-in: an HTTP server on a loopback port of its own.

    It records every POST and answers from a per-path script (then 202 once the script is used up).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._posts: list[ReceivedPost] = []
        self._script: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self._server: _ReceiverServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer_next(self, path: str, status: int, body: str = "{}", headers: dict[str, str] | None = None) -> None:
        """Answer the next request to ``path`` (after those already scripted) with this status, body and headers."""
        with self._lock:
            self._script.setdefault(path, []).append(Answer(status, body, headers or {}))

    def record(self, post: ReceivedPost) -> Answer:
        with self._lock:
            self._posts.append(post)
            queued = self._script.get(post.path)
            if queued:
                return queued.pop(0)
        return Answer(body=json.dumps({"id": f"prov-{uuid.uuid4().hex[:8]}", "status": "queued"}))

    def received(self, path: str | None = None, to: str | None = None) -> list[ReceivedPost]:
        with self._lock:
            return [p for p in self._posts if (path is None or p.path == path) and (to is None or p.body.get("to") == to)]

    def start(self) -> None:
        self._server = _ReceiverServer(("127.0.0.1", self.port), _ReceiverHandler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


@pytest.fixture
def start_webhook_receiver() -> Iterator[Callable[[int], WebhookReceiver]]:
    """Start webhook receivers on chosen ports (e.g. one that was down a moment ago)."""
    started: list[WebhookReceiver] = []

    def start(port: int) -> WebhookReceiver:
        receiver = WebhookReceiver(port)
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def webhook_receiver(start_webhook_receiver: Callable[[int], WebhookReceiver]) -> WebhookReceiver:
    return start_webhook_receiver(free_port())


SMS_SECRET = "sms-provider-token"


@pytest.fixture
def master_key_file(tmp_path: Path) -> Path:
    """A fresh master key ring with one key, ``k1``."""
    path = tmp_path / "master-keys"
    path.write_text(new_master_key_line("k1") + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def service_secrets_dir(tmp_path: Path) -> Path:
    """Identity's directory of platform service secrets, holding notify's (``notify``)."""
    directory = tmp_path / "service-secrets"
    write_service_secrets(directory, "notify")
    return directory


@pytest.fixture
def blob_dir(tmp_path: Path) -> Path:
    """Where notify's filesystem object store keeps the sealed attachments."""
    return tmp_path / "notify-blobs"


@pytest.fixture
def base_settings(
    database_url: str, redis_url: str, master_key_file: Path, blob_dir: Path, service_secrets_dir: Path
) -> NotifySettings:
    return NotifySettings(
        grpc_listen=HostPort("127.0.0.1", 0),
        database_url=database_url,
        redis_url=redis_url,
        profile="test",
        identity_addr=HostPort("127.0.0.1", free_port()),
        smtp_host="127.0.0.1",
        smtp_port=1,
        mail_from=MAIL_FROM,
        blob_store="fs",
        blob_dir=blob_dir,
        master_key_file=master_key_file,
        service_secret_file=service_secrets_dir / "notify",
        # The daily prevention run would remind every person of the shared test database; its tests run it.
        prevention_job=False,
        smtp_timeout_seconds=2.0,
        max_delivery_attempts=5,
        retry_initial_seconds=0.2,
        retry_max_seconds=1.0,
        delivery_poll_seconds=0.05,
        dossier_events_stream=f"carnet:test:{uuid.uuid4().hex}:events:dossier",
        identity_events_stream=f"carnet:test:{uuid.uuid4().hex}:events:identity",
        consent_events_stream=f"carnet:test:{uuid.uuid4().hex}:events:consent",
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
        streams.extend((settings.dossier_events_stream, settings.identity_events_stream, settings.consent_events_stream))
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
async def webhook_app(
    run_app: AppFactory, smtp_sink: SmtpSink, webhook_receiver: WebhookReceiver
) -> AsyncIterator[ServiceApp]:
    """The app with SMS (with a bearer secret) and push providers on the test receiver."""
    async with run_app(
        smtp_port=smtp_sink.port,
        sms_webhook_url=webhook_receiver.url("/sms"),
        sms_webhook_secret=SMS_SECRET,
        push_webhook_url=webhook_receiver.url("/push"),
    ) as running:
        yield running


@pytest.fixture
async def webhook_stub(webhook_app: ServiceApp) -> AsyncIterator[notify_service_pb2_grpc.NotifyServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{webhook_app.port}") as channel:
        yield notify_service_pb2_grpc.NotifyServiceStub(channel)


@pytest.fixture
def as_caller(token_factory: TokenFactory) -> Callable[[Principal], tuple[tuple[str, str], ...]]:
    def metadata(principal: Principal) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token_factory.mint(principal)}"),)

    return metadata


@pytest.fixture
async def identity_app(
    database_url: str, redis_url: str, token_factory: TokenFactory, service_secrets_dir: Path
) -> AsyncIterator[ServiceApp]:
    """The real identity service (contact points, persons), knowing notify's secret."""
    async with running_identity(database_url, redis_url, token_factory, service_secrets_dir) as app:
        yield app
