"""A deleted space leaves nothing in notify: its attachments' key is shredded, the rest removed.

When identity says a space is deleted (``AccountStateChangedEvent`` to ``DELETED``: at the
end of the ten-year archive or on the holder's request), notify, in one transaction with
the event's claim:

- deletes the holder's data key, so that every attachment sealed under it is unreadable
  at once, wherever copies of the objects may linger (crypto-shredding, as dossier does);
- removes the threads with the holder (their messages, participants, read states and
  attachments), the holder's notifications with their deliveries, attempts and letters,
  inbox items, preferences, rate-limit counts, prevention reminders and treating physician.

Then it deletes the sealed objects of those attachments from the object store. An object
that cannot be deleted then is unreadable all the same (its key is gone) and is logged.
Attachments a professional uploaded for a thread never started are theirs, not the
holder's, and stay. A redelivered event finds nothing more to do.
"""

from __future__ import annotations

import logging
import uuid

import asyncpg
from opentelemetry import trace

from carnet_kit.objectstore import ObjectStore
from carnet_kit.outbox import claim_event
from carnet_notify.events import CONSUMER_GROUP

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# Child rows first where no ON DELETE CASCADE carries them (prevention reminders point at notifications).
_REMOVALS = (
    "DELETE FROM threads WHERE holder_id = $1",
    "DELETE FROM prevention_reminders WHERE recipient_id = $1",
    "DELETE FROM inbox_items WHERE recipient_id = $1",
    "DELETE FROM notifications WHERE recipient_id = $1",
    "DELETE FROM preferences WHERE recipient_id = $1",
    "DELETE FROM send_counts WHERE recipient_id = $1",
    "DELETE FROM treating_physicians WHERE holder_id = $1",
)


class SpaceErasure:
    """Erases what notify holds of a deleted space."""

    def __init__(self, pool: asyncpg.Pool, blobs: ObjectStore) -> None:
        self._pool = pool
        self._blobs = blobs

    async def erase(self, event_id: str, holder_id: str) -> bool:
        """Erase ``holder_id``'s data; False when the event was handled before."""
        with tracer.start_as_current_span("notify.erase_space"):
            try:
                key_owner = uuid.UUID(holder_id)
            except ValueError:
                key_owner = None
            async with self._pool.acquire() as conn, conn.transaction():
                if not await claim_event(conn, CONSUMER_GROUP, event_id):
                    return False
                blob_keys = [
                    row["blob_key"]
                    for row in await conn.fetch(
                        "SELECT a.blob_key FROM attachments a JOIN threads t USING (thread_id) WHERE t.holder_id = $1"
                        " UNION SELECT blob_key FROM attachments WHERE key_owner_id = $2",
                        holder_id,
                        key_owner,
                    )
                ]
                if key_owner is not None:
                    await conn.execute("DELETE FROM attachments WHERE key_owner_id = $1", key_owner)
                    shredded = await conn.execute("DELETE FROM data_keys WHERE owner_id = $1", key_owner)
                else:
                    shredded = "DELETE 0"
                for statement in _REMOVALS:
                    await conn.execute(statement, holder_id)
            for blob_key in blob_keys:
                try:
                    await self._blobs.delete(blob_key)
                except Exception:
                    log.exception("could not delete %s (unreadable: its key is shredded)", blob_key)
            log.info(
                "space of %s deleted: %s data key, %d attachment objects removed",
                holder_id,
                "its" if shredded != "DELETE 0" else "no",
                len(blob_keys),
            )
            return True
