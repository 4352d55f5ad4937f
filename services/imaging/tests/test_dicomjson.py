"""DICOM JSON (PS3.18 F.2), series metadata documents and index attributes."""

from __future__ import annotations

import base64
import json
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from carnet_imaging.dicomjson import (
    IndexAttributes,
    decode_series_metadata,
    encode_series_metadata,
    index_attributes,
    instance_metadata,
    series_metadata,
)
from carnet_kit.errors import DataLoss, InvalidArgument


def _testdata(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} missing: install pydicom-data"
    return Path(path).read_bytes()


def _charset(name: str) -> bytes:
    return Path(get_charset_files(name)[0]).read_bytes()


def _bulk(path: str) -> str:
    return f"bulk/{path}"


def _to_part10(dataset: pydicom.FileDataset) -> bytes:
    out = BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _ct_dataset() -> pydicom.FileDataset:
    return pydicom.dcmread(BytesIO(_testdata("CT_small.dcm")))


# --------------------------------------------------------------------------- instance metadata


def test_person_name_is_an_object_with_its_alphabetic_group() -> None:
    metadata = instance_metadata(_testdata("CT_small.dcm"), bulk_data_uri=_bulk)
    assert metadata["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^CT1"}]}


def test_numeric_attributes_are_json_numbers() -> None:
    metadata = instance_metadata(_testdata("CT_small.dcm"), bulk_data_uri=_bulk)
    assert metadata["00280010"] == {"vr": "US", "Value": [128]}
    assert metadata["00200013"] == {"vr": "IS", "Value": [1]}
    assert metadata["00280030"] == {"vr": "DS", "Value": [0.661468, 0.661468]}
    assert metadata["00180050"] == {"vr": "DS", "Value": [5.0]}


def test_multi_valued_strings_keep_each_value() -> None:
    metadata = instance_metadata(_testdata("CT_small.dcm"), bulk_data_uri=_bulk)
    assert metadata["00080008"] == {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "AXIAL"]}
    assert metadata["0020000D"] == {"vr": "UI", "Value": ["1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"]}


def test_pixel_data_is_a_bulk_data_uri_made_from_its_tag() -> None:
    seen: list[str] = []

    def uri(path: str) -> str:
        seen.append(path)
        return f"https://carnet.invalid/bulk/{path}"

    metadata = instance_metadata(_testdata("CT_small.dcm"), bulk_data_uri=uri)
    assert metadata["7FE00010"] == {"vr": "OW", "BulkDataURI": "https://carnet.invalid/bulk/7FE00010"}
    assert "7FE00010" in seen


def test_pixel_data_is_a_bulk_data_uri_even_below_the_threshold() -> None:
    metadata = instance_metadata(_testdata("CT_small.dcm"), bulk_data_uri=_bulk, bulk_threshold=10**9)
    assert metadata["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}


def test_short_binary_is_inline_and_long_binary_is_bulk() -> None:
    part10 = _testdata("CT_small.dcm")
    raw = pydicom.dcmread(BytesIO(part10))[0x00431028].value
    inline = instance_metadata(part10, bulk_data_uri=_bulk)
    assert inline["00431028"] == {"vr": "OB", "InlineBinary": base64.b64encode(raw).decode()}
    bulk = instance_metadata(part10, bulk_data_uri=_bulk, bulk_threshold=len(raw) - 1)
    assert bulk["00431028"] == {"vr": "OB", "BulkDataURI": "bulk/00431028"}


def test_empty_attributes_have_no_value() -> None:
    metadata = instance_metadata(_testdata("CT_small.dcm"), bulk_data_uri=_bulk)
    assert metadata["00080090"] == {"vr": "PN"}
    assert metadata["00080050"] == {"vr": "SH"}
    assert metadata["00100030"] == {"vr": "DA"}


def test_file_meta_and_group_lengths_are_left_out() -> None:
    metadata = instance_metadata(_testdata("CT_small.dcm"), bulk_data_uri=_bulk)
    assert not [tag for tag in metadata if tag.startswith("0002") or tag.endswith("0000")]
    assert list(metadata) == sorted(metadata)


def test_private_attributes_are_kept_with_their_vr() -> None:
    metadata = instance_metadata(_testdata("CT_small.dcm"), bulk_data_uri=_bulk)
    assert metadata["00091002"] == {"vr": "SH", "Value": ["CT01"]}


def test_nested_sequences_and_their_values() -> None:
    metadata = instance_metadata(_testdata("rtplan.dcm"), bulk_data_uri=_bulk)
    machine = metadata["300A00B0"]["Value"][0]
    assert machine["300A00B2"] == {"vr": "SH", "Value": ["unit001"]}
    assert machine["300A00B4"] == {"vr": "DS", "Value": [1000.0]}
    assert machine["300A00B6"] == {
        "vr": "SQ",
        "Value": [
            {"300A00B8": {"vr": "CS", "Value": ["X"]}, "300A00BC": {"vr": "IS", "Value": [1]}},
            {"300A00B8": {"vr": "CS", "Value": ["Y"]}, "300A00BC": {"vr": "IS", "Value": [1]}},
        ],
    }


def test_structured_report_content_tree_is_nested() -> None:
    metadata = instance_metadata(_testdata("test-SR.dcm"), bulk_data_uri=_bulk)
    first = metadata["0040A730"]["Value"][0]
    assert first["0040A040"] == {"vr": "CS", "Value": ["UIDREF"]}
    assert first["0040A124"] == {"vr": "UI", "Value": ["1.2.3.4.5"]}
    assert first["0040A043"]["Value"][0]["00080104"] == {"vr": "LO", "Value": ["Some UID"]}


def test_bulk_data_in_sequence_items_is_addressed_by_tag_path() -> None:
    dataset = _ct_dataset()
    icons = []
    for fill in (b"\x01", b"\x02"):
        icon = Dataset()
        icon.Rows, icon.Columns = 64, 64
        icon.add_new(0x7FE00010, "OB", fill * 4096)
        icons.append(icon)
    dataset.IconImageSequence = Sequence(icons)
    dataset.add_new(0x00091001, "LO", "GE_GENESIS_FF")
    metadata = instance_metadata(_to_part10(dataset), bulk_data_uri=_bulk)
    items = metadata["00880200"]["Value"]
    assert items[0]["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulk/00880200/0/7FE00010"}
    assert items[1]["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulk/00880200/1/7FE00010"}
    assert items[1]["00280010"] == {"vr": "US", "Value": [64]}


def test_attribute_tags_are_tag_strings() -> None:
    dataset = _ct_dataset()
    dataset.FrameIncrementPointer = [0x00181063, 0x00540080]
    metadata = instance_metadata(_to_part10(dataset), bulk_data_uri=_bulk)
    assert metadata["00280009"] == {"vr": "AT", "Value": ["00181063", "00540080"]}


def test_japanese_person_name_has_its_three_groups() -> None:
    metadata = instance_metadata(_charset("chrH31.dcm"), bulk_data_uri=_bulk)
    assert metadata["00080005"] == {"vr": "CS", "Value": [None, "ISO 2022 IR 87"]}
    assert metadata["00100010"] == {
        "vr": "PN",
        "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}],
    }


@pytest.mark.parametrize(
    ("name", "ideographic"),
    [("chrX1.dcm", "王^小東"), ("chrX2.dcm", "王^小东")],
)
def test_chinese_person_names_are_decoded(name: str, ideographic: str) -> None:
    metadata = instance_metadata(_charset(name), bulk_data_uri=_bulk)
    assert metadata["00100010"]["Value"] == [{"Alphabetic": "Wang^XiaoDong", "Ideographic": ideographic}]


def test_character_set_of_a_sequence_item_applies_inside_it() -> None:
    part10 = _charset("chrSQEncoding.dcm")
    metadata = instance_metadata(part10, bulk_data_uri=_bulk)
    item = metadata["00321064"]["Value"][0]
    assert item["00100010"]["Value"] == [
        {"Alphabetic": "ﾔﾏﾀﾞ^ﾀﾛｳ", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]


def test_multi_frame_instance() -> None:
    metadata = instance_metadata(_testdata("emri_small.dcm"), bulk_data_uri=_bulk)
    assert metadata["00280008"] == {"vr": "IS", "Value": [10]}
    assert metadata["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}


def test_encapsulated_pixel_data_is_bulk_with_the_vr_of_the_file() -> None:
    metadata = instance_metadata(_testdata("US1_J2KR.dcm"), bulk_data_uri=_bulk)
    assert metadata["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulk/7FE00010"}
    # This sample declares its encapsulated pixel data OW; the file is reported as it is.
    metadata = instance_metadata(_testdata("emri_small_jpeg_2k_lossless.dcm"), bulk_data_uri=_bulk)
    assert metadata["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}


def test_same_instance_in_three_transfer_syntaxes_gives_the_same_json() -> None:
    explicit = instance_metadata(_testdata("MR_small.dcm"), bulk_data_uri=_bulk)
    assert instance_metadata(_testdata("MR_small_bigendian.dcm"), bulk_data_uri=_bulk) == explicit
    assert instance_metadata(_testdata("MR_small_implicit.dcm"), bulk_data_uri=_bulk) == explicit


def test_inline_binary_is_little_endian_from_a_big_endian_file() -> None:
    dataset = pydicom.dcmread(BytesIO(_testdata("MR_small_bigendian.dcm")))
    dataset.RedPaletteColorLookupTableData = b"\x01\x02\x03\x04"  # OW, stored big endian as given
    metadata = instance_metadata(_to_part10(dataset), bulk_data_uri=_bulk)
    assert base64.b64decode(metadata["00281201"]["InlineBinary"]) == b"\x02\x01\x04\x03"


def test_metadata_is_serialisable_as_strict_json() -> None:
    metadata = instance_metadata(_testdata("eCT_Supplemental.dcm"), bulk_data_uri=_bulk)
    assert json.loads(json.dumps(metadata, allow_nan=False)) == metadata
    assert metadata["52009229"]["Value"][0]["00189329"]["Value"][0]["00089007"]["Value"] == [
        "DERIVED",
        "PRIMARY",
        "PERFUSION",
        "RCBF",
    ]


# --------------------------------------------------------------------------- series document


def _instance_json(sop: str, number: int, series: str = "1.2.3") -> dict[str, dict[str, object]]:
    return {
        "00080018": {"vr": "UI", "Value": [sop]},
        "0020000E": {"vr": "UI", "Value": [series]},
        "00200013": {"vr": "IS", "Value": [number]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]},
    }


def test_series_document_orders_instances_by_number_and_drops_duplicates() -> None:
    first, second, third = _instance_json("1.9.1", 1), _instance_json("1.9.2", 2), _instance_json("1.9.3", 3)
    again = _instance_json("1.9.2", 2)
    again["00100010"] = {"vr": "PN"}
    combined = series_metadata([third, first, second, again])
    assert [item["00080018"]["Value"] for item in combined] == [["1.9.1"], ["1.9.2"], ["1.9.3"]]
    assert combined[1]["00100010"] == {"vr": "PN"}


def test_series_document_round_trips_and_is_compact_utf8() -> None:
    part10 = _testdata("CT_small.dcm")
    instance = instance_metadata(part10, bulk_data_uri=_bulk)
    japanese = instance_metadata(_charset("chrH31.dcm"), bulk_data_uri=_bulk)
    japanese["0020000E"] = instance["0020000E"]
    document = encode_series_metadata([instance, japanese])
    assert document.startswith(b'[{"')
    assert b'", "' not in document and b'": ' not in document
    assert "山田^太郎".encode() in document
    assert decode_series_metadata(document) == series_metadata([instance, japanese])


def test_series_document_refuses_instances_of_two_series() -> None:
    with pytest.raises(InvalidArgument):
        series_metadata([_instance_json("1.9.1", 1, "1.2.3"), _instance_json("1.9.2", 2, "1.2.4")])


def test_series_document_refuses_an_instance_without_sop_instance_uid() -> None:
    with pytest.raises(InvalidArgument) as caught:
        series_metadata([{"0020000E": {"vr": "UI", "Value": ["1.2.3"]}}])
    assert caught.value.reason == "DICOM_MALFORMED"


@pytest.mark.parametrize("document", [b"{}", b"[1]", b"not json", b"\xff"])
def test_decoding_a_damaged_series_document_is_data_loss(document: bytes) -> None:
    with pytest.raises(DataLoss):
        decode_series_metadata(document)


# --------------------------------------------------------------------------- index attributes


def test_index_attributes_of_ct_small() -> None:
    assert index_attributes(_testdata("CT_small.dcm")) == IndexAttributes(
        patient_id="1CT1",
        issuer_of_patient_id=None,
        issuer_of_patient_id_universal_entity_id=None,
        patient_name="CompressedSamples^CT1",
        patient_birth_date=None,
        patient_sex="O",
        study_instance_uid="1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
        study_date="20040119",
        study_time="072730",
        accession_number=None,
        study_description="e+1",
        study_id="1CT1",
        referring_physician_name=None,
        series_instance_uid="1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322",
        modality="CT",
        series_number=1,
        series_description=None,
        body_part_examined=None,
        series_date="19970430",
        series_time="112749",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid="1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
        instance_number=1,
        rows=128,
        columns=128,
        number_of_frames=1,
        photometric_interpretation="MONOCHROME2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )


def test_index_attributes_are_the_same_whatever_the_transfer_syntax() -> None:
    explicit = index_attributes(_testdata("MR_small.dcm"))
    for name, syntax in (
        ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ):
        other = index_attributes(_testdata(name))
        assert other.transfer_syntax_uid == syntax
        assert other.rows == explicit.rows == 64
        assert other.patient_name == explicit.patient_name
        assert other.sop_instance_uid == explicit.sop_instance_uid


def test_index_attributes_of_a_multi_frame_instance() -> None:
    attributes = index_attributes(_testdata("emri_small.dcm"))
    assert (attributes.number_of_frames, attributes.rows, attributes.columns, attributes.modality) == (10, 64, 64, "MR")


def test_index_attributes_decode_the_character_set() -> None:
    attributes = index_attributes(_charset("chrH31.dcm"))
    assert attributes.patient_name == "Yamada^Tarou=山田^太郎=やまだ^たろう"


def test_index_attributes_of_a_deflated_file_agree_with_pydicom() -> None:
    part10 = _testdata("image_dfl.dcm")
    dataset = pydicom.dcmread(BytesIO(part10))
    attributes = index_attributes(part10)
    assert attributes.transfer_syntax_uid == "1.2.840.10008.1.2.1.99"
    assert attributes.sop_instance_uid == dataset.SOPInstanceUID
    assert attributes.rows == dataset.Rows


@pytest.mark.parametrize("undefined_length", [False, True])
def test_index_attributes_read_the_issuer_universal_entity_id(undefined_length: bool) -> None:
    dataset = _ct_dataset()
    dataset.IssuerOfPatientID = "HOPITAL-NORD"
    qualifier = Dataset()
    qualifier.UniversalEntityID = "1.2.250.1.71.4.2.1"
    qualifier.UniversalEntityIDType = "ISO"
    dataset.IssuerOfPatientIDQualifiersSequence = Sequence([qualifier])
    dataset["IssuerOfPatientIDQualifiersSequence"].is_undefined_length = undefined_length
    attributes = index_attributes(_to_part10(dataset))
    assert attributes.issuer_of_patient_id == "HOPITAL-NORD"
    assert attributes.issuer_of_patient_id_universal_entity_id == "1.2.250.1.71.4.2.1"


# --------------------------------------------------------------------------- malformed input


def _without(keyword: str) -> bytes:
    dataset = _ct_dataset()
    delattr(dataset, keyword)
    return _to_part10(dataset)


def _malformed_inputs() -> list[tuple[str, bytes]]:
    ct = _testdata("CT_small.dcm")
    return [
        ("empty", b""),
        ("not dicom", b"hello, world" * 20),
        ("no DICM prefix", b"\x00" * 128 + b"DICX" + ct[132:]),
        ("cut in file meta", ct[:200]),
        ("cut in header", ct[:2000]),
        ("cut in an element header", ct[:6003]),
        ("cut in pixel data", ct[:-1000]),
        ("one byte short", ct[:-1]),
        ("pydicom truncated sample", _testdata("MR_truncated.dcm")),
        ("truncated sequence", _testdata("rtplan_truncated.dcm")),
        ("encapsulated pixel data without its end", _testdata("emri_small_jpeg_2k_lossless_too_short.dcm")),
        ("no StudyInstanceUID", _without("StudyInstanceUID")),
        ("no SeriesInstanceUID", _without("SeriesInstanceUID")),
        ("no SOPInstanceUID", _without("SOPInstanceUID")),
    ]


@pytest.mark.parametrize(("case", "part10"), _malformed_inputs(), ids=[case for case, _ in _malformed_inputs()])
def test_index_attributes_refuse_malformed_input(case: str, part10: bytes) -> None:
    with pytest.raises(InvalidArgument) as caught:
        index_attributes(part10)
    assert caught.value.reason == "DICOM_MALFORMED"
    assert caught.value.domain == "imaging.carnet"


@pytest.mark.parametrize(
    ("case", "part10"), _malformed_inputs()[:11], ids=[case for case, _ in _malformed_inputs()[:11]]
)
def test_instance_metadata_refuses_unreadable_or_truncated_input(case: str, part10: bytes) -> None:
    with pytest.raises(InvalidArgument) as caught:
        instance_metadata(part10, bulk_data_uri=_bulk)
    assert caught.value.reason == "DICOM_MALFORMED"
