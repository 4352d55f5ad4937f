"""A space as a whole: closure archives it, reopening opens it, deletion shreds then purges it; export as a ZIP."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as redis
from google.protobuf import timestamp_pb2

from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet.identity.v1 import events_pb2 as identity_events
from carnet.identity.v1 import resources_pb2 as identity_res
from carnet_dossier.seed import make_pdf
from carnet_dossier.spaces import SpacePurger
from carnet_kit.auth import Principal
from carnet_kit.objectstore import FilesystemObjectStore
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import TokenFactory, publish_event, wait_until

LAB = Principal(
    subject="lab-x", role="client", client_id="lab-x", organisation_id="org-lab", scopes=("documents.deposit",)
)
TIMEOUT = 15.0


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

    async def deposit(self, holder_id: str, title: str, content: bytes, **fields: Any) -> res.Document:
        metadata = res.DocumentMetadata(
            unique_id=f"space-{uuid.uuid4().hex}",
            holder_id=holder_id,
            type_code="11502-2",
            format=res.DOCUMENT_FORMAT_PDF,
            title=title,
            **fields,
        )
        messages = [pb.DepositDocumentRequest(metadata=metadata), pb.DepositDocumentRequest(chunk=content)]
        document: res.Document = await self.stub.DepositDocument(
            iter(messages), metadata=self.auth(LAB), timeout=TIMEOUT
        )
        return document

    async def allergy(self, holder_id: str, substance: str) -> res.ProfileEntry:
        entry: res.ProfileEntry = await self.stub.CreateProfileEntry(
            pb.CreateProfileEntryRequest(
                entry=res.ProfileEntry(
                    holder_id=holder_id, kind=res.PROFILE_ENTRY_KIND_ALLERGY, allergy=res.Allergy(substance=substance)
                )
            ),
            metadata=self.auth(holder(holder_id)),
            timeout=TIMEOUT,
        )
        return entry

    async def space(self, principal: Principal, holder_id: str) -> res.Space:
        space: res.Space = await self.stub.GetSpace(
            pb.GetSpaceRequest(holder_id=holder_id), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return space

    async def export(self, principal: Principal, holder_id: str) -> tuple[pb.SpaceExportInfo, bytes]:
        call = self.stub.ExportSpace(
            pb.ExportSpaceRequest(holder_id=holder_id), metadata=self.auth(principal), timeout=TIMEOUT
        )
        messages = [message async for message in call]
        return messages[0].info, b"".join(message.chunk for message in messages[1:])


@pytest.fixture
def calls(dossier_stub: pb_grpc.DossierServiceStub, token_factory: TokenFactory) -> Calls:
    return Calls(dossier_stub, token_factory)


@pytest.fixture
async def identity_stream(redis_url: str, dossier_environ: dict[str, str]) -> Any:
    client = redis.Redis.from_url(redis_url)
    stream = dossier_environ["CARNET_IDENTITY_EVENTS_STREAM"]

    async def publish(
        holder_id: str, state: int, *, delete_at: timestamp_pb2.Timestamp | None = None, event_id: str | None = None
    ) -> str:
        event = identity_events.AccountStateChangedEvent(person_id=holder_id, state=state)
        event.occur_time.GetCurrentTime()
        if delete_at is not None:
            event.scheduled_delete_time.CopyFrom(delete_at)
        return await publish_event(client, stream, event, event_id=event_id)

    yield publish
    await client.delete(stream)
    await client.aclose()


async def test_closure_archives_the_space_and_reopening_opens_it(calls: Calls, identity_stream: Any) -> None:
    holder_id = str(uuid.uuid4())
    await calls.deposit(holder_id, "Bilan", make_pdf("Bilan", ["a"]))
    open_space = await calls.space(holder(holder_id), holder_id)
    assert (open_space.state, open_space.document_count) == (res.SPACE_STATE_OPEN, 1)
    assert open_space.total_size_bytes > 0
    delete_at = timestamp_pb2.Timestamp(seconds=2_100_000_000)
    await identity_stream(holder_id, identity_res.ACCOUNT_STATE_CLOSED, delete_at=delete_at)

    async def archived() -> res.Space | None:
        space = await calls.space(holder(holder_id), holder_id)
        return space if space.state == res.SPACE_STATE_ARCHIVED else None

    space = await wait_until(archived, timeout=10)
    assert space.scheduled_delete_time.seconds == delete_at.seconds and space.HasField("archive_time")
    await identity_stream(holder_id, identity_res.ACCOUNT_STATE_ACTIVE)

    async def reopened() -> bool:
        return (await calls.space(holder(holder_id), holder_id)).state == res.SPACE_STATE_OPEN

    await wait_until(reopened, timeout=10)


async def test_deletion_shreds_the_key_at_once_then_the_purge_removes_everything(
    calls: Calls, identity_stream: Any, dossier_pool: asyncpg.Pool, blob_dir: Path
) -> None:
    holder_id, neighbour = str(uuid.uuid4()), str(uuid.uuid4())
    first = await calls.deposit(holder_id, "Un", make_pdf("Un", ["1"]))
    await calls.allergy(holder_id, "Arachide")
    await calls.deposit(holder_id, "Deux", make_pdf("Deux", ["2"]), replaces_document_id=first.document_id)
    kept = await calls.deposit(neighbour, "Voisin", make_pdf("Voisin", ["v"]))
    folder = blob_dir / "documents" / holder_id
    assert len(list(folder.iterdir())) == 2
    event_id = await identity_stream(holder_id, identity_res.ACCOUNT_STATE_DELETED)

    async def shredded() -> bool:
        row = await dossier_pool.fetchrow(
            "SELECT shredded_at FROM dossier.holder_keys WHERE holder_id = $1", uuid.UUID(holder_id)
        )
        return row is not None and row["shredded_at"] is not None

    await wait_until(shredded, timeout=10)
    unreadable = await failure(
        calls.stub.DownloadDocument(
            pb.DownloadDocumentRequest(document_id=first.document_id),
            metadata=calls.auth(holder(holder_id)),
            timeout=TIMEOUT,
        ).read()
    )
    assert unreadable.reason == "HOLDER_DATA_SHREDDED"

    store = FilesystemObjectStore(blob_dir)
    assert await SpacePurger(dossier_pool, store).purge_once(batch=1000) >= 1
    assert not folder.exists() or list(folder.iterdir()) == []
    for table in (
        "documents",
        "access_log",
        "access_log_heads",
        "access_log_organisations",
        "profile_entries",
        "profile_entry_revisions",
    ):
        count = await dossier_pool.fetchval(
            f"SELECT count(*) FROM dossier.{table} WHERE holder_id = $1", uuid.UUID(holder_id)
        )
        assert count == 0, table
    space = await calls.space(holder(holder_id), holder_id)
    assert (space.state, space.document_count) == (res.SPACE_STATE_DELETED, 0)
    # A second delivery of the same event changes nothing; the neighbour is untouched.
    await identity_stream(holder_id, identity_res.ACCOUNT_STATE_ACTIVE, event_id=event_id)
    assert (await calls.space(holder(holder_id), holder_id)).state == res.SPACE_STATE_DELETED
    assert (await calls.space(holder(neighbour), neighbour)).document_count == 1
    assert (blob_dir / "documents" / neighbour / kept.document_id).exists()


async def test_the_export_is_one_zip_of_what_the_holder_may_read(calls: Calls) -> None:
    holder_id = str(uuid.uuid4())
    contents = {"Compte rendu opératoire": make_pdf("CR", ["x" * 5000]), "Ordonnance": make_pdf("Ord", ["y"])}
    deposited = {title: await calls.deposit(holder_id, title, content) for title, content in contents.items()}
    await calls.deposit(holder_id, "Résultat à annoncer", make_pdf("R", ["z"]), invisible_to_holder=True)
    allergy = await calls.allergy(holder_id, "Pénicilline")

    info, archive_bytes = await calls.export(holder(holder_id), holder_id)
    assert (info.content_type, info.document_count, info.profile_entry_count) == ("application/zip", 2, 1)
    assert info.file_name.startswith("carnet-export-") and info.file_name.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        listed = json.loads(archive.read("documents.json"))
        assert sorted(d["metadata"]["title"] for d in listed) == sorted(contents)
        for document in listed:
            content = archive.read(document["file"])
            title = document["metadata"]["title"]
            assert content == contents[title]
            assert hashlib.sha256(content).hexdigest() == deposited[title].sha256 == document["sha256"]
        assert all(name.startswith("documents/") and name.endswith(".pdf") for name in names if "/" in name)
        log = json.loads(archive.read("access-log.json"))
        assert [entry["sequence"] for entry in log] == list(range(1, len(log) + 1))
        [exported] = json.loads(archive.read("profile.json"))
        assert (exported["entry_id"], exported["allergy"]["substance"]) == (allergy.entry_id, "Pénicilline")
        manifest = json.loads(archive.read("manifest.json"))
        assert (manifest["holder_id"], manifest["document_count"]) == (holder_id, 2)
        assert manifest["access_log_head_hash"]

    doctor = Principal(subject=str(uuid.uuid4()), role="professional", profession_code="10", rpps="10000000017")
    refused = await failure(calls.export(doctor, holder_id))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "EXPORT_HOLDER_ONLY")
    page = await calls.stub.ListAccessLogEntries(
        pb.ListAccessLogEntriesRequest(holder_id=holder_id), metadata=calls.auth(holder(holder_id)), timeout=TIMEOUT
    )
    assert page.entries[0].operation == "ExportSpace" and page.entries[0].item_label == "2 documents"
