"""The lifecycle of a person's space, and who an account lets in.

States (PRODUCT.md, "Lifecycle of a space"): a person enrolled from the insurer's
registry is *notified* and has 6 weeks to activate or object; without an answer the
space is *created by default*; it can be *suspended* (fraud) and is *closed* 6 weeks
later unless reopened; a closed space is archived 10 years then *deleted*.
"""

from __future__ import annotations

import datetime as dt
import enum

from carnet_kit.errors import FailedPrecondition

OPPOSITION_WINDOW = dt.timedelta(weeks=6)
ACTIVATION_CODE_VALIDITY = dt.timedelta(weeks=6)
SUSPENSION_BEFORE_CLOSURE = dt.timedelta(weeks=6)
AGE_OF_MAJORITY = 18


class AccountState(enum.StrEnum):
    """State of a person's space (values as stored)."""

    NOTIFIED = "notified"
    ACTIVE = "active"
    OPPOSED = "opposed"
    CREATED_BY_DEFAULT = "created_by_default"
    SUSPENDED = "suspended"
    CLOSED = "closed"
    DELETED = "deleted"


ALLOWED_TRANSITIONS: dict[AccountState, frozenset[AccountState]] = {
    AccountState.NOTIFIED: frozenset(
        {AccountState.ACTIVE, AccountState.OPPOSED, AccountState.CREATED_BY_DEFAULT, AccountState.SUSPENDED}
    ),
    AccountState.CREATED_BY_DEFAULT: frozenset(
        {AccountState.ACTIVE, AccountState.SUSPENDED, AccountState.CLOSED, AccountState.OPPOSED}
    ),
    AccountState.ACTIVE: frozenset({AccountState.SUSPENDED, AccountState.CLOSED}),
    AccountState.OPPOSED: frozenset({AccountState.NOTIFIED, AccountState.CREATED_BY_DEFAULT}),
    AccountState.SUSPENDED: frozenset({AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT, AccountState.CLOSED}),
    AccountState.CLOSED: frozenset({AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT, AccountState.DELETED}),
    AccountState.DELETED: frozenset(),
}

# States in which a holder who has set a password may log in.
LOGIN_STATES = frozenset({AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT})


def state_forbids(state: str, requested: str, allowed: frozenset[AccountState] | None = None) -> FailedPrecondition:
    """The error for something the account's current state does not allow, naming that state."""
    metadata = {"current_state": state, "requested": requested}
    if allowed is not None:
        metadata["allowed_states"] = " ".join(sorted(allowed))
    return FailedPrecondition(
        f"the account is {state}; {requested} is not allowed",
        reason="ACCOUNT_STATE_FORBIDS_TRANSITION",
        metadata=metadata,
    )


def check_transition(current: AccountState, target: AccountState) -> None:
    """FAILED_PRECONDITION with the current state unless ``current → target`` is allowed."""
    if target not in ALLOWED_TRANSITIONS[current]:
        raise state_forbids(current.value, target.value)


def ensure_login_allowed(state: AccountState) -> None:
    """A holder may log in only while the space is active or created by default.

    Checked after the password, so that the state is told only to the account's owner.
    """
    if state not in LOGIN_STATES:
        raise state_forbids(state.value, "login", LOGIN_STATES)


def ensure_professional_login_allowed(disabled: bool) -> None:
    """A disabled professional (e.g. struck off) may not log in."""
    if disabled:
        raise state_forbids("disabled", "login")


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Age in whole years on ``day``."""
    had_birthday = (day.month, day.day) >= (birth_date.month, birth_date.day)
    return day.year - birth_date.year - (0 if had_birthday else 1)


def majority_date(birth_date: dt.date) -> dt.date:
    """The 18th birthday (29 February births come of age on 1 March in common years)."""
    try:
        return birth_date.replace(year=birth_date.year + AGE_OF_MAJORITY)
    except ValueError:
        return dt.date(birth_date.year + AGE_OF_MAJORITY, 3, 1)


def is_minor(birth_date: dt.date, day: dt.date) -> bool:
    """Whether a person born on ``birth_date`` is under 18 on ``day``."""
    return day < majority_date(birth_date)


def representation_in_force(valid_from: dt.datetime, valid_until: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a legal representation or helper nomination applies at ``now``."""
    return valid_from <= now and (valid_until is None or now < valid_until)
