"""Changes after the deposit: replace (version chain), metadata and visibility updates, announce, archive, delete."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import field_mask_pb2

from carnet.consent.v1 import resources_pb2 as consent_res
from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier.seed import make_pdf
from carnet_kit.auth import Principal
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import TokenFactory

LAB_REPORT = "11502-2"  # class LAB
DISCHARGE_LETTER = "11490-0"
CHANGED = "carnet.dossier.v1.DocumentChangedEvent"
TIMEOUT = 15.0


def lab(organisation: str = "org-lab") -> Principal:
    return Principal(
        subject=f"lab-{organisation}",
        role="client",
        client_id=f"lab-{organisation}",
        organisation_id=organisation,
        scopes=("documents.deposit",),
    )


def holder(holder_id: str) -> Principal:
    return Principal(subject=holder_id, role="holder")


async def failure(call: Awaitable[Any]) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


class Calls:
    def __init__(self, stub: pb_grpc.DossierServiceStub, tokens: TokenFactory) -> None:
        self.stub = stub
        self.tokens = tokens

    def auth(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens.mint(principal)}"),)

    async def deposit(self, principal: Principal, holder_id: str, title: str = "Bilan", **fields: Any) -> res.Document:
        metadata = res.DocumentMetadata(
            unique_id=f"chg-{uuid.uuid4().hex}",
            holder_id=holder_id,
            type_code=LAB_REPORT,
            format=res.DOCUMENT_FORMAT_PDF,
            title=title,
            author=res.Author(organisation_id=principal.organisation_id, display_name="Laboratoire"),
            **fields,
        )
        messages = [
            pb.DepositDocumentRequest(metadata=metadata),
            pb.DepositDocumentRequest(chunk=make_pdf(title, [uuid.uuid4().hex])),
        ]
        document: res.Document = await self.stub.DepositDocument(
            iter(messages), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return document

    async def get(self, principal: Principal, document_id: str) -> res.Document:
        document: res.Document = await self.stub.GetDocument(
            pb.GetDocumentRequest(document_id=document_id), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return document

    async def listing(self, principal: Principal, **fields: Any) -> list[str]:
        response = await self.stub.ListDocuments(
            pb.ListDocumentsRequest(**fields), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return [document.document_id for document in response.documents]

    async def update(self, principal: Principal, document_id: str, paths: list[str], **values: Any) -> res.Document:
        document: res.Document = await self.stub.UpdateDocumentMetadata(
            pb.UpdateDocumentMetadataRequest(
                document_id=document_id,
                metadata=res.DocumentMetadata(**values),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            metadata=self.auth(principal),
            timeout=TIMEOUT,
        )
        return document

    async def announce(self, principal: Principal, document_id: str) -> res.Document:
        document: res.Document = await self.stub.AnnounceDocument(
            pb.AnnounceDocumentRequest(document_id=document_id), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return document

    async def archive(self, principal: Principal, document_id: str) -> res.Document:
        document: res.Document = await self.stub.ArchiveDocument(
            pb.ArchiveDocumentRequest(document_id=document_id), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return document

    async def delete(self, principal: Principal, document_id: str, reason: str = "") -> None:
        await self.stub.DeleteDocument(
            pb.DeleteDocumentRequest(document_id=document_id, reason=reason),
            metadata=self.auth(principal),
            timeout=TIMEOUT,
        )


@pytest.fixture
def calls(dossier_stub: pb_grpc.DossierServiceStub, token_factory: TokenFactory) -> Calls:
    return Calls(dossier_stub, token_factory)


async def changes_of(pool: asyncpg.Pool, document_id: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT payload FROM dossier.outbox WHERE event_type = $1 AND payload->>'document_id' = $2 ORDER BY id",
        CHANGED,
        document_id,
    )
    return [row["payload"] for row in rows]


async def log_of(pool: asyncpg.Pool, holder_id: str) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT operation, action, reason FROM dossier.access_log WHERE holder_id = $1 ORDER BY sequence",
        uuid.UUID(holder_id),
    )
    return [(row["operation"], row["action"], row["reason"]) for row in rows]


async def test_a_replacement_is_the_next_version_and_deprecates_the_previous(
    calls: Calls, dossier_pool: asyncpg.Pool
) -> None:
    holder_id = str(uuid.uuid4())
    first = await calls.deposit(lab(), holder_id, "Bilan v1")
    second = await calls.deposit(lab(), holder_id, "Bilan v2", replaces_document_id=first.document_id)
    assert (second.version, second.logical_id) == (2, first.logical_id)
    assert second.metadata.replaces_document_id == first.document_id
    old = await calls.get(holder(holder_id), first.document_id)
    assert (old.status, old.replaced_by_document_id) == (res.DOCUMENT_STATUS_DEPRECATED, second.document_id)
    assert old.HasField("update_time")
    assert await calls.listing(holder(holder_id)) == [second.document_id]
    assert await calls.listing(holder(holder_id), status=res.DOCUMENT_STATUS_DEPRECATED) == [first.document_id]
    [replaced] = await changes_of(dossier_pool, first.document_id)
    assert (replaced["change"], replaced["replaced_by_document_id"]) == ("DOCUMENT_CHANGE_REPLACED", second.document_id)

    again = await failure(calls.deposit(lab(), holder_id, "Bilan v2 bis", replaces_document_id=first.document_id))
    assert (again.code, again.reason, again.metadata["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "DOCUMENT_NOT_CURRENT",
        "deprecated",
    )
    other_lab = await failure(
        calls.deposit(lab("org-autre"), holder_id, "Bilan", replaces_document_id=second.document_id)
    )
    assert (other_lab.code, other_lab.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_THE_AUTHOR")
    other_holder = await failure(
        calls.deposit(lab(), str(uuid.uuid4()), "Bilan", replaces_document_id=second.document_id)
    )
    assert (other_holder.code, other_holder.metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "metadata.replaces_document_id",
    )
    assert await calls.listing(holder(holder_id)) == [second.document_id]


async def test_the_author_and_the_holder_change_what_is_theirs(calls: Calls, dossier_pool: asyncpg.Pool) -> None:
    holder_id = str(uuid.uuid4())
    document = await calls.deposit(lab(), holder_id, "Compte rendu")
    updated = await calls.update(
        lab(), document.document_id, ["title", "type_code"], title="Lettre de sortie", type_code=DISCHARGE_LETTER
    )
    assert (updated.metadata.title, updated.metadata.type_code) == ("Lettre de sortie", DISCHARGE_LETTER)
    assert updated.metadata.class_code != "LAB"  # the new type's own class
    assert (updated.version, updated.logical_id) == (document.version, document.logical_id)
    hidden = await calls.update(
        holder(holder_id), document.document_id, ["hidden_from_professionals"], hidden_from_professionals=True
    )
    assert hidden.metadata.hidden_from_professionals is True
    not_theirs = await failure(calls.update(holder(holder_id), document.document_id, ["title"], title="Autre"))
    assert (not_theirs.code, not_theirs.reason, not_theirs.metadata["path"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "FIELD_NOT_YOURS",
        "title",
    )
    frozen = await failure(calls.update(lab(), document.document_id, ["format"]))
    assert (frozen.code, frozen.reason, frozen.metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_NOT_UPDATABLE",
        "update_mask",
    )
    stranger = await failure(calls.update(lab("org-autre"), document.document_id, ["title"], title="x"))
    assert stranger.reason == "FIELD_NOT_YOURS"
    bad_type = await failure(calls.update(lab(), document.document_id, ["type_code"], type_code="00000-0"))
    assert (bad_type.reason, bad_type.metadata["field"]) == ("UNKNOWN_TYPE_CODE", "metadata.type_code")
    assert [c["change"] for c in await changes_of(dossier_pool, document.document_id)] == [
        "DOCUMENT_CHANGE_METADATA_UPDATED",
        "DOCUMENT_CHANGE_METADATA_UPDATED",
    ]
    assert [(op, action) for op, action, _ in await log_of(dossier_pool, holder_id)][-2:] == [
        ("UpdateDocumentMetadata", "ACTION_CREATE"),  # the author writes under its right to feed the record
        ("UpdateDocumentMetadata", "ACTION_UPDATE"),
    ]


async def test_visibility_flags_keep_their_rules(calls: Calls) -> None:
    holder_id = str(uuid.uuid4())
    kept = await calls.deposit(lab(), holder_id, "Annonce", invisible_to_holder=True)
    conflict = await failure(
        calls.update(lab(), kept.document_id, ["hidden_from_professionals"], hidden_from_professionals=True)
    )
    assert (conflict.code, conflict.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "VISIBILITY_FLAGS_CONFLICT")

    secret = await calls.deposit(lab(), holder_id, "Contraception", invisible_to_representatives=True)
    parent = Principal(subject=str(uuid.uuid4()), role="representative", acting_for=holder_id)
    by_parent = await failure(
        calls.update(parent, secret.document_id, ["invisible_to_representatives"], invisible_to_representatives=False)
    )
    assert (by_parent.code, by_parent.reason) == (grpc.StatusCode.PERMISSION_DENIED, "FIELD_NOT_YOURS")
    revealed = await calls.update(
        holder(holder_id), secret.document_id, ["invisible_to_representatives"], invisible_to_representatives=False
    )
    assert revealed.metadata.invisible_to_representatives is False
    undo = await failure(
        calls.update(
            holder(holder_id), secret.document_id, ["invisible_to_representatives"], invisible_to_representatives=True
        )
    )
    assert (undo.code, undo.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REVEAL_IRREVERSIBLE")


async def test_the_author_announces_a_document_kept_from_the_holder(calls: Calls, dossier_pool: asyncpg.Pool) -> None:
    holder_id = str(uuid.uuid4())
    document = await calls.deposit(lab(), holder_id, "Résultat à annoncer", invisible_to_holder=True)
    hidden = await failure(calls.get(holder(holder_id), document.document_id))
    assert hidden.code == grpc.StatusCode.PERMISSION_DENIED
    by_holder = await failure(calls.announce(holder(holder_id), document.document_id))
    assert by_holder.reason == "NOT_THE_AUTHOR"
    announced = await calls.announce(lab(), document.document_id)
    assert announced.metadata.invisible_to_holder is False
    assert (await calls.get(holder(holder_id), document.document_id)).metadata.title == "Résultat à annoncer"
    twice = await failure(calls.announce(lab(), document.document_id))
    assert (twice.code, twice.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_VISIBLE_TO_HOLDER")
    assert [c["change"] for c in await changes_of(dossier_pool, document.document_id)] == ["DOCUMENT_CHANGE_ANNOUNCED"]


async def test_archived_documents_leave_the_current_record(calls: Calls) -> None:
    holder_id = str(uuid.uuid4())
    document = await calls.deposit(lab(), holder_id)
    archived = await calls.archive(holder(holder_id), document.document_id)
    assert archived.status == res.DOCUMENT_STATUS_ARCHIVED
    assert await calls.listing(holder(holder_id)) == []
    assert await calls.listing(holder(holder_id), status=res.DOCUMENT_STATUS_ARCHIVED) == [document.document_id]
    again = await failure(calls.archive(lab(), document.document_id))
    assert (again.reason, again.metadata["status"]) == ("DOCUMENT_NOT_CURRENT", "archived")
    stranger = await failure(calls.archive(holder(str(uuid.uuid4())), document.document_id))
    assert stranger.code == grpc.StatusCode.PERMISSION_DENIED


async def test_deleting_removes_the_content_and_keeps_the_reason_in_the_log(
    calls: Calls, dossier_pool: asyncpg.Pool, blob_dir: Path
) -> None:
    holder_id = str(uuid.uuid4())
    mine = await calls.deposit(lab(), holder_id, "À supprimer")
    theirs = await calls.deposit(lab(), holder_id, "Supprimé par le laboratoire")
    blob = blob_dir / "documents" / holder_id / mine.document_id
    assert blob.exists()
    stranger = await failure(calls.delete(lab("org-autre"), mine.document_id))
    assert (stranger.code, stranger.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_THE_AUTHOR")
    await calls.delete(holder(holder_id), mine.document_id, "document en double")
    await calls.delete(lab(), theirs.document_id, "erreur de patient")
    assert not blob.exists()
    gone = await failure(calls.get(holder(holder_id), mine.document_id))
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "DOCUMENT_NOT_FOUND")
    assert await calls.listing(holder(holder_id)) == []
    deletions = [entry for entry in await log_of(dossier_pool, holder_id) if entry[0] == "DeleteDocument"]
    assert deletions == [
        ("DeleteDocument", consent_res.Action.Name(consent_res.ACTION_DELETE), "document en double"),
        ("DeleteDocument", "ACTION_CREATE", "erreur de patient"),
    ]
    assert [c["change"] for c in await changes_of(dossier_pool, mine.document_id)] == ["DOCUMENT_CHANGE_DELETED"]
