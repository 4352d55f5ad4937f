"""In-process cache of each holder's :class:`~carnet_consent.domain.Facts`.

Decide reads facts from here, not from PostgreSQL: a hit is a dictionary lookup.
An entry is dropped when the holder's facts change — at once for a change made by
this replica, through the event streams for changes made elsewhere (see
:mod:`carnet_consent.events`) — and expires after a TTL as a safety net against a
lost invalidation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from opentelemetry import metrics

from carnet_consent.domain import Facts

DEFAULT_TTL_SECONDS = 30.0
DEFAULT_MAX_HOLDERS = 200_000

_meter = metrics.get_meter("carnet_consent")
_lookups = _meter.create_counter(
    "carnet.consent.facts_cache.lookups", unit="{lookup}", description="Facts cache lookups, by outcome (hit, miss)"
)
_invalidations = _meter.create_counter(
    "carnet.consent.facts_cache.invalidations", unit="{invalidation}", description="Holders dropped from the facts cache"
)


def _retrieve(task: asyncio.Task[Facts]) -> None:
    # A failed load nobody awaited any more must not be reported as never retrieved.
    if not task.cancelled():
        task.exception()


class FactsCache:
    """Per-holder facts with a TTL, single-flight loading and invalidation.

    A load that overlaps an invalidation of any holder is answered to those already
    waiting but not kept, and later askers start a load of their own, so that a change
    committed while the facts were being read is neither cached nor served after the
    invalidation.
    """

    def __init__(
        self,
        load: Callable[[str], Awaitable[Facts]],
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_holders: int = DEFAULT_MAX_HOLDERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._max = max_holders
        self._clock = clock
        self._entries: dict[str, tuple[Facts, float]] = {}
        self._loading: dict[str, asyncio.Task[Facts]] = {}
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, holder_id: str) -> Facts | None:
        """The cached facts if fresh, without loading."""
        entry = self._entries.get(holder_id)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    async def get(self, holder_id: str) -> Facts:
        """The holder's facts, from the cache when fresh, else loaded once for all concurrent askers."""
        entry = self._entries.get(holder_id)
        if entry is not None and entry[1] > self._clock():
            _lookups.add(1, {"outcome": "hit"})
            return entry[0]
        _lookups.add(1, {"outcome": "miss"})
        pending = self._loading.get(holder_id)
        if pending is None:
            # The load is a task of its own: a caller that goes away does not cancel it
            # for the others waiting on the same holder.
            pending = asyncio.get_running_loop().create_task(self._fill(holder_id))
            pending.add_done_callback(_retrieve)
            self._loading[holder_id] = pending
        return await asyncio.shield(pending)

    async def _fill(self, holder_id: str) -> Facts:
        epoch = self._epoch
        me = asyncio.current_task()
        try:
            facts = await self._load(holder_id)
        finally:
            if self._loading.get(holder_id) is me:
                del self._loading[holder_id]
        if epoch == self._epoch:
            if len(self._entries) >= self._max:
                self._entries.pop(next(iter(self._entries)))
            self._entries[holder_id] = (facts, self._clock() + self._ttl)
        return facts

    def invalidate(self, holder_id: str) -> None:
        """Drop the holder's facts; the next decision reloads them (it does not join a load already running)."""
        self._epoch += 1
        self._loading.pop(holder_id, None)
        if self._entries.pop(holder_id, None) is not None:
            _invalidations.add(1, {"scope": "holder"})

    def clear(self) -> None:
        """Drop everything (after a gap in the invalidation feed)."""
        self._epoch += 1
        self._entries.clear()
        self._loading.clear()
        _invalidations.add(1, {"scope": "all"})
