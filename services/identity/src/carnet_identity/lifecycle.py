"""The lifecycle of a space as use cases: activation, password, closure, suspension, reopening, deletion.

Every transition goes through :func:`carnet_identity.domain.accounts.apply_action`
(FAILED_PRECONDITION naming the current state when not allowed), is stored with the
person row locked, and publishes an ``AccountStateChangedEvent`` in the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Callable

from carnet.common.v1 import common_pb2
from carnet_identity import person_events
from carnet_identity.domain.accounts import (
    ACTIVATION_CODE_VALIDITY,
    LOGIN_STATES,
    AccountState,
    Action,
    apply_action,
    is_minor,
    state_forbids,
)
from carnet_identity.domain.credentials import (
    activation_code_matches,
    check_password_policy,
    mask_email,
    normalise_activation_code,
)
from carnet_identity.domain.enrolment import check_birth_date
from carnet_identity.domain.identifiers import normalise_ins
from carnet_identity.domain.model import Person
from carnet_identity.enrolment import PersonRegistry
from carnet_identity.hashing import SecretHasher
from carnet_identity.keys import utcnow
from carnet_identity.notices import new_code
from carnet_identity.sessions import RevocationList
from carnet_identity.store import IdentityStore
from carnet_identity.store_persons import PersonStore, status_of
from carnet_identity.throttle import LoginThrottle, throttle_subject_for_account
from carnet_kit.auth import Principal
from carnet_kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

PASSWORD_SETUP_VALIDITY = dt.timedelta(minutes=30)
PASSWORD_SETUP_PREFIX = "cps_"
# The service itself, as the actor of scheduled transitions (deadline, end of suspension, deletion).
SERVICE_ACTOR = Principal(subject="identity", role="service").to_actor()
# Who may act on any space (support agents, other services on their behalf).
AGENT_ROLES = frozenset({"operator", "service"})


def parse_person_id(value: str, field: str = "person_id") -> uuid.UUID:
    """A person id from a request."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} is not an id", field=field, reason="FIELD_INVALID") from None


def _invalid_code() -> Unauthenticated:
    return Unauthenticated(
        "the activation code, INS or birth date is wrong", reason="ACTIVATION_CODE_INVALID"
    )


def _setup_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclasses.dataclass(frozen=True)
class Activation:
    """An activated space and the single-use token that lets the holder set a password."""

    person: Person
    password_setup_token: str
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class ReissuedCode:
    """Where a re-issued activation code went."""

    expires_at: dt.datetime
    channel: str
    masked_destination: str


class Lifecycle:
    """Moves spaces through their lifecycle."""

    def __init__(
        self,
        store: PersonStore,
        accounts: IdentityStore,
        hasher: SecretHasher,
        throttle: LoginThrottle,
        revocations: RevocationList,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._hasher = hasher
        self._throttle = throttle
        self._revocations = revocations
        self._clock = clock

    # ---- transitions

    async def apply(
        self,
        person_id: uuid.UUID,
        action: Action,
        actor: common_pb2.Actor,
        *,
        reason: str = "",
        now: dt.datetime | None = None,
        store: PersonStore | None = None,
    ) -> Person:
        """Apply one action to a space (in ``store``'s transaction when given) and publish the transition."""
        now = now or self._clock()
        if store is None:
            async with self._store.transaction() as tx:
                return await self.apply(person_id, action, actor, reason=reason, now=now, store=tx)
        person = await store.person(person_id, for_update=True)
        if person is None:
            raise NotFound("no such person", reason="PERSON_NOT_FOUND")
        after = apply_action(status_of(person), action, now, reason)
        await store.save_status(person_id, after, now)
        if after.state is not person.state:
            await person_events.state_changed(store, person_id, person.state, after, actor, now)
        elif after.scheduled_delete_at != person.scheduled_delete_at:
            await person_events.person_updated(store, person_id, ["scheduled_delete_time"], now)
        if person.state in LOGIN_STATES and after.state not in LOGIN_STATES:
            # Closed, suspended, opposed: the holder's sessions and those acting for them end now,
            # not when their access tokens run out.
            revoked = await IdentityStore(store.connection).revoke_account_sessions(
                "person", person_id, now, acting_for_too=True
            )
            await self._revocations.add(revoked)
        if after.state is AccountState.DELETED:
            await store.erase_deleted(person_id)
        updated = await store.person(person_id)
        assert updated is not None
        return updated

    def _ensure_self_or_agent(self, caller: Principal, person_id: uuid.UUID) -> None:
        if caller.role in AGENT_ROLES or (caller.role == "holder" and caller.subject == str(person_id)):
            return
        raise PermissionDenied("you may only act on your own space", reason="CALLER_NOT_ALLOWED")

    async def close(self, caller: Principal, person_id: uuid.UUID, reason: str) -> Person:
        """The holder (or an agent) closes the space: archived 10 years, then deleted."""
        self._ensure_self_or_agent(caller, person_id)
        return await self.apply(person_id, Action.CLOSE, caller.to_actor(), reason=reason)

    async def suspend(self, caller: Principal, person_id: uuid.UUID, reason: str) -> Person:
        """An operator suspends a space (fraud); the deadline job closes it 6 weeks later."""
        if caller.role != "operator":
            raise PermissionDenied("only an operator may suspend a space", reason="CALLER_NOT_ALLOWED")
        if not reason.strip():
            raise InvalidArgument("a suspension needs a reason", field="reason", reason="FIELD_INVALID")
        return await self.apply(person_id, Action.SUSPEND, caller.to_actor(), reason=reason.strip())

    async def reopen(self, caller: Principal, person_id: uuid.UUID) -> Person:
        """Reopen a suspended or closed space: the state before is restored, a pending deletion cancelled."""
        self._ensure_self_or_agent(caller, person_id)
        return await self.apply(person_id, Action.REOPEN, caller.to_actor())

    async def request_deletion(self, caller: Principal, person_id: uuid.UUID, reason: str) -> Person:
        """Ask for deletion: the space is closed if it was not, deletion scheduled within 3 months."""
        self._ensure_self_or_agent(caller, person_id)
        return await self.apply(person_id, Action.REQUEST_DELETION, caller.to_actor(), reason=reason)

    # ---- activation

    async def activate(self, code_text: str, ins_text: str, birth_date: tuple[int, int, int]) -> Activation:
        """Activate a space with its code, INS and birth date; one answer for any mismatch.

        Each wrong try counts against the code (5 and it is locked, whatever is right);
        an expired code is told only when everything else matches.
        """
        now = self._clock()
        code = normalise_activation_code(code_text)
        ins = normalise_ins(ins_text, field="ins")
        try:
            born, _precision = check_birth_date(*birth_date, now.date(), "birth_date")
        except InvalidArgument:
            born = None
        async with self._store.transaction() as tx:
            person = await tx.person_by_nir(ins.number, for_update=True)
            stored = await tx.outstanding_code(person.id, for_update=True) if person else None
            if person is None or stored is None:
                raise _invalid_code()
            if stored.attempts >= stored.max_attempts:
                raise PermissionDenied(
                    "this activation code is locked after too many wrong tries; ask for a new one",
                    reason="ACTIVATION_CODE_LOCKED",
                )
            if stored.code_hash.startswith("$argon2"):
                matches = await self._hasher.verify(stored.code_hash, code)
            else:
                matches = activation_code_matches(stored.code_hash, stored.id.bytes, code)
            if matches and born == person.birth_date:
                if now >= stored.expires_at:
                    raise Unauthenticated(
                        "this activation code has expired; ask for a new one", reason="ACTIVATION_CODE_EXPIRED"
                    )
                actor = Principal(subject=str(person.id), role="holder").to_actor()
                await tx.mark_code_used(stored.id, now)
                activated = await self.apply(person.id, Action.ACTIVATE, actor, now=now, store=tx)
                token = PASSWORD_SETUP_PREFIX + secrets.token_urlsafe(32)
                expires_at = now + PASSWORD_SETUP_VALIDITY
                await tx.insert_setup_token(_setup_digest(token), person.id, expires_at)
                return Activation(activated, token, expires_at)
            attempts = await tx.count_wrong_code(stored.id)
        # Out of the transaction, so that the wrong try stays counted.
        if attempts >= stored.max_attempts:
            raise PermissionDenied(
                "this activation code is locked after too many wrong tries; ask for a new one",
                reason="ACTIVATION_CODE_LOCKED",
            )
        raise _invalid_code()

    async def reissue_code(self, caller: Principal, person_id: uuid.UUID, channel: str) -> ReissuedCode:
        """A new code (the outstanding one stops working) and its notice, for a space not yet activated."""
        if caller.role not in AGENT_ROLES:
            raise PermissionDenied("only an agent may re-issue an activation code", reason="CALLER_NOT_ALLOWED")
        now = self._clock()
        async with self._store.transaction() as tx:
            person = await tx.person(person_id, for_update=True)
            if person is None:
                raise NotFound("no such person", reason="PERSON_NOT_FOUND")
            if person.state not in (AccountState.NOTIFIED, AccountState.CREATED_BY_DEFAULT):
                raise state_forbids(person.state.value, "reissue_activation_code")
            # A minor's code goes to the legal representative (PRODUCT.md), by e-mail.
            minor = is_minor(person.birth_date, now.date())
            representative = await tx.legal_representative_email(person_id) if minor else ""
            channel = "email" if representative else (channel or person.notice_channel)
            destination = representative or person.email
            if channel == "email" and not destination:
                raise FailedPrecondition("the person has no e-mail address", reason="NO_CONTACT_POINT")
            await tx.revoke_codes(person_id, now)
            fresh = new_code(person_id, channel, destination if channel == "email" else "")
            expires_at = now + ACTIVATION_CODE_VALIDITY
            await tx.insert_codes_and_notices([fresh], now, expires_at)
        masked = mask_email(destination) if channel == "email" else "courrier postal"
        return ReissuedCode(expires_at, channel, masked)

    # ---- password

    async def set_password(
        self, subject: str, new_password: str, *, setup_token: str = "", current_password: str = ""
    ) -> dt.datetime:
        """Set a password with the setup token from activation, or change it with the current one."""
        now = self._clock()
        account_id = parse_person_id(subject, "subject")
        if setup_token:
            async with self._store.transaction() as tx:
                owner = await tx.consume_setup_token(_setup_digest(setup_token), now)
                if owner != account_id:
                    raise Unauthenticated(
                        "the password setup token is not valid", reason="PASSWORD_SETUP_TOKEN_INVALID"
                    )
                person = await tx.person(account_id)
                assert person is not None
                self._check_policy(new_password, person)
                await tx.set_person_password(account_id, await self._hasher.hash(new_password), now)
            return now
        if not current_password:
            raise InvalidArgument(
                "give the password setup token or the current password", field="proof", reason="FIELD_INVALID"
            )
        person_record = await self._store.person(account_id)
        professional = None if person_record else await self._accounts.professional_by_id(account_id)
        kind = "person" if person_record else "professional"
        throttle_subject = throttle_subject_for_account(kind, str(account_id))
        await self._throttle.ensure_allowed(throttle_subject)
        stored_hash = person_record.password_hash if person_record else (professional.password_hash if professional else None)
        if not await self._hasher.verify(stored_hash, current_password):
            await self._throttle.record_failure(throttle_subject)
            raise Unauthenticated("wrong login or password", reason="INVALID_CREDENTIALS")
        if person_record is not None:
            self._check_policy(new_password, person_record)
            await self._store.set_person_password(account_id, await self._hasher.hash(new_password), now)
        else:
            check_password_policy(new_password)
            await self._store.set_professional_password(account_id, await self._hasher.hash(new_password), now)
        return now

    @staticmethod
    def _check_policy(password: str, person: Person) -> None:
        born = person.birth_date
        personal = [
            person.email.partition("@")[0],
            person.name.birth_name,
            person.name.used_name,
            *person.name.first_names,
            person.nir,
            born.strftime("%d%m%Y"),
            born.strftime("%Y%m%d"),
            str(born.year),
        ]
        check_password_policy(password, personal=personal)


@dataclasses.dataclass(frozen=True)
class PersonServices:
    """What the persons-and-lifecycle methods of the servicer need."""

    registry: PersonRegistry
    lifecycle: Lifecycle
