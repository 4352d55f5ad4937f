"""The lifecycle through the service: activation, password, closure, suspension, reopening, deletion,
the scheduled job and oppositions coming from consent."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import uuid

import grpc
import pytest
from google.protobuf import json_format

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import events_pb2 as consent_events_pb2
from carnet.consent.v1 import resources_pb2 as consent_resources_pb2
from carnet.identity.v1 import identity_service_pb2, resources_pb2
from carnet_identity.domain.accounts import AccountState, Action
from carnet_identity.domain.identifiers import ins_key
from carnet_identity.domain.model import Representation
from carnet_identity.hashing import SecretHasher
from carnet_identity.jobs import LifecycleJobs, OppositionFollower
from carnet_identity.lifecycle import Lifecycle
from carnet_identity.sessions import RevocationList
from carnet_identity.store_persons import ACCOUNT_STATE_CHANGED, PersonStore
from carnet_identity.throttle import LoginThrottle
from carnet_kit.auth import Principal
from carnet_kit.outbox import Event
from carnet_kit.redis_client import create_redis
from carnet_kit.testing import wait_until

OPERATOR = Principal(subject="agent-7", role="operator")
BIRTH = common_pb2.Date(year=1988, month=3, day=9)
NEW_PASSWORD = "Horizon-marin-2931"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def fresh_nir() -> str:
    return f"1{random.randint(30, 99):02d}{random.randint(1, 12):02d}69{random.randint(1, 999):03d}{random.randint(1, 999):03d}"


@pytest.fixture
async def people(identity, redis_url):
    """A store, the lifecycle use cases and the jobs over the test identity's database."""
    store = PersonStore.sharing(identity.store)
    client = create_redis(redis_url)
    lifecycle = Lifecycle(
        store,
        identity.store,
        SecretHasher(),
        LoginThrottle(client, max_failures=5, window_seconds=900),
        RevocationList(client),
    )
    yield store, lifecycle, LifecycleJobs(store, lifecycle)
    await client.aclose()


async def enrol(identity, issue_token, *, email: bool = True) -> tuple[resources_pb2.Person, str]:
    """A notified person and the activation code its notice carried."""
    token = await issue_token(OPERATOR)
    nir = fresh_nir()
    message = resources_pb2.Person(
        ins=nir + ins_key(nir),
        name=common_pb2.PersonName(birth_name="CYCLE", first_names=["Noa"]),
        sex=common_pb2.SEX_MALE,
        birth_date=BIRTH,
        email=f"cycle-{nir}@test.carnet.test" if email else "",
        department_code="69",
    )
    person = await identity.stub.CreatePerson(
        identity_service_pb2.CreatePersonRequest(person=message), metadata=bearer(token)
    )
    return person, await code_sent(identity, person.person_id)


async def code_sent(identity, person_id: str, index: int = 0) -> str:
    def sent():
        found = [r for r in identity.notify.requests if r.notification.recipient_id == person_id]
        return found if len(found) > index else None

    requests = await wait_until(sent)
    return str(requests[index].notification.parameters["activation_code"])


def activate(identity, person: resources_pb2.Person, code: str, *, ins: str | None = None, birth=BIRTH):
    return identity.stub.ActivateAccount(
        identity_service_pb2.ActivateAccountRequest(activation_code=code, ins=ins or person.ins, birth_date=birth)
    )


async def state_events(store: PersonStore, person_id: str) -> list[tuple[str, str]]:
    rows = await store._db.fetch(
        "SELECT payload FROM outbox WHERE event_type = $1 AND payload->>'person_id' = $2 ORDER BY id",
        ACCOUNT_STATE_CHANGED,
        person_id,
    )
    return [(row["payload"].get("previous_state", ""), row["payload"]["state"]) for row in rows]


# ---- activation and password


async def test_activation_then_password_then_login(identity, issue_token, do_login, people) -> None:
    person, code = await enrol(identity, issue_token)
    answer = await activate(identity, person, code.lower()[:4] + "-" + code[4:])
    assert answer.person.state == resources_pb2.ACCOUNT_STATE_ACTIVE
    assert answer.person.HasField("activate_time")
    assert not answer.person.HasField("activation_code_expire_time")
    await identity.stub.SetPassword(
        identity_service_pb2.SetPasswordRequest(
            subject=person.person_id, new_password=NEW_PASSWORD, password_setup_token=answer.password_setup_token
        )
    )
    tokens = await do_login(identity, person.email, NEW_PASSWORD)
    assert tokens.actor.subject == person.person_id
    store, _lifecycle, _jobs = people
    assert await state_events(store, person.person_id) == [("ACCOUNT_STATE_NOTIFIED", "ACCOUNT_STATE_ACTIVE")]


async def test_an_activation_code_is_single_use(identity, issue_token, rpc_error) -> None:
    person, code = await enrol(identity, issue_token)
    await activate(identity, person, code)
    error = await rpc_error(activate(identity, person, code))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ACTIVATION_CODE_INVALID")


async def test_wrong_code_ins_or_birth_date_get_the_same_answer(identity, issue_token, rpc_error) -> None:
    person, code = await enrol(identity, issue_token)
    other = fresh_nir()
    wrong_code = "ACDEFGHJKMNP" if code != "ACDEFGHJKMNP" else "PNMKJHGFEDCA"
    answers = [
        await rpc_error(activate(identity, person, wrong_code)),
        await rpc_error(activate(identity, person, code, ins=other + ins_key(other))),
        await rpc_error(activate(identity, person, code, birth=common_pb2.Date(year=1988, month=3, day=10))),
    ]
    assert {(a.code, a.reason, a.message) for a in answers} == {
        (grpc.StatusCode.UNAUTHENTICATED, "ACTIVATION_CODE_INVALID", answers[0].message)
    }


async def test_five_wrong_tries_lock_the_code(identity, issue_token, rpc_error) -> None:
    person, code = await enrol(identity, issue_token)
    reasons = []
    for _ in range(5):
        reasons.append((await rpc_error(activate(identity, person, "ACDEFGHJKMNX"))).reason)
    assert reasons == ["ACTIVATION_CODE_INVALID"] * 4 + ["ACTIVATION_CODE_LOCKED"]
    locked = await rpc_error(activate(identity, person, code))
    assert (locked.code, locked.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACTIVATION_CODE_LOCKED")


async def test_an_expired_code_is_refused(identity, issue_token, rpc_error, people) -> None:
    person, code = await enrol(identity, issue_token)
    store, _lifecycle, _jobs = people
    await store._db.execute(
        "UPDATE activation_codes SET expires_at = now() - interval '1 second' WHERE person_id = $1",
        uuid.UUID(person.person_id),
    )
    error = await rpc_error(activate(identity, person, code))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ACTIVATION_CODE_EXPIRED")


async def test_reissuing_a_code_invalidates_the_old_one_and_sends_the_new(identity, issue_token, rpc_error) -> None:
    person, old = await enrol(identity, issue_token)
    token = await issue_token(OPERATOR)
    reissued = await identity.stub.ReissueActivationCode(
        identity_service_pb2.ReissueActivationCodeRequest(person_id=person.person_id), metadata=bearer(token)
    )
    assert reissued.channel == common_pb2.DELIVERY_CHANNEL_EMAIL
    assert reissued.masked_destination.startswith("c***@")
    new = await code_sent(identity, person.person_id, index=1)
    assert new != old
    error = await rpc_error(activate(identity, person, old))
    assert error.reason == "ACTIVATION_CODE_INVALID"
    assert (await activate(identity, person, new)).person.state == resources_pb2.ACCOUNT_STATE_ACTIVE


async def test_short_or_common_passwords_are_refused_and_the_setup_token_is_single_use(
    identity, issue_token, rpc_error
) -> None:
    person, code = await enrol(identity, issue_token)
    answer = await activate(identity, person, code)
    for weak in ("court", "Motdepasse2024!"):
        error = await rpc_error(
            identity.stub.SetPassword(
                identity_service_pb2.SetPasswordRequest(
                    subject=person.person_id, new_password=weak, password_setup_token=answer.password_setup_token
                )
            )
        )
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PASSWORD_TOO_WEAK")
    # A refused password does not use the token up.
    request = identity_service_pb2.SetPasswordRequest(
        subject=person.person_id, new_password=NEW_PASSWORD, password_setup_token=answer.password_setup_token
    )
    await identity.stub.SetPassword(request)
    reused = await rpc_error(identity.stub.SetPassword(request))
    assert (reused.code, reused.reason) == (grpc.StatusCode.UNAUTHENTICATED, "PASSWORD_SETUP_TOKEN_INVALID")
    changed = await identity.stub.SetPassword(
        identity_service_pb2.SetPasswordRequest(
            subject=person.person_id, new_password="Autre-phrase-secrete-77", current_password=NEW_PASSWORD
        )
    )
    assert changed.HasField("update_time")


# ---- transitions over the API


async def test_close_reopen_suspend_and_deletion_request(identity, issue_token, people, rpc_error) -> None:
    person, code = await enrol(identity, issue_token)
    await activate(identity, person, code)
    holder = await issue_token(Principal(subject=person.person_id, role="holder"))
    operator = await issue_token(OPERATOR)
    closed = await identity.stub.CloseAccount(
        identity_service_pb2.CloseAccountRequest(person_id=person.person_id, reason="je n'en veux plus"),
        metadata=bearer(holder),
    )
    assert closed.state == resources_pb2.ACCOUNT_STATE_CLOSED
    delete_at = closed.scheduled_delete_time.ToDatetime(dt.UTC)
    assert delete_at.year - closed.close_time.ToDatetime(dt.UTC).year == 10
    reopened = await identity.stub.ReopenAccount(
        identity_service_pb2.ReopenAccountRequest(person_id=person.person_id), metadata=bearer(operator)
    )
    assert reopened.state == resources_pb2.ACCOUNT_STATE_ACTIVE
    assert not reopened.HasField("scheduled_delete_time")
    no_reason = await rpc_error(
        identity.stub.SuspendAccount(
            identity_service_pb2.SuspendAccountRequest(person_id=person.person_id), metadata=bearer(operator)
        )
    )
    assert no_reason.metadata["field"] == "reason"
    by_holder = await rpc_error(
        identity.stub.SuspendAccount(
            identity_service_pb2.SuspendAccountRequest(person_id=person.person_id, reason="x"), metadata=bearer(holder)
        )
    )
    assert by_holder.code == grpc.StatusCode.PERMISSION_DENIED
    suspended = await identity.stub.SuspendAccount(
        identity_service_pb2.SuspendAccountRequest(person_id=person.person_id, reason="usurpation"),
        metadata=bearer(operator),
    )
    assert (suspended.state, suspended.state_reason) == (resources_pb2.ACCOUNT_STATE_SUSPENDED, "usurpation")
    deletion = await identity.stub.RequestAccountDeletion(
        identity_service_pb2.RequestAccountDeletionRequest(person_id=person.person_id, reason="effacement"),
        metadata=bearer(operator),
    )
    assert deletion.state == resources_pb2.ACCOUNT_STATE_CLOSED
    remaining = deletion.scheduled_delete_time.ToDatetime(dt.UTC) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=1) < remaining <= dt.timedelta(days=90)
    store, _lifecycle, _jobs = people
    assert [after for _before, after in await state_events(store, person.person_id)] == [
        "ACCOUNT_STATE_ACTIVE",
        "ACCOUNT_STATE_CLOSED",
        "ACCOUNT_STATE_ACTIVE",
        "ACCOUNT_STATE_SUSPENDED",
        "ACCOUNT_STATE_CLOSED",
    ]


async def test_closing_or_suspending_a_space_ends_its_live_sessions_at_once(
    identity, issue_token, do_login, rpc_error
) -> None:
    operator = await issue_token(OPERATOR)
    for close in (True, False):
        person, code = await enrol(identity, issue_token)
        answer = await activate(identity, person, code)
        await identity.stub.SetPassword(
            identity_service_pb2.SetPasswordRequest(
                subject=person.person_id, new_password=NEW_PASSWORD, password_setup_token=answer.password_setup_token
            )
        )
        tokens = await do_login(identity, person.email, NEW_PASSWORD)
        # The access token works ...
        me = await identity.stub.GetPerson(
            identity_service_pb2.GetPersonRequest(person_id=person.person_id), metadata=bearer(tokens.access_token)
        )
        assert me.person_id == person.person_id
        if close:
            await identity.stub.CloseAccount(
                identity_service_pb2.CloseAccountRequest(person_id=person.person_id, reason="départ"),
                metadata=bearer(tokens.access_token),
            )
        else:
            await identity.stub.SuspendAccount(
                identity_service_pb2.SuspendAccountRequest(person_id=person.person_id, reason="usurpation"),
                metadata=bearer(operator),
            )
        # ... and stops working as soon as the space is closed or suspended, long before it expires.
        after = await rpc_error(
            identity.stub.GetPerson(
                identity_service_pb2.GetPersonRequest(person_id=person.person_id), metadata=bearer(tokens.access_token)
            )
        )
        assert (after.code, after.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
        refreshed = await rpc_error(
            identity.stub.RefreshTokens(identity_service_pb2.RefreshTokensRequest(refresh_token=tokens.refresh_token))
        )
        assert refreshed.code == grpc.StatusCode.UNAUTHENTICATED
        # The operator's own token is untouched.
        assert (
            await identity.stub.GetPerson(
                identity_service_pb2.GetPersonRequest(person_id=person.person_id), metadata=bearer(operator)
            )
        ).person_id == person.person_id


async def test_a_forbidden_transition_answers_failed_precondition_with_the_current_state(
    identity, issue_token, rpc_error
) -> None:
    person, _code = await enrol(identity, issue_token)
    operator = await issue_token(OPERATOR)
    calls = {
        "close": identity.stub.CloseAccount(
            identity_service_pb2.CloseAccountRequest(person_id=person.person_id), metadata=bearer(operator)
        ),
        "reopen": identity.stub.ReopenAccount(
            identity_service_pb2.ReopenAccountRequest(person_id=person.person_id), metadata=bearer(operator)
        ),
        "request_deletion": identity.stub.RequestAccountDeletion(
            identity_service_pb2.RequestAccountDeletionRequest(person_id=person.person_id), metadata=bearer(operator)
        ),
    }
    for requested, call in calls.items():
        error = await rpc_error(call)
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_STATE_FORBIDS_TRANSITION")
        assert (error.metadata["current_state"], error.metadata["requested"]) == ("notified", requested)


async def test_other_holders_may_not_close_a_space(identity, issue_token, rpc_error) -> None:
    person, _code = await enrol(identity, issue_token)
    stranger = await issue_token(Principal(subject=str(uuid.uuid4()), role="holder"))
    error = await rpc_error(
        identity.stub.CloseAccount(
            identity_service_pb2.CloseAccountRequest(person_id=person.person_id), metadata=bearer(stranger)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")


# ---- scheduled transitions


async def test_the_job_creates_by_default_closes_suspended_and_deletes_expired_archives(
    identity, issue_token, people
) -> None:
    store, lifecycle, jobs = people
    late, _ = await enrol(identity, issue_token)
    in_time, _ = await enrol(identity, issue_token)
    suspended, _ = await enrol(identity, issue_token)
    archived, _ = await enrol(identity, issue_token)
    ids = {name: uuid.UUID(p.person_id) for name, p in
           (("late", late), ("in_time", in_time), ("suspended", suspended), ("archived", archived))}
    now = dt.datetime.now(dt.UTC)
    await store._db.execute(
        "UPDATE persons SET opposition_deadline = $2 WHERE id = $1", ids["late"], now - dt.timedelta(minutes=1)
    )
    operator = OPERATOR.to_actor()
    await lifecycle.apply(ids["suspended"], Action.SUSPEND, operator, reason="fraude")
    await store._db.execute(
        "UPDATE persons SET closed_at = $2 WHERE id = $1", ids["suspended"], now - dt.timedelta(weeks=6, minutes=1)
    )
    await lifecycle.apply(ids["archived"], Action.CREATE_BY_DEFAULT, operator)
    await lifecycle.apply(ids["archived"], Action.CLOSE, operator)
    await store._db.execute(
        "UPDATE persons SET scheduled_delete_at = $2 WHERE id = $1", ids["archived"], now - dt.timedelta(seconds=1)
    )
    await jobs.run_once(now)
    states = {name: (await store.person(person_id)).state for name, person_id in ids.items()}  # type: ignore[union-attr]
    assert states == {
        "late": AccountState.CREATED_BY_DEFAULT,
        "in_time": AccountState.NOTIFIED,
        "suspended": AccountState.CLOSED,
        "archived": AccountState.DELETED,
    }
    tombstone = await store.person(ids["archived"])
    assert tombstone is not None and (tombstone.email, tombstone.password_hash) == ("", None)
    assert await state_events(store, str(ids["late"])) == [("ACCOUNT_STATE_NOTIFIED", "ACCOUNT_STATE_CREATED_BY_DEFAULT")]
    # Nothing is due twice.
    assert await jobs.run_once(now) == {"created_by_default": 0, "closed": 0, "deleted": 0}


# ---- oppositions from consent


def opposition_event(holder_id: str, state: int, *, event_id: str | None = None) -> Event:
    event_id = event_id or str(uuid.uuid4())
    message = consent_events_pb2.OppositionChangedEvent(
        event_id=event_id,
        opposition_id=str(uuid.uuid4()),
        holder_id=holder_id,
        kind=consent_resources_pb2.OPPOSITION_KIND_CREATION,
        state=state,
        receipt_number="OPP-2026-000123",
    )
    return Event(
        stream="carnet:events:consent",
        message_id="0-1",
        event_id=event_id,
        event_type="carnet.consent.v1.OppositionChangedEvent",
        payload=json_format.MessageToDict(message, preserving_proto_field_name=True),
        traceparent="",
    )


async def test_an_opposition_to_creation_from_consent_opposes_the_space_once(identity, issue_token, people, rpc_error) -> None:
    store, lifecycle, _jobs = people
    person, code = await enrol(identity, issue_token)
    follower = OppositionFollower(store, lifecycle)
    event = opposition_event(person.person_id, consent_resources_pb2.OPPOSITION_STATE_ACTIVE)
    await follower.handle(event)
    await follower.handle(event)
    opposed = await store.person(uuid.UUID(person.person_id))
    assert opposed is not None and opposed.state is AccountState.OPPOSED
    assert opposed.state_reason == "opposition receipt OPP-2026-000123"
    assert len(await state_events(store, person.person_id)) == 1
    refused = await rpc_error(activate(identity, person, code))
    assert (refused.reason, refused.metadata["current_state"]) == ("ACCOUNT_STATE_FORBIDS_TRANSITION", "opposed")
    await follower.handle(opposition_event(person.person_id, consent_resources_pb2.OPPOSITION_STATE_WITHDRAWN))
    withdrawn = await store.person(uuid.UUID(person.person_id))
    assert withdrawn is not None and withdrawn.state is AccountState.NOTIFIED


async def test_oppositions_are_consumed_from_the_consent_stream(identity, issue_token, people, redis_url) -> None:
    store, lifecycle, _jobs = people
    person, _code = await enrol(identity, issue_token)
    client = create_redis(redis_url)
    stream = f"carnet:test:consent:{uuid.uuid4().hex}"
    try:
        consumer = OppositionFollower(store, lifecycle).consumer(client, stream=stream)
        await consumer.ensure_group()
        event = opposition_event(person.person_id, consent_resources_pb2.OPPOSITION_STATE_ACTIVE)
        # An opposition to research use is none of identity's business.
        await client.xadd(
            stream,
            {
                "event_id": str(uuid.uuid4()),
                "type": event.event_type,
                "payload": json.dumps({"holder_id": person.person_id, "kind": "OPPOSITION_KIND_RESEARCH", "state": "OPPOSITION_STATE_ACTIVE"}),
                "traceparent": "",
            },
        )
        await client.xadd(
            stream,
            {"event_id": event.event_id, "type": event.event_type, "payload": json.dumps(event.payload), "traceparent": ""},
        )
        await consumer.poll_once()
        opposed = await store.person(uuid.UUID(person.person_id))
        assert opposed is not None and opposed.state is AccountState.OPPOSED
        pending = await client.xpending(stream, "identity")
        assert pending["pending"] == 0
    finally:
        await client.delete(stream)
        await client.aclose()


async def test_a_minors_code_goes_to_the_legal_representative(identity, issue_token, accounts) -> None:
    token = await issue_token(OPERATOR)
    nir = f"2{random.randint(10, 20):02d}0569{random.randint(1, 999):03d}{random.randint(1, 999):03d}"
    minor = await identity.stub.CreatePerson(
        identity_service_pb2.CreatePersonRequest(
            person=resources_pb2.Person(
                ins=nir + ins_key(nir),
                name=common_pb2.PersonName(birth_name="PETITE", first_names=["Lina"]),
                sex=common_pb2.SEX_FEMALE,
                birth_date=common_pb2.Date(year=2015, month=5, day=4),
            )
        ),
        metadata=bearer(token),
    )
    assert minor.notice_channel == common_pb2.DELIVERY_CHANNEL_LETTER
    parent = await accounts.holder()
    now = dt.datetime.now(dt.UTC)
    await identity.store.insert_representation(
        Representation(uuid.uuid4(), "legal", uuid.UUID(minor.person_id), parent.id, "full", now, None), "parent", now
    )
    reissued = await identity.stub.ReissueActivationCode(
        identity_service_pb2.ReissueActivationCodeRequest(person_id=minor.person_id), metadata=bearer(token)
    )
    assert reissued.channel == common_pb2.DELIVERY_CHANNEL_EMAIL
    assert reissued.masked_destination == parent.email[0] + "***@" + parent.email.split("@")[1]

    def sent_to_parent():
        return [
            r for r in identity.notify.requests
            if r.notification.recipient_id == minor.person_id and r.notification.email == parent.email
        ]

    notice = (await wait_until(sent_to_parent))[0].notification
    assert list(notice.channels) == [common_pb2.DELIVERY_CHANNEL_EMAIL]


async def test_two_replicas_running_the_job_at_once_apply_each_transition_once(identity, issue_token, people) -> None:
    store, _lifecycle, jobs = people
    enrolled = [await enrol(identity, issue_token) for _ in range(3)]
    ids = [uuid.UUID(person.person_id) for person, _code in enrolled]
    now = dt.datetime.now(dt.UTC)
    await store._db.execute(
        "UPDATE persons SET opposition_deadline = $2 WHERE id = ANY($1::uuid[])", ids, now - dt.timedelta(seconds=1)
    )
    client = create_redis(identity.settings.redis_url)
    try:
        other_replica = LifecycleJobs(
            store,
            Lifecycle(
                store,
                identity.store,
                SecretHasher(),
                LoginThrottle(client, max_failures=5, window_seconds=900),
                RevocationList(client),
            ),
        )
        first, second = await asyncio.gather(jobs.run_once(now), other_replica.run_once(now))
    finally:
        await client.aclose()
    assert first["created_by_default"] + second["created_by_default"] >= 3
    for person_id in ids:
        assert await state_events(store, str(person_id)) == [("ACCOUNT_STATE_NOTIFIED", "ACCOUNT_STATE_CREATED_BY_DEFAULT")]
