"""The packaged access matrix is complete, and an incomplete one is refused at start."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from carnet_consent.access_matrix import (
    AccessMatrixError,
    load_access_matrices,
    packaged_versions,
    parse_access_matrix,
)

CORE_PROFESSIONS = {"10", "21", "40", "50", "60", "70"}
DOSSIER_CLASSES = {
    "SYNTH", "PSY_SYNTHESIS", "REPORT", "PRESCRIPTION", "DISPENSATION", "LAB", "IMAGING",
    "CERTIFICATE", "VACCINATION", "PREVENTION", "CARE_PLAN", "ADMIN", "HOLDER",
}


def _packaged_document(version: int) -> dict[str, Any]:
    text = resources.files("carnet_consent").joinpath("access_matrix", f"v{version}.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def test_every_packaged_matrix_loads_and_versions_match_file_names() -> None:
    matrices = load_access_matrices()
    assert [m.version for m in matrices] == [str(v) for v in packaged_versions()]


def test_packaged_matrix_covers_every_profession_times_every_class() -> None:
    for version in packaged_versions():
        document = _packaged_document(version)
        for profession in document["professions"]:
            assert set(document["rights"][profession]) == set(document["document_classes"])


def test_current_matrix_covers_core_professions_medico_social_ones_and_dossier_classes() -> None:
    matrix = load_access_matrices()[-1]
    assert set(matrix.professions) >= CORE_PROFESSIONS
    assert set(matrix.professions) - CORE_PROFESSIONS, "medico-social professions are covered too"
    assert set(matrix.document_classes) == DOSSIER_CLASSES


def test_nurses_do_not_see_psychiatric_syntheses_or_certificates() -> None:
    matrix = load_access_matrices()[-1]
    assert not matrix.may_read("60", "PSY_SYNTHESIS")
    assert not matrix.may_read("60", "CERTIFICATE")
    assert matrix.may_read("10", "PSY_SYNTHESIS")


def test_only_holders_write_holder_documents() -> None:
    matrix = load_access_matrices()[-1]
    assert not any(matrix.may_write(profession, "HOLDER") for profession in matrix.professions)


def test_missing_cell_is_refused_naming_profession_and_class() -> None:
    document = copy.deepcopy(_packaged_document(packaged_versions()[-1]))
    del document["rights"]["60"]["CERTIFICATE"]
    with pytest.raises(AccessMatrixError, match="60 has no right for CERTIFICATE"):
        parse_access_matrix(document)


def test_missing_profession_row_is_refused() -> None:
    document = copy.deepcopy(_packaged_document(packaged_versions()[-1]))
    del document["rights"]["21"]
    with pytest.raises(AccessMatrixError, match="21 has no row"):
        parse_access_matrix(document)


def test_undeclared_class_in_a_row_is_refused() -> None:
    document = copy.deepcopy(_packaged_document(packaged_versions()[-1]))
    document["rights"]["10"]["MYSTERY"] = "r"
    with pytest.raises(AccessMatrixError, match="undeclared classes: MYSTERY"):
        parse_access_matrix(document)


def test_unknown_right_is_refused() -> None:
    document = copy.deepcopy(_packaged_document(packaged_versions()[-1]))
    document["rights"]["10"]["LAB"] = "read"
    with pytest.raises(AccessMatrixError, match="must be one of"):
        parse_access_matrix(document)


def test_missing_version_is_refused() -> None:
    document = copy.deepcopy(_packaged_document(packaged_versions()[-1]))
    del document["version"]
    with pytest.raises(AccessMatrixError, match="version"):
        parse_access_matrix(document)
