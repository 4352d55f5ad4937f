"""DossierService over gRPC: deposit, read, list and download documents.

Runs the dossier app in-process with the real PostgreSQL, Redis, a filesystem object
store in a temporary directory and the real consent service (see conftest.py).
Holders are fresh UUIDs, so what a test checks in the shared database, outbox and
Redis stream is filtered on its own holder, document and event ids.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as redis
from google.protobuf import timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import consent_service_pb2, consent_service_pb2_grpc
from carnet.consent.v1 import resources_pb2 as consent_res
from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier.keys import HolderKeys
from carnet_dossier.seed import make_pdf
from carnet_kit.auth import Principal
from carnet_kit.crypto import (
    MasterKeyRing,
    SealedBlobError,
    new_master_key_line,
    open_blob,
    sealed_size,
    unwrap_data_key,
)
from carnet_kit.server import ServiceApp
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import TokenFactory, wait_until

LAB = Principal(subject="lab-x", role="client", client_id="lab-x", organisation_id="org", scopes=("documents.deposit",))
LAB_WITHOUT_SCOPE = Principal(subject="lab-x", role="client", client_id="lab-x", organisation_id="org", scopes=())
LAB_REPORT = "11502-2"  # "Compte rendu d'examens biologiques", default class LAB
DEPOSITED = "carnet.dossier.v1.DocumentDepositedEvent"
STREAM = "carnet:events:dossier"
DOMAIN = "dossier.carnet"
CALL_TIMEOUT = 15.0  # every call is bounded: a hung server fails one test, not the session


# --- helpers -------------------------------------------------------------------------


def new_holder() -> str:
    return str(uuid.uuid4())


def as_holder(holder_id: str) -> Principal:
    return Principal(subject=holder_id, role="holder")


def pdf(label: str) -> bytes:
    """A small valid PDF whose bytes depend on ``label``."""
    return make_pdf("Compte rendu de biologie", [f"Hemoglobine 14,2 g/dL ({label})", "Leucocytes 6,1 G/L"])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metadata_message(holder_id: str, unique_id: str | None = None, **fields: Any) -> pb.DepositDocumentRequest:
    """First message of a deposit: a lab report in PDF for ``holder_id``."""
    values: dict[str, Any] = {
        "unique_id": unique_id or f"lab-x-{uuid.uuid4().hex}",
        "holder_id": holder_id,
        "type_code": LAB_REPORT,
        "format": res.DOCUMENT_FORMAT_PDF,
        "title": "Bilan sanguin",
        "author": res.Author(organisation_id="org", display_name="Laboratoire X"),
    }
    values.update(fields)
    return pb.DepositDocumentRequest(metadata=res.DocumentMetadata(**values))


def chunk_messages(content: bytes, size: int) -> list[pb.DepositDocumentRequest]:
    return [pb.DepositDocumentRequest(chunk=content[i : i + size]) for i in range(0, len(content), size)]


def deposit_messages(
    holder_id: str, content: bytes, *, unique_id: str | None = None, chunk_size: int = 256, **fields: Any
) -> list[pb.DepositDocumentRequest]:
    return [metadata_message(holder_id, unique_id, **fields), *chunk_messages(content, chunk_size)]


async def rpc_failure(call: Awaitable[Any]) -> RemoteError:
    """The status (with its ErrorInfo) a call failed with; fails the test if it succeeded."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


class Client:
    """Dossier's stub, with a fresh bearer token for each call."""

    def __init__(self, stub: pb_grpc.DossierServiceStub, tokens: TokenFactory) -> None:
        self.stub = stub
        self.tokens = tokens

    def auth(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens.mint(principal)}"),)

    async def deposit(
        self,
        principal: Principal,
        messages: Iterable[pb.DepositDocumentRequest] | AsyncIterator[pb.DepositDocumentRequest],
    ) -> res.Document:
        requests = messages if isinstance(messages, AsyncIterator) else iter(list(messages))
        document: res.Document = await self.stub.DepositDocument(
            requests, metadata=self.auth(principal), timeout=CALL_TIMEOUT
        )
        return document

    async def deposit_pdf(self, holder_id: str, label: str = "", **fields: Any) -> res.Document:
        return await self.deposit(LAB, deposit_messages(holder_id, pdf(label or uuid.uuid4().hex), **fields))

    async def get(self, principal: Principal, document_id: str) -> res.Document:
        document: res.Document = await self.stub.GetDocument(
            pb.GetDocumentRequest(document_id=document_id), metadata=self.auth(principal), timeout=CALL_TIMEOUT
        )
        return document

    async def list(self, principal: Principal, **fields: Any) -> pb.ListDocumentsResponse:
        response: pb.ListDocumentsResponse = await self.stub.ListDocuments(
            pb.ListDocumentsRequest(**fields), metadata=self.auth(principal), timeout=CALL_TIMEOUT
        )
        return response

    async def download(
        self, principal: Principal, document_id: str, received: list[pb.DownloadDocumentResponse] | None = None
    ) -> list[pb.DownloadDocumentResponse]:
        """Every message of a download (also appended to ``received``, kept if the stream fails)."""
        messages = [] if received is None else received
        call = self.stub.DownloadDocument(
            pb.DownloadDocumentRequest(document_id=document_id), metadata=self.auth(principal), timeout=CALL_TIMEOUT
        )
        async for message in call:
            messages.append(message)
        return messages


class Records:
    """What the dossier stored: its schema's rows and the object store's files."""

    def __init__(self, pool: asyncpg.Pool, blob_dir: Path, master_key_file: Path) -> None:
        self.pool = pool
        self.blob_dir = blob_dir
        self.ring = MasterKeyRing.from_file(master_key_file, variable="CARNET_MASTER_KEY_FILE")

    async def data_key(self, holder_id: str) -> bytes:
        """The holder's data key, unwrapped as dossier does."""
        row = await self.pool.fetchrow(
            "SELECT master_key_id, wrapped_key FROM dossier.holder_keys WHERE holder_id = $1", uuid.UUID(holder_id)
        )
        assert row is not None and row["wrapped_key"] is not None
        master = self.ring.by_id(row["master_key_id"])
        assert master is not None
        return unwrap_data_key(master, uuid.UUID(holder_id), bytes(row["wrapped_key"]))

    async def plain_content(self, holder_id: str, document_id: str) -> bytes:
        """A stored blob, opened with its holder's key (it is sealed at rest)."""
        sealed = self.blob_path(holder_id, document_id).read_bytes()
        return await open_blob(await self.data_key(holder_id), f"documents/{holder_id}/{document_id}", sealed)

    async def documents_of(self, holder_id: str) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT * FROM dossier.documents WHERE holder_id = $1 ORDER BY created_at", uuid.UUID(holder_id)
            )
        )

    async def document_by_unique_id(self, unique_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.pool.fetchrow(
            "SELECT * FROM dossier.documents WHERE unique_id = $1", unique_id
        )
        return row

    async def outbox_of(self, holder_id: str, event_type: str | None = DEPOSITED) -> list[asyncpg.Record]:
        """The holder's events in dossier's outbox (deposits by default; ``None`` for every type)."""
        return list(
            await self.pool.fetch(
                "SELECT * FROM dossier.outbox WHERE payload->>'holder_id' = $1"
                " AND ($2::text IS NULL OR event_type = $2) ORDER BY id",
                holder_id,
                event_type,
            )
        )

    async def access_log_of(self, holder_id: str) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT * FROM dossier.access_log WHERE holder_id = $1 ORDER BY entry_id", uuid.UUID(holder_id)
            )
        )

    def blob_path(self, holder_id: str, document_id: str) -> Path:
        return self.blob_dir / "documents" / holder_id / document_id

    def files_of(self, holder_id: str) -> list[Path]:
        """Every file under the holder's folder of the object store (temporary files too)."""
        folder = self.blob_dir / "documents" / holder_id
        return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []

    async def assert_nothing_stored(self, holder_id: str, unique_id: str) -> None:
        assert await self.document_by_unique_id(unique_id) is None
        assert await self.documents_of(holder_id) == []
        assert self.files_of(holder_id) == []
        assert await self.outbox_of(holder_id, None) == []


@pytest.fixture
def client(dossier_stub: pb_grpc.DossierServiceStub, token_factory: TokenFactory) -> Client:
    return Client(dossier_stub, token_factory)


@pytest.fixture
def records(dossier_pool: asyncpg.Pool, blob_dir: Path, master_key_file: Path) -> Records:
    return Records(dossier_pool, blob_dir, master_key_file)


# --- deposit -------------------------------------------------------------------------


async def test_deposit_by_client_streamed_in_chunks_stores_content_event_and_access_log(
    client: Client, records: Records
) -> None:
    holder_id = new_holder()
    content = pdf("deposit")
    unique_id = f"lab-x-{uuid.uuid4().hex}"
    messages = deposit_messages(holder_id, content, unique_id=unique_id, chunk_size=300)
    assert len(messages) >= 4  # metadata + at least three chunks

    document = await client.deposit(LAB, messages)

    assert document.document_id and uuid.UUID(document.document_id)
    assert document.logical_id == document.document_id
    assert document.size_bytes == len(content)
    assert document.sha256 == sha256(content)
    assert document.version == 1
    assert document.status == res.DOCUMENT_STATUS_APPROVED
    assert document.deposited_by.client_id == "lab-x"
    assert document.deposited_by.subject == "lab-x"
    assert document.deposited_by.role == common_pb2.ROLE_CLIENT
    assert document.metadata.holder_id == holder_id
    assert document.metadata.unique_id == unique_id
    assert document.metadata.class_code == "LAB"  # the type code's default class
    assert document.mime_type == "application/pdf"
    assert document.holder_own is False

    # The content, sealed under the holder's data key, under documents/<holder>/<document>; nothing else.
    blob = records.blob_path(holder_id, document.document_id)
    stored = blob.read_bytes()
    assert stored.startswith(b"CRB1") and b"%PDF-" not in stored
    assert len(stored) == sealed_size(len(content))
    assert await records.plain_content(holder_id, document.document_id) == content
    assert records.files_of(holder_id) == [blob]
    rows = await records.documents_of(holder_id)
    assert [(str(r["document_id"]), r["blob_key"], r["sha256"]) for r in rows] == [
        (document.document_id, f"documents/{holder_id}/{document.document_id}", sha256(content))
    ]

    (event,) = await records.outbox_of(holder_id)
    assert event["event_type"] == DEPOSITED
    assert event["stream"] == STREAM
    payload = event["payload"]
    assert payload["event_id"] == str(event["event_id"])
    assert payload["document_id"] == document.document_id
    assert payload["holder_id"] == holder_id
    assert payload["type_code"] == LAB_REPORT
    assert payload["title"] == "Bilan sanguin"
    assert payload["deposited_by"]["client_id"] == "lab-x"

    (entry,) = await records.access_log_of(holder_id)
    assert entry["action"] == "ACTION_CREATE"
    assert entry["outcome"] == "allowed"
    assert entry["item_id"] == document.document_id
    assert entry["actor"]["client_id"] == "lab-x"


async def test_same_unique_id_and_bytes_returns_the_existing_document(client: Client, records: Records) -> None:
    holder_id = new_holder()
    content = pdf("idempotent")
    unique_id = f"lab-x-{uuid.uuid4().hex}"

    first = await client.deposit(LAB, deposit_messages(holder_id, content, unique_id=unique_id, chunk_size=500))
    again = await client.deposit(LAB, deposit_messages(holder_id, content, unique_id=unique_id, chunk_size=123))

    assert again.document_id == first.document_id
    assert again.sha256 == first.sha256 == sha256(content)
    assert len(await records.documents_of(holder_id)) == 1
    assert len(await records.outbox_of(holder_id)) == 1
    assert records.files_of(holder_id) == [records.blob_path(holder_id, first.document_id)]


async def test_same_unique_id_with_other_bytes_is_already_exists_unique_id_taken(
    client: Client, records: Records
) -> None:
    holder_id = new_holder()
    unique_id = f"lab-x-{uuid.uuid4().hex}"
    first = await client.deposit(LAB, deposit_messages(holder_id, pdf("first"), unique_id=unique_id))

    error = await rpc_failure(client.deposit(LAB, deposit_messages(holder_id, pdf("second"), unique_id=unique_id)))

    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "UNIQUE_ID_TAKEN"
    assert error.domain == DOMAIN
    assert error.metadata.get("unique_id") == unique_id
    assert [str(r["document_id"]) for r in await records.documents_of(holder_id)] == [first.document_id]
    assert await records.plain_content(holder_id, first.document_id) == pdf("first")
    assert records.files_of(holder_id) == [records.blob_path(holder_id, first.document_id)]
    assert len(await records.outbox_of(holder_id)) == 1


async def test_client_without_deposit_scope_is_denied_with_consents_reason_and_nothing_stored(
    client: Client, records: Records, consent_app: ServiceApp, token_factory: TokenFactory
) -> None:
    holder_id = new_holder()
    unique_id = f"lab-x-{uuid.uuid4().hex}"
    # What consent itself answers for this actor, asked directly with the actor's own token.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{consent_app.port}") as channel:
        decision = await consent_service_pb2_grpc.ConsentServiceStub(channel).Decide(
            consent_service_pb2.DecideRequest(
                actor=LAB_WITHOUT_SCOPE.to_actor(),
                holder_id=holder_id,
                action=consent_res.ACTION_CREATE,
                item=consent_res.ItemAttributes(kind=consent_res.ITEM_KIND_DOCUMENT, document_class="LAB"),
            ),
            metadata=client.auth(LAB_WITHOUT_SCOPE),
            timeout=CALL_TIMEOUT,
        )
    assert decision.effect == consent_res.EFFECT_DENY
    assert decision.reason_code == "ACCESS_DENIED_SCOPE"

    error = await rpc_failure(
        client.deposit(LAB_WITHOUT_SCOPE, deposit_messages(holder_id, pdf("no scope"), unique_id=unique_id))
    )

    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.reason == decision.reason_code
    await records.assert_nothing_stored(holder_id, unique_id)
    (entry,) = await records.access_log_of(holder_id)
    assert entry["outcome"] == "denied"
    assert entry["action"] == "ACTION_CREATE"
    assert entry["reason"] == "ACCESS_DENIED_SCOPE"
    assert entry["item_id"] == unique_id
    assert entry["actor"]["client_id"] == "lab-x"


async def test_size_limit_is_enforced_while_streaming(
    run_dossier: Any, stub_for: Any, token_factory: TokenFactory, records: Records
) -> None:
    holder_id = new_holder()
    unique_id = f"lab-x-{uuid.uuid4().hex}"
    content = (b"%PDF-1.4\n" + b"0" * 3072)[:3072]
    sent: list[int] = []
    stall = 8.0

    async def requests() -> AsyncIterator[pb.DepositDocumentRequest]:
        yield metadata_message(holder_id, unique_id)
        for start in range(0, 3072, 1024):
            sent.append(start)
            yield pb.DepositDocumentRequest(chunk=content[start : start + 1024])
        # The client keeps the stream open: the limit must be seen without waiting for its end.
        await asyncio.sleep(stall)
        yield pb.DepositDocumentRequest(chunk=b"0" * 1024)

    async with run_dossier(CARNET_MAX_DOCUMENT_BYTES="2048") as app, stub_for(app) as stub:
        client = Client(stub, token_factory)
        started = time.monotonic()
        error = await rpc_failure(client.deposit(LAB, requests()))
        elapsed = time.monotonic() - started

        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.reason == "DOCUMENT_TOO_LARGE"
        assert error.metadata.get("limit_bytes") == "2048"
        assert len(sent) == 3
        assert elapsed < stall / 2, f"the refusal waited for the end of the stream ({elapsed:.1f}s)"
        await records.assert_nothing_stored(holder_id, unique_id)

        # A document at the limit is accepted by the same app.
        exact = make_pdf("x", ["y"])
        exact += b"\n" + b"%" * (2048 - len(exact) - 1)
        assert len(exact) == 2048
        document = await client.deposit(LAB, deposit_messages(holder_id, exact, chunk_size=1024))
        assert document.size_bytes == 2048


async def test_content_not_matching_declared_format_is_invalid_argument(client: Client, records: Records) -> None:
    holder_id = new_holder()
    unique_id = f"lab-x-{uuid.uuid4().hex}"
    not_a_pdf = b"Bilan sanguin du 3 mars\nHemoglobine 14,2 g/dL\n"

    error = await rpc_failure(client.deposit(LAB, deposit_messages(holder_id, not_a_pdf, unique_id=unique_id)))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "CONTENT_FORMAT_MISMATCH"
    assert error.metadata.get("field") == "chunk"
    await records.assert_nothing_stored(holder_id, unique_id)

    # The same bytes declared as text are accepted: the check follows the declared format.
    document = await client.deposit(
        LAB, deposit_messages(holder_id, not_a_pdf, unique_id=unique_id, format=res.DOCUMENT_FORMAT_TEXT)
    )
    assert document.sha256 == sha256(not_a_pdf)


async def test_first_message_without_metadata_is_invalid_argument(client: Client, records: Records) -> None:
    holder_id = new_holder()
    content = pdf("chunk first")
    messages = [*chunk_messages(content, 256), metadata_message(holder_id)]

    error = await rpc_failure(client.deposit(LAB, messages))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.metadata.get("field") == "metadata"
    assert await records.documents_of(holder_id) == []
    assert records.files_of(holder_id) == []


async def test_empty_deposit_stream_is_invalid_argument(client: Client) -> None:
    error = await rpc_failure(client.deposit(LAB, []))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.metadata.get("field") == "metadata"
    assert error.domain == DOMAIN


async def test_metadata_without_content_is_invalid_argument(client: Client, records: Records) -> None:
    holder_id = new_holder()
    unique_id = f"lab-x-{uuid.uuid4().hex}"

    error = await rpc_failure(client.deposit(LAB, [metadata_message(holder_id, unique_id)]))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "EMPTY_CONTENT"
    await records.assert_nothing_stored(holder_id, unique_id)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        pytest.param({"type_code": "99999-9"}, "metadata.type_code", "UNKNOWN_TYPE_CODE", id="unknown-type-code"),
        pytest.param(
            {"hidden_from_professionals": True, "invisible_to_holder": True},
            "metadata.invisible_to_holder",
            "VISIBILITY_FLAGS_CONFLICT",
            id="hidden-and-invisible",
        ),
        pytest.param({"class_code": "NOPE"}, "metadata.class_code", "UNKNOWN_CLASS_CODE", id="unknown-class-code"),
        pytest.param({"title": "   "}, "metadata.title", "INVALID_ARGUMENT", id="blank-title"),
        pytest.param(
            {"format": res.DOCUMENT_FORMAT_UNSPECIFIED}, "metadata.format", "INVALID_ARGUMENT", id="no-format"
        ),
        pytest.param({"holder_id": "not-a-uuid"}, "metadata.holder_id", "INVALID_ARGUMENT", id="holder-not-uuid"),
        pytest.param({"holder_id": ""}, "metadata.holder_id", "INVALID_ARGUMENT", id="no-holder"),
    ],
)
async def test_bad_metadata_is_invalid_argument_naming_the_field(
    client: Client, records: Records, fields: dict[str, Any], field: str, reason: str
) -> None:
    holder_id = new_holder()
    unique_id = f"lab-x-{uuid.uuid4().hex}"
    fields = dict(fields)
    named_holder = fields.pop("holder_id", holder_id)
    messages = deposit_messages(named_holder, pdf("bad metadata"), unique_id=unique_id, **fields)

    error = await rpc_failure(client.deposit(LAB, messages))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.domain == DOMAIN
    assert error.metadata.get("field") == field
    assert error.reason == reason
    await records.assert_nothing_stored(holder_id, unique_id)


async def test_holder_ins_with_identity_down_is_unavailable_not_internal(client: Client, records: Records) -> None:
    unique_id = f"lab-x-{uuid.uuid4().hex}"
    messages = [
        metadata_message("", unique_id, holder_ins="284057512000531"),
        *chunk_messages(pdf("by ins"), 256),
    ]

    error = await asyncio.wait_for(rpc_failure(client.deposit(LAB, messages)), 20)

    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "DEPENDENCY_UNAVAILABLE"
    assert await records.document_by_unique_id(unique_id) is None


# --- reading -------------------------------------------------------------------------


async def test_holder_lists_and_downloads_own_document(client: Client, records: Records) -> None:
    holder_id = new_holder()
    content = pdf("for the holder")
    document = await client.deposit(LAB, deposit_messages(holder_id, content))
    me = as_holder(holder_id)

    listed = await client.list(me)
    assert [d.document_id for d in listed.documents] == [document.document_id]
    assert listed.next_page_token == ""
    assert (await client.list(me, holder_id=holder_id)).documents[0].sha256 == sha256(content)

    got = await client.get(me, document.document_id)
    assert got == document

    messages = await client.download(me, document.document_id)
    assert messages[0].WhichOneof("payload") == "document"
    assert messages[0].document.document_id == document.document_id
    assert all(m.WhichOneof("payload") == "chunk" for m in messages[1:])
    assert b"".join(m.chunk for m in messages[1:]) == content

    log = [(e["action"], e["outcome"]) for e in await records.access_log_of(holder_id)]
    assert ("ACTION_LIST", "allowed") in log
    assert ("ACTION_READ", "allowed") in log


async def test_download_of_a_large_document_comes_in_chunks(client: Client) -> None:
    holder_id = new_holder()
    content = b"Compte rendu\n" + ("Ligne de texte accentuee: ete, eleve, tres.\n" * 5000).encode()
    document = await client.deposit(
        LAB, deposit_messages(holder_id, content, chunk_size=64 * 1024, format=res.DOCUMENT_FORMAT_TEXT)
    )

    messages = await client.download(as_holder(holder_id), document.document_id)

    chunks = [m.chunk for m in messages[1:]]
    assert len(chunks) >= 3
    assert b"".join(chunks) == content


async def test_another_holder_is_denied_get_download_and_list(client: Client, records: Records) -> None:
    holder_id = new_holder()
    intruder_id = new_holder()
    document = await client.deposit_pdf(holder_id)
    intruder = as_holder(intruder_id)

    failures = [
        await rpc_failure(client.get(intruder, document.document_id)),
        await rpc_failure(client.download(intruder, document.document_id)),
        await rpc_failure(client.list(intruder, holder_id=holder_id)),
    ]

    for error in failures:
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        assert error.reason == "ACCESS_DENIED_NOT_AUTHORISED"
    denied = [(e["action"], e["outcome"]) for e in await records.access_log_of(holder_id) if e["outcome"] == "denied"]
    assert sorted(denied) == [("ACTION_LIST", "denied"), ("ACTION_READ", "denied"), ("ACTION_READ", "denied")]
    # The intruder's own (empty) record is theirs to list.
    assert list((await client.list(intruder)).documents) == []


async def test_document_invisible_to_holder_is_neither_listed_nor_readable_by_the_holder(client: Client) -> None:
    holder_id = new_holder()
    visible = await client.deposit_pdf(holder_id, "visible")
    invisible = await client.deposit_pdf(holder_id, "announce first", invisible_to_holder=True)
    me = as_holder(holder_id)

    listed = await client.list(me)

    assert [d.document_id for d in listed.documents] == [visible.document_id]
    for call in (client.get(me, invisible.document_id), client.download(me, invisible.document_id)):
        error = await rpc_failure(call)
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        assert error.reason == "ACCESS_DENIED_INVISIBLE_TO_HOLDER"


async def test_holder_reading_document_metadata_is_access_logged(client: Client, records: Records) -> None:
    # Consent obliges every allowed access to be logged (OBLIGATION_LOG_ACCESS) and the
    # access log is "every read, write and decision about a holder's record".
    holder_id = new_holder()
    document = await client.deposit_pdf(holder_id)

    await client.get(as_holder(holder_id), document.document_id)

    reads = [
        (e["action"], e["outcome"], e["item_id"])
        for e in await records.access_log_of(holder_id)
        if e["action"] == "ACTION_READ"
    ]
    assert reads == [("ACTION_READ", "allowed", document.document_id)]


@pytest.mark.parametrize(
    "criterion",
    ["type_code", "author_organisation_id", "service_start_time", "service_end_time"],
)
async def test_list_filters_of_the_contract_narrow_the_listing(client: Client, criterion: str) -> None:
    holder_id = new_holder()
    old = await client.deposit_pdf(
        holder_id,
        "old",
        type_code="11369-6",  # vaccination history
        author=res.Author(organisation_id="org-old"),
        service_time=timestamp_pb2.Timestamp(seconds=int(dt.datetime(2015, 6, 1, tzinfo=dt.UTC).timestamp())),
    )
    recent = await client.deposit_pdf(
        holder_id,
        "recent",
        author=res.Author(organisation_id="org-recent"),
        service_time=timestamp_pb2.Timestamp(seconds=int(dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp())),
    )
    cut = timestamp_pb2.Timestamp(seconds=int(dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp()))
    request, expected = {
        "type_code": ({"type_code": LAB_REPORT}, recent),
        "author_organisation_id": ({"author_organisation_id": "org-old"}, old),
        "service_start_time": ({"service_start_time": cut}, recent),
        "service_end_time": ({"service_end_time": cut}, old),
    }[criterion]
    me = as_holder(holder_id)
    assert len((await client.list(me)).documents) == 2

    listed = await client.list(me, **request)

    assert [d.document_id for d in listed.documents] == [expected.document_id]


async def test_unknown_document_is_not_found(client: Client) -> None:
    error = await rpc_failure(client.get(as_holder(new_holder()), str(uuid.uuid4())))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "DOCUMENT_NOT_FOUND"

    error = await rpc_failure(client.get(as_holder(new_holder()), "not-a-uuid"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.metadata.get("field") == "document_id"


@pytest.mark.parametrize(
    "altered",
    [
        pytest.param(lambda sealed: sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:], id="one-bit-flipped"),
        pytest.param(lambda sealed: b"%PDF-" + b"X" * (len(sealed) - 5), id="same-size-other-bytes"),
        pytest.param(lambda sealed: sealed + b"trailing bytes", id="longer"),
        pytest.param(lambda sealed: sealed[: len(sealed) // 2], id="truncated"),
        pytest.param(lambda sealed: sealed[: len(sealed) - 16], id="last-tag-cut"),
    ],
)
async def test_download_of_altered_content_ends_with_data_loss(
    client: Client, records: Records, altered: Callable[[bytes], bytes]
) -> None:
    holder_id = new_holder()
    content = pdf("integrity")
    document = await client.deposit(LAB, deposit_messages(holder_id, content))
    blob = records.blob_path(holder_id, document.document_id)
    sealed = blob.read_bytes()
    blob.write_bytes(altered(sealed))
    assert blob.read_bytes() != sealed

    received: list[pb.DownloadDocumentResponse] = []
    error = await rpc_failure(client.download(as_holder(holder_id), document.document_id, received))

    assert error.code == grpc.StatusCode.DATA_LOSS
    assert error.reason == "CONTENT_INTEGRITY_FAILED"
    assert received and received[0].document.document_id == document.document_id


async def test_pagination_newest_first_without_duplicates(client: Client) -> None:
    holder_id = new_holder()
    deposited = [(await client.deposit_pdf(holder_id, f"document {n}")).document_id for n in range(25)]
    me = as_holder(holder_id)

    pages: list[pb.ListDocumentsResponse] = []
    token = ""
    for _ in range(5):  # bounded: a token that never ends fails the test
        page = await client.list(me, page_size=10, page_token=token)
        pages.append(page)
        token = page.next_page_token
        if not token:
            break

    assert [len(p.documents) for p in pages] == [10, 10, 5]
    assert [bool(p.next_page_token) for p in pages] == [True, True, False]
    ids = [d.document_id for p in pages for d in p.documents]
    assert len(set(ids)) == 25
    assert ids == list(reversed(deposited))
    times = [d.create_time.ToDatetime() for p in pages for d in p.documents]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-page-token!", id="garbage"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe\x00 binary").decode(), id="base64-not-json"),
        pytest.param(base64.urlsafe_b64encode(b'["t", "id"]').decode(), id="json-list"),
        pytest.param(
            base64.urlsafe_b64encode(json.dumps({"t": "yesterday", "id": str(uuid.uuid4())}).encode()).decode(),
            id="bad-time",
        ),
        pytest.param(
            base64.urlsafe_b64encode(json.dumps({"t": "2024-01-01T00:00:00+00:00", "id": "x"}).encode()).decode(),
            id="bad-id",
        ),
        pytest.param(
            base64.urlsafe_b64encode(json.dumps({"t": "2024-01-01T00:00:00+00:00", "id": 42}).encode()).decode(),
            id="numeric-id",
        ),
    ],
)
async def test_forged_page_token_is_invalid_argument(client: Client, token: str) -> None:
    holder_id = new_holder()
    await client.deposit_pdf(holder_id)

    error = await rpc_failure(client.list(as_holder(holder_id), page_size=10, page_token=token))

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.metadata.get("field") == "page_token"


async def test_concurrent_deposits_of_the_same_document_make_one(client: Client, records: Records) -> None:
    holder_id = new_holder()
    content = pdf("concurrent")
    unique_id = f"lab-x-{uuid.uuid4().hex}"

    documents = await asyncio.gather(
        *(client.deposit(LAB, deposit_messages(holder_id, content, unique_id=unique_id)) for _ in range(5))
    )

    assert len({d.document_id for d in documents}) == 1
    (row,) = await records.documents_of(holder_id)
    assert str(row["document_id"]) == documents[0].document_id
    (event,) = await records.outbox_of(holder_id)
    assert event["payload"]["document_id"] == documents[0].document_id
    # The losers' content was removed: only the winner's file remains.
    assert records.files_of(holder_id) == [records.blob_path(holder_id, documents[0].document_id)]


# --- events --------------------------------------------------------------------------


async def test_outbox_relay_publishes_the_deposit_to_the_dossier_stream(
    client: Client, records: Records, redis_url: str
) -> None:
    holder_id = new_holder()
    document = await client.deposit_pdf(holder_id)
    (row,) = await records.outbox_of(holder_id)
    event_id = str(row["event_id"])

    async with contextlib.aclosing(redis.Redis.from_url(redis_url)) as connection:

        async def published() -> dict[bytes, bytes] | None:
            for _id, fields in await connection.xrevrange(STREAM, count=2000):
                if fields.get(b"event_id") == event_id.encode():
                    return dict(fields)
            return None

        fields = await wait_until(published, timeout=5.0)

    assert fields[b"type"] == DEPOSITED.encode()
    payload = json.loads(fields[b"payload"])
    assert payload["document_id"] == document.document_id
    assert payload["holder_id"] == holder_id
    assert payload["event_id"] == event_id
    # The relay publishes, then marks the row (in its transaction, committed just after the XADD).
    published_at = await wait_until(
        lambda: records.pool.fetchval("SELECT published_at FROM dossier.outbox WHERE event_id = $1", row["event_id"]),
        timeout=5.0,
    )
    assert published_at is not None


# --- contract ------------------------------------------------------------------------


async def test_document_types_are_listed_with_french_labels_and_classes(client: Client) -> None:
    me = as_holder(new_holder())
    everything = await client.stub.ListDocumentTypes(pb.ListDocumentTypesRequest(), metadata=client.auth(me))
    codes = {t.code: t for t in everything.document_types}
    assert len(codes) >= 30 and everything.next_page_token == ""
    assert (codes["11488-4"].display, codes["11488-4"].class_code) == ("Compte rendu de consultation", "REPORT")
    assert codes["11502-2"].class_display == "Biologie" and codes["11502-2"].code_system == "http://loinc.org"
    labs = await client.stub.ListDocumentTypes(pb.ListDocumentTypesRequest(class_code="LAB"), metadata=client.auth(me))
    assert labs.document_types and {t.class_code for t in labs.document_types} == {"LAB"}
    first = await client.stub.ListDocumentTypes(pb.ListDocumentTypesRequest(page_size=10), metadata=client.auth(me))
    second = await client.stub.ListDocumentTypes(
        pb.ListDocumentTypesRequest(page_size=10, page_token=first.next_page_token), metadata=client.auth(me)
    )
    assert [t.code for t in [*first.document_types, *second.document_types]] == [
        t.code for t in everything.document_types
    ][:20]
    unknown = await rpc_failure(
        client.stub.ListDocumentTypes(pb.ListDocumentTypesRequest(class_code="NOPE"), metadata=client.auth(me))
    )
    assert (unknown.code, unknown.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "class_code")


# --- encryption at rest --------------------------------------------------------------


def write_keys(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def read_keys(path: Path) -> list[str]:
    return path.read_text().split()


def downloaded(messages: list[pb.DownloadDocumentResponse]) -> bytes:
    return b"".join(message.chunk for message in messages)


async def test_rotating_the_master_key_rewraps_data_keys_without_touching_blobs(
    run_dossier: Any,
    stub_for: Any,
    token_factory: TokenFactory,
    records: Records,
    master_key_file: Path,
    tmp_path: Path,
) -> None:
    holder_id = new_holder()
    content = make_pdf("Grand document", [f"ligne {n} " * 20 for n in range(2000)])  # several segments
    async with run_dossier() as app, stub_for(app) as stub:
        client = Client(stub, token_factory)
        document = await client.deposit(LAB, deposit_messages(holder_id, content, chunk_size=32 * 1024))
    blob = records.blob_path(holder_id, document.document_id)
    sealed_before, mtime_before = blob.read_bytes(), blob.stat().st_mtime_ns
    # Rotation: a new current key first, the old one kept until every data key is rewrapped.
    # (Key ids are unique per deployment; here every test has its own "k1", hence a unique new id.)
    new_id = f"k2-{uuid.uuid4().hex[:8]}"
    rotated = write_keys(tmp_path / "rotated-keys", new_master_key_line(new_id), *read_keys(master_key_file))
    async with run_dossier(CARNET_MASTER_KEY_FILE=str(rotated)):

        async def rewrapped() -> bool:
            row = await records.pool.fetchrow(
                "SELECT master_key_id FROM dossier.holder_keys WHERE holder_id = $1", uuid.UUID(holder_id)
            )
            return row is not None and row["master_key_id"] == new_id

        await wait_until(rewrapped, timeout=10)
    # The old key is gone from the configuration: the document still reads, its blob was never rewritten.
    only_new = write_keys(tmp_path / "only-new-key", read_keys(rotated)[0])
    async with run_dossier(CARNET_MASTER_KEY_FILE=str(only_new)) as app, stub_for(app) as stub:
        messages = await Client(stub, token_factory).download(as_holder(holder_id), document.document_id)
    assert downloaded(messages) == content
    assert blob.read_bytes() == sealed_before and blob.stat().st_mtime_ns == mtime_before


async def test_a_data_key_wrapped_by_an_unconfigured_master_key_is_data_loss_not_garbage(
    run_dossier: Any, stub_for: Any, token_factory: TokenFactory, tmp_path: Path
) -> None:
    holder_id = new_holder()
    async with run_dossier() as app, stub_for(app) as stub:
        document = await Client(stub, token_factory).deposit_pdf(holder_id)
    other = write_keys(tmp_path / "other-keys", new_master_key_line("k9"))
    async with run_dossier(CARNET_MASTER_KEY_FILE=str(other)) as app, stub_for(app) as stub:
        error = await rpc_failure(Client(stub, token_factory).download(as_holder(holder_id), document.document_id))
    assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "MASTER_KEY_UNKNOWN")
    assert error.metadata["master_key_id"] == "k1"


async def test_shredding_a_holders_key_makes_their_blobs_unreadable(
    client: Client, records: Records, dossier_pool: asyncpg.Pool
) -> None:
    holder_id, neighbour = new_holder(), new_holder()
    document = await client.deposit_pdf(holder_id, "à effacer")
    kept = await client.deposit_pdf(neighbour, "à garder")
    data_key = await records.data_key(holder_id)
    sealed = records.blob_path(holder_id, document.document_id).read_bytes()

    await HolderKeys(dossier_pool, records.ring).shred(uuid.UUID(holder_id))

    row = await dossier_pool.fetchrow("SELECT * FROM dossier.holder_keys WHERE holder_id = $1", uuid.UUID(holder_id))
    assert row["wrapped_key"] is None and row["master_key_id"] is None and row["shredded_at"] is not None
    error = await rpc_failure(client.download(as_holder(holder_id), document.document_id))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "HOLDER_DATA_SHREDDED")
    # Whatever key is tried now, the bytes do not open: the only key that did is gone.
    for wrong_key in (await records.data_key(neighbour), bytes(32)):
        with pytest.raises(SealedBlobError):
            await open_blob(wrong_key, f"documents/{holder_id}/{document.document_id}", sealed)
    assert data_key != await records.data_key(neighbour)
    # No new key is made for a shredded holder; other holders are untouched.
    refused = await rpc_failure(client.deposit_pdf(holder_id, "après effacement"))
    assert refused.reason == "HOLDER_DATA_SHREDDED"
    assert downloaded(await client.download(as_holder(neighbour), kept.document_id)) == pdf("à garder")
