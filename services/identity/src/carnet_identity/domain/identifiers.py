"""National identifiers: INS (NIR / NIA + key), RPPS, FINESS, and what a login string is.

Pure functions; a malformed identifier raises :class:`InvalidArgument` naming the field
it came from, with the reason codes documented in the identity contract.
"""

from __future__ import annotations

import dataclasses
import enum
import re

from carnet_kit.errors import InvalidArgument

# 1 sex/category digit, 2 year, 2 month, 2 département (2A/2B for Corsica), 3 commune, 3 order.
_NIR_13 = re.compile(r"^[1-8]\d{4}(?:\d{2}|2[AB])\d{6}$")
_DIGITS = re.compile(r"^\d+$")
_FINESS_CORSICA = re.compile(r"^2[AB]\d{7}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SEPARATORS = re.compile(r"[\s.\-]")

# Corsica's département letters count as these numbers in the key computation
# (2A → 19, 2B → 18, i.e. the number minus 1 000 000 or 2 000 000).
_CORSICA = {"2A": "19", "2B": "18"}


class InsType(enum.StrEnum):
    """Which national number an INS is built on."""

    NIR = "nir"
    NIA = "nia"


@dataclasses.dataclass(frozen=True)
class Ins:
    """A checked INS: the 13-character NIR or NIA and its 2-digit key."""

    number: str
    key: str

    @property
    def full(self) -> str:
        """The 15-character form (number followed by its key)."""
        return self.number + self.key

    @property
    def department_of_birth(self) -> str:
        """The département of birth encoded in the number (99 for born abroad)."""
        return self.number[5:7]

    def __str__(self) -> str:
        return self.full


def ins_key(number: str) -> str:
    """The 2-digit key of a 13-character NIR or NIA: 97 − (number mod 97).

    Corsica's ``2A`` and ``2B`` département codes are counted as ``19`` and ``18``.
    """
    if not _NIR_13.match(number):
        raise ValueError(f"not a 13-character NIR: {number!r}")
    digits = number[:5] + _CORSICA.get(number[5:7], number[5:7]) + number[7:]
    return f"{97 - int(digits) % 97:02d}"


def _compact(text: str) -> str:
    return _SEPARATORS.sub("", text).upper()


def normalise_ins(text: str, *, field: str = "ins") -> Ins:
    """Parse an INS given with its key (15 characters) or without (13), checking the key.

    Spaces, dots and dashes are ignored, so ``2 84 05 75 120 005 31`` is accepted.
    """
    compact = _compact(text)
    if len(compact) not in (13, 15) or not _NIR_13.match(compact[:13]):
        raise InvalidArgument(
            "an INS is a 13-character NIR or NIA, optionally followed by its 2-digit key",
            field=field,
            reason="INS_MALFORMED",
        )
    number = compact[:13]
    expected = ins_key(number)
    if len(compact) == 15:
        given = compact[13:]
        if not _DIGITS.match(given):
            raise InvalidArgument("the INS key must be two digits", field=field, reason="INS_MALFORMED")
        if given != expected:
            raise InvalidArgument(
                "the INS key does not match its number (97 − number mod 97)", field=field, reason="INS_KEY_MISMATCH"
            )
    return Ins(number, expected)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn (mod 10) check."""
    if not digits or not _DIGITS.match(digits):
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def luhn_check_digit(digits: str) -> str:
    """The digit that makes ``digits + digit`` pass the Luhn check."""
    for candidate in "0123456789":
        if luhn_valid(digits + candidate):
            return candidate
    raise ValueError(f"not a string of digits: {digits!r}")


def normalise_rpps(text: str, *, field: str = "rpps") -> str:
    """An RPPS number: 11 digits whose last one is a Luhn check digit."""
    compact = _compact(text)
    if len(compact) != 11 or not luhn_valid(compact):
        raise InvalidArgument(
            "an RPPS number is 11 digits with a Luhn check digit", field=field, reason="RPPS_MALFORMED"
        )
    return compact


def normalise_finess(text: str, *, field: str = "finess") -> str:
    """A FINESS number: 9 digits, the last a Luhn check digit over the first eight.

    Corsican numbers (``2A…`` / ``2B…``) are accepted on their shape only: the
    published rule does not say how the letter enters the check digit.
    """
    compact = _compact(text)
    if _FINESS_CORSICA.match(compact):
        return compact
    if len(compact) != 9 or not luhn_valid(compact):
        raise InvalidArgument(
            "a FINESS number is 9 digits with a Luhn check digit", field=field, reason="FINESS_MALFORMED"
        )
    return compact


def normalise_email(text: str, *, field: str = "email") -> str:
    """An e-mail address, trimmed and lower-cased (addresses are compared case-insensitively)."""
    address = text.strip().lower()
    if len(address) > 254 or not _EMAIL.match(address):
        raise InvalidArgument("not an e-mail address", field=field, reason="FIELD_INVALID")
    return address


class LoginKind(enum.StrEnum):
    """What a login string names."""

    INS = "ins"
    EMAIL = "email"
    RPPS = "rpps"


@dataclasses.dataclass(frozen=True)
class LoginIdentifier:
    """A parsed login: a holder's NIR/INS, an e-mail, or a professional's RPPS."""

    kind: LoginKind
    value: str


def parse_login(text: str) -> LoginIdentifier:
    """Tell what a login string is: an e-mail, an 11-digit RPPS, or a 13/15-character NIR/INS."""
    if "@" in text:
        return LoginIdentifier(LoginKind.EMAIL, normalise_email(text, field="login"))
    compact = _compact(text)
    if len(compact) == 11 and _DIGITS.match(compact):
        return LoginIdentifier(LoginKind.RPPS, normalise_rpps(compact, field="login"))
    if len(compact) in (13, 15):
        return LoginIdentifier(LoginKind.INS, normalise_ins(compact, field="login").number)
    raise InvalidArgument("login is a NIR/INS, an e-mail or an RPPS number", field="login", reason="FIELD_INVALID")
