"""Which prevention reminders are due for a person on a given day (pure rules, no I/O).

The national programmes (PRODUCT.md "prevention"):

- prevention check-ups at the ages 18–25, 45–50, 60–65 and 70–75: one reminder per age
  window, the period being the window;
- cervical cancer screening, women 25–65, every 3 years: periods of 3 years counted from
  the 25th birthday;
- breast cancer screening, women 50–74, every 2 years, and colorectal cancer screening,
  everyone 50–74, every 2 years: periods of 2 years counted from the 50th birthday;
- vaccination calendar of adults: diphtheria-tetanus-polio boosters at 25 (with
  pertussis), 45, 65 and every 10 years after, each booster a period of its own (the
  year of life it falls in); influenza each season (October to February) from 65.

A reminder is sent once per programme and period; the caller records what was sent and
passes the (programme, period) pairs already done.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Program(enum.Enum):
    """The programmes (PreventionProgram without its prefix)."""

    CHECKUP_18_25 = "CHECKUP_18_25"
    CHECKUP_45_50 = "CHECKUP_45_50"
    CHECKUP_60_65 = "CHECKUP_60_65"
    CHECKUP_70_75 = "CHECKUP_70_75"
    CERVICAL_SCREENING = "CERVICAL_SCREENING"
    BREAST_SCREENING = "BREAST_SCREENING"
    COLORECTAL_SCREENING = "COLORECTAL_SCREENING"
    VACCINATION = "VACCINATION"


@dataclass(frozen=True)
class Due:
    """A reminder due: its programme, the period it covers (the key of "once per period"), a French detail."""

    program: Program
    period: str
    detail: str


_CHECKUPS = (
    (Program.CHECKUP_18_25, 18, 25),
    (Program.CHECKUP_45_50, 45, 50),
    (Program.CHECKUP_60_65, 60, 65),
    (Program.CHECKUP_70_75, 70, 75),
)
_BOOSTERS = (25, 45, 65)
_BOOSTER_EVERY_AFTER_65 = 10


def anniversary(birth: dt.date, years: int) -> dt.date:
    """The day one turns ``years`` (29 February births on 1 March in common years)."""
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:
        return dt.date(birth.year + years, 3, 1)


def age_on(birth: dt.date, day: dt.date) -> int:
    """Age in whole years on ``day``."""
    return day.year - birth.year - (0 if (day.month, day.day) >= (birth.month, birth.day) else 1)


def _slot(birth: dt.date, day: dt.date, start_age: int, every: int) -> tuple[dt.date, dt.date]:
    """The period of ``every`` years, counted from the ``start_age`` birthday, that ``day`` falls in."""
    index = (age_on(birth, day) - start_age) // every
    start = anniversary(birth, start_age + index * every)
    return start, anniversary(birth, start_age + (index + 1) * every)


def _influenza_season(day: dt.date) -> str | None:
    if day.month >= 10:
        return f"{day.year}-{day.year + 1}"
    if day.month <= 2:
        return f"{day.year - 1}-{day.year}"
    return None


def due_on(birth: dt.date, sex: str, day: dt.date) -> list[Due]:
    """Every reminder that applies to a person on ``day`` (whether sent already or not).

    ``sex`` is ``F``, ``M`` or anything else for unknown (the programmes for women are then left out).
    """
    if day < birth:
        return []
    age = age_on(birth, day)
    found: list[Due] = []
    for program, low, high in _CHECKUPS:
        if low <= age <= high:
            found.append(Due(program, f"{low}-{high}", f"Bilan de prévention ({low}–{high} ans), pris en charge"))
    if sex == "F" and 25 <= age <= 65:
        start, end = _slot(birth, day, 25, 3)
        found.append(
            Due(
                Program.CERVICAL_SCREENING,
                f"{start.isoformat()}/{end.isoformat()}",
                "Dépistage du cancer du col de l'utérus (tous les 3 ans de 25 à 65 ans)",
            )
        )
    if 50 <= age <= 74:
        start, end = _slot(birth, day, 50, 2)
        period = f"{start.isoformat()}/{end.isoformat()}"
        if sex == "F":
            found.append(
                Due(Program.BREAST_SCREENING, period, "Dépistage du cancer du sein (tous les 2 ans de 50 à 74 ans)")
            )
        found.append(
            Due(Program.COLORECTAL_SCREENING, period, "Dépistage du cancer colorectal (tous les 2 ans de 50 à 74 ans)")
        )
    booster_ages = [*_BOOSTERS, *range(65 + _BOOSTER_EVERY_AFTER_65, 125, _BOOSTER_EVERY_AFTER_65)]
    if age in booster_ages:
        what = "diphtérie, tétanos, poliomyélite et coqueluche" if age == 25 else "diphtérie, tétanos, poliomyélite"
        found.append(Due(Program.VACCINATION, f"rappel-{age}-ans", f"Rappel de vaccination ({what}) à {age} ans"))
    season = _influenza_season(day)
    if age >= 65 and season is not None:
        found.append(Due(Program.VACCINATION, f"grippe-{season}", f"Vaccination contre la grippe, saison {season}"))
    return found


def to_send(birth: dt.date, sex: str, day: dt.date, sent: Iterable[tuple[str, str]]) -> list[Due]:
    """The reminders due on ``day`` not yet sent for their period (``sent``: (programme, period) pairs)."""
    done = set(sent)
    return [due for due in due_on(birth, sex, day) if (due.program.value, due.period) not in done]
