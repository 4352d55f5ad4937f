"""DICOM attribute matching on the real index: single values, wildcards, ranges, UID lists, levels."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydicom.uid import generate_uid

from carnet_imaging.query import Level, attribute, match
from carnet_kit.db import create_pool
from carnet_kit.errors import InvalidArgument

STUDIES = (
    # patient_id, name, birth date, study date, time, accession, modalities, description
    ("P1", "DUPONT^Jean", "19560821", "20240115", "101500", "ACC-001", ["CT"], "Scanner thoracique"),
    ("P1", "DUPONT^Jean", "19560821", "20250302", "083000", "ACC-002", ["MR", "SR"], "IRM cérébrale"),
    ("P2", "MARTIN^Camille", "19840512", "20250610", "173000", "ACC-103", ["CR"], "Radio du poignet"),
    ("P3", "Martinez^Ana", "19900101", "", "", "", [], ""),
)


@pytest.fixture
async def index(imaging: Any, database_url: str) -> Any:
    """Four studies of one holder of this test, one series and one instance each."""
    pool = await create_pool(database_url, "imaging")
    holder = uuid.uuid4()
    uids = []
    for patient_id, name, born, date, time, accession, modalities, description in STUDIES:
        study, series, sop = generate_uid(), generate_uid(), generate_uid()
        uids.append((study, series, sop))
        await pool.execute(
            "INSERT INTO studies (study_instance_uid, holder_id, patient_id, patient_name, patient_birth_date,"
            " study_date, study_time, accession_number, modalities_in_study, study_description)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            study, holder, patient_id, name, born, date, time, accession, modalities, description,
        )
        await pool.execute(
            "INSERT INTO series (series_instance_uid, study_instance_uid, modality, series_number)"
            " VALUES ($1, $2, $3, 1)",
            series, study, modalities[0] if modalities else "",
        )
        await pool.execute(
            "INSERT INTO instances (sop_instance_uid, series_instance_uid, study_instance_uid, sop_class_uid,"
            " transfer_syntax_uid, instance_number, size_bytes, sha256, blob_key, key_owner_id)"
            " VALUES ($1, $2, $3, '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', 7, 1, '', '', $4)",
            sop, series, study, holder,
        )
    yield pool, holder, uids
    await pool.close()


async def accessions(index: Any, filters: dict[str, str], level: Level = Level.STUDY) -> list[str]:
    pool, holder, _ = index
    where = match(filters, level, first_param=2)
    rows = await pool.fetch(
        "SELECT DISTINCT st.accession_number FROM studies st JOIN series se USING (study_instance_uid)"
        f" JOIN instances i ON i.series_instance_uid = se.series_instance_uid WHERE st.holder_id = $1 AND {where.sql}"
        " ORDER BY 1",
        holder,
        *where.params,
    )
    return [row[0] for row in rows]


async def test_single_values_wildcards_and_names(index: Any) -> None:
    assert await accessions(index, {"00100020": "P1"}) == ["ACC-001", "ACC-002"]
    assert await accessions(index, {"PatientID": "P1", "AccessionNumber": "ACC-002"}) == ["ACC-002"]
    assert await accessions(index, {"AccessionNumber": "ACC-0*"}) == ["ACC-001", "ACC-002"]
    assert await accessions(index, {"AccessionNumber": "ACC-?03"}) == ["ACC-103"]
    assert await accessions(index, {"PatientName": "dupont^jean"}) == ["ACC-001", "ACC-002"]
    assert await accessions(index, {"PatientName": "MART*"}) == ["", "ACC-103"]
    assert await accessions(index, {"StudyDescription": "IRM*"}) == ["ACC-002"]
    assert await accessions(index, {"AccessionNumber": "ACC\\_%"}) == []  # SQL wildcards are literal
    assert await accessions(index, {"PatientID": "", "AccessionNumber": "*"}) == ["", "ACC-001", "ACC-002", "ACC-103"]


async def test_date_and_time_ranges(index: Any) -> None:
    assert await accessions(index, {"StudyDate": "20250101-20251231"}) == ["ACC-002", "ACC-103"]
    assert await accessions(index, {"StudyDate": "-20241231"}) == ["ACC-001"]
    assert await accessions(index, {"StudyDate": "20250610-"}) == ["ACC-103"]
    assert await accessions(index, {"StudyDate": "20240115"}) == ["ACC-001"]
    assert await accessions(index, {"StudyTime": "080000-120000"}) == ["ACC-001", "ACC-002"]
    assert await accessions(index, {"PatientBirthDate": "19800101-19901231"}) == ["", "ACC-103"]


async def test_uid_lists_modalities_and_deeper_levels(index: Any) -> None:
    _, _, uids = index
    both = f"{uids[0][0]}\\{uids[2][0]}"
    assert await accessions(index, {"0020000D": both}) == ["ACC-001", "ACC-103"]
    assert await accessions(index, {"ModalitiesInStudy": "SR"}) == ["ACC-002"]
    assert await accessions(index, {"ModalitiesInStudy": "CT\\CR"}) == ["ACC-001", "ACC-103"]
    assert await accessions(index, {"Modality": "MR"}, Level.SERIES) == ["ACC-002"]
    assert await accessions(index, {"SOPInstanceUID": uids[1][2]}, Level.IMAGE) == ["ACC-002"]
    assert await accessions(index, {"InstanceNumber": "7"}, Level.IMAGE) == ["", "ACC-001", "ACC-002", "ACC-103"]


@pytest.mark.parametrize(
    ("filters", "level", "field"),
    [
        ({"NoSuchAttribute": "x"}, Level.STUDY, "NoSuchAttribute"),
        ({"00209999": "x"}, Level.STUDY, "00209999"),
        ({"Modality": "CT"}, Level.STUDY, "Modality"),
        ({"StudyInstanceUID": "1.2.x"}, Level.STUDY, "StudyInstanceUID"),
        ({"StudyDate": "2025-13-01"}, Level.STUDY, "StudyDate"),
        ({"StudyDate": "yesterday"}, Level.STUDY, "StudyDate"),
        ({"InstanceNumber": "seven"}, Level.IMAGE, "InstanceNumber"),
        ({"PatientID": "x" * 300}, Level.PATIENT, "PatientID"),
    ],
)
def test_bad_filters_name_the_attribute(filters: dict[str, str], level: Level, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        match(filters, level)
    assert caught.value.reason == "ATTRIBUTE_FILTER_INVALID"
    assert caught.value.metadata["field"] == f"attribute_filters.{field}"


def test_tags_and_keywords_name_the_same_attribute() -> None:
    assert attribute("0020000d") is attribute("StudyInstanceUID") is attribute("studyinstanceuid")
