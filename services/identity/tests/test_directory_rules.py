"""The directory's pure rules: RPPS and FINESS checks, professions, scopes, AE titles, representation ends, pages."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from carnet_identity.domain.directory import (
    DELEGATION_SCOPES,
    PROFESSIONS,
    SCOPES,
    check_profession,
    check_scopes,
    check_specialty,
    legal_representation_end,
    next_page_token,
    normalise_ae_title,
    page_of,
)
from carnet_identity.domain.identifiers import normalise_finess, normalise_rpps
from carnet_kit.errors import FailedPrecondition, InvalidArgument

ACCESS_MATRIX = Path(__file__).resolve().parents[2] / "consent" / "src" / "carnet_consent" / "access_matrix" / "v1.json"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10000000017", "10000000017"),
        ("10000000025", "10000000025"),
        ("100 000 000 33", "10000000033"),
        ("10003594586", "10003594586"),
    ],
)
def test_rpps_numbers_passing_luhn_are_accepted(text: str, expected: str) -> None:
    assert normalise_rpps(text) == expected


@pytest.mark.parametrize("text", ["10000000018", "1000000001", "100000000170", "1000000001A", "", "00000000001"])
def test_rpps_numbers_failing_shape_or_luhn_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_rpps(text)
    assert caught.value.reason == "RPPS_MALFORMED"
    assert caught.value.metadata["field"] == "rpps"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("750001232", "750001232"), ("690004569", "690004569"), ("75 000 1232", "750001232"), ("2A0000012", "2A0000012")],
)
def test_finess_numbers_with_their_check_digit_are_accepted(text: str, expected: str) -> None:
    assert normalise_finess(text) == expected


@pytest.mark.parametrize("text", ["750001233", "75000123", "7500012321", "75000123A", "2C0000012"])
def test_finess_numbers_failing_shape_or_check_digit_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_finess(text)
    assert caught.value.reason == "FINESS_MALFORMED"


def test_professions_include_the_regulated_ones_with_their_official_labels() -> None:
    labels = {code: profession.label for code, profession in PROFESSIONS.items()}
    assert labels["10"] == "Médecin"
    assert labels["21"] == "Pharmacien"
    assert labels["40"] == "Chirurgien-dentiste"
    assert labels["50"] == "Sage-femme"
    assert labels["60"] == "Infirmier"
    assert labels["70"] == "Masseur-kinésithérapeute"
    assert labels["41"] == "Assistant de service social"


def test_professions_are_exactly_those_of_consents_access_matrix() -> None:
    matrix = json.loads(ACCESS_MATRIX.read_text(encoding="utf-8"))
    assert matrix["professions"] == {code: profession.label for code, profession in PROFESSIONS.items()}


def test_an_unknown_profession_code_is_refused() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_profession("99")
    assert caught.value.metadata["field"] == "profession_code"


def test_specialties_only_for_professions_that_have_them() -> None:
    assert check_specialty(PROFESSIONS["10"], "sm26") == "SM26"
    with pytest.raises(InvalidArgument):
        check_specialty(PROFESSIONS["70"], "SM26")
    with pytest.raises(InvalidArgument):
        check_specialty(PROFESSIONS["10"], "general medicine")


def test_scopes_come_from_the_catalogue_only() -> None:
    assert {"documents.deposit", "documents.read", "imaging.push", "imaging.read", "measurements.write"} <= set(SCOPES)
    assert check_scopes(["imaging.push", "documents.deposit", "imaging.push"]) == ("imaging.push", "documents.deposit")
    with pytest.raises(InvalidArgument) as caught:
        check_scopes(["documents.deposit", "documents.delete"])
    assert caught.value.metadata["scopes"] == "documents.delete"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("DEMOPACS", "DEMOPACS"), ("  PACS_1 ", "PACS_1"), ("A", "A"), ("X" * 16, "X" * 16), ("my pacs", "my pacs")],
)
def test_ae_titles_follow_the_dicom_ae_rules(text: str, expected: str) -> None:
    assert normalise_ae_title(text) == expected


@pytest.mark.parametrize("text", ["", "    ", "X" * 17, "BAD\\AE", "TAB\tAE", "ÉCHO"])
def test_ae_titles_breaking_the_dicom_rules_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        normalise_ae_title(text)


def test_a_legal_representation_ends_on_the_18th_birthday() -> None:
    end = legal_representation_end(dt.date(2015, 11, 3), dt.date(2026, 1, 1), None)
    assert end == dt.datetime(2033, 11, 3, tzinfo=dt.UTC)


def test_a_legal_representation_may_end_earlier_but_never_later() -> None:
    earlier = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert legal_representation_end(dt.date(2015, 11, 3), dt.date(2026, 1, 1), earlier) == earlier
    later = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    assert legal_representation_end(dt.date(2015, 11, 3), dt.date(2026, 1, 1), later) == dt.datetime(
        2033, 11, 3, tzinfo=dt.UTC
    )


def test_a_leap_day_minor_comes_of_age_on_the_first_of_march() -> None:
    end = legal_representation_end(dt.date(2012, 2, 29), dt.date(2026, 1, 1), None)
    assert end == dt.datetime(2030, 3, 1, tzinfo=dt.UTC)


def test_an_adult_has_no_legal_representative() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        legal_representation_end(dt.date(2008, 1, 1), dt.date(2026, 1, 1), None)
    assert caught.value.reason == "HOLDER_NOT_MINOR"


def test_delegation_scopes_tell_read_only_from_full() -> None:
    assert DELEGATION_SCOPES["read_only"] == ("space.read",)
    assert DELEGATION_SCOPES["full"] == ("space.read", "space.write")


def test_page_tokens_only_work_with_their_filters() -> None:
    first = page_of(2, "", "a")
    token = next_page_token(first, 2, 5, "a")
    assert page_of(2, token, "a").offset == 2
    assert next_page_token(page_of(2, token, "a"), 2, 4, "a") == ""
    with pytest.raises(InvalidArgument):
        page_of(2, token, "b")
