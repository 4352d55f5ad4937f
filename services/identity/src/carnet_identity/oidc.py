"""An OpenID Connect provider (such as Pro Santé Connect) as professionals' login source.

Authorization-code flow with PKCE (RFC 7636, S256) and a nonce (OpenID Connect Core
§3.1): :meth:`OidcLogin.start` builds the provider's authorization URL and keeps
``state`` → (nonce, code verifier) in Redis for 10 minutes, single use;
:meth:`OidcLogin.complete` exchanges the code at the token endpoint, verifies the ID
token against the provider's JWKS (issuer, audience, authorized party, expiry,
nonce), reads the RPPS number from the configured claim, finds the professional and
opens a Carnet session (access + refresh tokens) exactly as a password login does.

The contract has no RPC for it yet: the gateway would need ``StartOidcLogin`` →
(authorization URL, state) and ``CompleteOidcLogin`` (code, state) → ``TokenSet``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import redis.asyncio as redis
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from redis.exceptions import RedisError

from carnet_identity.domain.accounts import ensure_professional_login_allowed
from carnet_identity.domain.identifiers import normalise_rpps
from carnet_identity.domain.model import AccountKind, Session
from carnet_identity.sessions import SessionService, TokenGrant
from carnet_identity.settings import IdentitySettings
from carnet_identity.store import IdentityStore
from carnet_kit.errors import CarnetError, InvalidArgument, Unauthenticated, Unavailable

log = logging.getLogger(__name__)

STATE_TTL_SECONDS = 600
CLOCK_SKEW_SECONDS = 60
# Asymmetric algorithms only: an ID token MAC'ed with the client secret is not accepted.
ALLOWED_ALGORITHMS = ("RS256", "PS256", "ES256", "Ed25519", "EdDSA")
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_REFRESH_INTERVAL = 60.0


def _state_key(state: str) -> str:
    return f"carnet:identity:oidc-state:{state}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def code_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE code verifier (RFC 7636 §4.2)."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclasses.dataclass(frozen=True)
class OidcSettings:
    """Where the provider is, who Carnet is to it, and where the RPPS number is in its ID tokens."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: tuple[str, ...] = ("openid",)
    acr_values: str = ""
    rpps_claim: str = "preferred_username"
    rpps_prefix: str = "8"

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> OidcSettings | None:
        """The OIDC settings, or None when no provider is configured."""
        if not settings.oidc_issuer:
            return None
        return cls(
            issuer=settings.oidc_issuer.rstrip("/"),
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            redirect_uri=settings.oidc_redirect_uri,
            scopes=settings.oidc_scopes,
            acr_values=settings.oidc_acr_values,
            rpps_claim=settings.oidc_rpps_claim,
            rpps_prefix=settings.oidc_rpps_prefix,
        )


@dataclasses.dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the provider's discovery document the flow uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    signing_algorithms: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the professional's browser, and the state that will come back."""

    url: str
    state: str
    expires_at: dt.datetime


def _provider_unavailable(what: str, exc: Exception | None = None) -> Unavailable:
    if exc is not None:
        log.warning("OIDC provider: %s: %s", what, exc)
    return Unavailable(f"the identity provider is unavailable ({what})", reason="OIDC_PROVIDER_UNAVAILABLE")


def _id_token_invalid(why: str) -> Unauthenticated:
    log.warning("OIDC ID token refused: %s", why)
    return Unauthenticated(f"the identity provider's answer is not valid: {why}", reason="OIDC_ID_TOKEN_INVALID")


class OidcProvider:
    """The provider as seen over HTTP: discovery document, JWKS (cached) and token endpoint."""

    def __init__(self, settings: OidcSettings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._metadata: ProviderMetadata | None = None
        self._keys: KeySet | None = None
        self._keys_fetched_at = float("-inf")

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _provider_unavailable(what, exc) from exc
        if not isinstance(body, dict):
            raise _provider_unavailable(what)
        return body

    async def metadata(self) -> ProviderMetadata:
        """The discovery document (fetched once), checked to name the configured issuer (OIDC Discovery §4.3)."""
        if self._metadata is None:
            document = await self._get_json(self._settings.issuer + DISCOVERY_PATH, "discovery")
            if str(document.get("issuer", "")).rstrip("/") != self._settings.issuer:
                raise _provider_unavailable("the discovery document names another issuer")
            try:
                self._metadata = ProviderMetadata(
                    issuer=str(document["issuer"]),
                    authorization_endpoint=str(document["authorization_endpoint"]),
                    token_endpoint=str(document["token_endpoint"]),
                    jwks_uri=str(document["jwks_uri"]),
                    signing_algorithms=tuple(
                        alg
                        for alg in document.get("id_token_signing_alg_values_supported", ["RS256"])
                        if alg in ALLOWED_ALGORITHMS
                    ),
                )
            except KeyError as exc:
                raise _provider_unavailable(f"the discovery document lacks {exc}") from None
        return self._metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys; fetched again on an unknown key id, at most once a minute."""
        now = time.monotonic()
        if self._keys is None or (refresh and now - self._keys_fetched_at > JWKS_REFRESH_INTERVAL):
            metadata = await self.metadata()
            document = await self._get_json(metadata.jwks_uri, "jwks")
            try:
                self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise _provider_unavailable("unreadable jwks", exc) from exc
            self._keys_fetched_at = now
        return self._keys

    async def exchange_code(self, code: str, code_verifier: str) -> dict[str, Any]:
        """The token endpoint's answer to an authorization code (client_secret_basic, PKCE verifier)."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._settings.redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        if self._settings.client_secret:
            # client_secret_basic; RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
            credentials = (
                urllib.parse.quote(self._settings.client_id, safe="")
                + ":"
                + urllib.parse.quote(self._settings.client_secret, safe="")
            )
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        else:
            form["client_id"] = self._settings.client_id
        try:
            response = await self._http.post(metadata.token_endpoint, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise _provider_unavailable("token endpoint", exc) from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 500:
            raise _provider_unavailable(f"token endpoint answered {response.status_code}")
        if response.status_code != 200 or not isinstance(body, dict):
            error = str(body.get("error", "")) if isinstance(body, dict) else ""
            log.info("OIDC token endpoint refused the code: %s %s", response.status_code, error)
            raise Unauthenticated(
                "the identity provider refused the authorization code",
                reason="OIDC_CODE_REJECTED",
                metadata={"error": error} if error else None,
            )
        return body


class OidcLogin:
    """Professionals' login through the configured OpenID Connect provider."""

    def __init__(
        self,
        settings: OidcSettings,
        provider: OidcProvider,
        store: IdentityStore,
        sessions: SessionService,
        redis_client: redis.Redis,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._provider = provider
        self._store = store
        self._sessions = sessions
        self._redis = redis_client
        self._clock = clock

    async def start(self) -> AuthorizationRequest:
        """The provider's authorization URL with a fresh state, nonce and PKCE challenge."""
        metadata = await self._provider.metadata()
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43–128
        params = {
            "response_type": "code",
            "client_id": self._settings.client_id,
            "redirect_uri": self._settings.redirect_uri,
            "scope": " ".join(self._settings.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if self._settings.acr_values:
            params["acr_values"] = self._settings.acr_values
        try:
            await self._redis.set(
                _state_key(state), json.dumps({"nonce": nonce, "verifier": verifier}), ex=STATE_TTL_SECONDS
            )
        except RedisError as exc:
            raise Unavailable("the login state store is unavailable", reason="OIDC_STATE_UNAVAILABLE") from exc
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        url = metadata.authorization_endpoint + separator + urllib.parse.urlencode(params)
        expires_at = dt.datetime.fromtimestamp(self._clock() + STATE_TTL_SECONDS, dt.UTC)
        return AuthorizationRequest(url, state, expires_at)

    async def complete(self, code: str, state: str) -> TokenGrant:
        """Carnet tokens for the professional the provider authenticated (state single use)."""
        if not code or not state or len(state) > 200:
            raise InvalidArgument("code and state are required", field="code" if not code else "state")
        try:
            pending = await self._redis.getdel(_state_key(state))
        except RedisError as exc:
            raise Unavailable("the login state store is unavailable", reason="OIDC_STATE_UNAVAILABLE") from exc
        if pending is None:
            raise Unauthenticated("unknown, used or expired login state", reason="OIDC_STATE_INVALID")
        remembered = json.loads(pending)
        answer = await self._provider.exchange_code(code, remembered["verifier"])
        claims = await self.verify_id_token(str(answer.get("id_token", "")), nonce=remembered["nonce"])
        rpps = self.rpps_of(claims)
        professional = await self._store.professional_by_rpps(rpps)
        if professional is None:
            log.info("OIDC login of an RPPS unknown to Carnet")
            raise Unauthenticated(
                "this professional is not registered in Carnet", reason="OIDC_ACCOUNT_UNKNOWN", metadata={"rpps": rpps}
            )
        ensure_professional_login_allowed(professional.disabled)
        async with self._store.transaction() as tx:
            return await self._sessions.open_session(tx, Session(AccountKind.PROFESSIONAL, professional.id))

    async def verify_id_token(self, token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of a valid ID token (OpenID Connect Core §3.1.3.7)."""
        if not token:
            raise _id_token_invalid("no id_token in the token response")
        metadata = await self._provider.metadata()
        algorithms = list(metadata.signing_algorithms) or ["RS256"]
        try:
            decoded = jwt.decode(token, await self._provider.keys(), algorithms=algorithms)
        except (JoseError, ValueError):
            # Maybe the provider rotated its keys: fetch them once more, then give up.
            try:
                decoded = jwt.decode(token, await self._provider.keys(refresh=True), algorithms=algorithms)
            except (JoseError, ValueError) as exc:
                raise _id_token_invalid(f"signature ({type(exc).__name__})") from exc
        claims = decoded.claims
        now = self._clock()
        if str(claims.get("iss", "")).rstrip("/") != self._settings.issuer:
            raise _id_token_invalid("issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self._settings.client_id not in audiences:
            raise _id_token_invalid("audience")
        if len(audiences) > 1 and claims.get("azp") != self._settings.client_id:
            raise _id_token_invalid("authorized party")
        if not isinstance(claims.get("exp"), int) or claims["exp"] + CLOCK_SKEW_SECONDS < now:
            raise _id_token_invalid("expired")
        if isinstance(claims.get("iat"), int) and claims["iat"] - CLOCK_SKEW_SECONDS > now:
            raise _id_token_invalid("issued in the future")
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise _id_token_invalid("nonce")
        return dict(claims)

    def rpps_of(self, claims: dict[str, Any]) -> str:
        """The RPPS number in the configured claim, without the national-id prefix (``8`` for RPPS)."""
        value = str(claims.get(self._settings.rpps_claim, "")).strip()
        prefix = self._settings.rpps_prefix
        if prefix and len(value) == 11 + len(prefix) and value.startswith(prefix):
            value = value[len(prefix) :]
        try:
            return normalise_rpps(value, field=self._settings.rpps_claim)
        except CarnetError:
            raise _id_token_invalid(f"claim {self._settings.rpps_claim} holds no RPPS number") from None


def build_oidc_login(
    settings: IdentitySettings,
    store: IdentityStore,
    sessions: SessionService,
    redis_client: redis.Redis,
    http: httpx.AsyncClient,
) -> OidcLogin | None:
    """The OIDC login source, or None when ``CARNET_OIDC_ISSUER`` is not set."""
    oidc = OidcSettings.from_settings(settings)
    if oidc is None:
        return None
    return OidcLogin(oidc, OidcProvider(oidc, http), store, sessions, redis_client)
