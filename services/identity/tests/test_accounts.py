"""Account lifecycle rules: transitions, who may log in, minors."""

from __future__ import annotations

import datetime as dt

import pytest

from carnet_identity.domain.accounts import (
    ALLOWED_TRANSITIONS,
    AccountState,
    check_transition,
    ensure_login_allowed,
    is_minor,
    majority_date,
    representation_in_force,
)
from carnet_kit.errors import FailedPrecondition


def test_every_state_has_its_transitions_declared() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(AccountState)
    assert ALLOWED_TRANSITIONS[AccountState.DELETED] == frozenset()


def test_a_forbidden_transition_names_the_current_state() -> None:
    check_transition(AccountState.NOTIFIED, AccountState.ACTIVE)
    with pytest.raises(FailedPrecondition) as caught:
        check_transition(AccountState.OPPOSED, AccountState.ACTIVE)
    assert caught.value.reason == "ACCOUNT_STATE_FORBIDS_TRANSITION"
    assert caught.value.metadata["current_state"] == "opposed"
    assert caught.value.metadata["requested"] == "active"


@pytest.mark.parametrize("state", [AccountState.ACTIVE, AccountState.CREATED_BY_DEFAULT])
def test_active_and_created_by_default_spaces_may_log_in(state: AccountState) -> None:
    ensure_login_allowed(state)


@pytest.mark.parametrize(
    "state",
    [AccountState.NOTIFIED, AccountState.OPPOSED, AccountState.SUSPENDED, AccountState.CLOSED, AccountState.DELETED],
)
def test_other_states_may_not_log_in(state: AccountState) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        ensure_login_allowed(state)
    assert caught.value.metadata["current_state"] == state.value


def test_majority_is_the_eighteenth_birthday() -> None:
    lea = dt.date(2015, 11, 3)
    assert majority_date(lea) == dt.date(2033, 11, 3)
    assert is_minor(lea, dt.date(2033, 11, 2))
    assert not is_minor(lea, dt.date(2033, 11, 3))
    assert majority_date(dt.date(2008, 2, 29)) == dt.date(2026, 3, 1)


def test_representation_applies_only_within_its_period() -> None:
    start = dt.datetime(2015, 11, 3, tzinfo=dt.UTC)
    end = dt.datetime(2033, 11, 3, tzinfo=dt.UTC)
    assert representation_in_force(start, end, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert not representation_in_force(start, end, end)
    assert representation_in_force(start, None, dt.datetime(2090, 1, 1, tzinfo=dt.UTC))
