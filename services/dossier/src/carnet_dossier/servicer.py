"""DossierService: turns protos into domain calls and back (no rules here)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import resources_pb2 as consent_res
from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier.access_log import Entry, EntryFilter, NewEntry
from carnet_dossier.access_log_service import AccessLogService
from carnet_dossier.agenda import AgendaEvent, AgendaService, Reminder
from carnet_dossier.documents import BreakGlass, DocumentService, HolderRef
from carnet_dossier.domain import (
    Author,
    DocumentFormat,
    DocumentOrder,
    clamp_page_size,
    decode_page_token,
    parse_uuid,
    validate_new_document,
)
from carnet_dossier.profile_service import ProfileService
from carnet_dossier.profile_servicer import ProfileRpcs
from carnet_dossier.protoconv import actor_proto as _actor_proto
from carnet_dossier.protoconv import datetime_of as _datetime
from carnet_dossier.protoconv import set_timestamp as _set_timestamp
from carnet_dossier.protoconv import timestamp as _timestamp
from carnet_dossier.spaces import SpaceService
from carnet_dossier.store import DocumentFilter, DocumentRecord
from carnet_dossier.valuesets import CLASS_LABELS, DOCUMENT_CLASSES, DOCUMENT_TYPES, LOINC_SYSTEM
from carnet_kit.auth import current_principal
from carnet_kit.errors import InvalidArgument

SERVICE_NAME = "carnet.dossier.v1.DossierService"
CHUNK_SIZE = 64 * 1024

_FORMAT_TO_PROTO = {
    DocumentFormat.PDF: res.DOCUMENT_FORMAT_PDF,
    DocumentFormat.CDA_R2_STRUCTURED: res.DOCUMENT_FORMAT_CDA_R2_STRUCTURED,
    DocumentFormat.CDA_R2_UNSTRUCTURED: res.DOCUMENT_FORMAT_CDA_R2_UNSTRUCTURED,
    DocumentFormat.TEXT: res.DOCUMENT_FORMAT_TEXT,
    DocumentFormat.JPEG: res.DOCUMENT_FORMAT_JPEG,
}
_PROTO_TO_FORMAT = {value: key for key, value in _FORMAT_TO_PROTO.items()}
_STATUS_TO_PROTO = {
    "approved": res.DOCUMENT_STATUS_APPROVED,
    "deprecated": res.DOCUMENT_STATUS_DEPRECATED,
    "archived": res.DOCUMENT_STATUS_ARCHIVED,
    "deleted": res.DOCUMENT_STATUS_DELETED,
}
_PROTO_TO_STATUS = {value: key for key, value in _STATUS_TO_PROTO.items()}


def _offset_token(token: str) -> int:
    """The position a page token of a fixed list points at."""
    if not token:
        return 0
    if not token.isdigit():
        raise InvalidArgument("page_token is not valid", field="page_token", reason="PAGE_TOKEN_INVALID")
    return int(token)


BREAK_GLASS_REASON_METADATA = "x-carnet-break-glass-reason-bin"
EMERGENCY_REGULATION_METADATA = "x-carnet-emergency-regulation"


def break_glass_of(context: Any) -> BreakGlass | None:
    """An emergency read: the written reason (UTF-8, binary metadata) and whether by the regulation doctor."""
    values = dict(context.invocation_metadata() or ())
    raw = values.get(BREAK_GLASS_REASON_METADATA)
    if raw is None:
        return None
    try:
        reason = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError:
        raise InvalidArgument("the break-glass reason is not UTF-8", field=BREAK_GLASS_REASON_METADATA) from None
    return BreakGlass(reason.strip(), emergency_regulation=values.get(EMERGENCY_REGULATION_METADATA) == "1")



def fill_document(document: res.Document, record: DocumentRecord) -> res.Document:
    """Write a stored document into an empty proto (an element of a response's list, built in place)."""
    # Fields are set in place: building sub-messages and passing them in copies each of them,
    # which was most of a listing page's conversion time.
    document.document_id = str(record.document_id)
    document.logical_id = str(record.logical_id)
    document.version = record.version
    metadata = document.metadata
    metadata.unique_id = record.unique_id
    metadata.holder_id = str(record.holder_id)
    metadata.type_code = record.type_code
    metadata.class_code = record.class_code
    metadata.format = _FORMAT_TO_PROTO[record.format]
    metadata.title = record.title
    if record.service_time is not None:
        _set_timestamp(metadata.service_time, record.service_time)
    author = metadata.author
    author.rpps = record.author.rpps
    author.profession_code = record.author.profession_code
    author.organisation_id = record.author.organisation_id
    author.display_name = record.author.display_name
    metadata.hidden_from_professionals = record.hidden_from_professionals
    metadata.invisible_to_holder = record.invisible_to_holder
    metadata.invisible_to_representatives = record.invisible_to_representatives
    metadata.replaces_document_id = str(record.replaces_document_id or "")
    metadata.accession_number = record.accession_number
    document.status = _STATUS_TO_PROTO[record.status]
    document.size_bytes = record.size_bytes
    document.sha256 = record.sha256
    _set_timestamp(document.create_time, record.created_at)
    document.deposited_by.CopyFrom(_actor_proto(record.deposited_by))
    document.holder_own = record.holder_own
    document.mime_type = record.mime_type
    document.replaced_by_document_id = str(record.replaced_by_document_id or "")
    if record.updated_at is not None:
        _set_timestamp(document.update_time, record.updated_at)
    return document


def document_to_proto(record: DocumentRecord) -> res.Document:
    """The proto of a stored document."""
    return fill_document(res.Document(), record)


class DossierServicer(ProfileRpcs, pb_grpc.DossierServiceServicer):
    """gRPC face of the dossier's document use cases."""

    def __init__(
        self,
        documents: DocumentService,
        access_logs: AccessLogService,
        *,
        spaces: SpaceService,
        agenda: AgendaService,
        profile: ProfileService,
    ) -> None:
        self._documents = documents
        self._access_logs = access_logs
        self._spaces = spaces
        self._agenda = agenda
        self._profile = profile

    async def DepositDocument(
        self, request_iterator: AsyncIterator[pb.DepositDocumentRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.Document:
        principal = current_principal()
        iterator = aiter(request_iterator)
        try:
            first = await anext(iterator)
        except StopAsyncIteration:
            raise InvalidArgument("the stream is empty: send the metadata first", field="metadata") from None
        if first.WhichOneof("payload") != "metadata":
            raise InvalidArgument("the first message must carry the metadata", field="metadata")
        meta = first.metadata
        replaces = (
            parse_uuid(meta.replaces_document_id, "metadata.replaces_document_id") if meta.replaces_document_id else None
        )
        new = validate_new_document(
            unique_id=meta.unique_id,
            type_code=meta.type_code,
            class_code=meta.class_code,
            format=_PROTO_TO_FORMAT.get(meta.format),
            title=meta.title,
            service_time=_datetime(meta, "service_time"),
            author=Author(
                meta.author.rpps, meta.author.profession_code, meta.author.organisation_id, meta.author.display_name
            ),
            hidden_from_professionals=meta.hidden_from_professionals,
            invisible_to_holder=meta.invisible_to_holder,
            invisible_to_representatives=meta.invisible_to_representatives,
            accession_number=meta.accession_number,
        )

        async def chunks() -> AsyncIterator[bytes]:
            async for message in iterator:
                if message.WhichOneof("payload") != "chunk":
                    raise InvalidArgument("only the first message may carry metadata", field="chunk")
                yield message.chunk

        record, _created = await self._documents.deposit(
            principal, HolderRef(meta.holder_id, meta.holder_ins), new, chunks(), replaces_document_id=replaces
        )
        return document_to_proto(record)

    async def GetDocument(
        self, request: pb.GetDocumentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.Document:
        record = await self._documents.get(
            current_principal(), parse_uuid(request.document_id, "document_id"), break_glass_of(context)
        )
        return document_to_proto(record)

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListDocumentsResponse:
        principal = current_principal()
        holder = request.holder_id or (principal.subject if principal.role == "holder" else principal.acting_for)
        order = _ORDERS.get(request.order)
        if order is None:
            raise InvalidArgument("unknown order", field="order")
        status = _PROTO_TO_STATUS.get(request.status, "approved")
        filters = DocumentFilter(
            type_code=request.type_code,
            class_code=request.class_code,
            author_rpps=request.author_rpps,
            organisation_id=request.author_organisation_id,
            since=_datetime(request, "service_start_time"),
            until=_datetime(request, "service_end_time"),
            statuses=(status,),
            title_query=request.title_query,
            accession_number=request.accession_number,
        )
        page = await self._documents.list(
            principal,
            parse_uuid(holder, "holder_id"),
            filters,
            decode_page_token(request.page_token, order),
            clamp_page_size(request.page_size),
            order,
            break_glass_of(context),
        )
        response = pb.ListDocumentsResponse(next_page_token=page.next_page_token, total_size=page.total_size)
        for record in page.documents:
            fill_document(response.documents.add(), record)
        return response

    async def DownloadDocument(
        self, request: pb.DownloadDocumentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.DownloadDocumentResponse]:
        record, content = await self._documents.download(
            current_principal(), parse_uuid(request.document_id, "document_id"), break_glass_of(context)
        )
        yield pb.DownloadDocumentResponse(document=document_to_proto(record))
        buffer = b""
        async for chunk in content:
            buffer += chunk
            while len(buffer) >= CHUNK_SIZE:
                yield pb.DownloadDocumentResponse(chunk=buffer[:CHUNK_SIZE])
                buffer = buffer[CHUNK_SIZE:]
        if buffer:
            yield pb.DownloadDocumentResponse(chunk=buffer)

    async def ListDocumentTypes(
        self, request: pb.ListDocumentTypesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListDocumentTypesResponse:
        if request.class_code and request.class_code not in DOCUMENT_CLASSES:
            raise InvalidArgument(f"unknown class {request.class_code!r}", field="class_code", reason="UNKNOWN_CLASS_CODE")
        types = sorted(
            (t for t in DOCUMENT_TYPES.values() if not request.class_code or t.default_class == request.class_code),
            key=lambda t: (t.default_class, t.label_fr),
        )
        start = _offset_token(request.page_token)
        size = clamp_page_size(request.page_size, default=100, maximum=1000)
        page = types[start : start + size]
        return pb.ListDocumentTypesResponse(
            document_types=[
                res.DocumentType(
                    code=t.code,
                    code_system=LOINC_SYSTEM,
                    display=t.label_fr,
                    class_code=t.default_class,
                    class_display=CLASS_LABELS.get(t.default_class, t.default_class),
                )
                for t in page
            ],
            next_page_token=str(start + size) if start + size < len(types) else "",
        )

    # ---- changes after the deposit

    async def UpdateDocumentMetadata(
        self, request: pb.UpdateDocumentMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.Document:
        meta = request.metadata
        proposed: dict[str, Any] = {
            "title": meta.title,
            "type_code": meta.type_code,
            "class_code": meta.class_code,
            "service_time": _datetime(meta, "service_time"),
            "hidden_from_professionals": meta.hidden_from_professionals,
            "invisible_to_representatives": meta.invisible_to_representatives,
        }
        record = await self._documents.update_metadata(
            current_principal(),
            parse_uuid(request.document_id, "document_id"),
            list(request.update_mask.paths),
            proposed,
        )
        return document_to_proto(record)

    async def AnnounceDocument(
        self, request: pb.AnnounceDocumentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.Document:
        record = await self._documents.announce(current_principal(), parse_uuid(request.document_id, "document_id"))
        return document_to_proto(record)

    async def ArchiveDocument(
        self, request: pb.ArchiveDocumentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.Document:
        record = await self._documents.archive(current_principal(), parse_uuid(request.document_id, "document_id"))
        return document_to_proto(record)

    async def DeleteDocument(
        self, request: pb.DeleteDocumentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> empty_pb2.Empty:
        await self._documents.delete(
            current_principal(), parse_uuid(request.document_id, "document_id"), request.reason
        )
        return empty_pb2.Empty()

    # ---- agenda

    async def CreateAgendaEvent(
        self, request: pb.CreateAgendaEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.AgendaEvent:
        proposed = agenda_event_from_proto(request.agenda_event)
        created = await self._agenda.create(current_principal(), proposed, request.request_id)
        return agenda_event_to_proto(created)

    async def GetAgendaEvent(
        self, request: pb.GetAgendaEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.AgendaEvent:
        event = await self._agenda.get(current_principal(), parse_uuid(request.agenda_event_id, "agenda_event_id"))
        return agenda_event_to_proto(event)

    async def ListAgendaEvents(
        self, request: pb.ListAgendaEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListAgendaEventsResponse:
        principal, holder_id = self._holder_of(request.holder_id)
        events, token = await self._agenda.list(
            principal,
            holder_id,
            start=_datetime(request, "start_time"),
            end=_datetime(request, "end_time"),
            kind=_agenda_kind(request.kind) if request.kind else "",
            page_token=request.page_token,
            page_size=clamp_page_size(request.page_size),
        )
        return pb.ListAgendaEventsResponse(
            agenda_events=[agenda_event_to_proto(event) for event in events], next_page_token=token
        )

    async def UpdateAgendaEvent(
        self, request: pb.UpdateAgendaEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.AgendaEvent:
        wanted = request.agenda_event
        proposed = agenda_event_from_proto(wanted, partial=True)
        event = await self._agenda.update(
            current_principal(),
            parse_uuid(wanted.agenda_event_id, "agenda_event.agenda_event_id"),
            list(request.update_mask.paths),
            dataclasses.asdict(proposed) | {"reminders": proposed.reminders},
        )
        return agenda_event_to_proto(event)

    async def DeleteAgendaEvent(
        self, request: pb.DeleteAgendaEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> empty_pb2.Empty:
        await self._agenda.delete(current_principal(), parse_uuid(request.agenda_event_id, "agenda_event_id"))
        return empty_pb2.Empty()

    # ---- the space as a whole

    async def GetSpace(self, request: pb.GetSpaceRequest, context: grpc.aio.ServicerContext[Any, Any]) -> res.Space:
        principal, holder_id = self._holder_of(request.holder_id)
        space = await self._spaces.get(principal, holder_id)
        return res.Space(
            holder_id=str(space.holder_id),
            state=_SPACE_STATES[space.state],
            document_count=space.document_count,
            total_size_bytes=space.total_size_bytes,
            archive_time=_timestamp(space.archived_at),
            scheduled_delete_time=_timestamp(space.scheduled_delete_at),
            create_time=_timestamp(space.created_at),
        )

    async def ExportSpace(
        self, request: pb.ExportSpaceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ExportSpaceResponse]:
        principal, holder_id = self._holder_of(request.holder_id)
        export = await self._spaces.export(principal, holder_id)
        yield pb.ExportSpaceResponse(
            info=pb.SpaceExportInfo(
                file_name=export.file_name,
                content_type="application/zip",
                document_count=export.document_count,
                profile_entry_count=export.profile_entry_count,
                create_time=_timestamp(export.created_at),
            )
        )
        async for chunk in export.chunks:
            for start in range(0, len(chunk), CHUNK_SIZE):
                yield pb.ExportSpaceResponse(chunk=chunk[start : start + CHUNK_SIZE])

    # ---- access log

    def _holder_of(self, requested: str) -> Any:
        principal = current_principal()
        holder = requested or (principal.subject if principal.role == "holder" else principal.acting_for)
        return principal, parse_uuid(holder, "holder_id")

    async def ListAccessLogEntries(
        self, request: pb.ListAccessLogEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListAccessLogEntriesResponse:
        principal, holder_id = self._holder_of(request.holder_id)
        filters = EntryFilter(
            start_time=_datetime(request, "start_time"),
            end_time=_datetime(request, "end_time"),
            actor_subject=request.actor_subject,
            role=common_pb2.Role.Name(request.role) if request.role else "",
            organisation_id=request.organisation_id,
            action=consent_res.Action.Name(request.action) if request.action else "",
            outcome=_OUTCOME_NAMES.get(request.outcome, ""),
            item_id=request.item_id,
        )
        entries, next_token, total = await self._access_logs.list(
            principal, holder_id, filters, request.page_token, clamp_page_size(request.page_size)
        )
        return pb.ListAccessLogEntriesResponse(
            entries=[access_log_entry_to_proto(entry) for entry in entries], next_page_token=next_token, total_size=total
        )

    async def VerifyAccessLog(
        self, request: pb.VerifyAccessLogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.VerifyAccessLogResponse:
        principal, holder_id = self._holder_of(request.holder_id)
        result = await self._access_logs.verify(principal, holder_id)
        return pb.VerifyAccessLogResponse(
            intact=result.intact,
            entry_count=result.entry_count,
            head_hash=result.head_hash,
            first_broken_sequence=result.first_broken_sequence,
            failure_reason=result.failure_reason,
        )

    async def CreateAccessLogEntry(
        self, request: pb.CreateAccessLogEntryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.AccessLogEntry:
        entry = request.entry
        new = NewEntry(
            holder_id=parse_uuid(entry.holder_id, "entry.holder_id"),
            actor=json_format.MessageToDict(entry.actor, preserving_proto_field_name=True),
            action=consent_res.Action.Name(entry.action),
            outcome=_OUTCOME_NAMES.get(entry.outcome, ""),
            operation=entry.operation,
            item_kind=consent_res.ItemKind.Name(entry.item_kind) if entry.item_kind else "",
            item_id=entry.item_id,
            item_label=entry.item_label,
            reason=entry.reason_code,
            break_glass_reason=entry.break_glass_reason,
            actor_display_name=entry.actor_display_name,
            trace_id=entry.trace_id,
        )
        obligations = set(request.obligations)
        recorded = await self._access_logs.create(
            current_principal(),
            new,
            notify_holder=consent_res.OBLIGATION_NOTIFY_HOLDER in obligations,
            notify_treating_physician=consent_res.OBLIGATION_NOTIFY_TREATING_PHYSICIAN in obligations,
        )
        return access_log_entry_to_proto(recorded)


def _agenda_kind(value: int) -> str:
    return res.AgendaEventKind.Name(value).removeprefix("AGENDA_EVENT_KIND_")  # type: ignore[arg-type]


def agenda_event_from_proto(message: res.AgendaEvent, *, partial: bool = False) -> AgendaEvent:
    """The domain's event from a request (ids, source and author are the service's to set)."""
    start = _datetime(message, "start_time")
    if start is None and not partial:
        raise InvalidArgument("start_time is required", field="agenda_event.start_time")
    holder_id = message.holder_id
    return AgendaEvent(
        agenda_event_id=uuid.UUID(int=0),
        holder_id=parse_uuid(holder_id, "agenda_event.holder_id") if holder_id or not partial else uuid.UUID(int=0),
        kind=_agenda_kind(message.kind) if message.kind else "",
        title=message.title,
        description=message.description,
        start_time=start or dt.datetime.min.replace(tzinfo=dt.UTC),
        end_time=_datetime(message, "end_time"),
        all_day=message.all_day,
        location=message.location,
        professional_id=message.professional_id,
        organisation_id=message.organisation_id,
        source="",
        created_by={},
        reminders=tuple(
            Reminder(
                offset=reminder.offset.ToTimedelta(),
                channels=tuple(
                    common_pb2.DeliveryChannel.Name(channel).removeprefix("DELIVERY_CHANNEL_")
                    for channel in reminder.channels
                ),
            )
            for reminder in message.reminders
        ),
    )


def agenda_event_to_proto(event: AgendaEvent) -> res.AgendaEvent:
    """An agenda event as the API shows it."""
    message = res.AgendaEvent(
        agenda_event_id=str(event.agenda_event_id),
        holder_id=str(event.holder_id),
        kind=res.AgendaEventKind.Value(f"AGENDA_EVENT_KIND_{event.kind}"),
        title=event.title,
        description=event.description,
        start_time=_timestamp(event.start_time),
        end_time=_timestamp(event.end_time),
        all_day=event.all_day,
        location=event.location,
        professional_id=event.professional_id,
        organisation_id=event.organisation_id,
        source=res.EntrySource.Value(f"ENTRY_SOURCE_{event.source}"),
        created_by=json_format.ParseDict(event.created_by, common_pb2.Actor(), ignore_unknown_fields=True),
        create_time=_timestamp(event.created_at),
        update_time=_timestamp(event.updated_at),
    )
    for reminder in event.reminders:
        added = message.reminders.add(
            channels=[common_pb2.DeliveryChannel.Value(f"DELIVERY_CHANNEL_{c}") for c in reminder.channels]
        )
        added.offset.FromTimedelta(reminder.offset)
        if reminder.sent_at is not None:
            added.send_time.FromDatetime(reminder.sent_at)
    return message


_ORDERS = {
    pb.DOCUMENT_ORDER_UNSPECIFIED: DocumentOrder.SERVICE_TIME_DESC,
    pb.DOCUMENT_ORDER_SERVICE_TIME_DESC: DocumentOrder.SERVICE_TIME_DESC,
    pb.DOCUMENT_ORDER_SERVICE_TIME_ASC: DocumentOrder.SERVICE_TIME_ASC,
    pb.DOCUMENT_ORDER_CREATE_TIME_DESC: DocumentOrder.CREATE_TIME_DESC,
    pb.DOCUMENT_ORDER_CREATE_TIME_ASC: DocumentOrder.CREATE_TIME_ASC,
}

_SPACE_STATES = {"OPEN": res.SPACE_STATE_OPEN, "ARCHIVED": res.SPACE_STATE_ARCHIVED, "DELETED": res.SPACE_STATE_DELETED}


def document_json(record: DocumentRecord) -> dict[str, Any]:
    """A document's metadata as the export writes it (the API's JSON, with proto field names)."""
    return json_format.MessageToDict(document_to_proto(record), preserving_proto_field_name=True)


_OUTCOME_NAMES = {
    res.ACCESS_OUTCOME_ALLOWED: "allowed",
    res.ACCESS_OUTCOME_DENIED: "denied",
    res.ACCESS_OUTCOME_FAILED: "failed",
}
_OUTCOME_TO_PROTO = {name: value for value, name in _OUTCOME_NAMES.items()}


def _enum_value(enum: Any, name: str) -> int:
    try:
        return int(enum.Value(name)) if name else 0
    except ValueError:
        return 0


def access_log_entry_to_proto(entry: Entry) -> res.AccessLogEntry:
    """An access log entry as the API shows it."""
    actor = common_pb2.Actor()
    json_format.ParseDict(entry.actor, actor, ignore_unknown_fields=True)
    return res.AccessLogEntry(
        entry_id=str(entry.entry_id),
        holder_id=str(entry.holder_id),
        sequence=entry.sequence,
        actor=actor,
        actor_display_name=entry.actor_display_name,
        action=_enum_value(consent_res.Action, entry.action),  # type: ignore[arg-type]
        operation=entry.operation,
        service=entry.service,
        item_kind=_enum_value(consent_res.ItemKind, entry.item_kind),  # type: ignore[arg-type]
        item_id=entry.item_id,
        item_label=entry.item_label,
        outcome=_OUTCOME_TO_PROTO.get(entry.outcome, res.ACCESS_OUTCOME_UNSPECIFIED),
        reason_code=entry.reason,
        break_glass_reason=entry.break_glass_reason,
        occur_time=_timestamp(entry.occur_time),
        trace_id=entry.trace_id,
        previous_hash=entry.previous_hash,
        entry_hash=entry.entry_hash,
    )
