"""Test support shared by every service's tests (a pytest plugin: ``pytest_plugins``).

Tests use the real PostgreSQL and Redis: ``CARNET_TEST_DATABASE_URL`` (default: the
machine's server on 127.0.0.1:5432) and ``CARNET_TEST_REDIS_URL`` (default: database
15 of the machine's Redis). Each test session gets a database of its own, dropped at
the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from google.protobuf import json_format
from joserfc import jwt
from joserfc.jwk import OKPKey

from carnet_kit.auth import ALGORITHMS, Principal, TokenVerifier, claims_for
from carnet_kit.telemetry import RingSpanExporter, setup_telemetry, span_ring

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


async def create_database(admin_url: str, name: str) -> str:
    """Create an empty database; return its URL."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    """Drop a database, closing other sessions on it."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this test session."""
    admin = os.environ.get("CARNET_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    name = f"carnet_test_{uuid.uuid4().hex[:10]}"
    url = asyncio.run(create_database(admin, name))
    yield url
    asyncio.run(drop_database(admin, name))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis database tests may use (keys are namespaced per test where it matters)."""
    return os.environ.get("CARNET_TEST_REDIS_URL", DEFAULT_REDIS_URL)


@pytest.fixture(scope="session")
def spans() -> RingSpanExporter:
    """The in-memory span ring of this test process (tests filter by trace id)."""
    setup_telemetry("carnet-tests")
    ring = span_ring()
    if ring is None:
        pytest.skip("OTEL_EXPORTER_OTLP_ENDPOINT is set: spans go to a collector")
    return ring


class TokenFactory:
    """Mints access tokens the way identity does, with a key of its own, for unit tests."""

    def __init__(self) -> None:
        self.kid = f"test-{uuid.uuid4().hex[:8]}"
        self.key = OKPKey.generate_key("Ed25519", parameters={"kid": self.kid, "use": "sig", "alg": ALGORITHMS[0]})

    def jwks(self) -> dict[str, Any]:
        """The public key set."""
        return {"keys": [self.key.as_dict(private=False)]}

    def verifier(self) -> TokenVerifier:
        """A verifier that trusts this factory's key."""

        async def fetch() -> dict[str, Any]:
            return self.jwks()

        return TokenVerifier(fetch)

    def mint(self, principal: Principal, ttl: int = 300) -> str:
        """An access token for ``principal``."""
        now = int(time.time())
        claims = claims_for(principal, token_id=uuid.uuid4().hex, issued_at=now, expires_at=now + ttl)
        return jwt.encode({"alg": ALGORITHMS[0], "kid": self.kid}, claims, self.key, algorithms=ALGORITHMS)


def write_service_secrets(directory: Path, *names: str) -> dict[str, str]:
    """Fresh platform service secrets, one file per service in ``directory`` (as identity reads them)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = {}
    for name in names:
        written[name] = secrets.token_urlsafe(32)
        path = directory / name
        path.write_text(written[name] + "\n", encoding="utf-8")
        path.chmod(0o600)
    return written


@pytest.fixture
def token_factory() -> TokenFactory:
    """A fresh token factory."""
    return TokenFactory()


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Await ``predicate()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def aiter_list(iterator: AsyncIterator[Any]) -> list[Any]:
    """Collect an async iterator."""
    return [item async for item in iterator]


async def publish_event(client: Any, stream: str, message: Any, *, event_id: str | None = None) -> str:
    """Put an event on a stream exactly as a service's outbox relay does; its event id."""
    event_id = event_id or str(uuid.uuid4())
    if "event_id" in message.DESCRIPTOR.fields_by_name:
        message.event_id = event_id
    await client.xadd(
        stream,
        {
            "event_id": event_id,
            "type": message.DESCRIPTOR.full_name,
            "payload": json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True)),
            "traceparent": "",
        },
    )
    return event_id

