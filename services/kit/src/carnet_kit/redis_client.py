"""The redis.asyncio client every service uses."""

from __future__ import annotations

import redis.asyncio as redis


def create_redis(url: str) -> redis.Redis:
    """A client that returns bytes (callers decode what they need)."""
    return redis.Redis.from_url(url, decode_responses=False, health_check_interval=30, socket_keepalive=True)
