"""Login: password, then a one-time code sent through notify; throttling; code tries and expiry."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet.notify.v1 import resources_pb2
from carnet_identity.domain.accounts import AccountState
from carnet_kit.testing import free_port


def start(login: str, password: str) -> identity_service_pb2.StartLoginRequest:
    return identity_service_pb2.StartLoginRequest(login=login, password=password)


def complete(challenge_id: str, code: str) -> identity_service_pb2.CompleteLoginRequest:
    return identity_service_pb2.CompleteLoginRequest(challenge_id=challenge_id, code=code)


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_holder_login_sends_the_code_through_notify_and_completes_with_tokens(
    identity, accounts, password
) -> None:
    holder = await accounts.holder()
    started = await identity.stub.StartLogin(start(holder.email, password))
    assert started.channel == common_pb2.DELIVERY_CHANNEL_EMAIL
    assert started.masked_destination == "h***@test.carnet.test"
    remaining = started.expire_time.ToDatetime(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=9) < remaining <= dt.timedelta(minutes=10)

    [sent] = identity.notify.requests
    assert sent.request_id == started.challenge_id
    assert sent.notification.recipient_id == str(holder.id)
    assert sent.notification.kind == resources_pb2.NOTIFICATION_KIND_ONE_TIME_CODE
    assert list(sent.notification.channels) == [common_pb2.DELIVERY_CHANNEL_EMAIL]
    assert sent.notification.email == holder.email
    code = sent.notification.parameters["code"]
    assert len(code) == 6 and code.isdigit()

    # The call to notify carries identity's own service token.
    [authorization] = identity.notify.authorizations
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer"
    service = await identity.verifier().verify(token)
    assert (service.role, service.subject) == ("service", "identity")

    tokens = await identity.stub.CompleteLogin(complete(started.challenge_id, code))
    assert tokens.refresh_token.startswith("crt_")
    assert tokens.expires_in == 300
    principal = await identity.verifier().verify(tokens.access_token)
    assert (principal.role, principal.subject) == ("holder", str(holder.id))
    assert tokens.actor.role == common_pb2.ROLE_HOLDER


async def test_login_by_ins_with_or_without_key(identity, accounts, password, do_login) -> None:
    holder = await accounts.holder()
    for login in (holder.nir, holder.ins):
        tokens = await do_login(identity, login, password)
        assert (await identity.verifier().verify(tokens.access_token)).subject == str(holder.id)


async def test_professional_login_by_rpps_carries_profession_rpps_and_organisation(
    identity, accounts, password, do_login
) -> None:
    organisation = await accounts.organisation()
    professional = await accounts.professional(profession_code="60", organisations=(organisation.id,))
    tokens = await do_login(identity, professional.rpps, password)
    principal = await identity.verifier().verify(tokens.access_token)
    assert principal.role == "professional"
    assert principal.subject == str(professional.id)
    assert principal.profession_code == "60"
    assert principal.rpps == professional.rpps
    assert principal.organisation_id == str(organisation.id)


async def test_unknown_account_and_wrong_password_get_the_same_answer(identity, accounts, password, rpc_error) -> None:
    holder = await accounts.holder()
    wrong_password = await rpc_error(identity.stub.StartLogin(start(holder.email, password + "x")))
    nobody = f"nobody-{uuid.uuid4().hex}@test.carnet.test"  # unique: failure counters outlive a test run
    unknown = await rpc_error(identity.stub.StartLogin(start(nobody, password)))
    assert (wrong_password.code, wrong_password.reason, wrong_password.message) == (
        unknown.code,
        unknown.reason,
        unknown.message,
    )
    assert wrong_password.code == grpc.StatusCode.UNAUTHENTICATED
    assert wrong_password.reason == "INVALID_CREDENTIALS"
    assert identity.notify.requests == []


async def test_an_account_without_a_password_answers_like_a_wrong_password(
    identity, accounts, password, rpc_error
) -> None:
    notified = await accounts.holder(password=None, state=AccountState.NOTIFIED)
    error = await rpc_error(identity.stub.StartLogin(start(notified.ins, password)))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")


async def test_a_suspended_space_is_told_its_state_only_after_the_right_password(
    identity, accounts, password, rpc_error
) -> None:
    holder = await accounts.holder(state=AccountState.SUSPENDED)
    wrong = await rpc_error(identity.stub.StartLogin(start(holder.email, password + "x")))
    assert wrong.reason == "INVALID_CREDENTIALS"
    right = await rpc_error(identity.stub.StartLogin(start(holder.email, password)))
    assert right.code == grpc.StatusCode.FAILED_PRECONDITION
    assert right.metadata["current_state"] == "suspended"
    assert identity.notify.requests == []


async def test_five_failed_passwords_throttle_the_account(identity, accounts, password, rpc_error) -> None:
    holder = await accounts.holder()
    for _ in range(5):
        error = await rpc_error(identity.stub.StartLogin(start(holder.email, "not-the-password")))
        assert error.reason == "INVALID_CREDENTIALS"
    # Now even the right password is refused, whichever login names the account.
    for login in (holder.email, holder.ins):
        error = await rpc_error(identity.stub.StartLogin(start(login, password)))
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.reason == "LOGIN_THROTTLED"
        assert 0 < int(error.metadata["retry_after_seconds"]) <= 900


async def test_unknown_logins_are_throttled_too(identity, password, rpc_error) -> None:
    login = f"ghost-{uuid.uuid4().hex}@test.carnet.test"
    for _ in range(5):
        assert (await rpc_error(identity.stub.StartLogin(start(login, password)))).reason == "INVALID_CREDENTIALS"
    assert (await rpc_error(identity.stub.StartLogin(start(login, password)))).reason == "LOGIN_THROTTLED"


async def test_five_wrong_codes_lock_the_challenge(identity, accounts, password, rpc_error) -> None:
    holder = await accounts.holder()
    started = await identity.stub.StartLogin(start(holder.email, password))
    code = identity.notify.code_for(started.challenge_id)
    for remaining in ("4", "3", "2", "1"):
        error = await rpc_error(identity.stub.CompleteLogin(complete(started.challenge_id, other_code(code))))
        assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ONE_TIME_CODE_INVALID")
        assert error.metadata["remaining_attempts"] == remaining
    error = await rpc_error(identity.stub.CompleteLogin(complete(started.challenge_id, "not a code")))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ONE_TIME_CODE_LOCKED")
    # The right code no longer opens it.
    error = await rpc_error(identity.stub.CompleteLogin(complete(started.challenge_id, code)))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ONE_TIME_CODE_LOCKED")


async def test_an_expired_code_is_refused(identity, accounts, password, rpc_error, pool) -> None:
    holder = await accounts.holder()
    started = await identity.stub.StartLogin(start(holder.email, password))
    code = identity.notify.code_for(started.challenge_id)
    aged = await pool.execute(
        "UPDATE login_challenges SET expires_at = now() - interval '1 second' WHERE id = $1::uuid", started.challenge_id
    )
    assert aged == "UPDATE 1"
    error = await rpc_error(identity.stub.CompleteLogin(complete(started.challenge_id, code)))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "ONE_TIME_CODE_EXPIRED")


async def test_a_code_works_once(identity, accounts, password, rpc_error) -> None:
    holder = await accounts.holder()
    started = await identity.stub.StartLogin(start(holder.email, password))
    code = identity.notify.code_for(started.challenge_id)
    await identity.stub.CompleteLogin(complete(started.challenge_id, code))
    error = await rpc_error(identity.stub.CompleteLogin(complete(started.challenge_id, code)))
    assert error.reason == "ONE_TIME_CODE_INVALID"


async def test_login_is_unavailable_when_notify_cannot_be_reached(
    identity, accounts, password, rpc_error, make_identity, pool
) -> None:
    holder = await accounts.holder()
    app = await make_identity(free_port(), CARNET_CALL_TIMEOUT_SECONDS="1")
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
            error = await rpc_error(stub.StartLogin(start(holder.email, password)))
    finally:
        await app.stop(0)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "NOTIFY_UNAVAILABLE")
    states = await pool.fetch("SELECT state FROM login_challenges WHERE account_id = $1", holder.id)
    assert [row["state"] for row in states] == ["undeliverable"]


async def test_failures_from_one_address_are_throttled_across_logins(
    make_identity, notify_double, accounts, password, rpc_error
) -> None:
    app = await make_identity(notify_double.port, CARNET_LOGIN_MAX_FAILURES_PER_ADDRESS="3")
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
            sprayer = (("x-carnet-client-address", f"198.51.100.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:6]}"),)
            elsewhere = (("x-carnet-client-address", f"203.0.113.7-{uuid.uuid4().hex[:6]}"),)
            # Three different logins, one wrong password each: no account reaches its own ceiling ...
            for _ in range(3):
                ghost = f"ghost-{uuid.uuid4().hex}@test.carnet.test"
                error = await rpc_error(stub.StartLogin(start(ghost, password), metadata=sprayer))
                assert error.reason == "INVALID_CREDENTIALS"
            # ... but the address has: even a right password from there is refused for a while.
            holder = await accounts.holder()
            error = await rpc_error(stub.StartLogin(start(holder.email, password), metadata=sprayer))
            assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_THROTTLED")
            assert 0 < int(error.metadata["retry_after_seconds"]) <= 900
            # The same account from another address is not affected.
            started = await stub.StartLogin(start(holder.email, password), metadata=elsewhere)
            assert started.challenge_id
    finally:
        await app.stop(0)
