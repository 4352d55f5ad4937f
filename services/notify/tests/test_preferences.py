"""Holders' preferences per channel: defaults, changes, who may touch them, and deliveries honouring them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from carnet.common.v1 import common_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import Principal
from carnet_kit.errors import FailedPrecondition
from carnet_kit.status import parse_rpc_error
from carnet_kit.testing import wait_until
from carnet_notify.domain import (
    ChannelChoice,
    ChannelChoiceChange,
    NotificationIntent,
    RecipientPreferences,
    check_preference_changes,
    plan_deliveries,
)
from carnet_notify.kinds import Channel, DeliveryState, Kind

Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]
Stub = notify_service_pb2_grpc.NotifyServiceStub
IDENTITY = Principal(subject="identity", role="service")
DOSSIER = Principal(subject="dossier", role="service")
OPERATOR = Principal(subject="op-support", role="operator")

EMAIL, SMS, PUSH, IN_APP = (
    common_pb2.DELIVERY_CHANNEL_EMAIL,
    common_pb2.DELIVERY_CHANNEL_SMS,
    common_pb2.DELIVERY_CHANNEL_PUSH,
    common_pb2.DELIVERY_CHANNEL_IN_APP,
)
NEW_DOCUMENT = resources_pb2.NOTIFICATION_KIND_NEW_DOCUMENT


def holder() -> Principal:
    return Principal(subject=f"person-{uuid.uuid4().hex[:12]}", role="holder")


def choice(channel: Any, enabled: bool = True, disabled_kinds: list[Any] | None = None) -> Any:
    return resources_pb2.ChannelPreference(channel=channel, enabled=enabled, disabled_kinds=disabled_kinds or [])


def update(recipient_id: str, *channels: Any, paths: list[str] | None = None) -> Any:
    return notify_service_pb2.UpdatePreferencesRequest(
        preferences=resources_pb2.Preferences(recipient_id=recipient_id, channels=list(channels)),
        update_mask=field_mask_pb2.FieldMask(paths=["channels"] if paths is None else paths),
    )


def as_table(preferences: Any) -> dict[int, tuple[bool, list[int]]]:
    return {c.channel: (c.enabled, list(c.disabled_kinds)) for c in preferences.channels}


DEFAULTS = {EMAIL: (True, []), SMS: (True, []), PUSH: (True, [])}


async def get(stub: Stub, as_caller: Metadata, caller: Principal, recipient_id: str) -> Any:
    return await stub.GetPreferences(
        notify_service_pb2.GetPreferencesRequest(recipient_id=recipient_id), metadata=as_caller(caller)
    )


async def refused(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


# ----------------------------------------------------------------------------- the API


async def test_preferences_never_set_are_every_channel_for_every_kind(stub: Stub, as_caller: Metadata) -> None:
    me = holder()
    preferences = await get(stub, as_caller, me, me.subject)
    assert preferences.recipient_id == me.subject
    assert as_table(preferences) == DEFAULTS
    assert not preferences.HasField("update_time")


async def test_holder_changes_channels_one_by_one_and_reads_them_back(stub: Stub, as_caller: Metadata) -> None:
    me = holder()
    changed = await stub.UpdatePreferences(
        update(me.subject, choice(SMS, disabled_kinds=[NEW_DOCUMENT]), choice(PUSH, enabled=False)),
        metadata=as_caller(me),
    )
    expected = {EMAIL: (True, []), SMS: (True, [NEW_DOCUMENT]), PUSH: (False, [])}
    assert as_table(changed) == expected
    assert changed.HasField("update_time")
    assert as_table(await get(stub, as_caller, me, me.subject)) == expected
    # A later change of one channel leaves the others as they were; an empty mask means "channels".
    again = await stub.UpdatePreferences(update(me.subject, choice(EMAIL, enabled=False), paths=[]), metadata=as_caller(me))
    assert as_table(again) == {**expected, EMAIL: (False, [])}
    assert again.update_time.ToDatetime() >= changed.update_time.ToDatetime()


@pytest.mark.parametrize(
    "kind",
    [
        resources_pb2.NOTIFICATION_KIND_ONE_TIME_CODE,
        resources_pb2.NOTIFICATION_KIND_ACTIVATION_NOTICE,
        resources_pb2.NOTIFICATION_KIND_BREAK_GLASS_ACCESS,
        resources_pb2.NOTIFICATION_KIND_CLOSURE_CONFIRMATION,
    ],
)
async def test_security_kinds_cannot_be_turned_off(stub: Stub, as_caller: Metadata, kind: Any) -> None:
    me = holder()
    error = await refused(
        stub.UpdatePreferences(
            update(me.subject, choice(EMAIL), choice(SMS, disabled_kinds=[NEW_DOCUMENT, kind])), metadata=as_caller(me)
        )
    )
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "SECURITY_KIND_NOT_OPTIONAL"
    assert error.metadata["field"] == "preferences.channels[1].disabled_kinds[1]"
    assert error.metadata["kind"] == resources_pb2.NotificationKind.Name(kind).removeprefix("NOTIFICATION_KIND_")
    assert as_table(await get(stub, as_caller, me, me.subject)) == DEFAULTS, "nothing of a refused change is kept"


@pytest.mark.parametrize(
    ("channels", "paths", "field"),
    [
        ([choice(IN_APP, enabled=False)], None, "preferences.channels[0].channel"),
        ([choice(common_pb2.DELIVERY_CHANNEL_LETTER, enabled=False)], None, "preferences.channels[0].channel"),
        ([choice(common_pb2.DELIVERY_CHANNEL_UNSPECIFIED)], None, "preferences.channels[0].channel"),
        ([choice(77)], None, "preferences.channels[0].channel"),
        ([choice(SMS), choice(SMS, enabled=False)], None, "preferences.channels[1].channel"),
        ([choice(SMS, disabled_kinds=[resources_pb2.NOTIFICATION_KIND_UNSPECIFIED])], None,
         "preferences.channels[0].disabled_kinds[0]"),
        ([choice(SMS)], ["channels", "recipient_id"], "update_mask"),
        ([choice(SMS)], ["update_time"], "update_mask"),
    ],
)
async def test_bad_preference_changes_are_invalid_argument_naming_the_field(
    stub: Stub, as_caller: Metadata, channels: list[Any], paths: list[str] | None, field: str
) -> None:
    me = holder()
    error = await refused(stub.UpdatePreferences(update(me.subject, *channels, paths=paths), metadata=as_caller(me)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "FIELD_INVALID"
    assert error.metadata["field"] == field


async def test_missing_recipient_is_invalid_argument(stub: Stub, as_caller: Metadata) -> None:
    error = await refused(stub.UpdatePreferences(update("", choice(SMS)), metadata=as_caller(OPERATOR)))
    assert (error.code, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "preferences.recipient_id")
    error = await refused(get(stub, as_caller, OPERATOR, ""))
    assert (error.code, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "recipient_id")


async def test_a_holder_may_not_read_or_change_someone_elses_preferences(stub: Stub, as_caller: Metadata) -> None:
    owner, intruder = holder(), holder()
    for call in (
        get(stub, as_caller, intruder, owner.subject),
        stub.UpdatePreferences(update(owner.subject, choice(SMS, enabled=False)), metadata=as_caller(intruder)),
    ):
        error = await refused(call)
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_RECIPIENT")
    software = Principal(subject=owner.subject, role="client", client_id="lab-demo")
    error = await refused(get(stub, as_caller, software, owner.subject))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert as_table(await get(stub, as_caller, owner, owner.subject)) == DEFAULTS


async def test_operators_and_services_may_read_and_change_anyones_preferences(stub: Stub, as_caller: Metadata) -> None:
    owner = holder()
    await stub.UpdatePreferences(update(owner.subject, choice(PUSH, enabled=False)), metadata=as_caller(OPERATOR))
    read = await get(stub, as_caller, IDENTITY, owner.subject)
    assert as_table(read)[PUSH] == (False, [])


# ----------------------------------------------------------------------------- deliveries honour them


async def test_turned_off_channel_and_kind_are_suppressed_while_email_and_inbox_go(
    webhook_stub: Stub, webhook_receiver: Any, smtp_sink: Any, as_caller: Metadata
) -> None:
    me = holder()
    await webhook_stub.UpdatePreferences(
        update(me.subject, choice(SMS, disabled_kinds=[NEW_DOCUMENT]), choice(PUSH, enabled=False)),
        metadata=as_caller(me),
    )
    mailbox, phone = f"camille.{uuid.uuid4().hex[:8]}@demo.carnet.test", "+33698765432"
    created = await webhook_stub.CreateNotification(
        notify_service_pb2.CreateNotificationRequest(
            notification=resources_pb2.Notification(
                recipient_id=me.subject,
                kind=NEW_DOCUMENT,
                channels=[IN_APP, EMAIL, SMS, PUSH],
                parameters={"document_title": "Compte rendu de radiologie"},
                email=mailbox,
                phone=phone,
            ),
            request_id=uuid.uuid4().hex,
        ),
        metadata=as_caller(DOSSIER),
    )
    await wait_until(lambda: [m for m in smtp_sink.received() if mailbox in m.envelope_to])
    listed = await webhook_stub.ListDeliveries(
        notify_service_pb2.ListDeliveriesRequest(notification_id=created.notification_id), metadata=as_caller(OPERATOR)
    )
    states = {d.channel: d.state for d in listed.deliveries}
    assert states[SMS] == states[PUSH] == resources_pb2.DELIVERY_STATE_SUPPRESSED
    assert states[IN_APP] == resources_pb2.DELIVERY_STATE_DELIVERED
    await wait_until(lambda: _email_delivered(webhook_stub, as_caller, created.notification_id))
    await asyncio.sleep(0.3)  # several worker polls: a suppressed delivery would have gone by now
    assert webhook_receiver.received("/sms", to=phone) == []
    assert webhook_receiver.received("/push", to=me.subject) == []
    inbox = await webhook_stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=me.subject), metadata=as_caller(me)
    )
    assert [item.title for item in inbox.items] == ["Nouveau document dans votre dossier"]


async def _email_delivered(stub: Stub, as_caller: Metadata, notification_id: str) -> bool:
    listed = await stub.ListDeliveries(
        notify_service_pb2.ListDeliveriesRequest(notification_id=notification_id, channel=EMAIL),
        metadata=as_caller(OPERATOR),
    )
    return [d.state for d in listed.deliveries] == [resources_pb2.DELIVERY_STATE_DELIVERED]


async def test_a_code_goes_by_sms_even_when_the_holder_turned_sms_off(
    webhook_stub: Stub, webhook_receiver: Any, as_caller: Metadata
) -> None:
    me = holder()
    await webhook_stub.UpdatePreferences(update(me.subject, choice(SMS, enabled=False)), metadata=as_caller(me))
    phone = "+33611223344"
    await webhook_stub.CreateNotification(
        notify_service_pb2.CreateNotificationRequest(
            notification=resources_pb2.Notification(
                recipient_id=me.subject,
                kind=resources_pb2.NOTIFICATION_KIND_ONE_TIME_CODE,
                channels=[SMS],
                parameters={"code": "908172"},
                phone=phone,
            ),
            request_id=uuid.uuid4().hex,
        ),
        metadata=as_caller(IDENTITY),
    )
    [post] = await wait_until(lambda: webhook_receiver.received("/sms", to=phone))
    assert "908172" in post.body["text"]


async def test_a_notification_whose_only_channel_is_turned_off_is_accepted_and_suppressed(
    webhook_stub: Stub, as_caller: Metadata
) -> None:
    me = holder()
    await webhook_stub.UpdatePreferences(update(me.subject, choice(PUSH, enabled=False)), metadata=as_caller(me))
    created = await webhook_stub.CreateNotification(
        notify_service_pb2.CreateNotificationRequest(
            notification=resources_pb2.Notification(
                recipient_id=me.subject, kind=NEW_DOCUMENT, channels=[PUSH], parameters={"document_title": "CR"}
            ),
            request_id=uuid.uuid4().hex,
        ),
        metadata=as_caller(DOSSIER),
    )
    listed = await webhook_stub.ListDeliveries(
        notify_service_pb2.ListDeliveriesRequest(recipient_id=me.subject), metadata=as_caller(OPERATOR)
    )
    [delivery] = listed.deliveries
    assert delivery.notification_id == created.notification_id
    assert delivery.state == resources_pb2.DELIVERY_STATE_SUPPRESSED


# ----------------------------------------------------------------------------- pure rules


def test_planning_suppresses_what_the_recipient_turned_off_with_the_reason() -> None:
    preferences = RecipientPreferences(
        "p1",
        {
            Channel.SMS: ChannelChoice(disabled_kinds=frozenset({Kind.NEW_DOCUMENT})),
            Channel.EMAIL: ChannelChoice(enabled=False),
        },
    )
    planned = plan_deliveries(
        NotificationIntent(
            recipient_id="p1",
            kind=Kind.NEW_DOCUMENT,
            channels=(Channel.IN_APP, Channel.EMAIL, Channel.SMS, Channel.PUSH),
            parameters={"document_title": "CR"},
            email="a@b.fr",
            phone="+33612345678",
        ),
        preferences=preferences,
    )
    assert [(d.channel, d.state, d.detail) for d in planned] == [
        (Channel.IN_APP, DeliveryState.PENDING, ""),
        (Channel.EMAIL, DeliveryState.SUPPRESSED, "EMAIL turned off by the recipient"),
        (Channel.SMS, DeliveryState.SUPPRESSED, "NEW_DOCUMENT turned off for SMS by the recipient"),
        (Channel.PUSH, DeliveryState.PENDING, ""),
    ]


def test_security_kinds_ignore_preferences() -> None:
    preferences = RecipientPreferences("p1", {Channel.SMS: ChannelChoice(enabled=False)})
    [planned] = plan_deliveries(
        NotificationIntent(
            recipient_id="p1", kind=Kind.ONE_TIME_CODE, channels=(Channel.SMS,), parameters={"code": "1"},
            phone="+33612345678",
        ),
        preferences=preferences,
    )
    assert planned.state is DeliveryState.PENDING


def test_preference_changes_keep_one_choice_per_channel() -> None:
    choices = check_preference_changes(
        [
            ChannelChoiceChange(Channel.SMS, True, (Kind.NEW_DOCUMENT, Kind.NEW_DOCUMENT)),
            ChannelChoiceChange(Channel.PUSH, False),
        ]
    )
    assert choices == {
        Channel.SMS: ChannelChoice(True, frozenset({Kind.NEW_DOCUMENT})),
        Channel.PUSH: ChannelChoice(False, frozenset()),
    }
    with pytest.raises(FailedPrecondition) as raised:
        check_preference_changes([ChannelChoiceChange(Channel.EMAIL, True, (Kind.BREAK_GLASS_ACCESS,))])
    assert raised.value.reason == "SECURITY_KIND_NOT_OPTIONAL"
