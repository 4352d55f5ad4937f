"""The events identity publishes about persons (PersonCreated, PersonUpdated, AccountStateChanged)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from google.protobuf import timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import events_pb2, resources_pb2
from carnet_identity.domain.accounts import AccountState, SpaceStatus
from carnet_identity.domain.model import Person
from carnet_identity.store_persons import ACCOUNT_STATE_CHANGED, PERSON_CREATED, PERSON_UPDATED, PersonStore

_STATE_NAMES = {state: f"ACCOUNT_STATE_{state.value.upper()}" for state in AccountState}


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def _rfc3339(value: dt.datetime) -> str:
    return _timestamp(value).ToJsonString()


def state_enum(state: AccountState) -> resources_pb2.AccountState.ValueType:
    """The contract's value of a state."""
    return resources_pb2.AccountState.Value(_STATE_NAMES[state])


def person_created_payload(
    event_id: uuid.UUID, person_id: uuid.UUID, ins: str, deadline: dt.datetime, now: dt.datetime
) -> dict[str, Any]:
    """A PersonCreatedEvent as the outbox stores it (the JSON form of the message), built without protobuf.

    Building a million messages and converting them costs more than the rest of an
    import; this dict is what ``json_format.MessageToDict`` gives for the same event.
    """
    return {
        "event_id": str(event_id),
        "person_id": str(person_id),
        "ins": ins,
        "state": _STATE_NAMES[AccountState.NOTIFIED],
        "opposition_deadline": _rfc3339(deadline),
        "occur_time": _rfc3339(now),
    }


async def person_created(store: PersonStore, person: Person, now: dt.datetime) -> None:
    """Publish that a person was enrolled (in the caller's transaction)."""
    event_id = str(uuid.uuid4())
    event = events_pb2.PersonCreatedEvent(
        event_id=event_id, person_id=str(person.id), ins=person.ins, state=state_enum(person.state)
    )
    if person.opposition_deadline is not None:
        event.opposition_deadline.CopyFrom(_timestamp(person.opposition_deadline))
    event.occur_time.CopyFrom(_timestamp(now))
    await store.enqueue_event(PERSON_CREATED, event, event_id)


async def person_updated(store: PersonStore, person_id: uuid.UUID, changed: list[str], now: dt.datetime) -> None:
    """Publish that traits or contact points changed."""
    event_id = str(uuid.uuid4())
    event = events_pb2.PersonUpdatedEvent(
        event_id=event_id, person_id=str(person_id), changed_fields=changed, occur_time=_timestamp(now)
    )
    await store.enqueue_event(PERSON_UPDATED, event, event_id)


async def state_changed(
    store: PersonStore,
    person_id: uuid.UUID,
    before: AccountState,
    after: SpaceStatus,
    actor: common_pb2.Actor,
    now: dt.datetime,
) -> None:
    """Publish a lifecycle transition (dossier archives, restores or shreds on it)."""
    event_id = str(uuid.uuid4())
    event = events_pb2.AccountStateChangedEvent(
        event_id=event_id,
        person_id=str(person_id),
        previous_state=state_enum(before),
        state=state_enum(after.state),
        reason=after.reason,
        actor=actor,
        occur_time=_timestamp(now),
    )
    if after.state is AccountState.CLOSED and after.scheduled_delete_at is not None:
        event.scheduled_delete_time.CopyFrom(_timestamp(after.scheduled_delete_at))
    await store.enqueue_event(ACCOUNT_STATE_CHANGED, event, event_id)
