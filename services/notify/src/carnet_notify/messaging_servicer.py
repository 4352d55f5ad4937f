"""The secure-messaging methods of NotifyService: proto ↔ messaging use cases, nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from carnet.notify.v1 import notify_service_pb2, resources_pb2
from carnet_kit.auth import Principal, current_principal
from carnet_kit.errors import InvalidArgument
from carnet_kit.protoconv import timestamp
from carnet_notify.attachments import AttachmentService
from carnet_notify.messaging import check_attachment_metadata, parse_id
from carnet_notify.messaging_service import MessagingService
from carnet_notify.messaging_store import AttachmentRecord, MessageRecord, ThreadRecord


def thread_proto(record: ThreadRecord) -> resources_pb2.Thread:
    """A stored thread as the contract shows it (unread count: the reader's it was read for)."""
    return resources_pb2.Thread(
        thread_id=str(record.thread_id),
        holder_id=record.holder_id,
        subject=record.subject,
        started_by=record.started_by.to_actor(),
        organisation_id=record.organisation_id,
        participants=[
            resources_pb2.ThreadParticipant(
                subject=participant.subject,
                role=Principal(subject=participant.subject, role=participant.role).to_actor().role,
                display_name=participant.display_name,
                last_read_time=timestamp(participant.last_read_time),
            )
            for participant in record.participants
        ],
        message_count=record.message_count,
        unread_count=record.unread_count,
        create_time=timestamp(record.create_time),
        last_message_time=timestamp(record.last_message_time),
    )


def attachment_proto(record: AttachmentRecord) -> resources_pb2.Attachment:
    """An attachment's metadata (never where or how it is stored)."""
    return resources_pb2.Attachment(
        attachment_id=str(record.attachment_id),
        file_name=record.file_name,
        mime_type=record.mime_type,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        saved_document_id=record.saved_document_id,
        create_time=timestamp(record.create_time),
    )


def message_proto(record: MessageRecord) -> resources_pb2.ThreadMessage:
    """A posted message with its attachments."""
    return resources_pb2.ThreadMessage(
        message_id=str(record.message_id),
        thread_id=str(record.thread_id),
        sender=record.sender.to_actor(),
        sender_display_name=record.sender_display_name,
        body=record.body,
        attachments=[attachment_proto(attachment) for attachment in record.attachments],
        create_time=timestamp(record.create_time),
    )


class MessagingRpcs:
    """Threads, messages and attachments; mixed into :class:`~carnet_notify.servicer.NotifyServicer`."""

    _messaging: MessagingService
    _attachments: AttachmentService

    async def CreateThread(self, request: notify_service_pb2.CreateThreadRequest, context: Any) -> resources_pb2.Thread:
        record = await self._messaging.create_thread(
            current_principal(),
            holder_id=request.thread.holder_id,
            subject=request.thread.subject,
            organisation_id=request.thread.organisation_id,
            body=request.first_message.body,
            attachment_ids=[attachment.attachment_id for attachment in request.first_message.attachments],
            request_id=request.request_id,
        )
        return thread_proto(record)

    async def GetThread(self, request: notify_service_pb2.GetThreadRequest, context: Any) -> resources_pb2.Thread:
        record = await self._messaging.get_thread(current_principal(), parse_id(request.thread_id, "thread_id"))
        return thread_proto(record)

    async def ListThreads(
        self, request: notify_service_pb2.ListThreadsRequest, context: Any
    ) -> notify_service_pb2.ListThreadsResponse:
        page = await self._messaging.list_threads(
            current_principal(),
            holder_id=request.holder_id,
            participant_subject=request.participant_subject,
            unread_only=request.unread_only,
            requested_page_size=request.page_size,
            page_token=request.page_token,
        )
        return notify_service_pb2.ListThreadsResponse(
            threads=[thread_proto(thread) for thread in page.threads],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def MarkThreadRead(
        self, request: notify_service_pb2.MarkThreadReadRequest, context: Any
    ) -> resources_pb2.Thread:
        record = await self._messaging.mark_read(current_principal(), parse_id(request.thread_id, "thread_id"))
        return thread_proto(record)

    async def PostMessage(
        self, request: notify_service_pb2.PostMessageRequest, context: Any
    ) -> resources_pb2.ThreadMessage:
        record = await self._messaging.post_message(
            current_principal(),
            parse_id(request.thread_id, "thread_id"),
            body=request.message.body,
            attachment_ids=[attachment.attachment_id for attachment in request.message.attachments],
            request_id=request.request_id,
        )
        return message_proto(record)

    async def ListMessages(
        self, request: notify_service_pb2.ListMessagesRequest, context: Any
    ) -> notify_service_pb2.ListMessagesResponse:
        page = await self._messaging.list_messages(
            current_principal(),
            parse_id(request.thread_id, "thread_id"),
            requested_page_size=request.page_size,
            page_token=request.page_token,
        )
        return notify_service_pb2.ListMessagesResponse(
            messages=[message_proto(message) for message in page.messages], next_page_token=page.next_page_token
        )

    async def UploadAttachment(
        self, request_iterator: AsyncIterator[notify_service_pb2.UploadAttachmentRequest], context: Any
    ) -> resources_pb2.Attachment:
        caller = current_principal()
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("payload") != "metadata":
            raise InvalidArgument(
                "an upload starts with its metadata, then the content in chunks",
                field="metadata",
                reason="METADATA_MUST_COME_FIRST",
            )
        upload = check_attachment_metadata(first.metadata.thread_id, first.metadata.file_name, first.metadata.mime_type)

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.WhichOneof("payload") != "chunk":
                    raise InvalidArgument(
                        "only the first message carries metadata", field="metadata", reason="FIELD_INVALID"
                    )
                yield message.chunk

        return attachment_proto(await self._attachments.upload(caller, upload, chunks()))

    async def DownloadAttachment(
        self, request: notify_service_pb2.DownloadAttachmentRequest, context: Any
    ) -> AsyncIterator[notify_service_pb2.DownloadAttachmentResponse]:
        record, content = await self._attachments.download(
            current_principal(), parse_id(request.attachment_id, "attachment_id")
        )
        yield notify_service_pb2.DownloadAttachmentResponse(attachment=attachment_proto(record))
        async for chunk in content:
            yield notify_service_pb2.DownloadAttachmentResponse(chunk=chunk)

    async def SaveAttachmentToRecord(
        self, request: notify_service_pb2.SaveAttachmentToRecordRequest, context: Any
    ) -> notify_service_pb2.SaveAttachmentToRecordResponse:
        record = await self._attachments.save_to_record(
            current_principal(),
            parse_id(request.attachment_id, "attachment_id"),
            title=request.title,
            type_code=request.type_code,
            class_code=request.class_code,
        )
        return notify_service_pb2.SaveAttachmentToRecordResponse(
            document_id=record.saved_document_id, attachment=attachment_proto(record)
        )
