"""Tokens are verified against the JWKS: signature, issuer, audience, expiry, rotation, revocation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from carnet_kit.auth import ALGORITHMS, Principal, TokenVerifier
from carnet_kit.errors import Unauthenticated
from carnet_kit.testing import TokenFactory

HOLDER = Principal(subject="p-1", role="holder")


async def test_a_valid_token_gives_its_principal(token_factory: TokenFactory) -> None:
    client = Principal(subject="lab", role="client", client_id="lab", organisation_id="org", scopes=("documents.deposit",))
    principal = await token_factory.verifier().verify(token_factory.mint(client))
    assert principal.subject == "lab"
    assert principal.scopes == ("documents.deposit",)
    assert principal.to_actor().client_id == "lab"


@pytest.mark.parametrize("claim", ["iss", "aud"])
async def test_wrong_issuer_or_audience_is_refused(token_factory: TokenFactory, claim: str) -> None:
    now = int(time.time())
    claims = {"iss": "carnet-identity", "aud": "carnet", "sub": "x", "role": "holder", "exp": now + 60, claim: "other"}
    token = jwt.encode({"alg": ALGORITHMS[0], "kid": token_factory.kid}, claims, token_factory.key, algorithms=ALGORITHMS)
    with pytest.raises(Unauthenticated):
        await token_factory.verifier().verify(token)


async def test_expired_token_is_refused(token_factory: TokenFactory) -> None:
    with pytest.raises(Unauthenticated) as info:
        await token_factory.verifier().verify(token_factory.mint(HOLDER, ttl=-120))
    assert info.value.reason == "TOKEN_EXPIRED"


async def test_token_signed_by_another_key_is_refused(token_factory: TokenFactory) -> None:
    impostor = TokenFactory()
    impostor.kid = token_factory.kid
    impostor.key = OKPKey.generate_key("Ed25519", parameters={"kid": token_factory.kid})
    with pytest.raises(Unauthenticated):
        await token_factory.verifier().verify(impostor.mint(HOLDER))


async def test_garbage_is_refused(token_factory: TokenFactory) -> None:
    with pytest.raises(Unauthenticated):
        await token_factory.verifier().verify("not-a-jwt")


async def test_an_unknown_key_id_refreshes_the_key_set_once() -> None:
    old, new = TokenFactory(), TokenFactory()
    published: list[dict[str, Any]] = [old.jwks()]
    fetches = 0

    async def fetch() -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        return published[-1]

    verifier = TokenVerifier(fetch, refresh_interval=0)
    await verifier.verify(old.mint(HOLDER))
    await verifier.verify(old.mint(HOLDER))
    assert fetches == 1
    published.append({"keys": old.jwks()["keys"] + new.jwks()["keys"]})
    await verifier.verify(new.mint(HOLDER))
    assert fetches == 2


async def test_revoked_token_is_refused(token_factory: TokenFactory) -> None:
    revoked: set[str] = set()

    async def fetch() -> dict[str, Any]:
        return token_factory.jwks()

    async def is_revoked(token_id: str) -> bool:
        return token_id in revoked

    verifier = TokenVerifier(fetch, is_revoked=is_revoked)
    token = token_factory.mint(HOLDER)
    principal = await verifier.verify(token)
    revoked.add(principal.token_id)
    with pytest.raises(Unauthenticated) as info:
        await verifier.verify(token)
    assert info.value.reason == "TOKEN_REVOKED"


async def test_a_verified_token_is_not_verified_again_but_revocation_still_applies(token_factory: TokenFactory) -> None:
    revoked: set[str] = set()
    decodes = 0

    async def fetch() -> dict[str, Any]:
        return token_factory.jwks()

    async def is_revoked(token_id: str) -> bool:
        return token_id in revoked

    verifier = TokenVerifier(fetch, is_revoked=is_revoked)
    original = verifier._verify_signed

    async def counting(token: str) -> tuple[Principal, str]:
        nonlocal decodes
        decodes += 1
        return await original(token)

    verifier._verify_signed = counting  # type: ignore[method-assign]
    token = token_factory.mint(HOLDER)
    first = await verifier.verify(token)
    assert await verifier.verify(token) == first
    assert decodes == 1
    revoked.add(first.token_id)
    with pytest.raises(Unauthenticated) as info:
        await verifier.verify(token)
    assert info.value.reason == "TOKEN_REVOKED"


async def test_a_cached_token_expires_with_its_exp() -> None:
    factory = TokenFactory()
    now = [float(int(__import__("time").time()))]

    async def fetch() -> dict[str, Any]:
        return factory.jwks()

    verifier = TokenVerifier(fetch, clock=lambda: now[0])
    token = factory.mint(HOLDER, ttl=60)
    await verifier.verify(token)
    now[0] += 60 + 31  # past exp and the clock skew allowance
    with pytest.raises(Unauthenticated) as info:
        await verifier.verify(token)
    assert info.value.reason == "TOKEN_EXPIRED"
