"""Data keys kept only wrapped, in a service's own table: made on first use, unwrapped on demand.

A service sealing blobs per owner (a holder, an uploader, the quarantine) keeps each
owner's AES-256 data key in a table of its own::

    owner_id uuid PRIMARY KEY, owner text, master_key_id text, wrapped_key bytea,
    create_time timestamptz, rewrap_time timestamptz

wrapped by the current master key of ``CARNET_MASTER_KEY_FILE`` (the wrapping bound to
``owner_id``). Deleting the row shreds every blob sealed under the key. Rewrapping after a
master-key rotation is :func:`carnet_kit.crypto.rewrap_keys`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class KeyOwner:
    """Whose data key seals a blob: its id (bound into the wrapping) and a label for operators."""

    owner_id: uuid.UUID
    label: str


class DataKeys:
    """The wrapped data keys of one table.

    Parameters
    ----------
    pool
        An asyncpg pool whose search path holds ``table``.
    ring
        The configured master keys.
    table
        The table's name (columns as in the module docstring).
    what
        What the keys seal, for error messages ("attachment", "DICOM object").
    cache_seconds
        How long an unwrapped key stays in memory (0: never). A key shredded elsewhere may
        still open blobs here for that long; the shredding process forgets it at once.
    """

    def __init__(
        self, pool: Any, ring: MasterKeyRing, *, table: str = "data_keys", what: str = "blob", cache_seconds: float = 0
    ) -> None:
        self._pool = pool
        self._ring = ring
        self._table = WrappedKeyTable(table, "owner_id", "rewrap_time")
        self._what = what
        self._cache_seconds = cache_seconds
        self._cache: dict[uuid.UUID, tuple[float, bytes]] = {}

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
        if self._cache_seconds:
            cached = self._cache.get(owner_id)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
        query = f"SELECT master_key_id, wrapped_key FROM {self._table.table} WHERE owner_id = $1"
        row = await self._pool.fetchrow(query, owner_id)
        if row is None and create_for is not None:
            current = self._ring.current
            await self._pool.execute(
                f"INSERT INTO {self._table.table} (owner_id, owner, master_key_id, wrapped_key)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (owner_id) DO NOTHING",
                create_for.owner_id,
                create_for.label,
                current.key_id,
                wrap_data_key(current, create_for.owner_id, new_data_key()),
            )
            row = await self._pool.fetchrow(query, owner_id)
        if row is None:
            raise DataLoss(f"the {self._what}'s data key is missing", reason="DATA_KEY_MISSING")
        master = self._ring.by_id(row["master_key_id"])
        if master is None:
            raise DataLoss(
                "the data key is wrapped by a master key that is not configured",
                reason="MASTER_KEY_UNKNOWN",
                metadata={"master_key_id": row["master_key_id"]},
            )
        try:
            key = unwrap_data_key(master, owner_id, bytes(row["wrapped_key"]))
        except SealedBlobError as exc:
            raise DataLoss(str(exc), reason="DATA_KEY_UNREADABLE") from None
        if self._cache_seconds:
            self._cache[owner_id] = (time.monotonic() + self._cache_seconds, key)
        return key

    def forget(self, owner_id: uuid.UUID) -> None:
        """Drop ``owner_id``'s key from this process's memory (after shredding it)."""
        self._cache.pop(owner_id, None)

    async def rewrap(self, *, batch_size: int = 500) -> tuple[int, int]:
        """Rewrap every key wrapped by a retired master key under the current one: (rewrapped, unreadable)."""
        return await rewrap_keys(self._pool, self._ring, self._table, batch_size=batch_size)
