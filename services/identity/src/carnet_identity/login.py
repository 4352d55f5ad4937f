"""Login of holders and professionals: password, then a one-time code sent through notify.

PRODUCT.md: "every later login needs password + a one-time code sent by email or
SMS". Unknown login and wrong password get one answer (INVALID_CREDENTIALS) in
comparable time; the account's state is told only once the password is right.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable

from carnet_identity.domain.accounts import ensure_login_allowed, ensure_professional_login_allowed
from carnet_identity.domain.credentials import (
    ChallengeState,
    after_wrong_code,
    ensure_code_usable,
    mask_email,
    mask_phone,
    new_one_time_code,
    normalise_one_time_code,
    wrong_code_error,
)
from carnet_identity.domain.identifiers import LoginKind, parse_login
from carnet_identity.domain.model import AccountKind, Channel, LoginChallenge, Person, Professional, Session
from carnet_identity.hashing import SecretHasher
from carnet_identity.keys import utcnow
from carnet_identity.notifier import Notifier
from carnet_identity.sessions import SessionService, TokenGrant
from carnet_identity.store import IdentityStore
from carnet_identity.throttle import (
    LoginThrottle,
    throttle_subject_for_account,
    throttle_subject_for_address,
    throttle_subject_for_unknown_login,
)
from carnet_kit.errors import CarnetError, FailedPrecondition, Unauthenticated, Unavailable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoginAccount:
    """A holder's or professional's account, as login sees it."""

    kind: AccountKind
    id: uuid.UUID
    password_hash: str | None
    email: str
    mobile_phone: str
    one_time_code_channel: str
    person: Person | None = None
    professional: Professional | None = None

    @property
    def throttle_subject(self) -> str:
        """The key its failed logins are counted under."""
        return throttle_subject_for_account(self.kind.value, str(self.id))

    def ensure_may_log_in(self) -> None:
        """FAILED_PRECONDITION naming the state when the account may not log in."""
        if self.person is not None:
            ensure_login_allowed(self.person.state)
        if self.professional is not None:
            ensure_professional_login_allowed(self.professional.disabled)

    def code_destination(self) -> tuple[Channel, str]:
        """Where the one-time code goes: the preferred channel when it has a destination, else e-mail."""
        if self.one_time_code_channel == Channel.SMS and self.mobile_phone:
            return Channel.SMS, self.mobile_phone
        if self.email:
            return Channel.EMAIL, self.email
        if self.mobile_phone:
            return Channel.SMS, self.mobile_phone
        raise FailedPrecondition(
            "the account has no e-mail or mobile phone to send a one-time code to", reason="NO_CONTACT_POINT"
        )


def _person_account(person: Person) -> LoginAccount:
    return LoginAccount(
        AccountKind.PERSON,
        person.id,
        person.password_hash,
        person.email,
        person.mobile_phone,
        person.one_time_code_channel,
        person=person,
    )


def _professional_account(professional: Professional) -> LoginAccount:
    return LoginAccount(
        AccountKind.PROFESSIONAL,
        professional.id,
        professional.password_hash,
        professional.email,
        professional.mobile_phone,
        professional.one_time_code_channel,
        professional=professional,
    )


@dataclasses.dataclass(frozen=True)
class StartedLogin:
    """A one-time code is on its way."""

    challenge_id: uuid.UUID
    channel: Channel
    masked_destination: str
    expires_at: dt.datetime


class LoginService:
    """The two login steps."""

    def __init__(
        self,
        store: IdentityStore,
        hasher: SecretHasher,
        throttle: LoginThrottle,
        notifier: Notifier,
        sessions: SessionService,
        *,
        otp_ttl_seconds: int,
        otp_max_attempts: int,
        address_throttle: LoginThrottle | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._throttle = throttle
        self._address_throttle = address_throttle
        self._notifier = notifier
        self._sessions = sessions
        self._otp_ttl = dt.timedelta(seconds=otp_ttl_seconds)
        self._otp_max_attempts = otp_max_attempts
        self._clock = clock

    async def _accounts_for(self, login: str) -> tuple[list[LoginAccount], str]:
        """Accounts a login may name (an e-mail can be both a holder's and a professional's) and the throttle key."""
        identifier = parse_login(login)
        accounts: list[LoginAccount] = []
        if identifier.kind is LoginKind.INS:
            person = await self._store.person_by_nir(identifier.value)
            accounts = [_person_account(person)] if person else []
        elif identifier.kind is LoginKind.RPPS:
            professional = await self._store.professional_by_rpps(identifier.value)
            accounts = [_professional_account(professional)] if professional else []
        else:
            person = await self._store.person_by_email(identifier.value)
            if person is not None and person.password_set:
                accounts.append(_person_account(person))
            professional = await self._store.professional_by_email(identifier.value)
            if professional is not None:
                accounts.append(_professional_account(professional))
        subject = accounts[0].throttle_subject if accounts else throttle_subject_for_unknown_login(identifier.value)
        return accounts, subject

    async def start_login(self, login: str, password: str, *, client_address: str = "") -> StartedLogin:
        """Check login and password (throttled per account and per client address), then send a 6-digit one-time code through notify."""
        accounts, subject = await self._accounts_for(login)
        address_subject = throttle_subject_for_address(client_address) if client_address else ""
        if address_subject and self._address_throttle is not None:
            await self._address_throttle.ensure_allowed(address_subject)
        await self._throttle.ensure_allowed(subject)
        matched: LoginAccount | None = None
        if not accounts:
            await self._hasher.verify(None, password)
        for account in accounts:
            if await self._hasher.verify(account.password_hash, password):
                matched = account
                break
        if matched is None:
            await self._throttle.record_failure(subject)
            if address_subject and self._address_throttle is not None:
                await self._address_throttle.record_failure(address_subject)
            raise Unauthenticated("unknown login or wrong password", reason="INVALID_CREDENTIALS")
        matched.ensure_may_log_in()
        channel, destination = matched.code_destination()
        code = new_one_time_code()
        now = self._clock()
        challenge = LoginChallenge(
            id=uuid.uuid4(),
            account_kind=matched.kind,
            account_id=matched.id,
            code_hash=await self._hasher.hash(code),
            channel=channel.value,
            masked_destination=mask_phone(destination) if channel is Channel.SMS else mask_email(destination),
            state=ChallengeState.PENDING,
            attempts=0,
            max_attempts=self._otp_max_attempts,
            expires_at=now + self._otp_ttl,
            created_at=now,
        )
        await self._store.insert_challenge(challenge)
        try:
            await self._notifier.send_one_time_code(
                challenge_id=challenge.id,
                recipient_id=matched.id,
                channel=channel,
                destination=destination,
                code=code,
                expires_at=challenge.expires_at,
            )
        except Unavailable:
            await self._store.update_challenge(challenge.id, state=ChallengeState.UNDELIVERABLE, attempts=0)
            raise
        return StartedLogin(challenge.id, channel, challenge.masked_destination, challenge.expires_at)

    async def complete_login(self, challenge_id: str, code: str) -> TokenGrant:
        """Check the one-time code (5 tries, 10 minutes) and open a session."""
        try:
            challenge_uuid = uuid.UUID(challenge_id)
        except ValueError:
            raise Unauthenticated("unknown login challenge", reason="ONE_TIME_CODE_INVALID") from None
        now = self._clock()
        failure: CarnetError | None = None
        grant: TokenGrant | None = None
        subject = ""
        async with self._store.transaction() as tx:
            challenge = await tx.challenge_for_update(challenge_uuid)
            if challenge is None:
                raise Unauthenticated("unknown login challenge", reason="ONE_TIME_CODE_INVALID")
            ensure_code_usable(challenge.counters, now)
            try:
                typed = normalise_one_time_code(code)
            except Unauthenticated:
                typed = ""
            if not typed or not await self._hasher.verify(challenge.code_hash, typed):
                after = after_wrong_code(challenge.counters)
                await tx.update_challenge(challenge.id, state=after.state, attempts=after.attempts)
                failure = wrong_code_error(after)
            else:
                await tx.update_challenge(
                    challenge.id, state=ChallengeState.COMPLETED, attempts=challenge.attempts + 1, completed_at=now
                )
                grant = await self._sessions.open_session(tx, Session(challenge.account_kind, challenge.account_id))
                subject = throttle_subject_for_account(challenge.account_kind.value, str(challenge.account_id))
        if failure is not None:
            raise failure
        assert grant is not None
        await self._throttle.reset(subject)
        return grant
