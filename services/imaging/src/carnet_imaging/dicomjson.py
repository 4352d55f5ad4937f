"""DICOM JSON (PS3.18 Annex F.2) and index attributes, built once at ingest.

WADO-RS metadata and QIDO-RS answers are served from documents made here when an
instance is stored, so that a metadata request never parses a DICOM file. Everything
in this module is pure and synchronous: the service calls it through
``asyncio.to_thread``.

Three things live here:

* :func:`instance_metadata` turns a Part 10 file into its DICOM JSON object;
* :func:`encode_series_metadata` / :func:`decode_series_metadata` make and read the
  per-series document that WADO-RS series metadata returns (a JSON array);
* :func:`index_attributes` reads the few attributes the instance index needs, from the
  header only, on the ingest path of every instance.

Every function that takes Part 10 bytes first checks that the bytes hold a whole
file (:func:`read_part10` is the one place where parse failures become
:class:`~carnet_kit.errors.InvalidArgument` with reason ``DICOM_MALFORMED``).
pydicom silently accepts a file cut short, so the check walks the element headers
of the whole top-level data set itself, pixel data included.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Final

import pydicom
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import TEXT_VR_DELIMS, PersonName

from carnet_kit.errors import DataLoss, InvalidArgument

__all__ = [
    "DEFAULT_BULK_THRESHOLD",
    "ERROR_DOMAIN",
    "MALFORMED_REASON",
    "BulkDataUri",
    "DicomJson",
    "IndexAttributes",
    "decode_series_metadata",
    "encode_series_metadata",
    "index_attributes",
    "instance_metadata",
    "malformed",
    "read_part10",
    "series_metadata",
]

#: Binary values longer than this many bytes become ``BulkDataURI`` references
#: instead of ``InlineBinary`` (pixel data is always a reference).
DEFAULT_BULK_THRESHOLD: Final = 1024

#: ``ErrorInfo.domain`` of the errors raised here.
ERROR_DOMAIN: Final = "imaging.carnet"

#: ``ErrorInfo.reason`` when Part 10 bytes cannot be parsed, are truncated, or lack
#: one of the three instance UIDs.
MALFORMED_REASON: Final = "DICOM_MALFORMED"

DicomJson = dict[str, dict[str, Any]]
"""One DICOM JSON object: attribute tags (8 upper-case hex digits) to attribute objects."""

BulkDataUri = Callable[[str], str]
"""Makes the ``BulkDataURI`` of an attribute from its tag path (``"00540016/0/00181074"``)."""

_PIXEL_DATA_TAGS: Final = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_TRAILING_PADDING_TAG: Final = 0xFFFCFFFC
_BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# Word size of the binary VRs whose bytes depend on the byte order of the file.
_WORD_SIZE: Final = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_INT_VRS: Final = frozenset({"SL", "SS", "UL", "US", "SV", "UV"})
_FLOAT_VRS: Final = frozenset({"FL", "FD"})
# Explicit VR encodings whose value length takes 4 bytes (PS3.5 Table 7.1-1).
_LONG_LENGTH_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_LENGTH_VRS: Final = frozenset(
    {
        b"AE",
        b"AS",
        b"AT",
        b"CS",
        b"DA",
        b"DS",
        b"DT",
        b"FD",
        b"FL",
        b"IS",
        b"LO",
        b"LT",
        b"PN",
        b"SH",
        b"SL",
        b"SS",
        b"ST",
        b"TM",
        b"UI",
        b"UL",
        b"US",
    }
)
_UNDEFINED_LENGTH: Final = 0xFFFFFFFF
_ITEM: Final = 0xFFFEE000
_ITEM_DELIMITER: Final = 0xFFFEE00D
_SEQUENCE_DELIMITER: Final = 0xFFFEE0DD
_IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
_EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
# Deflated data sets cannot be walked in place; pydicom inflates them.
_DEFLATED: Final = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})
# JSON numbers are IEEE doubles in most clients: larger 64-bit integers travel as strings.
_MAX_EXACT_INT: Final = 2**53

# What pydicom raises on bytes that are not a well-formed Part 10 file.
_PARSE_ERRORS: Final = (
    InvalidDicomError,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    NotImplementedError,
    OverflowError,
    struct.error,
)


def malformed(message: str) -> InvalidArgument:
    """The error for Part 10 bytes that cannot be used (reason ``DICOM_MALFORMED``)."""
    return InvalidArgument(message, reason=MALFORMED_REASON, domain=ERROR_DOMAIN)


# --------------------------------------------------------------------------- walking


class _CannotWalk(Exception):
    """The layout is legal but not one the header walk handles; pydicom reads it alone."""


@dataclass(frozen=True, slots=True)
class _Walk:
    """What a walk of the top-level element headers found."""

    transfer_syntax_uid: str
    little_endian: bool
    implicit_vr: bool
    #: Wanted tag -> (VR or ``None`` in implicit VR, value bytes). An undefined-length
    #: sequence comes as its items without the sequence delimiter.
    elements: dict[int, tuple[str | None, bytes]]


class _HeaderWalker:
    """Walks element headers of a Part 10 file without decoding values.

    It proves that every element, pixel data and trailing padding included, fits
    inside the bytes and that every undefined-length value (sequences, encapsulated
    pixel data) reaches its delimiter: a file cut short is the usual failure of a
    transfer, and pydicom reads one without complaint. On the way it collects the
    raw values of a few wanted top-level elements.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._size = len(data)
        self._implicit = False
        self._little_endian = True

    def walk(self, wanted: frozenset[int]) -> _Walk:
        data = self._data
        size = self._size
        if size < 132 or data[128:132] != b"DICM":
            raise malformed("not a DICOM Part 10 file: no 'DICM' prefix after the preamble")
        position, transfer_syntax = self._file_meta(132)
        if transfer_syntax is None:
            raise _CannotWalk("no Transfer Syntax UID in the file meta information")
        if transfer_syntax in _DEFLATED:
            raise _CannotWalk("deflated data set")
        implicit = self._implicit = transfer_syntax == _IMPLICIT_VR_LITTLE_ENDIAN
        self._little_endian = transfer_syntax != _EXPLICIT_VR_BIG_ENDIAN
        order = "<" if self._little_endian else ">"
        # One unpack per element header: this loop runs over every element of every
        # instance ingested.
        implicit_header = struct.Struct(order + "HHI")
        explicit_header = struct.Struct(order + "HH2sH")
        long_length = struct.Struct(order + "I")
        elements: dict[int, tuple[str | None, bytes]] = {}
        while position < size:
            if position + 8 > size:
                raise malformed("truncated DICOM file: an element header is cut short")
            vr: bytes | None = None
            if implicit:
                group, number, length = implicit_header.unpack_from(data, position)
                value_start = position + 8
            else:
                group, number, vr, length = explicit_header.unpack_from(data, position)
                if vr in _LONG_LENGTH_VRS:
                    if position + 12 > size:
                        raise malformed("truncated DICOM file: an element header is cut short")
                    (length,) = long_length.unpack_from(data, position + 8)
                    value_start = position + 12
                elif vr in _SHORT_LENGTH_VRS:
                    value_start = position + 8
                else:
                    # An implicit VR element inside an explicit VR file: pydicom copes, with a warning.
                    raise _CannotWalk("element without an explicit VR")
            tag = group << 16 | number
            if length == _UNDEFINED_LENGTH:
                end = self._end_of_sequence(value_start)
                if tag in wanted:
                    elements[tag] = ("SQ", data[value_start : end - 8])
            else:
                end = value_start + length
                if end > size:
                    raise malformed(f"truncated DICOM file: element ({group:04X},{number:04X}) is cut short")
                if tag in wanted:
                    elements[tag] = (vr.decode("ascii") if vr else None, data[value_start:end])
            position = end
        return _Walk(transfer_syntax, self._little_endian, implicit, elements)

    def _file_meta(self, position: int) -> tuple[int, str | None]:
        """Skip group 0002 (always explicit VR little endian); return where it ends and the TS."""
        data = self._data
        transfer_syntax: str | None = None
        while position + 8 <= self._size:
            group, element = struct.unpack_from("<HH", data, position)
            if group != 0x0002:
                break
            vr = data[position + 4 : position + 6]
            if not vr.isalpha() or not vr.isupper():
                raise _CannotWalk("file meta information not in explicit VR")
            if vr in _LONG_LENGTH_VRS:
                (length,) = struct.unpack_from("<I", data, position + 8)
                header = 12
            else:
                (length,) = struct.unpack_from("<H", data, position + 6)
                header = 8
            end = position + header + length
            if end > self._size:
                raise malformed("truncated DICOM file: the file meta information is cut short")
            if element == 0x0010:
                transfer_syntax = data[position + header : end].rstrip(b"\x00 ").decode("ascii", "replace")
            position = end
        return position, transfer_syntax

    def _header(self, position: int) -> tuple[int, int, int]:
        """Tag, value length and header size of one element inside a sequence."""
        if position + 8 > self._size:
            raise malformed("truncated DICOM file: an element header is cut short")
        order = "<" if self._little_endian else ">"
        group, number = struct.unpack_from(order + "HH", self._data, position)
        tag = group << 16 | number
        if self._implicit or group == 0xFFFE:
            return tag, struct.unpack_from(order + "I", self._data, position + 4)[0], 8
        vr = self._data[position + 4 : position + 6]
        if vr in _LONG_LENGTH_VRS:
            if position + 12 > self._size:
                raise malformed("truncated DICOM file: an element header is cut short")
            return tag, struct.unpack_from(order + "I", self._data, position + 8)[0], 12
        if vr not in _SHORT_LENGTH_VRS:
            raise _CannotWalk("element without an explicit VR")
        return tag, struct.unpack_from(order + "H", self._data, position + 6)[0], 8

    def _end_of_sequence(self, position: int) -> int:
        """Where an undefined-length value (sequence of items) ends, its delimiter included."""
        while True:
            tag, length, header = self._header(position)
            position += header
            if tag == _SEQUENCE_DELIMITER:
                return position
            if tag != _ITEM:
                raise malformed("malformed DICOM file: a sequence holds something other than items")
            if length == _UNDEFINED_LENGTH:
                position = self._end_of_item(position)
            else:
                position += length
                if position > self._size:
                    raise malformed("truncated DICOM file: a sequence item is cut short")

    def _end_of_item(self, position: int) -> int:
        """Where an undefined-length item ends, its delimiter included."""
        while True:
            tag, length, header = self._header(position)
            position += header
            if tag == _ITEM_DELIMITER:
                return position
            if length == _UNDEFINED_LENGTH:
                position = self._end_of_sequence(position)
            else:
                position += length
                if position > self._size:
                    raise malformed("truncated DICOM file: an element in a sequence item is cut short")


def _walk(part10: bytes, wanted: frozenset[int] = frozenset()) -> _Walk | None:
    """Check the bytes hold a whole Part 10 file; ``None`` when only pydicom can tell."""
    try:
        return _HeaderWalker(part10).walk(wanted)
    except _CannotWalk:
        return None
    except RecursionError as exc:
        raise malformed("malformed DICOM file: sequences nested too deep") from exc


def read_part10(part10: bytes, *, defer_size: int | None = None, stop_before_pixels: bool = False) -> FileDataset:
    """Parse a whole Part 10 file, refusing one that is truncated or unreadable.

    Parameters
    ----------
    part10 : bytes
        The file, preamble and ``DICM`` prefix included.
    defer_size : int, optional
        Values longer than this are read only when accessed (pydicom's ``defer_size``).
    stop_before_pixels : bool, optional
        Stop at the pixel data element (it is still checked to be complete).

    Returns
    -------
    pydicom.dataset.FileDataset
        The data set, with its file meta information in ``file_meta``.

    Raises
    ------
    carnet_kit.errors.InvalidArgument
        With reason ``DICOM_MALFORMED`` when the bytes are not a readable, whole file.
    """
    _walk(part10)
    try:
        return pydicom.dcmread(BytesIO(part10), defer_size=defer_size, stop_before_pixels=stop_before_pixels)
    except _PARSE_ERRORS as exc:
        raise malformed(f"unreadable DICOM file: {exc}") from exc


# --------------------------------------------------------------------------- DICOM JSON


def instance_metadata(
    part10: bytes,
    *,
    bulk_data_uri: BulkDataUri,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
) -> DicomJson:
    """The DICOM JSON object of one instance (PS3.18 F.2), file meta group excluded.

    Every attribute is present, sequences nested, with its ``"vr"`` and, unless it is
    empty, a ``"Value"`` array, an ``"InlineBinary"`` (base64) or a ``"BulkDataURI"``:

    * PN values are objects with ``"Alphabetic"``, ``"Ideographic"`` and
      ``"Phonetic"`` members (only the groups present); AT values are 8-hex-digit tag
      strings; IS and DS values are JSON numbers; empty components of a multi-valued
      attribute are ``null``; text is decoded from its specific character set.
    * Binary values (OB, OD, OF, OL, OV, OW, UN) longer than `bulk_threshold` bytes,
      and pixel data always, become ``"BulkDataURI"`` made by `bulk_data_uri` from
      the tag path: ``"7FE00010"`` at top level, ``"00540016/0/00181074"`` for an
      attribute of the first item of a sequence.
    * Shorter binary values are ``"InlineBinary"``, little endian whatever the byte
      order of the file.

    Group length elements (gggg,0000) and Data Set Trailing Padding are left out:
    they describe the encoding of the file, not the instance.

    A DS or IS value that is not a number is kept as the string found in the file
    rather than dropped.

    Parameters
    ----------
    part10 : bytes
        The Part 10 file.
    bulk_data_uri : callable
        Makes the URI of a bulk value from its tag path.
    bulk_threshold : int, optional
        Longest binary value, in bytes, kept inline.

    Returns
    -------
    dict
        The instance's DICOM JSON object, keys in ascending tag order.

    Raises
    ------
    carnet_kit.errors.InvalidArgument
        With reason ``DICOM_MALFORMED`` when the bytes are not a readable, whole file.
    """
    dataset = read_part10(part10, defer_size=bulk_threshold)
    is_implicit, little_endian = dataset.original_encoding
    encoder = _JsonEncoder(bulk_data_uri, bulk_threshold, little_endian is not False)
    try:
        return encoder.top_level(dataset, implicit_vr=bool(is_implicit))
    except _PARSE_ERRORS as exc:
        raise malformed(f"unreadable DICOM value: {exc}") from exc


class _JsonEncoder:
    """Turns a pydicom data set into DICOM JSON, carrying the tag path of each element."""

    def __init__(self, bulk_data_uri: BulkDataUri, bulk_threshold: int, little_endian: bool) -> None:
        self._bulk_data_uri = bulk_data_uri
        self._bulk_threshold = bulk_threshold
        self._little_endian = little_endian

    def top_level(self, dataset: Dataset, *, implicit_vr: bool) -> DicomJson:
        result: DicomJson = {}
        for tag in sorted(dataset.keys()):
            if _left_out(tag):
                continue
            path = f"{tag:08X}"
            raw = dataset.get_item(tag, keep_deferred=True)
            # Large values were not read (defer_size): answer bulk ones from the header alone.
            if isinstance(raw, RawDataElement):
                vr = raw.VR or _dictionary_vr(tag)
                if tag in _PIXEL_DATA_TAGS:
                    result[path] = {"vr": _pixel_data_vr(raw.VR, implicit_vr), "BulkDataURI": self._bulk_data_uri(path)}
                    continue
                if raw.value is None and raw.length and vr in _BINARY_VRS:
                    result[path] = {"vr": vr, "BulkDataURI": self._bulk_data_uri(path)}
                    continue
            result[path] = self._attribute(dataset[tag], path)
        return result

    def _dataset(self, dataset: Dataset, prefix: str) -> DicomJson:
        result: DicomJson = {}
        for tag in sorted(dataset.keys()):
            if _left_out(tag):
                continue
            path = f"{prefix}{tag:08X}"
            result[f"{tag:08X}"] = self._attribute(dataset[tag], path)
        return result

    def _attribute(self, element: DataElement, path: str) -> dict[str, Any]:
        value = element.value
        vr = _concrete_vr(element.VR, value)
        if vr == "SQ":
            items = list(value) if isinstance(value, Sequence) else []
            if not items:
                return {"vr": vr}
            return {"vr": vr, "Value": [self._dataset(item, f"{path}/{index}/") for index, item in enumerate(items)]}
        if vr in _BINARY_VRS:
            if element.tag in _PIXEL_DATA_TAGS:
                return {"vr": vr, "BulkDataURI": self._bulk_data_uri(path)}
            octets = value if isinstance(value, bytes | bytearray) else b""
            if not octets:
                return {"vr": vr}
            if len(octets) > self._bulk_threshold:
                return {"vr": vr, "BulkDataURI": self._bulk_data_uri(path)}
            return {"vr": vr, "InlineBinary": base64.b64encode(self._little_endian_bytes(vr, bytes(octets))).decode()}
        values = _values(value)
        if not values:
            return {"vr": vr}
        return {"vr": vr, "Value": [_json_value(vr, item) for item in values]}

    def _little_endian_bytes(self, vr: str, octets: bytes) -> bytes:
        size = _WORD_SIZE.get(vr)
        if self._little_endian or size is None or len(octets) % size:
            return octets
        swapped = bytearray(len(octets))
        for start in range(size):
            swapped[start::size] = octets[size - 1 - start :: size]
        return bytes(swapped)


def _left_out(tag: int) -> bool:
    return tag & 0xFFFF == 0 or tag >> 16 == 0x0002 or tag == _TRAILING_PADDING_TAG


def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN" if tag >> 16 & 1 else None


def _pixel_data_vr(vr: str | None, implicit_vr: bool) -> str:
    # Implicit VR pixel data is OW (PS3.5 A.1); explicit VR names its own.
    if vr and " or " not in vr and not implicit_vr:
        return str(vr)
    return "OW"


def _concrete_vr(vr: str, value: object) -> str:
    """One VR for the rare element whose ambiguous VR pydicom could not settle."""
    if " or " not in vr:
        return str(vr)
    if isinstance(value, bytes | bytearray):
        return "OW" if "OW" in vr else "OB"
    return str(vr.split(" or ")[0])


def _values(value: object) -> list[Any]:
    if value is None or value == "" or value == b"":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]


def _json_value(vr: str, value: Any) -> Any:
    """One component of a non-binary value as F.2.3 encodes it."""
    if value is None or value == "":
        return None
    if vr == "PN":
        return _person_name(value)
    if vr == "AT":
        return f"{int(value):08X}"
    if vr == "IS" or vr in _INT_VRS:
        return _integer(value)
    if vr == "DS" or vr in _FLOAT_VRS:
        return _decimal(value)
    return value.original_string if isinstance(getattr(value, "original_string", None), str) else str(value)


def _person_name(value: Any) -> dict[str, str] | None:
    name = value if isinstance(value, PersonName) else PersonName(str(value))
    groups = {"Alphabetic": name.alphabetic, "Ideographic": name.ideographic, "Phonetic": name.phonetic}
    result = {key: text for key, text in groups.items() if text}
    return result or None


def _integer(value: Any) -> int | str:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return str(value).strip()
    if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
        return value.strip()
    return number if abs(number) <= _MAX_EXACT_INT else str(number)


def _decimal(value: Any) -> int | float | str:
    text = getattr(value, "original_string", None)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value).strip()
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if isinstance(text, str) and text.strip().lstrip("+-").isdigit():
        return int(text)
    return number


# --------------------------------------------------------------------------- series document


def series_metadata(instances: Iterable[Mapping[str, Mapping[str, Any]]]) -> list[DicomJson]:
    """Combine the DICOM JSON objects of one series into its WADO-RS metadata array.

    Instances are ordered by Instance Number, then SOP Instance UID; an instance given
    twice (same SOP Instance UID) appears once, the last given winning.

    Raises
    ------
    carnet_kit.errors.InvalidArgument
        When an object has no SOP Instance UID or the objects span several series.
    """
    by_sop: dict[str, DicomJson] = {}
    series_uids: set[str] = set()
    for instance in instances:
        sop = _first_string(instance, "00080018")
        if sop is None:
            raise InvalidArgument(
                "instance metadata without SOP Instance UID", reason=MALFORMED_REASON, domain=ERROR_DOMAIN
            )
        series = _first_string(instance, "0020000E")
        if series is not None:
            series_uids.add(series)
        by_sop[sop] = {tag: dict(attribute) for tag, attribute in instance.items()}
    if len(series_uids) > 1:
        raise InvalidArgument("instances of several series given for one series document", domain=ERROR_DOMAIN)

    def order(item: tuple[str, DicomJson]) -> tuple[bool, int, str]:
        number = item[1].get("00200013", {}).get("Value", [None])[0]
        return (not isinstance(number, int), number if isinstance(number, int) else 0, item[0])

    return [instance for _sop, instance in sorted(by_sop.items(), key=order)]


def encode_series_metadata(instances: Iterable[Mapping[str, Mapping[str, Any]]]) -> bytes:
    """The series metadata document as stored and served: compact UTF-8 JSON array.

    See :func:`series_metadata` for how the instances are combined.
    """
    return json.dumps(series_metadata(instances), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def decode_series_metadata(document: bytes) -> list[DicomJson]:
    """Read back a document made by :func:`encode_series_metadata`.

    Raises
    ------
    carnet_kit.errors.DataLoss
        When the document is not a JSON array of objects.
    """
    try:
        decoded = json.loads(document.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataLoss(f"series metadata document is not JSON: {exc}", domain=ERROR_DOMAIN) from exc
    if not isinstance(decoded, list) or not all(isinstance(item, dict) for item in decoded):
        raise DataLoss("series metadata document is not a JSON array of objects", domain=ERROR_DOMAIN)
    return decoded


def _first_string(instance: Mapping[str, Mapping[str, Any]], tag: str) -> str | None:
    values = instance.get(tag, {}).get("Value")
    if isinstance(values, list) and values and isinstance(values[0], str) and values[0]:
        return values[0]
    return None


# --------------------------------------------------------------------------- index attributes


@dataclass(frozen=True, slots=True)
class IndexAttributes:
    """What the instance index keeps at PATIENT, STUDY, SERIES and IMAGE level.

    Text is decoded to Unicode; an attribute that is absent or empty is ``None``.
    Person names keep all their component groups (``"Yamada^Tarou=山田^太郎"``).
    """

    patient_id: str | None
    issuer_of_patient_id: str | None
    #: Universal Entity ID of the first item of Issuer of Patient ID Qualifiers Sequence.
    issuer_of_patient_id_universal_entity_id: str | None
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    study_instance_uid: str
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    study_description: str | None
    study_id: str | None
    referring_physician_name: str | None
    series_instance_uid: str
    modality: str | None
    series_number: int | None
    series_description: str | None
    body_part_examined: str | None
    series_date: str | None
    series_time: str | None
    sop_class_uid: str | None
    sop_instance_uid: str
    instance_number: int | None
    rows: int | None
    columns: int | None
    #: Number of Frames, 1 for a single-frame instance that does not state it.
    number_of_frames: int
    photometric_interpretation: str | None
    #: Transfer Syntax UID of the file meta information.
    transfer_syntax_uid: str


# How each index attribute is decoded: ASCII-only VRs need no character set.
_ASCII, _TEXT, _NAME, _US, _SQ = "ascii", "text", "name", "us", "sq"
_INDEX_KINDS: Final = {
    "SpecificCharacterSet": _ASCII,
    "SOPClassUID": _ASCII,
    "SOPInstanceUID": _ASCII,
    "StudyDate": _ASCII,
    "SeriesDate": _ASCII,
    "StudyTime": _ASCII,
    "SeriesTime": _ASCII,
    "AccessionNumber": _TEXT,
    "Modality": _ASCII,
    "ReferringPhysicianName": _NAME,
    "StudyDescription": _TEXT,
    "SeriesDescription": _TEXT,
    "PatientName": _NAME,
    "PatientID": _TEXT,
    "IssuerOfPatientID": _TEXT,
    "IssuerOfPatientIDQualifiersSequence": _SQ,
    "PatientBirthDate": _ASCII,
    "PatientSex": _ASCII,
    "BodyPartExamined": _ASCII,
    "StudyInstanceUID": _ASCII,
    "SeriesInstanceUID": _ASCII,
    "StudyID": _TEXT,
    "SeriesNumber": _ASCII,
    "InstanceNumber": _ASCII,
    "NumberOfFrames": _ASCII,
    "PhotometricInterpretation": _ASCII,
    "Rows": _US,
    "Columns": _US,
}
_INDEX_TAG_KEYWORDS: Final = {int(pydicom.datadict.tag_for_keyword(keyword) or 0): keyword for keyword in _INDEX_KINDS}
_INDEX_TAGS: Final = frozenset(_INDEX_TAG_KEYWORDS)
_SPECIFIC_CHARACTER_SET: Final = 0x00080005
_ISSUER_QUALIFIERS: Final = 0x00100024
_TEXT_DELIMITERS: Final = {0x5C} | TEXT_VR_DELIMS


def index_attributes(part10: bytes) -> IndexAttributes:
    """Read the index attributes of one instance from its header.

    Only the wanted values are decoded and pixel data is never read, but every
    element header of the data set, pixel data included, is checked to fit in the
    bytes, so a truncated file is refused here, on ingest. Deflated data sets and
    files that mix implicit VR elements into explicit VR are read by pydicom instead
    (slower, and without the truncation check).

    Parameters
    ----------
    part10 : bytes
        The Part 10 file.

    Returns
    -------
    IndexAttributes
        The attributes, decoded to Unicode.

    Raises
    ------
    carnet_kit.errors.InvalidArgument
        With reason ``DICOM_MALFORMED`` when the bytes are not a readable, whole file
        or lack Study, Series or SOP Instance UID.
    """
    try:
        walk = _walk(part10, _INDEX_TAGS)
        if walk is not None:
            values, entity_id = _decode_walked(walk)
            transfer_syntax = walk.transfer_syntax_uid
        else:
            values, entity_id, transfer_syntax = _read_with_pydicom(part10)
    except _PARSE_ERRORS as exc:
        raise malformed(f"unreadable DICOM file: {exc}") from exc
    return _index(values, entity_id, transfer_syntax)


def _decode_walked(walk: _Walk) -> tuple[dict[str, str | None], str | None]:
    elements = walk.elements
    charset = elements.get(_SPECIFIC_CHARACTER_SET)
    terms = [term.strip() for term in charset[1].decode("ascii", "replace").split("\\")] if charset else None
    encodings = convert_encodings(terms)
    values: dict[str, str | None] = {}
    for tag, (_vr, octets) in elements.items():
        keyword = _INDEX_TAG_KEYWORDS[tag]
        kind = _INDEX_KINDS[keyword]
        if kind == _ASCII:
            text = octets.decode("ascii", "replace").strip("\x00 ")
        elif kind == _TEXT:
            text = decode_bytes(octets.rstrip(b"\x00 "), encodings, _TEXT_DELIMITERS).strip()
        elif kind == _NAME:
            text = str(PersonName(octets.rstrip(b"\x00 "), encodings)).strip()
        elif kind == _US and len(octets) >= 2:
            text = str(struct.unpack_from("<H" if walk.little_endian else ">H", octets)[0])
        else:
            continue
        values[keyword] = text or None
    entity_id: str | None = None
    qualifiers = elements.get(_ISSUER_QUALIFIERS)
    if qualifiers is not None and qualifiers[1]:
        # Rare enough to let pydicom parse the sequence.
        dataset = Dataset()
        if charset is not None:
            dataset[_SPECIFIC_CHARACTER_SET] = RawDataElement(
                BaseTag(_SPECIFIC_CHARACTER_SET),
                "CS",
                len(charset[1]),
                charset[1],
                0,
                walk.implicit_vr,
                walk.little_endian,
            )
        octets = qualifiers[1]
        dataset[_ISSUER_QUALIFIERS] = RawDataElement(
            BaseTag(_ISSUER_QUALIFIERS), "SQ", len(octets), octets, 0, walk.implicit_vr, walk.little_endian
        )
        entity_id = _first_entity_id(dataset)
    return values, entity_id


def _read_with_pydicom(part10: bytes) -> tuple[dict[str, str | None], str | None, str]:
    dataset = pydicom.dcmread(BytesIO(part10), stop_before_pixels=True, specific_tags=list(_INDEX_TAGS))
    values = {keyword: _text(dataset, keyword) for keyword, kind in _INDEX_KINDS.items() if kind != _SQ}
    meta = getattr(dataset, "file_meta", None)
    transfer_syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return values, _first_entity_id(dataset), transfer_syntax


def _first_entity_id(dataset: Dataset) -> str | None:
    qualifiers = dataset.get("IssuerOfPatientIDQualifiersSequence")
    if isinstance(qualifiers, Sequence) and len(qualifiers) > 0:
        return _text(qualifiers[0], "UniversalEntityID")
    return None


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = dataset.get(keyword)
    if isinstance(value, MultiValue):
        value = "\\".join(str(item) for item in value)
    text = str(value).strip() if value is not None else ""
    return text or None


def _index(values: Mapping[str, str | None], entity_id: str | None, transfer_syntax: str) -> IndexAttributes:
    study = values.get("StudyInstanceUID")
    series = values.get("SeriesInstanceUID")
    sop = values.get("SOPInstanceUID")
    if not study or not series or not sop:
        missing = [
            keyword
            for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            if not values.get(keyword)
        ]
        raise malformed(f"DICOM instance without {', '.join(missing)}")
    return IndexAttributes(
        patient_id=values.get("PatientID"),
        issuer_of_patient_id=values.get("IssuerOfPatientID"),
        issuer_of_patient_id_universal_entity_id=entity_id,
        patient_name=values.get("PatientName"),
        patient_birth_date=values.get("PatientBirthDate"),
        patient_sex=values.get("PatientSex"),
        study_instance_uid=study,
        study_date=values.get("StudyDate"),
        study_time=values.get("StudyTime"),
        accession_number=values.get("AccessionNumber"),
        study_description=values.get("StudyDescription"),
        study_id=values.get("StudyID"),
        referring_physician_name=values.get("ReferringPhysicianName"),
        series_instance_uid=series,
        modality=values.get("Modality"),
        series_number=_integer_or_none(values.get("SeriesNumber")),
        series_description=values.get("SeriesDescription"),
        body_part_examined=values.get("BodyPartExamined"),
        series_date=values.get("SeriesDate"),
        series_time=values.get("SeriesTime"),
        sop_class_uid=values.get("SOPClassUID"),
        sop_instance_uid=sop,
        instance_number=_integer_or_none(values.get("InstanceNumber")),
        rows=_integer_or_none(values.get("Rows")),
        columns=_integer_or_none(values.get("Columns")),
        number_of_frames=_integer_or_none(values.get("NumberOfFrames")) or 1,
        photometric_interpretation=values.get("PhotometricInterpretation"),
        transfer_syntax_uid=transfer_syntax,
    )


def _integer_or_none(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text.split("\\")[0].strip())
    except ValueError:
        return None
