"""The in-app inbox: newest first, opaque page tokens, unread count, mark read, access."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from carnet.common.v1 import common_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import Principal
from carnet_kit.status import parse_rpc_error

Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]
DOSSIER = Principal(subject="dossier", role="service")
OPERATOR = Principal(subject="op-support", role="operator")


async def add_items(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, recipient_id: str, count: int
) -> list[str]:
    titles = [f"Document {n}" for n in range(count)]
    for title in titles:
        await stub.CreateNotification(
            notify_service_pb2.CreateNotificationRequest(
                notification=resources_pb2.Notification(
                    recipient_id=recipient_id,
                    kind=resources_pb2.NOTIFICATION_KIND_NEW_DOCUMENT,
                    channels=[common_pb2.DELIVERY_CHANNEL_IN_APP],
                    parameters={"document_title": title, "document_id": f"doc-{title}"},
                ),
                request_id=uuid.uuid4().hex,
            ),
            metadata=as_caller(DOSSIER),
        )
    return titles


def holder() -> Principal:
    return Principal(subject=f"person-{uuid.uuid4().hex[:12]}", role="holder")


async def list_all(
    stub: notify_service_pb2_grpc.NotifyServiceStub, caller: Any, recipient_id: str, page_size: int, **options: Any
) -> list[Any]:
    pages = []
    token = ""
    while True:
        page = await stub.ListInboxItems(
            notify_service_pb2.ListInboxItemsRequest(
                recipient_id=recipient_id, page_size=page_size, page_token=token, **options
            ),
            metadata=caller,
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


async def test_inbox_pages_newest_first_with_opaque_tokens_and_unread_count(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    me = holder()
    titles = await add_items(stub, as_caller, me.subject, 5)
    pages = await list_all(stub, as_caller(me), me.subject, page_size=2)
    assert [len(page.items) for page in pages] == [2, 2, 1]
    seen = [item.body for page in pages for item in page.items]
    assert seen == [f"« {title} » a été ajouté à votre dossier." for title in reversed(titles)]
    assert all(page.unread_count == 5 for page in pages)
    assert all(not page.items[0].HasField("read_time") for page in pages)


async def test_marking_read_lowers_the_unread_count_and_filters_unread_only(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    me = holder()
    await add_items(stub, as_caller, me.subject, 3)
    [page] = await list_all(stub, as_caller(me), me.subject, page_size=10)
    newest = page.items[0]
    read = await stub.MarkInboxItemRead(
        notify_service_pb2.MarkInboxItemReadRequest(item_id=newest.item_id), metadata=as_caller(me)
    )
    assert read.HasField("read_time")
    again = await stub.MarkInboxItemRead(
        notify_service_pb2.MarkInboxItemReadRequest(item_id=newest.item_id), metadata=as_caller(me)
    )
    assert again.read_time == read.read_time, "the first read time is kept"
    [unread_page] = await list_all(stub, as_caller(me), me.subject, page_size=10, unread_only=True)
    assert unread_page.unread_count == 2
    assert [item.item_id for item in unread_page.items] == [item.item_id for item in page.items[1:]]


async def test_unread_only_paging_keeps_to_unread_items(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    me = holder()
    await add_items(stub, as_caller, me.subject, 4)
    [everything] = await list_all(stub, as_caller(me), me.subject, page_size=10)
    for item in everything.items[::2]:
        await stub.MarkInboxItemRead(notify_service_pb2.MarkInboxItemReadRequest(item_id=item.item_id), metadata=as_caller(me))
    pages = await list_all(stub, as_caller(me), me.subject, page_size=1, unread_only=True)
    assert [item.item_id for page in pages for item in page.items] == [i.item_id for i in everything.items[1::2]]


async def test_default_page_size_applies_when_none_is_given(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    me = holder()
    await add_items(stub, as_caller, me.subject, 3)
    page = await stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=me.subject), metadata=as_caller(me)
    )
    assert len(page.items) == 3 and page.next_page_token == ""


@pytest.mark.parametrize("token", ["not-a-token", "eyJ0IjogMX0", "%%%"])
async def test_bad_page_token_is_invalid_argument_naming_page_token(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata, token: str
) -> None:
    me = holder()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListInboxItems(
            notify_service_pb2.ListInboxItemsRequest(recipient_id=me.subject, page_token=token), metadata=as_caller(me)
        )
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.metadata["field"] == "page_token"


async def test_page_token_of_another_inbox_is_refused(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    me, other = holder(), holder()
    await add_items(stub, as_caller, other.subject, 2)
    page = await stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=other.subject, page_size=1), metadata=as_caller(other)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListInboxItems(
            notify_service_pb2.ListInboxItemsRequest(recipient_id=me.subject, page_token=page.next_page_token),
            metadata=as_caller(me),
        )
    assert parse_rpc_error(raised.value).metadata["field"] == "page_token"


async def test_negative_page_size_is_invalid_argument(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    me = holder()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListInboxItems(
            notify_service_pb2.ListInboxItemsRequest(recipient_id=me.subject, page_size=-1), metadata=as_caller(me)
        )
    assert parse_rpc_error(raised.value).metadata["field"] == "page_size"


async def test_holder_listing_someone_elses_inbox_is_permission_denied(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    owner, intruder = holder(), holder()
    await add_items(stub, as_caller, owner.subject, 1)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListInboxItems(
            notify_service_pb2.ListInboxItemsRequest(recipient_id=owner.subject), metadata=as_caller(intruder)
        )
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.reason == "NOT_RECIPIENT"


async def test_operator_may_list_any_inbox(stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata) -> None:
    owner = holder()
    await add_items(stub, as_caller, owner.subject, 2)
    page = await stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=owner.subject), metadata=as_caller(OPERATOR)
    )
    assert len(page.items) == 2


async def test_marking_someone_elses_item_read_is_not_found(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    owner, intruder = holder(), holder()
    await add_items(stub, as_caller, owner.subject, 1)
    [page] = await list_all(stub, as_caller(owner), owner.subject, page_size=10)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.MarkInboxItemRead(
            notify_service_pb2.MarkInboxItemReadRequest(item_id=page.items[0].item_id), metadata=as_caller(intruder)
        )
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "INBOX_ITEM_NOT_FOUND"
    [after] = await list_all(stub, as_caller(owner), owner.subject, page_size=10)
    assert after.unread_count == 1


async def test_in_app_notification_is_recorded_as_a_delivered_delivery(
    stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata
) -> None:
    me = holder()
    await add_items(stub, as_caller, me.subject, 1)
    response = await stub.ListDeliveries(
        notify_service_pb2.ListDeliveriesRequest(recipient_id=me.subject), metadata=as_caller(OPERATOR)
    )
    [delivery] = response.deliveries
    assert response.total_size == 1
    assert delivery.channel == common_pb2.DELIVERY_CHANNEL_IN_APP
    assert delivery.state == resources_pb2.DELIVERY_STATE_DELIVERED
    assert [a.outcome for a in delivery.attempts] == [resources_pb2.ATTEMPT_OUTCOME_SUCCEEDED]


async def test_holder_cannot_list_deliveries(stub: notify_service_pb2_grpc.NotifyServiceStub, as_caller: Metadata) -> None:
    me = holder()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListDeliveries(
            notify_service_pb2.ListDeliveriesRequest(recipient_id=me.subject), metadata=as_caller(me)
        )
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
