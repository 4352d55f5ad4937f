"""Prevention reminders due by age and sex (carnet_notify.prevention), table-driven."""

from __future__ import annotations

import datetime as dt

import pytest

from carnet_notify.prevention import Program, age_on, anniversary, due_on, to_send


def programs(birth: dt.date, sex: str, day: dt.date) -> set[str]:
    return {due.program.value for due in due_on(birth, sex, day)}


D = dt.date
W, M = "F", "M"


@pytest.mark.parametrize(
    ("birth", "sex", "day", "expected"),
    [
        (D(2008, 5, 1), W, D(2026, 4, 30), set()),  # 17 and 364 days: nothing yet
        (D(2008, 5, 1), W, D(2026, 5, 1), {"CHECKUP_18_25"}),
        (D(2001, 5, 1), M, D(2026, 5, 1), {"CHECKUP_18_25", "VACCINATION"}),  # 25: last check-up year, booster
        (D(2001, 5, 1), W, D(2026, 5, 1), {"CHECKUP_18_25", "CERVICAL_SCREENING", "VACCINATION"}),
        (D(2000, 5, 1), W, D(2026, 5, 1), {"CERVICAL_SCREENING"}),  # 26
        (D(1990, 1, 1), W, D(2026, 6, 1), {"CERVICAL_SCREENING"}),  # 36
        (D(1980, 6, 1), M, D(2026, 6, 1), {"CHECKUP_45_50"}),  # 46
        (D(1981, 6, 1), M, D(2026, 6, 1), {"CHECKUP_45_50", "VACCINATION"}),  # 45: booster
        (
            D(1976, 6, 1),
            W,
            D(2026, 6, 1),
            {"CHECKUP_45_50", "CERVICAL_SCREENING", "BREAST_SCREENING", "COLORECTAL_SCREENING"},
        ),  # 50
        (D(1976, 6, 1), M, D(2026, 6, 1), {"CHECKUP_45_50", "COLORECTAL_SCREENING"}),
        (
            D(1961, 6, 1),
            W,
            D(2026, 6, 1),
            {"CHECKUP_60_65", "CERVICAL_SCREENING", "BREAST_SCREENING", "COLORECTAL_SCREENING", "VACCINATION"},
        ),  # 65 in June
        (D(1960, 6, 1), W, D(2026, 6, 1), {"BREAST_SCREENING", "COLORECTAL_SCREENING"}),  # 66, no flu in June
        (D(1960, 6, 1), M, D(2026, 11, 2), {"COLORECTAL_SCREENING", "VACCINATION"}),  # 66, flu season
        (D(1952, 3, 1), W, D(2026, 6, 1), {"CHECKUP_70_75", "BREAST_SCREENING", "COLORECTAL_SCREENING"}),  # 74
        (D(1951, 3, 1), W, D(2026, 6, 1), {"CHECKUP_70_75", "VACCINATION"}),  # 75: booster, screening over
        (D(1946, 3, 1), M, D(2026, 6, 1), set()),  # 80 in June: nothing
        (D(1941, 3, 1), M, D(2026, 1, 15), {"VACCINATION"}),  # 84 in January: flu season
        (D(1976, 6, 1), "", D(2026, 6, 1), {"CHECKUP_45_50", "COLORECTAL_SCREENING"}),  # sex unknown
        (D(2030, 1, 1), W, D(2026, 6, 1), set()),  # not born yet
    ],
)
def test_programmes_by_age_and_sex(birth: dt.date, sex: str, day: dt.date, expected: set[str]) -> None:
    assert programs(birth, sex, day) == expected


def test_screening_periods_follow_the_birthday_every_three_or_two_years() -> None:
    birth = D(1990, 9, 15)
    cervical = {
        day: [d.period for d in due_on(birth, W, day) if d.program is Program.CERVICAL_SCREENING]
        for day in (D(2015, 9, 15), D(2018, 9, 14), D(2018, 9, 15), D(2026, 1, 1))
    }
    assert cervical == {
        D(2015, 9, 15): ["2015-09-15/2018-09-15"],
        D(2018, 9, 14): ["2015-09-15/2018-09-15"],
        D(2018, 9, 15): ["2018-09-15/2021-09-15"],
        D(2026, 1, 1): ["2024-09-15/2027-09-15"],
    }
    [colorectal] = [
        d.period for d in due_on(D(1975, 2, 10), M, D(2027, 3, 1)) if d.program is Program.COLORECTAL_SCREENING
    ]
    assert colorectal == "2027-02-10/2029-02-10"


def test_a_reminder_goes_once_per_period() -> None:
    birth, day = D(1976, 6, 1), D(2026, 6, 1)
    first = to_send(birth, W, day, [])
    sent = [(due.program.value, due.period) for due in first]
    assert to_send(birth, W, day, sent) == []
    assert to_send(birth, W, D(2027, 6, 1), sent) == []  # same 2-year period, same check-up window
    later = {due.program for due in to_send(birth, W, D(2028, 6, 1), sent)}
    # The next 2-year period of the 50–74 screenings, and (turning 52) the next 3-year cervical one.
    assert later == {Program.BREAST_SCREENING, Program.COLORECTAL_SCREENING, Program.CERVICAL_SCREENING}


def test_leap_day_birthdays_and_ages() -> None:
    assert anniversary(D(2000, 2, 29), 18) == D(2018, 3, 1)
    assert anniversary(D(2000, 2, 29), 24) == D(2024, 2, 29)
    assert age_on(D(2000, 2, 29), D(2018, 2, 28)) == 17
    assert age_on(D(2000, 2, 29), D(2018, 3, 1)) == 18
