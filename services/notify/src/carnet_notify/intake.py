"""Event intake beyond deposited documents: access alerts, agenda reminders, announced documents
(dossier), closed accounts and treating physicians (identity), opposition receipts (consent).

Each event is claimed in ``processed_events`` (group ``notify``) in the same transaction as
the notifications it makes, so a redelivered event adds nothing: at most one notification
per event, recipient and kind, hence one delivery per recipient and channel. The inbox item
is always written; the e-mail follows the recipient's preferences (security kinds ignore
them) and goes to the address identity holds — if identity has none or cannot be asked, the
e-mail is recorded SUPPRESSED (``no e-mail address``) and the inbox item still goes in.
E-mails, SMS and push never carry medical content (see ``templates.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
from google.protobuf import timestamp_pb2
from opentelemetry import metrics

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import events_pb2 as consent_events_pb2
from carnet.consent.v1 import resources_pb2 as consent_resources_pb2
from carnet.dossier.v1 import events_pb2 as dossier_events_pb2
from carnet.identity.v1 import events_pb2 as identity_events_pb2
from carnet.identity.v1 import resources_pb2 as identity_resources_pb2
from carnet_kit.outbox import Event, Handler, claim_event
from carnet_notify.domain import NotificationIntent, PreparedNotification, is_email_address, prepare_notification
from carnet_notify.events import CONSUMER_GROUP
from carnet_notify.kinds import PROVIDER_CHANNELS, Channel, Kind
from carnet_notify.peers import HolderContacts
from carnet_notify.space_erasure import SpaceErasure
from carnet_notify.store import NotifyStore, insert_notification

log = logging.getLogger(__name__)

ACCESS_ALERT = dossier_events_pb2.AccessAlertEvent.DESCRIPTOR.full_name
AGENDA_REMINDER_DUE = dossier_events_pb2.AgendaReminderDueEvent.DESCRIPTOR.full_name
DOCUMENT_CHANGED = dossier_events_pb2.DocumentChangedEvent.DESCRIPTOR.full_name
ACCOUNT_STATE_CHANGED = identity_events_pb2.AccountStateChangedEvent.DESCRIPTOR.full_name
TREATING_PHYSICIAN_CHANGED = identity_events_pb2.TreatingPhysicianChangedEvent.DESCRIPTOR.full_name
OPPOSITION_CHANGED = consent_events_pb2.OppositionChangedEvent.DESCRIPTOR.full_name

PARIS = ZoneInfo("Europe/Paris")
_MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip
_ROLE_LABELS = {
    common_pb2.ROLE_PROFESSIONAL: "professionnel de santé",
    common_pb2.ROLE_CLIENT: "logiciel de professionnel de santé",
    common_pb2.ROLE_OPERATOR: "agent de Carnet",
    common_pb2.ROLE_SERVICE: "service de Carnet",
}
_PROFESSION_LABELS = {
    "10": "médecin",
    "21": "pharmacien",
    "60": "infirmier",
    "50": "sage-femme",
    "40": "chirurgien-dentiste",
}
_CHANNELS = {
    common_pb2.DELIVERY_CHANNEL_EMAIL: Channel.EMAIL,
    common_pb2.DELIVERY_CHANNEL_SMS: Channel.SMS,
    common_pb2.DELIVERY_CHANNEL_PUSH: Channel.PUSH,
    common_pb2.DELIVERY_CHANNEL_IN_APP: Channel.IN_APP,
}

_meter = metrics.get_meter("carnet_notify")
_events = _meter.create_counter(
    "carnet.notify.events", unit="{event}", description="Events received, by type and what came of them"
)


def french_time(stamp: timestamp_pb2.Timestamp | None, *, with_time: bool = True) -> str:
    """``3 mars 2026 à 14 h 05`` in Paris time; now when the event carries no time."""
    moment = stamp.ToDatetime(tzinfo=UTC) if stamp is not None and stamp.ByteSize() else datetime.now(UTC)
    local = moment.astimezone(PARIS)
    day = f"{local.day} {_MONTHS[local.month - 1]} {local.year}"
    return f"{day} à {local.hour} h {local.minute:02d}" if with_time else day


def actor_role(actor: common_pb2.Actor) -> str:
    """Who accessed, as the holder may be told: a role (a profession when known), never a name."""
    if actor.role == common_pb2.ROLE_PROFESSIONAL and actor.profession_code in _PROFESSION_LABELS:
        return _PROFESSION_LABELS[actor.profession_code]
    return _ROLE_LABELS.get(actor.role, "intervenant")


def access_alert_intents(
    alert: dossier_events_pb2.AccessAlertEvent, *, event_id: str, treating_physician: str, holder_email: str
) -> list[NotificationIntent]:
    """Who hears of an access alert: the holder (if ``notify_holder``), the treating physician
    (break-glass and emergency regulation, if ``notify_treating_physician`` and one is known)."""
    parameters = {
        "actor_role": actor_role(alert.actor),
        "organisation": alert.actor.organisation_id,
        "access_time": french_time(alert.occur_time),
        "access_log_entry_id": alert.access_log_entry_id,
    }
    if alert.kind == dossier_events_pb2.ACCESS_ALERT_KIND_NEW_ORGANISATION:
        kind = Kind.NEW_ORGANISATION_ACCESS
    elif alert.kind in (
        dossier_events_pb2.ACCESS_ALERT_KIND_BREAK_GLASS,
        dossier_events_pb2.ACCESS_ALERT_KIND_EMERGENCY_REGULATION,
    ):
        kind = Kind.BREAK_GLASS_ACCESS
    else:
        return []
    intents = []
    if alert.notify_holder or kind is Kind.NEW_ORGANISATION_ACCESS:
        intents.append(
            NotificationIntent(
                recipient_id=alert.holder_id,
                kind=kind,
                channels=(Channel.IN_APP, Channel.EMAIL),
                parameters=parameters,
                email=holder_email,
                source_event_id=event_id,
            )
        )
    if kind is Kind.BREAK_GLASS_ACCESS and alert.notify_treating_physician and treating_physician:
        # The physician's inbox (they have no e-mail contact at identity); the holder is named by id only.
        intents.append(
            NotificationIntent(
                recipient_id=treating_physician,
                kind=kind,
                channels=(Channel.IN_APP,),
                parameters={**parameters, "audience": "treating_physician", "holder_id": alert.holder_id},
                source_event_id=event_id,
            )
        )
    return intents


class IntakeStore:
    """SQL of the intake: notifications of one event in one transaction, and treating physicians."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, event_id: str, prepared: Sequence[PreparedNotification]) -> bool:
        """Claim the event and store its notifications together; False for an event handled before."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_event(conn, CONSUMER_GROUP, event_id):
                return False
            for notification in prepared:
                await insert_notification(conn, notification, request_id="", created_by=f"event:{event_id}")
            return True

    async def set_treating_physician(
        self, event_id: str, holder_id: str, professional_id: str, occur: datetime
    ) -> bool:
        """Record identity's word on a holder's physician unless a later one is already known."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_event(conn, CONSUMER_GROUP, event_id):
                return False
            await conn.execute(
                "INSERT INTO treating_physicians (holder_id, professional_id, occur_time) VALUES ($1, $2, $3)"
                " ON CONFLICT (holder_id) DO UPDATE SET professional_id = EXCLUDED.professional_id,"
                " occur_time = EXCLUDED.occur_time, update_time = now()"
                " WHERE treating_physicians.occur_time <= EXCLUDED.occur_time",
                holder_id,
                professional_id,
                occur,
            )
            return True

    async def treating_physician(self, holder_id: str) -> str:
        """The holder's treating physician (a professional id); empty when none is known."""
        async with self._pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT professional_id FROM treating_physicians WHERE holder_id = $1", holder_id
            )
        return str(found or "")


class EventIntake:
    """Handlers of dossier's, identity's and consent's streams (beyond deposited documents)."""

    def __init__(
        self,
        store: NotifyStore,
        intake: IntakeStore,
        contacts: HolderContacts,
        *,
        unavailable: dict[Channel, str],
        on_new_deliveries: Callable[[], None],
        erasure: SpaceErasure | None = None,
    ) -> None:
        self._erasure = erasure
        self._store = store
        self._intake = intake
        self._contacts = contacts
        self._unavailable = unavailable
        self._on_new_deliveries = on_new_deliveries

    async def _email_for(self, recipient_id: str, kind: Kind) -> str:
        """The recipient's address when an e-mail would go out; empty otherwise (the e-mail is then suppressed)."""
        if Channel.EMAIL in self._unavailable:
            return ""
        preferences = await self._store.get_preferences(recipient_id)
        if preferences.turned_off(Channel.EMAIL, kind):
            return ""
        address = await self._contacts.email(recipient_id)
        return address if is_email_address(address) else ""

    async def _notify(self, event: Event, intents: Sequence[NotificationIntent]) -> None:
        prepared = []
        for intent in intents:
            if not intent.recipient_id.strip():
                continue  # an event without its holder tells nobody (claimed all the same)
            preferences = await self._store.get_preferences(intent.recipient_id)
            prepared.append(prepare_notification(intent, preferences=preferences, unavailable=self._unavailable))
        handled = await self._intake.record(event.event_id, prepared)
        outcome = "duplicate" if not handled else ("notified" if prepared else "not_told")
        _events.add(1, {"type": event.event_type, "outcome": outcome})
        log.debug("event %s (%s): %s", event.event_id, event.event_type, outcome)
        if handled and any(d.channel in PROVIDER_CHANNELS and d.state.is_open for n in prepared for d in n.deliveries):
            self._on_new_deliveries()

    # ------------------------------------------------------------------ dossier

    def dossier_handler(self, fallback: Handler) -> Handler:
        """Access alerts, agenda reminders and announced documents; any other event goes to ``fallback``."""

        async def handle(event: Event) -> None:
            if event.event_type == ACCESS_ALERT:
                await self._access_alert(event)
            elif event.event_type == AGENDA_REMINDER_DUE:
                await self._agenda_reminder(event)
            elif event.event_type == DOCUMENT_CHANGED:
                await self._document_changed(event)
            else:
                await fallback(event)

        return handle

    async def _access_alert(self, event: Event) -> None:
        alert = dossier_events_pb2.AccessAlertEvent()
        event.parse(alert)
        kind = (
            Kind.NEW_ORGANISATION_ACCESS
            if alert.kind == dossier_events_pb2.ACCESS_ALERT_KIND_NEW_ORGANISATION
            else Kind.BREAK_GLASS_ACCESS
        )
        physician = await self._intake.treating_physician(alert.holder_id) if alert.notify_treating_physician else ""
        email = await self._email_for(alert.holder_id, kind) if alert.holder_id else ""
        intents = access_alert_intents(alert, event_id=event.event_id, treating_physician=physician, holder_email=email)
        await self._notify(event, intents)

    async def _agenda_reminder(self, event: Event) -> None:
        due = dossier_events_pb2.AgendaReminderDueEvent()
        event.parse(due)
        asked = tuple(dict.fromkeys(_CHANNELS[c] for c in due.channels if c in _CHANNELS))
        # The inbox always carries it; the event's channels, else the holder's preferences (inbox and e-mail).
        channels = (
            (Channel.IN_APP, *(c for c in asked if c is not Channel.IN_APP))
            if asked
            else (
                Channel.IN_APP,
                Channel.EMAIL,
            )
        )
        email = await self._email_for(due.holder_id, Kind.AGENDA_REMINDER) if Channel.EMAIL in channels else ""
        intent = NotificationIntent(
            recipient_id=due.holder_id,
            kind=Kind.AGENDA_REMINDER,
            channels=channels,
            parameters={
                "start_time": french_time(due.start_time),
                "agenda_title": due.title,
                "agenda_event_id": due.agenda_event_id,
            },
            email=email,
            source_event_id=event.event_id,
        )
        await self._notify(event, [intent])

    async def _document_changed(self, event: Event) -> None:
        changed = dossier_events_pb2.DocumentChangedEvent()
        event.parse(changed)
        if changed.change != dossier_events_pb2.DOCUMENT_CHANGE_ANNOUNCED:
            _events.add(1, {"type": event.event_type, "outcome": "ignored"})
            return
        # A document kept from the holder until announced is now theirs to see: NEW_DOCUMENT.
        email = await self._email_for(changed.holder_id, Kind.NEW_DOCUMENT)
        intent = NotificationIntent(
            recipient_id=changed.holder_id,
            kind=Kind.NEW_DOCUMENT,
            channels=(Channel.IN_APP, Channel.EMAIL),
            parameters={"document_title": "Document annoncé", "document_id": changed.document_id, "announced": "true"},
            email=email,
            source_event_id=event.event_id,
        )
        await self._notify(event, [intent])

    # ------------------------------------------------------------------ identity

    def identity_handler(self) -> Handler:
        """Closed accounts (CLOSURE_CONFIRMATION), deleted spaces (erased, see ``space_erasure.py``) and treating
        physicians (kept for break-glass alerts)."""

        async def handle(event: Event) -> None:
            if event.event_type == TREATING_PHYSICIAN_CHANGED:
                changed = identity_events_pb2.TreatingPhysicianChangedEvent()
                event.parse(changed)
                occur = (
                    changed.occur_time.ToDatetime(tzinfo=UTC) if changed.occur_time.ByteSize() else datetime.now(UTC)
                )
                handled = await self._intake.set_treating_physician(
                    event.event_id, changed.holder_id, changed.professional_id, occur
                )
                _events.add(1, {"type": event.event_type, "outcome": "recorded" if handled else "duplicate"})
            elif event.event_type == ACCOUNT_STATE_CHANGED:
                state = identity_events_pb2.AccountStateChangedEvent()
                event.parse(state)
                if state.state == identity_resources_pb2.ACCOUNT_STATE_DELETED and self._erasure is not None:
                    erased = await self._erasure.erase(event.event_id, state.person_id)
                    _events.add(1, {"type": event.event_type, "outcome": "erased" if erased else "duplicate"})
                    return
                if state.state != identity_resources_pb2.ACCOUNT_STATE_CLOSED:
                    _events.add(1, {"type": event.event_type, "outcome": "ignored"})
                    return
                email = await self._email_for(state.person_id, Kind.CLOSURE_CONFIRMATION)
                intent = NotificationIntent(
                    recipient_id=state.person_id,
                    kind=Kind.CLOSURE_CONFIRMATION,
                    channels=(Channel.IN_APP, Channel.EMAIL),
                    parameters={"closure_time": french_time(state.occur_time, with_time=False)},
                    email=email,
                    source_event_id=event.event_id,
                )
                await self._notify(event, [intent])
            else:
                _events.add(1, {"type": event.event_type, "outcome": "ignored"})

        return handle

    # ------------------------------------------------------------------ consent

    def consent_handler(self) -> Handler:
        """A recorded opposition → OPPOSITION_RECEIPT with its receipt number (withdrawals are not receipted here)."""

        async def handle(event: Event) -> None:
            if event.event_type != OPPOSITION_CHANGED:
                _events.add(1, {"type": event.event_type, "outcome": "ignored"})
                return
            opposition = consent_events_pb2.OppositionChangedEvent()
            event.parse(opposition)
            if opposition.state != consent_resources_pb2.OPPOSITION_STATE_ACTIVE or not opposition.receipt_number:
                _events.add(1, {"type": event.event_type, "outcome": "ignored"})
                return
            email = await self._email_for(opposition.holder_id, Kind.OPPOSITION_RECEIPT)
            intent = NotificationIntent(
                recipient_id=opposition.holder_id,
                kind=Kind.OPPOSITION_RECEIPT,
                channels=(Channel.IN_APP, Channel.EMAIL),
                parameters={"receipt_number": opposition.receipt_number, "opposition_id": opposition.opposition_id},
                email=email,
                source_event_id=event.event_id,
            )
            await self._notify(event, [intent])

        return handle
