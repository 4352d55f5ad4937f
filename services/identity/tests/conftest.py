"""Fixtures for identity's tests: the service running in-process against the real
PostgreSQL and Redis, a recording stand-in for notify's contract, and account factories.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_identity.app import build
from carnet_identity.domain.accounts import AccountState
from carnet_identity.domain.identifiers import InsType, ins_key, luhn_check_digit
from carnet_identity.domain.model import Organisation, Person, PersonName, Professional, SoftwareClient
from carnet_identity.hashing import SecretHasher
from carnet_identity.settings import SCHEMA, IdentitySettings
from carnet_identity.store import IdentityStore
from carnet_kit.auth import TokenVerifier
from carnet_kit.config import load
from carnet_kit.db import create_pool
from carnet_kit.peers import jwks_fetcher
from carnet_kit.server import ServiceApp
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import free_port

PASSWORD = "Tournesol-violet-42"


class RecordingNotifyService(notify_service_pb2_grpc.NotifyServiceServicer):
    """A stand-in for notify's CreateNotification contract that records what identity sends.

    Identity's tests use it instead of the notify service so they run without it;
    cross-service tests (repository root) exercise the real notify.
    """

    def __init__(self) -> None:
        self.requests: list[notify_service_pb2.CreateNotificationRequest] = []
        self.authorizations: list[str] = []
        self.port = 0

    async def CreateNotification(
        self, request: notify_service_pb2.CreateNotificationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> resources_pb2.Notification:
        self.requests.append(request)
        self.authorizations.append(dict(context.invocation_metadata() or ()).get("authorization", ""))
        notification = resources_pb2.Notification()
        notification.CopyFrom(request.notification)
        notification.notification_id = str(uuid.uuid4())
        return notification

    def code_for(self, challenge_id: str) -> str:
        """The one-time code sent for a login challenge."""
        for request in self.requests:
            if request.request_id == challenge_id:
                return request.notification.parameters["code"]
        raise AssertionError(f"no code was sent for challenge {challenge_id}")


@pytest.fixture
async def notify_double() -> AsyncIterator[RecordingNotifyService]:
    """The recording notify stand-in, serving on a free port."""
    server = grpc.aio.server()
    servicer = RecordingNotifyService()
    notify_service_pb2_grpc.add_NotifyServiceServicer_to_server(servicer, server)
    servicer.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer
    await server.stop(0)


def identity_settings(database_url: str, redis_url: str, notify_port: int, **extra: str) -> IdentitySettings:
    """Settings as the environment would give them."""
    environ = {
        "CARNET_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
        "CARNET_DATABASE_URL": database_url,
        "CARNET_REDIS_URL": redis_url,
        "CARNET_NOTIFY_ADDR": f"127.0.0.1:{notify_port}",
        "CARNET_PROFILE": "test",
        "CARNET_CALL_TIMEOUT_SECONDS": "2",
        "CARNET_GRACE_SECONDS": "0",
        **extra,
    }
    return load(IdentitySettings, environ)


@dataclasses.dataclass
class Identity:
    """A running identity service and ways to reach it."""

    app: ServiceApp
    stub: identity_service_pb2_grpc.IdentityServiceStub
    store: IdentityStore
    notify: RecordingNotifyService
    settings: IdentitySettings

    channel: grpc.aio.Channel

    def verifier(self) -> TokenVerifier:
        """A verifier as other services build it: JWKS fetched from identity over gRPC."""
        return TokenVerifier(jwks_fetcher(self.channel))


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    """An asyncpg pool on identity's schema, for tests that look at or age rows directly."""
    pool = await create_pool(database_url, SCHEMA)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: Any) -> IdentityStore:
    """A store on identity's schema (migrated by the service fixture or by the test)."""
    return IdentityStore(pool)


@pytest.fixture
async def identity(
    database_url: str, redis_url: str, notify_double: RecordingNotifyService, store: IdentityStore
) -> AsyncIterator[Identity]:
    """Identity started in-process on a free port, talking to the notify stand-in."""
    settings = identity_settings(database_url, redis_url, notify_double.port)
    app = await build(settings)
    await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    yield Identity(app, identity_service_pb2_grpc.IdentityServiceStub(channel), store, notify_double, settings, channel)
    await channel.close()
    await app.stop(0)


def random_nir(*, sex: str = "2", department: str | None = None) -> str:
    """A well-formed 13-character NIR nobody else in the test database has (practically)."""
    department = department or f"{random.randint(1, 95):02d}"
    return f"{sex}{random.randint(50, 99):02d}{random.randint(1, 12):02d}{department}{random.randint(1, 999):03d}{random.randint(1, 999):03d}"


class Accounts:
    """Creates fresh accounts straight in identity's tables (each test gets its own)."""

    def __init__(self, store: IdentityStore) -> None:
        self.store = store
        self.hasher = SecretHasher()

    async def holder(
        self,
        *,
        password: str | None = PASSWORD,
        state: AccountState = AccountState.ACTIVE,
        birth_date: dt.date = dt.date(1990, 6, 15),
        nir: str | None = None,
    ) -> Person:
        """A holder with an e-mail and, unless told otherwise, a password."""
        nir = nir or random_nir()
        now = dt.datetime.now(dt.UTC)
        person = Person(
            id=uuid.uuid4(),
            ins_type=InsType.NIR,
            nir=nir,
            ins_key=ins_key(nir),
            name=PersonName(birth_name="ESSAI", first_names=("Alix", "Marie")),
            sex="F",
            birth_date=birth_date,
            birth_date_precision="day",
            birth_place_code="75056",
            email=f"holder-{uuid.uuid4().hex[:12]}@test.carnet.test",
            mobile_phone="",
            postal_address=None,
            department_code="75",
            state=state,
            state_reason="",
            opposition_deadline=None,
            notice_channel="email",
            one_time_code_channel="email",
            password_hash=await self.hasher.hash(password) if password else None,
            activated_at=now,
            closed_at=None,
            scheduled_delete_at=None,
            activation_code_expires_at=None,
            created_at=now,
            updated_at=now,
        )
        assert await self.store.insert_person(person)
        return person

    async def organisation(self) -> Organisation:
        """An organisation outside FINESS."""
        now = dt.datetime.now(dt.UTC)
        organisation = Organisation(uuid.uuid4(), "", "Cabinet d'essai", "practice", None, "75", now, now)
        assert await self.store.insert_organisation(organisation)
        return organisation

    async def professional(
        self, *, profession_code: str = "10", organisations: tuple[uuid.UUID, ...] = ()
    ) -> Professional:
        """A professional with a valid random RPPS and the test password."""
        stem = f"1{random.randint(0, 10**9 - 1):09d}"
        now = dt.datetime.now(dt.UTC)
        professional = Professional(
            id=uuid.uuid4(),
            rpps=stem + luhn_check_digit(stem),
            name=PersonName(birth_name="PRATICIEN", first_names=("Noé",)),
            profession_code=profession_code,
            specialty_code="",
            organisation_ids=organisations,
            email=f"pro-{uuid.uuid4().hex[:12]}@test.carnet.test",
            mobile_phone="",
            one_time_code_channel="email",
            disabled=False,
            password_hash=await self.hasher.hash(PASSWORD),
            created_at=now,
            updated_at=now,
        )
        assert await self.store.insert_professional(professional)
        return professional

    async def client(
        self, *, secret: str, scopes: tuple[str, ...], organisation_id: uuid.UUID | None = None
    ) -> SoftwareClient:
        """A software client with the given secret and scopes."""
        now = dt.datetime.now(dt.UTC)
        client = SoftwareClient(
            client_id=f"test-{uuid.uuid4().hex[:10]}",
            display_name="Client d'essai",
            kind="practice_software",
            organisation_id=organisation_id,
            scopes=scopes,
            ae_titles=(),
            disabled=False,
            secret_hash=await self.hasher.hash(secret),
            secret_updated_at=now,
            created_at=now,
            updated_at=now,
        )
        assert await self.store.insert_client(client)
        return client


@pytest.fixture
def accounts(identity: Identity) -> Accounts:
    """Account factory (needs the service, which migrates the schema)."""
    return Accounts(identity.store)


async def login(identity: Identity, login_name: str, password: str = PASSWORD) -> identity_service_pb2.TokenSet:
    """Both login steps, reading the code from the notify stand-in."""
    started = await identity.stub.StartLogin(
        identity_service_pb2.StartLoginRequest(login=login_name, password=password)
    )
    code = identity.notify.code_for(started.challenge_id)
    return await identity.stub.CompleteLogin(
        identity_service_pb2.CompleteLoginRequest(challenge_id=started.challenge_id, code=code)
    )


# With --import-mode=importlib test modules cannot import each other: helpers are fixtures.


@pytest.fixture
def do_login() -> Any:
    """The two-step login helper."""
    return login


async def _rpc_error(awaitable: Any) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return parse_rpc_error(caught.value)


@pytest.fixture
def rpc_error() -> Any:
    """``await rpc_error(call)``: the call must fail; its status code, reason and metadata."""
    return _rpc_error


@pytest.fixture
def password() -> str:
    """The password of accounts made by the ``accounts`` fixture."""
    return PASSWORD


@pytest.fixture
def make_identity(database_url: str, redis_url: str) -> Any:
    """Builds (not starts) another identity with overridden settings, e.g. another notify address."""

    async def make(notify_port: int, *, verifier: TokenVerifier | None = None, **extra: str) -> ServiceApp:
        return await build(identity_settings(database_url, redis_url, notify_port, **extra), verifier=verifier)

    return make


@pytest.fixture
async def issue_token(identity: Identity) -> Any:
    """``await issue_token(Principal(...))``: an access token signed by identity's own active key."""
    from carnet_identity.keys import KeyRing
    from carnet_identity.tokens import TokenIssuer

    keys = KeyRing(identity.store, default_overlap=dt.timedelta(hours=1))
    await keys.reload()
    issuer = TokenIssuer(keys)

    async def issue(principal: Any, ttl: int = 300) -> str:
        return (await issuer.mint(principal, ttl)).token

    return issue
