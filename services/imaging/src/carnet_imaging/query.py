"""DICOM attribute matching (PS3.4 C.2.2.2) turned into SQL on the index, for C-FIND and QIDO-RS.

A filter names an attribute by tag (``00100020``) or keyword (``PatientID``) and gives a
matching value:

- *single value*: equal (person names ignore case; DICOM leaves that to the SCP);
- *wildcard*: ``*`` (any run) and ``?`` (one character), for string attributes;
- *range*: ``20200101-20201231``, ``-20201231`` or ``20200101-`` for dates and times;
- *UID list*: UIDs separated by backslashes;
- *universal*: an empty value (or ``*``) matches everything.

Only the attributes the index holds can be matched (:data:`ATTRIBUTES`); anything else, or
a value that is not of its attribute's form, is INVALID_ARGUMENT ``ATTRIBUTE_FILTER_INVALID``
naming the attribute.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from carnet_kit.errors import InvalidArgument


class Level(enum.Enum):
    """Query/retrieve levels, the deepest table each one reads."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


class Kind(enum.Enum):
    """How an attribute is matched."""

    TEXT = "TEXT"
    NAME = "NAME"
    UID = "UID"
    DATE = "DATE"
    TIME = "TIME"
    NUMBER = "NUMBER"
    CODE_LIST = "CODE_LIST"
    """A multi-valued attribute kept as an array (ModalitiesInStudy): matches when one value does."""


@dataclass(frozen=True)
class Attribute:
    """An attribute the index can match: its tag, keyword, level, column and kind."""

    tag: str
    keyword: str
    level: Level
    column: str
    kind: Kind


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("00100020", "PatientID", Level.PATIENT, "st.patient_id", Kind.TEXT),
    Attribute("00100021", "IssuerOfPatientID", Level.PATIENT, "st.issuer_of_patient_id", Kind.TEXT),
    Attribute("00100010", "PatientName", Level.PATIENT, "st.patient_name", Kind.NAME),
    Attribute("00100030", "PatientBirthDate", Level.PATIENT, "st.patient_birth_date", Kind.DATE),
    Attribute("00100040", "PatientSex", Level.PATIENT, "st.patient_sex", Kind.TEXT),
    Attribute("0020000D", "StudyInstanceUID", Level.STUDY, "st.study_instance_uid", Kind.UID),
    Attribute("00080020", "StudyDate", Level.STUDY, "st.study_date", Kind.DATE),
    Attribute("00080030", "StudyTime", Level.STUDY, "st.study_time", Kind.TIME),
    Attribute("00080050", "AccessionNumber", Level.STUDY, "st.accession_number", Kind.TEXT),
    Attribute("00081030", "StudyDescription", Level.STUDY, "st.study_description", Kind.TEXT),
    Attribute("00200010", "StudyID", Level.STUDY, "st.study_id", Kind.TEXT),
    Attribute("00080090", "ReferringPhysicianName", Level.STUDY, "st.referring_physician_name", Kind.NAME),
    Attribute("00080061", "ModalitiesInStudy", Level.STUDY, "st.modalities_in_study", Kind.CODE_LIST),
    Attribute("0020000E", "SeriesInstanceUID", Level.SERIES, "se.series_instance_uid", Kind.UID),
    Attribute("00080060", "Modality", Level.SERIES, "se.modality", Kind.TEXT),
    Attribute("00200011", "SeriesNumber", Level.SERIES, "se.series_number", Kind.NUMBER),
    Attribute("0008103E", "SeriesDescription", Level.SERIES, "se.series_description", Kind.TEXT),
    Attribute("00180015", "BodyPartExamined", Level.SERIES, "se.body_part_examined", Kind.TEXT),
    Attribute("00080021", "SeriesDate", Level.SERIES, "se.series_date", Kind.DATE),
    Attribute("00080018", "SOPInstanceUID", Level.IMAGE, "i.sop_instance_uid", Kind.UID),
    Attribute("00080016", "SOPClassUID", Level.IMAGE, "i.sop_class_uid", Kind.UID),
    Attribute("00200013", "InstanceNumber", Level.IMAGE, "i.instance_number", Kind.NUMBER),
)
_BY_KEY: dict[str, Attribute] = {a.tag: a for a in ATTRIBUTES} | {a.keyword.lower(): a for a in ATTRIBUTES}
_DEPTH = {Level.PATIENT: 0, Level.STUDY: 1, Level.SERIES: 2, Level.IMAGE: 3}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE = re.compile(r"^[0-9]{4}([0-9]{2}([0-9]{2})?)?$")
_TIME = re.compile(r"^[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?$")


def attribute(key: str) -> Attribute:
    """The attribute a filter key names (tag in hex, any case, or keyword)."""
    found = _BY_KEY.get(key.strip().upper()) or _BY_KEY.get(key.strip().lower())
    if found is None:
        raise _invalid(key, "is not an attribute the index can match")
    return found


def _invalid(key: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"{key}: {why}", field=f"attribute_filters.{key}", reason="ATTRIBUTE_FILTER_INVALID"
    )


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


@dataclass
class Where:
    """SQL conditions with their positional parameters, numbered after ``first``."""

    conditions: list[str]
    params: list[object]
    first: int

    def param(self, value: object) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params) - 1}"

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions) if self.conditions else "TRUE"


def _range(where: Where, column: str, key: str, value: str, pattern: re.Pattern[str]) -> str:
    low, _, high = value.partition("-")
    for bound in (low, high):
        if bound and not pattern.match(bound):
            raise _invalid(key, f"{value!r} is not a range of this attribute's form")
    parts = []
    if low:
        parts.append(f"{column} >= {where.param(low)}")
    if high:
        # A bound of the same precision includes the whole day/second it names.
        parts.append(f"{column} <= {where.param(high + '~')}")
    return f"({column} <> '' AND {' AND '.join(parts)})" if parts else "TRUE"


def match(filters: Mapping[str, str], level: Level, *, first_param: int = 1) -> Where:
    """The conditions of ``filters`` for a query at ``level`` (attributes deeper than it are refused)."""
    where = Where([], [], first_param)
    for key, raw in filters.items():
        found = attribute(key)
        if _DEPTH[found.level] > _DEPTH[level]:
            raise _invalid(key, f"is an attribute of the {found.level.value} level, below {level.value}")
        value = raw.strip()
        column = found.column
        if value in ("", "*"):
            continue
        if found.kind is Kind.UID:
            uids = [uid.strip() for uid in value.split("\\") if uid.strip()]
            if not uids or not all(_UID.match(uid) and len(uid) <= 64 for uid in uids):
                raise _invalid(key, "is not a UID or a backslash-separated list of UIDs")
            where.conditions.append(f"{column} = ANY({where.param(uids)}::text[])")
        elif found.kind in (Kind.DATE, Kind.TIME):
            pattern = _DATE if found.kind is Kind.DATE else _TIME
            if "-" in value:
                where.conditions.append(_range(where, column, key, value, pattern))
            elif pattern.match(value):
                where.conditions.append(f"{column} = {where.param(value)}")
            else:
                raise _invalid(key, f"{value!r} is not a {found.kind.value.lower()} or a range")
        elif found.kind is Kind.NUMBER:
            if not re.fullmatch(r"-?[0-9]{1,9}", value):
                raise _invalid(key, f"{value!r} is not a number")
            where.conditions.append(f"{column} = {where.param(int(value))}")
        elif found.kind is Kind.CODE_LIST:
            codes = [code.strip() for code in value.split("\\") if code.strip()]
            where.conditions.append(f"{column} && {where.param(codes)}::text[]")
        else:
            if len(value) > 256:
                raise _invalid(key, "is longer than 256 characters")
            wildcard = "*" in value or "?" in value
            if found.kind is Kind.NAME:
                operator = "ILIKE" if wildcard else "="
                target = _like(value) if wildcard else value.lower()
                column_sql = column if wildcard else f"lower({column})"
                where.conditions.append(f"{column_sql} {operator} {where.param(target)}")
            elif wildcard:
                where.conditions.append(f"{column} LIKE {where.param(_like(value))}")
            else:
                where.conditions.append(f"{column} = {where.param(value)}")
    return where
