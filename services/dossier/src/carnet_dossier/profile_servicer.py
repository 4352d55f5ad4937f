"""The medical profile's RPCs, mixed into DossierServicer: protos into use-case calls and back (no rules here)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format

from carnet.common.v1 import common_pb2
from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier.domain import clamp_page_size, parse_uuid
from carnet_dossier.profile import KINDS, EntryFilter, ProfileEntryRecord
from carnet_dossier.profile_service import ProfileService, ProposedEntry
from carnet_dossier.profile_store import Revision
from carnet_dossier.protoconv import actor_proto as _actor
from carnet_dossier.protoconv import datetime_of as _datetime
from carnet_dossier.protoconv import timestamp as _timestamp
from carnet_kit.auth import Principal, current_principal
from carnet_kit.errors import InvalidArgument

MAX_REQUEST_ID_LENGTH = 128


def _name(enum: Any, number: int, prefix: str) -> str:
    """An enum value's name without its prefix; "" when unset, ``#n`` when unknown (refused later)."""
    if number == 0:
        return ""
    try:
        return str(enum.Name(number)).removeprefix(prefix)
    except ValueError:
        return f"#{number}"



def _own_space(principal: Principal) -> str:
    return principal.subject if principal.role == "holder" else principal.acting_for


def profile_entry_to_proto(record: ProfileEntryRecord) -> res.ProfileEntry:
    """The proto of a stored profile entry."""
    entry = res.ProfileEntry(
        entry_id=str(record.entry_id),
        holder_id=str(record.holder_id),
        kind=res.ProfileEntryKind.Value(f"PROFILE_ENTRY_KIND_{record.kind}"),
        source=res.EntrySource.Value(f"ENTRY_SOURCE_{record.source}"),
        recorded_by=_actor(record.recorded_by),
        version=record.version,
        hidden_from_professionals=record.hidden_from_professionals,
        create_time=_timestamp(record.created_at),
        update_time=_timestamp(record.updated_at),
    )
    value = getattr(entry, KINDS[record.kind].value_field)
    value.SetInParent()
    json_format.ParseDict(record.value, value, ignore_unknown_fields=True)
    return entry


def revision_to_proto(revision: Revision) -> res.ProfileEntryRevision:
    """The proto of one revision of an entry."""
    return res.ProfileEntryRevision(
        version=revision.version,
        entry=profile_entry_to_proto(revision.entry),
        change_type=common_pb2.ChangeType.Value(f"CHANGE_TYPE_{revision.change_type}"),
        changed_by=_actor(revision.changed_by),
        change_time=_timestamp(revision.changed_at),
    )


class ProfileRpcs:
    """CreateProfileEntry … ListProfileEntryRevisions; the use cases come from ``self._profile``."""

    _profile: ProfileService

    async def CreateProfileEntry(
        self, request: pb.CreateProfileEntryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.ProfileEntry:
        principal = current_principal()
        entry = request.entry
        request_id = request.request_id.strip()
        if len(request_id) > MAX_REQUEST_ID_LENGTH:
            raise InvalidArgument(
                f"request_id is at most {MAX_REQUEST_ID_LENGTH} characters", field="request_id", reason="FIELD_INVALID"
            )
        value_field = entry.WhichOneof("value")
        proposed = ProposedEntry(
            holder_id=parse_uuid(entry.holder_id or _own_space(principal), "entry.holder_id"),
            kind=_name(res.ProfileEntryKind, entry.kind, "PROFILE_ENTRY_KIND_"),
            value_field=value_field,
            value=getattr(entry, value_field) if value_field else None,
            hidden_from_professionals=entry.hidden_from_professionals,
        )
        record = await self._profile.create(principal, proposed, request_id)
        return profile_entry_to_proto(record)

    async def GetProfileEntry(
        self, request: pb.GetProfileEntryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.ProfileEntry:
        record = await self._profile.get(current_principal(), parse_uuid(request.entry_id, "entry_id"))
        return profile_entry_to_proto(record)

    async def ListProfileEntries(
        self, request: pb.ListProfileEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListProfileEntriesResponse:
        principal = current_principal()
        filters = EntryFilter(
            kinds=tuple(_name(res.ProfileEntryKind, kind, "PROFILE_ENTRY_KIND_") or "#0" for kind in request.kinds),
            measurement_type=_name(res.MeasurementType, request.measurement_type, "MEASUREMENT_TYPE_"),
            start_time=_datetime(request, "start_time"),
            end_time=_datetime(request, "end_time"),
            source=_name(res.EntrySource, request.source, "ENTRY_SOURCE_"),
        )
        page = await self._profile.list(
            principal,
            parse_uuid(request.holder_id or _own_space(principal), "holder_id"),
            filters,
            request.page_token,
            clamp_page_size(request.page_size),
        )
        return pb.ListProfileEntriesResponse(
            entries=[profile_entry_to_proto(record) for record in page.entries],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UpdateProfileEntry(
        self, request: pb.UpdateProfileEntryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.ProfileEntry:
        record = await self._profile.update(
            current_principal(),
            parse_uuid(request.entry.entry_id, "entry.entry_id"),
            request.entry,
            list(request.update_mask.paths),
        )
        return profile_entry_to_proto(record)

    async def DeleteProfileEntry(
        self, request: pb.DeleteProfileEntryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> empty_pb2.Empty:
        await self._profile.delete(current_principal(), parse_uuid(request.entry_id, "entry_id"))
        return empty_pb2.Empty()

    async def ListProfileEntryRevisions(
        self, request: pb.ListProfileEntryRevisionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListProfileEntryRevisionsResponse:
        page = await self._profile.revisions(
            current_principal(),
            parse_uuid(request.entry_id, "entry_id"),
            request.page_token,
            clamp_page_size(request.page_size),
        )
        return pb.ListProfileEntryRevisionsResponse(
            revisions=[revision_to_proto(revision) for revision in page.revisions],
            next_page_token=page.next_page_token,
        )
