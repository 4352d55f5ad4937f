"""Deposit metadata and content rules of the record."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from carnet_dossier.domain import (
    Author,
    DocumentFormat,
    PageCursor,
    check_content,
    clamp_page_size,
    decode_page_token,
    encode_page_token,
    validate_new_document,
)
from carnet_dossier.seed import make_pdf
from carnet_dossier.valuesets import DOCUMENT_CLASSES, DOCUMENT_TYPES
from carnet_kit.errors import InvalidArgument


def _new(**overrides: object) -> object:
    fields: dict[str, object] = {
        "unique_id": "lab-1",
        "type_code": "11502-2",
        "class_code": "",
        "format": DocumentFormat.PDF,
        "title": "Bilan",
        "service_time": None,
        "author": Author(rpps="10000000017"),
        "hidden_from_professionals": False,
        "invisible_to_holder": False,
        "invisible_to_representatives": False,
    }
    fields.update(overrides)
    return validate_new_document(**fields)  # type: ignore[arg-type]


def test_value_set_has_at_least_thirty_types_each_with_a_known_class() -> None:
    assert len(DOCUMENT_TYPES) >= 30
    assert {"11488-4", "11490-0", "57833-6", "11502-2", "18748-4"} <= set(DOCUMENT_TYPES)
    assert all(entry.default_class in DOCUMENT_CLASSES for entry in DOCUMENT_TYPES.values())
    assert DOCUMENT_TYPES["11488-4"].label_fr == "Compte rendu de consultation"


def test_class_defaults_from_the_type() -> None:
    assert _new().class_code == "LAB"  # type: ignore[attr-defined]
    assert _new(type_code="34133-9", class_code="PSY_SYNTHESIS").class_code == "PSY_SYNTHESIS"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"unique_id": ""}, "metadata.unique_id"),
        ({"unique_id": "has space"}, "metadata.unique_id"),
        ({"type_code": "99999-9"}, "metadata.type_code"),
        ({"class_code": "NOPE"}, "metadata.class_code"),
        ({"format": None}, "metadata.format"),
        ({"title": "  "}, "metadata.title"),
        ({"service_time": dt.datetime.now(dt.UTC) + dt.timedelta(days=3)}, "metadata.service_time"),
        ({"hidden_from_professionals": True, "invisible_to_holder": True}, "metadata.invisible_to_holder"),
    ],
)
def test_bad_metadata_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        _new(**overrides)
    assert info.value.metadata["field"] == field


def test_pdf_content_must_be_a_pdf() -> None:
    check_content(make_pdf("t", ["l"]), DocumentFormat.PDF)
    with pytest.raises(InvalidArgument) as info:
        check_content(b"<html>", DocumentFormat.PDF)
    assert info.value.reason == "CONTENT_FORMAT_MISMATCH"
    with pytest.raises(InvalidArgument):
        check_content(b"", DocumentFormat.PDF)


def test_cda_must_be_well_formed_xml_in_the_cda_namespace() -> None:
    check_content(b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>x</title></ClinicalDocument>', DocumentFormat.CDA_R2_STRUCTURED)
    with pytest.raises(InvalidArgument):
        check_content(b"<ClinicalDocument><title>x</title></ClinicalDocument>", DocumentFormat.CDA_R2_STRUCTURED)
    with pytest.raises(InvalidArgument):
        check_content(b'<ClinicalDocument xmlns="urn:hl7-org:v3">', DocumentFormat.CDA_R2_UNSTRUCTURED)


def test_jpeg_and_text_are_checked() -> None:
    check_content(b"\xff\xd8\xff\xe0" + b"\x00" * 20 + b"\xff\xd9", DocumentFormat.JPEG)
    with pytest.raises(InvalidArgument):
        check_content(b"\x89PNG\r\n", DocumentFormat.JPEG)
    check_content("compte rendu é".encode(), DocumentFormat.TEXT)
    with pytest.raises(InvalidArgument):
        check_content(b"\xff\xfe\x00bad", DocumentFormat.TEXT)


def test_page_tokens_round_trip_and_reject_forgeries() -> None:
    cursor = PageCursor(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), uuid.uuid4())
    assert decode_page_token(encode_page_token(cursor)) == cursor
    assert decode_page_token("") is None
    with pytest.raises(InvalidArgument) as info:
        decode_page_token("not-a-token")
    assert info.value.metadata["field"] == "page_token"


def test_page_size_defaults_and_caps() -> None:
    assert clamp_page_size(0) == 50
    assert clamp_page_size(10_000) == 500
    with pytest.raises(InvalidArgument):
        clamp_page_size(-1)
