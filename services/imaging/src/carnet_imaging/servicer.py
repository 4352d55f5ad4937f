"""gRPC surface of the imaging service: proto ↔ domain, nothing more.

Methods not written yet answer UNIMPLEMENTED through the generated base class.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from carnet.imaging.v1 import imaging_service_pb2 as pb
from carnet.imaging.v1 import imaging_service_pb2_grpc as pb_grpc
from carnet.imaging.v1 import resources_pb2 as res
from carnet_imaging.quarantine import Quarantine, QuarantinedRecord
from carnet_imaging.registry import AeRecord, AeRegistry, ae_title_of, require_operator
from carnet_kit.auth import current_principal
from carnet_kit.errors import InvalidArgument
from carnet_kit.paging import decode_page_token, encode_page_token, page_size
from carnet_kit.protoconv import timestamp

AE_PAGE_DEFAULT, AE_PAGE_MAX = 100, 1000
QUARANTINE_PAGE_DEFAULT, QUARANTINE_PAGE_MAX = 100, 1000


def ae_proto(record: AeRecord) -> res.ApplicationEntity:
    """An ApplicationEntity message."""
    return res.ApplicationEntity(
        application_entity_id=str(record.application_entity_id),
        ae_title=record.ae_title,
        client_id=record.client_id,
        host=record.host,
        port=record.port or 0,
        move_destination=record.move_destination,
        local_issuer_of_patient_id=record.local_issuer_of_patient_id,
        description=record.description,
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )


_MASK_FIELDS = {
    "host": "host",
    "port": "port",
    "move_destination": "move_destination",
    "local_issuer_of_patient_id": "local_issuer_of_patient_id",
    "description": "description",
    "client_id": "client_id",
}


class ImagingServicer(pb_grpc.ImagingServiceServicer):
    """The imaging API."""

    def __init__(self, registry: AeRegistry, quarantine: Quarantine) -> None:
        self._registry = registry
        self._quarantine = quarantine

    # ---- AE registry

    async def CreateApplicationEntity(
        self, request: pb.CreateApplicationEntityRequest, context: Any
    ) -> res.ApplicationEntity:
        given = request.application_entity
        record = await self._registry.create(
            current_principal(),
            ae_title=given.ae_title,
            client_id=given.client_id,
            host=given.host,
            port=given.port or None,
            move_destination=given.move_destination,
            local_issuer_of_patient_id=given.local_issuer_of_patient_id,
            description=given.description,
        )
        return ae_proto(record)

    async def GetApplicationEntity(self, request: pb.GetApplicationEntityRequest, context: Any) -> res.ApplicationEntity:
        require_operator(current_principal())
        return ae_proto(await self._registry.get(request.application_entity_id))

    async def ListApplicationEntities(
        self, request: pb.ListApplicationEntitiesRequest, context: Any
    ) -> pb.ListApplicationEntitiesResponse:
        require_operator(current_principal())
        title = ae_title_of(request.ae_title, "ae_title") if request.ae_title.strip() else ""
        scope = f"aes|{request.client_id.strip()}|{title}"
        limit = page_size(request.page_size, default=AE_PAGE_DEFAULT, maximum=AE_PAGE_MAX)
        after = decode_page_token(request.page_token, scope) or ""
        records = await self._registry.list(client_id=request.client_id, ae_title=title, after=str(after),
                                            limit=limit + 1)
        token = ""
        if len(records) > limit:
            records = records[:limit]
            token = encode_page_token(records[-1].ae_title, scope)
        return pb.ListApplicationEntitiesResponse(
            application_entities=[ae_proto(record) for record in records], next_page_token=token
        )

    async def UpdateApplicationEntity(
        self, request: pb.UpdateApplicationEntityRequest, context: Any
    ) -> res.ApplicationEntity:
        given = request.application_entity
        changes: dict[str, object] = {}
        for path in request.update_mask.paths:
            name = _MASK_FIELDS.get(path)
            if name is None:
                raise InvalidArgument(f"{path} cannot be changed", field="update_mask", reason="FIELD_INVALID")
            value: object = getattr(given, name)
            if name == "port":
                value = given.port or None
            elif isinstance(value, str):
                value = value.strip()
            changes[name] = value
        record = await self._registry.update(current_principal(), given.application_entity_id, changes)
        return ae_proto(record)

    async def DeleteApplicationEntity(
        self, request: pb.DeleteApplicationEntityRequest, context: Any
    ) -> empty_pb2.Empty:
        await self._registry.delete(current_principal(), request.application_entity_id)
        return empty_pb2.Empty()

    # ---- quarantine

    async def ListQuarantinedInstances(
        self, request: pb.ListQuarantinedInstancesRequest, context: Any
    ) -> pb.ListQuarantinedInstancesResponse:
        reason = ""
        if request.reason != res.QUARANTINE_REASON_UNSPECIFIED:
            if request.reason not in res.QuarantineReason.values():
                raise InvalidArgument(f"unknown reason {request.reason}", field="reason", reason="FIELD_INVALID")
            reason = res.QuarantineReason.Name(request.reason).removeprefix("QUARANTINE_REASON_")
        scope = f"quarantine|{request.study_instance_uid.strip()}|{request.calling_ae_title.strip()}|{reason}"
        limit = page_size(request.page_size, default=QUARANTINE_PAGE_DEFAULT, maximum=QUARANTINE_PAGE_MAX)
        position = decode_page_token(request.page_token, scope)
        after = (str(position[0]), str(position[1])) if position else None
        records, total = await self._quarantine.list_instances(
            current_principal(),
            study_instance_uid=request.study_instance_uid,
            calling_ae_title=request.calling_ae_title,
            reason=reason,
            after=after,
            limit=limit + 1,
        )
        token = ""
        if len(records) > limit:
            records = records[:limit]
            token = encode_page_token([records[-1].received_at.isoformat(), records[-1].sop_instance_uid], scope)
        return pb.ListQuarantinedInstancesResponse(
            instances=[_quarantined_proto(record) for record in records], next_page_token=token, total_size=total
        )

    async def ReassignQuarantinedInstances(
        self, request: pb.ReassignQuarantinedInstancesRequest, context: Any
    ) -> pb.ReassignQuarantinedInstancesResponse:
        count, studies = await self._quarantine.reassign(
            current_principal(),
            sop_instance_uids=list(request.sop_instance_uids),
            study_instance_uid=request.study_instance_uid,
            holder_id=request.holder_id,
        )
        return pb.ReassignQuarantinedInstancesResponse(reassigned_count=count, study_instance_uids=studies)

    async def RejectQuarantinedInstances(
        self, request: pb.RejectQuarantinedInstancesRequest, context: Any
    ) -> pb.RejectQuarantinedInstancesResponse:
        count = await self._quarantine.reject(
            current_principal(),
            sop_instance_uids=list(request.sop_instance_uids),
            study_instance_uid=request.study_instance_uid,
            reason=request.reason,
        )
        return pb.RejectQuarantinedInstancesResponse(rejected_count=count)


def _quarantined_proto(record: QuarantinedRecord) -> res.QuarantinedInstance:
    return res.QuarantinedInstance(
        sop_instance_uid=record.sop_instance_uid,
        series_instance_uid=record.series_instance_uid,
        study_instance_uid=record.study_instance_uid,
        sop_class_uid=record.sop_class_uid,
        patient_id=record.patient_id,
        issuer_of_patient_id=record.issuer_of_patient_id,
        patient_name=record.patient_name,
        patient_birth_date=record.patient_birth_date,
        patient_sex=record.patient_sex,
        reason=res.QuarantineReason.Value("QUARANTINE_REASON_" + record.reason),
        client_id=record.client_id,
        calling_ae_title=record.calling_ae_title,
        receive_time=timestamp(record.received_at),
    )
