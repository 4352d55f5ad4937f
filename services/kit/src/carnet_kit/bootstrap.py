"""What every service opens at start: its pool (migrated), Redis, identity, a token verifier."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import redis.asyncio as redis

from carnet_kit.auth import TokenVerifier
from carnet_kit.db import create_pool, migrate
from carnet_kit.outbox import install_outbox
from carnet_kit.peers import identity_channel, remote_verifier
from carnet_kit.redis_client import create_redis
from carnet_kit.settings import ServiceSettings


@dataclass
class Foundations:
    """Opened resources; ``resources`` closes them all (hand it to the ServiceApp)."""

    pool: asyncpg.Pool
    redis: redis.Redis
    identity: grpc.aio.Channel
    verifier: TokenVerifier
    resources: contextlib.AsyncExitStack


async def open_foundations(
    settings: ServiceSettings,
    schema: str,
    migrations: Path,
    *,
    outbox: bool = False,
    verifier: TokenVerifier | None = None,
) -> Foundations:
    """Open and migrate; on any failure close what was opened and re-raise."""
    resources = contextlib.AsyncExitStack()
    try:
        pool = await create_pool(
            settings.database_url, schema, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        resources.push_async_callback(pool.close)
        await migrate(pool, schema, migrations)
        if outbox:
            await install_outbox(pool, schema)
        client = create_redis(settings.redis_url)
        resources.push_async_callback(client.aclose)
        channel = identity_channel(settings)
        resources.push_async_callback(channel.close, None)
        return Foundations(pool, client, channel, verifier or remote_verifier(channel, client), resources)
    except BaseException:
        await resources.aclose()
        raise
