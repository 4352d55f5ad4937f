"""Forged and replayed tokens are refused, by identity itself and by the kit's verifier every other service uses.

Each attack starts from a real session (a holder who logged in) and changes one thing:
the algorithm, the expiry, the signing key, the audience, the claims, or replays a
rotated refresh token.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from carnet.identity.v1 import identity_service_pb2 as svc
from carnet_identity.keys import ALGORITHM, KeyRing
from carnet_kit.auth import AUDIENCE, ISSUER, TokenVerifier
from carnet_kit.errors import Unauthenticated
from carnet_kit.peers import remote_verifier
from carnet_kit.redis_client import create_redis


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload)), signature


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclasses.dataclass
class Session:
    """A holder's real session and the two verifiers under test."""

    identity: Any
    holder_id: str
    tokens: svc.TokenSet
    kit_verifier: TokenVerifier
    keys: KeyRing

    async def signed_by_identity(self, claims: dict[str, Any]) -> str:
        """A token signed with identity's real active key (what only identity can make)."""
        active = await self.keys.active()
        return jwt.encode(
            {"alg": ALGORITHM, "kid": active.kid, "typ": "JWT"}, claims, active.key, algorithms=[ALGORITHM]
        )

    async def assert_refused(self, token: str, reason: str | None = None) -> None:
        """Identity answers UNAUTHENTICATED, and the kit's verifier (other services) raises Unauthenticated."""
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.identity.stub.GetPerson(svc.GetPersonRequest(person_id=self.holder_id), metadata=bearer(token))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(Unauthenticated) as refused:
            await self.kit_verifier.verify(token)
        if reason is not None:
            assert refused.value.reason == reason


@pytest.fixture
async def session(identity, accounts, password, do_login, redis_url) -> AsyncIterator[Session]:
    holder = await accounts.holder()
    tokens = await do_login(identity, holder.email, password)
    client = create_redis(redis_url)
    keys = KeyRing(identity.store, default_overlap=dt.timedelta(hours=1))
    await keys.reload()
    current = Session(identity, str(holder.id), tokens, remote_verifier(identity.channel, client), keys)
    # The genuine token passes both, so every refusal below is due to the attack alone.
    await identity.stub.GetPerson(
        svc.GetPersonRequest(person_id=current.holder_id), metadata=bearer(tokens.access_token)
    )
    assert (await current.kit_verifier.verify(tokens.access_token)).subject == current.holder_id
    yield current
    await client.aclose()


async def test_a_token_with_alg_none_is_refused(session: Session) -> None:
    header, claims, _ = parts(session.tokens.access_token)
    for alg in ("none", "None", "NONE"):
        forged = f"{b64(json.dumps({**header, 'alg': alg}).encode())}.{b64(json.dumps(claims).encode())}."
        await session.assert_refused(forged, "TOKEN_INVALID")


async def test_a_token_signed_with_hmac_over_the_public_key_is_refused(session: Session) -> None:
    # Algorithm confusion: HS256 keyed with the published Ed25519 public key.
    header, claims, _ = parts(session.tokens.access_token)
    public_x = (await session.keys.jwks())["keys"][0]["x"]
    signing_input = f"{b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(public_x.encode(), signing_input.encode(), hashlib.sha256).digest()
    await session.assert_refused(f"{signing_input}.{b64(signature)}", "TOKEN_INVALID")


async def test_an_expired_token_is_refused(session: Session) -> None:
    _, claims, _ = parts(session.tokens.access_token)
    past = int(dt.datetime.now(dt.UTC).timestamp()) - 3600
    expired = await session.signed_by_identity({**claims, "iat": past - 300, "exp": past})
    await session.assert_refused(expired, "TOKEN_EXPIRED")


async def test_a_token_signed_by_an_unknown_key_is_refused(session: Session) -> None:
    _, claims, _ = parts(session.tokens.access_token)
    rogue = OKPKey.generate_key("Ed25519", private=True)
    # Under the rogue key's own id (not in the JWKS) …
    unknown_kid = jwt.encode({"alg": ALGORITHM, "kid": rogue.thumbprint()}, claims, rogue, algorithms=[ALGORITHM])
    await session.assert_refused(unknown_kid, "TOKEN_INVALID")
    # … and pretending to be identity's key.
    active = await session.keys.active()
    stolen_kid = jwt.encode({"alg": ALGORITHM, "kid": active.kid}, claims, rogue, algorithms=[ALGORITHM])
    await session.assert_refused(stolen_kid, "TOKEN_INVALID")


async def test_a_token_for_another_audience_or_issuer_is_refused(session: Session) -> None:
    _, claims, _ = parts(session.tokens.access_token)
    assert (claims["aud"], claims["iss"]) == (AUDIENCE, ISSUER)
    await session.assert_refused(
        await session.signed_by_identity({**claims, "aud": "another-platform"}), "TOKEN_INVALID"
    )
    await session.assert_refused(await session.signed_by_identity({**claims, "aud": ["a", "b"]}), "TOKEN_INVALID")
    await session.assert_refused(await session.signed_by_identity({**claims, "iss": "someone-else"}), "TOKEN_INVALID")


async def test_a_token_with_tampered_claims_is_refused(session: Session) -> None:
    header, claims, signature = parts(session.tokens.access_token)
    encoded_header = session.tokens.access_token.split(".")[0]
    for tampered in (
        {**claims, "role": "operator"},
        {**claims, "sub": "00000000-0000-0000-0000-000000000000"},
        {**claims, "exp": claims["exp"] + 86_400},
        {**claims, "scope": "space.write"},
    ):
        forged = f"{encoded_header}.{b64(json.dumps(tampered).encode())}.{signature}"
        await session.assert_refused(forged, "TOKEN_INVALID")
    # A flipped bit in the signature itself.
    raw = bytearray(unb64(signature))
    raw[0] ^= 0x01
    await session.assert_refused(
        f"{encoded_header}.{b64(json.dumps(claims).encode())}.{b64(bytes(raw))}", "TOKEN_INVALID"
    )
    assert header["alg"] == ALGORITHM


async def test_a_reused_refresh_token_is_refused_and_revokes_the_whole_family(session: Session, rpc_error) -> None:
    stub = session.identity.stub
    first = session.tokens
    second = await stub.RefreshTokens(svc.RefreshTokensRequest(refresh_token=first.refresh_token))
    third = await stub.RefreshTokens(svc.RefreshTokensRequest(refresh_token=second.refresh_token))
    reuse = await rpc_error(stub.RefreshTokens(svc.RefreshTokensRequest(refresh_token=first.refresh_token)))
    assert (reuse.code, reuse.reason) == (grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED")
    # The newest refresh token of the family dies too …
    newest = await rpc_error(stub.RefreshTokens(svc.RefreshTokensRequest(refresh_token=third.refresh_token)))
    assert newest.reason == "REFRESH_TOKEN_INVALID"
    # … and every access token issued in the family is refused everywhere.
    for tokens in (first, second, third):
        await session.assert_refused(tokens.access_token, "TOKEN_REVOKED")
