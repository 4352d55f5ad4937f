"""Data keys sealing attachments: one per holder, one per uploader for threads not started yet.

The keys live in notify's ``data_keys`` table, only wrapped by the current master key of
``CARNET_MASTER_KEY_FILE``; a retired master key still unwraps until rewrapping moved
its keys under the current one (:meth:`rewrap_all`). Nothing here ever writes a key in clear.
"""

from __future__ import annotations

import logging
import uuid

import asyncpg

from carnet_kit.auth import Principal
from carnet_kit.crypto import MasterKeyRing
from carnet_kit.data_keys import DataKeys, KeyOwner

log = logging.getLogger(__name__)

_UPLOADER_NAMESPACE = uuid.UUID("5d1c1f5e-7a43-4f0b-9a53-2f6a0c4e8b11")


def holder_key(holder_id: str) -> KeyOwner:
    """The holder's own key: every attachment of their threads is sealed with it."""
    return KeyOwner(uuid.UUID(holder_id), f"holder:{holder_id}")


def uploader_key(caller: Principal) -> KeyOwner:
    """The key of an upload for a thread not started yet, resealed for the holder when it starts."""
    label = f"uploader:{caller.role}:{caller.subject}"
    return KeyOwner(uuid.uuid5(_UPLOADER_NAMESPACE, label), label)


class AttachmentKeys(DataKeys):
    """The data keys of notify's ``data_keys`` table."""

    def __init__(self, pool: asyncpg.Pool, ring: MasterKeyRing) -> None:
        super().__init__(pool, ring, table="data_keys", what="attachment")

    async def rewrap_all(self, *, batch_size: int = 500) -> int:
        """Rewrap every data key wrapped by a retired master key under the current one; how many.

        Only the wrapped keys change, never a blob. Replicas may run it together (rows are
        taken with SKIP LOCKED); a key that does not unwrap is left as it is and logged.
        """
        done, unreadable = await self.rewrap(batch_size=batch_size)
        if unreadable:
            log.error(
                "%d attachment data keys do not unwrap with the configured master keys; left as they are", unreadable
            )
        return done
