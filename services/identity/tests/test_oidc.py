"""Professionals' login through an OpenID Connect provider, against a real provider served over HTTP.

The provider below is a small but real OpenID Connect peer (discovery, JWKS,
authorization and token endpoints, PKCE S256 checked, RS256-signed ID tokens); the
professional's browser is played by an HTTP client following the flow.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from carnet_identity.domain.identifiers import luhn_check_digit
from carnet_identity.keys import KeyRing
from carnet_identity.oidc import OidcLogin, OidcProvider, OidcSettings
from carnet_identity.sessions import SessionService
from carnet_identity.settings import IdentitySettings
from carnet_identity.tokens import TokenIssuer
from carnet_kit.config import ConfigError, load
from carnet_kit.errors import FailedPrecondition, Unauthenticated
from carnet_kit.redis_client import create_redis

CLIENT_ID = "carnet-test"
CLIENT_SECRET = "s3cret:with/odd&chars"
REDIRECT_URI = "https://carnet.test/oidc/callback"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclasses.dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    subject_id: str


class Provider:
    """An OpenID Connect provider on a free local port."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "provider-key-1", "use": "sig", "alg": "RS256"})
        self.rogue = RSAKey.generate_key(2048, parameters={"kid": "provider-key-1", "alg": "RS256"})
        self.codes: dict[str, Grant] = {}
        self.next_national_id = ""
        self.claim_overrides: dict[str, Any] = {}
        self.sign_with_rogue_key = False
        self.token_requests: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json(
                        200,
                        {
                            "issuer": provider.issuer,
                            "authorization_endpoint": provider.issuer + "/authorize",
                            "token_endpoint": provider.issuer + "/token",
                            "jwks_uri": provider.issuer + "/jwks",
                            "response_types_supported": ["code"],
                            "code_challenge_methods_supported": ["S256"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                        },
                    )
                elif url.path == "/jwks":
                    self._json(200, {"keys": [provider.key.as_dict(private=False)]})
                elif url.path == "/authorize":
                    query = dict(urllib.parse.parse_qsl(url.query))
                    if query.get("code_challenge_method") != "S256" or query.get("response_type") != "code":
                        self._json(400, {"error": "invalid_request"})
                        return
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = Grant(
                        query["client_id"],
                        query["redirect_uri"],
                        query["code_challenge"],
                        query["nonce"],
                        provider.next_national_id,
                    )
                    location = (
                        query["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": query["state"]})
                    )
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                provider.token_requests.append(form)
                scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
                client_id, _, secret = (
                    base64.b64decode(credentials).decode().partition(":") if scheme == "Basic" else ("", "", "")
                )
                client_id, secret = urllib.parse.unquote(client_id), urllib.parse.unquote(secret)
                if (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
                    self._json(401, {"error": "invalid_client"})
                    return
                grant = provider.codes.pop(form.get("code", ""), None)
                if (
                    grant is None
                    or form.get("grant_type") != "authorization_code"
                    or form.get("redirect_uri") != grant.redirect_uri
                    or _b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest()) != grant.code_challenge
                ):
                    self._json(400, {"error": "invalid_grant"})
                    return
                now = int(time.time())
                claims = {
                    "iss": provider.issuer,
                    "sub": "psc-" + grant.subject_id,
                    "aud": grant.client_id,
                    "iat": now,
                    "exp": now + 120,
                    "nonce": grant.nonce,
                    "preferred_username": grant.subject_id,
                    "acr": "eidas1",
                    **provider.claim_overrides,
                }
                key = provider.rogue if provider.sign_with_rogue_key else provider.key
                id_token = jwt.encode({"alg": "RS256", "kid": "provider-key-1"}, claims, key, algorithms=["RS256"])
                self._json(
                    200,
                    {
                        "access_token": "at-" + secrets.token_hex(8),
                        "token_type": "Bearer",
                        "expires_in": 120,
                        "id_token": id_token,
                    },
                )

        return Handler


@pytest.fixture
def provider() -> Iterator[Provider]:
    serving = Provider()
    thread = threading.Thread(target=serving.server.serve_forever, daemon=True)
    thread.start()
    yield serving
    serving.server.shutdown()
    serving.server.server_close()


@dataclasses.dataclass
class Flow:
    login: OidcLogin
    http: httpx.AsyncClient
    provider: Provider

    async def browser_login(self, national_id: str) -> tuple[str, str]:
        """Follow the authorization URL as the professional's browser: the code and state sent back to Carnet."""
        self.provider.next_national_id = national_id
        request = await self.login.start()
        answer = await self.http.get(request.url, follow_redirects=False)
        assert answer.status_code == 302, answer.text
        location = urllib.parse.urlsplit(answer.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
        query = dict(urllib.parse.parse_qsl(location.query))
        assert query["state"] == request.state
        return query["code"], query["state"]


@pytest.fixture
async def flow(identity, provider, redis_url) -> AsyncIterator[Flow]:
    settings = OidcSettings(
        issuer=provider.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
        scopes=("openid", "scope_all"),
        acr_values="eidas1",
    )
    client = create_redis(redis_url)
    keys = KeyRing(identity.store, default_overlap=dt.timedelta(hours=1))
    await keys.reload()
    sessions = SessionService(
        identity.store, TokenIssuer(keys), client, access_ttl_seconds=300, refresh_ttl_seconds=3600
    )
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield Flow(OidcLogin(settings, OidcProvider(settings, http), identity.store, sessions, client), http, provider)
    await client.aclose()


async def test_a_professional_logs_in_through_the_oidc_provider_and_gets_carnet_tokens(
    identity, accounts, flow
) -> None:
    professional = await accounts.professional()
    code, state = await flow.browser_login("8" + professional.rpps)
    grant = await flow.login.complete(code, state)
    assert grant.refresh_token
    principal = await identity.verifier().verify(grant.access.token)
    assert (principal.role, principal.subject, principal.rpps) == (
        "professional",
        str(professional.id),
        professional.rpps,
    )
    exchanged = flow.provider.token_requests[-1]
    assert exchanged["grant_type"] == "authorization_code" and len(exchanged["code_verifier"]) >= 43


async def test_the_authorization_url_carries_state_nonce_pkce_scopes_and_acr(flow) -> None:
    request = await flow.login.start()
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
    assert query["response_type"] == "code"
    assert (query["client_id"], query["redirect_uri"]) == (CLIENT_ID, REDIRECT_URI)
    assert query["scope"] == "openid scope_all"
    assert query["state"] == request.state and len(query["nonce"]) >= 32
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["acr_values"] == "eidas1"
    assert request.url.startswith(flow.provider.issuer + "/authorize?")


async def test_a_login_state_works_once_only(accounts, flow) -> None:
    professional = await accounts.professional()
    code, state = await flow.browser_login("8" + professional.rpps)
    await flow.login.complete(code, state)
    with pytest.raises(Unauthenticated) as caught:
        await flow.login.complete(code, state)
    assert caught.value.reason == "OIDC_STATE_INVALID"
    with pytest.raises(Unauthenticated) as caught:
        await flow.login.complete(code, "made-up-state")
    assert caught.value.reason == "OIDC_STATE_INVALID"


async def test_an_id_token_with_another_nonce_is_refused(accounts, flow) -> None:
    professional = await accounts.professional()
    flow.provider.claim_overrides = {"nonce": "replayed-nonce"}
    code, state = await flow.browser_login("8" + professional.rpps)
    with pytest.raises(Unauthenticated) as caught:
        await flow.login.complete(code, state)
    assert caught.value.reason == "OIDC_ID_TOKEN_INVALID"


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "another-client"},
        {"aud": [CLIENT_ID, "another-client"], "azp": "another-client"},
        {"iss": "https://elsewhere.test"},
        {"exp": int(time.time()) - 3600},
    ],
    ids=["audience", "authorized-party", "issuer", "expired"],
)
async def test_an_id_token_not_meant_for_carnet_or_expired_is_refused(accounts, flow, overrides) -> None:
    professional = await accounts.professional()
    flow.provider.claim_overrides = overrides
    code, state = await flow.browser_login("8" + professional.rpps)
    with pytest.raises(Unauthenticated) as caught:
        await flow.login.complete(code, state)
    assert caught.value.reason == "OIDC_ID_TOKEN_INVALID"


async def test_an_id_token_signed_by_another_key_is_refused(accounts, flow) -> None:
    professional = await accounts.professional()
    flow.provider.sign_with_rogue_key = True
    code, state = await flow.browser_login("8" + professional.rpps)
    with pytest.raises(Unauthenticated) as caught:
        await flow.login.complete(code, state)
    assert caught.value.reason == "OIDC_ID_TOKEN_INVALID"


async def test_a_code_exchanged_with_the_wrong_pkce_verifier_is_refused_by_the_provider(
    accounts, flow, redis_url
) -> None:
    professional = await accounts.professional()
    code, state = await flow.browser_login("8" + professional.rpps)
    client = create_redis(redis_url)
    try:
        key = f"carnet:identity:oidc-state:{state}"
        remembered = json.loads(await client.get(key))
        await client.set(key, json.dumps({**remembered, "verifier": secrets.token_urlsafe(64)}), ex=60)
    finally:
        await client.aclose()
    with pytest.raises(Unauthenticated) as caught:
        await flow.login.complete(code, state)
    assert (caught.value.reason, caught.value.metadata["error"]) == ("OIDC_CODE_REJECTED", "invalid_grant")


async def test_a_professional_unknown_to_carnet_or_disabled_cannot_log_in(accounts, flow, pool) -> None:
    stem = f"1{secrets.randbelow(10**9):09d}"
    code, state = await flow.browser_login("8" + stem + luhn_check_digit(stem))
    with pytest.raises(Unauthenticated) as caught:
        await flow.login.complete(code, state)
    assert caught.value.reason == "OIDC_ACCOUNT_UNKNOWN"
    professional = await accounts.professional()
    await pool.execute("UPDATE professionals SET disabled = true WHERE id = $1", professional.id)
    code, state = await flow.browser_login("8" + professional.rpps)
    with pytest.raises(FailedPrecondition) as refused:
        await flow.login.complete(code, state)
    assert refused.value.reason == "ACCOUNT_STATE_FORBIDS_TRANSITION"


def test_oidc_settings_need_a_client_id_and_redirect_uri() -> None:
    base = {
        "CARNET_GRPC_LISTEN": "127.0.0.1:50051",
        "CARNET_DATABASE_URL": "postgresql://postgres@127.0.0.1/carnet",
        "CARNET_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    assert OidcSettings.from_settings(load(IdentitySettings, base)) is None
    with pytest.raises(ConfigError, match="CARNET_OIDC_CLIENT_ID"):
        load(
            IdentitySettings, base | {"CARNET_OIDC_ISSUER": "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"}
        )
    settings = load(
        IdentitySettings,
        base
        | {
            "CARNET_OIDC_ISSUER": "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet/",
            "CARNET_OIDC_CLIENT_ID": "carnet",
            "CARNET_OIDC_CLIENT_SECRET": "x",
            "CARNET_OIDC_REDIRECT_URI": "https://carnet.example/oidc/callback",
            "CARNET_OIDC_SCOPES": "openid,scope_all",
            "CARNET_OIDC_ACR_VALUES": "eidas1",
        },
    )
    oidc = OidcSettings.from_settings(settings)
    assert oidc is not None
    assert oidc.issuer == "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"
    assert oidc.scopes == ("openid", "scope_all")
    assert (oidc.rpps_claim, oidc.rpps_prefix) == ("preferred_username", "8")


async def test_the_oidc_login_over_grpc_gives_carnet_tokens(
    database_url: str, redis_url: str, notify_double: Any, accounts: Any, provider: Provider
) -> None:
    import grpc

    from carnet.identity.v1 import identity_service_pb2 as pb
    from carnet.identity.v1 import identity_service_pb2_grpc as pb_grpc
    from carnet_identity.app import build

    from .conftest import identity_settings

    settings = identity_settings(
        database_url,
        redis_url,
        notify_double.port,
        CARNET_OIDC_ISSUER=provider.issuer,
        CARNET_OIDC_CLIENT_ID=CLIENT_ID,
        CARNET_OIDC_CLIENT_SECRET=CLIENT_SECRET,
        CARNET_OIDC_REDIRECT_URI=REDIRECT_URI,
    )
    app = await build(settings)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel, httpx.AsyncClient() as browser:
            stub = pb_grpc.IdentityServiceStub(channel)
            professional = await accounts.professional()
            provider.next_national_id = "8" + professional.rpps
            started = await stub.StartOidcLogin(pb.StartOidcLoginRequest())
            answer = await browser.get(started.authorization_url, follow_redirects=False)
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(answer.headers["location"]).query))
            assert query["state"] == started.state
            tokens = await stub.CompleteOidcLogin(pb.CompleteOidcLoginRequest(code=query["code"], state=query["state"]))
            assert tokens.actor.rpps == professional.rpps
            assert tokens.refresh_token
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.CompleteOidcLogin(pb.CompleteOidcLoginRequest(code=query["code"], state=query["state"]))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await app.stop(0)


async def test_without_a_provider_the_oidc_login_is_a_failed_precondition(identity: Any, rpc_error: Any) -> None:
    from carnet.identity.v1 import identity_service_pb2 as pb

    error = await rpc_error(identity.stub.StartOidcLogin(pb.StartOidcLoginRequest()))
    assert error.reason == "OIDC_NOT_CONFIGURED"
