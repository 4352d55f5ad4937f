"""The vocabulary of notifications: kinds, channels, delivery states and attempt outcomes."""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    """What a notification is about (NotificationKind without its prefix)."""

    ACTIVATION_NOTICE = "ACTIVATION_NOTICE"
    ONE_TIME_CODE = "ONE_TIME_CODE"
    OPPOSITION_RECEIPT = "OPPOSITION_RECEIPT"
    NEW_DOCUMENT = "NEW_DOCUMENT"
    NEW_MESSAGE = "NEW_MESSAGE"
    NEW_IMAGING_STUDY = "NEW_IMAGING_STUDY"
    BREAK_GLASS_ACCESS = "BREAK_GLASS_ACCESS"
    NEW_ORGANISATION_ACCESS = "NEW_ORGANISATION_ACCESS"
    PREVENTION_REMINDER = "PREVENTION_REMINDER"
    CLOSURE_CONFIRMATION = "CLOSURE_CONFIRMATION"
    AGENDA_REMINDER = "AGENDA_REMINDER"
    HELPER_INVITATION = "HELPER_INVITATION"
    CARE_TEAM_DECLARATION = "CARE_TEAM_DECLARATION"


SECURITY_KINDS: frozenset[Kind] = frozenset(
    {Kind.ONE_TIME_CODE, Kind.ACTIVATION_NOTICE, Kind.BREAK_GLASS_ACCESS, Kind.CLOSURE_CONFIRMATION}
)
"""Kinds a person must always receive: preferences cannot turn them off and rate limits never hold them."""


class Channel(enum.Enum):
    """How a notification reaches its recipient (DeliveryChannel without its prefix)."""

    EMAIL = "EMAIL"
    SMS = "SMS"
    PUSH = "PUSH"
    IN_APP = "IN_APP"
    LETTER = "LETTER"


PROVIDER_CHANNELS: frozenset[Channel] = frozenset({Channel.EMAIL, Channel.SMS, Channel.PUSH})
"""Channels the delivery worker hands to an outside provider (SMTP relay, SMS or push webhook).

Preferences and the per-recipient rate limit apply to these; the inbox and letters are
written at once and are always kept.
"""


class DeliveryState(enum.Enum):
    """Where one delivery is."""

    PENDING = "PENDING"
    RETRYING = "RETRYING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    SUPPRESSED = "SUPPRESSED"

    @property
    def is_open(self) -> bool:
        """Whether more attempts may come."""
        return self in (DeliveryState.PENDING, DeliveryState.RETRYING)


class AttemptOutcome(enum.Enum):
    """What came of one delivery attempt."""

    SUCCEEDED = "SUCCEEDED"
    TRANSIENT_FAILURE = "TRANSIENT_FAILURE"
    PERMANENT_FAILURE = "PERMANENT_FAILURE"
