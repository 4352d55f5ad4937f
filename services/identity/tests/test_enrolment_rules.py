"""Pure rules of enrolment and of the lifecycle: field checks, CSV lines, the state machine table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from carnet_identity.domain.accounts import (
    ACTION_SOURCES,
    DELETION_DELAY,
    DELETION_PROMISE,
    AccountState,
    Action,
    SpaceStatus,
    apply_action,
)
from carnet_identity.domain.credentials import (
    ACTIVATION_CODE_ALPHABET,
    activation_code_digest,
    activation_code_matches,
    new_activation_code,
)
from carnet_identity.domain.enrolment import check_person
from carnet_identity.domain.identifiers import ins_key
from carnet_identity.domain.model import Channel
from carnet_identity.enrolment import CsvLines
from carnet_identity.notices import notice_parameters, notice_route, retry_delay
from carnet_identity.store_persons import DueNotice
from carnet_kit.errors import FailedPrecondition, InvalidArgument

TODAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
NIR = "2840575120005"
CORSICA_NIR = "185032A123456"


def record(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "ins": NIR + ins_key(NIR),
        "ins_type": "nir",
        "birth_name": "MARTIN",
        "used_name": "",
        "first_names": ["Camille"],
        "used_first_name": "",
        "sex": "F",
        "birth_date": "1984-05-12",
        "birth_place_code": "75056",
        "email": "camille@example.org",
        "mobile_phone": "06 12 34 56 78",
        "postal_address": None,
        "department_code": "75",
        "today": TODAY,
    }
    values.update(changes)
    return values


def test_a_well_formed_record_is_normalised() -> None:
    traits = check_person(**record())  # type: ignore[arg-type]
    assert (traits.nir, traits.ins_key, traits.mobile_phone) == (NIR, ins_key(NIR), "+33612345678")
    assert traits.birth_date == dt.date(1984, 5, 12) and traits.birth_date_precision == "day"
    assert traits.notice_channel == "email"
    assert check_person(**record(email="")).notice_channel == "letter"  # type: ignore[arg-type]


def test_corsican_and_nia_numbers_are_accepted_with_their_keys() -> None:
    assert ins_key(CORSICA_NIR) == f"{97 - int('185031912345' + '6') % 97:02d}"
    traits = check_person(**record(ins=CORSICA_NIR + ins_key(CORSICA_NIR), department_code="2a"))  # type: ignore[arg-type]
    assert (traits.nir, traits.department_code) == (CORSICA_NIR, "2A")
    nia = check_person(**record(ins_type="NIA"))  # type: ignore[arg-type]
    assert nia.ins_type == "nia"


def test_partial_birth_dates_keep_their_precision() -> None:
    assert check_person(**record(birth_date="1950")).birth_date_precision == "year"  # type: ignore[arg-type]
    assert check_person(**record(birth_date="1950-07")).birth_date_precision == "month"  # type: ignore[arg-type]
    assert check_person(**record(birth_date=(1950, 7, 0))).birth_date_precision == "month"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"ins": "12345"}, "ins", "INS_MALFORMED"),
        ({"ins": "9840575120005" + "00"}, "ins", "INS_MALFORMED"),
        ({"ins": NIR + f"{int(ins_key(NIR)) % 97 + 1:02d}"}, "ins", "INS_KEY_MISMATCH"),
        ({"ins": NIR + "AB"}, "ins", "INS_MALFORMED"),
        ({"ins": CORSICA_NIR + f"{int(ins_key(CORSICA_NIR)) % 97 + 1:02d}"}, "ins", "INS_KEY_MISMATCH"),
        ({"ins_type": "passport"}, "ins_type", "FIELD_INVALID"),
        ({"birth_date": "2023-02-30"}, "birth_date", "BIRTH_DATE_INVALID"),
        ({"birth_date": "2027-01-01"}, "birth_date", "BIRTH_DATE_INVALID"),
        ({"birth_date": "1850-01-01"}, "birth_date", "BIRTH_DATE_INVALID"),
        ({"birth_date": "12/05/1984"}, "birth_date", "BIRTH_DATE_INVALID"),
        ({"birth_date": (1984, 13, 1)}, "birth_date", "BIRTH_DATE_INVALID"),
        ({"birth_date": (1984, 0, 5)}, "birth_date", "BIRTH_DATE_INVALID"),
        ({"sex": "X"}, "sex", "FIELD_INVALID"),
        ({"sex": ""}, "sex", "FIELD_INVALID"),
        ({"department_code": "20"}, "department_code", "FIELD_INVALID"),
        ({"department_code": "96"}, "department_code", "FIELD_INVALID"),
        ({"department_code": "2C"}, "department_code", "FIELD_INVALID"),
        ({"birth_name": "  "}, "birth_name", "FIELD_INVALID"),
        ({"first_names": []}, "first_names", "FIELD_INVALID"),
        ({"email": "not-an-address"}, "email", "FIELD_INVALID"),
        ({"mobile_phone": "12"}, "mobile_phone", "FIELD_INVALID"),
        ({"birth_place_code": "7505"}, "birth_place_code", "FIELD_INVALID"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(changes: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_person(**record(**changes))  # type: ignore[arg-type]
    assert (caught.value.metadata["field"], caught.value.reason) == (field, reason)


def test_field_names_can_be_those_of_the_request() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_person(**record(sex="Q", fields={"sex": "person.sex"}))  # type: ignore[arg-type]
    assert caught.value.metadata["field"] == "person.sex"


def test_overseas_departements_are_accepted() -> None:
    for code in ("971", "972", "973", "974", "976", "2B", "01", "95"):
        assert check_person(**record(department_code=code)).department_code == code  # type: ignore[arg-type]


def test_csv_lines_are_numbered_across_chunks_and_the_delimiter_is_detected() -> None:
    lines = CsvLines()
    got = lines.feed("\ufeffins;birth_name\n1;DU".encode())
    got += lines.feed(b"PONT\n\n2;MARTIN\r\n")
    got += lines.feed(b"3;LEROY")
    got += lines.finish()
    assert got == [(1, ["ins", "birth_name"]), (2, ["1", "DUPONT"]), (4, ["2", "MARTIN"]), (5, ["3", "LEROY"])]


def test_csv_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        CsvLines().feed("ins\nMÜLLER\n".encode("latin-1"))


def test_activation_codes_are_long_unambiguous_and_stored_as_salted_digests() -> None:
    codes = {new_activation_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(code) == 12 and set(code) <= set(ACTIVATION_CODE_ALPHABET) for code in codes)
    code_id = uuid.uuid4().bytes
    digest = activation_code_digest(code_id, "ACDEFGHJKMNP")
    assert "ACDEFGHJKMNP" not in digest
    assert activation_code_matches(digest, code_id, "ACDEFGHJKMNP")
    assert not activation_code_matches(digest, uuid.uuid4().bytes, "ACDEFGHJKMNP")
    assert not activation_code_matches(digest, code_id, "ACDEFGHJKMNQ")


def test_notice_retries_back_off_up_to_an_hour() -> None:
    assert retry_delay(0) == dt.timedelta(seconds=5)
    assert retry_delay(1) == dt.timedelta(seconds=10)
    assert retry_delay(50) == dt.timedelta(hours=1)


# ---- the state machine


def status(state: AccountState, **changes: object) -> SpaceStatus:
    values: dict[str, object] = {
        "state": state,
        "previous_state": None,
        "opposition_deadline": NOW + dt.timedelta(weeks=3),
        "closed_at": None,
        "archive_until": None,
        "scheduled_delete_at": None,
        "deletion_requested_at": None,
        "activated_at": None,
    }
    values.update(changes)
    return SpaceStatus(**values)  # type: ignore[arg-type]


EXPECTED_TARGET = {
    Action.ACTIVATE: AccountState.ACTIVE,
    Action.OPPOSE: AccountState.OPPOSED,
    Action.CREATE_BY_DEFAULT: AccountState.CREATED_BY_DEFAULT,
    Action.SUSPEND: AccountState.SUSPENDED,
    Action.CLOSE: AccountState.CLOSED,
    Action.DELETE: AccountState.DELETED,
    Action.REQUEST_DELETION: AccountState.CLOSED,
}

ALL_PAIRS = [(state, action) for state in AccountState for action in Action]


@pytest.mark.parametrize(("state", "action"), [pair for pair in ALL_PAIRS if pair[0] in ACTION_SOURCES[pair[1]]])
def test_every_allowed_transition_leads_where_the_lifecycle_says(state: AccountState, action: Action) -> None:
    after = apply_action(status(state, previous_state=AccountState.ACTIVE), action, NOW, "why")
    if action in EXPECTED_TARGET:
        assert after.state is EXPECTED_TARGET[action]
    elif action is Action.REOPEN:
        assert after.state is AccountState.ACTIVE
    else:
        assert after.state is AccountState.NOTIFIED
    assert after.reason == "why"


@pytest.mark.parametrize(("state", "action"), [pair for pair in ALL_PAIRS if pair[0] not in ACTION_SOURCES[pair[1]]])
def test_every_forbidden_transition_names_the_current_state(state: AccountState, action: Action) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        apply_action(status(state), action, NOW)
    assert caught.value.reason == "ACCOUNT_STATE_FORBIDS_TRANSITION"
    assert caught.value.metadata["current_state"] == state.value
    assert caught.value.metadata["requested"] == action.value


def test_closing_archives_for_ten_years_and_reopening_restores_the_state_before() -> None:
    closed = apply_action(status(AccountState.ACTIVE), Action.CLOSE, NOW)
    assert closed.archive_until == NOW.replace(year=2036)
    assert closed.scheduled_delete_at == closed.archive_until
    assert closed.previous_state is AccountState.ACTIVE
    reopened = apply_action(closed, Action.REOPEN, NOW)
    assert reopened.state is AccountState.ACTIVE
    assert (reopened.closed_at, reopened.archive_until, reopened.scheduled_delete_at) == (None, None, None)


def test_a_suspended_space_is_closed_and_reopened_to_what_it_was_before_suspension() -> None:
    suspended = apply_action(status(AccountState.CREATED_BY_DEFAULT), Action.SUSPEND, NOW, "fraud")
    assert (suspended.state, suspended.previous_state, suspended.closed_at) == (
        AccountState.SUSPENDED,
        AccountState.CREATED_BY_DEFAULT,
        NOW,
    )
    closed = apply_action(suspended, Action.CLOSE, NOW + dt.timedelta(weeks=6))
    assert closed.previous_state is AccountState.CREATED_BY_DEFAULT
    assert apply_action(closed, Action.REOPEN, NOW).state is AccountState.CREATED_BY_DEFAULT


def test_a_space_suspended_inside_the_window_reopens_by_the_window() -> None:
    suspended = apply_action(status(AccountState.NOTIFIED), Action.SUSPEND, NOW)
    assert apply_action(suspended, Action.REOPEN, NOW).state is AccountState.NOTIFIED
    late = NOW + dt.timedelta(weeks=4)
    assert apply_action(suspended, Action.REOPEN, late).state is AccountState.CREATED_BY_DEFAULT


def test_a_deletion_request_closes_and_schedules_deletion_within_three_months() -> None:
    asked = apply_action(status(AccountState.ACTIVE), Action.REQUEST_DELETION, NOW, "je pars")
    assert asked.state is AccountState.CLOSED
    assert asked.scheduled_delete_at == NOW + DELETION_DELAY
    assert asked.scheduled_delete_at is not None and asked.scheduled_delete_at <= NOW + DELETION_PROMISE
    assert asked.deletion_requested_at == NOW
    again = apply_action(asked, Action.REQUEST_DELETION, NOW + dt.timedelta(days=10))
    assert again.scheduled_delete_at == asked.scheduled_delete_at
    assert apply_action(asked, Action.REOPEN, NOW).deletion_requested_at is None


def test_withdrawing_an_opposition_returns_to_the_window_or_creates_by_default_after_it() -> None:
    opposed = status(AccountState.OPPOSED)
    assert apply_action(opposed, Action.WITHDRAW_OPPOSITION, NOW).state is AccountState.NOTIFIED
    after_deadline = NOW + dt.timedelta(weeks=4)
    assert apply_action(opposed, Action.WITHDRAW_OPPOSITION, after_deadline).state is AccountState.CREATED_BY_DEFAULT


def test_a_minors_notice_goes_to_the_legal_representative_by_email() -> None:
    notice = DueNotice(
        code_id=uuid.uuid4(),
        person_id=uuid.uuid4(),
        channel="letter",
        email="",
        code="ACDEFGHJKMNP",
        attempts=0,
        first_name="Lina",
        opposition_deadline=NOW,
        postal_address={"lines": ["3 place du Marché"], "postal_code": "69001", "city": "Lyon"},
        birth_date=dt.date(2015, 5, 4),
        representative_email="parent@example.org",
    )
    assert notice_route(notice, TODAY) == (Channel.EMAIL, "parent@example.org")
    adult = dataclasses.replace(notice, birth_date=dt.date(2000, 5, 4))
    assert notice_route(adult, TODAY) == (Channel.LETTER, "")
    assert notice_parameters(adult)["postal_address"] == "3 place du Marché\n69001 Lyon"
    assert notice_parameters(adult)["opposition_deadline"] == "23/11/2026"
