"""Rules about secrets: password policy, one-time codes, activation codes, refresh tokens, scopes.

Nothing here touches a database or a clock of its own: times are passed in, random
values come from :mod:`secrets`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import itertools
import secrets
from collections.abc import Iterable, Sequence

from carnet_kit.errors import InvalidArgument, PermissionDenied, Unauthenticated

PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 128
PASSWORD_MIN_DISTINCT_CHARACTERS = 6

ONE_TIME_CODE_DIGITS = 6
ONE_TIME_CODE_MAX_ATTEMPTS = 5

# Unambiguous alphabet for codes people copy from a letter: no 0/O, 1/I/L, 5/S, 2/Z, 8/B.
ACTIVATION_CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
# 12 characters of 25: about 55.7 bits, enough for a fast keyed digest (see activation_code_digest).
ACTIVATION_CODE_LENGTH = 12
ACTIVATION_CODE_DIGEST_PREFIX = "sha256$"
ACTIVATION_CODE_MAX_ATTEMPTS = 5

REFRESH_TOKEN_PREFIX = "crt_"
REFRESH_TOKEN_BYTES = 32

# Bases of the most common passwords (lower-cased, digits and symbols stripped at the
# ends before comparison, so "Password2024!" counts as "password").
_COMMON_PASSWORD_BASES = frozenset(
    {
        "password",
        "passw0rd",
        "motdepasse",
        "azerty",
        "azertyuiop",
        "qwerty",
        "qwertyuiop",
        "abc",
        "abcdef",
        "abcdefgh",
        "iloveyou",
        "jetaime",
        "admin",
        "administrator",
        "welcome",
        "bienvenue",
        "letmein",
        "monkey",
        "dragon",
        "football",
        "baseball",
        "soleil",
        "doudou",
        "chouchou",
        "loulou",
        "marseille",
        "paris",
        "france",
        "nicolas",
        "camille",
        "sante",
        "santé",
        "carnet",
        "carnetsante",
        "secret",
        "changeme",
        "master",
        "sunshine",
        "princess",
        "trustno",
        "superman",
        "batman",
        "starwars",
        "pokemon",
        "qwertz",
        "azertyui",
        "bonjour",
        "coucou",
        "default",
        "user",
        "login",
        "test",
        "toto",
        "tata",
        "titi",
        "hello",
        "freedom",
        "whatever",
    }
)
_COMMON_SEQUENCES = ("0123456789", "9876543210", "abcdefghijklmnopqrstuvwxyz", "azertyuiop", "qwertyuiop")


def check_password_policy(password: str, *, personal: Iterable[str] = ()) -> None:
    """Refuse passwords that are short, common, repetitive or built on the person's own data.

    ``personal`` holds values an attacker would try first (login, e-mail local part,
    names, birth date); a password containing one of them (4 characters or more) is
    refused. Composition rules (one capital, one symbol…) are deliberately absent:
    length and rarity are what resist guessing (NIST SP 800-63B, ANSSI).
    """
    if len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidArgument(
            f"the password must have at least {PASSWORD_MIN_LENGTH} characters",
            field="password",
            reason="PASSWORD_TOO_WEAK",
            metadata={"rule": "min_length"},
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise InvalidArgument(
            f"the password must have at most {PASSWORD_MAX_LENGTH} characters",
            field="password",
            reason="PASSWORD_TOO_WEAK",
            metadata={"rule": "max_length"},
        )
    lowered = password.lower()
    if len(set(lowered)) < PASSWORD_MIN_DISTINCT_CHARACTERS:
        raise InvalidArgument(
            "the password repeats too few characters",
            field="password",
            reason="PASSWORD_TOO_WEAK",
            metadata={"rule": "variety"},
        )
    core = lowered.strip("0123456789!?.,;:-_@#$%&*+=/\\ '\"()[]{}")
    if (
        core in _COMMON_PASSWORD_BASES
        or any(lowered in sequence or (core and core in sequence) for sequence in _COMMON_SEQUENCES)
        or _mostly_sequential(lowered)
    ):
        raise InvalidArgument(
            "the password is too common", field="password", reason="PASSWORD_TOO_WEAK", metadata={"rule": "common"}
        )
    for value in personal:
        value = value.strip().lower()
        if len(value) >= 4 and value in lowered:
            raise InvalidArgument(
                "the password must not contain your login, name or birth date",
                field="password",
                reason="PASSWORD_TOO_WEAK",
                metadata={"rule": "personal"},
            )


def _mostly_sequential(text: str) -> bool:
    """Whether most neighbouring characters are consecutive (``123456789012``, ``abcdefghij``)."""
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(text)]
    return sum(1 for step in steps if step in (-1, 1)) >= 0.7 * len(steps)


def new_one_time_code() -> str:
    """A uniformly random 6-digit login code."""
    return f"{secrets.randbelow(10**ONE_TIME_CODE_DIGITS):0{ONE_TIME_CODE_DIGITS}d}"


def normalise_one_time_code(text: str) -> str:
    """The code as typed, without spaces; UNAUTHENTICATED if it cannot be a code at all."""
    code = "".join(text.split())
    if len(code) != ONE_TIME_CODE_DIGITS or not code.isdigit():
        raise Unauthenticated("the one-time code is not valid", reason="ONE_TIME_CODE_INVALID")
    return code


def new_activation_code() -> str:
    """A temporary activation code from an unambiguous alphabet (≈56 bits).

    Drawn from 80 random bits reduced modulo 25^12 (bias below 10^-7), which is much
    faster than one ``secrets.choice`` per character when a million are made at once.
    """
    value = int.from_bytes(secrets.token_bytes(10), "big")
    base = len(ACTIVATION_CODE_ALPHABET)
    chars = []
    for _ in range(ACTIVATION_CODE_LENGTH):
        value, digit = divmod(value, base)
        chars.append(ACTIVATION_CODE_ALPHABET[digit])
    return "".join(chars)


def activation_code_digest(code_id: bytes, code: str) -> str:
    """How an activation code is stored: SHA-256 over its row id and the code.

    Not argon2id: a code is a ≈56-bit random secret, not a human-chosen password, so a
    slow hash adds nothing against guessing online (5 tries, then locked) and would
    cost ~50 ms of CPU per person at enrolment (14 hours for a million). Offline, the
    row id acts as a salt (no multi-target search) and 2^55 SHA-256 per code exceeds
    what a stolen database is worth within the code's 6 weeks of validity.
    """
    return ACTIVATION_CODE_DIGEST_PREFIX + hashlib.sha256(code_id + code.encode()).hexdigest()


def activation_code_matches(stored: str, code_id: bytes, code: str) -> bool:
    """Whether ``code`` is the one stored as ``stored`` (a digest from :func:`activation_code_digest`)."""
    return secrets.compare_digest(stored, activation_code_digest(code_id, code))


def normalise_activation_code(text: str) -> str:
    """An activation code as typed: case, spaces and dashes do not matter."""
    return "".join(char for char in text.upper() if char not in " -\t")


class ChallengeState(enum.StrEnum):
    """Where a login challenge (one-time code) stands."""

    PENDING = "pending"
    COMPLETED = "completed"
    LOCKED = "locked"
    UNDELIVERABLE = "undeliverable"


@dataclasses.dataclass(frozen=True)
class CodeAttempts:
    """The counters of a code that allows a limited number of tries before a deadline."""

    state: ChallengeState
    expires_at: dt.datetime
    attempts: int
    max_attempts: int = ONE_TIME_CODE_MAX_ATTEMPTS

    @property
    def remaining(self) -> int:
        """Tries left."""
        return max(0, self.max_attempts - self.attempts)


def ensure_code_usable(challenge: CodeAttempts, now: dt.datetime) -> None:
    """Refuse a one-time code that was used, locked, never delivered, or is past its 10 minutes."""
    if challenge.state is ChallengeState.COMPLETED:
        raise Unauthenticated("this login challenge was already used", reason="ONE_TIME_CODE_INVALID")
    if challenge.state is ChallengeState.UNDELIVERABLE:
        raise Unauthenticated("the one-time code of this challenge was never sent", reason="ONE_TIME_CODE_INVALID")
    if challenge.state is ChallengeState.LOCKED or challenge.remaining == 0:
        raise PermissionDenied(
            "too many wrong codes; start the login again",
            reason="ONE_TIME_CODE_LOCKED",
            metadata={"remaining_attempts": "0"},
        )
    if now >= challenge.expires_at:
        raise Unauthenticated("the one-time code has expired; start the login again", reason="ONE_TIME_CODE_EXPIRED")


def after_wrong_code(challenge: CodeAttempts) -> CodeAttempts:
    """The challenge after one more wrong code: locked once the tries are used up."""
    attempts = challenge.attempts + 1
    state = ChallengeState.LOCKED if attempts >= challenge.max_attempts else challenge.state
    return dataclasses.replace(challenge, attempts=attempts, state=state)


def wrong_code_error(challenge: CodeAttempts) -> Unauthenticated | PermissionDenied:
    """What to answer after a wrong code: how many tries are left, or that the challenge is locked."""
    if challenge.state is ChallengeState.LOCKED:
        return PermissionDenied(
            "too many wrong codes; start the login again",
            reason="ONE_TIME_CODE_LOCKED",
            metadata={"remaining_attempts": "0"},
        )
    return Unauthenticated(
        "the one-time code is not valid",
        reason="ONE_TIME_CODE_INVALID",
        metadata={"remaining_attempts": str(challenge.remaining)},
    )


def new_refresh_token() -> str:
    """An opaque, high-entropy refresh token."""
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def refresh_token_digest(token: str) -> bytes:
    """How a refresh token is stored: SHA-256 (the token has 256 bits of entropy, so no salt is needed)."""
    return hashlib.sha256(token.encode()).digest()


def looks_like_refresh_token(token: str) -> bool:
    """Whether a token has the refresh-token shape (access tokens are JWTs)."""
    return token.startswith(REFRESH_TOKEN_PREFIX)


def grant_scopes(allowed: Sequence[str], requested: Sequence[str]) -> tuple[str, ...]:
    """The scopes a client gets: all it is allowed when it asks for none, else exactly what it asks.

    Asking for a scope the client is not granted is refused as a whole (RFC 6749 §5.2
    ``invalid_scope``) rather than silently narrowed, so that a misconfigured client
    fails loudly.
    """
    wanted = [scope for text in requested for scope in text.split()]
    if not wanted:
        return tuple(allowed)
    refused = sorted(set(wanted) - set(allowed))
    if refused:
        raise PermissionDenied(
            f"scope not granted to this client: {' '.join(refused)}",
            reason="SCOPE_NOT_ALLOWED",
            metadata={"scopes": " ".join(refused)},
        )
    return tuple(dict.fromkeys(wanted))


def mask_email(address: str) -> str:
    """An e-mail shown to the person without revealing it: ``c***@demo.carnet.test``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_phone(number: str) -> str:
    """A phone number shown with only its last two digits: ``+33 6** ** ** 12``."""
    digits = number.replace(" ", "")
    if digits.startswith("+33") and len(digits) == 12:
        return f"+33 {digits[3]}** ** ** {digits[-2:]}"
    return "*" * max(0, len(digits) - 2) + digits[-2:]
