"""What consent learns from the event streams.

Two readers, for two different needs:

- :class:`IdentityFactsConsumer` keeps the identity facts decisions depend on (state
  of the space and opposition window, treating physician, legal representatives,
  helpers) in consent's own tables. It reads ``carnet:events:identity`` in the
  consumer group ``consent-facts``, shared by all replicas: each event is applied
  once, durably, and a replica that was down catches up from where the group stopped.
- :class:`InvalidationListener` drops cached facts. Every replica must see every
  change, so it reads with plain ``XREAD`` (no group) from ``$``: consent's own events
  (a change made by another replica), the facts-changed notices the group consumer
  writes after committing an identity fact, and identity's events themselves (a
  first, early invalidation). After a gap (Redis lost) it clears the whole cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as redis
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import events_pb2 as identity_events
from carnet.identity.v1 import resources_pb2 as identity_resources
from carnet_consent.domain import CLOSED_STATES, AccountState, HelperAccess
from carnet_consent.facts import FactsCache
from carnet_consent.store import EVENT_STREAM, INVALIDATION_STREAM, ConsentStore
from carnet_kit.outbox import Event, StreamConsumer, claim_event, replica_name, stream_name

log = logging.getLogger(__name__)

IDENTITY_STREAM = stream_name("identity")
FACTS_GROUP = "consent-facts"



def _short_type(event_type: str) -> str:
    # Producers name events by their full proto name; only the last part matters here.
    return event_type.rsplit(".", 1)[-1]


def _when(stamp: timestamp_pb2.Timestamp, has: bool) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC) if has else datetime.now(UTC)


def account_state(value: int) -> AccountState:
    """Identity's AccountState enum value as the domain's."""
    name = identity_resources.AccountState.Name(value).removeprefix("ACCOUNT_STATE_")  # type: ignore[arg-type]
    return AccountState.UNKNOWN if name == "UNSPECIFIED" else AccountState(name)


def helper_access(value: int) -> HelperAccess | None:
    """Identity's HelperAccess value as the domain's (None when unset)."""
    if value == identity_resources.HELPER_ACCESS_FULL:
        return HelperAccess.FULL
    if value == identity_resources.HELPER_ACCESS_READ_ONLY:
        return HelperAccess.READ_ONLY
    return None


_MESSAGES: Mapping[str, type[Message]] = {
    "PersonCreatedEvent": identity_events.PersonCreatedEvent,
    "AccountStateChangedEvent": identity_events.AccountStateChangedEvent,
    "TreatingPhysicianChangedEvent": identity_events.TreatingPhysicianChangedEvent,
    "LegalRepresentativeChangedEvent": identity_events.LegalRepresentativeChangedEvent,
    "HelperChangedEvent": identity_events.HelperChangedEvent,
}


class IdentityFactsConsumer:
    """Applies identity's events to consent's fact tables (idempotent on event_id)."""

    def __init__(self, store: ConsentStore, cache: FactsCache) -> None:
        self._store = store
        self._cache = cache

    async def handle(self, event: Event) -> None:
        """Apply one event; events consent does not need are acknowledged and ignored."""
        message_type = _MESSAGES.get(_short_type(event.event_type))
        if message_type is None:
            return
        message: Any = event.parse(message_type())
        holder_id = getattr(message, "holder_id", "") or getattr(message, "person_id", "")
        if not holder_id:
            return
        async with self._store.pool.acquire() as conn, conn.transaction():
            if not await claim_event(conn, FACTS_GROUP, event.event_id):
                return
            when = _when(message.occur_time, message.HasField("occur_time"))
            if isinstance(message, identity_events.PersonCreatedEvent):
                deadline = (
                    message.opposition_deadline.ToDatetime(tzinfo=UTC)
                    if message.HasField("opposition_deadline")
                    else None
                )
                state = account_state(message.state)
                state = AccountState.NOTIFIED if state is AccountState.UNKNOWN else state
                # An enrolled space decides like an unknown one (open) unless it starts closed.
                await self._store.set_account_state(
                    conn, holder_id, state, deadline, when, tell_replicas=state in CLOSED_STATES
                )
            elif isinstance(message, identity_events.AccountStateChangedEvent):
                await self._store.set_account_state(conn, holder_id, account_state(message.state), None, when)
            elif isinstance(message, identity_events.TreatingPhysicianChangedEvent):
                await self._store.set_treating_physician(conn, holder_id, message.professional_id, when)
            elif isinstance(message, identity_events.LegalRepresentativeChangedEvent):
                present = message.change_type != common_pb2.CHANGE_TYPE_DELETED
                await self._store.set_representative(conn, holder_id, message.representative_id, present, when)
            elif isinstance(message, identity_events.HelperChangedEvent):
                access = None if message.change_type == common_pb2.CHANGE_TYPE_DELETED else helper_access(message.access)
                await self._store.set_helper(conn, holder_id, message.helper_person_id, access, when)
        self._cache.invalidate(holder_id)

    def consumer(
        self, client: redis.Redis, *, stream: str = IDENTITY_STREAM, name: str | None = None, block_ms: int = 1000
    ) -> StreamConsumer:
        """The durable group consumer feeding :meth:`handle`."""
        return StreamConsumer(client, stream, FACTS_GROUP, name or replica_name(), self.handle, block_ms=block_ms)


INVALIDATING_STREAMS = (EVENT_STREAM, INVALIDATION_STREAM, IDENTITY_STREAM)


def _holder_of(fields: Mapping[bytes, bytes]) -> str:
    try:
        payload = json.loads(fields.get(b"payload", b"{}").decode())
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(payload, dict):
        return ""
    return str(payload.get("holder_id") or payload.get("person_id") or "")


class InvalidationListener:
    """Drops cached facts on every change seen on the streams, in every replica (XREAD from ``$``)."""

    def __init__(
        self,
        client: redis.Redis,
        cache: FactsCache,
        *,
        streams: Sequence[str] = INVALIDATING_STREAMS,
        block_ms: int = 1000,
    ) -> None:
        self._redis = client
        self._cache = cache
        self._streams = tuple(streams)
        self._block_ms = block_ms
        self.ready = asyncio.Event()
        """Set once the listener has taken its starting position."""

    async def _start_ids(self) -> dict[str, str]:
        # "$" is resolved per call; take the last id now so that nothing written
        # between two reads is missed.
        ids: dict[str, str] = {}
        for stream in self._streams:
            info: Any = await self._redis.xinfo_stream(stream) if await self._redis.exists(stream) else None
            last = info.get("last-generated-id") if info else None
            ids[stream] = last.decode() if isinstance(last, bytes) else (last or "0-0")
        return ids

    async def run(self) -> None:
        """Listen until cancelled; after a Redis failure, clear the cache and start again from now."""
        while True:
            try:
                ids = await self._start_ids()
                self.ready.set()
                while True:
                    batches: Any = await self._redis.xread(ids, count=500, block=self._block_ms)  # type: ignore[arg-type]
                    for stream, entries in batches or []:
                        name = stream.decode() if isinstance(stream, bytes) else stream
                        for message_id, fields in entries:
                            ids[name] = message_id.decode() if isinstance(message_id, bytes) else message_id
                            holder_id = _holder_of(fields)
                            if holder_id:
                                self._cache.invalidate(holder_id)
            except asyncio.CancelledError:
                raise
            except (OSError, redis.RedisError) as exc:
                log.warning("facts invalidation listener: %s; clearing the cache and retrying", exc)
                self._cache.clear()
                await asyncio.sleep(1.0)
