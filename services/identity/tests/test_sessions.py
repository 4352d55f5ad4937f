"""Refresh-token rotation and reuse detection, revocation, acting for a represented holder."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc

from carnet.identity.v1 import identity_service_pb2
from carnet_identity.domain.accounts import AccountState
from carnet_identity.domain.model import Representation


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def refresh(token: str, **extra: str) -> identity_service_pb2.RefreshTokensRequest:
    return identity_service_pb2.RefreshTokensRequest(refresh_token=token, **extra)


async def look_up_self(identity, tokens) -> None:
    """A call that needs a valid access token: the holder reading their own record."""
    await identity.stub.LookupPerson(
        identity_service_pb2.LookupPersonRequest(person_id=tokens.actor.subject), metadata=bearer(tokens.access_token)
    )


async def test_refresh_rotates_the_refresh_token(identity, accounts, password, do_login) -> None:
    holder = await accounts.holder()
    first = await do_login(identity, holder.email, password)
    second = await identity.stub.RefreshTokens(refresh(first.refresh_token))
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    principal = await identity.verifier().verify(second.access_token)
    assert (principal.role, principal.subject) == ("holder", str(holder.id))
    third = await identity.stub.RefreshTokens(refresh(second.refresh_token))
    await look_up_self(identity, third)


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    identity, accounts, password, do_login, rpc_error
) -> None:
    holder = await accounts.holder()
    first = await do_login(identity, holder.email, password)
    second = await identity.stub.RefreshTokens(refresh(first.refresh_token))

    reuse = await rpc_error(identity.stub.RefreshTokens(refresh(first.refresh_token)))
    assert (reuse.code, reuse.reason) == (grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED")
    # The legitimate-looking newer token dies with its family …
    newer = await rpc_error(identity.stub.RefreshTokens(refresh(second.refresh_token)))
    assert (newer.code, newer.reason) == (grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_INVALID")
    # … and so do the access tokens issued with it.
    for tokens in (first, second):
        revoked = await rpc_error(look_up_self(identity, tokens))
        assert (revoked.code, revoked.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")


async def test_an_unknown_refresh_token_is_refused(identity, rpc_error) -> None:
    error = await rpc_error(identity.stub.RefreshTokens(refresh("crt_not-a-real-token")))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_INVALID")


async def test_an_expired_refresh_token_is_refused(identity, accounts, password, do_login, rpc_error, pool) -> None:
    holder = await accounts.holder()
    tokens = await do_login(identity, holder.email, password)
    await pool.execute(
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE account_id = $1", holder.id
    )
    error = await rpc_error(identity.stub.RefreshTokens(refresh(tokens.refresh_token)))
    assert error.reason == "REFRESH_TOKEN_INVALID"


async def test_revoking_an_access_token_makes_it_unusable(identity, accounts, password, do_login, rpc_error) -> None:
    holder = await accounts.holder()
    tokens = await do_login(identity, holder.email, password)
    await look_up_self(identity, tokens)
    await identity.stub.RevokeToken(
        identity_service_pb2.RevokeTokenRequest(token=tokens.access_token), metadata=bearer(tokens.access_token)
    )
    error = await rpc_error(look_up_self(identity, tokens))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
    # The session itself lives on: the refresh token still works.
    renewed = await identity.stub.RefreshTokens(refresh(tokens.refresh_token))
    await look_up_self(identity, renewed)


async def test_revoking_a_refresh_token_ends_the_session(identity, accounts, password, do_login, rpc_error) -> None:
    holder = await accounts.holder()
    tokens = await do_login(identity, holder.email, password)
    await identity.stub.RevokeToken(
        identity_service_pb2.RevokeTokenRequest(token=tokens.refresh_token, token_type_hint="refresh_token"),
        metadata=bearer(tokens.access_token),
    )
    error = await rpc_error(identity.stub.RefreshTokens(refresh(tokens.refresh_token)))
    assert error.reason == "REFRESH_TOKEN_INVALID"
    assert (await rpc_error(look_up_self(identity, tokens))).reason == "TOKEN_REVOKED"


async def test_nobody_revokes_another_persons_tokens(identity, accounts, password, do_login, rpc_error) -> None:
    alice = await do_login(identity, (await accounts.holder()).email, password)
    bob = await do_login(identity, (await accounts.holder()).email, password)
    error = await rpc_error(
        identity.stub.RevokeToken(
            identity_service_pb2.RevokeTokenRequest(token=bob.refresh_token), metadata=bearer(alice.access_token)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
    await identity.stub.RefreshTokens(refresh(bob.refresh_token))


async def test_revoke_needs_a_token(identity, rpc_error) -> None:
    error = await rpc_error(identity.stub.RevokeToken(identity_service_pb2.RevokeTokenRequest(token="crt_x")))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


async def test_a_legal_representative_acts_for_the_minor_after_refresh(
    identity, accounts, password, do_login, rpc_error
) -> None:
    parent = await accounts.holder()
    minor = await accounts.holder(password=None, birth_date=dt.date(2015, 11, 3))
    now = dt.datetime.now(dt.UTC)
    await identity.store.insert_representation(
        Representation(
            uuid.uuid4(), "legal", minor.id, parent.id, "full", now - dt.timedelta(days=1), now + dt.timedelta(days=365)
        ),
        "parent",
        now,
    )
    own = await do_login(identity, parent.email, password)
    acting = await identity.stub.RefreshTokens(refresh(own.refresh_token, acting_for=str(minor.id)))
    principal = await identity.verifier().verify(acting.access_token)
    assert (principal.role, principal.subject, principal.acting_for) == (
        "representative",
        str(parent.id),
        str(minor.id),
    )
    await identity.stub.LookupPerson(
        identity_service_pb2.LookupPersonRequest(person_id=str(minor.id)), metadata=bearer(acting.access_token)
    )
    # Back to acting for oneself.
    back = await identity.stub.RefreshTokens(refresh(acting.refresh_token))
    assert (await identity.verifier().verify(back.access_token)).role == "holder"
    # Nobody acts for a stranger.
    stranger = await accounts.holder(state=AccountState.ACTIVE)
    error = await rpc_error(identity.stub.RefreshTokens(refresh(back.refresh_token, acting_for=str(stranger.id))))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ACTING_FOR")
