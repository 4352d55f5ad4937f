"""The lifecycle of a space walked end to end on the running platform (issue 3).

The insurer's registry imports a CSV with the CLI; the activation notice reaches the
local mailbox through the real notify; the holder activates with the code, INS and
birth date, sets a password and logs in with the one-time code from the mailbox;
another person objects through consent and identity follows consent's event; the
deadline job creates a third space by default; the holder closes the space and it is
reopened.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import httpx

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import consent_service_pb2, consent_service_pb2_grpc
from carnet.consent.v1 import resources_pb2 as consent_resources_pb2
from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, resources_pb2
from carnet_identity.domain.identifiers import ins_key
from carnet_identity.domain.model import SoftwareClient
from carnet_identity.hashing import SecretHasher
from carnet_identity.jobs import LifecycleJobs
from carnet_identity.keys import KeyRing
from carnet_identity.lifecycle import Lifecycle
from carnet_identity.sessions import RevocationList
from carnet_identity.settings import SCHEMA
from carnet_identity.store import IdentityStore
from carnet_identity.store_persons import PersonStore
from carnet_identity.throttle import LoginThrottle
from carnet_identity.tokens import TokenIssuer
from carnet_kit.auth import Principal
from carnet_kit.db import create_pool
from carnet_kit.redis_client import create_redis
from tests.conftest import Platform
from tests.people import login

REGISTRY_SECRET = "registre-walk-" + uuid.uuid4().hex
PASSWORD = "Sentier-lavande-4821"
CODE = re.compile(r"\b([ACDEFGHJKMNPQRTUVWXY34679]{12})\b")


def _nir() -> str:
    return f"2{random.randint(40, 99):02d}{random.randint(1, 12):02d}33{random.randint(1, 999):03d}{random.randint(1, 999):03d}"


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _setup(database_url: str) -> tuple[str, str]:
    """An insurer-registry client (scope persons.import) and an operator token signed by identity's key."""
    pool = await create_pool(database_url, SCHEMA)
    try:
        store = IdentityStore(pool)
        now = dt.datetime.now(dt.UTC)
        client_id = f"registre-{uuid.uuid4().hex[:8]}"
        await store.insert_client(
            SoftwareClient(
                client_id=client_id,
                display_name="Registre de l'assurance maladie",
                kind="insurer_registry",
                organisation_id=None,
                scopes=("persons.import",),
                ae_titles=(),
                disabled=False,
                secret_hash=SecretHasher().hash_now(REGISTRY_SECRET),
                secret_updated_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        keys = KeyRing(store, default_overlap=dt.timedelta(hours=1))
        await keys.reload()
        operator = await TokenIssuer(keys).mint(Principal(subject="agent-walk", role="operator"), 600)
        return client_id, operator.token
    finally:
        await pool.close()


async def _run_deadline_job(database_url: str, redis_url: str, person_id: str) -> None:
    """Put the person's deadline in the past and run the lifecycle job (as every replica does each minute)."""
    pool = await create_pool(database_url, SCHEMA)
    client = create_redis(redis_url)
    try:
        await pool.execute(
            "UPDATE persons SET opposition_deadline = now() - interval '1 minute' WHERE id = $1", uuid.UUID(person_id)
        )
        people = PersonStore(pool)
        lifecycle = Lifecycle(
            people,
            IdentityStore(pool),
            SecretHasher(),
            LoginThrottle(client, max_failures=5, window_seconds=900),
            RevocationList(client),
        )
        await LifecycleJobs(people, lifecycle).run_once()
    finally:
        await client.aclose()
        await pool.close()


def _mailbox_code(client: httpx.Client, recipient: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in client.get("/dev/mailbox", headers={"accept": "application/json"}).json()["messages"]:
            match = CODE.search(message["text"])
            if recipient in message["to"] and match:
                return match.group(1)
        time.sleep(0.3)
    raise AssertionError(f"no activation notice reached {recipient}")


def test_lifecycle_walk_from_import_to_reopening(platform: Platform, fresh_database: str, tmp_path: Path) -> None:
    client_id, operator = asyncio.run(_setup(fresh_database))
    holder_nir, opposer_nir, silent_nir = _nir(), _nir(), _nir()
    holder_email = f"walk-{holder_nir}@test.carnet.test"
    csv_file = tmp_path / "registre.csv"
    csv_file.write_text(
        "ins,birth_name,first_names,sex,birth_date,email,department_code\n"
        f"{holder_nir}{ins_key(holder_nir)},MARCHE,Lou,F,1991-04-02,{holder_email},33\n"
        f"{opposer_nir}{ins_key(opposer_nir)},REFUS,Zoé,F,1975-11-30,refus-{opposer_nir}@test.carnet.test,33\n"
        f"{silent_nir}{ins_key(silent_nir)},SILENCE,Éva,F,1960-01-15,,33\n"
        f"{_nir()}99,MAUVAISE,Clé,F,1960-01-15,,33\n"
    )
    env = {
        **os.environ,
        "CARNET_IDENTITY_ADDR": platform.grpc["identity"],
        "CARNET_IMPORT_CLIENT_ID": client_id,
        "CARNET_IMPORT_CLIENT_SECRET": REGISTRY_SECRET,
    }
    env.pop("CARNET_TOKEN", None)
    imported = subprocess.run(
        [sys.executable, "-m", "carnet_identity", "import", str(csv_file)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert imported.returncode == 1, imported.stderr
    assert "created    3" in imported.stdout and "rejected   1" in imported.stdout
    assert "line 5 [ins] INS_" in imported.stdout

    with httpx.Client(base_url=platform.base_url, timeout=30) as http:
        code = _mailbox_code(http, holder_email)

        async def activate_and_set_password() -> resources_pb2.Person:
            async with grpc.aio.insecure_channel(platform.grpc["identity"]) as channel:
                identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
                activated = await identity.ActivateAccount(
                    identity_service_pb2.ActivateAccountRequest(
                        activation_code=code,
                        ins=holder_nir + ins_key(holder_nir),
                        birth_date=common_pb2.Date(year=1991, month=4, day=2),
                    ),
                    timeout=10,
                )
                await identity.SetPassword(
                    identity_service_pb2.SetPasswordRequest(
                        subject=activated.person.person_id,
                        new_password=PASSWORD,
                        password_setup_token=activated.password_setup_token,
                    ),
                    timeout=10,
                )
                return activated.person

        holder = asyncio.run(activate_and_set_password())
        assert holder.state == resources_pb2.ACCOUNT_STATE_ACTIVE
        tokens = login(http, holder_email, PASSWORD)
        holder_token = tokens["access_token"]

    async def oppose_deadline_close_reopen() -> None:
        async with (
            grpc.aio.insecure_channel(platform.grpc["identity"]) as identity_channel,
            grpc.aio.insecure_channel(platform.grpc["consent"]) as consent_channel,
        ):
            identity = identity_service_pb2_grpc.IdentityServiceStub(identity_channel)
            consent = consent_service_pb2_grpc.ConsentServiceStub(consent_channel)

            async def person(nir: str) -> resources_pb2.Person:
                return await identity.LookupPerson(
                    identity_service_pb2.LookupPersonRequest(ins=nir), metadata=_bearer(operator), timeout=10
                )

            opposer = await person(opposer_nir)
            await consent.CreateOpposition(
                consent_service_pb2.CreateOppositionRequest(
                    opposition=consent_resources_pb2.Opposition(
                        holder_id=opposer.person_id,
                        kind=consent_resources_pb2.OPPOSITION_KIND_CREATION,
                        channel=consent_resources_pb2.OPPOSITION_CHANNEL_AGENT,
                    )
                ),
                metadata=_bearer(operator),
                timeout=10,
            )
            deadline = time.monotonic() + 30
            while (await person(opposer_nir)).state != resources_pb2.ACCOUNT_STATE_OPPOSED:
                assert time.monotonic() < deadline, "identity did not follow consent's opposition"
                await asyncio.sleep(0.3)

            silent = await person(silent_nir)
            assert silent.notice_channel == common_pb2.DELIVERY_CHANNEL_LETTER
            await _run_deadline_job(fresh_database, platform.env["CARNET_REDIS_URL"], silent.person_id)
            assert (await person(silent_nir)).state == resources_pb2.ACCOUNT_STATE_CREATED_BY_DEFAULT

            closed = await identity.CloseAccount(
                identity_service_pb2.CloseAccountRequest(person_id=holder.person_id, reason="je ferme"),
                metadata=_bearer(holder_token),
                timeout=10,
            )
            assert closed.state == resources_pb2.ACCOUNT_STATE_CLOSED
            assert closed.scheduled_delete_time.ToDatetime(dt.UTC).year == closed.close_time.ToDatetime(dt.UTC).year + 10
            reopened = await identity.ReopenAccount(
                identity_service_pb2.ReopenAccountRequest(person_id=holder.person_id),
                metadata=_bearer(operator),
                timeout=10,
            )
            assert reopened.state == resources_pb2.ACCOUNT_STATE_ACTIVE

    asyncio.run(oppose_deadline_close_reopen())
    with httpx.Client(base_url=platform.base_url, timeout=30) as http:
        assert login(http, holder_email, PASSWORD)["access_token"]
