"""Event intake: dossier's events turned into notifications, each event handled once."""

from __future__ import annotations

import logging

from opentelemetry import metrics

from carnet.dossier.v1 import events_pb2 as dossier_events_pb2
from carnet_kit.outbox import Event, Handler
from carnet_notify.domain import new_document_intent, prepare_notification
from carnet_notify.store import NotifyStore

log = logging.getLogger(__name__)

CONSUMER_GROUP = "notify"
"""Consumer group on every stream notify reads, and its name in ``processed_events``."""

DOCUMENT_DEPOSITED = dossier_events_pb2.DocumentDepositedEvent.DESCRIPTOR.full_name

_meter = metrics.get_meter("carnet_notify")
_events = _meter.create_counter(
    "carnet.notify.events", unit="{event}", description="Events received, by type and what came of them"
)


def dossier_event_handler(store: NotifyStore) -> Handler:
    """The handler of ``carnet:events:dossier``: a deposited document → an inbox item for its holder."""

    async def handle(event: Event) -> None:
        if event.event_type != DOCUMENT_DEPOSITED:
            _events.add(1, {"type": event.event_type, "outcome": "ignored"})
            return
        deposited = dossier_events_pb2.DocumentDepositedEvent()
        event.parse(deposited)
        intent = new_document_intent(
            holder_id=deposited.holder_id,
            document_id=deposited.document_id,
            title=deposited.title,
            event_id=event.event_id,
            invisible_to_holder=deposited.invisible_to_holder,
            holder_own=deposited.holder_own,
        )
        prepared = prepare_notification(intent) if intent is not None else None
        handled = await store.record_event(CONSUMER_GROUP, event.event_id, prepared)
        outcome = "duplicate" if not handled else ("notified" if prepared is not None else "not_told")
        _events.add(1, {"type": event.event_type, "outcome": outcome})
        log.debug("event %s (%s): %s", event.event_id, event.event_type, outcome)

    return handle
