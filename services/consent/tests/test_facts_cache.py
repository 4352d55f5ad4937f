"""The facts cache: hits, TTL, single-flight loading, and invalidation racing a load."""

from __future__ import annotations

import asyncio

import pytest

from carnet_consent.domain import Facts, OppositionKind
from carnet_consent.facts import FactsCache
from carnet_kit.testing import wait_until

BEFORE = Facts()
AFTER = Facts(oppositions=frozenset({OppositionKind.BREAK_GLASS}))


class Source:
    """Facts as the database holds them, with a gate to hold loads mid-flight."""

    def __init__(self) -> None:
        self.facts = BEFORE
        self.loads = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def load(self, _holder_id: str) -> Facts:
        self.loads += 1
        seen = self.facts
        await self.gate.wait()
        return seen


async def started(source: Source, loads: int) -> None:
    await wait_until(lambda: source.loads >= loads, timeout=2.0, interval=0)


async def test_a_hit_does_not_load_again_until_the_ttl_passes() -> None:
    now = [0.0]
    source = Source()
    cache = FactsCache(source.load, ttl_seconds=30, clock=lambda: now[0])
    assert await cache.get("h") is BEFORE
    assert await cache.get("h") is BEFORE
    assert source.loads == 1
    now[0] = 31.0
    assert cache.peek("h") is None
    await cache.get("h")
    assert source.loads == 2


async def test_concurrent_misses_share_one_load() -> None:
    source = Source()
    source.gate.clear()
    cache = FactsCache(source.load)
    waiting = [asyncio.create_task(cache.get("h")) for _ in range(10)]
    await started(source, 1)
    source.gate.set()
    assert await asyncio.gather(*waiting) == [BEFORE] * 10
    assert source.loads == 1


async def test_an_invalidation_during_a_load_is_not_lost() -> None:
    source = Source()
    source.gate.clear()
    cache = FactsCache(source.load)
    early = asyncio.create_task(cache.get("h"))
    await started(source, 1)
    source.facts = AFTER  # the change commits while the first load is in flight
    cache.invalidate("h")
    source.gate.set()
    assert await early is BEFORE  # asked before the change
    assert await cache.get("h") is AFTER  # asked after: a load of its own, not the stale one
    assert cache.peek("h") is AFTER


async def test_a_caller_going_away_does_not_cancel_the_load_for_the_others() -> None:
    source = Source()
    source.gate.clear()
    cache = FactsCache(source.load)
    first = asyncio.create_task(cache.get("h"))
    second = asyncio.create_task(cache.get("h"))
    await started(source, 1)
    first.cancel()
    source.gate.set()
    assert await second is BEFORE
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_the_oldest_holder_is_dropped_beyond_the_bound_and_clear_drops_all() -> None:
    source = Source()
    cache = FactsCache(source.load, max_holders=2)
    for holder in ("a", "b", "c"):
        await cache.get(holder)
    assert cache.peek("a") is None and cache.peek("c") is not None and len(cache) == 2
    cache.clear()
    assert len(cache) == 0
