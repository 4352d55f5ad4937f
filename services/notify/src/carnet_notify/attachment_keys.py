"""Data keys sealing attachments: one per holder, one per uploader for threads not started yet.

The keys live in notify's ``data_keys`` table, only wrapped by the current master key of
``CARNET_MASTER_KEY_FILE``; a retired master key still unwraps until :meth:`rewrap` moved
its keys under the current one. Nothing here ever writes a key in clear.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import asyncpg

from carnet_kit.auth import Principal
from carnet_kit.crypto import (
    MasterKeyRing,
    SealedBlobError,
    WrappedKeyTable,
    new_data_key,
    rewrap_keys,
    unwrap_data_key,
    wrap_data_key,
)
from carnet_kit.errors import DataLoss

log = logging.getLogger(__name__)

_DATA_KEYS = WrappedKeyTable("data_keys", "owner_id", "rewrap_time")

_UPLOADER_NAMESPACE = uuid.UUID("5d1c1f5e-7a43-4f0b-9a53-2f6a0c4e8b11")


@dataclass(frozen=True)
class KeyOwner:
    """Whose data key seals a blob: its id (bound into the wrapping) and a label for operators."""

    owner_id: uuid.UUID
    label: str

    @classmethod
    def holder(cls, holder_id: str) -> KeyOwner:
        """The holder's own key: every attachment of their threads is sealed with it."""
        return cls(uuid.UUID(holder_id), f"holder:{holder_id}")

    @classmethod
    def uploader(cls, caller: Principal) -> KeyOwner:
        """The key of an upload for a thread not started yet, resealed for the holder when it starts."""
        label = f"uploader:{caller.role}:{caller.subject}"
        return cls(uuid.uuid5(_UPLOADER_NAMESPACE, label), label)


class AttachmentKeys:
    """Reads (and makes on first use) the data keys of notify's ``data_keys`` table."""

    def __init__(self, pool: asyncpg.Pool, ring: MasterKeyRing) -> None:
        self._pool = pool
        self._ring = ring

    @property
    def ring(self) -> MasterKeyRing:
        """The master keys this service was configured with."""
        return self._ring

    async def data_key(self, owner_id: uuid.UUID, *, create_for: KeyOwner | None = None) -> bytes:
        """The data key of ``owner_id``; made and stored wrapped on first use when ``create_for`` is given.

        DATA_LOSS ``DATA_KEY_MISSING`` when there is none, ``MASTER_KEY_UNKNOWN`` when it
        was wrapped by a master key no longer configured, ``DATA_KEY_UNREADABLE`` when it
        does not unwrap.
        """
        query = "SELECT master_key_id, wrapped_key FROM data_keys WHERE owner_id = $1"
        row = await self._pool.fetchrow(query, owner_id)
        if row is None and create_for is not None:
            current = self._ring.current
            await self._pool.execute(
                "INSERT INTO data_keys (owner_id, owner, master_key_id, wrapped_key) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (owner_id) DO NOTHING",
                create_for.owner_id,
                create_for.label,
                current.key_id,
                wrap_data_key(current, create_for.owner_id, new_data_key()),
            )
            row = await self._pool.fetchrow(query, owner_id)
        if row is None:
            raise DataLoss("the attachment's data key is missing", reason="DATA_KEY_MISSING")
        master = self._ring.by_id(row["master_key_id"])
        if master is None:
            raise DataLoss(
                "the data key is wrapped by a master key that is not configured",
                reason="MASTER_KEY_UNKNOWN",
                metadata={"master_key_id": row["master_key_id"]},
            )
        try:
            return unwrap_data_key(master, owner_id, bytes(row["wrapped_key"]))
        except SealedBlobError as exc:
            raise DataLoss(str(exc), reason="DATA_KEY_UNREADABLE") from None

    async def rewrap(self, *, batch_size: int = 500) -> int:
        """Rewrap every data key wrapped by a retired master key under the current one; how many.

        Only the wrapped keys change, never a blob. Replicas may run it together (rows are
        taken with SKIP LOCKED); a key that does not unwrap is left as it is and logged.
        """
        done, unreadable = await rewrap_keys(self._pool, self._ring, _DATA_KEYS, batch_size=batch_size)
        if unreadable:
            log.error(
                "%d attachment data keys do not unwrap with the configured master keys; left as they are", unreadable
            )
        return done
