"""The REST face of the record after the deposit (issue 4): changes, the access log, document types."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse, StreamingResponse
from google.protobuf import field_mask_pb2

from carnet.dossier.v1 import dossier_service_pb2 as dossier_pb
from carnet.dossier.v1 import resources_pb2 as dossier_res
from carnet_gateway.protojson import from_json, to_json
from carnet_gateway.rpc_routes import CALLER_HOLDER, RpcRoute, router_for
from carnet_gateway.security import Caller, authenticate, bearer_scheme
from carnet_kit.errors import InvalidArgument

DOS = "dossier"
PAGE = ("page_size", "page_token")

ROUTES: list[RpcRoute] = [
    RpcRoute("POST", "/api/v1/documents/{document_id}/announce", "announce_document",
             "Make a document kept from its holder visible (its author, after the announcement consultation)",
             "documents", DOS, "AnnounceDocument", dossier_pb.AnnounceDocumentRequest,
             path_fields={"document_id": "document_id"}),
    RpcRoute("POST", "/api/v1/documents/{document_id}/archive", "archive_document",
             "Archive a document (author or holder)", "documents", DOS, "ArchiveDocument",
             dossier_pb.ArchiveDocumentRequest, path_fields={"document_id": "document_id"}),
    RpcRoute("DELETE", "/api/v1/documents/{document_id}", "delete_document",
             "Delete a document (author or holder); the reason is kept in the access log", "documents", DOS,
             "DeleteDocument", dossier_pb.DeleteDocumentRequest, path_fields={"document_id": "document_id"},
             query_fields=("reason",), status=204),
    RpcRoute("GET", "/api/v1/document-types", "list_document_types",
             "The document types (LOINC) with their French labels and classes", "documents", DOS,
             "ListDocumentTypes", dossier_pb.ListDocumentTypesRequest, query_fields=(*PAGE, "class_code")),
    # --- agenda
    RpcRoute("POST", "/api/v1/agenda", "create_agenda_event", "Add an event to a holder's agenda (with reminders)",
             "agenda", DOS, "CreateAgendaEvent", dossier_pb.CreateAgendaEventRequest, body_field="",
             caller_defaults={"agenda_event.holder_id": CALLER_HOLDER}, status=201),
    RpcRoute("GET", "/api/v1/agenda", "list_agenda_events", "A holder's agenda by start time", "agenda", DOS,
             "ListAgendaEvents", dossier_pb.ListAgendaEventsRequest,
             query_fields=(*PAGE, "holder_id", "start_time", "end_time", "kind"),
             caller_defaults={"holder_id": CALLER_HOLDER}),
    RpcRoute("GET", "/api/v1/agenda/{agenda_event_id}", "get_agenda_event", "One agenda event", "agenda", DOS,
             "GetAgendaEvent", dossier_pb.GetAgendaEventRequest, path_fields={"agenda_event_id": "agenda_event_id"}),
    RpcRoute("PATCH", "/api/v1/agenda/{agenda_event_id}", "update_agenda_event",
             'Change an agenda event: {"agenda_event": {...}, "update_mask": "title,startTime"}', "agenda", DOS,
             "UpdateAgendaEvent", dossier_pb.UpdateAgendaEventRequest, body_field="",
             path_fields={"agenda_event_id": "agenda_event.agenda_event_id"}),
    RpcRoute("DELETE", "/api/v1/agenda/{agenda_event_id}", "delete_agenda_event", "Remove an agenda event", "agenda",
             DOS, "DeleteAgendaEvent", dossier_pb.DeleteAgendaEventRequest,
             path_fields={"agenda_event_id": "agenda_event_id"}, status=204),
    # --- medical profile
    RpcRoute("POST", "/api/v1/profile", "create_profile_entry",
             "Add an entry to a holder's medical profile (history, allergy, treatment, vaccination, measurement…)",
             "profile", DOS, "CreateProfileEntry", dossier_pb.CreateProfileEntryRequest, body_field="",
             caller_defaults={"entry.holder_id": CALLER_HOLDER}, status=201),
    RpcRoute("GET", "/api/v1/profile", "list_profile_entries", "A holder's medical profile, newest first", "profile",
             DOS, "ListProfileEntries", dossier_pb.ListProfileEntriesRequest,
             query_fields=(*PAGE, "holder_id", "kinds", "measurement_type", "start_time", "end_time", "source"),
             caller_defaults={"holder_id": CALLER_HOLDER}),
    RpcRoute("GET", "/api/v1/profile/{entry_id}", "get_profile_entry", "One profile entry", "profile", DOS,
             "GetProfileEntry", dossier_pb.GetProfileEntryRequest, path_fields={"entry_id": "entry_id"}),
    RpcRoute("PATCH", "/api/v1/profile/{entry_id}", "update_profile_entry",
             'Change a profile entry: {"entry": {...}, "update_mask": "allergy.severity"}', "profile", DOS,
             "UpdateProfileEntry", dossier_pb.UpdateProfileEntryRequest, body_field="",
             path_fields={"entry_id": "entry.entry_id"}),
    RpcRoute("DELETE", "/api/v1/profile/{entry_id}", "delete_profile_entry", "Remove a profile entry (its history stays)",
             "profile", DOS, "DeleteProfileEntry", dossier_pb.DeleteProfileEntryRequest,
             path_fields={"entry_id": "entry_id"}, status=204),
    RpcRoute("GET", "/api/v1/profile/{entry_id}/revisions", "list_profile_entry_revisions",
             "A profile entry's history of changes", "profile", DOS, "ListProfileEntryRevisions",
             dossier_pb.ListProfileEntryRevisionsRequest, path_fields={"entry_id": "entry_id"}, query_fields=PAGE),
    # --- the space
    RpcRoute("GET", "/api/v1/space", "get_space", "A space's state, size and retention dates", "space", DOS,
             "GetSpace", dossier_pb.GetSpaceRequest, query_fields=("holder_id",),
             caller_defaults={"holder_id": CALLER_HOLDER}),
    # --- access log
    RpcRoute("GET", "/api/v1/access-log", "list_access_log_entries",
             "Who accessed the holder's record: newest first, with filters", "access-log", DOS,
             "ListAccessLogEntries", dossier_pb.ListAccessLogEntriesRequest,
             query_fields=(*PAGE, "holder_id", "start_time", "end_time", "actor_subject", "role", "organisation_id",
                           "action", "outcome", "item_id"),
             caller_defaults={"holder_id": CALLER_HOLDER}),
    RpcRoute("GET", "/api/v1/access-log/verification", "verify_access_log",
             "Check the holder's access log hash chain", "access-log", DOS, "VerifyAccessLog",
             dossier_pb.VerifyAccessLogRequest, query_fields=("holder_id",),
             caller_defaults={"holder_id": CALLER_HOLDER}),
]

rpc_router = router_for(ROUTES)
router = APIRouter()

_PATCHABLE = {
    "title": "title",
    "type_code": "type_code",
    "class_code": "class_code",
    "service_time": "service_time",
    "hidden_from_professionals": "hidden_from_professionals",
    "invisible_to_representatives": "invisible_to_representatives",
}


@router.patch(
    "/api/v1/documents/{document_id}",
    operation_id="update_document_metadata",
    tags=["documents"],
    summary="Change a document's metadata: the fields present in the body are the ones changed",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "title": {"type": "string"},
                            "type_code": {"type": "string"},
                            "class_code": {"type": "string"},
                            "service_time": {"type": "string", "format": "date-time"},
                            "hidden_from_professionals": {"type": "boolean"},
                            "invisible_to_representatives": {"type": "boolean"},
                        },
                    }
                }
            },
        }
    },
)
async def update_document_metadata(
    request: Request, document_id: str, credentials: Annotated[Any, Security(bearer_scheme)]
) -> JSONResponse:
    caller: Caller = await authenticate(request, credentials)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"the body is not JSON: {exc.msg}", field="body") from None
    if not isinstance(body, dict) or not body:
        raise InvalidArgument("the body must be a JSON object naming the fields to change", field="body")
    unknown = sorted(set(body) - set(_PATCHABLE))
    if unknown:
        raise InvalidArgument(
            f"{unknown[0]} cannot be changed after the deposit", field=unknown[0], reason="FIELD_NOT_UPDATABLE"
        )
    metadata = dossier_res.DocumentMetadata()
    from_json(body, metadata)
    response = await request.app.state.backends.dossier.UpdateDocumentMetadata(
        dossier_pb.UpdateDocumentMetadataRequest(
            document_id=document_id,
            metadata=metadata,
            update_mask=field_mask_pb2.FieldMask(paths=[_PATCHABLE[name] for name in body]),
        ),
        metadata=caller.metadata,
    )
    return JSONResponse(to_json(response))


@router.get(
    "/api/v1/space/export",
    operation_id="export_space",
    tags=["space"],
    summary="The whole space as one ZIP: documents as deposited, metadata, access log (streamed)",
    response_class=StreamingResponse,
)
async def export_space(
    request: Request, credentials: Annotated[Any, Security(bearer_scheme)], holder_id: str = ""
) -> StreamingResponse:
    caller: Caller = await authenticate(request, credentials)
    principal = caller.principal
    holder = holder_id or (principal.subject if principal.role == "holder" else principal.acting_for)
    call = request.app.state.backends.dossier.ExportSpace(
        dossier_pb.ExportSpaceRequest(holder_id=holder),
        metadata=caller.metadata,
        timeout=request.app.state.settings.upload_timeout_seconds,
    )
    stream: AsyncIterator[dossier_pb.ExportSpaceResponse] = aiter(call)
    first = await anext(stream)  # errors (refusals) surface here, before any byte is sent
    info = first.info

    async def body() -> AsyncIterator[bytes]:
        async for message in stream:
            yield message.chunk

    return StreamingResponse(
        body(),
        media_type=info.content_type or "application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{info.file_name}"',
            "X-Carnet-Document-Count": str(info.document_count),
        },
    )
