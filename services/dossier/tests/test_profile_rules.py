"""The medical profile's rules without a server: ranges, units, BMI, blood groups, values, masks, rights."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid
from typing import Any

import pytest
from google.protobuf.message import Message

from carnet.common.v1 import common_pb2
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier.profile import (
    EntryFilter,
    ProfileEntryRecord,
    apply_update,
    body_mass_index,
    changes_as_author,
    check_blood_group,
    check_date,
    check_filter,
    check_kind,
    check_update_mask,
    decode_entries_token,
    decode_revisions_token,
    derived_bmi,
    encode_entries_token,
    encode_revisions_token,
    ensure_may_change,
    ensure_may_delete,
    entry_label,
    normalise_measurement,
    query_fingerprint,
    source_of,
    validate_value,
)
from carnet_kit.auth import Principal
from carnet_kit.errors import CarnetError, FailedPrecondition, InvalidArgument, PermissionDenied

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
T = res.MeasurementType


def measurement(kind: int, value: float, unit: str, secondary: float = 0.0, **fields: Any) -> res.Measurement:
    return res.Measurement(type=kind, value=value, unit=unit, secondary_value=secondary, **fields)


def refusal(error: pytest.ExceptionInfo[CarnetError]) -> tuple[str, str]:
    return error.value.metadata.get("field", ""), error.value.reason


# ---------------------------------------------------------------- plausible ranges

RANGES = [
    # (type, value, unit, secondary, refused field or None)
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 70, "kg", 0, None, id="weight-70kg"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 500, "kg", 0, None, id="weight-upper-bound"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 0.2, "kg", 0, None, id="weight-lower-bound-premature-baby"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 900, "kg", 0, "value", id="weight-900kg"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 0.1, "kg", 0, "value", id="weight-100g"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, -70, "kg", 0, "value", id="weight-negative"),
    pytest.param(T.MEASUREMENT_TYPE_HEIGHT, 175, "cm", 0, None, id="height-175cm"),
    pytest.param(T.MEASUREMENT_TYPE_HEIGHT, 20, "m", 0, "value", id="height-20m"),
    pytest.param(T.MEASUREMENT_TYPE_HEIGHT, 290, "cm", 0, "value", id="height-290cm"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_PRESSURE, 120, "mm[Hg]", 80, None, id="pressure-120-80"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_PRESSURE, 400, "mm[Hg]", 80, "value", id="systolic-400"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_PRESSURE, 120, "mm[Hg]", 250, "secondary_value", id="diastolic-250"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_PRESSURE, 120, "mm[Hg]", 0, "secondary_value", id="diastolic-missing"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_GLUCOSE, 5.5, "mmol/L", 0, None, id="glucose-5.5mmol"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_GLUCOSE, 1.05, "g/L", 0, None, id="glucose-1.05g"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_GLUCOSE, 70, "mmol/L", 0, "value", id="glucose-70mmol"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_GLUCOSE, 11, "g/L", 0, "value", id="glucose-11g-is-61mmol"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_GLUCOSE, 0.05, "g/L", 0, "value", id="glucose-0.05g"),
    pytest.param(T.MEASUREMENT_TYPE_WAIST_CIRCUMFERENCE, 85, "cm", 0, None, id="waist-85cm"),
    pytest.param(T.MEASUREMENT_TYPE_WAIST_CIRCUMFERENCE, 5, "cm", 0, "value", id="waist-5cm"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 70, "kg", 3, "secondary_value", id="weight-has-no-second-value"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, math.nan, "kg", 0, "value", id="weight-not-a-number"),
]


@pytest.mark.parametrize(("kind", "value", "unit", "secondary", "refused"), RANGES)
def test_measurements_outside_their_plausible_range_are_refused_naming_the_field(
    kind: int, value: float, unit: str, secondary: float, refused: str | None
) -> None:
    proposed = measurement(kind, value, unit, secondary)
    if refused is None:
        normalise_measurement(proposed, now=NOW)
        return
    with pytest.raises(InvalidArgument) as error:
        normalise_measurement(proposed, now=NOW)
    assert error.value.metadata["field"] == f"entry.measurement.{refused}"
    assert error.value.reason in ("MEASUREMENT_OUT_OF_RANGE", "FIELD_INVALID")


def test_out_of_range_names_the_range_in_the_unit_given() -> None:
    with pytest.raises(InvalidArgument) as error:
        normalise_measurement(measurement(T.MEASUREMENT_TYPE_WEIGHT, 900, "kg"), now=NOW)
    assert error.value.reason == "MEASUREMENT_OUT_OF_RANGE"
    assert error.value.metadata == {"field": "entry.measurement.value", "low": "0.2", "high": "500", "unit": "kg"}
    assert "weight 900 kg" in error.value.message


def test_diastolic_not_below_systolic_is_inconsistent() -> None:
    with pytest.raises(InvalidArgument) as error:
        normalise_measurement(measurement(T.MEASUREMENT_TYPE_BLOOD_PRESSURE, 120, "mm[Hg]", 130), now=NOW)
    assert refusal(error) == ("entry.measurement.secondary_value", "MEASUREMENT_INCONSISTENT")


# ---------------------------------------------------------------- units

UNITS = [
    # (type, value, unit as entered, secondary, unit stored, value stored, secondary stored)
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 70.5, "kg", 0, "kg", 70.5, 0, id="kg-kept"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 70_000, "g", 0, "kg", 70.0, 0, id="g-to-kg"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 154, "[lb_av]", 0, "kg", 69.853, 0, id="pounds-to-kg"),
    pytest.param(T.MEASUREMENT_TYPE_WEIGHT, 154, "lb", 0, "kg", 69.853, 0, id="lb-alias"),
    pytest.param(T.MEASUREMENT_TYPE_HEIGHT, 1.75, "m", 0, "cm", 175.0, 0, id="m-to-cm"),
    pytest.param(T.MEASUREMENT_TYPE_HEIGHT, 69, "[in_i]", 0, "cm", 175.3, 0, id="inches-to-cm"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_PRESSURE, 120, "mmHg", 80, "mm[Hg]", 120, 80, id="mmHg-alias"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_PRESSURE, 16, "kPa", 10.7, "mm[Hg]", 120, 80, id="kPa-to-mmHg"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_GLUCOSE, 5.4, "mmol/L", 0, "mmol/L", 5.4, 0, id="mmol-kept"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_GLUCOSE, 0.95, "g/l", 0, "g/L", 0.95, 0, id="g-per-l-kept"),
    pytest.param(T.MEASUREMENT_TYPE_BLOOD_GLUCOSE, 95, "mg/dL", 0, "g/L", 0.95, 0, id="mg-per-dl-to-g-per-l"),
    pytest.param(T.MEASUREMENT_TYPE_WAIST_CIRCUMFERENCE, 0.9, "m", 0, "cm", 90.0, 0, id="waist-m-to-cm"),
]


@pytest.mark.parametrize(("kind", "value", "unit", "secondary", "stored_unit", "stored", "stored_secondary"), UNITS)
def test_units_of_record_are_kept_and_convertible_units_converted(
    kind: int, value: float, unit: str, secondary: float, stored_unit: str, stored: float, stored_secondary: float
) -> None:
    result = normalise_measurement(measurement(kind, value, unit, secondary), now=NOW)
    assert result.unit == stored_unit
    assert result.value == pytest.approx(stored)
    assert result.secondary_value == pytest.approx(stored_secondary)
    assert result.derived is False


@pytest.mark.parametrize(
    ("kind", "unit"),
    [
        pytest.param(T.MEASUREMENT_TYPE_WEIGHT, "", id="weight-without-unit"),
        pytest.param(T.MEASUREMENT_TYPE_WEIGHT, "cm", id="weight-in-cm"),
        pytest.param(T.MEASUREMENT_TYPE_HEIGHT, "kg", id="height-in-kg"),
        pytest.param(T.MEASUREMENT_TYPE_BLOOD_PRESSURE, "bar", id="pressure-in-bar"),
        pytest.param(T.MEASUREMENT_TYPE_BLOOD_GLUCOSE, "mg/L", id="glucose-in-mg-per-l"),
    ],
)
def test_a_unit_of_another_type_or_unknown_is_refused(kind: int, unit: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        normalise_measurement(measurement(kind, 70, unit, 40), now=NOW)
    assert refusal(error) == ("entry.measurement.unit", "UNIT_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        pytest.param(T.MEASUREMENT_TYPE_BMI, "MEASUREMENT_DERIVED", id="bmi-is-derived"),
        pytest.param(T.MEASUREMENT_TYPE_UNSPECIFIED, "FIELD_INVALID", id="no-type"),
        pytest.param(42, "FIELD_INVALID", id="unknown-type"),
    ],
)
def test_a_measurement_type_must_be_one_that_is_entered(kind: int, reason: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        normalise_measurement(measurement(kind, 22, "kg/m2"), now=NOW)
    assert refusal(error) == ("entry.measurement.type", reason)


def test_measure_time_defaults_to_now_and_may_not_be_in_the_future() -> None:
    stamped = normalise_measurement(measurement(T.MEASUREMENT_TYPE_WEIGHT, 70, "kg"), now=NOW)
    assert stamped.measure_time.ToDatetime(tzinfo=dt.UTC) == NOW
    future = measurement(T.MEASUREMENT_TYPE_WEIGHT, 70, "kg")
    future.measure_time.FromDatetime(NOW + dt.timedelta(hours=1))
    with pytest.raises(InvalidArgument) as error:
        normalise_measurement(future, now=NOW)
    assert refusal(error) == ("entry.measurement.measure_time", "FIELD_INVALID")


# ---------------------------------------------------------------- BMI


@pytest.mark.parametrize(
    ("weight_kg", "height_cm", "bmi"),
    [
        pytest.param(70, 175, 22.9, id="adult"),
        pytest.param(80, 175, 26.1, id="overweight"),
        pytest.param(3.5, 50, 14.0, id="newborn"),
        pytest.param(150, 160, 58.6, id="severe-obesity"),
        pytest.param(500, 50, None, id="implausible-combination"),
        pytest.param(0.2, 280, None, id="implausibly-low"),
    ],
)
def test_body_mass_index_is_weight_over_height_squared_to_one_decimal(
    weight_kg: float, height_cm: float, bmi: float | None
) -> None:
    assert body_mass_index(weight_kg, height_cm) == bmi


def test_derived_bmi_is_measured_at_the_later_of_weight_and_height() -> None:
    weight = measurement(T.MEASUREMENT_TYPE_WEIGHT, 70, "kg")
    weight.measure_time.FromDatetime(NOW)
    height = measurement(T.MEASUREMENT_TYPE_HEIGHT, 175, "cm")
    height.measure_time.FromDatetime(NOW - dt.timedelta(days=400))
    bmi = derived_bmi(weight, height)
    assert bmi is not None
    assert (bmi.type, bmi.value, bmi.unit, bmi.derived) == (T.MEASUREMENT_TYPE_BMI, 22.9, "kg/m2", True)
    assert bmi.measure_time.ToDatetime(tzinfo=dt.UTC) == NOW
    assert bmi.note == "computed from the weight of 70 kg and the height of 175 cm"


# ---------------------------------------------------------------- blood groups

ABO = [res.BLOOD_GROUP_ABO_A, res.BLOOD_GROUP_ABO_B, res.BLOOD_GROUP_ABO_AB, res.BLOOD_GROUP_ABO_O]
RH = [res.RHESUS_FACTOR_POSITIVE, res.RHESUS_FACTOR_NEGATIVE]


@pytest.mark.parametrize("abo", ABO)
@pytest.mark.parametrize("rhesus", RH)
def test_the_eight_abo_rh_blood_groups_are_valid(abo: int, rhesus: int) -> None:
    check_blood_group(res.BloodGroup(abo=abo, rhesus=rhesus))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("abo", "rhesus", "field"),
    [
        pytest.param(0, res.RHESUS_FACTOR_POSITIVE, "abo", id="abo-missing"),
        pytest.param(res.BLOOD_GROUP_ABO_A, 0, "rhesus", id="rhesus-missing"),
        pytest.param(9, res.RHESUS_FACTOR_POSITIVE, "abo", id="abo-unknown"),
        pytest.param(res.BLOOD_GROUP_ABO_O, 3, "rhesus", id="rhesus-unknown"),
    ],
)
def test_other_blood_groups_are_refused(abo: int, rhesus: int, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        check_blood_group(res.BloodGroup(abo=abo, rhesus=rhesus))  # type: ignore[arg-type]
    assert refusal(error) == (f"entry.blood_group.{field}", "BLOOD_GROUP_INVALID")


# ---------------------------------------------------------------- dates and other values


@pytest.mark.parametrize(
    ("year", "month", "day", "field"),
    [
        pytest.param(2020, 0, 0, None, id="year-only"),
        pytest.param(2020, 2, 0, None, id="year-and-month"),
        pytest.param(2024, 2, 29, None, id="leap-day"),
        pytest.param(2023, 2, 29, "d.day", id="no-leap-day"),
        pytest.param(2020, 0, 5, "d.day", id="day-without-month"),
        pytest.param(2020, 13, 0, "d.month", id="month-13"),
        pytest.param(1700, 1, 1, "d.year", id="before-1800"),
        pytest.param(2026, 0, 0, "d", id="future"),
    ],
)
def test_partial_dates(year: int, month: int, day: int, field: str | None) -> None:
    date = common_pb2.Date(year=year, month=month, day=day)
    if field is None:
        check_date(date, "d", today=TODAY)
        return
    with pytest.raises(InvalidArgument) as error:
        check_date(date, "d", today=TODAY)
    assert error.value.metadata["field"] == field


def _date(year: int, month: int = 0, day: int = 0) -> common_pb2.Date:
    return common_pb2.Date(year=year, month=month, day=day)


VALUES = [
    # (kind, value, refused field)
    pytest.param("MEDICAL_HISTORY", res.HistoryItem(description=" "), "entry.history.description", id="history-blank"),
    pytest.param(
        "MEDICAL_HISTORY",
        res.HistoryItem(description="Asthme", relative="mère"),
        "entry.history.relative",
        id="relative-outside-family-history",
    ),
    pytest.param(
        "FAMILY_HISTORY", res.HistoryItem(description="Diabète"), "entry.history.relative", id="family-no-relative"
    ),
    pytest.param(
        "SURGICAL_HISTORY",
        res.HistoryItem(description="Appendicectomie", onset_date=_date(2010), end_date=_date(2009)),
        "entry.history.end_date",
        id="ends-before-it-starts",
    ),
    pytest.param(
        "MEDICAL_HISTORY",
        res.HistoryItem(description="Asthme", code=common_pb2.Coding(code="J45")),
        "entry.history.code.system",
        id="code-without-system",
    ),
    pytest.param("ALLERGY", res.Allergy(substance="Pénicilline", severity=9), "entry.allergy.severity", id="severity"),  # type: ignore[arg-type]
    pytest.param("ALLERGY", res.Allergy(reaction="urticaire"), "entry.allergy.substance", id="allergy-no-substance"),
    pytest.param(
        "TREATMENT",
        res.Treatment(medication="Metformine", start_date=_date(2024, 5), end_date=_date(2024, 4)),
        "entry.treatment.end_date",
        id="treatment-ends-before-start",
    ),
    pytest.param(
        "VACCINATION", res.Vaccination(vaccine="DTP"), "entry.vaccination.administration_date", id="vaccination-no-date"
    ),
    pytest.param(
        "VACCINATION",
        res.Vaccination(vaccine="DTP", administration_date=_date(2025, 7, 1)),
        "entry.vaccination.administration_date",
        id="vaccination-in-the-future",
    ),
    pytest.param(
        "VACCINATION",
        res.Vaccination(vaccine="DTP", administration_date=_date(2025, 1, 2), lot_number="X" * 41),
        "entry.vaccination.lot_number",
        id="lot-too-long",
    ),
    pytest.param("ADVANCE_DIRECTIVES", res.AdvanceDirectives(), "entry.advance_directives.text", id="directives-empty"),
    pytest.param(
        "ADVANCE_DIRECTIVES",
        res.AdvanceDirectives(document_id="nope"),
        "entry.advance_directives.document_id",
        id="directives-bad-document",
    ),
    pytest.param("ORGAN_DONATION", res.OrganDonation(), "entry.organ_donation.wish", id="no-wish"),
    pytest.param(
        "ORGAN_DONATION",
        res.OrganDonation(wish=res.ORGAN_DONATION_WISH_PARTIAL),
        "entry.organ_donation.note",
        id="partial-without-saying-which-organs",
    ),
    pytest.param(
        "CONTACT_PERSON", res.ContactPerson(display_name="Léa"), "entry.contact_person.phone", id="unreachable"
    ),
    pytest.param(
        "CONTACT_PERSON",
        res.ContactPerson(display_name="Léa", phone="06 12 34 56 78"),
        "entry.contact_person.phone",
        id="phone-not-e164",
    ),
    pytest.param(
        "CONTACT_PERSON",
        res.ContactPerson(display_name="Léa", email="lea.example.org"),
        "entry.contact_person.email",
        id="bad-email",
    ),
    pytest.param(
        "FOLLOWING_PROFESSIONAL",
        res.FollowingProfessional(rpps="123"),
        "entry.following_professional.rpps",
        id="rpps-not-11-digits",
    ),
    pytest.param(
        "FOLLOWING_PROFESSIONAL", res.FollowingProfessional(), "entry.following_professional.display_name", id="nobody"
    ),
]


@pytest.mark.parametrize(("kind", "value", "field"), VALUES)
def test_invalid_values_are_refused_naming_the_field(kind: str, value: Message, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_value(kind, value, now=NOW)
    assert error.value.metadata["field"] == field


def test_valid_values_are_trimmed_and_normalised() -> None:
    contact = validate_value(
        "CONTACT_PERSON", res.ContactPerson(display_name="  Léa Martin ", phone="+33 6 12 34 56 78"), now=NOW
    )
    assert contact == res.ContactPerson(display_name="Léa Martin", phone="+33612345678")
    vaccination = validate_value(
        "VACCINATION",
        res.Vaccination(vaccine="DTCaP", administration_date=_date(2025, 5, 31), lot_number=" AB123 "),
        now=NOW,
    )
    assert isinstance(vaccination, res.Vaccination) and vaccination.lot_number == "AB123"
    treatment = validate_value(
        "TREATMENT",
        res.Treatment(medication="Metformine", start_date=_date(2025, 1), end_date=_date(2026, 1)),
        now=NOW,
    )
    assert isinstance(treatment, res.Treatment) and treatment.end_date.year == 2026  # a planned end is fine


@pytest.mark.parametrize(
    ("kind", "value_field", "field", "reason"),
    [
        pytest.param("", "allergy", "entry.kind", "FIELD_INVALID", id="no-kind"),
        pytest.param("ALLERGY", None, "entry.allergy", "FIELD_INVALID", id="no-value"),
        pytest.param("ALLERGY", "history", "entry.history", "KIND_VALUE_MISMATCH", id="other-value"),
    ],
)
def test_kind_and_value_go_together(kind: str, value_field: str | None, field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        check_kind(kind, value_field)
    assert refusal(error) == (field, reason)


def test_labels_of_the_access_log() -> None:
    assert entry_label("ALLERGY", {"substance": "Pénicilline"}) == "allergy: Pénicilline"
    assert entry_label("MEASUREMENT", {"type": "MEASUREMENT_TYPE_BLOOD_PRESSURE"}) == "measurement: blood pressure"
    assert entry_label("BLOOD_GROUP", {"abo": "BLOOD_GROUP_ABO_O"}) == "blood group"


# ---------------------------------------------------------------- changes and who makes them

HOLDER = str(uuid.uuid4())
holder = Principal(subject=HOLDER, role="holder")
representative = Principal(subject="parent-1", role="representative", acting_for=HOLDER)
doctor = Principal(subject="pro-1", role="professional", profession_code="10", rpps="10000000001")
same_rpps = Principal(subject="pro-1-elsewhere", role="professional", profession_code="10", rpps="10000000001")
other_doctor = Principal(subject="pro-2", role="professional", profession_code="10", rpps="10000000002")
app = Principal(subject="app-1", role="client", client_id="app-1", acting_for=HOLDER)
lab_software = Principal(subject="lab", role="client", client_id="lab")


def _actor(principal: Principal) -> dict[str, Any]:
    actor = principal.to_actor()
    return {
        "subject": actor.subject,
        "role": common_pb2.Role.Name(actor.role),
        "rpps": actor.rpps,
        "client_id": actor.client_id,
        "acting_for": actor.acting_for,
    }


def record(author: Principal, source: str, **fields: Any) -> ProfileEntryRecord:
    return ProfileEntryRecord(
        entry_id=uuid.uuid4(),
        holder_id=uuid.UUID(HOLDER),
        kind="ALLERGY",
        value={"substance": "Pénicilline"},
        source=source,
        created_by=_actor(author),
        recorded_by=_actor(author),
        version=1,
        hidden_from_professionals=False,
        created_at=NOW,
        effective_time=NOW,
        author_rpps=author.rpps,
        **fields,
    )


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        pytest.param(holder, "HOLDER", id="holder"),
        pytest.param(representative, "HOLDER", id="representative"),
        pytest.param(doctor, "PROFESSIONAL", id="professional"),
        pytest.param(app, "APP", id="app"),
    ],
)
def test_source_follows_the_callers_role(principal: Principal, expected: str) -> None:
    assert source_of(principal) == expected


def test_software_acting_for_nobody_has_no_source() -> None:
    with pytest.raises(PermissionDenied):
        source_of(lab_software)


CHANGES = [
    # (author, source, caller, paths, refusal reason or None, asked to consent as the author)
    pytest.param(holder, "HOLDER", holder, ["allergy.severity"], None, False, id="holder-own-entry"),
    pytest.param(holder, "HOLDER", representative, ["allergy"], None, False, id="representative-holders-entry"),
    pytest.param(app, "APP", holder, ["allergy.reaction"], None, False, id="holder-corrects-their-app"),
    pytest.param(app, "APP", app, ["allergy.reaction"], None, True, id="app-own-entry"),
    pytest.param(doctor, "PROFESSIONAL", doctor, ["allergy.reaction"], None, True, id="author"),
    pytest.param(doctor, "PROFESSIONAL", same_rpps, ["allergy.reaction"], None, True, id="author-by-rpps"),
    pytest.param(doctor, "PROFESSIONAL", holder, ["hidden_from_professionals"], None, False, id="holder-hides"),
    pytest.param(doctor, "PROFESSIONAL", holder, ["allergy.reaction"], "FIELD_NOT_YOURS", False, id="holder-content"),
    pytest.param(doctor, "PROFESSIONAL", other_doctor, ["allergy"], "NOT_THE_AUTHOR", False, id="other-doctor"),
    pytest.param(holder, "HOLDER", doctor, ["hidden_from_professionals"], "NOT_THE_AUTHOR", False, id="doctor-hides"),
]


@pytest.mark.parametrize(("author", "source", "caller", "paths", "reason", "as_author"), CHANGES)
def test_who_changes_what(
    author: Principal, source: str, caller: Principal, paths: list[str], reason: str | None, as_author: bool
) -> None:
    entry = record(author, source)
    assert changes_as_author(caller, entry) is as_author
    if reason is None:
        ensure_may_change(caller, entry, paths)
        return
    with pytest.raises(PermissionDenied) as error:
        ensure_may_change(caller, entry, paths)
    assert error.value.reason == reason


def test_the_author_and_the_holders_side_delete_others_do_not() -> None:
    entry = record(doctor, "PROFESSIONAL")
    ensure_may_delete(doctor, entry)
    ensure_may_delete(holder, entry)
    with pytest.raises(PermissionDenied):
        ensure_may_delete(other_doctor, entry)


def test_a_derived_entry_is_neither_changed_nor_deleted() -> None:
    bmi = dataclasses.replace(record(holder, "DERIVED"), kind="MEASUREMENT", author_rpps="")
    with pytest.raises(FailedPrecondition) as changed:
        ensure_may_change(holder, bmi, ["measurement.note"])
    with pytest.raises(FailedPrecondition) as deleted:
        ensure_may_delete(holder, bmi)
    assert changed.value.reason == deleted.value.reason == "DERIVED_ENTRY_READ_ONLY"


@pytest.mark.parametrize(
    ("kind", "paths", "reason"),
    [
        pytest.param("ALLERGY", [], "FIELD_INVALID", id="empty-mask"),
        pytest.param("ALLERGY", ["source"], "FIELD_NOT_UPDATABLE", id="source"),
        pytest.param("ALLERGY", ["kind"], "FIELD_NOT_UPDATABLE", id="kind"),
        pytest.param("ALLERGY", ["version"], "FIELD_NOT_UPDATABLE", id="version"),
        pytest.param("MEASUREMENT", ["measurement.type"], "FIELD_NOT_UPDATABLE", id="measurement-type"),
        pytest.param("ALLERGY", ["history.description"], "KIND_VALUE_MISMATCH", id="other-kinds-value"),
        pytest.param("ALLERGY", ["allergy.nope"], "FIELD_INVALID", id="unknown-field"),
        pytest.param("ALLERGY", ["allergy.severity", "hidden_from_professionals"], None, id="allowed"),
    ],
)
def test_update_masks(kind: str, paths: list[str], reason: str | None) -> None:
    if reason is None:
        assert check_update_mask(kind, paths) == paths
        return
    with pytest.raises(InvalidArgument) as error:
        check_update_mask(kind, paths)
    assert refusal(error) == ("update_mask", reason)


def test_an_update_replaces_only_the_fields_the_mask_names() -> None:
    current = res.Allergy(substance="Pénicilline", reaction="urticaire", severity=res.ALLERGY_SEVERITY_MILD)
    proposed = res.ProfileEntry(
        allergy=res.Allergy(substance="ignored", severity=res.ALLERGY_SEVERITY_SEVERE),
        hidden_from_professionals=True,
    )
    value, hidden = apply_update("ALLERGY", current, False, proposed, ["allergy.severity"])
    assert value == res.Allergy(substance="Pénicilline", reaction="urticaire", severity=res.ALLERGY_SEVERITY_SEVERE)
    assert hidden is False
    value, hidden = apply_update("ALLERGY", current, False, proposed, ["allergy", "hidden_from_professionals"])
    assert value == res.Allergy(substance="ignored", severity=res.ALLERGY_SEVERITY_SEVERE)
    assert hidden is True


def test_an_update_replacing_a_whole_measurement_keeps_its_type() -> None:
    current = res.Measurement(type=T.MEASUREMENT_TYPE_WEIGHT, value=70, unit="kg")
    proposed = res.ProfileEntry(measurement=res.Measurement(type=T.MEASUREMENT_TYPE_HEIGHT, value=175, unit="cm"))
    with pytest.raises(InvalidArgument) as error:
        apply_update("MEASUREMENT", current, False, proposed, ["measurement"])
    assert refusal(error) == ("entry.measurement.type", "FIELD_NOT_UPDATABLE")
    same_type = res.ProfileEntry(measurement=res.Measurement(type=T.MEASUREMENT_TYPE_WEIGHT, value=71, unit="kg"))
    value, _ = apply_update("MEASUREMENT", current, False, same_type, ["measurement"])
    assert value == same_type.measurement


def test_an_update_naming_a_value_field_must_carry_the_value() -> None:
    with pytest.raises(InvalidArgument) as error:
        apply_update("ALLERGY", res.Allergy(substance="x"), False, res.ProfileEntry(), ["allergy.severity"])
    assert refusal(error) == ("entry.allergy", "FIELD_INVALID")


# ---------------------------------------------------------------- listing


def test_filters_a_measurement_type_implies_measurements() -> None:
    assert check_filter(EntryFilter(measurement_type="WEIGHT")).kinds == ("MEASUREMENT",)
    with pytest.raises(InvalidArgument) as error:
        check_filter(EntryFilter(kinds=("ALLERGY",), measurement_type="WEIGHT"))
    assert refusal(error) == ("measurement_type", "FIELD_INVALID")
    with pytest.raises(InvalidArgument) as error:
        check_filter(EntryFilter(start_time=NOW, end_time=NOW))
    assert refusal(error) == ("end_time", "FIELD_INVALID")
    with pytest.raises(InvalidArgument) as error:
        check_filter(EntryFilter(kinds=("#0",)))
    assert refusal(error) == ("kinds", "FIELD_INVALID")


def test_page_tokens_are_bound_to_their_query() -> None:
    holder_id = uuid.UUID(HOLDER)
    query = query_fingerprint(holder_id, EntryFilter(kinds=("ALLERGY",)))
    other = query_fingerprint(holder_id, EntryFilter(kinds=("TREATMENT",)))
    entry_id = uuid.uuid4()
    token = encode_entries_token((NOW, entry_id), query)
    assert decode_entries_token(token, query) == (NOW, entry_id)
    assert decode_entries_token("", query) is None
    for bad, bound_to in [(token, other), ("garbage!", query), ("e30", query)]:
        with pytest.raises(InvalidArgument) as error:
            decode_entries_token(bad, bound_to)
        assert refusal(error) == ("page_token", "PAGE_TOKEN_INVALID")
    revisions = encode_revisions_token(entry_id, 3)
    assert decode_revisions_token(revisions, entry_id) == 3
    with pytest.raises(InvalidArgument) as error:
        decode_revisions_token(revisions, uuid.uuid4())
    assert refusal(error) == ("page_token", "PAGE_TOKEN_INVALID")
