"""What a person's record must look like to be enrolled: INS, traits, contact points, département.

Pure: a bad value raises :class:`InvalidArgument` naming the field it came from, with
the reason codes of the identity contract (``INS_MALFORMED``, ``INS_KEY_MISMATCH``,
``BIRTH_DATE_INVALID``, ``FIELD_INVALID``). The same rules serve CreatePerson,
UpdatePerson and the bulk import (whose fields are CSV columns).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from carnet_identity.domain.identifiers import InsType, normalise_email, normalise_ins
from carnet_kit.errors import InvalidArgument

OLDEST_BIRTH_YEAR = 1880
SEXES = frozenset({"F", "M", "I"})
# Metropolitan départements 01–95 (Corsica 2A/2B, no 20), overseas 971–976, and the
# overseas collectivities 975, 977, 978, 984–989 that the insurer also registers.
_DEPARTMENT = re.compile(r"^(0[1-9]|1[0-9]|2[1-9AB]|[3-8][0-9]|9[0-5]|97[1-8]|98[4-9])$")
_BIRTH_PLACE = re.compile(r"^([0-9]{2}|2[AB])[0-9]{3}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_FRENCH_MOBILE = re.compile(r"^0[67][0-9]{8}$")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
MAX_FIRST_NAMES = 10

# Fields UpdatePerson may change (the state only changes through lifecycle methods).
UPDATABLE_FIELDS = frozenset(
    {
        "name",
        "name.birth_name",
        "name.used_name",
        "name.first_names",
        "name.used_first_name",
        "sex",
        "birth_date",
        "birth_place_code",
        "email",
        "mobile_phone",
        "postal_address",
        "department_code",
        "one_time_code_channel",
    }
)


@dataclasses.dataclass(frozen=True)
class PersonTraits:
    """A person's identity traits and contact points, checked."""

    ins_type: str
    nir: str
    ins_key: str
    birth_name: str
    used_name: str
    first_names: tuple[str, ...]
    used_first_name: str
    sex: str
    birth_date: dt.date
    birth_date_precision: str
    birth_place_code: str
    email: str
    mobile_phone: str
    postal_address: dict[str, Any] | None
    department_code: str
    one_time_code_channel: str = "email"

    @property
    def notice_channel(self) -> str:
        """An e-mail notice when an address is known, else a letter."""
        return "email" if self.email else "letter"

    def comparable(self) -> tuple[Any, ...]:
        """The values an import compares to tell an unchanged row from an update."""
        return (
            self.ins_type,
            self.birth_name,
            self.used_name,
            self.first_names,
            self.used_first_name,
            self.sex,
            self.birth_date,
            self.birth_date_precision,
            self.birth_place_code,
            self.email,
            self.mobile_phone,
            self.postal_address,
            self.department_code,
        )


def _invalid(message: str, field: str) -> InvalidArgument:
    return InvalidArgument(message, field=field, reason="FIELD_INVALID")


def check_name(value: str, field: str, *, required: bool) -> str:
    """A name part: trimmed, no control characters, at most 100 characters."""
    text = " ".join(value.split())
    if not text:
        if required:
            raise _invalid(f"{field} is required", field)
        return ""
    if not _NAME.match(text):
        raise _invalid(f"{field} must be 1 to 100 printable characters", field)
    return text


def check_first_names(values: tuple[str, ...] | list[str], field: str) -> tuple[str, ...]:
    """The list of first names, at least one."""
    names = tuple(check_name(value, field, required=True) for value in values if value.strip())
    if not names:
        raise _invalid(f"{field}: at least one first name is required", field)
    if len(names) > MAX_FIRST_NAMES:
        raise _invalid(f"{field}: at most {MAX_FIRST_NAMES} first names", field)
    return names


def check_sex(value: str, field: str) -> str:
    """Administrative sex: F, M or I (undetermined)."""
    sex = value.strip().upper()
    if sex not in SEXES:
        raise _invalid(f"{field} must be F, M or I", field)
    return sex


def check_birth_date(year: int, month: int, day: int, today: dt.date, field: str) -> tuple[dt.date, str]:
    """A birth date, possibly partial (unknown day, or unknown day and month), neither impossible nor future.

    Returns the first day it can be and its precision (``day``, ``month`` or ``year``).
    """
    invalid = InvalidArgument(
        f"{field} is not a possible birth date", field=field, reason="BIRTH_DATE_INVALID"
    )
    if year < OLDEST_BIRTH_YEAR or year > today.year or (month == 0 and day != 0):
        raise invalid
    precision = "day" if day else ("month" if month else "year")
    try:
        value = dt.date(year, month or 1, day or 1)
    except ValueError:
        raise invalid from None
    if value > today:
        raise InvalidArgument(f"{field} is in the future", field=field, reason="BIRTH_DATE_INVALID")
    return value, precision


_DATE_TEXT = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_birth_date(text: str, today: dt.date, field: str) -> tuple[dt.date, str]:
    """``YYYY-MM-DD``, or ``YYYY-MM`` / ``YYYY`` (or ``-00`` parts) for a partial date."""
    match = _DATE_TEXT.match(text.strip())
    if not match:
        raise InvalidArgument(f"{field} must be YYYY-MM-DD", field=field, reason="BIRTH_DATE_INVALID")
    year, month, day = (int(part) if part else 0 for part in match.groups())
    return check_birth_date(year, month, day, today, field)


def check_department(value: str, field: str, *, required: bool = False) -> str:
    """INSEE code of a département (``75``, ``2A``, ``971``); empty when not required."""
    code = value.strip().upper()
    if not code and not required:
        return ""
    if not _DEPARTMENT.match(code):
        raise _invalid(f"{field} is not a département code (e.g. 75, 2A, 971)", field)
    return code


def check_birth_place(value: str, field: str) -> str:
    """INSEE code of the birth commune (5 characters) or of the country (99xxx); may be empty."""
    code = value.strip().upper()
    if code and not _BIRTH_PLACE.match(code):
        raise _invalid(f"{field} must be a 5-character INSEE code", field)
    return code


def check_email(value: str, field: str) -> str:
    """An e-mail contact point, or empty."""
    return normalise_email(value, field=field) if value.strip() else ""


def check_mobile(value: str, field: str) -> str:
    """A mobile number in E.164 (a French ``06…``/``07…`` number is converted), or empty."""
    compact = re.sub(r"[\s.\-()]", "", value)
    if not compact:
        return ""
    if _FRENCH_MOBILE.match(compact):
        return "+33" + compact[1:]
    if not _E164.match(compact):
        raise _invalid(f"{field} must be an E.164 number (e.g. +33612345678)", field)
    return compact


def check_ins_type(value: str, field: str) -> str:
    """``nir`` (the default) or ``nia``."""
    text = value.strip().lower() or InsType.NIR.value
    if text not in (InsType.NIR.value, InsType.NIA.value):
        raise _invalid(f"{field} must be nir or nia", field)
    return text


def check_address(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A postal address as stored (lines, postal code, city, country), or None when empty."""
    if not value:
        return None
    lines = [" ".join(str(line).split()) for line in value.get("lines", []) if str(line).strip()]
    address = {
        "lines": lines,
        "postal_code": str(value.get("postal_code", "")).strip(),
        "city": str(value.get("city", "")).strip(),
        "country_code": str(value.get("country_code", "")).strip().upper(),
    }
    if not lines and not address["postal_code"] and not address["city"]:
        return None
    return address


def check_person(
    *,
    ins: str,
    ins_type: str,
    birth_name: str,
    used_name: str,
    first_names: tuple[str, ...] | list[str],
    used_first_name: str,
    sex: str,
    birth_date: tuple[int, int, int] | str,
    birth_place_code: str,
    email: str,
    mobile_phone: str,
    postal_address: Mapping[str, Any] | None,
    department_code: str,
    today: dt.date,
    fields: Mapping[str, str] | None = None,
) -> PersonTraits:
    """Check a whole record; the first bad value raises, naming its field (``fields`` renames them)."""
    names = fields or {}

    def field(name: str) -> str:
        return names.get(name, name)

    checked_ins = normalise_ins(ins, field=field("ins"))
    if isinstance(birth_date, str):
        born, precision = parse_birth_date(birth_date, today, field("birth_date"))
    else:
        born, precision = check_birth_date(*birth_date, today, field("birth_date"))
    return PersonTraits(
        ins_type=check_ins_type(ins_type, field("ins_type")),
        nir=checked_ins.number,
        ins_key=checked_ins.key,
        birth_name=check_name(birth_name, field("birth_name"), required=True),
        used_name=check_name(used_name, field("used_name"), required=False),
        first_names=check_first_names(first_names, field("first_names")),
        used_first_name=check_name(used_first_name, field("used_first_name"), required=False),
        sex=check_sex(sex, field("sex")),
        birth_date=born,
        birth_date_precision=precision,
        birth_place_code=check_birth_place(birth_place_code, field("birth_place_code")),
        email=check_email(email, field("email")),
        mobile_phone=check_mobile(mobile_phone, field("mobile_phone")),
        postal_address=check_address(postal_address),
        department_code=check_department(department_code, field("department_code")),
    )
