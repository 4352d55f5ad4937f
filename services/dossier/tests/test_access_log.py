"""The holder's access log over gRPC: hash chain, verification, tampering, listing, rights, alerts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import asyncpg
import grpc
import pytest

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import resources_pb2 as consent_res
from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import events_pb2
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier import access_log
from carnet_dossier.access_log import Entry, NewEntry, chain_hash
from carnet_dossier.seed import make_pdf
from carnet_kit.auth import Principal
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import TokenFactory

LAB_REPORT = "11502-2"
ALERT = "carnet.dossier.v1.AccessAlertEvent"
TIMEOUT = 15.0


def lab(organisation: str = "org-lab") -> Principal:
    return Principal(
        subject="lab-x", role="client", client_id="lab-x", organisation_id=organisation, scopes=("documents.deposit",)
    )


def holder(holder_id: str) -> Principal:
    return Principal(subject=holder_id, role="holder")


class Calls:
    def __init__(self, stub: pb_grpc.DossierServiceStub, tokens: TokenFactory) -> None:
        self.stub = stub
        self.tokens = tokens

    def auth(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens.mint(principal)}"),)

    async def deposit(self, principal: Principal, holder_id: str, label: str = "") -> res.Document:
        content = make_pdf("Compte rendu", [label or uuid.uuid4().hex])
        messages = [
            pb.DepositDocumentRequest(
                metadata=res.DocumentMetadata(
                    unique_id=f"log-{uuid.uuid4().hex}",
                    holder_id=holder_id,
                    type_code=LAB_REPORT,
                    format=res.DOCUMENT_FORMAT_PDF,
                    title=f"Bilan {label}",
                    author=res.Author(organisation_id=principal.organisation_id, display_name="Laboratoire"),
                )
            ),
            pb.DepositDocumentRequest(chunk=content),
        ]
        document: res.Document = await self.stub.DepositDocument(
            iter(messages), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return document

    async def read(self, principal: Principal, document_id: str) -> None:
        await self.stub.GetDocument(
            pb.GetDocumentRequest(document_id=document_id), metadata=self.auth(principal), timeout=TIMEOUT
        )

    async def entries(self, principal: Principal, **fields: Any) -> pb.ListAccessLogEntriesResponse:
        response: pb.ListAccessLogEntriesResponse = await self.stub.ListAccessLogEntries(
            pb.ListAccessLogEntriesRequest(**fields), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return response

    async def verify(self, principal: Principal, holder_id: str) -> pb.VerifyAccessLogResponse:
        response: pb.VerifyAccessLogResponse = await self.stub.VerifyAccessLog(
            pb.VerifyAccessLogRequest(holder_id=holder_id), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return response


async def failure(call: Awaitable[Any]) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


@pytest.fixture
def calls(dossier_stub: pb_grpc.DossierServiceStub, token_factory: TokenFactory) -> Calls:
    return Calls(dossier_stub, token_factory)


async def a_holder_with_three_entries(calls: Calls) -> tuple[str, str]:
    holder_id = str(uuid.uuid4())
    document = await calls.deposit(lab(), holder_id, "a")  # 1: the deposit
    await calls.read(holder(holder_id), document.document_id)  # 2: the holder reads it
    await calls.read(holder(holder_id), document.document_id)  # 3: and again
    return holder_id, document.document_id


async def test_every_access_is_chained_and_the_holder_lists_them_newest_first(calls: Calls) -> None:
    holder_id, document_id = await a_holder_with_three_entries(calls)
    page = await calls.entries(holder(holder_id))
    assert [entry.sequence for entry in page.entries] == [3, 2, 1]
    assert page.total_size == 3
    oldest = page.entries[-1]
    assert (oldest.action, oldest.operation, oldest.service) == (
        consent_res.ACTION_CREATE,
        "DepositDocument",
        "dossier",
    )
    assert (oldest.actor.role, oldest.actor.organisation_id) == (common_pb2.ROLE_CLIENT, "org-lab")
    assert (oldest.item_kind, oldest.item_id, oldest.item_label) == (
        consent_res.ITEM_KIND_DOCUMENT,
        document_id,
        "Bilan a",
    )
    assert oldest.outcome == res.ACCESS_OUTCOME_ALLOWED
    assert oldest.previous_hash == ""
    newest, middle = page.entries[0], page.entries[1]
    assert newest.actor.subject == holder_id and newest.operation == "GetDocument"
    assert newest.previous_hash == middle.entry_hash and middle.previous_hash == oldest.entry_hash
    assert len({e.entry_hash for e in page.entries}) == 3 and all(len(e.entry_hash) == 64 for e in page.entries)

    verdict = await calls.verify(holder(holder_id), holder_id)
    assert (verdict.intact, verdict.entry_count, verdict.head_hash) == (True, 3, newest.entry_hash)
    assert (verdict.first_broken_sequence, verdict.failure_reason) == (0, "")


TAMPERING = {
    "field-changed": (
        "UPDATE dossier.access_log SET item_label = 'autre' WHERE holder_id = $1 AND sequence = 2",
        2,
        "HASH_MISMATCH",
    ),
    "actor-changed": (
        'UPDATE dossier.access_log SET actor = actor || \'{"subject": "quelqu-un"}\' WHERE holder_id = $1 AND sequence = 1',
        1,
        "HASH_MISMATCH",
    ),
    "middle-removed": ("DELETE FROM dossier.access_log WHERE holder_id = $1 AND sequence = 2", 2, "SEQUENCE_GAP"),
    "newest-removed": ("DELETE FROM dossier.access_log WHERE holder_id = $1 AND sequence = 3", 3, "SEQUENCE_GAP"),
    "time-changed": (
        "UPDATE dossier.access_log SET created_at = created_at - interval '1 day' WHERE holder_id = $1 AND sequence = 3",
        3,
        "HASH_MISMATCH",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_a_tampered_or_removed_entry_is_found(calls: Calls, dossier_pool: asyncpg.Pool, case: str) -> None:
    holder_id, _ = await a_holder_with_three_entries(calls)
    statement, broken, reason = TAMPERING[case]
    await dossier_pool.execute(statement, uuid.UUID(holder_id))
    verdict = await calls.verify(holder(holder_id), holder_id)
    assert verdict.intact is False
    assert (verdict.first_broken_sequence, verdict.failure_reason) == (broken, reason)
    assert verdict.entry_count == broken - 1


async def test_an_entry_rewritten_with_a_recomputed_hash_breaks_the_next_link(
    calls: Calls, dossier_pool: asyncpg.Pool
) -> None:
    holder_id, _ = await a_holder_with_three_entries(calls)
    row = await dossier_pool.fetchrow(
        "SELECT * FROM dossier.access_log WHERE holder_id = $1 AND sequence = 2", uuid.UUID(holder_id)
    )
    forged = Entry.from_row(row)
    forged = Entry(**{**forged.__dict__, "item_label": "rien vu"})
    await dossier_pool.execute(
        "UPDATE dossier.access_log SET item_label = $2, entry_hash = $3 WHERE entry_id = $1",
        forged.entry_id,
        forged.item_label,
        chain_hash(forged),
    )
    verdict = await calls.verify(holder(holder_id), holder_id)
    assert (verdict.intact, verdict.first_broken_sequence, verdict.failure_reason) == (
        False,
        3,
        "PREVIOUS_HASH_MISMATCH",
    )


async def test_concurrent_accesses_get_consecutive_sequences(calls: Calls, dossier_pool: asyncpg.Pool) -> None:
    holder_id = str(uuid.uuid4())
    document = await calls.deposit(lab(), holder_id)
    await asyncio.gather(*(calls.read(holder(holder_id), document.document_id) for _ in range(20)))
    sequences = [
        row["sequence"]
        for row in await dossier_pool.fetch(
            "SELECT sequence FROM dossier.access_log WHERE holder_id = $1 ORDER BY sequence", uuid.UUID(holder_id)
        )
    ]
    assert sequences == list(range(1, 22))
    verdict = await calls.verify(holder(holder_id), holder_id)
    assert (verdict.intact, verdict.entry_count) == (True, 21)


async def test_filters_and_pages(calls: Calls) -> None:
    holder_id, _ = await a_holder_with_three_entries(calls)
    reads = await calls.entries(holder(holder_id), action=consent_res.ACTION_READ)
    assert [e.sequence for e in reads.entries] == [3, 2] and reads.total_size == 2
    by_lab = await calls.entries(holder(holder_id), role=common_pb2.ROLE_CLIENT, organisation_id="org-lab")
    assert [e.sequence for e in by_lab.entries] == [1]
    assert (await calls.entries(holder(holder_id), outcome=res.ACCESS_OUTCOME_DENIED)).total_size == 0
    first = await calls.entries(holder(holder_id), page_size=2)
    assert [e.sequence for e in first.entries] == [3, 2] and first.next_page_token
    second = await calls.entries(holder(holder_id), page_size=2, page_token=first.next_page_token)
    assert [e.sequence for e in second.entries] == [1] and second.next_page_token == ""
    bad = await failure(calls.entries(holder(holder_id), page_token="not-a-token"))
    assert (bad.code, bad.reason, bad.metadata.get("field")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PAGE_TOKEN_INVALID",
        "page_token",
    )


async def test_a_refused_access_is_logged_as_denied(calls: Calls) -> None:
    holder_id, document_id = await a_holder_with_three_entries(calls)
    stranger = Principal(subject=str(uuid.uuid4()), role="professional", profession_code="10", rpps="10000000025")
    refused = await failure(calls.read(stranger, document_id))
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    page = await calls.entries(holder(holder_id), outcome=res.ACCESS_OUTCOME_DENIED)
    [denied] = page.entries
    assert (denied.sequence, denied.actor.subject, denied.reason_code) == (4, stranger.subject, refused.reason)
    assert (await calls.verify(holder(holder_id), holder_id)).intact


async def test_only_the_holder_and_those_acting_for_them_read_the_log(calls: Calls) -> None:
    holder_id, _ = await a_holder_with_three_entries(calls)
    doctor = Principal(subject=str(uuid.uuid4()), role="professional", profession_code="10", rpps="10000000025")
    for caller, reason in (
        (doctor, "ACCESS_LOG_HOLDER_ONLY"),
        (Principal(subject="agent-1", role="operator"), "ACCESS_LOG_HOLDER_ONLY"),
        (lab(), "ACCESS_LOG_HOLDER_ONLY"),
    ):
        error = await failure(calls.entries(caller, holder_id=holder_id))
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, reason)
    other_holder = await failure(calls.entries(holder(str(uuid.uuid4())), holder_id=holder_id))
    assert other_holder.code == grpc.StatusCode.PERMISSION_DENIED
    # An operator checks the chain without reading it.
    verdict = await calls.verify(Principal(subject="agent-1", role="operator"), holder_id)
    assert (verdict.intact, verdict.entry_count) == (True, 3)
    refused = await failure(calls.verify(doctor, holder_id))
    assert refused.reason == "CALLER_NOT_ALLOWED"


async def test_services_record_accesses_they_serve_and_obligations_raise_alerts(
    calls: Calls, dossier_pool: asyncpg.Pool
) -> None:
    holder_id = str(uuid.uuid4())
    urgentist = Principal(subject="dr-urgences", role="professional", profession_code="10", rpps="10000000033")
    request = pb.CreateAccessLogEntryRequest(
        entry=res.AccessLogEntry(
            holder_id=holder_id,
            actor=urgentist.to_actor(),
            action=consent_res.ACTION_BREAK_GLASS_READ,
            operation="C-MOVE",
            service="claimed-by-the-request",
            item_kind=consent_res.ITEM_KIND_IMAGING_STUDY,
            item_id="1.2.3.4",
            outcome=res.ACCESS_OUTCOME_ALLOWED,
            reason_code="ALLOWED_BREAK_GLASS",
            break_glass_reason="Patient inconscient",
        ),
        obligations=[
            consent_res.OBLIGATION_LOG_ACCESS,
            consent_res.OBLIGATION_NOTIFY_HOLDER,
            consent_res.OBLIGATION_NOTIFY_TREATING_PHYSICIAN,
        ],
    )
    imaging = Principal(subject="imaging", role="service")
    recorded = await calls.stub.CreateAccessLogEntry(request, metadata=calls.auth(imaging), timeout=TIMEOUT)
    assert (recorded.sequence, recorded.service, recorded.operation) == (1, "imaging", "C-MOVE")
    assert recorded.entry_hash and recorded.previous_hash == ""
    rows = await dossier_pool.fetch(
        "SELECT payload FROM dossier.outbox WHERE event_type = $1 AND payload->>'holder_id' = $2", ALERT, holder_id
    )
    [alert] = [row["payload"] for row in rows]
    assert alert["kind"] == events_pb2.AccessAlertKind.Name(events_pb2.ACCESS_ALERT_KIND_BREAK_GLASS)
    assert (alert["notify_holder"], alert["notify_treating_physician"]) == (True, True)
    assert (alert["reason"], alert["access_log_entry_id"]) == ("Patient inconscient", recorded.entry_id)

    as_holder = await failure(
        calls.stub.CreateAccessLogEntry(request, metadata=calls.auth(holder(holder_id)), timeout=TIMEOUT)
    )
    assert (as_holder.code, as_holder.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
    without_action = pb.CreateAccessLogEntryRequest()
    without_action.CopyFrom(request)
    without_action.entry.action = consent_res.ACTION_UNSPECIFIED
    bad = await failure(calls.stub.CreateAccessLogEntry(without_action, metadata=calls.auth(imaging), timeout=TIMEOUT))
    assert (bad.code, bad.metadata.get("field")) == (grpc.StatusCode.INVALID_ARGUMENT, "entry.action")


async def test_the_first_access_by_a_new_organisation_raises_one_alert(
    calls: Calls, dossier_pool: asyncpg.Pool
) -> None:
    holder_id = str(uuid.uuid4())
    await calls.deposit(lab("org-a"), holder_id)
    await calls.deposit(lab("org-a"), holder_id)
    await calls.deposit(lab("org-b"), holder_id)
    rows = await dossier_pool.fetch(
        "SELECT payload FROM dossier.outbox WHERE event_type = $1 AND payload->>'holder_id' = $2 ORDER BY id",
        ALERT,
        holder_id,
    )
    alerts = [row["payload"] for row in rows]
    assert [(a["kind"], a["actor"]["organisation_id"]) for a in alerts] == [
        ("ACCESS_ALERT_KIND_NEW_ORGANISATION", "org-a"),
        ("ACCESS_ALERT_KIND_NEW_ORGANISATION", "org-b"),
    ]
    assert all(a["notify_holder"] and not a.get("notify_treating_physician") for a in alerts)


async def test_entries_written_before_the_chain_are_sealed_into_it(calls: Calls, dossier_pool: asyncpg.Pool) -> None:
    holder_id = uuid.uuid4()
    for n in range(3):
        await dossier_pool.execute(
            "INSERT INTO dossier.access_log (holder_id, actor, action, item_id, reason, outcome)"
            " VALUES ($1, $2, 'ACTION_READ', $3, '', 'allowed')",
            holder_id,
            {"subject": str(holder_id), "role": "ROLE_HOLDER"},
            f"old-{n}",
        )
    assert await access_log.seal_legacy_entries(dossier_pool) >= 3
    await access_log.append(
        dossier_pool,
        NewEntry(
            holder_id=holder_id, actor={"subject": "x", "role": "ROLE_HOLDER"}, action="ACTION_READ", outcome="allowed"
        ),
    )
    verdict = await calls.verify(holder(str(holder_id)), str(holder_id))
    assert (verdict.intact, verdict.entry_count) == (True, 4)
    page = await calls.entries(holder(str(holder_id)))
    assert [e.item_id for e in page.entries] == ["", "old-2", "old-1", "old-0"]
