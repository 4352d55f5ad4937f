"""Signing keys: JWKS content, rotation with overlap, and the operators-only RPC."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf import duration_pb2
from joserfc import jws

from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, resources_pb2
from carnet_identity.keys import effective_state, ensure_signing_key, jwks_of, rotate_signing_key
from carnet_kit.auth import ALGORITHMS, Principal
from carnet_kit.errors import Unauthenticated


async def test_jwks_publishes_the_ed25519_key_that_signs_tokens(identity, accounts) -> None:
    jwks = await identity.stub.GetJwks(identity_service_pb2.GetJwksRequest())
    assert len(jwks.keys) >= 1
    active = jwks.keys[0]
    assert (active.kty, active.crv, active.alg, active.use) == ("OKP", "Ed25519", ALGORITHMS[0], "sig")
    assert active.kid and active.x
    client = await accounts.client(secret="jwks-secret-value", scopes=("documents.deposit",))
    tokens = await identity.stub.ExchangeClientCredentials(
        identity_service_pb2.ExchangeClientCredentialsRequest(
            client_id=client.client_id, client_secret="jwks-secret-value"
        )
    )
    assert jws.extract_compact(tokens.access_token.encode()).headers()["kid"] == active.kid


async def test_rotation_keeps_the_previous_key_published_during_the_overlap(identity, accounts, store) -> None:
    client = await accounts.client(secret="rotation-secret", scopes=("documents.deposit",))
    request = identity_service_pb2.ExchangeClientCredentialsRequest(
        client_id=client.client_id, client_secret="rotation-secret"
    )
    before = await identity.stub.ExchangeClientCredentials(request)
    old_kids = {key.kid for key in (await identity.stub.GetJwks(identity_service_pb2.GetJwksRequest())).keys}

    new_key = await rotate_signing_key(store, dt.datetime.now(dt.UTC), dt.timedelta(hours=1))

    published = {key.kid for key in (await identity.stub.GetJwks(identity_service_pb2.GetJwksRequest())).keys}
    assert new_key.kid in published
    assert old_kids <= published
    # A verifier that never saw the old key still accepts a token it signed.
    assert (await identity.verifier().verify(before.access_token)).subject == client.client_id


async def test_rotate_signing_key_retires_the_old_key_after_the_overlap(identity, store) -> None:
    now = dt.datetime.now(dt.UTC)
    first = await ensure_signing_key(store, now)
    second = await rotate_signing_key(store, now, dt.timedelta(minutes=10))
    keys = {key.kid: key for key in await store.signing_keys()}
    assert keys[second.kid].state == "active"
    assert keys[first.kid].state == "retiring"
    assert keys[first.kid].retire_at == now + dt.timedelta(minutes=10)
    during = jwks_of(list(keys.values()), now + dt.timedelta(minutes=9))
    after = jwks_of(list(keys.values()), now + dt.timedelta(minutes=10))
    assert [key["kid"] for key in during["keys"]][:2] == [second.kid, first.kid]
    assert first.kid not in {key["kid"] for key in after["keys"]}
    assert effective_state(keys[first.kid], now + dt.timedelta(minutes=10)) == "retired"
    assert await ensure_signing_key(store, now) == keys[second.kid]


async def test_tokens_of_a_withdrawn_key_are_refused(identity, accounts, store, rpc_error) -> None:
    client = await accounts.client(secret="withdrawn-secret", scopes=("documents.deposit",))
    tokens = await identity.stub.ExchangeClientCredentials(
        identity_service_pb2.ExchangeClientCredentialsRequest(
            client_id=client.client_id, client_secret="withdrawn-secret"
        )
    )
    await rotate_signing_key(store, dt.datetime.now(dt.UTC), dt.timedelta(0))
    with pytest.raises(Unauthenticated) as caught:
        await identity.verifier().verify(tokens.access_token)
    assert caught.value.reason == "TOKEN_INVALID"


async def test_rotate_signing_key_rpc_is_for_operators(notify_double, make_identity, token_factory, rpc_error) -> None:
    # This instance trusts the test token factory, which stands for an operator console.
    app = await make_identity(notify_double.port, verifier=token_factory.verifier())
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
            request = identity_service_pb2.RotateSigningKeyRequest(overlap=duration_pb2.Duration(seconds=900))
            operator = token_factory.mint(Principal(subject="ops-1", role="operator"))
            key = await stub.RotateSigningKey(request, metadata=(("authorization", f"Bearer {operator}"),))
            assert key.state == resources_pb2.SIGNING_KEY_STATE_ACTIVE
            assert key.alg == ALGORITHMS[0]
            jwks = await stub.GetJwks(identity_service_pb2.GetJwksRequest())
            assert jwks.keys[0].kid == key.kid
            holder = token_factory.mint(Principal(subject="someone", role="holder"))
            error = await rpc_error(stub.RotateSigningKey(request, metadata=(("authorization", f"Bearer {holder}"),)))
            assert error.code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await app.stop(0)
