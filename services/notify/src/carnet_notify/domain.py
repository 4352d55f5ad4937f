"""Rules of the notify service, pure: what an intent turns into, retries, inbox access, paging."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from carnet_kit.auth import Principal
from carnet_kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from carnet_notify.kinds import PROVIDER_CHANNELS, SECURITY_KINDS, AttemptOutcome, Channel, DeliveryState, Kind
from carnet_notify.templates import TEMPLATES, RenderedInboxItem, missing_parameters, render_inbox_item

SECRET_PARAMETERS = frozenset({"code", "activation_code"})
"""Parameters never echoed back and removed from storage once every delivery is over."""

MASKED_SECRET = "******"

CHANNELS_BY_KIND: Mapping[Kind, tuple[Channel, ...]] = {
    Kind.ONE_TIME_CODE: (Channel.EMAIL, Channel.SMS),
    Kind.ACTIVATION_NOTICE: (Channel.EMAIL, Channel.LETTER),
    Kind.NEW_DOCUMENT: (Channel.IN_APP, Channel.EMAIL, Channel.SMS, Channel.PUSH),
    Kind.NEW_MESSAGE: (Channel.IN_APP, Channel.EMAIL, Channel.SMS, Channel.PUSH),
    Kind.BREAK_GLASS_ACCESS: (Channel.IN_APP, Channel.EMAIL, Channel.SMS, Channel.PUSH),
    Kind.NEW_ORGANISATION_ACCESS: (Channel.IN_APP, Channel.EMAIL, Channel.SMS, Channel.PUSH),
    Kind.AGENDA_REMINDER: (Channel.IN_APP, Channel.EMAIL, Channel.SMS, Channel.PUSH),
    Kind.PREVENTION_REMINDER: (Channel.IN_APP, Channel.EMAIL, Channel.SMS, Channel.PUSH),
    Kind.CLOSURE_CONFIRMATION: (Channel.IN_APP, Channel.EMAIL),
    Kind.OPPOSITION_RECEIPT: (Channel.IN_APP, Channel.EMAIL),
}
"""Channels each kind can use today (each has its template in ``templates.py``)."""

ONE_CHANNEL_OF: Mapping[Kind, tuple[Channel, ...]] = {
    Kind.ONE_TIME_CODE: (Channel.EMAIL, Channel.SMS),
    Kind.ACTIVATION_NOTICE: (Channel.EMAIL, Channel.LETTER),
}
"""Kinds that go through one channel when the intent names none: the first the person can be
reached by, in this order (PRODUCT.md: codes "by email or SMS", notices "by email or letter")."""

DEFAULT_CHANNELS: Mapping[Kind, tuple[Channel, ...]] = {
    Kind.NEW_DOCUMENT: (Channel.IN_APP, Channel.EMAIL),
    Kind.NEW_MESSAGE: (Channel.IN_APP, Channel.EMAIL),
    Kind.BREAK_GLASS_ACCESS: (Channel.IN_APP, Channel.EMAIL),
    Kind.NEW_ORGANISATION_ACCESS: (Channel.IN_APP, Channel.EMAIL),
    Kind.AGENDA_REMINDER: (Channel.IN_APP, Channel.EMAIL),
    Kind.PREVENTION_REMINDER: (Channel.IN_APP, Channel.EMAIL),
}
"""Channels of the other kinds when the intent names none; SMS and push go only when asked for."""

OPTIONAL_CHANNELS: tuple[Channel, ...] = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
"""Channels a recipient may turn off (per channel or per kind); the inbox and letters are always kept."""

_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")


def is_email_address(text: str) -> bool:
    """A plausible single mailbox ``local@domain.tld`` (no display name, no line breaks)."""
    return len(text) <= 254 and bool(_EMAIL.match(text))


def is_phone_number(text: str) -> bool:
    """A number in E.164 form: ``+`` then 8 to 15 digits, the first not 0 (``+33612345678``)."""
    return bool(_PHONE.match(text))


def mask_email(address: str) -> str:
    """``c***@example.org``: enough for support to recognise it, not enough to reuse it."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else ""


def mask_phone(number: str) -> str:
    """``+33*******78``: the country prefix and the last two digits."""
    if len(number) < 6:
        return ""
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


def mask_destination(channel: Channel, destination: str) -> str:
    """The destination as shown to support: masked e-mail or phone; empty for push, inbox and letters."""
    if channel is Channel.EMAIL:
        return mask_email(destination)
    if channel is Channel.SMS:
        return mask_phone(destination)
    return ""


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
    """One channel of an intent: where it goes, or suppressed (``detail`` says why)."""

    channel: Channel
    destination: str
    state: DeliveryState
    detail: str = ""


@dataclass(frozen=True)
class ChannelChoice:
    """A recipient's choice for one channel: used at all, and which kinds not to send through it."""

    enabled: bool = True
    disabled_kinds: frozenset[Kind] = frozenset()


@dataclass(frozen=True)
class RecipientPreferences:
    """A recipient's choices per channel; a channel without a choice is enabled for every kind."""

    recipient_id: str
    choices: Mapping[Channel, ChannelChoice] = field(default_factory=dict)
    update_time: datetime | None = None

    def choice(self, channel: Channel) -> ChannelChoice:
        """The choice for ``channel`` (the default when never made)."""
        return self.choices.get(channel, ChannelChoice())

    def turned_off(self, channel: Channel, kind: Kind) -> str:
        """Why the recipient keeps ``kind`` off ``channel``; empty when it may go.

        Security kinds always go, and the inbox and letters are always kept, whatever the choices.
        """
        if kind in SECURITY_KINDS or channel not in OPTIONAL_CHANNELS:
            return ""
        choice = self.choice(channel)
        if not choice.enabled:
            return f"{channel.value} turned off by the recipient"
        if kind in choice.disabled_kinds:
            return f"{kind.value} turned off for {channel.value} by the recipient"
        return ""


def _invalid(message: str, field_name: str) -> InvalidArgument:
    return InvalidArgument(message, field=field_name, reason="FIELD_INVALID")


def _sendable_kind(intent: NotificationIntent) -> Kind:
    if intent.kind is None:
        raise _invalid("kind is required", "notification.kind")
    if intent.kind not in TEMPLATES:
        raise _invalid(f"notifications of kind {intent.kind.value} cannot be sent yet", "notification.kind")
    return intent.kind


def _destination(channel: Channel, intent: NotificationIntent) -> str:
    if channel is Channel.EMAIL:
        return intent.email
    if channel is Channel.SMS:
        return intent.phone
    if channel is Channel.PUSH:
        # The push provider knows the person's registered devices by their id.
        return intent.recipient_id
    return ""


def _unreachable(channel: Channel, intent: NotificationIntent, unavailable: Mapping[Channel, str]) -> str:
    """Why ``channel`` cannot carry this intent whatever the recipient chose; empty when it can."""
    if channel in unavailable:
        return unavailable[channel]
    # The inbox needs no address; a letter goes to the postal address the insurer's register holds.
    if channel in (Channel.IN_APP, Channel.LETTER, Channel.PUSH) or _destination(channel, intent):
        return ""
    return "no mobile phone number" if channel is Channel.SMS else "no e-mail address"


def _default_channels(kind: Kind, intent: NotificationIntent, unavailable: Mapping[Channel, str]) -> tuple[Channel, ...]:
    alternatives = ONE_CHANNEL_OF.get(kind)
    if alternatives is None:
        return DEFAULT_CHANNELS.get(kind, CHANNELS_BY_KIND[kind])
    for channel in alternatives:
        if not _unreachable(channel, intent, unavailable):
            return (channel,)
    return alternatives[:1]


def plan_deliveries(
    intent: NotificationIntent,
    *,
    preferences: RecipientPreferences | None = None,
    unavailable: Mapping[Channel, str] | None = None,
) -> tuple[PlannedDelivery, ...]:
    """Validate an intent and decide its deliveries; at least one must be able to go out.

    ``unavailable`` names the channels this platform cannot send through (no provider
    configured) and why. A channel without a destination or provider is SUPPRESSED; if
    that leaves nothing, the intent is refused (NO_DELIVERY_CHANNEL). A channel the
    recipient turned off is SUPPRESSED too, but the notification is still accepted: the
    recipient's choice is an answer, not an error.
    """
    unavailable = unavailable or {}
    if not intent.recipient_id.strip():
        raise _invalid("recipient_id is required", "notification.recipient_id")
    kind = _sendable_kind(intent)
    if intent.email and not is_email_address(intent.email):
        raise _invalid("email is not a valid e-mail address", "notification.email")
    if intent.phone and not is_phone_number(intent.phone):
        raise _invalid("phone must be an E.164 number (e.g. +33612345678)", "notification.phone")
    missing = missing_parameters(kind, intent.parameters)
    if missing:
        raise InvalidArgument(
            f"template parameter {missing[0]!r} is missing",
            field="notification.parameters",
            reason="TEMPLATE_PARAMETER_MISSING",
            metadata={"parameter": missing[0]},
        )
    offered = CHANNELS_BY_KIND[kind]
    requested = tuple(dict.fromkeys(intent.channels)) or _default_channels(kind, intent, unavailable)
    for channel in requested:
        if channel not in offered:
            raise _invalid(f"{kind.value} cannot be sent through {channel.value}", "notification.channels")
    unreachable = {channel: _unreachable(channel, intent, unavailable) for channel in requested}
    if all(unreachable.values()):
        why = "; ".join(f"{channel.value}: {reason}" for channel, reason in unreachable.items())
        raise FailedPrecondition(
            f"no channel of this notification can go out ({why})", reason="NO_DELIVERY_CHANNEL"
        )
    chosen = preferences or RecipientPreferences(intent.recipient_id)
    planned = []
    for channel in requested:
        reason = unreachable[channel] or chosen.turned_off(channel, kind)
        state = DeliveryState.SUPPRESSED if reason else DeliveryState.PENDING
        planned.append(PlannedDelivery(channel, _destination(channel, intent), state, reason))
    return tuple(planned)


@dataclass(frozen=True)
class PreparedNotification:
    """A validated intent with its deliveries and, for the in-app channel, its rendered inbox item."""

    intent: NotificationIntent
    kind: Kind
    deliveries: tuple[PlannedDelivery, ...]
    inbox_item: RenderedInboxItem | None


def prepare_notification(
    intent: NotificationIntent,
    *,
    preferences: RecipientPreferences | None = None,
    unavailable: Mapping[Channel, str] | None = None,
) -> PreparedNotification:
    """Everything needed to store a notification; InvalidArgument or FailedPrecondition if it cannot go out."""
    deliveries = plan_deliveries(intent, preferences=preferences, unavailable=unavailable)
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

    def after(
        self, outcome: AttemptOutcome, attempt_number: int, retry_after: float | None = None
    ) -> tuple[DeliveryState, float | None]:
        """The delivery's next state, and the delay before the next attempt if any.

        A provider's ``Retry-After`` lengthens the wait (never beyond ``max_seconds``);
        it never shortens the backoff.
        """
        if outcome is AttemptOutcome.SUCCEEDED:
            return DeliveryState.DELIVERED, None
        if outcome is AttemptOutcome.PERMANENT_FAILURE or attempt_number >= self.max_attempts:
            return DeliveryState.FAILED, None
        delay = self.delay(attempt_number)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_seconds))
        return DeliveryState.RETRYING, delay


@dataclass(frozen=True)
class RecipientRateLimit:
    """At most ``limit`` deliveries per recipient and channel in each window of ``window_seconds``.

    Windows are fixed and aligned on the Unix epoch (an hour window runs from hh:00 to
    hh+1:00 UTC). Security kinds are never held back nor counted; the inbox and letters
    are not rate-limited. A delivery over the limit waits for the next window.
    """

    limit: int
    window_seconds: int

    def applies_to(self, kind: Kind, channel: Channel) -> bool:
        """Whether a delivery of ``kind`` through ``channel`` counts against the limit."""
        return kind not in SECURITY_KINDS and channel in PROVIDER_CHANNELS

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """Start and end of the window ``now`` falls in."""
        start = int(now.timestamp()) // self.window_seconds * self.window_seconds
        return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + self.window_seconds, UTC)


def check_preferences_caller(caller: Principal, recipient_id: str) -> None:
    """A recipient reads and changes only their own preferences; operators and services any."""
    if caller.role in ("operator", "service"):
        return
    if caller.subject == recipient_id and caller.role != "client":
        return
    raise PermissionDenied("these preferences belong to someone else", reason="NOT_RECIPIENT")


def check_preferences_mask(paths: Sequence[str]) -> None:
    """UpdatePreferences changes ``channels`` only (an empty mask means ``channels``)."""
    refused = [path for path in paths if path != "channels"]
    if refused:
        raise InvalidArgument(
            f"only channels can be changed; not {', '.join(refused)}",
            field="update_mask",
            reason="FIELD_INVALID",
            metadata={"paths": " ".join(refused)},
        )


@dataclass(frozen=True)
class ChannelChoiceChange:
    """One ChannelPreference of an UpdatePreferences request; None for an unset or unknown enum value."""

    channel: Channel | None
    enabled: bool
    disabled_kinds: tuple[Kind | None, ...] = ()


def check_preference_changes(changes: Sequence[ChannelChoiceChange]) -> dict[Channel, ChannelChoice]:
    """The new choice per listed channel; INVALID_ARGUMENT naming the field at fault.

    Security kinds cannot be turned off (SECURITY_KIND_NOT_OPTIONAL); the inbox and
    letters are not optional. A channel may be listed once.
    """
    choices: dict[Channel, ChannelChoice] = {}
    for index, change in enumerate(changes):
        at = f"preferences.channels[{index}]"
        if change.channel is None:
            raise _invalid("channel must be EMAIL, SMS or PUSH", f"{at}.channel")
        if change.channel not in OPTIONAL_CHANNELS:
            raise _invalid(
                f"{change.channel.value} cannot be turned off: the inbox and letters always carry every notification",
                f"{at}.channel",
            )
        if change.channel in choices:
            raise _invalid(f"{change.channel.value} is listed more than once", f"{at}.channel")
        kinds: set[Kind] = set()
        for position, kind in enumerate(change.disabled_kinds):
            kind_field = f"{at}.disabled_kinds[{position}]"
            if kind is None:
                raise _invalid("unknown or unspecified notification kind", kind_field)
            if kind in SECURITY_KINDS:
                # The contract's answer: FAILED_PRECONDITION (the request is well formed; the rule refuses it).
                raise FailedPrecondition(
                    f"{kind.value} cannot be turned off: security messages always go out",
                    reason="SECURITY_KIND_NOT_OPTIONAL",
                    metadata={"kind": kind.value, "field": kind_field},
                )
            kinds.add(kind)
        choices[change.channel] = ChannelChoice(enabled=change.enabled, disabled_kinds=frozenset(kinds))
    return choices


def check_inbox_reader(caller: Principal, recipient_id: str) -> None:
    """Only the recipient reads their inbox (operators too, for support)."""
    if caller.role == "operator":
        return
    if caller.subject == recipient_id and caller.role not in ("client", "service"):
        return
    raise PermissionDenied("this inbox belongs to someone else", reason="NOT_RECIPIENT")


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
