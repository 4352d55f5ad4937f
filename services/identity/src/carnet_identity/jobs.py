"""Scheduled lifecycle transitions, and oppositions to creation coming from consent.

The lifecycle job moves, in batches locked with ``FOR UPDATE SKIP LOCKED`` (several
replicas share the work, none does it twice): notified spaces past their deadline to
*created by default*, spaces suspended for 6 weeks to *closed*, closed spaces whose
archive ran out (or whose deletion was asked for) to *deleted*.

Oppositions are consent's business; identity follows them from consent's
``OppositionChangedEvent`` (stream ``carnet:events:consent``), idempotently
(:func:`carnet_kit.outbox.claim_event` in the transition's transaction).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Callable

import redis.asyncio as redis

from carnet.consent.v1 import events_pb2 as consent_events_pb2
from carnet.consent.v1 import resources_pb2 as consent_resources_pb2
from carnet_identity.domain.accounts import SUSPENSION_BEFORE_CLOSURE, AccountState, Action
from carnet_identity.keys import utcnow
from carnet_identity.lifecycle import SERVICE_ACTOR, Lifecycle
from carnet_identity.store_persons import PersonStore
from carnet_kit.errors import FailedPrecondition
from carnet_kit.outbox import Event, StreamConsumer, claim_event, stream_name

log = logging.getLogger(__name__)

LIFECYCLE_JOB_INTERVAL_SECONDS = 60.0
JOB_BATCH = 500
OPPOSITION_EVENT = "carnet.consent.v1.OppositionChangedEvent"
CONSUMER_GROUP = "identity"
CONSUMER_NAME = "identity-oppositions"
CONSENT_STREAM = stream_name("consent")


class LifecycleJobs:
    """The scheduled transitions of the lifecycle."""

    def __init__(self, store: PersonStore, lifecycle: Lifecycle, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._clock = clock

    async def _sweep(self, query: str, action: Action, cutoff: dt.datetime, now: dt.datetime, reason: str) -> int:
        done = 0
        while True:
            async with self._store.transaction() as tx:
                ids = await tx.ids_due(query, cutoff, JOB_BATCH)
                for person_id in ids:
                    await self._lifecycle.apply(person_id, action, SERVICE_ACTOR, reason=reason, now=now, store=tx)
            done += len(ids)
            if len(ids) < JOB_BATCH:
                return done

    async def run_once(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Every transition due at ``now``; how many of each."""
        now = now or self._clock()
        return {
            "created_by_default": await self._sweep(
                "past_deadline", Action.CREATE_BY_DEFAULT, now, now, "no answer within the opposition window"
            ),
            "closed": await self._sweep(
                "suspension_over", Action.CLOSE, now - SUSPENSION_BEFORE_CLOSURE, now, "suspended for 6 weeks"
            ),
            "deleted": await self._sweep("deletion_due", Action.DELETE, now, now, "archive period over"),
        }

    async def run(self, interval: float = LIFECYCLE_JOB_INTERVAL_SECONDS) -> None:
        """Run the job every ``interval`` seconds until cancelled."""
        while True:
            try:
                done = await self.run_once()
                if any(done.values()):
                    log.info("lifecycle job: %s", done)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lifecycle job failed; will retry")
            await asyncio.sleep(interval)


class OppositionFollower:
    """Applies consent's oppositions to creation (and their withdrawals) to the spaces."""

    def __init__(self, store: PersonStore, lifecycle: Lifecycle) -> None:
        self._store = store
        self._lifecycle = lifecycle

    async def handle(self, event: Event) -> None:
        """Handle one consent event; others than oppositions to creation are ignored."""
        if event.event_type != OPPOSITION_EVENT:
            return
        message = consent_events_pb2.OppositionChangedEvent()
        event.parse(message)
        if message.kind != consent_resources_pb2.OPPOSITION_KIND_CREATION:
            return
        if message.state == consent_resources_pb2.OPPOSITION_STATE_ACTIVE:
            action = Action.OPPOSE
        elif message.state == consent_resources_pb2.OPPOSITION_STATE_WITHDRAWN:
            action = Action.WITHDRAW_OPPOSITION
        else:
            return
        try:
            holder_id = uuid.UUID(message.holder_id)
        except ValueError:
            log.warning("opposition event %s names no holder id: %r", event.event_id, message.holder_id)
            return
        async with self._store.transaction() as tx:
            if not await claim_event(tx.connection, CONSUMER_GROUP, event.event_id):
                return
            person = await tx.person(holder_id)
            if person is None:
                log.warning("opposition event %s: no person %s", event.event_id, holder_id)
                return
            if action is Action.OPPOSE and person.state is AccountState.OPPOSED:
                return
            try:
                async with tx.transaction():
                    await self._lifecycle.apply(
                        holder_id,
                        action,
                        message.actor if message.HasField("actor") else SERVICE_ACTOR,
                        reason=f"opposition receipt {message.receipt_number}".strip(),
                        store=tx,
                    )
            except FailedPrecondition as refused:
                # The space cannot move (e.g. already active): nothing to retry.
                log.warning(
                    "opposition event %s for %s not applied: %s", event.event_id, holder_id, refused.message
                )

    def consumer(self, client: redis.Redis, stream: str = CONSENT_STREAM) -> StreamConsumer:
        """The stream consumer feeding :meth:`handle` (consent's stream unless told otherwise)."""
        name = f"{CONSUMER_NAME}-{socket.gethostname()}-{os.getpid()}"
        return StreamConsumer(client, stream, CONSUMER_GROUP, name, self.handle)
