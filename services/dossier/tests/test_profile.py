"""The medical profile over gRPC, with the real consent service deciding every call."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import consent_service_pb2 as consent_pb
from carnet.consent.v1 import consent_service_pb2_grpc as consent_grpc
from carnet.consent.v1 import resources_pb2 as consent_res
from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet_kit.auth import Principal
from carnet_kit.db import create_pool
from carnet_kit.server import ServiceApp
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import TokenFactory

TIMEOUT = 15.0
K = res.ProfileEntryKind
T = res.MeasurementType
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def as_holder(holder_id: str) -> Principal:
    return Principal(subject=holder_id, role="holder")


def professional(subject: str, rpps: str, profession: str = "10") -> Principal:
    return Principal(
        subject=subject, role="professional", profession_code=profession, rpps=rpps, organisation_id=f"org-{subject}"
    )


DOCTOR = professional("pro-doctor", "10000000001")
COLLEAGUE = professional("pro-colleague", "10000000002")
TREATING = professional("pro-treating", "10000000003")
NURSE = professional("pro-nurse", "60000000004", profession="60")


def app_for(holder_id: str) -> Principal:
    return Principal(
        subject="app-tension",
        role="client",
        client_id="app-tension",
        acting_for=holder_id,
        scopes=("profile.read", "profile.write"),
    )


def at(when: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def weight(kg: float, when: dt.datetime = NOW, unit: str = "kg") -> dict[str, Any]:
    return {"measurement": res.Measurement(type=T.MEASUREMENT_TYPE_WEIGHT, value=kg, unit=unit, measure_time=at(when))}


def height(cm: float, when: dt.datetime = NOW) -> dict[str, Any]:
    return {"measurement": res.Measurement(type=T.MEASUREMENT_TYPE_HEIGHT, value=cm, unit="cm", measure_time=at(when))}


def allergy(substance: str = "Pénicilline", **fields: Any) -> dict[str, Any]:
    return {"allergy": res.Allergy(substance=substance, **fields)}


async def failure(call: Awaitable[Any]) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


class Calls:
    """The profile's RPCs (and the consent calls a test needs), each with a deadline."""

    def __init__(
        self, stub: pb_grpc.DossierServiceStub, consent: consent_grpc.ConsentServiceStub, tokens: TokenFactory
    ):
        self.stub = stub
        self.consent = consent
        self.tokens = tokens

    def auth(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens.mint(principal)}"),)

    async def create(
        self,
        principal: Principal,
        holder_id: str,
        kind: int,
        *,
        request_id: str = "",
        hidden: bool = False,
        **value: Any,
    ) -> res.ProfileEntry:
        entry = res.ProfileEntry(holder_id=holder_id, kind=kind, hidden_from_professionals=hidden, **value)
        created: res.ProfileEntry = await self.stub.CreateProfileEntry(
            pb.CreateProfileEntryRequest(entry=entry, request_id=request_id),
            metadata=self.auth(principal),
            timeout=TIMEOUT,
        )
        return created

    async def get(self, principal: Principal, entry_id: str) -> res.ProfileEntry:
        entry: res.ProfileEntry = await self.stub.GetProfileEntry(
            pb.GetProfileEntryRequest(entry_id=entry_id), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return entry

    async def list(self, principal: Principal, holder_id: str, **fields: Any) -> pb.ListProfileEntriesResponse:
        page: pb.ListProfileEntriesResponse = await self.stub.ListProfileEntries(
            pb.ListProfileEntriesRequest(holder_id=holder_id, **fields), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return page

    async def update(self, principal: Principal, entry: res.ProfileEntry, *paths: str) -> res.ProfileEntry:
        updated: res.ProfileEntry = await self.stub.UpdateProfileEntry(
            pb.UpdateProfileEntryRequest(entry=entry, update_mask=field_mask_pb2.FieldMask(paths=list(paths))),
            metadata=self.auth(principal),
            timeout=TIMEOUT,
        )
        return updated

    async def delete(self, principal: Principal, entry_id: str) -> None:
        await self.stub.DeleteProfileEntry(
            pb.DeleteProfileEntryRequest(entry_id=entry_id), metadata=self.auth(principal), timeout=TIMEOUT
        )

    async def revisions(
        self, principal: Principal, entry_id: str, **fields: Any
    ) -> pb.ListProfileEntryRevisionsResponse:
        page: pb.ListProfileEntryRevisionsResponse = await self.stub.ListProfileEntryRevisions(
            pb.ListProfileEntryRevisionsRequest(entry_id=entry_id, **fields),
            metadata=self.auth(principal),
            timeout=TIMEOUT,
        )
        return page

    async def access_log(self, holder_id: str, item_id: str = "") -> list[res.AccessLogEntry]:
        page: pb.ListAccessLogEntriesResponse = await self.stub.ListAccessLogEntries(
            pb.ListAccessLogEntriesRequest(holder_id=holder_id, item_id=item_id, page_size=100),
            metadata=self.auth(as_holder(holder_id)),
            timeout=TIMEOUT,
        )
        return list(page.entries)

    async def grant_care_team(self, holder_id: str, professional_id: str) -> None:
        await self.consent.CreateCareTeamAuthorisation(
            consent_pb.CreateCareTeamAuthorisationRequest(
                authorisation=consent_res.CareTeamAuthorisation(
                    holder_id=holder_id,
                    professional_id=professional_id,
                    origin=consent_res.AUTHORISATION_ORIGIN_HOLDER_GRANT,
                )
            ),
            metadata=self.auth(as_holder(holder_id)),
            timeout=TIMEOUT,
        )

    async def consent_to_app(self, holder_id: str, client_id: str) -> None:
        await self.consent.CreateAppConsent(
            consent_pb.CreateAppConsentRequest(
                app_consent=consent_res.AppConsent(
                    holder_id=holder_id,
                    client_id=client_id,
                    data_category="profile",
                    access=consent_res.APP_ACCESS_READ_WRITE,
                )
            ),
            metadata=self.auth(as_holder(holder_id)),
            timeout=TIMEOUT,
        )


@pytest.fixture
async def calls(
    dossier_stub: pb_grpc.DossierServiceStub, consent_app: ServiceApp, token_factory: TokenFactory
) -> AsyncIterator[Calls]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{consent_app.port}") as channel:
        yield Calls(dossier_stub, consent_grpc.ConsentServiceStub(channel), token_factory)


@pytest.fixture
async def consent_pool(database_url: str, consent_app: ServiceApp) -> AsyncIterator[asyncpg.Pool]:
    """Consent's schema, to name a treating physician (identity's events do it in the platform)."""
    pool = await create_pool(database_url, "consent", min_size=1, max_size=1)
    yield pool
    await pool.close()


def new_holder() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------- recording and reading


async def test_holder_records_an_allergy_with_source_author_version_revision_and_access_log(calls: Calls) -> None:
    holder_id = new_holder()
    created = await calls.create(
        as_holder(holder_id),
        holder_id,
        K.PROFILE_ENTRY_KIND_ALLERGY,
        # The source and the author come from the token, never from the request.
        source=res.ENTRY_SOURCE_PROFESSIONAL,
        recorded_by=common_pb2.Actor(subject="someone-else"),
        **allergy(" Pénicilline ", reaction="urticaire", severity=res.ALLERGY_SEVERITY_MODERATE),
    )

    assert uuid.UUID(created.entry_id) and created.holder_id == holder_id
    assert (created.kind, created.source, created.version) == (K.PROFILE_ENTRY_KIND_ALLERGY, res.ENTRY_SOURCE_HOLDER, 1)
    assert (created.recorded_by.subject, created.recorded_by.role) == (holder_id, common_pb2.ROLE_HOLDER)
    assert created.allergy == res.Allergy(
        substance="Pénicilline", reaction="urticaire", severity=res.ALLERGY_SEVERITY_MODERATE
    )
    assert created.HasField("create_time") and not created.HasField("update_time")
    assert await calls.get(as_holder(holder_id), created.entry_id) == created

    history = await calls.revisions(as_holder(holder_id), created.entry_id)
    assert [(r.version, r.change_type) for r in history.revisions] == [(1, common_pb2.CHANGE_TYPE_CREATED)]
    assert history.revisions[0].entry == created and history.revisions[0].changed_by.subject == holder_id

    logged = await calls.access_log(holder_id, created.entry_id)
    assert [(e.operation, e.action, e.outcome) for e in reversed(logged)] == [
        ("CreateProfileEntry", consent_res.ACTION_CREATE, res.ACCESS_OUTCOME_ALLOWED),
        ("GetProfileEntry", consent_res.ACTION_READ, res.ACCESS_OUTCOME_ALLOWED),
        ("ListProfileEntryRevisions", consent_res.ACTION_READ, res.ACCESS_OUTCOME_ALLOWED),
    ]
    assert {(e.item_kind, e.item_label) for e in logged} == {
        (consent_res.ITEM_KIND_PROFILE_ENTRY, "allergy: Pénicilline")
    }


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        pytest.param(weight(900), "entry.measurement.value", "MEASUREMENT_OUT_OF_RANGE", id="weight-900kg"),
        pytest.param(
            {"measurement": res.Measurement(type=T.MEASUREMENT_TYPE_HEIGHT, value=20, unit="m")},
            "entry.measurement.value",
            "MEASUREMENT_OUT_OF_RANGE",
            id="height-20m",
        ),
        pytest.param(
            {
                "measurement": res.Measurement(
                    type=T.MEASUREMENT_TYPE_BLOOD_PRESSURE, value=400, secondary_value=90, unit="mmHg"
                )
            },
            "entry.measurement.value",
            "MEASUREMENT_OUT_OF_RANGE",
            id="systolic-400mmHg",
        ),
        pytest.param(weight(70, unit="stone"), "entry.measurement.unit", "UNIT_NOT_ALLOWED", id="unknown-unit"),
        pytest.param(
            {"measurement": res.Measurement(type=T.MEASUREMENT_TYPE_BMI, value=22, unit="kg/m2")},
            "entry.measurement.type",
            "MEASUREMENT_DERIVED",
            id="bmi-by-hand",
        ),
        pytest.param(
            {"blood_group": res.BloodGroup(abo=res.BLOOD_GROUP_ABO_A)},
            "entry.blood_group.rhesus",
            "BLOOD_GROUP_INVALID",
            id="blood-group-without-rhesus",
        ),
        pytest.param(allergy(""), "entry.allergy.substance", "FIELD_INVALID", id="allergy-without-substance"),
        pytest.param(
            {"history": res.HistoryItem(description="Asthme")}, "entry.history", "KIND_VALUE_MISMATCH", id="wrong-value"
        ),
    ],
)
async def test_bad_values_are_invalid_argument_naming_the_field_and_nothing_is_stored(
    calls: Calls, value: dict[str, Any], field: str, reason: str
) -> None:
    holder_id = new_holder()
    kind = (
        K.PROFILE_ENTRY_KIND_ALLERGY if "history" in value or "allergy" in value else K.PROFILE_ENTRY_KIND_MEASUREMENT
    )
    if "blood_group" in value:
        kind = K.PROFILE_ENTRY_KIND_BLOOD_GROUP

    error = await failure(calls.create(as_holder(holder_id), holder_id, kind, **value))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.metadata.get("field"), error.reason) == (field, reason)
    assert (await calls.list(as_holder(holder_id), holder_id)).total_size == 0


async def test_a_convertible_unit_is_stored_in_the_unit_of_record(calls: Calls) -> None:
    holder_id = new_holder()
    created = await calls.create(
        as_holder(holder_id), holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(154, unit="lb")
    )
    assert (created.measurement.value, created.measurement.unit) == (69.853, "kg")
    assert created.measurement.measure_time == at(NOW)


async def test_a_one_per_holder_kind_and_the_trusted_person_exist_once(calls: Calls) -> None:
    holder_id = new_holder()
    group = {"blood_group": res.BloodGroup(abo=res.BLOOD_GROUP_ABO_O, rhesus=res.RHESUS_FACTOR_NEGATIVE)}
    first = await calls.create(as_holder(holder_id), holder_id, K.PROFILE_ENTRY_KIND_BLOOD_GROUP, **group)

    again = await failure(calls.create(as_holder(holder_id), holder_id, K.PROFILE_ENTRY_KIND_BLOOD_GROUP, **group))
    assert (again.code, again.reason, again.metadata.get("entry_id")) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "PROFILE_ENTRY_EXISTS",
        first.entry_id,
    )

    def contact(name: str) -> dict[str, Any]:
        return {"contact_person": res.ContactPerson(display_name=name, phone="+33612345678", trusted_person=True)}

    await calls.create(as_holder(holder_id), holder_id, K.PROFILE_ENTRY_KIND_CONTACT_PERSON, **contact("Léa"))
    second = await failure(
        calls.create(as_holder(holder_id), holder_id, K.PROFILE_ENTRY_KIND_CONTACT_PERSON, **contact("Marc"))
    )
    assert (second.code, second.reason) == (grpc.StatusCode.ALREADY_EXISTS, "TRUSTED_PERSON_EXISTS")


async def test_a_retry_with_the_same_request_id_returns_the_first_result(
    calls: Calls, dossier_pool: asyncpg.Pool
) -> None:
    holder_id = new_holder()
    holder = as_holder(holder_id)
    first = await calls.create(
        holder,
        holder_id,
        K.PROFILE_ENTRY_KIND_TREATMENT,
        request_id="req-1",
        treatment=res.Treatment(medication="Metformine"),
    )
    await calls.update(
        holder,
        res.ProfileEntry(entry_id=first.entry_id, treatment=res.Treatment(medication="Metformine", dosage="1 cp")),
        "treatment.dosage",
    )

    retry = await calls.create(
        holder,
        holder_id,
        K.PROFILE_ENTRY_KIND_TREATMENT,
        request_id="req-1",
        treatment=res.Treatment(medication="Metformine"),
    )

    assert retry == first
    assert (
        await dossier_pool.fetchval("SELECT count(*) FROM profile_entries WHERE holder_id = $1", uuid.UUID(holder_id))
        == 1
    )
    reused = await failure(
        calls.create(
            holder,
            holder_id,
            K.PROFILE_ENTRY_KIND_TREATMENT,
            request_id="req-1",
            treatment=res.Treatment(medication="Aspirine"),
        )
    )
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


# ---------------------------------------------------------------- changes and history


async def test_an_update_by_field_mask_makes_the_next_version_with_its_revision(calls: Calls) -> None:
    holder_id = new_holder()
    holder = as_holder(holder_id)
    created = await calls.create(holder, holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy(reaction="urticaire"))

    changed = await calls.update(
        holder,
        res.ProfileEntry(
            entry_id=created.entry_id, allergy=res.Allergy(substance="ignored", severity=res.ALLERGY_SEVERITY_SEVERE)
        ),
        "allergy.severity",
    )

    assert changed.version == 2 and changed.HasField("update_time")
    assert changed.allergy == res.Allergy(
        substance="Pénicilline", reaction="urticaire", severity=res.ALLERGY_SEVERITY_SEVERE
    )
    assert changed.create_time == created.create_time
    history = await calls.revisions(holder, created.entry_id)
    assert [(r.version, r.change_type, r.entry.allergy.severity) for r in history.revisions] == [
        (2, common_pb2.CHANGE_TYPE_UPDATED, res.ALLERGY_SEVERITY_SEVERE),
        (1, common_pb2.CHANGE_TYPE_CREATED, res.ALLERGY_SEVERITY_UNSPECIFIED),
    ]
    first_page = await calls.revisions(holder, created.entry_id, page_size=1)
    second_page = await calls.revisions(holder, created.entry_id, page_size=1, page_token=first_page.next_page_token)
    assert [r.version for r in (*first_page.revisions, *second_page.revisions)] == [2, 1]
    assert second_page.next_page_token == ""
    logged = await calls.access_log(holder_id, created.entry_id)
    assert (logged[0].operation, logged[0].action) == ("ListProfileEntryRevisions", consent_res.ACTION_READ)
    assert any(e.operation == "UpdateProfileEntry" and e.action == consent_res.ACTION_UPDATE for e in logged)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        pytest.param("source", "FIELD_NOT_UPDATABLE", id="source"),
        pytest.param("version", "FIELD_NOT_UPDATABLE", id="version"),
        pytest.param("history.description", "KIND_VALUE_MISMATCH", id="other-kinds-value"),
        pytest.param("allergy.unknown_field", "FIELD_INVALID", id="unknown"),
    ],
)
async def test_update_mask_naming_a_fixed_or_foreign_field_is_invalid_argument(
    calls: Calls, path: str, reason: str
) -> None:
    holder_id = new_holder()
    created = await calls.create(as_holder(holder_id), holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy())
    error = await failure(calls.update(as_holder(holder_id), res.ProfileEntry(entry_id=created.entry_id), path))
    assert (error.code, error.reason, error.metadata.get("field")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        "update_mask",
    )
    assert (await calls.get(as_holder(holder_id), created.entry_id)).version == 1


async def test_a_deleted_entry_is_not_found_but_its_history_stays(calls: Calls) -> None:
    holder_id = new_holder()
    holder = as_holder(holder_id)
    created = await calls.create(holder, holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy())

    await calls.delete(holder, created.entry_id)

    error = await failure(calls.get(holder, created.entry_id))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "PROFILE_ENTRY_NOT_FOUND")
    assert (await calls.list(holder, holder_id)).total_size == 0
    history = await calls.revisions(holder, created.entry_id)
    assert [(r.version, r.change_type) for r in history.revisions] == [
        (2, common_pb2.CHANGE_TYPE_DELETED),
        (1, common_pb2.CHANGE_TYPE_CREATED),
    ]
    again = await failure(calls.delete(holder, created.entry_id))
    assert again.code == grpc.StatusCode.NOT_FOUND
    unknown = await failure(calls.get(holder, str(uuid.uuid4())))
    assert unknown.code == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------- the derived BMI


async def bmi_entries(calls: Calls, holder_id: str) -> list[res.ProfileEntry]:
    page = await calls.list(as_holder(holder_id), holder_id, measurement_type=T.MEASUREMENT_TYPE_BMI)
    return list(page.entries)


async def test_the_bmi_follows_the_latest_weight_and_height(calls: Calls) -> None:
    holder_id = new_holder()
    holder = as_holder(holder_id)
    earlier = NOW - dt.timedelta(days=30)
    await calls.create(holder, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(70, earlier))
    assert await bmi_entries(calls, holder_id) == []  # no height yet
    tall = await calls.create(holder, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **height(175, earlier))

    (bmi,) = await bmi_entries(calls, holder_id)
    assert (bmi.source, bmi.kind, bmi.version) == (res.ENTRY_SOURCE_DERIVED, K.PROFILE_ENTRY_KIND_MEASUREMENT, 1)
    assert (bmi.measurement.type, bmi.measurement.value, bmi.measurement.unit, bmi.measurement.derived) == (
        T.MEASUREMENT_TYPE_BMI,
        22.9,
        "kg/m2",
        True,
    )

    heavier = await calls.create(holder, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(80, NOW))
    (bmi,) = await bmi_entries(calls, holder_id)
    assert (bmi.measurement.value, bmi.version, bmi.measurement.measure_time) == (26.1, 2, at(NOW))

    # An older weight entered late is not the latest.
    await calls.create(
        holder, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(60, earlier - dt.timedelta(days=1))
    )
    assert [b.measurement.value for b in await bmi_entries(calls, holder_id)] == [26.1]

    await calls.delete(holder, heavier.entry_id)
    (bmi,) = await bmi_entries(calls, holder_id)
    assert (bmi.measurement.value, bmi.version) == (22.9, 3)

    read_only = await failure(
        calls.update(holder, res.ProfileEntry(entry_id=bmi.entry_id), "hidden_from_professionals")
    )
    assert (read_only.code, read_only.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "DERIVED_ENTRY_READ_ONLY")

    await calls.delete(holder, tall.entry_id)
    assert await bmi_entries(calls, holder_id) == []
    history = await calls.revisions(holder, bmi.entry_id)
    assert [(r.change_type, r.entry.measurement.value) for r in history.revisions] == [
        (common_pb2.CHANGE_TYPE_DELETED, 22.9),
        (common_pb2.CHANGE_TYPE_UPDATED, 22.9),
        (common_pb2.CHANGE_TYPE_UPDATED, 26.1),
        (common_pb2.CHANGE_TYPE_CREATED, 22.9),
    ]


async def test_the_bmi_follows_an_updated_input_and_is_hidden_when_an_input_is(calls: Calls) -> None:
    holder_id = new_holder()
    holder = as_holder(holder_id)
    await calls.grant_care_team(holder_id, COLLEAGUE.subject)
    heavy = await calls.create(holder, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(70))
    tall = await calls.create(holder, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **height(175))

    await calls.update(holder, res.ProfileEntry(entry_id=tall.entry_id, **height(180)), "measurement.value")
    (bmi,) = await bmi_entries(calls, holder_id)
    assert (bmi.measurement.value, bmi.version, bmi.hidden_from_professionals) == (21.6, 2, False)

    await calls.update(
        holder, res.ProfileEntry(entry_id=heavy.entry_id, hidden_from_professionals=True), "hidden_from_professionals"
    )
    (bmi,) = await bmi_entries(calls, holder_id)
    assert (bmi.measurement.value, bmi.version, bmi.hidden_from_professionals) == (21.6, 3, True)
    # Weight and BMI are hidden from the colleague; the height is not.
    seen = await calls.list(COLLEAGUE, holder_id)
    assert [e.entry_id for e in seen.entries] == [tall.entry_id]


# ---------------------------------------------------------------- consent


async def test_another_holder_is_denied_with_consents_reason_and_the_refusal_is_logged(calls: Calls) -> None:
    holder_id, stranger = new_holder(), as_holder(new_holder())
    created = await calls.create(as_holder(holder_id), holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy())

    for call in (
        calls.get(stranger, created.entry_id),
        calls.list(stranger, holder_id),
        calls.revisions(stranger, created.entry_id),
        calls.create(stranger, holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy("Arachide")),
        calls.update(stranger, res.ProfileEntry(entry_id=created.entry_id), "hidden_from_professionals"),
        calls.delete(stranger, created.entry_id),
    ):
        error = await failure(call)
        assert error.code == grpc.StatusCode.PERMISSION_DENIED

    denied = [e for e in await calls.access_log(holder_id) if e.outcome == res.ACCESS_OUTCOME_DENIED]
    assert [(e.operation, e.reason_code) for e in reversed(denied)] == [
        ("GetProfileEntry", "ACCESS_DENIED_NOT_AUTHORISED"),
        ("ListProfileEntries", "ACCESS_DENIED_NOT_AUTHORISED"),
        ("ListProfileEntryRevisions", "ACCESS_DENIED_NOT_AUTHORISED"),
        ("CreateProfileEntry", "ACCESS_DENIED_NOT_AUTHORISED"),
        # Refused by dossier before consent is asked: a stranger is neither the author nor the holder.
        ("UpdateProfileEntry", "NOT_THE_AUTHOR"),
        ("DeleteProfileEntry", "NOT_THE_AUTHOR"),
    ]
    assert all(
        e.item_kind == consent_res.ITEM_KIND_PROFILE_ENTRY and e.actor.subject == stranger.subject for e in denied
    )


async def test_a_professional_feeds_the_profile_but_reads_it_only_in_the_care_team(calls: Calls) -> None:
    holder_id = new_holder()
    written = await calls.create(DOCTOR, holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy("Latex"))
    assert (written.source, written.recorded_by.rpps) == (res.ENTRY_SOURCE_PROFESSIONAL, DOCTOR.rpps)

    outside = await failure(calls.list(DOCTOR, holder_id))
    assert (outside.code, outside.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACCESS_DENIED_NOT_AUTHORISED")

    # A nurse records measurements (care follow-up) but not allergies (the medical summary).
    matrix = await failure(calls.create(NURSE, holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy("Iode")))
    assert (matrix.code, matrix.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACCESS_DENIED_MATRIX")
    measured = await calls.create(NURSE, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(64))

    await calls.grant_care_team(holder_id, DOCTOR.subject)
    page = await calls.list(DOCTOR, holder_id)
    assert {e.entry_id for e in page.entries} == {written.entry_id, measured.entry_id} and page.total_size == 2
    listed = [e for e in await calls.access_log(holder_id) if e.operation == "ListProfileEntries"]
    assert [(e.outcome, e.action) for e in listed] == [
        (res.ACCESS_OUTCOME_ALLOWED, consent_res.ACTION_LIST),
        (res.ACCESS_OUTCOME_DENIED, consent_res.ACTION_LIST),
    ]


async def test_hidden_entries_are_shown_only_to_their_author_and_the_treating_physician(
    calls: Calls, consent_pool: asyncpg.Pool
) -> None:
    holder_id = new_holder()
    await consent_pool.execute(
        "INSERT INTO treating_physicians (holder_id, professional_id, occur_time) VALUES ($1, $2, now())",
        holder_id,
        TREATING.subject,
    )
    for pro in (DOCTOR, COLLEAGUE):
        await calls.grant_care_team(holder_id, pro.subject)
    hidden = await calls.create(
        DOCTOR,
        holder_id,
        K.PROFILE_ENTRY_KIND_MEDICAL_HISTORY,
        hidden=True,
        history=res.HistoryItem(description="Dépression"),
    )
    shown = await calls.create(as_holder(holder_id), holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy())

    async def visible_to(principal: Principal) -> tuple[set[str], int]:
        page = await calls.list(principal, holder_id)
        return {e.entry_id for e in page.entries}, page.total_size

    everything = ({hidden.entry_id, shown.entry_id}, 2)
    assert await visible_to(DOCTOR) == everything  # the author
    assert await visible_to(TREATING) == everything
    assert await visible_to(as_holder(holder_id)) == everything
    assert await visible_to(COLLEAGUE) == ({shown.entry_id}, 1)  # not even counted
    error = await failure(calls.get(COLLEAGUE, hidden.entry_id))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACCESS_DENIED_HIDDEN_FROM_PROFESSIONALS")
    assert (await calls.get(TREATING, hidden.entry_id)).history.description == "Dépression"

    # The holder hides an entry from professionals: the colleague loses it too.
    await calls.update(
        as_holder(holder_id),
        res.ProfileEntry(entry_id=shown.entry_id, hidden_from_professionals=True),
        "hidden_from_professionals",
    )
    assert await visible_to(COLLEAGUE) == (set(), 0)


async def test_who_changes_an_entry_and_how_consent_is_asked(calls: Calls) -> None:
    holder_id = new_holder()
    holder = as_holder(holder_id)
    written = await calls.create(DOCTOR, holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy("Latex"))

    content = await failure(
        calls.update(
            holder, res.ProfileEntry(entry_id=written.entry_id, allergy=res.Allergy(reaction="x")), "allergy.reaction"
        )
    )
    assert (content.code, content.reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_YOURS")
    other = await failure(
        calls.update(COLLEAGUE, res.ProfileEntry(entry_id=written.entry_id), "hidden_from_professionals")
    )
    assert (other.code, other.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_THE_AUTHOR")

    hidden = await calls.update(
        holder, res.ProfileEntry(entry_id=written.entry_id, hidden_from_professionals=True), "hidden_from_professionals"
    )
    assert (hidden.version, hidden.hidden_from_professionals, hidden.recorded_by.subject) == (2, True, holder_id)
    assert hidden.source == res.ENTRY_SOURCE_PROFESSIONAL  # still the doctor's entry

    # The author corrects what they wrote under their right to feed the record (no care-team grant needed).
    corrected = await calls.update(
        DOCTOR, res.ProfileEntry(entry_id=written.entry_id, allergy=res.Allergy(reaction="eczéma")), "allergy.reaction"
    )
    assert (corrected.version, corrected.allergy.reaction, corrected.allergy.substance) == (3, "eczéma", "Latex")
    await calls.delete(DOCTOR, written.entry_id)
    logged = [
        (e.operation, e.action, e.reason_code) for e in reversed(await calls.access_log(holder_id, written.entry_id))
    ]
    assert logged == [
        ("CreateProfileEntry", consent_res.ACTION_CREATE, ""),
        ("UpdateProfileEntry", consent_res.ACTION_UPDATE, "FIELD_NOT_YOURS"),
        ("UpdateProfileEntry", consent_res.ACTION_UPDATE, "NOT_THE_AUTHOR"),
        ("UpdateProfileEntry", consent_res.ACTION_UPDATE, ""),  # the holder's side
        ("UpdateProfileEntry", consent_res.ACTION_CREATE, ""),  # the author
        ("DeleteProfileEntry", consent_res.ACTION_CREATE, ""),
    ]


async def test_an_app_writes_and_reads_only_with_the_holders_consent(calls: Calls) -> None:
    holder_id = new_holder()
    app = app_for(holder_id)
    refused = await failure(calls.create(app, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(70)))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACCESS_DENIED_NO_APP_CONSENT")

    await calls.consent_to_app(holder_id, app.client_id)
    created = await calls.create(app, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(70))
    assert (created.source, created.recorded_by.client_id) == (res.ENTRY_SOURCE_APP, app.client_id)
    page = await calls.list(app, holder_id, source=res.ENTRY_SOURCE_APP)
    assert [e.entry_id for e in page.entries] == [created.entry_id]


# ---------------------------------------------------------------- listing


async def test_pages_come_newest_first_with_total_size_and_opaque_tokens(calls: Calls) -> None:
    holder_id = new_holder()
    holder = as_holder(holder_id)
    created = [
        await calls.create(
            holder, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(60 + i, NOW - dt.timedelta(days=i))
        )
        for i in range(5)
    ]

    seen: list[str] = []
    token = ""
    sizes = []
    for _ in range(5):
        page = await calls.list(
            holder, holder_id, kinds=[K.PROFILE_ENTRY_KIND_MEASUREMENT], page_size=2, page_token=token
        )
        seen += [e.entry_id for e in page.entries]
        sizes.append((len(page.entries), page.total_size))
        token = page.next_page_token
        if not token:
            break

    assert seen == [e.entry_id for e in created]  # measured on days 0, -1, … -4
    assert sizes == [(2, 5), (2, 5), (1, 5)]
    first = await calls.list(holder, holder_id, kinds=[K.PROFILE_ENTRY_KIND_MEASUREMENT], page_size=2)
    for bad in ("not-a-token!", "e30", first.next_page_token):
        # The last one was made for another query (no kind filter here).
        error = await failure(calls.list(holder, holder_id, page_size=2, page_token=bad))
        assert (error.code, error.reason, error.metadata.get("field")) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "PAGE_TOKEN_INVALID",
            "page_token",
        )


async def test_filters_narrow_the_listing(calls: Calls) -> None:
    holder_id = new_holder()
    holder = as_holder(holder_id)
    old = NOW - dt.timedelta(days=100)
    heavy = await calls.create(holder, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **weight(80, old))
    tall = await calls.create(holder, holder_id, K.PROFILE_ENTRY_KIND_MEASUREMENT, **height(180, NOW))
    latex = await calls.create(DOCTOR, holder_id, K.PROFILE_ENTRY_KIND_ALLERGY, **allergy("Latex"))
    vaccine = await calls.create(
        holder,
        holder_id,
        K.PROFILE_ENTRY_KIND_VACCINATION,
        vaccination=res.Vaccination(
            vaccine="DTCaP", administration_date=common_pb2.Date(year=2020, month=3, day=1), lot_number="AB12"
        ),
    )
    (bmi,) = await bmi_entries(calls, holder_id)

    async def ids(**fields: Any) -> list[str]:
        return [e.entry_id for e in (await calls.list(holder, holder_id, **fields)).entries]

    assert set(await ids()) == {heavy.entry_id, tall.entry_id, latex.entry_id, vaccine.entry_id, bmi.entry_id}
    assert set(await ids(kinds=[K.PROFILE_ENTRY_KIND_ALLERGY, K.PROFILE_ENTRY_KIND_VACCINATION])) == {
        latex.entry_id,
        vaccine.entry_id,
    }
    assert await ids(measurement_type=T.MEASUREMENT_TYPE_WEIGHT) == [heavy.entry_id]
    assert await ids(source=res.ENTRY_SOURCE_PROFESSIONAL) == [latex.entry_id]
    assert await ids(source=res.ENTRY_SOURCE_DERIVED) == [bmi.entry_id]
    assert await ids(end_time=at(NOW - dt.timedelta(days=1))) == [heavy.entry_id]  # measured 100 days ago
    # The BMI is measured when its latest input was: now, like the height.
    recent = await ids(start_time=at(NOW - dt.timedelta(days=1)), kinds=[K.PROFILE_ENTRY_KIND_MEASUREMENT])
    assert sorted(recent) == sorted([tall.entry_id, bmi.entry_id])
    error = await failure(
        calls.list(holder, holder_id, kinds=[K.PROFILE_ENTRY_KIND_ALLERGY], measurement_type=T.MEASUREMENT_TYPE_WEIGHT)
    )
    assert (error.code, error.metadata.get("field")) == (grpc.StatusCode.INVALID_ARGUMENT, "measurement_type")
