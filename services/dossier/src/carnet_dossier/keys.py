"""Holders' data keys: created on first use, unwrapped per use, rewrapped on master key rotation, shredded.

The wrapped keys live in dossier's ``holder_keys`` table; the master keys only in the
configuration (``CARNET_MASTER_KEY_FILE``). Nothing here ever writes a key in clear.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
import uuid

import asyncpg

from carnet_kit.crypto import (
    MasterKeyRing,
    SealedBlobError,
    WrappedKeyTable,
    new_data_key,
    rewrap_keys,
    unwrap_data_key,
    wrap_data_key,
)
from carnet_kit.errors import DataLoss, FailedPrecondition

log = logging.getLogger(__name__)

LIVE_KEY_SQL = "SELECT count(*) FROM holder_keys WHERE holder_id = {holder} AND shredded_at IS NULL"
"""1 while the holder's data key exists and was not shredded (``{holder}``: the parameter naming the holder)."""

_HOLDER_KEYS = WrappedKeyTable("holder_keys", "holder_id", "rewrapped_at", "wrapped_key IS NOT NULL")


class HolderKeys:
    """The data key of each holder, wrapped by the ring's current master key."""

    def __init__(
        self, pool: asyncpg.Pool, ring: MasterKeyRing, *, sealing_ttl: float = 300.0, sealing_capacity: int = 10_000
    ) -> None:
        self._pool = pool
        self._ring = ring
        self._sealing_ttl = sealing_ttl
        self._sealing_capacity = sealing_capacity
        self._sealing: collections.OrderedDict[uuid.UUID, tuple[float, bytes]] = collections.OrderedDict()

    @property
    def ring(self) -> MasterKeyRing:
        """The master keys this service was configured with."""
        return self._ring

    async def data_key(self, holder_id: uuid.UUID, *, create: bool = False) -> bytes:
        """The holder's data key (made and stored wrapped on first use when ``create``).

        FAILED_PRECONDITION ``HOLDER_DATA_SHREDDED`` once the key was shredded; DATA_LOSS
        ``MASTER_KEY_UNKNOWN`` when the key was wrapped by a master key no longer configured.
        """
        row = await self._pool.fetchrow(
            "SELECT master_key_id, wrapped_key, shredded_at FROM holder_keys WHERE holder_id = $1", holder_id
        )
        if row is None and create:
            current = self._ring.current
            await self._pool.execute(
                "INSERT INTO holder_keys (holder_id, master_key_id, wrapped_key) VALUES ($1, $2, $3)"
                " ON CONFLICT (holder_id) DO NOTHING",
                holder_id,
                current.key_id,
                wrap_data_key(current, holder_id, new_data_key()),
            )
            row = await self._pool.fetchrow(
                "SELECT master_key_id, wrapped_key, shredded_at FROM holder_keys WHERE holder_id = $1", holder_id
            )
        if row is None:
            raise DataLoss("the holder has no data key", reason="HOLDER_KEY_MISSING")
        if row["shredded_at"] is not None:
            raise FailedPrecondition(
                "this holder's data was erased (its key was destroyed)",
                reason="HOLDER_DATA_SHREDDED",
                metadata={"shredded_at": row["shredded_at"].isoformat()},
            )
        master = self._ring.by_id(row["master_key_id"])
        if master is None:
            raise DataLoss(
                "the holder's key is wrapped by a master key that is not configured",
                reason="MASTER_KEY_UNKNOWN",
                metadata={"master_key_id": row["master_key_id"]},
            )
        try:
            return unwrap_data_key(master, holder_id, bytes(row["wrapped_key"]))
        except SealedBlobError as exc:
            raise DataLoss(str(exc), reason="HOLDER_KEY_UNREADABLE") from None

    async def sealing_key(self, holder_id: uuid.UUID) -> bytes:
        """The holder's data key to seal new content with (made on first use), remembered a few minutes.

        Only for sealing: whoever seals with it must check in the same transaction as the
        content's metadata that the key is still live (:data:`LIVE_KEY_SQL`), so that no
        document is recorded under a key shredded meanwhile by another replica. Reading
        always goes through :meth:`data_key`, so a shredded key never opens anything.
        """
        now = time.monotonic()
        known = self._sealing.get(holder_id)
        if known is not None and known[0] > now:
            self._sealing.move_to_end(holder_id)
            return known[1]
        data_key = await self.data_key(holder_id, create=True)
        self._sealing[holder_id] = (now + self._sealing_ttl, data_key)
        self._sealing.move_to_end(holder_id)
        while len(self._sealing) > self._sealing_capacity:
            self._sealing.popitem(last=False)
        return data_key

    def forget(self, holder_id: uuid.UUID) -> None:
        """Drop the remembered sealing key of a holder."""
        self._sealing.pop(holder_id, None)

    async def rewrap(self, *, batch_size: int = 500) -> int:
        """Rewrap every data key wrapped by a retired master key under the current one; how many.

        Only the small wrapped keys change; no blob is read or written. Safe to run in
        several replicas at once (rows are locked with SKIP LOCKED). A key that does not
        open (its master key is not configured, or the row was altered) is left as it is
        and counted in the log, so one bad row never stops the others.
        """
        done, unreadable = await rewrap_keys(self._pool, self._ring, _HOLDER_KEYS, batch_size=batch_size)
        if unreadable:
            log.error("%d data keys could not be unwrapped with the configured master keys and were not rewrapped", unreadable)
        return done

    async def shred(self, holder_id: uuid.UUID, *, now: dt.datetime | None = None) -> None:
        """Destroy the holder's data key: every sealed blob of theirs becomes unreadable, for good.

        A tombstone stays, so that no new key is made for the holder afterwards.
        """
        self.forget(holder_id)
        await self._pool.execute(
            "INSERT INTO holder_keys (holder_id, master_key_id, wrapped_key, shredded_at) VALUES ($1, NULL, NULL, $2)"
            " ON CONFLICT (holder_id) DO UPDATE SET master_key_id = NULL, wrapped_key = NULL,"
            " shredded_at = COALESCE(holder_keys.shredded_at, EXCLUDED.shredded_at)",
            holder_id,
            now or dt.datetime.now(dt.UTC),
        )
