"""The listing's fast paths give exactly what the generic ones gave: protos of documents,
timestamps, stored actors, and consent's answers for a page in one call."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from google.protobuf import json_format, timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import consent_service_pb2 as consent_pb
from carnet.consent.v1 import resources_pb2 as consent_res
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier.domain import Author, DocumentFormat
from carnet_dossier.peers import ConsentClient, ItemFacts
from carnet_dossier.protoconv import actor_proto, timestamp
from carnet_dossier.servicer import document_to_proto
from carnet_dossier.store import DocumentRecord
from carnet_kit.auth import Principal

PARIS = dt.timezone(dt.timedelta(hours=2))


def _from_datetime(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 11, 23, 12, 34, 56, 789012, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 29, 2, 30, 0, 1, tzinfo=PARIS),
        dt.datetime(2026, 11, 23, 12, 34, 56, 789012),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(1901, 5, 6, 7, 8, 9, 10, tzinfo=PARIS),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    ],
)
def test_timestamp_is_the_value_from_datetime_gives(value: dt.datetime) -> None:
    assert timestamp(value) == _from_datetime(value)


def test_timestamp_of_none_stays_unset() -> None:
    assert timestamp(None) is None


@pytest.mark.parametrize(
    "stored",
    [
        {"subject": "client-lab", "role": "ROLE_CLIENT", "client_id": "lab", "scopes": ["documents.deposit"]},
        {"subject": "pro-1", "role": "ROLE_PROFESSIONAL", "profession_code": "10", "rpps": "10001234567"},
        {"subject": "holder-1", "role": 1},
        {"subject": "pro-2", "field_of_a_later_version": "x"},
        {"subject": "pro-3", "role": "ROLE_OF_A_LATER_VERSION"},
        {},
    ],
)
def test_stored_actor_reads_back_as_json_format_reads_it(stored: dict[str, Any]) -> None:
    assert actor_proto(stored) == json_format.ParseDict(stored, common_pb2.Actor(), ignore_unknown_fields=True)


def _record(**changes: Any) -> DocumentRecord:
    values: dict[str, Any] = {
        "document_id": uuid.uuid4(),
        "logical_id": uuid.uuid4(),
        "version": 2,
        "holder_id": uuid.uuid4(),
        "unique_id": "1.2.250.1.42",
        "type_code": "11502-2",
        "class_code": "LAB",
        "format": DocumentFormat.CDA_R2_STRUCTURED,
        "mime_type": DocumentFormat.CDA_R2_STRUCTURED.value,
        "title": "Compte rendu d'examens biologiques",
        "service_time": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        "author": Author("10001234567", "10", "org-1", "Dr Martin"),
        "hidden_from_professionals": True,
        "invisible_to_holder": False,
        "invisible_to_representatives": True,
        "holder_own": False,
        "status": "deprecated",
        "size_bytes": 12345,
        "sha256": "ab" * 32,
        "blob_key": "documents/x/y",
        "accession_number": "ACC-1",
        "replaces_document_id": uuid.uuid4(),
        "deposited_by": {"subject": "client-lab", "role": "ROLE_CLIENT", "client_id": "lab", "scopes": ["documents.deposit"]},
        "created_at": dt.datetime(2026, 1, 3, 4, 5, 6, 7, tzinfo=dt.UTC),
        "sealed": True,
        "replaced_by_document_id": uuid.uuid4(),
        "updated_at": dt.datetime(2026, 2, 3, 4, 5, 6, 7, tzinfo=dt.UTC),
    }
    values.update(changes)
    return DocumentRecord(**values)


def _reference(record: DocumentRecord) -> res.Document:
    """The proto as built before the listing's fast path: constructors, FromDatetime, ParseDict."""
    return res.Document(
        document_id=str(record.document_id),
        logical_id=str(record.logical_id),
        version=record.version,
        metadata=res.DocumentMetadata(
            unique_id=record.unique_id,
            holder_id=str(record.holder_id),
            type_code=record.type_code,
            class_code=record.class_code,
            format=res.DOCUMENT_FORMAT_CDA_R2_STRUCTURED if record.format is DocumentFormat.CDA_R2_STRUCTURED
            else res.DOCUMENT_FORMAT_PDF,
            title=record.title,
            service_time=_from_datetime(record.service_time) if record.service_time else None,
            author=res.Author(
                rpps=record.author.rpps,
                profession_code=record.author.profession_code,
                organisation_id=record.author.organisation_id,
                display_name=record.author.display_name,
            ),
            hidden_from_professionals=record.hidden_from_professionals,
            invisible_to_holder=record.invisible_to_holder,
            invisible_to_representatives=record.invisible_to_representatives,
            replaces_document_id=str(record.replaces_document_id or ""),
            accession_number=record.accession_number,
        ),
        status={"approved": res.DOCUMENT_STATUS_APPROVED, "deprecated": res.DOCUMENT_STATUS_DEPRECATED}[record.status],
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        create_time=_from_datetime(record.created_at),
        deposited_by=json_format.ParseDict(record.deposited_by, common_pb2.Actor(), ignore_unknown_fields=True),
        holder_own=record.holder_own,
        mime_type=record.mime_type,
        replaced_by_document_id=str(record.replaced_by_document_id or ""),
        update_time=_from_datetime(record.updated_at) if record.updated_at else None,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {
            "service_time": None,
            "updated_at": None,
            "replaces_document_id": None,
            "replaced_by_document_id": None,
            "status": "approved",
            "format": DocumentFormat.PDF,
            "mime_type": DocumentFormat.PDF.value,
            "accession_number": "",
            "author": Author(),
            "deposited_by": {"subject": "holder-1", "role": "ROLE_HOLDER"},
        },
    ],
)
def test_document_proto_is_what_the_generic_conversion_gave(changes: dict[str, Any]) -> None:
    record = _record(**changes)
    built = document_to_proto(record)
    assert built == _reference(record)
    assert built.metadata.HasField("service_time") == (record.service_time is not None)
    assert built.HasField("update_time") == (record.updated_at is not None)


class ConsentStub:
    """Stands in for consent's stub: a gate answer or not (a consent that predates it), and a Decide."""

    def __init__(self, *, answers_gate: bool, list_effect: int) -> None:
        self.answers_gate = answers_gate
        self.list_effect = list_effect
        self.calls: list[str] = []

    def _answer(self, effect: int) -> consent_pb.DecideResponse:
        allowed = effect == consent_res.EFFECT_ALLOW
        return consent_pb.DecideResponse(
            effect=effect,  # type: ignore[arg-type]
            reason_code="ALLOWED_HOLDER" if allowed else "ACCESS_DENIED_NOT_AUTHORISED",
            obligations=[consent_res.OBLIGATION_LOG_ACCESS] if allowed else [],
            access_matrix_version="1",
        )

    async def BatchDecide(self, request: consent_pb.BatchDecideRequest) -> consent_pb.BatchDecideResponse:
        self.calls.append("BatchDecide")
        assert request.gate.action == consent_res.ACTION_LIST
        response = consent_pb.BatchDecideResponse(
            decisions=[self._answer(consent_res.EFFECT_ALLOW) for _ in request.items]
        )
        if self.answers_gate:
            response.gate.CopyFrom(self._answer(self.list_effect))
            if self.list_effect != consent_res.EFFECT_ALLOW:
                del response.decisions[:]
        return response

    async def Decide(self, request: consent_pb.DecideRequest) -> consent_pb.DecideResponse:
        self.calls.append("Decide")
        assert request.action == consent_res.ACTION_LIST
        return self._answer(self.list_effect)


def _consent(stub: ConsentStub) -> ConsentClient:
    client = ConsentClient.__new__(ConsentClient)
    client._stub = stub  # type: ignore[assignment]
    return client


async def _decide_page(client: ConsentClient) -> tuple[Any, list[Any]]:
    holder = Principal(subject=str(uuid.uuid4()), role="holder")
    return await client.decide_page(
        holder,
        holder.subject,
        consent_res.ACTION_LIST,
        ItemFacts(kind=consent_res.ITEM_KIND_SPACE),
        consent_res.ACTION_READ,
        [ItemFacts(kind=consent_res.ITEM_KIND_DOCUMENT, document_class="LAB")] * 3,
    )


@pytest.mark.parametrize("answers_gate", [True, False])
async def test_a_page_allowed_to_list_gets_a_decision_per_document(answers_gate: bool) -> None:
    stub = ConsentStub(answers_gate=answers_gate, list_effect=consent_res.EFFECT_ALLOW)
    opened, decisions = await _decide_page(_consent(stub))
    assert opened.allowed and opened.reason_code == "ALLOWED_HOLDER"
    assert [d.allowed for d in decisions] == [True, True, True]
    assert stub.calls == (["BatchDecide"] if answers_gate else ["BatchDecide", "Decide"])


@pytest.mark.parametrize("answers_gate", [True, False])
async def test_a_page_refused_to_list_gets_no_document_decision(answers_gate: bool) -> None:
    """A consent that predates the gate question is asked it on its own: a refusal is never missed."""
    stub = ConsentStub(answers_gate=answers_gate, list_effect=consent_res.EFFECT_DENY)
    opened, decisions = await _decide_page(_consent(stub))
    assert not opened.allowed and opened.reason_code == "ACCESS_DENIED_NOT_AUTHORISED"
    assert decisions == []
