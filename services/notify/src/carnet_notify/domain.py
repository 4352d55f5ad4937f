"""Rules of the notify service, pure: what an intent turns into, retries, inbox access, paging."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from carnet_kit.auth import Principal
from carnet_kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from carnet_notify.kinds import AttemptOutcome, Channel, DeliveryState, Kind
from carnet_notify.templates import TEMPLATES, RenderedInboxItem, missing_parameters, render_inbox_item

SECRET_PARAMETERS = frozenset({"code", "activation_code"})
"""Parameters never echoed back and removed from storage once every delivery is over."""

MASKED_SECRET = "******"

CHANNELS_BY_KIND: Mapping[Kind, tuple[Channel, ...]] = {
    Kind.ONE_TIME_CODE: (Channel.EMAIL,),
    Kind.ACTIVATION_NOTICE: (Channel.EMAIL, Channel.LETTER),
    Kind.NEW_DOCUMENT: (Channel.IN_APP, Channel.EMAIL),
}
"""Channels each kind can use today, in the order used when the intent names none."""

LETTER_FALLBACK: frozenset[Kind] = frozenset({Kind.ACTIVATION_NOTICE})
"""Kinds sent by e-mail when the person has an address, by letter otherwise (PRODUCT.md)."""

_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


def is_email_address(text: str) -> bool:
    """A plausible single mailbox ``local@domain.tld`` (no display name, no line breaks)."""
    return len(text) <= 254 and bool(_EMAIL.match(text))


def mask_email(address: str) -> str:
    """``c***@example.org``: enough for support to recognise it, not enough to reuse it."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else ""


@dataclass(frozen=True)
class NotificationIntent:
    """Tell this recipient this thing, through these channels (none: the kind's defaults)."""

    recipient_id: str
    kind: Kind | None
    channels: tuple[Channel, ...] = ()
    parameters: Mapping[str, str] = field(default_factory=dict)
    email: str = ""
    phone: str = ""
    source_event_id: str = ""


@dataclass(frozen=True)
class PlannedDelivery:
    """One channel of an intent: where it goes, or suppressed when there is nowhere to go."""

    channel: Channel
    destination: str
    state: DeliveryState


def _invalid(message: str, field_name: str) -> InvalidArgument:
    return InvalidArgument(message, field=field_name, reason="FIELD_INVALID")


def _sendable_kind(intent: NotificationIntent) -> Kind:
    if intent.kind is None:
        raise _invalid("kind is required", "notification.kind")
    if intent.kind not in TEMPLATES:
        raise _invalid(f"notifications of kind {intent.kind.value} cannot be sent yet", "notification.kind")
    return intent.kind


def _default_channels(kind: Kind, intent: NotificationIntent, offered: tuple[Channel, ...]) -> tuple[Channel, ...]:
    if kind in LETTER_FALLBACK:
        return (Channel.EMAIL,) if intent.email else (Channel.LETTER,)
    return offered


def plan_deliveries(intent: NotificationIntent) -> tuple[PlannedDelivery, ...]:
    """Validate an intent and decide its deliveries; at least one must be able to go out."""
    if not intent.recipient_id.strip():
        raise _invalid("recipient_id is required", "notification.recipient_id")
    kind = _sendable_kind(intent)
    if intent.email and not is_email_address(intent.email):
        raise _invalid("email is not a valid e-mail address", "notification.email")
    missing = missing_parameters(kind, intent.parameters)
    if missing:
        raise InvalidArgument(
            f"template parameter {missing[0]!r} is missing",
            field="notification.parameters",
            reason="TEMPLATE_PARAMETER_MISSING",
            metadata={"parameter": missing[0]},
        )
    offered = CHANNELS_BY_KIND[kind]
    requested = tuple(dict.fromkeys(intent.channels)) or _default_channels(kind, intent, offered)
    for channel in requested:
        if channel not in offered:
            raise _invalid(f"{kind.value} cannot be sent through {channel.value}", "notification.channels")
    planned = []
    for channel in requested:
        destination = intent.email if channel is Channel.EMAIL else ""
        # A letter goes to the postal address the insurer's register holds for the person.
        reachable = channel in (Channel.IN_APP, Channel.LETTER) or bool(destination)
        planned.append(PlannedDelivery(channel, destination, DeliveryState.PENDING if reachable else DeliveryState.SUPPRESSED))
    if all(delivery.state is DeliveryState.SUPPRESSED for delivery in planned):
        raise FailedPrecondition(
            "no channel of this notification has a destination", reason="NO_DELIVERY_CHANNEL"
        )
    return tuple(planned)


@dataclass(frozen=True)
class PreparedNotification:
    """A validated intent with its deliveries and, for the in-app channel, its rendered inbox item."""

    intent: NotificationIntent
    kind: Kind
    deliveries: tuple[PlannedDelivery, ...]
    inbox_item: RenderedInboxItem | None


def prepare_notification(intent: NotificationIntent) -> PreparedNotification:
    """Everything needed to store a notification; InvalidArgument or FailedPrecondition if it cannot go out."""
    deliveries = plan_deliveries(intent)
    kind = _sendable_kind(intent)
    in_app = any(delivery.channel is Channel.IN_APP for delivery in deliveries)
    inbox_item = render_inbox_item(kind, intent.parameters) if in_app else None
    return PreparedNotification(intent, kind, deliveries, inbox_item)


def visible_parameters(parameters: Mapping[str, str]) -> dict[str, str]:
    """Parameters as shown back to callers: secrets masked."""
    return {key: MASKED_SECRET if key in SECRET_PARAMETERS else value for key, value in parameters.items()}


def new_document_intent(
    *, holder_id: str, document_id: str, title: str, event_id: str, invisible_to_holder: bool, holder_own: bool
) -> NotificationIntent | None:
    """The in-app notice of a deposited document, or None when the holder must not be told.

    A document invisible to the holder waits for its announcement consultation; a
    document the holder deposited themself needs no notice.
    """
    if invisible_to_holder or holder_own:
        return None
    return NotificationIntent(
        recipient_id=holder_id,
        kind=Kind.NEW_DOCUMENT,
        channels=(Channel.IN_APP,),
        parameters={"document_title": title.strip() or "Document sans titre", "document_id": document_id},
        source_event_id=event_id,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts with exponential backoff."""

    max_attempts: int
    initial_seconds: float
    max_seconds: float

    def delay(self, attempt_number: int) -> float:
        """Seconds to wait after failed attempt ``attempt_number`` (1-based)."""
        return float(min(self.initial_seconds * 2 ** (attempt_number - 1), self.max_seconds))

    def after(self, outcome: AttemptOutcome, attempt_number: int) -> tuple[DeliveryState, float | None]:
        """The delivery's next state, and the delay before the next attempt if any."""
        if outcome is AttemptOutcome.SUCCEEDED:
            return DeliveryState.DELIVERED, None
        if outcome is AttemptOutcome.PERMANENT_FAILURE or attempt_number >= self.max_attempts:
            return DeliveryState.FAILED, None
        return DeliveryState.RETRYING, self.delay(attempt_number)


def check_inbox_reader(caller: Principal, recipient_id: str) -> None:
    """Only the recipient reads their inbox (operators too, for support)."""
    if caller.role == "operator":
        return
    if caller.subject == recipient_id and caller.role not in ("client", "service"):
        return
    raise PermissionDenied("this inbox belongs to someone else", reason="NOT_RECIPIENT")


def page_size(requested: int, *, default: int, maximum: int) -> int:
    """The page size to use: the default for 0, at most the maximum."""
    if requested < 0:
        raise _invalid("page_size must not be negative", "page_size")
    return min(requested or default, maximum)


@dataclass(frozen=True)
class Cursor:
    """Keyset position: the last row of the previous page (newest first)."""

    time: datetime
    row_id: uuid.UUID


def _scope_digest(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def encode_page_token(cursor: Cursor, scope: str) -> str:
    """An opaque token for the page after ``cursor``, bound to the query ``scope``."""
    body = json.dumps({"t": cursor.time.isoformat(), "i": str(cursor.row_id), "s": _scope_digest(scope)})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_page_token(token: str, scope: str) -> Cursor | None:
    """The cursor of a token from a previous page of the same query; None for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
        cursor = Cursor(datetime.fromisoformat(body["t"]), uuid.UUID(body["i"]))
        scope_ok = body["s"] == _scope_digest(scope)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise _invalid("page_token is not a token from this list", "page_token") from None
    if not scope_ok or cursor.time.tzinfo is None:
        raise _invalid("page_token belongs to another query", "page_token")
    return cursor
