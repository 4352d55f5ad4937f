"""The REST face of notify (issue 4): inbox, preferences, secure messaging with attachments, prevention."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Security, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from carnet.notify.v1 import notify_service_pb2 as notify_pb
from carnet_gateway.protojson import from_json, to_json
from carnet_gateway.rpc_routes import CALLER_HOLDER, CALLER_SUBJECT, RpcRoute, router_for
from carnet_gateway.security import Caller, authenticate, bearer_scheme
from carnet_kit.errors import InvalidArgument

NTF = "notify"
PAGE = ("page_size", "page_token")
UPLOAD_CHUNK = 64 * 1024

ROUTES: list[RpcRoute] = [
    RpcRoute("POST", "/api/v1/inbox/{item_id}/read", "mark_inbox_item_read", "Mark an in-app notification read",
             "inbox", NTF, "MarkInboxItemRead", notify_pb.MarkInboxItemReadRequest, path_fields={"item_id": "item_id"}),
    RpcRoute("GET", "/api/v1/preferences", "get_preferences", "The caller's notification preferences per channel",
             "preferences", NTF, "GetPreferences", notify_pb.GetPreferencesRequest, query_fields=("recipient_id",),
             caller_defaults={"recipient_id": CALLER_SUBJECT}),
    RpcRoute("PATCH", "/api/v1/preferences", "update_preferences",
             'Change preferences: {"preferences": {"channels": [...]}, "update_mask": "channels"}', "preferences",
             NTF, "UpdatePreferences", notify_pb.UpdatePreferencesRequest, body_field="",
             caller_defaults={"preferences.recipient_id": CALLER_SUBJECT}),
    RpcRoute("POST", "/api/v1/threads", "create_thread",
             "Start a conversation with a holder (professionals and institutions only), with its first message",
             "messaging", NTF, "CreateThread", notify_pb.CreateThreadRequest, body_field="", status=201),
    RpcRoute("GET", "/api/v1/threads", "list_threads", "A holder's or a participant's conversations", "messaging",
             NTF, "ListThreads", notify_pb.ListThreadsRequest,
             query_fields=(*PAGE, "holder_id", "participant_subject", "unread_only"),
             caller_defaults={"holder_id": CALLER_HOLDER}),
    RpcRoute("GET", "/api/v1/threads/{thread_id}", "get_thread", "One conversation", "messaging", NTF, "GetThread",
             notify_pb.GetThreadRequest, path_fields={"thread_id": "thread_id"}),
    RpcRoute("POST", "/api/v1/threads/{thread_id}/read", "mark_thread_read", "Mark a conversation read up to now",
             "messaging", NTF, "MarkThreadRead", notify_pb.MarkThreadReadRequest,
             path_fields={"thread_id": "thread_id"}),
    RpcRoute("GET", "/api/v1/threads/{thread_id}/messages", "list_messages", "A conversation's messages, oldest first",
             "messaging", NTF, "ListMessages", notify_pb.ListMessagesRequest, path_fields={"thread_id": "thread_id"},
             query_fields=PAGE),
    RpcRoute("POST", "/api/v1/threads/{thread_id}/messages", "post_message",
             "Post a message (with attachments uploaded beforehand)", "messaging", NTF, "PostMessage",
             notify_pb.PostMessageRequest, body_field="", path_fields={"thread_id": "thread_id"}, status=201),
    RpcRoute("POST", "/api/v1/attachments/{attachment_id}/save-to-record", "save_attachment_to_record",
             "Turn an attachment into a document of one's record", "messaging", NTF, "SaveAttachmentToRecord",
             notify_pb.SaveAttachmentToRecordRequest, body_field="", path_fields={"attachment_id": "attachment_id"},
             status=201),
    RpcRoute("GET", "/api/v1/prevention-reminders", "list_prevention_reminders",
             "The prevention reminders sent to a holder", "prevention", NTF, "ListPreventionReminders",
             notify_pb.ListPreventionRemindersRequest, query_fields=(*PAGE, "recipient_id"),
             caller_defaults={"recipient_id": CALLER_SUBJECT}),
    RpcRoute("POST", "/api/v1/prevention-reminders/run", "run_prevention_reminders",
             'Compute and send the prevention reminders due (operators): {"as_of_date", "dry_run", "recipient_id"}',
             "prevention", NTF, "RunPreventionReminders", notify_pb.RunPreventionRemindersRequest, body_field=""),
]

rpc_router = router_for(ROUTES)
router = APIRouter()


@router.post(
    "/api/v1/attachments",
    operation_id="upload_attachment",
    tags=["messaging"],
    status_code=201,
    summary="Upload an attachment for a later message (multipart: metadata JSON + file); stored encrypted",
)
async def upload_attachment(
    request: Request,
    credentials: Annotated[Any, Security(bearer_scheme)],
    metadata: Annotated[str, Form(description='AttachmentMetadata as JSON: {"thread_id", "file_name", "mime_type"}')],
    file: Annotated[UploadFile, File(description="The attachment's content")],
) -> JSONResponse:
    caller: Caller = await authenticate(request, credentials)
    try:
        fields = json.loads(metadata)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"metadata is not JSON: {exc.msg}", field="metadata") from None
    parsed = notify_pb.AttachmentMetadata()
    from_json(fields, parsed, prefix="metadata.")

    async def requests() -> AsyncIterator[notify_pb.UploadAttachmentRequest]:
        yield notify_pb.UploadAttachmentRequest(metadata=parsed)
        while chunk := await file.read(UPLOAD_CHUNK):
            yield notify_pb.UploadAttachmentRequest(chunk=chunk)

    attachment = await request.app.state.backends.notify.UploadAttachment(
        requests(), metadata=caller.metadata, timeout=request.app.state.settings.upload_timeout_seconds
    )
    return JSONResponse(to_json(attachment), status_code=201)


@router.get(
    "/api/v1/attachments/{attachment_id}/content",
    operation_id="download_attachment",
    tags=["messaging"],
    summary="Download an attachment (decrypted and integrity-checked)",
    response_class=StreamingResponse,
)
async def download_attachment(
    request: Request, attachment_id: str, credentials: Annotated[Any, Security(bearer_scheme)]
) -> StreamingResponse:
    caller: Caller = await authenticate(request, credentials)
    call = request.app.state.backends.notify.DownloadAttachment(
        notify_pb.DownloadAttachmentRequest(attachment_id=attachment_id),
        metadata=caller.metadata,
        timeout=request.app.state.settings.upload_timeout_seconds,
    )
    stream: AsyncIterator[notify_pb.DownloadAttachmentResponse] = aiter(call)
    first = await anext(stream)  # a refusal surfaces here, before any byte is sent
    attachment = first.attachment

    async def body() -> AsyncIterator[bytes]:
        async for message in stream:
            yield message.chunk

    name = attachment.file_name.replace('"', "") or attachment_id
    return StreamingResponse(
        body(),
        media_type=attachment.mime_type or "application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
