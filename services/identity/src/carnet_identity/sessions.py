"""Login sessions: token sets, rotating refresh tokens with reuse detection, and revocation.

A session starts at a completed login and is a *family* of refresh tokens. Each
refresh consumes the presented token and issues the next one; presenting a consumed
token again means it was copied, so the whole family is revoked (and the access
tokens issued with it are put on the revocation list): both the thief and the owner
must log in again (OAuth 2.0 Security BCP, refresh token rotation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from carnet_identity.domain.accounts import ensure_login_allowed, ensure_professional_login_allowed, is_minor
from carnet_identity.domain.credentials import looks_like_refresh_token, new_refresh_token, refresh_token_digest
from carnet_identity.domain.directory import DELEGATION_SCOPES
from carnet_identity.domain.model import AccountKind, Session
from carnet_identity.keys import utcnow
from carnet_identity.store import IdentityStore, IssuedAccessToken
from carnet_identity.tokens import IssuedToken, TokenIssuer
from carnet_kit.auth import CLOCK_SKEW_SECONDS, Principal, TokenVerifier, revoked_key
from carnet_kit.errors import CarnetError, InvalidArgument, PermissionDenied, Unauthenticated, Unavailable

log = logging.getLogger(__name__)

# Roles allowed to revoke anybody's tokens (support, and services acting on an account closure).
REVOKE_ANY_ROLES = frozenset({"operator", "service"})


@dataclasses.dataclass(frozen=True)
class TokenGrant:
    """What a token endpoint answers: an access token, maybe a refresh token, the granted scope."""

    access: IssuedToken
    refresh_token: str = ""

    @property
    def scope(self) -> str:
        """Granted scopes, space-separated."""
        return " ".join(self.access.principal.scopes)


def _parse_uuid(text: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidArgument(f"{field} is not an id", field=field, reason="FIELD_INVALID") from None


class RevocationList:
    """The Redis list of revoked access-token ids that every service's verifier checks."""

    def __init__(self, redis_client: redis.Redis, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._redis = redis_client
        self._clock = clock

    async def add(self, tokens: Sequence[IssuedAccessToken]) -> None:
        """Put access token ids on the list until they would expire anyway."""
        if not tokens:
            return
        now = self._clock()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for token in tokens:
                    ttl = int((token.expires_at - now).total_seconds()) + CLOCK_SKEW_SECONDS
                    if ttl > 0:
                        pipe.set(revoked_key(token.token_id), b"1", ex=ttl)
                await pipe.execute()
        except RedisError as exc:
            raise Unavailable("the revocation list is unavailable", reason="REVOCATION_UNAVAILABLE") from exc


class SessionService:
    """Issues, rotates and revokes the tokens of logged-in holders and professionals."""

    def __init__(
        self,
        store: IdentityStore,
        issuer: TokenIssuer,
        redis_client: redis.Redis,
        *,
        access_ttl_seconds: int,
        refresh_ttl_seconds: int,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self._issuer = issuer
        self._revocations = RevocationList(redis_client, clock=clock)
        self._access_ttl = access_ttl_seconds
        self._refresh_ttl = dt.timedelta(seconds=refresh_ttl_seconds)
        self._clock = clock

    async def principal_for(self, store: IdentityStore, session: Session, now: dt.datetime) -> Principal:
        """Who a session's tokens assert, read from the account as it is now (state, organisation, representation)."""
        if session.account_kind is AccountKind.PROFESSIONAL:
            professional = await store.professional_by_id(session.account_id)
            if professional is None:
                raise Unauthenticated("the account no longer exists", reason="REFRESH_TOKEN_INVALID")
            ensure_professional_login_allowed(professional.disabled)
            organisation = session.organisation_id
            if organisation is not None and organisation not in professional.organisation_ids:
                raise PermissionDenied(
                    "the professional does not practise at this organisation",
                    reason="CALLER_NOT_ALLOWED",
                    metadata={"organisation_id": str(organisation)},
                )
            if organisation is None and professional.organisation_ids:
                organisation = professional.organisation_ids[0]
            return Principal(
                subject=str(professional.id),
                role="professional",
                profession_code=professional.profession_code,
                rpps=professional.rpps,
                organisation_id=str(organisation) if organisation else "",
            )
        person = await store.person_by_id(session.account_id)
        if person is None:
            raise Unauthenticated("the account no longer exists", reason="REFRESH_TOKEN_INVALID")
        ensure_login_allowed(person.state)
        if session.acting_for is None or session.acting_for == person.id:
            return Principal(subject=str(person.id), role="holder")
        representation = await store.representation(session.acting_for, person.id, now)
        if representation is None:
            raise PermissionDenied(
                "no legal representation or helper nomination for this holder",
                reason="NOT_ACTING_FOR",
                metadata={"acting_for": str(session.acting_for)},
            )
        if representation.kind == "legal":
            # Access ends at 18 (PRODUCT.md), whatever end the representation was recorded with.
            holder = await store.person_by_id(session.acting_for)
            if holder is None or not is_minor(holder.birth_date, now.date()):
                raise PermissionDenied(
                    "the holder is no longer a minor",
                    reason="NOT_ACTING_FOR",
                    metadata={"acting_for": str(session.acting_for)},
                )
        role = "representative" if representation.kind == "legal" else "helper"
        # The scope tells every service what the delegate may do: read only, or read and write.
        return Principal(
            subject=str(person.id),
            role=role,
            acting_for=str(session.acting_for),
            scopes=DELEGATION_SCOPES.get(representation.access, DELEGATION_SCOPES["read_only"]),
        )

    async def open_session(self, store: IdentityStore, session: Session) -> TokenGrant:
        """Tokens for a completed login: an access token and the first refresh token of a new family."""
        now = self._clock()
        principal = await self.principal_for(store, session, now)
        grant, _ = await self._issue(store, session, principal, family_id=uuid.uuid4(), now=now)
        return grant

    async def _issue(
        self, store: IdentityStore, session: Session, principal: Principal, *, family_id: uuid.UUID, now: dt.datetime
    ) -> tuple[TokenGrant, uuid.UUID]:
        access = await self._issuer.mint(principal, self._access_ttl)
        refresh = new_refresh_token()
        refresh_id = uuid.uuid4()
        await store.insert_refresh_token(
            token_id=refresh_id,
            digest=refresh_token_digest(refresh),
            family_id=family_id,
            session=session,
            issued_at=now,
            expires_at=now + self._refresh_ttl,
            access=IssuedAccessToken(access.token_id, access.expires_at),
        )
        return TokenGrant(access, refresh), refresh_id

    async def refresh(self, refresh_token: str, *, acting_for: str = "", organisation_id: str = "") -> TokenGrant:
        """Exchange a refresh token for a new token set; a reused token revokes its whole family.

        ``acting_for`` names the holder a representative or helper acts for in the new
        tokens (empty: oneself); ``organisation_id`` switches a professional's
        organisation (empty: keep it).
        """
        acting_for_id = _parse_uuid(acting_for, "acting_for") if acting_for else None
        organisation = _parse_uuid(organisation_id, "organisation_id") if organisation_id else None
        now = self._clock()
        failure: CarnetError | None = None
        revoked: list[IssuedAccessToken] = []
        grant: TokenGrant | None = None
        async with self._store.transaction() as tx:
            record = await tx.refresh_token_for_update(refresh_token_digest(refresh_token))
            if record is None or record.revoked_at is not None:
                failure = Unauthenticated("the refresh token is not valid", reason="REFRESH_TOKEN_INVALID")
            elif record.rotated_at is not None:
                revoked = await tx.revoke_family(record.family_id, now, "reuse")
                log.warning("refresh token reuse detected; family %s revoked", record.family_id)
                failure = Unauthenticated(
                    "the refresh token was already used; every token of this session is revoked",
                    reason="REFRESH_TOKEN_REUSED",
                )
            elif record.expires_at <= now:
                failure = Unauthenticated("the refresh token has expired", reason="REFRESH_TOKEN_INVALID")
            else:
                session = dataclasses.replace(
                    record.session,
                    acting_for=acting_for_id,
                    organisation_id=organisation or record.session.organisation_id,
                )
                principal = await self.principal_for(tx, session, now)
                grant, replacement_id = await self._issue(tx, session, principal, family_id=record.family_id, now=now)
                await tx.mark_refresh_token_rotated(record.id, replacement_id, now)
        await self._revoke_access_tokens(revoked)
        if failure is not None:
            raise failure
        assert grant is not None
        return grant

    async def revoke(self, token: str, token_type_hint: str, caller: Principal, verifier: TokenVerifier) -> None:
        """Revoke a token (RFC 7009): a refresh token ends its family, an access token joins the revocation list.

        Unknown, malformed or expired tokens are accepted silently, as RFC 7009 asks; a
        valid token of somebody else is refused unless the caller is an operator or a
        service.
        """
        if looks_like_refresh_token(token) or token_type_hint == "refresh_token":
            await self._revoke_refresh_token(token, caller)
            return
        try:
            principal = await verifier.verify(token)
        except Unauthenticated:
            return
        self._ensure_may_revoke(caller, principal.subject)
        expires_at = dt.datetime.fromtimestamp(principal.expires_at, dt.UTC)
        await self._revoke_access_tokens([IssuedAccessToken(principal.token_id, expires_at)])

    async def _revoke_refresh_token(self, token: str, caller: Principal) -> None:
        now = self._clock()
        async with self._store.transaction() as tx:
            record = await tx.refresh_token_for_update(refresh_token_digest(token))
            if record is None or record.revoked_at is not None:
                return
            self._ensure_may_revoke(caller, str(record.session.account_id))
            revoked = await tx.revoke_family(record.family_id, now, "revoked")
        await self._revoke_access_tokens(revoked)

    @staticmethod
    def _ensure_may_revoke(caller: Principal, owner: str) -> None:
        if caller.subject != owner and caller.role not in REVOKE_ANY_ROLES:
            raise PermissionDenied("this token belongs to somebody else", reason="CALLER_NOT_ALLOWED")

    async def revoke_access_tokens(self, tokens: list[IssuedAccessToken]) -> None:
        """Put these access tokens on the revocation list (a client removed, a helper's grant ended)."""
        await self._revoke_access_tokens(tokens)

    async def _revoke_access_tokens(self, tokens: list[IssuedAccessToken]) -> None:
        """Put access token ids on the Redis revocation list until they would expire anyway."""
        await self._revocations.add(tokens)
