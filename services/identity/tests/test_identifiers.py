"""INS, RPPS and FINESS rules, and what a login string names."""

from __future__ import annotations

import pytest

from carnet_identity.domain.identifiers import (
    LoginKind,
    ins_key,
    luhn_valid,
    normalise_finess,
    normalise_ins,
    normalise_rpps,
    parse_login,
)
from carnet_kit.errors import InvalidArgument


@pytest.mark.parametrize(
    ("number", "key"),
    [
        ("2840575120005", "31"),  # Camille MARTIN
        ("2151175056789", "85"),  # Léa MARTIN
        ("1790369123456", "12"),  # Karim BENALI
        ("1560813055042", "44"),  # Jean DUPONT
    ],
)
def test_ins_key_is_97_minus_number_mod_97(number: str, key: str) -> None:
    assert ins_key(number) == key
    assert f"{97 - int(number) % 97:02d}" == key


def test_ins_key_counts_corsica_2a_as_19_and_2b_as_18() -> None:
    assert ins_key("185052A123456") == f"{97 - 1850519123456 % 97:02d}"
    assert ins_key("185052B123456") == f"{97 - 1850518123456 % 97:02d}"
    # Equivalently, the number minus 1 000 000 (2A) or 2 000 000 (2B).
    assert ins_key("185052A123456") == f"{97 - (1850520123456 - 1_000_000) % 97:02d}"
    assert ins_key("185052B123456") == f"{97 - (1850520123456 - 2_000_000) % 97:02d}"
    assert ins_key("185052A123456") != ins_key("185052B123456")


def test_normalise_ins_accepts_with_or_without_key_and_separators() -> None:
    assert normalise_ins("2840575120005").full == "284057512000531"
    assert normalise_ins("284057512000531").full == "284057512000531"
    assert normalise_ins("2 84 05 75 120 005 31").number == "2840575120005"
    corsican = "185052a123456"
    assert normalise_ins(corsican).number == "185052A123456"
    assert normalise_ins("185052A123456" + ins_key("185052A123456")).key == ins_key("185052A123456")


def test_normalise_ins_refuses_a_wrong_key_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_ins("284057512000532")
    assert caught.value.reason == "INS_KEY_MISMATCH"
    assert caught.value.metadata["field"] == "ins"


@pytest.mark.parametrize(
    "text", ["", "28405751200", "2840575120005311", "9840575120005", "28405X5120005", "2840575120005AB"]
)
def test_normalise_ins_refuses_malformed_numbers(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_ins(text, field="person.ins")
    assert caught.value.reason == "INS_MALFORMED"
    assert caught.value.metadata["field"] == "person.ins"


@pytest.mark.parametrize("rpps", ["10000000017", "10000000025", "10000000033", "10000000041"])
def test_demo_rpps_numbers_pass_luhn(rpps: str) -> None:
    assert luhn_valid(rpps)
    assert normalise_rpps(rpps) == rpps


def test_rpps_with_a_wrong_check_digit_is_refused() -> None:
    assert not luhn_valid("10000000018")
    with pytest.raises(InvalidArgument) as caught:
        normalise_rpps("10000000018")
    assert caught.value.reason == "RPPS_MALFORMED"


def test_luhn_matches_the_textbook_example() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("")
    assert not luhn_valid("12a4")


def test_finess_check_digit() -> None:
    assert normalise_finess("750001232") == "750001232"
    assert normalise_finess("2A0001234") == "2A0001234"
    with pytest.raises(InvalidArgument) as caught:
        normalise_finess("750001233")
    assert caught.value.reason == "FINESS_MALFORMED"


def test_parse_login_tells_email_rpps_and_ins_apart() -> None:
    assert parse_login(" Camille.Martin@Demo.Carnet.Test ").kind is LoginKind.EMAIL
    assert parse_login(" Camille.Martin@Demo.Carnet.Test ").value == "camille.martin@demo.carnet.test"
    assert parse_login("10000000017").kind is LoginKind.RPPS
    assert parse_login("284057512000531").value == "2840575120005"
    assert parse_login("2840575120005").kind is LoginKind.INS


@pytest.mark.parametrize("text", ["hello", "1234", "10000000018", "284057512000532"])
def test_parse_login_refuses_what_cannot_be_a_login(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_login(text)
    assert caught.value.metadata["field"] == "login"
