"""De-identification by the PS3.15 E.1 basic profile, and the study ZIP export."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, cast

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from carnet_imaging.deidentify import (
    BASIC_PROFILE,
    DEIDENTIFICATION_METHOD,
    ExportSummary,
    UidMap,
    deidentify_instance,
    export_study_zip,
)
from carnet_kit.errors import InvalidArgument

SALT = b"export-salt-for-tests-0123456789"
PSEUDONYM = "CARNET-7F3A"


def _testdata(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} missing: install pydicom-data"
    return Path(path).read_bytes()


def _read(part10: bytes) -> pydicom.FileDataset:
    return pydicom.dcmread(BytesIO(part10))


def _to_part10(dataset: pydicom.FileDataset) -> bytes:
    out = BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _deidentified(name: str, salt: bytes = SALT) -> pydicom.FileDataset:
    return _read(deidentify_instance(_testdata(name), uid_map=UidMap(salt), pseudonym=PSEUDONYM))


def _second_ct_instance() -> bytes:
    """Another instance of CT_small's series: new SOP Instance UID and number."""
    dataset = _read(_testdata("CT_small.dcm"))
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    dataset.InstanceNumber = 2
    return _to_part10(dataset)


# --------------------------------------------------------------------------- the table


def test_profile_table_keywords_match_their_tags_and_actions_are_known() -> None:
    actions = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
    assert len({tag for tag, _, _ in BASIC_PROFILE}) == len(BASIC_PROFILE)
    for tag, keyword, action in BASIC_PROFILE:
        assert keyword_for_tag(tag) == keyword
        assert action in actions, keyword


def test_profile_table_covers_identifying_attributes_of_ct_mr_us_sc() -> None:
    table = {keyword: action for _, keyword, action in BASIC_PROFILE}
    assert table["PatientName"] == "Z"
    assert table["PatientID"] == "Z"
    assert table["PatientBirthDate"] == "Z"
    assert table["StudyInstanceUID"] == "U"
    assert table["SOPInstanceUID"] == "U"
    assert table["FrameOfReferenceUID"] == "U"
    assert table["InstitutionName"] == "X/Z/D"
    assert table["ContentDate"] == "Z/D"
    assert table["ReferencedImageSequence"] == "X/Z/U*"
    for keyword in ("OtherPatientIDs", "PatientAddress", "OperatorsName", "StationName", "DeviceSerialNumber"):
        assert keyword in table


# --------------------------------------------------------------------------- one instance


def test_patient_name_and_id_become_the_pseudonym() -> None:
    dataset = _deidentified("CT_small.dcm")
    assert dataset.PatientName == PSEUDONYM
    assert dataset.PatientID == PSEUDONYM


def test_dates_and_identifying_attributes_follow_the_basic_profile() -> None:
    source = _read(_testdata("CT_small.dcm"))
    assert source.StudyDate == "20040119" and source.SeriesDate == "19970430" and source.InstitutionName
    dataset = _deidentified("CT_small.dcm")
    assert dataset.StudyDate == ""  # Z
    assert dataset.StudyTime == ""  # Z
    assert dataset.StudyID == ""  # Z
    assert dataset.PatientBirthDate == ""  # Z
    assert dataset.ContentDate == ""  # Z/D, Type 2C in the CT image IOD
    for removed in (
        "SeriesDate",
        "SeriesTime",
        "AcquisitionDate",
        "InstitutionName",
        "StationName",
        "StudyDescription",
    ):
        assert removed not in dataset, removed
    assert dataset.Modality == "CT"  # not in the table: kept
    assert dataset.SOPClassUID == source.SOPClassUID  # not in the table: kept


def test_enhanced_ct_keeps_type_1_attributes_with_dummy_values() -> None:
    dataset = _deidentified("eCT_Supplemental.dcm")
    assert dataset.ContentDate == "19000101"  # Z/D, Type 1 in Enhanced CT
    assert dataset.ContentTime == "000000"


def test_identity_removed_and_method_are_declared() -> None:
    dataset = _deidentified("MR_small.dcm")
    assert dataset.PatientIdentityRemoved == "YES"
    assert dataset.DeidentificationMethod == DEIDENTIFICATION_METHOD
    (code,) = dataset.DeidentificationMethodCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "113100",
        "DCM",
        "Basic Application Confidentiality Profile",
    )


def test_private_attributes_are_removed_at_every_depth() -> None:
    source = _read(_testdata("CT_small.dcm"))
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    item.add_new(0x00290010, "LO", "ACME 1.0")
    item.add_new(0x00291001, "LO", "secret")
    source.ReferencedInstanceSequence = Sequence([item])
    assert any(tag.is_private for tag in source.keys())
    dataset = _read(deidentify_instance(_to_part10(source), uid_map=UidMap(SALT), pseudonym=PSEUDONYM))
    assert not [element.tag for element in dataset.iterall() if element.tag.is_private]
    assert len(dataset.ReferencedInstanceSequence[0]) == 2


def test_uids_are_replaced_by_derived_2_25_uids() -> None:
    source = _read(_testdata("CT_small.dcm"))
    dataset = _deidentified("CT_small.dcm")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        new = dataset[keyword].value
        assert new != source[keyword].value
        assert new.startswith("2.25.") and UID(new).is_valid, keyword
    assert dataset.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID


def test_uids_are_consistent_across_the_instances_of_one_export() -> None:
    uid_map = UidMap(SALT)
    first = _read(deidentify_instance(_testdata("CT_small.dcm"), uid_map=uid_map, pseudonym=PSEUDONYM))
    second = _read(deidentify_instance(_second_ct_instance(), uid_map=uid_map, pseudonym=PSEUDONYM))
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    # The derivation depends on the salt alone, not on the map's history.
    again = _deidentified("CT_small.dcm")
    assert again.StudyInstanceUID == first.StudyInstanceUID


def test_references_inside_kept_sequences_follow_the_new_uids() -> None:
    source = _read(_testdata("CT_small.dcm"))
    series = Dataset()
    series.SeriesInstanceUID = source.SeriesInstanceUID
    source.ReferencedSeriesSequence = Sequence([series])
    dataset = _read(deidentify_instance(_to_part10(source), uid_map=UidMap(SALT), pseudonym=PSEUDONYM))
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == dataset.SeriesInstanceUID


def test_another_salt_gives_other_uids() -> None:
    one = _deidentified("CT_small.dcm")
    other = _deidentified("CT_small.dcm", salt=b"another-export-salt-abcdefghijkl")
    assert one.StudyInstanceUID != other.StudyInstanceUID
    assert one.SOPInstanceUID != other.SOPInstanceUID
    assert UidMap.new().replace("1.2.3") != UidMap.new().replace("1.2.3")


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "US1_J2KR.dcm", "SC_rgb.dcm", "emri_small.dcm"],
)
def test_pixel_data_is_byte_identical_and_output_readable(name: str) -> None:
    source = _read(_testdata(name))
    dataset = _deidentified(name)
    assert dataset.PixelData == source.PixelData
    assert dataset.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    assert dataset.preamble == b"\x00" * 128
    assert dataset.Rows == source.Rows


def test_overlay_planes_are_removed() -> None:
    source = _read(_testdata("examples_overlay.dcm"))
    assert [tag for tag in source.keys() if tag.group == 0x6000]
    dataset = _deidentified("examples_overlay.dcm")
    assert not [tag for tag in dataset.keys() if 0x5000 <= tag.group < 0x6100]


def test_structured_report_content_is_removed() -> None:
    dataset = _deidentified("test-SR.dcm")
    assert "ContentSequence" not in dataset
    assert dataset.PatientIdentityRemoved == "YES"


@pytest.mark.parametrize("pseudonym", ["", "Dupont^Jean", "x" * 65, "Ëloïse", "a\\b"])
def test_unsafe_pseudonyms_are_refused(pseudonym: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        deidentify_instance(_testdata("CT_small.dcm"), uid_map=UidMap(SALT), pseudonym=pseudonym)
    assert caught.value.metadata["field"] == "pseudonym"


@pytest.mark.parametrize("part10", [b"", b"not a dicom file", _testdata("CT_small.dcm")[:-2000]])
def test_malformed_input_is_refused(part10: bytes) -> None:
    with pytest.raises(InvalidArgument) as caught:
        deidentify_instance(part10, uid_map=UidMap(SALT), pseudonym=PSEUDONYM)
    assert caught.value.reason == "DICOM_MALFORMED"


def test_short_salts_are_refused() -> None:
    with pytest.raises(ValueError):
        UidMap(b"short")


# --------------------------------------------------------------------------- ZIP export


class _UnseekableSink:
    """A response body: write only, no seek, no tell."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)


def test_zip_holds_one_readable_file_per_instance_laid_out_by_series() -> None:
    uid_map = UidMap(SALT)
    instances = [_testdata("CT_small.dcm"), _second_ct_instance(), _testdata("MR_small.dcm"), _testdata("CT_small.dcm")]
    out = BytesIO()
    summary = export_study_zip(instances, out, uid_map=uid_map, pseudonym=PSEUDONYM)
    assert summary == ExportSummary(instances=3, series=2)
    with zipfile.ZipFile(BytesIO(out.getvalue())) as archive:
        names = archive.namelist()
        assert len(names) == 3
        datasets = {name: _read(archive.read(name)) for name in names}
    for name, dataset in datasets.items():
        assert name == f"{dataset.SeriesInstanceUID}/{dataset.SOPInstanceUID}.dcm"
        assert dataset.PatientName == PSEUDONYM
        assert dataset.PatientIdentityRemoved == "YES"
    ct_series = {dataset.SeriesInstanceUID for dataset in datasets.values() if dataset.Modality == "CT"}
    assert len(ct_series) == 1
    assert len({name.split("/")[0] for name in names}) == 2


def test_zip_is_streamed_one_instance_at_a_time_to_an_unseekable_output() -> None:
    sink = _UnseekableSink()
    written_before_each: list[int] = []

    def instances() -> Iterator[bytes]:
        for part10 in (_testdata("CT_small.dcm"), _second_ct_instance()):
            written_before_each.append(sink.size)
            yield part10

    summary = export_study_zip(instances(), cast(BinaryIO, sink), uid_map=UidMap(SALT), pseudonym=PSEUDONYM)
    assert summary.instances == 2
    assert written_before_each[0] == 0
    assert written_before_each[1] > 10_000  # the first instance (deflated) is out before the second is read
    with zipfile.ZipFile(BytesIO(b"".join(sink.chunks))) as archive:
        assert len(archive.namelist()) == 2
        assert archive.testzip() is None


def test_zip_of_the_same_inputs_and_salt_is_identical() -> None:
    first, second = BytesIO(), BytesIO()
    export_study_zip([_testdata("MR_small.dcm")], first, uid_map=UidMap(SALT), pseudonym=PSEUDONYM)
    export_study_zip([_testdata("MR_small.dcm")], second, uid_map=UidMap(SALT), pseudonym=PSEUDONYM)
    assert first.getvalue() == second.getvalue()
