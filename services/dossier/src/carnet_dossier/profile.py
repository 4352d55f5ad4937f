"""Rules of the medical profile that need no I/O: kinds and their values, measurement units
and plausible ranges, the derived BMI, who may change what, page tokens.

PRODUCT.md ("Medical profile"): history (medical, surgical, family), current treatments,
allergies, vaccinations, measurements (weight, height, blood pressure, glucose, BMI, waist
— with units and plausible ranges), advance directives, organ donation wish, people to
contact, professionals who follow the holder, blood group.

The values of the entries are the contract's own messages (``HistoryItem``, ``Allergy``,
``Measurement``…): :func:`validate_value` checks one and returns its normalised copy
(text trimmed, a convertible unit converted, a missing measure time set), or raises
INVALID_ARGUMENT naming the field of the request (``entry.measurement.value``).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import dataclasses
import datetime as dt
import hashlib
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import field_mask_pb2, json_format
from google.protobuf.message import Message

from carnet.common.v1 import common_pb2
from carnet.dossier.v1 import resources_pb2 as res
from carnet_kit.auth import Principal
from carnet_kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied

# ---------------------------------------------------------------- kinds


@dataclasses.dataclass(frozen=True)
class KindRule:
    """What an entry kind holds and how consent's access matrix sees it."""

    value_field: str
    """The member of ``ProfileEntry.value`` the kind takes."""
    matrix_class: str
    """The access-matrix class consent decides a professional's access with."""
    label: str
    one_per_holder: bool = False
    """A holder has at most one such entry (changed by updates, never duplicated)."""


KINDS: Mapping[str, KindRule] = {
    "MEDICAL_HISTORY": KindRule("history", "SYNTH", "medical history"),
    "SURGICAL_HISTORY": KindRule("history", "SYNTH", "surgical history"),
    "FAMILY_HISTORY": KindRule("history", "SYNTH", "family history"),
    "ALLERGY": KindRule("allergy", "SYNTH", "allergy"),
    "TREATMENT": KindRule("treatment", "PRESCRIPTION", "treatment"),
    "VACCINATION": KindRule("vaccination", "VACCINATION", "vaccination"),
    "MEASUREMENT": KindRule("measurement", "CARE_PLAN", "measurement"),
    "ADVANCE_DIRECTIVES": KindRule("advance_directives", "SYNTH", "advance directives", one_per_holder=True),
    "ORGAN_DONATION": KindRule("organ_donation", "SYNTH", "organ donation wish", one_per_holder=True),
    "CONTACT_PERSON": KindRule("contact_person", "SYNTH", "person to contact"),
    "FOLLOWING_PROFESSIONAL": KindRule("following_professional", "SYNTH", "professional following the holder"),
    "BLOOD_GROUP": KindRule("blood_group", "LAB", "blood group", one_per_holder=True),
}
"""Each kind (``ProfileEntryKind`` without its prefix) → its rule.

Matrix classes: history, allergies, directives, organ donation, contacts and following
professionals are part of the medical summary (SYNTH); treatments are prescriptions,
vaccinations vaccinations, measurements care follow-up (CARE_PLAN: nurses record them),
the blood group a lab result (LAB).
"""

VALUE_FIELDS = frozenset(rule.value_field for rule in KINDS.values())
_VALUE_TYPES: Mapping[str, type[Message]] = {
    "history": res.HistoryItem,
    "allergy": res.Allergy,
    "treatment": res.Treatment,
    "vaccination": res.Vaccination,
    "measurement": res.Measurement,
    "advance_directives": res.AdvanceDirectives,
    "organ_donation": res.OrganDonation,
    "contact_person": res.ContactPerson,
    "following_professional": res.FollowingProfessional,
    "blood_group": res.BloodGroup,
}
SOURCES = ("HOLDER", "PROFESSIONAL", "APP", "DERIVED")
HOLDER_SIDE = frozenset({"holder", "representative", "helper"})

SHORT_TEXT = 200
TEXT = 500
NOTE = 2000
DIRECTIVES_TEXT = 10_000
EARLIEST_YEAR = 1800
MEASURE_TIME_SKEW = dt.timedelta(minutes=5)
EARLIEST_MEASURE_TIME = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_RPPS = re.compile(r"^[0-9]{11}$")


def value_message(kind: str, value: Mapping[str, Any]) -> Message:
    """The value of an entry of ``kind`` from its stored JSON."""
    message = _VALUE_TYPES[KINDS[kind].value_field]()
    json_format.ParseDict(dict(value), message, ignore_unknown_fields=True)
    return message


def value_json(message: Message) -> dict[str, Any]:
    """How a value is stored (the API's JSON, proto field names)."""
    data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return data


def check_kind(kind: str, value_field: str | None, *, path: str = "entry") -> KindRule:
    """The rule of ``kind``, which must be set and match the value given."""
    rule = KINDS.get(kind)
    if rule is None:
        raise InvalidArgument(f"kind is required, one of {sorted(KINDS)}", field=f"{path}.kind", reason="FIELD_INVALID")
    if value_field is None:
        raise InvalidArgument(
            f"an entry of kind {kind} carries its value in {rule.value_field}",
            field=f"{path}.{rule.value_field}",
            reason="FIELD_INVALID",
        )
    if value_field != rule.value_field:
        raise InvalidArgument(
            f"an entry of kind {kind} carries its value in {rule.value_field}, not in {value_field}",
            field=f"{path}.{value_field}",
            reason="KIND_VALUE_MISMATCH",
        )
    return rule


# ---------------------------------------------------------------- measurements


@dataclasses.dataclass(frozen=True)
class MeasurementRule:
    """How one type of measurement is entered and checked.

    Values in a unit of record are kept as entered; values in a convertible unit are
    converted into a unit of record on entry. Ranges are written in the first unit of
    record (the reference unit) and checked after conversion.
    """

    label: str
    units: tuple[str, ...]
    to_reference: Mapping[str, float]
    """Factor from each unit of record to the reference unit."""
    conversions: Mapping[str, tuple[str, float]]
    """Convertible unit → (unit of record, factor)."""
    low: float
    high: float
    decimals: int
    """Precision a converted value is rounded to."""
    secondary: tuple[float, float] | None = None
    """Plausible range of ``secondary_value`` (diastolic pressure), in the reference unit."""
    derived: bool = False
    """Computed by Carnet, never entered."""


GLUCOSE_MMOL_PER_G = 1000 / 180.156
"""mmol/L of glucose in 1 g/L (molar mass 180.156 g/mol)."""

MEASUREMENTS: Mapping[str, MeasurementRule] = {
    "WEIGHT": MeasurementRule(
        "weight", ("kg",), {"kg": 1.0}, {"g": ("kg", 0.001), "[lb_av]": ("kg", 0.45359237)}, 0.2, 500.0, 3
    ),
    "HEIGHT": MeasurementRule(
        "height", ("cm",), {"cm": 1.0}, {"m": ("cm", 100.0), "mm": ("cm", 0.1), "[in_i]": ("cm", 2.54)}, 20.0, 280.0, 1
    ),
    "BLOOD_PRESSURE": MeasurementRule(
        "blood pressure",
        ("mm[Hg]",),
        {"mm[Hg]": 1.0},
        {"kPa": ("mm[Hg]", 7.50062)},
        40.0,
        300.0,
        0,
        secondary=(20.0, 200.0),
    ),
    "BLOOD_GLUCOSE": MeasurementRule(
        "blood glucose",
        ("mmol/L", "g/L"),
        {"mmol/L": 1.0, "g/L": GLUCOSE_MMOL_PER_G},
        {"mg/dL": ("g/L", 0.01)},
        0.5,
        60.0,
        2,
    ),
    "BMI": MeasurementRule("body mass index", ("kg/m2",), {"kg/m2": 1.0}, {}, 5.0, 200.0, 1, derived=True),
    "WAIST_CIRCUMFERENCE": MeasurementRule(
        "waist circumference", ("cm",), {"cm": 1.0}, {"m": ("cm", 100.0), "[in_i]": ("cm", 2.54)}, 20.0, 300.0, 1
    ),
}
"""Each measurement type (``MeasurementType`` without its prefix) → its units and range."""

UNIT_ALIASES: Mapping[str, str] = {
    "mmHg": "mm[Hg]",
    "mmol/l": "mmol/L",
    "g/l": "g/L",
    "mg/dl": "mg/dL",
    "kg/m²": "kg/m2",
    "lb": "[lb_av]",
    "in": "[in_i]",
}
"""Common spellings taken for the UCUM unit they mean."""


def measurement_type(measurement: res.Measurement) -> str:
    """The type's name without its prefix, or "" when unset or unknown."""
    try:
        name = res.MeasurementType.Name(measurement.type)
    except ValueError:
        return ""
    return name.removeprefix("MEASUREMENT_TYPE_") if measurement.type else ""


def _number(value: float) -> str:
    return f"{value:g}"


def _check_range(
    value: float, unit: str, rule: MeasurementRule, low: float, high: float, label: str, field: str
) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(f"{label} must be a finite number", field=field, reason="FIELD_INVALID")
    factor = rule.to_reference[unit]
    reference = value * factor
    if not low <= reference <= high:
        # The range is told in the unit the value is in.
        raise InvalidArgument(
            f"{label} {_number(value)} {unit} is outside the plausible range "
            f"{_number(round(low / factor, 2))}–{_number(round(high / factor, 2))} {unit}",
            field=field,
            reason="MEASUREMENT_OUT_OF_RANGE",
            metadata={"low": _number(round(low / factor, 2)), "high": _number(round(high / factor, 2)), "unit": unit},
        )


def normalise_measurement(
    measurement: res.Measurement, *, now: dt.datetime, path: str = "entry.measurement", derived: bool = False
) -> res.Measurement:
    """The measurement as stored: unit of record, value in range, measure time set.

    INVALID_ARGUMENT names the field: ``MEASUREMENT_OUT_OF_RANGE`` (a weight of 900 kg),
    ``UNIT_NOT_ALLOWED`` (a unit neither of record nor convertible), ``MEASUREMENT_DERIVED``
    (a BMI entered by hand: Carnet computes it).
    """
    kind = measurement_type(measurement)
    rule = MEASUREMENTS.get(kind)
    if rule is None:
        raise InvalidArgument(
            f"type is required, one of {sorted(MEASUREMENTS)}", field=f"{path}.type", reason="FIELD_INVALID"
        )
    if rule.derived and not derived:
        raise InvalidArgument(
            f"the {rule.label} is computed by Carnet from the latest weight and height; enter those instead",
            field=f"{path}.type",
            reason="MEASUREMENT_DERIVED",
        )
    result = res.Measurement()
    result.CopyFrom(measurement)
    result.derived = derived
    unit = UNIT_ALIASES.get(measurement.unit.strip(), measurement.unit.strip())
    value, secondary = measurement.value, measurement.secondary_value
    if unit in rule.conversions:
        unit, factor = rule.conversions[unit]
        value = round(value * factor, rule.decimals)
        secondary = round(secondary * factor, rule.decimals)
    elif unit not in rule.units:
        accepted = [*rule.units, *rule.conversions]
        raise InvalidArgument(
            f"unit {measurement.unit!r} is not a unit of {rule.label}; use one of {accepted}",
            field=f"{path}.unit",
            reason="UNIT_NOT_ALLOWED",
            metadata={"accepted": " ".join(accepted)},
        )
    label = "systolic pressure" if rule.secondary else rule.label
    _check_range(value, unit, rule, rule.low, rule.high, label, f"{path}.value")
    if rule.secondary is None:
        if secondary:
            raise InvalidArgument(
                f"a {rule.label} has no second value", field=f"{path}.secondary_value", reason="FIELD_INVALID"
            )
    else:
        _check_range(secondary, unit, rule, *rule.secondary, "diastolic pressure", f"{path}.secondary_value")
        if secondary >= value:
            raise InvalidArgument(
                "the diastolic pressure (secondary_value) must be below the systolic pressure (value)",
                field=f"{path}.secondary_value",
                reason="MEASUREMENT_INCONSISTENT",
            )
    result.unit, result.value, result.secondary_value = unit, value, secondary
    if not measurement.HasField("measure_time"):
        result.measure_time.FromDatetime(now)
    else:
        measured = measurement.measure_time.ToDatetime(tzinfo=dt.UTC)
        if measured > now + MEASURE_TIME_SKEW:
            raise InvalidArgument("measure_time is in the future", field=f"{path}.measure_time", reason="FIELD_INVALID")
        if measured < EARLIEST_MEASURE_TIME:
            raise InvalidArgument("measure_time is before 1900", field=f"{path}.measure_time", reason="FIELD_INVALID")
    result.note = _text(measurement.note, f"{path}.note", TEXT)
    return result


def body_mass_index(weight_kg: float, height_cm: float) -> float | None:
    """BMI = weight (kg) / height (m)², to one decimal; None when not plausible (5–200 kg/m2)."""
    if weight_kg <= 0 or height_cm <= 0:
        return None
    bmi = round(weight_kg / (height_cm / 100) ** 2, 1)
    rule = MEASUREMENTS["BMI"]
    return bmi if rule.low <= bmi <= rule.high else None


def derived_bmi(weight: res.Measurement, height: res.Measurement) -> res.Measurement | None:
    """The BMI of the latest weight and height (measured at the later of the two), or None."""
    weight_kg = weight.value * MEASUREMENTS["WEIGHT"].to_reference.get(weight.unit, math.nan)
    height_cm = height.value * MEASUREMENTS["HEIGHT"].to_reference.get(height.unit, math.nan)
    if not (math.isfinite(weight_kg) and math.isfinite(height_cm)):
        return None
    bmi = body_mass_index(weight_kg, height_cm)
    if bmi is None:
        return None
    latest = max(weight.measure_time.ToDatetime(tzinfo=dt.UTC), height.measure_time.ToDatetime(tzinfo=dt.UTC))
    result = res.Measurement(
        type=res.MEASUREMENT_TYPE_BMI,
        value=bmi,
        unit="kg/m2",
        derived=True,
        note=f"computed from the weight of {_number(weight_kg)} kg and the height of {_number(height_cm)} cm",
    )
    result.measure_time.FromDatetime(latest)
    return result


# ---------------------------------------------------------------- other values


def _text(value: str, field: str, limit: int, *, required: bool = False) -> str:
    text = value.strip()
    if required and not text:
        raise InvalidArgument(f"{field.rsplit('.', 1)[-1]} is required", field=field, reason="FIELD_INVALID")
    if len(text) > limit:
        raise InvalidArgument(f"at most {limit} characters", field=field, reason="FIELD_INVALID")
    return text


def _enum(value: int, enum: Any, field: str, *, required: bool) -> None:
    known = {number for number in enum.values() if number != 0}
    if value in known or (value == 0 and not required):
        return
    names = [enum.Name(number) for number in sorted(known)]
    raise InvalidArgument(f"{field.rsplit('.', 1)[-1]} must be one of {names}", field=field, reason="FIELD_INVALID")


def _coding(message: Message, name: str, field: str) -> None:
    if not message.HasField(name):
        return
    coding: common_pb2.Coding = getattr(message, name)
    coding.system = _text(coding.system, f"{field}.system", SHORT_TEXT, required=True)
    coding.code = _text(coding.code, f"{field}.code", 64, required=True)
    coding.display = _text(coding.display, f"{field}.display", SHORT_TEXT)


def check_date(date: common_pb2.Date, field: str, *, today: dt.date, allow_future: bool = False) -> None:
    """A partial date (month and day 0 when unknown) that exists, from 1800, not in the future unless allowed."""
    if not EARLIEST_YEAR <= date.year <= 9999:
        raise InvalidArgument(f"year must be from {EARLIEST_YEAR}", field=f"{field}.year", reason="FIELD_INVALID")
    if not 0 <= date.month <= 12:
        raise InvalidArgument("month must be 1..12, or 0 when unknown", field=f"{field}.month", reason="FIELD_INVALID")
    last_day = calendar.monthrange(date.year, date.month)[1] if date.month else 0
    if not 0 <= date.day <= last_day:  # a day needs its month
        raise InvalidArgument("day does not exist in that month", field=f"{field}.day", reason="FIELD_INVALID")
    if not allow_future and dt.date(date.year, date.month or 1, date.day or 1) > today:
        raise InvalidArgument("the date is in the future", field=field, reason="FIELD_INVALID")


def _dates(
    message: Message,
    start: str,
    end: str,
    field: str,
    *,
    today: dt.date,
    start_required: bool = False,
    end_may_be_future: bool = False,
) -> None:
    if message.HasField(start):
        check_date(getattr(message, start), f"{field}.{start}", today=today)
    elif start_required:
        raise InvalidArgument(f"{start} is required", field=f"{field}.{start}", reason="FIELD_INVALID")
    if end and message.HasField(end):
        check_date(getattr(message, end), f"{field}.{end}", today=today, allow_future=end_may_be_future)
        if message.HasField(start) and not _not_before(getattr(message, end), getattr(message, start)):
            raise InvalidArgument(f"{end} is before {start}", field=f"{field}.{end}", reason="FIELD_INVALID")


def _not_before(end: common_pb2.Date, start: common_pb2.Date) -> bool:
    # Compared as far as both dates are known.
    if not (end.month and start.month):
        return end.year >= start.year
    if not (end.day and start.day):
        return (end.year, end.month) >= (start.year, start.month)
    return (end.year, end.month, end.day) >= (start.year, start.month, start.day)


def _phone(value: str, field: str) -> str:
    phone = value.strip().replace(" ", "")
    if phone and not _E164.match(phone):
        raise InvalidArgument("phone must be in E.164 form, e.g. +33612345678", field=field, reason="FIELD_INVALID")
    return phone


def _history(kind: str, item: res.HistoryItem, field: str, today: dt.date) -> None:
    item.description = _text(item.description, f"{field}.description", TEXT, required=True)
    _coding(item, "code", f"{field}.code")
    _dates(item, "onset_date", "end_date", field, today=today)
    if kind == "FAMILY_HISTORY":
        item.relative = _text(item.relative, f"{field}.relative", 100, required=True)
    elif item.relative.strip():
        raise InvalidArgument("relative is for family history only", field=f"{field}.relative", reason="FIELD_INVALID")
    item.note = _text(item.note, f"{field}.note", NOTE)


def _allergy(item: res.Allergy, field: str, today: dt.date) -> None:
    item.substance = _text(item.substance, f"{field}.substance", SHORT_TEXT, required=True)
    _coding(item, "substance_code", f"{field}.substance_code")
    item.reaction = _text(item.reaction, f"{field}.reaction", TEXT)
    _enum(item.severity, res.AllergySeverity, f"{field}.severity", required=False)
    _dates(item, "onset_date", "", field, today=today)
    item.note = _text(item.note, f"{field}.note", NOTE)


def _treatment(item: res.Treatment, field: str, today: dt.date) -> None:
    item.medication = _text(item.medication, f"{field}.medication", SHORT_TEXT, required=True)
    _coding(item, "medication_code", f"{field}.medication_code")
    item.dosage = _text(item.dosage, f"{field}.dosage", TEXT)
    _dates(item, "start_date", "end_date", field, today=today, end_may_be_future=True)
    item.prescriber = _text(item.prescriber, f"{field}.prescriber", SHORT_TEXT)
    item.note = _text(item.note, f"{field}.note", NOTE)


def _vaccination(item: res.Vaccination, field: str, today: dt.date) -> None:
    item.vaccine = _text(item.vaccine, f"{field}.vaccine", SHORT_TEXT, required=True)
    _coding(item, "vaccine_code", f"{field}.vaccine_code")
    _dates(item, "administration_date", "", field, today=today, start_required=True)
    item.lot_number = _text(item.lot_number, f"{field}.lot_number", 40)
    item.dose_label = _text(item.dose_label, f"{field}.dose_label", 100)
    item.administered_by = _text(item.administered_by, f"{field}.administered_by", SHORT_TEXT)


def _advance_directives(item: res.AdvanceDirectives, field: str, today: dt.date) -> None:
    item.text = _text(item.text, f"{field}.text", DIRECTIVES_TEXT)
    item.document_id = item.document_id.strip()
    if item.document_id:
        try:
            item.document_id = str(uuid.UUID(item.document_id))
        except ValueError:
            raise InvalidArgument(
                "document_id must be a document id (UUID)", field=f"{field}.document_id", reason="FIELD_INVALID"
            ) from None
    if not (item.text or item.document_id):
        raise InvalidArgument(
            "give the directives' text, or the document of the record holding them",
            field=f"{field}.text",
            reason="FIELD_INVALID",
        )
    _dates(item, "written_date", "", field, today=today)


def _organ_donation(item: res.OrganDonation, field: str) -> None:
    _enum(item.wish, res.OrganDonationWish, f"{field}.wish", required=True)
    item.note = _text(item.note, f"{field}.note", NOTE, required=item.wish == res.ORGAN_DONATION_WISH_PARTIAL)


def _contact_person(item: res.ContactPerson, field: str) -> None:
    item.display_name = _text(item.display_name, f"{field}.display_name", SHORT_TEXT, required=True)
    item.relationship = _text(item.relationship, f"{field}.relationship", 100)
    item.phone = _phone(item.phone, f"{field}.phone")
    item.email = _text(item.email, f"{field}.email", 254)
    if item.email and not _EMAIL.match(item.email):
        raise InvalidArgument("email is not an e-mail address", field=f"{field}.email", reason="FIELD_INVALID")
    if not (item.phone or item.email):
        raise InvalidArgument(
            "a person to contact needs a phone or an e-mail", field=f"{field}.phone", reason="FIELD_INVALID"
        )


def _following_professional(item: res.FollowingProfessional, field: str) -> None:
    item.professional_id = _text(item.professional_id, f"{field}.professional_id", 64)
    item.rpps = _text(item.rpps, f"{field}.rpps", 11)
    if item.rpps and not _RPPS.match(item.rpps):
        raise InvalidArgument("rpps is 11 digits", field=f"{field}.rpps", reason="FIELD_INVALID")
    item.display_name = _text(item.display_name, f"{field}.display_name", SHORT_TEXT)
    if not (item.professional_id or item.rpps or item.display_name):
        raise InvalidArgument(
            "name the professional: display_name, rpps or professional_id",
            field=f"{field}.display_name",
            reason="FIELD_INVALID",
        )
    item.profession_code = _text(item.profession_code, f"{field}.profession_code", 10)
    item.specialty = _text(item.specialty, f"{field}.specialty", SHORT_TEXT)
    item.phone = _phone(item.phone, f"{field}.phone")


def check_blood_group(group: res.BloodGroup, field: str = "entry.blood_group") -> None:
    """Only the ABO groups A, B, AB, O and the Rhesus factors + and − exist; both are required."""
    _blood_group_part(group.abo, res.BloodGroupAbo, f"{field}.abo")
    _blood_group_part(group.rhesus, res.RhesusFactor, f"{field}.rhesus")


def _blood_group_part(number: int, enum: Any, field: str) -> None:
    if number == 0 or number not in enum.values():
        names = [enum.Name(n) for n in enum.values() if n]
        raise InvalidArgument(
            f"{field.rsplit('.', 1)[-1]} must be one of {names}", field=field, reason="BLOOD_GROUP_INVALID"
        )


def validate_value(kind: str, value: Message, *, now: dt.datetime, path: str = "entry") -> Message:
    """The value of an entry of ``kind`` as stored, or INVALID_ARGUMENT naming the bad field."""
    rule = KINDS[kind]
    field = f"{path}.{rule.value_field}"
    checked = type(value)()
    checked.CopyFrom(value)
    today = now.astimezone(dt.UTC).date()
    if isinstance(checked, res.HistoryItem):
        _history(kind, checked, field, today)
    elif isinstance(checked, res.Allergy):
        _allergy(checked, field, today)
    elif isinstance(checked, res.Treatment):
        _treatment(checked, field, today)
    elif isinstance(checked, res.Vaccination):
        _vaccination(checked, field, today)
    elif isinstance(checked, res.Measurement):
        return normalise_measurement(checked, now=now, path=field)
    elif isinstance(checked, res.AdvanceDirectives):
        _advance_directives(checked, field, today)
    elif isinstance(checked, res.OrganDonation):
        _organ_donation(checked, field)
    elif isinstance(checked, res.ContactPerson):
        _contact_person(checked, field)
    elif isinstance(checked, res.FollowingProfessional):
        _following_professional(checked, field)
    elif isinstance(checked, res.BloodGroup):
        check_blood_group(checked, field)
    return checked


def effective_time(value: Message, created_at: dt.datetime) -> dt.datetime:
    """What lists sort and filter on: when a measurement was measured, when anything else was created."""
    if isinstance(value, res.Measurement) and value.HasField("measure_time"):
        return value.measure_time.ToDatetime(tzinfo=dt.UTC)
    return created_at


def entry_label(kind: str, value: Mapping[str, Any]) -> str:
    """A short label of an entry, as the access log shows it (e.g. ``allergy: penicillin``)."""
    rule = KINDS.get(kind)
    if rule is None:
        return ""
    detail = ""
    if kind == "MEASUREMENT":
        measured = MEASUREMENTS.get(str(value.get("type", "")).removeprefix("MEASUREMENT_TYPE_"))
        detail = measured.label if measured else ""
    else:
        for name in ("description", "substance", "medication", "vaccine", "display_name"):
            if value.get(name):
                detail = str(value[name])
                break
    label = f"{rule.label}: {detail}" if detail else rule.label
    return label[:120]


# ---------------------------------------------------------------- entries and who changes them


@dataclasses.dataclass(frozen=True)
class ProfileEntryRecord:
    """A stored profile entry (``deleted_at`` set on a tombstone)."""

    entry_id: uuid.UUID
    holder_id: uuid.UUID
    kind: str
    value: dict[str, Any]
    """The value message as JSON (proto field names)."""
    source: str
    created_by: dict[str, Any]
    """The actor who created it (the author)."""
    recorded_by: dict[str, Any]
    """The actor who created it or last changed it."""
    version: int
    hidden_from_professionals: bool
    created_at: dt.datetime
    effective_time: dt.datetime
    measurement_type: str = ""
    author_rpps: str = ""
    """The author's RPPS (a professional's), what consent's "hidden unless author" compares."""
    updated_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None


def source_of(principal: Principal) -> str:
    """Who an entry comes from, by the caller's role (never from the request)."""
    if principal.role in HOLDER_SIDE:
        return "HOLDER"
    if principal.role == "professional":
        return "PROFESSIONAL"
    if principal.role == "client" and principal.acting_for:
        return "APP"
    raise PermissionDenied("this caller does not write profile entries", reason="CALLER_NOT_ALLOWED")


def is_holder_side(principal: Principal, holder_id: str) -> bool:
    """The holder, or someone acting for them (consent still decides whether they may)."""
    if principal.role == "holder":
        return principal.subject == holder_id
    return principal.role in HOLDER_SIDE and principal.acting_for == holder_id


def _role(actor: Mapping[str, Any]) -> str:
    return str(actor.get("role", "")).removeprefix("ROLE_").lower()


def is_author(principal: Principal, record: ProfileEntryRecord) -> bool:
    """Whether the caller wrote the entry: the same account (an app: the same app for the same
    holder), or a professional with the same RPPS."""
    author = record.created_by
    if record.source == "DERIVED":
        return False
    if principal.role == "professional" and principal.rpps and principal.rpps == record.author_rpps:
        return True
    if not principal.subject or principal.subject != author.get("subject") or principal.role != _role(author):
        return False
    if principal.role == "client":
        same_app = principal.client_id == author.get("client_id", "")
        return bool(same_app and principal.acting_for == author.get("acting_for", ""))
    return True


def changes_as_author(principal: Principal, record: ProfileEntryRecord) -> bool:
    """Whether a change is asked of consent as the author feeding the record (ACTION_CREATE) rather
    than as the holder's side (ACTION_UPDATE / ACTION_DELETE), as for documents."""
    return is_author(principal, record) and not is_holder_side(principal, str(record.holder_id))


def _ensure_not_derived(record: ProfileEntryRecord) -> None:
    if record.source == "DERIVED":
        raise FailedPrecondition(
            "a derived entry (the BMI) follows the latest weight and height; change those instead",
            reason="DERIVED_ENTRY_READ_ONLY",
            metadata={"entry_id": str(record.entry_id)},
        )


IMMUTABLE_FIELDS = frozenset(
    {"entry_id", "holder_id", "kind", "source", "recorded_by", "version", "create_time", "update_time"}
)
VISIBILITY_FIELD = "hidden_from_professionals"
_FIXED_MEASUREMENT_FIELDS = frozenset({"measurement.type", "measurement.derived"})


def check_update_mask(kind: str, paths: Iterable[str]) -> list[str]:
    """The paths of an update, each one the caller may name (paths in ``ProfileEntry``)."""
    named = list(dict.fromkeys(paths))
    if not named:
        raise InvalidArgument("update_mask names no field", field="update_mask", reason="FIELD_INVALID")
    value_field = KINDS[kind].value_field
    for path in named:
        head = path.split(".", 1)[0]
        if path in _FIXED_MEASUREMENT_FIELDS or head in IMMUTABLE_FIELDS:
            raise InvalidArgument(
                f"{path!r} cannot be changed",
                field="update_mask",
                reason="FIELD_NOT_UPDATABLE",
                metadata={"path": path},
            )
        if not field_mask_pb2.FieldMask(paths=[path]).IsValidForDescriptor(res.ProfileEntry.DESCRIPTOR):
            raise InvalidArgument(
                f"{path!r} is not a field of ProfileEntry",
                field="update_mask",
                reason="FIELD_INVALID",
                metadata={"path": path},
            )
        if head in VALUE_FIELDS and head != value_field:
            raise InvalidArgument(
                f"an entry of kind {kind} carries its value in {value_field}, not in {head}",
                field="update_mask",
                reason="KIND_VALUE_MISMATCH",
                metadata={"path": path},
            )
    return named


def ensure_may_change(principal: Principal, record: ProfileEntryRecord, paths: Sequence[str]) -> None:
    """Content is changed by its author, or by the holder's side for what the holder's side or
    their apps wrote; whether an entry is hidden from professionals by its author or the
    holder's side (PRODUCT.md: the holder masks, the author too)."""
    _ensure_not_derived(record)
    author = is_author(principal, record)
    holder_side = is_holder_side(principal, str(record.holder_id))
    if not (author or holder_side):
        raise PermissionDenied("only the entry's author or the holder's side changes it", reason="NOT_THE_AUTHOR")
    may_change_content = author or (holder_side and record.source in ("HOLDER", "APP"))
    for path in paths:
        if path != VISIBILITY_FIELD and not may_change_content:
            raise PermissionDenied(
                f"{path} was written by a professional: only its author changes it",
                reason="FIELD_NOT_YOURS",
                metadata={"path": path},
            )


def ensure_may_delete(principal: Principal, record: ProfileEntryRecord) -> None:
    """An entry is deleted by its author or the holder's side (consent then decides)."""
    _ensure_not_derived(record)
    if not (is_author(principal, record) or is_holder_side(principal, str(record.holder_id))):
        raise PermissionDenied("only the entry's author or the holder's side deletes it", reason="NOT_THE_AUTHOR")


def apply_update(
    kind: str, current: Message, hidden: bool, proposed: res.ProfileEntry, paths: Sequence[str]
) -> tuple[Message, bool]:
    """The value and flag after merging the fields ``paths`` names from ``proposed`` (not yet validated).

    A path naming the whole value (``allergy``) replaces it; a path inside it
    (``allergy.severity``) replaces that field only.
    """
    value_field = KINDS[kind].value_field
    for path in paths:
        head = path.split(".", 1)[0]
        if head != path and proposed.WhichOneof("value") != head:
            raise InvalidArgument(
                f"update_mask names {path} but the entry carries no {head}",
                field=f"entry.{head}",
                reason="FIELD_INVALID",
            )
    merged = res.ProfileEntry(hidden_from_professionals=hidden)
    getattr(merged, value_field).CopyFrom(current)
    field_mask_pb2.FieldMask(paths=list(paths)).MergeMessage(
        proposed, merged, replace_message_field=True, replace_repeated_field=True
    )
    if merged.WhichOneof("value") != value_field:
        raise InvalidArgument(
            f"an entry of kind {kind} carries its value in {value_field}",
            field=f"entry.{value_field}",
            reason="FIELD_INVALID",
        )
    value: Message = getattr(merged, value_field)
    if isinstance(current, res.Measurement) and isinstance(value, res.Measurement) and value.type != current.type:
        raise InvalidArgument(
            "a measurement keeps its type; record a new one instead",
            field=f"entry.{value_field}.type",
            reason="FIELD_NOT_UPDATABLE",
        )
    return value, merged.hidden_from_professionals


# ---------------------------------------------------------------- listing


@dataclasses.dataclass(frozen=True)
class EntryFilter:
    """Filters of a profile listing (all optional)."""

    kinds: tuple[str, ...] = ()
    measurement_type: str = ""
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    source: str = ""


def check_filter(filters: EntryFilter) -> EntryFilter:
    """The filters as applied: a measurement type implies the measurement kind."""
    unknown = [kind for kind in filters.kinds if kind not in KINDS]
    if unknown:
        raise InvalidArgument(f"unknown kind {unknown[0]!r}", field="kinds", reason="FIELD_INVALID")
    if filters.measurement_type and filters.measurement_type not in MEASUREMENTS:
        raise InvalidArgument("unknown measurement_type", field="measurement_type", reason="FIELD_INVALID")
    if filters.source and filters.source not in SOURCES:
        raise InvalidArgument("unknown source", field="source", reason="FIELD_INVALID")
    if filters.start_time and filters.end_time and filters.end_time <= filters.start_time:
        raise InvalidArgument("end_time must be after start_time", field="end_time", reason="FIELD_INVALID")
    kinds = tuple(sorted(set(filters.kinds)))
    if filters.measurement_type:
        if kinds and "MEASUREMENT" not in kinds:
            raise InvalidArgument(
                "measurement_type filters measurements, but kinds leaves them out",
                field="measurement_type",
                reason="FIELD_INVALID",
            )
        kinds = ("MEASUREMENT",)
    return dataclasses.replace(filters, kinds=kinds)


@dataclasses.dataclass(frozen=True)
class Visibility:
    """Which entries a listing returns, from consent's answers per kind.

    ``open_kinds``: entries not hidden from professionals; ``hidden_kinds``: hidden
    ones whoever wrote them; ``own_hidden_kinds``: hidden ones whose author has
    ``author_rpps`` (consent's "hidden documents stay visible to their author").
    """

    open_kinds: frozenset[str]
    hidden_kinds: frozenset[str] = frozenset()
    own_hidden_kinds: frozenset[str] = frozenset()
    author_rpps: str = ""

    @property
    def nothing(self) -> bool:
        """Whether no entry at all may be listed."""
        return not (self.open_kinds or self.hidden_kinds or (self.own_hidden_kinds and self.author_rpps))


def _encode(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _invalid_token() -> InvalidArgument:
    return InvalidArgument("page_token is not valid", field="page_token", reason="PAGE_TOKEN_INVALID")


def query_fingerprint(holder_id: uuid.UUID, filters: EntryFilter) -> str:
    """What a page token is bound to: the holder and the filters (another query refuses the token)."""
    described = json.dumps(
        [
            str(holder_id),
            list(filters.kinds),
            filters.measurement_type,
            filters.start_time.isoformat() if filters.start_time else "",
            filters.end_time.isoformat() if filters.end_time else "",
            filters.source,
        ]
    )
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def encode_entries_token(after: tuple[dt.datetime, uuid.UUID], query: str) -> str:
    """An opaque token: the listing goes on after this entry (newest first)."""
    return _encode({"t": after[0].isoformat(), "id": str(after[1]), "q": query})


def decode_entries_token(token: str, query: str) -> tuple[dt.datetime, uuid.UUID] | None:
    """Where a listing goes on; PAGE_TOKEN_INVALID if not made here or made for another query."""
    if not token:
        return None
    data = _decode(token)
    try:
        if data["q"] != query:
            raise _invalid_token()
        when = dt.datetime.fromisoformat(data["t"])
        if when.tzinfo is None:
            raise _invalid_token()
        return when, uuid.UUID(data["id"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _invalid_token() from None


def encode_revisions_token(entry_id: uuid.UUID, below_version: int) -> str:
    """An opaque token: the revisions go on below this version."""
    return _encode({"e": str(entry_id), "v": below_version})


def decode_revisions_token(token: str, entry_id: uuid.UUID) -> int | None:
    """The version a revision listing goes on below; PAGE_TOKEN_INVALID if not made for this entry."""
    if not token:
        return None
    data = _decode(token)
    try:
        version = data["v"]
        if data["e"] != str(entry_id) or not isinstance(version, int) or isinstance(version, bool) or version < 2:
            raise _invalid_token()
        return version
    except (KeyError, TypeError):
        raise _invalid_token() from None
