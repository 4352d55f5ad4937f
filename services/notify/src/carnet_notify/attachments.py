"""Attachments of secure messages: uploaded, sealed, streamed back, posted, saved into the record.

Content is sealed (AES-256-GCM, ``carnet_kit.crypto``) before it reaches the object
store, with the data key of the thread's holder, so that destroying that key shreds
every attachment of theirs. An upload for a thread not started yet (the first message
of CreateThread) has no holder yet: it is sealed with its uploader's key and resealed
with the holder's when the thread starts. Every read is checked against the SHA-256
recorded at upload; a mismatch, an altered blob or a missing one is DATA_LOSS.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from carnet_kit.auth import Principal
from carnet_kit.crypto import SealedBlobError, open_stream, seal
from carnet_kit.data_keys import KeyOwner
from carnet_kit.errors import Conflict, DataLoss, NotFound, ResourceExhausted
from carnet_kit.objectstore import ObjectStore
from carnet_notify.attachment_keys import AttachmentKeys, holder_key, uploader_key
from carnet_notify.messaging import (
    AttachmentUpload,
    ThreadAccess,
    check_attachment_content,
    check_record_save,
    check_record_saver,
    check_thread_reader,
    check_thread_starter,
    check_thread_writer,
    record_unique_id,
)
from carnet_notify.messaging_store import AttachmentRecord, MessagingStore, NewAttachment, PostedAttachment
from carnet_notify.peers import DossierRecord

log = logging.getLogger(__name__)


def blob_key_for(owner: uuid.UUID, attachment_id: uuid.UUID) -> str:
    """Where an attachment's sealed content lives; also the context its sealing is bound to."""
    return f"attachments/{owner}/{attachment_id}"


def thread_not_found() -> NotFound:
    """The answer for a thread that does not exist."""
    return NotFound("no such conversation", reason="THREAD_NOT_FOUND")


def attachment_not_found(attachment_id: uuid.UUID) -> NotFound:
    """The answer for an attachment that does not exist, or that the caller may not know of."""
    return NotFound("no such attachment", reason="ATTACHMENT_NOT_FOUND", metadata={"attachment_id": str(attachment_id)})


@dataclass
class Binding:
    """Attachments made ready to post in a holder's thread, and the blobs to tidy up afterwards.

    Resealing writes new blobs first; :meth:`undo` removes them when the post fails,
    :meth:`done` removes the blobs they replace once it is stored.
    """

    blobs: ObjectStore
    posted: tuple[PostedAttachment, ...] = ()
    written: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)

    async def undo(self) -> None:
        """The post failed: forget the new blobs."""
        for key in self.written:
            await asyncio.shield(self.blobs.delete(key))

    async def done(self) -> None:
        """The post is stored: the blobs sealed with the uploader's key are no longer needed."""
        for key in self.replaced:
            try:
                await self.blobs.delete(key)
            except Exception:
                log.warning("could not delete the replaced attachment blob %s", key, exc_info=True)


class AttachmentService:
    """The attachment use cases: upload, download, post, save to the record."""

    def __init__(
        self,
        store: MessagingStore,
        blobs: ObjectStore,
        keys: AttachmentKeys,
        record: DossierRecord,
        *,
        max_bytes: int,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._keys = keys
        self._record = record
        self._max_bytes = max_bytes

    async def _thread(self, thread_id: uuid.UUID) -> ThreadAccess:
        access = await self._store.thread_access(thread_id)
        if access is None:
            raise thread_not_found()
        return access

    async def _read_within_limit(self, chunks: AsyncIterator[bytes]) -> bytes:
        """The whole content; RESOURCE_EXHAUSTED as soon as it passes the limit, without reading further."""
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self._max_bytes:
                raise ResourceExhausted(
                    f"the attachment exceeds the size limit of {self._max_bytes} bytes",
                    reason="ATTACHMENT_TOO_LARGE",
                    metadata={"limit_bytes": str(self._max_bytes)},
                )
            parts.append(chunk)
        return b"".join(parts)

    async def _seal_and_store(self, owner: KeyOwner, attachment_id: uuid.UUID, content: bytes) -> str:
        blob_key = blob_key_for(owner.owner_id, attachment_id)
        data_key = await self._keys.data_key(owner.owner_id, create_for=owner)
        await self._blobs.put(blob_key, seal(data_key, blob_key, content))
        return blob_key

    async def upload(
        self, caller: Principal, upload: AttachmentUpload, chunks: AsyncIterator[bytes]
    ) -> AttachmentRecord:
        """Store an attachment sealed, for a later message of the caller.

        For a thread, the caller must be able to write in it; without one, the caller must
        be able to start a thread (the attachment is for its first message).
        """
        if upload.thread_id is None:
            check_thread_starter(caller)
            owner = uploader_key(caller)
        else:
            thread = await self._thread(upload.thread_id)
            check_thread_writer(caller, thread)
            owner = holder_key(thread.holder_id)
        content = await self._read_within_limit(chunks)
        check_attachment_content(content, upload.mime_type)
        attachment_id = uuid.uuid4()
        blob_key = await self._seal_and_store(owner, attachment_id, content)
        try:
            return await self._store.insert_attachment(
                NewAttachment(
                    attachment_id=attachment_id,
                    thread_id=upload.thread_id,
                    uploader=caller,
                    file_name=upload.file_name,
                    mime_type=upload.mime_type,
                    size_bytes=len(content),
                    sha256=hashlib.sha256(content).hexdigest(),
                    blob_key=blob_key,
                    key_owner_id=owner.owner_id,
                )
            )
        except BaseException:
            await asyncio.shield(self._blobs.delete(blob_key))
            raise

    async def _visible(self, caller: Principal, attachment_id: uuid.UUID) -> AttachmentRecord:
        """An attachment the caller may read: a posted one of a thread they read, or their own upload."""
        record = await self._store.get_attachment(attachment_id)
        if record is None:
            raise attachment_not_found(attachment_id)
        if record.message_id is None or record.thread_id is None:
            # Not posted yet: nobody but its uploader knows of it.
            if not record.uploaded_by_caller(caller):
                raise attachment_not_found(attachment_id)
            return record
        check_thread_reader(caller, await self._thread(record.thread_id))
        return record

    async def _plain(self, record: AttachmentRecord, data_key: bytes) -> AsyncIterator[bytes]:
        """The decrypted content as it streams from the store, checked against the recorded size and SHA-256."""
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in open_stream(data_key, record.blob_key, self._blobs.stream(record.blob_key)):
                digest.update(chunk)
                size += len(chunk)
                yield chunk
        except SealedBlobError as exc:
            raise DataLoss(
                f"the stored attachment failed its integrity check: {exc}", reason="CONTENT_INTEGRITY_FAILED"
            ) from None
        except NotFound:
            raise DataLoss("the stored attachment is missing", reason="CONTENT_MISSING") from None
        if size != record.size_bytes or digest.hexdigest() != record.sha256:
            raise DataLoss("the stored attachment failed its integrity check", reason="CONTENT_INTEGRITY_FAILED")

    async def _read_plain(self, record: AttachmentRecord) -> bytes:
        data_key = await self._keys.data_key(record.key_owner_id)
        return b"".join([chunk async for chunk in self._plain(record, data_key)])

    async def download(
        self, caller: Principal, attachment_id: uuid.UUID
    ) -> tuple[AttachmentRecord, AsyncIterator[bytes]]:
        """The attachment and its content stream (DATA_LOSS in the stream if the stored bytes changed)."""
        record = await self._visible(caller, attachment_id)
        # Unwrapped before the first byte goes out: a key problem is answered as such.
        data_key = await self._keys.data_key(record.key_owner_id)
        return record, self._plain(record, data_key)

    async def bind(self, attachments: Sequence[AttachmentRecord], holder_id: str) -> Binding:
        """Make the caller's unposted attachments ready to post in a thread of ``holder_id``.

        Those uploaded for a thread to start are resealed with the holder's key (their
        content checked on the way); those uploaded for the thread already are.
        """
        owner = holder_key(holder_id)
        binding = Binding(self._blobs)
        posted: list[PostedAttachment] = []
        try:
            for record in attachments:
                if record.key_owner_id == owner.owner_id:
                    posted.append(PostedAttachment(record.attachment_id, record.blob_key, owner.owner_id))
                    continue
                content = await self._read_plain(record)
                blob_key = await self._seal_and_store(owner, record.attachment_id, content)
                binding.written.append(blob_key)
                binding.replaced.append(record.blob_key)
                posted.append(PostedAttachment(record.attachment_id, blob_key, owner.owner_id))
        except BaseException:
            await binding.undo()
            raise
        binding.posted = tuple(posted)
        return binding

    async def save_to_record(
        self, caller: Principal, attachment_id: uuid.UUID, *, title: str, type_code: str, class_code: str
    ) -> AttachmentRecord:
        """Deposit a posted attachment into its holder's record, as the caller; the attachment with the document id.

        The deposit's uniqueId comes from the attachment, so a retry (even after a lost
        answer) gives the same document. Saving it again with another title or codes is
        ALREADY_EXISTS ``ATTACHMENT_ALREADY_SAVED`` naming the document.
        """
        record = await self._store.get_attachment(attachment_id)
        if record is None or record.message_id is None or record.thread_id is None:
            raise attachment_not_found(attachment_id)
        thread = await self._thread(record.thread_id)
        check_record_saver(caller, thread)
        request = check_record_save(
            title=title,
            type_code=type_code,
            class_code=class_code,
            file_name=record.file_name,
            mime_type=record.mime_type,
        )
        saved_as = {"title": request.title, "type_code": request.type_code, "class_code": request.class_code}
        if record.saved_document_id:
            if record.saved_as == saved_as:
                return record
            raise Conflict(
                "this attachment is already a document of the record",
                reason="ATTACHMENT_ALREADY_SAVED",
                metadata={"document_id": record.saved_document_id},
            )
        content = await self._read_plain(record)
        document_id = await self._record.deposit(
            holder_id=thread.holder_id, unique_id=record_unique_id(attachment_id), request=request, content=content
        )
        return await self._store.mark_saved(attachment_id, document_id, saved_as)
