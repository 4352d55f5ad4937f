"""The AE registry: who may associate with the DICOM SCP (echoscu from dcmtk), and its rules."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from carnet.imaging.v1 import imaging_service_pb2 as pb
from carnet.imaging.v1 import resources_pb2 as res
from carnet_kit.auth import Principal
from carnet_kit.status import parse_rpc_error

pytestmark = pytest.mark.asyncio
OPERATOR = Principal(subject="op-imaging", role="operator")


def echo(dcmtk: Any, port: int, calling: str, called: str = "CARNET") -> Any:
    return dcmtk("echoscu", "-aet", calling, "-aec", called, "127.0.0.1", str(port), timeout=30)


async def test_a_registered_pacs_is_answered_and_others_are_rejected(
    imaging: Any, register_pacs: Any, dcmtk: Any
) -> None:
    pacs = await register_pacs()
    assert echo(dcmtk, imaging.dicom_port, pacs.ae_title).returncode == 0

    stranger = echo(dcmtk, imaging.dicom_port, "NOBODYKNOWSME")
    assert stranger.returncode != 0
    assert "Association Rejected" in stranger.stderr + stranger.stdout
    assert "Calling AE Title Not Recognized" in stranger.stderr + stranger.stdout

    wrong_called = echo(dcmtk, imaging.dicom_port, pacs.ae_title, called="NOTCARNET")
    assert wrong_called.returncode != 0
    assert "Called AE Title Not Recognized" in wrong_called.stderr + wrong_called.stdout


async def test_removing_an_ae_refuses_its_next_association(
    imaging: Any, register_pacs: Any, dcmtk: Any, as_caller: Any
) -> None:
    pacs = await register_pacs()
    assert echo(dcmtk, imaging.dicom_port, pacs.ae_title).returncode == 0
    await imaging.stub.DeleteApplicationEntity(
        pb.DeleteApplicationEntityRequest(application_entity_id=pacs.application_entity.application_entity_id),
        metadata=as_caller(OPERATOR),
    )
    assert echo(dcmtk, imaging.dicom_port, pacs.ae_title).returncode != 0


async def test_an_ae_is_registered_only_for_the_client_identity_lists_it_under(
    imaging: Any, register_pacs: Any, as_caller: Any
) -> None:
    pacs = await register_pacs()
    other = await register_pacs(in_imaging=False)

    async def create(**fields: Any) -> Any:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await imaging.stub.CreateApplicationEntity(
                pb.CreateApplicationEntityRequest(application_entity=res.ApplicationEntity(**fields)),
                metadata=as_caller(OPERATOR),
            )
        return parse_rpc_error(caught.value)

    refused = await create(ae_title=other.ae_title, client_id=pacs.client_id)
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AE_TITLE_NOT_OWNED_BY_CLIENT")
    refused = await create(ae_title=other.ae_title, client_id="no-such-client")
    assert (refused.code, refused.reason) == (grpc.StatusCode.NOT_FOUND, "CLIENT_NOT_FOUND")
    refused = await create(ae_title=pacs.ae_title, client_id=pacs.client_id)
    assert (refused.code, refused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "AE_TITLE_ALREADY_REGISTERED")
    for title in ("", "THIS-TITLE-IS-TOO-LONG", "BACK\\SLASH", "   "):
        refused = await create(ae_title=title, client_id=pacs.client_id)
        assert (refused.code, refused.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "AE_TITLE_INVALID"), title
    refused = await create(ae_title=other.ae_title, client_id=other.client_id, move_destination=True)
    assert (refused.code, refused.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "application_entity.host")
    refused = await create(ae_title=other.ae_title, client_id=other.client_id, host="pacs.invalid", port=70000)
    assert (refused.code, refused.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "application_entity.port")

    for caller in (Principal(subject="dr", role="professional"), Principal(subject=pacs.client_id, role="client")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await imaging.stub.CreateApplicationEntity(
                pb.CreateApplicationEntityRequest(
                    application_entity=res.ApplicationEntity(ae_title=other.ae_title, client_id=other.client_id)
                ),
                metadata=as_caller(caller),
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_operator_lists_pages_and_changes_aes(imaging: Any, register_pacs: Any, as_caller: Any) -> None:
    registered = [await register_pacs() for _ in range(3)]
    mine = {pacs.ae_title for pacs in registered}
    seen: list[str] = []
    token = ""
    while True:
        page = await imaging.stub.ListApplicationEntities(
            pb.ListApplicationEntitiesRequest(page_size=2, page_token=token), metadata=as_caller(OPERATOR)
        )
        assert len(page.application_entities) <= 2
        seen.extend(entity.ae_title for entity in page.application_entities)
        token = page.next_page_token
        if not token:
            break
    assert mine <= set(seen) and seen == sorted(seen)
    one = await imaging.stub.ListApplicationEntities(
        pb.ListApplicationEntitiesRequest(client_id=registered[0].client_id), metadata=as_caller(OPERATOR)
    )
    assert [entity.ae_title for entity in one.application_entities] == [registered[0].ae_title]

    changed = await imaging.stub.UpdateApplicationEntity(
        pb.UpdateApplicationEntityRequest(
            application_entity=res.ApplicationEntity(
                application_entity_id=registered[0].application_entity.application_entity_id,
                host="pacs.hopital.invalid",
                port=104,
                move_destination=True,
                local_issuer_of_patient_id="HOPITAL-ESSAI",
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=["host", "port", "move_destination", "local_issuer_of_patient_id"]
            ),
        ),
        metadata=as_caller(OPERATOR),
    )
    assert (changed.host, changed.port, changed.move_destination) == ("pacs.hopital.invalid", 104, True)
    assert changed.local_issuer_of_patient_id == "HOPITAL-ESSAI"
    fetched = await imaging.stub.GetApplicationEntity(
        pb.GetApplicationEntityRequest(application_entity_id=changed.application_entity_id),
        metadata=as_caller(OPERATOR),
    )
    assert fetched == changed
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await imaging.stub.UpdateApplicationEntity(
            pb.UpdateApplicationEntityRequest(
                application_entity=res.ApplicationEntity(
                    application_entity_id=changed.application_entity_id, ae_title="RENAMED"
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["ae_title"]),
            ),
            metadata=as_caller(OPERATOR),
        )
    assert parse_rpc_error(caught.value).metadata["field"] == "update_mask"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await imaging.stub.ListApplicationEntities(
            pb.ListApplicationEntitiesRequest(page_token="not-a-token"), metadata=as_caller(OPERATOR)
        )
    assert parse_rpc_error(caught.value).metadata["field"] == "page_token"
