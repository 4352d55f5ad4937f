"""gRPC surface of the notify service: proto ↔ domain, nothing more."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from opentelemetry import trace

from carnet.common.v1 import common_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import current_principal, require_role
from carnet_kit.errors import InvalidArgument, NotFound
from carnet_kit.paging import page_size
from carnet_kit.protoconv import timestamp
from carnet_kit.telemetry import ATTR_HOLDER_ID
from carnet_notify.attachments import AttachmentService
from carnet_notify.domain import (
    OPTIONAL_CHANNELS,
    ChannelChoiceChange,
    Cursor,
    NotificationIntent,
    RecipientPreferences,
    check_inbox_reader,
    check_preference_changes,
    check_preferences_caller,
    check_preferences_mask,
    decode_page_token,
    encode_page_token,
    mask_destination,
    prepare_notification,
    visible_parameters,
)
from carnet_notify.kinds import PROVIDER_CHANNELS, Channel, DeliveryState, Kind
from carnet_notify.messaging_service import MessagingService
from carnet_notify.messaging_servicer import MessagingRpcs
from carnet_notify.prevention_job import PreventionJob, ReminderRecord, paris_today
from carnet_notify.store import DeliveryFilter, DeliveryRecord, InboxItemRecord, NotificationRecord, NotifyStore

INBOX_PAGE_DEFAULT, INBOX_PAGE_MAX = 50, 500
DELIVERIES_PAGE_DEFAULT, DELIVERIES_PAGE_MAX = 50, 1000
REMINDERS_PAGE_DEFAULT, REMINDERS_PAGE_MAX = 50, 500

_KIND_PREFIX = "NOTIFICATION_KIND_"
_CHANNEL_PREFIX = "DELIVERY_CHANNEL_"


def _kind_from_proto(value: resources_pb2.NotificationKind.ValueType) -> Kind | None:
    name = resources_pb2.NotificationKind.Name(value) if value in resources_pb2.NotificationKind.values() else ""
    suffix = name.removeprefix(_KIND_PREFIX)
    return Kind(suffix) if suffix in Kind.__members__ else None


def _kind_to_proto(kind: Kind) -> resources_pb2.NotificationKind.ValueType:
    return resources_pb2.NotificationKind.Value(_KIND_PREFIX + kind.value)


def _known_channel(value: common_pb2.DeliveryChannel.ValueType) -> Channel | None:
    """The channel of an enum value; None for UNSPECIFIED or a number this version does not know."""
    if value not in common_pb2.DeliveryChannel.values() or value == common_pb2.DELIVERY_CHANNEL_UNSPECIFIED:
        return None
    return Channel(common_pb2.DeliveryChannel.Name(value).removeprefix(_CHANNEL_PREFIX))


def _channel_from_proto(value: common_pb2.DeliveryChannel.ValueType) -> Channel:
    channel = _known_channel(value)
    if channel is None:
        raise InvalidArgument(f"unknown channel {value}", field="notification.channels", reason="FIELD_INVALID")
    return channel


def _channel_to_proto(channel: Channel) -> common_pb2.DeliveryChannel.ValueType:
    return common_pb2.DeliveryChannel.Value(_CHANNEL_PREFIX + channel.value)


def _state_from_proto(value: resources_pb2.DeliveryState.ValueType) -> DeliveryState | None:
    if value == resources_pb2.DELIVERY_STATE_UNSPECIFIED:
        return None
    if value not in resources_pb2.DeliveryState.values():
        raise InvalidArgument(f"unknown state {value}", field="state", reason="FIELD_INVALID")
    return DeliveryState(resources_pb2.DeliveryState.Name(value).removeprefix("DELIVERY_STATE_"))


def _uuid(text: str, field_name: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidArgument(f"{field_name} is not a valid id", field=field_name, reason="FIELD_INVALID") from None


def _notification_proto(record: NotificationRecord) -> resources_pb2.Notification:
    return resources_pb2.Notification(
        notification_id=str(record.notification_id),
        recipient_id=record.recipient_id,
        kind=_kind_to_proto(record.kind),
        channels=[_channel_to_proto(channel) for channel in record.channels],
        parameters=visible_parameters(record.parameters),
        email=record.email,
        phone=record.phone,
        create_time=timestamp(record.create_time),
        source_event_id=record.source_event_id,
    )


def _inbox_item_proto(record: InboxItemRecord) -> resources_pb2.InboxItem:
    return resources_pb2.InboxItem(
        item_id=str(record.item_id),
        recipient_id=record.recipient_id,
        kind=_kind_to_proto(record.kind),
        title=record.title,
        body=record.body,
        parameters=record.parameters,
        create_time=timestamp(record.create_time),
        read_time=timestamp(record.read_time),
        source_event_id=record.source_event_id,
    )


def _delivery_proto(record: DeliveryRecord) -> resources_pb2.Delivery:
    return resources_pb2.Delivery(
        delivery_id=str(record.delivery_id),
        notification_id=str(record.notification_id),
        recipient_id=record.recipient_id,
        kind=_kind_to_proto(record.kind),
        channel=_channel_to_proto(record.channel),
        state=resources_pb2.DeliveryState.Value("DELIVERY_STATE_" + record.state.value),
        masked_destination=mask_destination(record.channel, record.destination),
        attempts=[
            resources_pb2.DeliveryAttempt(
                attempt_number=attempt.attempt_number,
                start_time=timestamp(attempt.start_time),
                end_time=timestamp(attempt.end_time),
                outcome=resources_pb2.AttemptOutcome.Value("ATTEMPT_OUTCOME_" + attempt.outcome.value)
                if attempt.outcome is not None
                else resources_pb2.ATTEMPT_OUTCOME_UNSPECIFIED,
                detail=attempt.detail,
            )
            for attempt in record.attempts
        ],
        next_attempt_time=timestamp(record.next_attempt_time) if record.state.is_open else None,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )


def _preferences_proto(preferences: RecipientPreferences) -> resources_pb2.Preferences:
    """Every optional channel, with the recipient's choice or the default (enabled, no kind off)."""
    channels = []
    for channel in OPTIONAL_CHANNELS:
        choice = preferences.choice(channel)
        channels.append(
            resources_pb2.ChannelPreference(
                channel=_channel_to_proto(channel),
                enabled=choice.enabled,
                disabled_kinds=sorted(_kind_to_proto(kind) for kind in choice.disabled_kinds),
            )
        )
    return resources_pb2.Preferences(
        recipient_id=preferences.recipient_id, channels=channels, update_time=timestamp(preferences.update_time)
    )


class NotifyServicer(MessagingRpcs, notify_service_pb2_grpc.NotifyServiceServicer):
    """Notifications, deliveries, the inbox, preferences, secure messaging and prevention reminders."""

    def __init__(
        self,
        store: NotifyStore,
        on_new_deliveries: Callable[[], None],
        unavailable: Mapping[Channel, str] | None = None,
        *,
        messaging: MessagingService,
        attachments: AttachmentService,
        prevention: PreventionJob,
    ) -> None:
        self._prevention = prevention
        self._messaging = messaging
        self._attachments = attachments
        self._store = store
        self._on_new_deliveries = on_new_deliveries
        self._unavailable = dict(unavailable or {})

    async def CreateNotification(
        self, request: notify_service_pb2.CreateNotificationRequest, context: Any
    ) -> resources_pb2.Notification:
        caller = current_principal()
        require_role(caller, "service", "operator")
        given = request.notification
        intent = NotificationIntent(
            recipient_id=given.recipient_id,
            kind=_kind_from_proto(given.kind),
            channels=tuple(_channel_from_proto(channel) for channel in given.channels),
            parameters=dict(given.parameters),
            email=given.email.strip(),
            phone=given.phone.strip(),
            source_event_id=given.source_event_id,
        )
        preferences = await self._store.get_preferences(intent.recipient_id)
        prepared = prepare_notification(intent, preferences=preferences, unavailable=self._unavailable)
        record, created = await self._store.create_notification(
            prepared, request_id=request.request_id, created_by=f"{caller.role}:{caller.subject}"
        )
        trace.get_current_span().set_attribute(ATTR_HOLDER_ID, record.recipient_id)
        if created and any(d.channel in PROVIDER_CHANNELS and d.state.is_open for d in prepared.deliveries):
            self._on_new_deliveries()
        return _notification_proto(record)

    async def GetNotification(
        self, request: notify_service_pb2.GetNotificationRequest, context: Any
    ) -> resources_pb2.Notification:
        require_role(current_principal(), "service", "operator")
        record = await self._store.get_notification(_uuid(request.notification_id, "notification_id"))
        if record is None:
            raise NotFound("no such notification", reason="NOTIFICATION_NOT_FOUND")
        return _notification_proto(record)

    async def ListDeliveries(
        self, request: notify_service_pb2.ListDeliveriesRequest, context: Any
    ) -> notify_service_pb2.ListDeliveriesResponse:
        require_role(current_principal(), "service", "operator")
        where = DeliveryFilter(
            notification_id=_uuid(request.notification_id, "notification_id") if request.notification_id else None,
            recipient_id=request.recipient_id,
            channel=None
            if request.channel == common_pb2.DELIVERY_CHANNEL_UNSPECIFIED
            else _channel_from_proto(request.channel),
            state=_state_from_proto(request.state),
        )
        scope = f"deliveries|{where}"
        limit = page_size(request.page_size, default=DELIVERIES_PAGE_DEFAULT, maximum=DELIVERIES_PAGE_MAX)
        after = decode_page_token(request.page_token, scope)
        deliveries, total = await self._store.list_deliveries(where, after, limit + 1)
        next_token = ""
        if len(deliveries) > limit:
            deliveries = deliveries[:limit]
            last = deliveries[-1]
            next_token = encode_page_token(Cursor(last.create_time, last.delivery_id), scope)
        return notify_service_pb2.ListDeliveriesResponse(
            deliveries=[_delivery_proto(d) for d in deliveries], next_page_token=next_token, total_size=total
        )

    async def ListInboxItems(
        self, request: notify_service_pb2.ListInboxItemsRequest, context: Any
    ) -> notify_service_pb2.ListInboxItemsResponse:
        if not request.recipient_id:
            raise InvalidArgument("recipient_id is required", field="recipient_id", reason="FIELD_INVALID")
        check_inbox_reader(current_principal(), request.recipient_id)
        scope = f"inbox|{request.recipient_id}|{request.unread_only}"
        limit = page_size(request.page_size, default=INBOX_PAGE_DEFAULT, maximum=INBOX_PAGE_MAX)
        after = decode_page_token(request.page_token, scope)
        items, unread = await self._store.list_inbox(
            request.recipient_id, unread_only=request.unread_only, after=after, limit=limit + 1
        )
        next_token = ""
        if len(items) > limit:
            items = items[:limit]
            next_token = encode_page_token(Cursor(items[-1].create_time, items[-1].item_id), scope)
        return notify_service_pb2.ListInboxItemsResponse(
            items=[_inbox_item_proto(item) for item in items], next_page_token=next_token, unread_count=unread
        )

    async def MarkInboxItemRead(
        self, request: notify_service_pb2.MarkInboxItemReadRequest, context: Any
    ) -> resources_pb2.InboxItem:
        caller = current_principal()
        record = await self._store.mark_inbox_item_read(_uuid(request.item_id, "item_id"), caller.subject)
        if record is None:
            # Someone else's item is reported as absent: its existence is not the caller's business.
            raise NotFound("no such inbox item", reason="INBOX_ITEM_NOT_FOUND")
        return _inbox_item_proto(record)

    async def GetPreferences(
        self, request: notify_service_pb2.GetPreferencesRequest, context: Any
    ) -> resources_pb2.Preferences:
        if not request.recipient_id:
            raise InvalidArgument("recipient_id is required", field="recipient_id", reason="FIELD_INVALID")
        check_preferences_caller(current_principal(), request.recipient_id)
        return _preferences_proto(await self._store.get_preferences(request.recipient_id))

    async def UpdatePreferences(
        self, request: notify_service_pb2.UpdatePreferencesRequest, context: Any
    ) -> resources_pb2.Preferences:
        given = request.preferences
        if not given.recipient_id:
            raise InvalidArgument(
                "preferences.recipient_id is required", field="preferences.recipient_id", reason="FIELD_INVALID"
            )
        check_preferences_caller(current_principal(), given.recipient_id)
        check_preferences_mask(list(request.update_mask.paths))
        choices = check_preference_changes(
            [
                ChannelChoiceChange(
                    channel=_known_channel(choice.channel),
                    enabled=choice.enabled,
                    disabled_kinds=tuple(_kind_from_proto(kind) for kind in choice.disabled_kinds),
                )
                for choice in given.channels
            ]
        )
        return _preferences_proto(await self._store.update_preferences(given.recipient_id, choices))

    # ---- prevention reminders

    async def ListPreventionReminders(
        self, request: notify_service_pb2.ListPreventionRemindersRequest, context: Any
    ) -> notify_service_pb2.ListPreventionRemindersResponse:
        if not request.recipient_id:
            raise InvalidArgument("recipient_id is required", field="recipient_id", reason="FIELD_INVALID")
        check_inbox_reader(current_principal(), request.recipient_id)
        scope = f"prevention|{request.recipient_id}"
        limit = page_size(request.page_size, default=REMINDERS_PAGE_DEFAULT, maximum=REMINDERS_PAGE_MAX)
        after = decode_page_token(request.page_token, scope)
        reminders = await self._prevention.store.list(request.recipient_id, after, limit + 1)
        next_token = ""
        if len(reminders) > limit:
            reminders = reminders[:limit]
            next_token = encode_page_token(Cursor(reminders[-1].send_time, reminders[-1].reminder_id), scope)
        return notify_service_pb2.ListPreventionRemindersResponse(
            reminders=[_reminder_proto(reminder) for reminder in reminders], next_page_token=next_token
        )

    async def RunPreventionReminders(
        self, request: notify_service_pb2.RunPreventionRemindersRequest, context: Any
    ) -> notify_service_pb2.RunPreventionRemindersResponse:
        require_role(current_principal(), "service", "operator")
        day = paris_today()
        if request.HasField("as_of_date"):
            given = request.as_of_date
            try:
                day = date(given.year, given.month, given.day)
            except ValueError:
                raise InvalidArgument(
                    "as_of_date must be a full calendar date", field="as_of_date", reason="FIELD_INVALID"
                ) from None
        if request.recipient_id:
            _uuid(request.recipient_id, "recipient_id")
        result = await self._prevention.run(day, dry_run=request.dry_run, recipient_id=request.recipient_id)
        return notify_service_pb2.RunPreventionRemindersResponse(due_count=result.due, sent_count=result.sent)


def _reminder_proto(record: ReminderRecord) -> resources_pb2.PreventionReminder:
    return resources_pb2.PreventionReminder(
        reminder_id=str(record.reminder_id),
        recipient_id=record.recipient_id,
        program=resources_pb2.PreventionProgram.Value("PREVENTION_PROGRAM_" + record.program),
        period=record.period,
        detail=record.detail,
        send_time=timestamp(record.send_time),
        notification_id=str(record.notification_id),
    )
