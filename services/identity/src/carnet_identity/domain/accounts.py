"""The lifecycle of a person's space, and who an account lets in.

States (PRODUCT.md, "Lifecycle of a space"): a person enrolled from the insurer's
registry is *notified* and has 6 weeks to activate or object; without an answer the
space is *created by default*; it can be *suspended* (fraud) and is *closed* 6 weeks
later unless reopened; a closed space is archived 10 years then *deleted*.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from carnet_kit.errors import FailedPrecondition

OPPOSITION_WINDOW = dt.timedelta(weeks=6)
ACTIVATION_CODE_VALIDITY = dt.timedelta(weeks=6)
SUSPENSION_BEFORE_CLOSURE = dt.timedelta(weeks=6)
ARCHIVE_YEARS = 10
# A deletion request is carried out after this cooling-off period (reopening cancels
# it), well inside the 3 months PRODUCT.md promises.
DELETION_DELAY = dt.timedelta(days=30)
DELETION_PROMISE = dt.timedelta(days=90)
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
    AccountState.SUSPENDED: frozenset(
        {AccountState.NOTIFIED, AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT, AccountState.CLOSED}
    ),
    AccountState.CLOSED: frozenset(
        {AccountState.NOTIFIED, AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT, AccountState.DELETED}
    ),
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


class Action(enum.StrEnum):
    """What can happen to a space; each action leads from some states to one (or a restored) state."""

    ACTIVATE = "activate"
    OPPOSE = "oppose"
    WITHDRAW_OPPOSITION = "withdraw_opposition"
    CREATE_BY_DEFAULT = "create_by_default"
    SUSPEND = "suspend"
    CLOSE = "close"
    REOPEN = "reopen"
    DELETE = "delete"
    REQUEST_DELETION = "request_deletion"


# The states each action starts from (the lifecycle as a table; see the module docstring).
ACTION_SOURCES: dict[Action, frozenset[AccountState]] = {
    Action.ACTIVATE: frozenset({AccountState.NOTIFIED, AccountState.CREATED_BY_DEFAULT}),
    Action.OPPOSE: frozenset({AccountState.NOTIFIED, AccountState.CREATED_BY_DEFAULT}),
    Action.WITHDRAW_OPPOSITION: frozenset({AccountState.OPPOSED}),
    Action.CREATE_BY_DEFAULT: frozenset({AccountState.NOTIFIED}),
    Action.SUSPEND: frozenset({AccountState.NOTIFIED, AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT}),
    Action.CLOSE: frozenset({AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT, AccountState.SUSPENDED}),
    Action.REOPEN: frozenset({AccountState.SUSPENDED, AccountState.CLOSED}),
    Action.DELETE: frozenset({AccountState.CLOSED}),
    Action.REQUEST_DELETION: frozenset(
        {AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT, AccountState.SUSPENDED, AccountState.CLOSED}
    ),
}

# States a reopened space can come back to (what it was before suspension or closure).
RESTORABLE_STATES = frozenset({AccountState.NOTIFIED, AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT})


@dataclasses.dataclass(frozen=True)
class SpaceStatus:
    """The lifecycle facts of one space, as stored."""

    state: AccountState
    previous_state: AccountState | None
    opposition_deadline: dt.datetime | None
    closed_at: dt.datetime | None
    archive_until: dt.datetime | None
    scheduled_delete_at: dt.datetime | None
    deletion_requested_at: dt.datetime | None
    activated_at: dt.datetime | None
    reason: str = ""


def add_years(moment: dt.datetime, years: int) -> dt.datetime:
    """``moment`` plus whole calendar years (29 February → 28 February)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def window_state(opposition_deadline: dt.datetime | None, now: dt.datetime) -> AccountState:
    """Where a space not yet activated stands: notified inside the window, created by default after it."""
    if opposition_deadline is not None and now < opposition_deadline:
        return AccountState.NOTIFIED
    return AccountState.CREATED_BY_DEFAULT


def apply_action(status: SpaceStatus, action: Action, now: dt.datetime, reason: str = "") -> SpaceStatus:
    """The space after ``action`` at ``now``; FAILED_PRECONDITION naming the current state if not allowed.

    Closing archives the data until +10 years; a deletion request schedules deletion
    after :data:`DELETION_DELAY` (within the 3 months promised); reopening restores the
    state the space had before its suspension or closure and cancels a pending deletion;
    withdrawing an opposition puts the space back in the window if it is still open,
    else creates it by default.
    """
    current = status.state
    if current not in ACTION_SOURCES[action]:
        raise state_forbids(current.value, action.value, ACTION_SOURCES[action])
    keep = dataclasses.replace(status, reason=reason)
    if action is Action.ACTIVATE:
        target = dataclasses.replace(keep, state=AccountState.ACTIVE, activated_at=now)
    elif action is Action.OPPOSE:
        target = dataclasses.replace(keep, state=AccountState.OPPOSED)
    elif action is Action.WITHDRAW_OPPOSITION:
        target = dataclasses.replace(keep, state=window_state(status.opposition_deadline, now))
    elif action is Action.CREATE_BY_DEFAULT:
        target = dataclasses.replace(keep, state=AccountState.CREATED_BY_DEFAULT)
    elif action is Action.SUSPEND:
        target = dataclasses.replace(keep, state=AccountState.SUSPENDED, previous_state=current, closed_at=now)
    elif action is Action.CLOSE:
        previous = status.previous_state if current is AccountState.SUSPENDED else current
        archive_until = add_years(now, ARCHIVE_YEARS)
        target = dataclasses.replace(
            keep,
            state=AccountState.CLOSED,
            previous_state=previous,
            closed_at=now,
            archive_until=archive_until,
            scheduled_delete_at=archive_until,
        )
    elif action is Action.REOPEN:
        restored = status.previous_state or AccountState.CREATED_BY_DEFAULT
        if restored is AccountState.NOTIFIED:
            restored = window_state(status.opposition_deadline, now)
        target = dataclasses.replace(
            keep,
            state=restored,
            previous_state=None,
            closed_at=None,
            archive_until=None,
            scheduled_delete_at=None,
            deletion_requested_at=None,
        )
    elif action is Action.DELETE:
        target = dataclasses.replace(keep, state=AccountState.DELETED)
    else:
        closed = status if current is AccountState.CLOSED else apply_action(status, Action.CLOSE, now, reason)
        delete_at = now + DELETION_DELAY
        if closed.scheduled_delete_at is not None:
            delete_at = min(delete_at, closed.scheduled_delete_at)
        target = dataclasses.replace(closed, reason=reason, scheduled_delete_at=delete_at, deletion_requested_at=now)
    check_transition_or_same(current, target.state, action)
    return target


def check_transition_or_same(current: AccountState, target: AccountState, action: Action) -> None:
    """Every action result must be in :data:`ALLOWED_TRANSITIONS` (or leave the state as it is)."""
    if target is not current and target not in ALLOWED_TRANSITIONS[current]:
        raise state_forbids(current.value, action.value)
