"""Platform services get tokens of their own (role service) for work no caller's token covers."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet_kit.config import ConfigError
from carnet_kit.errors import Unavailable
from carnet_kit.service_tokens import ServiceTokens
from carnet_kit.status import parse_rpc_error

pytestmark = pytest.mark.asyncio


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "service-secrets"
    directory.mkdir()
    (directory / "notify").write_text(secrets.token_urlsafe(32) + "\n")
    (directory / "imaging").write_text(secrets.token_urlsafe(32))
    (directory / "..data").mkdir()  # what a mounted Kubernetes Secret also holds: skipped
    return directory


@pytest.fixture
async def channel(make_identity, notify_double, secrets_dir: Path) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to an identity knowing the secrets of ``secrets_dir``."""
    app = await make_identity(notify_double.port, CARNET_SERVICE_SECRETS_DIR=str(secrets_dir))
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as opened:
            yield opened
    finally:
        await app.stop(0)


async def test_a_service_with_its_secret_gets_a_service_token_naming_it(
    channel: grpc.aio.Channel, secrets_dir: Path
) -> None:
    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
    secret = (secrets_dir / "notify").read_text().strip()
    tokens = await stub.ExchangeClientCredentials(
        identity_service_pb2.ExchangeClientCredentialsRequest(client_id="notify", client_secret=secret)
    )
    assert tokens.actor.role == common_pb2.ROLE_SERVICE
    assert tokens.actor.subject == "notify"
    assert tokens.expires_in == 300
    assert tokens.refresh_token == ""

    # The token opens what services may do: reading any person, listing persons.
    listed = await stub.ListPersons(
        identity_service_pb2.ListPersonsRequest(page_size=1),
        metadata=(("authorization", f"Bearer {tokens.access_token}"),),
    )
    assert listed.total_size >= 0

    # Another service's secret, or a wrong one, is refused like any bad client secret.
    other = (secrets_dir / "imaging").read_text().strip()
    for name, attempt in (("notify", other), ("notify", secret + "x"), ("consent", secret)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ExchangeClientCredentials(
                identity_service_pb2.ExchangeClientCredentialsRequest(client_id=name, client_secret=attempt)
            )
        remote = parse_rpc_error(caught.value)
        assert (remote.code, remote.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CLIENT_CREDENTIALS_INVALID")


async def test_the_kit_fetches_the_token_once_and_renews_it_before_it_expires(
    channel: grpc.aio.Channel, secrets_dir: Path
) -> None:
    now = [dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)]
    tokens = ServiceTokens(
        channel, "notify", (secrets_dir / "notify").read_text().strip(), timeout=5, clock=lambda: now[0]
    )
    first = await tokens.token()
    assert await tokens.token() == first  # cached
    now[0] += dt.timedelta(seconds=241)  # less than a minute left of 300 s: renewed
    renewed = await tokens.token()
    assert renewed != first
    assert (await tokens.metadata()) == (("authorization", f"Bearer {renewed}"),)

    refused = ServiceTokens(channel, "notify", "x" * 40, timeout=5)
    with pytest.raises(Unavailable) as caught:
        await refused.token()
    assert caught.value.reason == "DEPENDENCY_UNAVAILABLE"


async def test_a_secret_filed_under_no_service_or_too_short_stops_the_start(
    make_identity, notify_double, secrets_dir: Path
) -> None:
    (secrets_dir / "notfy").write_text(secrets.token_urlsafe(32))
    with pytest.raises(ConfigError) as caught:
        await make_identity(notify_double.port, CARNET_SERVICE_SECRETS_DIR=str(secrets_dir))
    assert "notfy" in str(caught.value) and "CARNET_SERVICE_SECRETS_DIR" in str(caught.value)
    (secrets_dir / "notfy").unlink()
    (secrets_dir / "imaging").write_text("short")
    with pytest.raises(ConfigError) as caught:
        await make_identity(notify_double.port, CARNET_SERVICE_SECRETS_DIR=str(secrets_dir))
    assert "at least 32 characters" in str(caught.value)
