"""Attachments: sealed at rest, streamed back intact, size and type checked while uploading, integrity on
every read, and "save to my record" against the real dossier (with the real consent) started in-process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from carnet.dossier.v1 import dossier_service_pb2 as dossier_pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as dossier_grpc
from carnet.dossier.v1 import resources_pb2 as dossier_res
from carnet.identity.v1 import events_pb2 as identity_events
from carnet.identity.v1 import resources_pb2 as identity_resources
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_consent.app import build as build_consent
from carnet_consent.settings import ConsentSettings
from carnet_dossier.app import build as build_dossier
from carnet_dossier.settings import DossierSettings
from carnet_kit.auth import Principal
from carnet_kit.config import ConfigError, HostPort, load
from carnet_kit.crypto import new_master_key_line
from carnet_kit.db import create_pool
from carnet_kit.server import ServiceApp
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import TokenFactory, free_port, publish_event, wait_until
from carnet_notify.app import build
from carnet_notify.settings import NotifySettings

Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]
Stub = notify_service_pb2_grpc.NotifyServiceStub
CHUNK = 32 * 1024


def professional() -> Principal:
    return Principal(
        subject=str(uuid.uuid4()),
        role="professional",
        profession_code="10",
        rpps="10003456789",
        organisation_id="org-1",
    )


def holder() -> Principal:
    return Principal(subject=str(uuid.uuid4()), role="holder")


def pdf(marker: str, size: int = 150_000) -> bytes:
    """A PDF-looking file spanning several sealed segments, full of a recognisable marker."""
    line = f"BT /F1 12 Tf ({marker}) Tj ET\n".encode()
    return b"%PDF-1.4\n" + line * (size // len(line)) + b"%%EOF\n"


JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"\x11" * 200 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x22" * 200


async def failure(call: Any) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


async def upload(
    stub: Stub,
    as_caller: Metadata,
    who: Principal,
    content: bytes,
    *,
    thread_id: str = "",
    file_name: str = "compte-rendu.pdf",
    mime_type: str = "application/pdf",
) -> resources_pb2.Attachment:
    async def requests() -> AsyncIterator[notify_service_pb2.UploadAttachmentRequest]:
        yield notify_service_pb2.UploadAttachmentRequest(
            metadata=notify_service_pb2.AttachmentMetadata(
                thread_id=thread_id, file_name=file_name, mime_type=mime_type
            )
        )
        for start in range(0, len(content), CHUNK):
            yield notify_service_pb2.UploadAttachmentRequest(chunk=content[start : start + CHUNK])

    attachment: resources_pb2.Attachment = await stub.UploadAttachment(requests(), metadata=as_caller(who))
    return attachment


async def download(stub: Stub, as_caller: Metadata, who: Principal, attachment_id: str) -> tuple[Any, bytes]:
    call = stub.DownloadAttachment(
        notify_service_pb2.DownloadAttachmentRequest(attachment_id=attachment_id), metadata=as_caller(who)
    )
    first, parts = None, []
    async for message in call:
        if first is None:
            first = message.attachment
        else:
            parts.append(message.chunk)
    return first, b"".join(parts)


async def start_thread(
    stub: Stub, as_caller: Metadata, starter: Principal, holder_id: str, attachment_ids: Sequence[str] = ()
) -> resources_pb2.Thread:
    thread: resources_pb2.Thread = await stub.CreateThread(
        notify_service_pb2.CreateThreadRequest(
            thread=resources_pb2.Thread(holder_id=holder_id, subject="Compte rendu"),
            first_message=resources_pb2.ThreadMessage(
                body="Voici le compte rendu.",
                attachments=[resources_pb2.Attachment(attachment_id=a) for a in attachment_ids],
            ),
        ),
        metadata=as_caller(starter),
    )
    return thread


async def post(
    stub: Stub, as_caller: Metadata, sender: Principal, thread_id: str, attachment_ids: Sequence[str], body: str = ""
) -> resources_pb2.ThreadMessage:
    message: resources_pb2.ThreadMessage = await stub.PostMessage(
        notify_service_pb2.PostMessageRequest(
            thread_id=thread_id,
            message=resources_pb2.ThreadMessage(
                body=body, attachments=[resources_pb2.Attachment(attachment_id=a) for a in attachment_ids]
            ),
        ),
        metadata=as_caller(sender),
    )
    return message


def stored_files(blob_dir: Path) -> list[Path]:
    return [p for p in blob_dir.rglob("*") if p.is_file()]


def stored_blob(blob_dir: Path, attachment_id: str) -> Path:
    [path] = [p for p in blob_dir.rglob(attachment_id) if p.is_file()]
    return path


# ------------------------------------------------------------------------- sealed at rest


async def test_an_attachment_is_stored_sealed_and_downloads_byte_for_byte(
    stub: Stub, as_caller: Metadata, blob_dir: Path
) -> None:
    doctor, me = professional(), holder()
    thread = await start_thread(stub, as_caller, doctor, me.subject)
    content = pdf("CONFIDENTIEL-ECHOGRAPHIE")
    attachment = await upload(stub, as_caller, doctor, content, thread_id=thread.thread_id)
    assert attachment.size_bytes == len(content) and attachment.mime_type == "application/pdf"
    assert attachment.file_name == "compte-rendu.pdf" and len(attachment.sha256) == 64

    stored = stored_blob(blob_dir, attachment.attachment_id)
    assert stored.parent.name == me.subject, "sealed with the holder's key, kept under the holder"
    sealed = stored.read_bytes()
    assert sealed.startswith(b"CRB1") and len(sealed) > len(content)
    assert b"CONFIDENTIEL" not in sealed and b"%PDF" not in sealed

    # The uploader reads it back before posting; once posted, both sides do.
    assert (await download(stub, as_caller, doctor, attachment.attachment_id))[1] == content
    message = await post(stub, as_caller, doctor, thread.thread_id, [attachment.attachment_id], "Le compte rendu.")
    assert [a.attachment_id for a in message.attachments] == [attachment.attachment_id]
    described, body = await download(stub, as_caller, me, attachment.attachment_id)
    assert body == content and described.sha256 == attachment.sha256


async def test_an_upload_for_a_thread_to_start_is_resealed_with_the_holders_key(
    stub: Stub, as_caller: Metadata, blob_dir: Path
) -> None:
    doctor, me = professional(), holder()
    content = pdf("ORDONNANCE-DU-JOUR", 80_000)
    first = await upload(stub, as_caller, doctor, content)
    image = await upload(stub, as_caller, doctor, JPEG, file_name="photo.jpg", mime_type="image/JPG")
    assert image.mime_type == "image/jpeg"
    staged = stored_blob(blob_dir, first.attachment_id)
    assert staged.parent.name != me.subject
    # Not posted yet: nobody but the uploader knows of it.
    hidden = await failure(download(stub, as_caller, me, first.attachment_id))
    assert (hidden.code, hidden.reason) == (grpc.StatusCode.NOT_FOUND, "ATTACHMENT_NOT_FOUND")

    thread = await start_thread(stub, as_caller, doctor, me.subject, [first.attachment_id, image.attachment_id])
    resealed = stored_blob(blob_dir, first.attachment_id)
    assert resealed.parent.name == me.subject and not staged.exists()
    assert b"ORDONNANCE" not in resealed.read_bytes()
    assert (await download(stub, as_caller, me, first.attachment_id))[1] == content
    assert (await download(stub, as_caller, me, image.attachment_id))[1] == JPEG
    [page] = [
        await stub.ListMessages(
            notify_service_pb2.ListMessagesRequest(thread_id=thread.thread_id), metadata=as_caller(me)
        )
    ]
    assert [a.attachment_id for a in page.messages[0].attachments] == [first.attachment_id, image.attachment_id]
    # An attachment goes with one message only.
    again = await failure(post(stub, as_caller, doctor, thread.thread_id, [first.attachment_id]))
    assert (again.code, again.reason) == (grpc.StatusCode.NOT_FOUND, "ATTACHMENT_NOT_FOUND")


async def test_who_may_upload_post_and_download_attachments(stub: Stub, as_caller: Metadata) -> None:
    doctor, me, stranger = professional(), holder(), professional()
    thread = await start_thread(stub, as_caller, doctor, me.subject)
    # The holder attaches to their reply; a holder cannot upload for a thread to start.
    mine = await upload(
        stub,
        as_caller,
        me,
        b"Ma tension ce matin : 12/8\n",
        thread_id=thread.thread_id,
        file_name="tension.txt",
        mime_type="text/plain; charset=utf-8",
    )
    assert mine.mime_type == "text/plain"
    no_thread = await failure(upload(stub, as_caller, me, b"bonjour\n", file_name="a.txt", mime_type="text/plain"))
    assert (no_thread.code, no_thread.reason) == (grpc.StatusCode.PERMISSION_DENIED, "THREAD_START_FORBIDDEN")
    intruder = await failure(
        upload(stub, as_caller, stranger, JPEG, thread_id=thread.thread_id, mime_type="image/jpeg")
    )
    assert (intruder.code, intruder.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_A_PARTICIPANT")
    unknown = await failure(upload(stub, as_caller, doctor, JPEG, thread_id=str(uuid.uuid4()), mime_type="image/jpeg"))
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND")
    # Someone else's upload cannot be posted.
    taken = await failure(post(stub, as_caller, doctor, thread.thread_id, [mine.attachment_id], "Je prends."))
    assert (taken.code, taken.reason) == (grpc.StatusCode.NOT_FOUND, "ATTACHMENT_NOT_FOUND")
    await post(stub, as_caller, me, thread.thread_id, [mine.attachment_id])
    assert (await download(stub, as_caller, doctor, mine.attachment_id))[1] == b"Ma tension ce matin : 12/8\n"
    refused = await failure(download(stub, as_caller, stranger, mine.attachment_id))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_A_PARTICIPANT")
    absent = await failure(download(stub, as_caller, doctor, str(uuid.uuid4())))
    assert (absent.code, absent.reason) == (grpc.StatusCode.NOT_FOUND, "ATTACHMENT_NOT_FOUND")


# ------------------------------------------------------------------------- what an upload may be


@pytest.fixture
async def small_limit_stub(run_app: Any, smtp_sink: Any) -> AsyncIterator[Stub]:
    """The app with a 64 KiB attachment limit."""
    async with run_app(smtp_port=smtp_sink.port, max_attachment_bytes=64 * 1024) as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            yield notify_service_pb2_grpc.NotifyServiceStub(channel)


async def test_an_oversize_upload_is_cut_off_while_it_streams(
    small_limit_stub: Stub, as_caller: Metadata, blob_dir: Path
) -> None:
    doctor, me = professional(), holder()
    thread = await start_thread(small_limit_stub, as_caller, doctor, me.subject)
    sent = 0

    async def endless() -> AsyncIterator[notify_service_pb2.UploadAttachmentRequest]:
        nonlocal sent
        yield notify_service_pb2.UploadAttachmentRequest(
            metadata=notify_service_pb2.AttachmentMetadata(
                thread_id=thread.thread_id, file_name="scanner.pdf", mime_type="application/pdf"
            )
        )
        yield notify_service_pb2.UploadAttachmentRequest(chunk=b"%PDF-1.4\n")
        while True:  # a sender that would never stop: only the server's limit ends the call
            sent += 1
            yield notify_service_pb2.UploadAttachmentRequest(chunk=b"0" * 16 * 1024)
            await asyncio.sleep(0.005)

    async def call() -> Any:
        return await small_limit_stub.UploadAttachment(endless(), metadata=as_caller(doctor))

    error = await failure(asyncio.wait_for(call(), timeout=30))
    assert (error.code, error.reason, error.metadata["limit_bytes"]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "ATTACHMENT_TOO_LARGE",
        str(64 * 1024),
    )
    assert sent < 200, "the upload was read to its end instead of being cut off"
    assert not stored_files(blob_dir), "nothing of it is stored"
    # Within the limit is fine.
    fits = await upload(small_limit_stub, as_caller, doctor, pdf("PETIT", 60 * 1024), thread_id=thread.thread_id)
    assert fits.size_bytes <= 64 * 1024


@pytest.mark.parametrize(
    ("content", "mime_type", "reason", "field"),
    [
        (PNG, "application/pdf", "FIELD_INVALID", "chunk"),
        (JPEG, "image/png", "FIELD_INVALID", "chunk"),
        (b"%PDF-1.4 not an image", "image/jpeg", "FIELD_INVALID", "chunk"),
        (b"\xff\xfe\x00binary\x00", "text/plain", "FIELD_INVALID", "chunk"),
        (b"texte\x00avec un octet nul", "text/plain", "FIELD_INVALID", "chunk"),
        (b"", "application/pdf", "ATTACHMENT_EMPTY", "chunk"),
        (b"PK\x03\x04", "application/zip", "FIELD_INVALID", "metadata.mime_type"),
    ],
    ids=["png-as-pdf", "jpeg-as-png", "pdf-as-jpeg", "binary-as-text", "nul-in-text", "empty", "zip"],
)
async def test_content_that_is_not_its_declared_type_is_refused(
    stub: Stub, as_caller: Metadata, blob_dir: Path, content: bytes, mime_type: str, reason: str, field: str
) -> None:
    doctor, me = professional(), holder()
    thread = await start_thread(stub, as_caller, doctor, me.subject)
    error = await failure(upload(stub, as_caller, doctor, content, thread_id=thread.thread_id, mime_type=mime_type))
    assert (error.code, error.reason, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, reason, field)
    assert not stored_files(blob_dir)


async def test_an_upload_starts_with_its_metadata_and_names_a_plain_file(stub: Stub, as_caller: Metadata) -> None:
    doctor = professional()

    async def chunk_first() -> AsyncIterator[notify_service_pb2.UploadAttachmentRequest]:
        yield notify_service_pb2.UploadAttachmentRequest(chunk=b"%PDF-1.4\n")

    async def nothing() -> AsyncIterator[notify_service_pb2.UploadAttachmentRequest]:
        return
        yield

    for requests in (chunk_first(), nothing()):
        error = await failure(stub.UploadAttachment(requests, metadata=as_caller(doctor)))
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "METADATA_MUST_COME_FIRST")
    for name in ("", "../../etc/passwd", "a\nb.pdf"):
        error = await failure(upload(stub, as_caller, doctor, pdf("X", 100), file_name=name))
        assert (error.code, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "metadata.file_name")
    error = await failure(upload(stub, as_caller, doctor, pdf("X", 100), thread_id="nope"))
    assert error.metadata["field"] == "metadata.thread_id"


# ------------------------------------------------------------------------- integrity on every read


async def test_altered_or_missing_stored_bytes_are_data_loss(stub: Stub, as_caller: Metadata, blob_dir: Path) -> None:
    doctor, me = professional(), holder()
    thread = await start_thread(stub, as_caller, doctor, me.subject)
    first = await upload(stub, as_caller, doctor, pdf("A"), thread_id=thread.thread_id)
    second = await upload(stub, as_caller, doctor, pdf("B"), thread_id=thread.thread_id)
    await post(stub, as_caller, doctor, thread.thread_id, [first.attachment_id, second.attachment_id])

    path = stored_blob(blob_dir, first.attachment_id)
    sealed = bytearray(path.read_bytes())
    sealed[len(sealed) // 2] ^= 0x01
    path.write_bytes(bytes(sealed))
    error = await failure(download(stub, as_caller, me, first.attachment_id))
    assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "CONTENT_INTEGRITY_FAILED")

    stored_blob(blob_dir, second.attachment_id).unlink()
    error = await failure(download(stub, as_caller, me, second.attachment_id))
    assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "CONTENT_MISSING")


# ------------------------------------------------------------------------- the master keys


async def test_a_bad_master_key_file_stops_the_build_naming_the_variable(
    base_settings: NotifySettings, tmp_path: Path
) -> None:
    garbled = tmp_path / "garbled-keys"
    garbled.write_text("k1:not-base64!\n")
    # No database behind this URL: the key file is read before anything is connected.
    nowhere = "postgresql://postgres@127.0.0.1:1/none"
    for key_file in (tmp_path / "missing", garbled):
        with pytest.raises(ConfigError) as raised:
            await build(replace(base_settings, master_key_file=key_file, database_url=nowhere))
        assert raised.value.variable == "CARNET_MASTER_KEY_FILE"


def test_the_process_exits_78_on_a_bad_master_key_file(tmp_path: Path, database_url: str, redis_url: str) -> None:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CARNET_")},
        "CARNET_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
        "CARNET_DATABASE_URL": database_url,
        "CARNET_REDIS_URL": redis_url,
        "CARNET_PROFILE": "test",
        "CARNET_SMTP_HOST": "127.0.0.1",
        "CARNET_SMTP_PORT": "2525",
        "CARNET_MAIL_FROM": "ne-pas-repondre@carnet.test",
        "CARNET_BLOB_DIR": str(tmp_path / "blobs"),
        "CARNET_MASTER_KEY_FILE": str(tmp_path / "no-such-file"),
        "CARNET_SERVICE_SECRET_FILE": str(tmp_path / "service-secret"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "carnet_notify"], env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 78, done.stderr
    assert "CARNET_MASTER_KEY_FILE" in done.stderr


# ------------------------------------------------------------------------- save to my record


@pytest.fixture
async def consent_app(database_url: str, redis_url: str, token_factory: TokenFactory) -> AsyncIterator[ServiceApp]:
    """The real consent service, trusting the test token factory."""
    settings = ConsentSettings(
        grpc_listen=HostPort("127.0.0.1", free_port()), database_url=database_url, redis_url=redis_url, profile="test"
    )
    app = await build_consent(settings, verifier=token_factory.verifier())
    await app.start()
    yield app
    await app.stop(0)


@pytest.fixture
async def dossier_app(
    database_url: str, redis_url: str, consent_app: ServiceApp, tmp_path: Path, token_factory: TokenFactory
) -> AsyncIterator[ServiceApp]:
    """The real dossier service, with its own object store and master keys, asking the real consent."""
    keys = tmp_path / "dossier-master-keys"
    keys.write_text(new_master_key_line("d1") + "\n")
    environ = {
        "CARNET_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
        "CARNET_DATABASE_URL": database_url,
        "CARNET_REDIS_URL": redis_url,
        "CARNET_PROFILE": "test",
        "CARNET_CONSENT_ADDR": f"127.0.0.1:{consent_app.port}",
        "CARNET_IDENTITY_ADDR": f"127.0.0.1:{free_port()}",
        "CARNET_BLOB_STORE": "fs",
        "CARNET_BLOB_DIR": str(tmp_path / "dossier-blobs"),
        "CARNET_MASTER_KEY_FILE": str(keys),
        "CARNET_IDENTITY_EVENTS_STREAM": f"carnet:test:{uuid.uuid4().hex[:12]}:events:identity",
        "CARNET_CALL_TIMEOUT_SECONDS": "3",
    }
    app = await build_dossier(load(DossierSettings, environ), verifier=token_factory.verifier())
    await app.start()
    yield app
    await app.stop(0)


@pytest.fixture
async def linked(run_app: Any, smtp_sink: Any, dossier_app: ServiceApp) -> AsyncIterator[tuple[Stub, Any]]:
    """Notify pointed at the running dossier, and a stub on dossier."""
    async with run_app(smtp_port=smtp_sink.port, dossier_addr=HostPort("127.0.0.1", dossier_app.port)) as app:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as notify_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{dossier_app.port}") as dossier_channel,
        ):
            yield (
                notify_service_pb2_grpc.NotifyServiceStub(notify_channel),
                dossier_grpc.DossierServiceStub(dossier_channel),
            )


@pytest.fixture
async def notify_pool(database_url: str, linked: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "notify", min_size=1, max_size=2)
    yield pool
    await pool.close()


async def save(
    stub: Stub, as_caller: Metadata, who: Principal, attachment_id: str, *, title: str = "", type_code: str = "11502-2"
) -> notify_service_pb2.SaveAttachmentToRecordResponse:
    response: notify_service_pb2.SaveAttachmentToRecordResponse = await stub.SaveAttachmentToRecord(
        notify_service_pb2.SaveAttachmentToRecordRequest(attachment_id=attachment_id, title=title, type_code=type_code),
        metadata=as_caller(who),
    )
    return response


async def test_the_holder_saves_an_attachment_into_their_record_once(
    linked: tuple[Stub, Any], notify_pool: asyncpg.Pool, as_caller: Metadata
) -> None:
    stub, dossier = linked
    doctor, me = professional(), holder()
    content = pdf("BILAN-SANGUIN-2026", 90_000)
    staged = await upload(stub, as_caller, doctor, content, file_name="bilan-sanguin.pdf")
    await start_thread(stub, as_caller, doctor, me.subject, [staged.attachment_id])

    saved = await save(stub, as_caller, me, staged.attachment_id)
    assert saved.document_id and saved.attachment.saved_document_id == saved.document_id
    document = await dossier.GetDocument(
        dossier_pb.GetDocumentRequest(document_id=saved.document_id), metadata=as_caller(me)
    )
    assert document.holder_own is True
    assert document.deposited_by.subject == me.subject
    assert document.metadata.holder_id == me.subject
    assert document.metadata.unique_id == f"notify-attachment-{staged.attachment_id}"
    assert document.metadata.title == "bilan-sanguin.pdf" and document.metadata.type_code == "11502-2"
    assert document.metadata.format == dossier_res.DOCUMENT_FORMAT_PDF
    assert document.sha256 == staged.sha256
    parts = [
        message.chunk
        async for message in dossier.DownloadDocument(
            dossier_pb.DownloadDocumentRequest(document_id=saved.document_id), metadata=as_caller(me)
        )
        if message.WhichOneof("payload") == "chunk"
    ]
    assert b"".join(parts) == content

    # A retry returns the same document; so does one after notify lost the answer (dossier's uniqueId).
    assert (await save(stub, as_caller, me, staged.attachment_id)).document_id == saved.document_id
    await notify_pool.execute(
        "UPDATE attachments SET saved_document_id = '', saved_as = NULL WHERE attachment_id = $1",
        uuid.UUID(staged.attachment_id),
    )
    assert (await save(stub, as_caller, me, staged.attachment_id)).document_id == saved.document_id
    listed = await dossier.ListDocuments(dossier_pb.ListDocumentsRequest(holder_id=me.subject), metadata=as_caller(me))
    assert [d.document_id for d in listed.documents] == [saved.document_id]
    # Saving it again as something else is refused, naming the document it already is.
    error = await failure(save(stub, as_caller, me, staged.attachment_id, title="Autre titre"))
    assert (error.code, error.reason, error.metadata["document_id"]) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "ATTACHMENT_ALREADY_SAVED",
        saved.document_id,
    )


async def test_only_the_holder_saves_and_only_what_the_record_can_hold(
    linked: tuple[Stub, Any], as_caller: Metadata
) -> None:
    stub, dossier = linked
    doctor, me = professional(), holder()
    thread = await start_thread(stub, as_caller, doctor, me.subject)
    report = await upload(stub, as_caller, doctor, pdf("CR"), thread_id=thread.thread_id)
    picture = await upload(
        stub, as_caller, doctor, PNG, thread_id=thread.thread_id, file_name="x.png", mime_type="image/png"
    )
    unposted = await upload(stub, as_caller, doctor, pdf("BROUILLON"), thread_id=thread.thread_id)
    await post(stub, as_caller, doctor, thread.thread_id, [report.attachment_id, picture.attachment_id])

    by_doctor = await failure(save(stub, as_caller, doctor, report.attachment_id))
    assert (by_doctor.code, by_doctor.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    by_stranger = await failure(save(stub, as_caller, holder(), report.attachment_id))
    assert (by_stranger.code, by_stranger.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_A_PARTICIPANT")
    not_posted = await failure(save(stub, as_caller, me, unposted.attachment_id))
    assert (not_posted.code, not_posted.reason) == (grpc.StatusCode.NOT_FOUND, "ATTACHMENT_NOT_FOUND")
    png = await failure(save(stub, as_caller, me, picture.attachment_id))
    assert (png.code, png.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "attachment_id")
    missing_type = await failure(save(stub, as_caller, me, report.attachment_id, type_code=""))
    assert (missing_type.code, missing_type.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "type_code")
    # Dossier's refusal comes back naming this request's field.
    unknown_type = await failure(save(stub, as_caller, me, report.attachment_id, type_code="00000-0"))
    assert (unknown_type.code, unknown_type.reason, unknown_type.metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_TYPE_CODE",
        "type_code",
    )
    listed = await dossier.ListDocuments(dossier_pb.ListDocumentsRequest(holder_id=me.subject), metadata=as_caller(me))
    assert list(listed.documents) == []
    # Dossier and consent decide on the caller, not on notify: a representation consent never
    # heard of (no identity event recorded it) is refused by them.
    parent = Principal(subject=str(uuid.uuid4()), role="representative", acting_for=me.subject)
    unknown_parent = await failure(save(stub, as_caller, parent, report.attachment_id))
    assert (unknown_parent.code, unknown_parent.domain) == (grpc.StatusCode.PERMISSION_DENIED, "dossier.carnet")


# ------------------------------------------------------------------------- a deleted space


async def test_a_deleted_space_shreds_its_attachments_and_leaves_nothing_in_notify(
    app: ServiceApp, stub: Stub, as_caller: Metadata, blob_dir: Path, redis_client: Any, database_url: str
) -> None:
    doctor, me, other = professional(), holder(), holder()
    mine = await start_thread(stub, as_caller, doctor, me.subject)
    theirs = await start_thread(stub, as_caller, doctor, other.subject)
    content = pdf("COMPTE-RENDU-A-EFFACER")
    attachment = await upload(stub, as_caller, doctor, content, thread_id=mine.thread_id)
    await post(stub, as_caller, doctor, mine.thread_id, [attachment.attachment_id], "Le compte rendu.")
    kept = await upload(stub, as_caller, doctor, pdf("AUTRE-PATIENT"), thread_id=theirs.thread_id)
    await post(stub, as_caller, doctor, theirs.thread_id, [kept.attachment_id])
    sealed = stored_blob(blob_dir, attachment.attachment_id)
    assert (await stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=me.subject), metadata=as_caller(me)
    )).items

    settings = app.settings
    assert isinstance(settings, NotifySettings)
    deleted = identity_events.AccountStateChangedEvent(
        person_id=me.subject,
        previous_state=identity_resources.ACCOUNT_STATE_CLOSED,
        state=identity_resources.ACCOUNT_STATE_DELETED,
    )
    event_id = await publish_event(redis_client, settings.identity_events_stream, deleted)
    pool = await create_pool(database_url, "notify")
    try:
        await wait_until(
            lambda: _count(pool, "SELECT count(*) FROM threads WHERE holder_id = $1", me.subject, want=0), timeout=15
        )
        # The holder's key is gone: what was sealed under it cannot be opened, and the object is removed.
        assert await pool.fetchval("SELECT count(*) FROM data_keys WHERE owner_id = $1", uuid.UUID(me.subject)) == 0
        assert not sealed.exists()
        for table, column in (
            ("notifications", "recipient_id"),
            ("inbox_items", "recipient_id"),
            ("preferences", "recipient_id"),
            ("prevention_reminders", "recipient_id"),
        ):
            assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", me.subject) == 0, table
        gone = await failure(download(stub, as_caller, doctor, attachment.attachment_id))
        assert gone.code == grpc.StatusCode.NOT_FOUND
        # Another holder's conversation is untouched.
        assert (await download(stub, as_caller, other, kept.attachment_id))[1] == pdf("AUTRE-PATIENT")
        assert await pool.fetchval("SELECT count(*) FROM threads WHERE holder_id = $1", other.subject) == 1
        # The same event again: nothing more to do, nothing breaks.
        await publish_event(redis_client, settings.identity_events_stream, deleted, event_id=event_id)
        await wait_until(
            lambda: _count(pool, "SELECT count(*) FROM processed_events WHERE event_id = $1", uuid.UUID(event_id), want=1)
        )
    finally:
        await pool.close()


async def _count(pool: Any, query: str, value: Any, *, want: int) -> bool:
    return bool(await pool.fetchval(query, value) == want)
