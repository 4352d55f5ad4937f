"""asyncpg pools bound to a service's schema, and forward-only SQL migrations.

Migrations are files ``NNNN_name.sql`` in a service's ``migrations/`` folder, applied
in order, each in its own transaction, under an advisory lock so that several
replicas starting together apply each file once. An applied file whose content has
changed stops the start-up: migrations are never edited, only added.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class MigrationError(Exception):
    """The migrations folder or the applied history is inconsistent."""


@dataclass(frozen=True)
class Migration:
    """One forward-only migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(folder: Path) -> list[Migration]:
    """The migrations of a folder, in version order; gaps and duplicates are errors."""
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {migration.version:04d}_{migration.name}: expected version {expected:04d}")
    return found


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Nothing more than asyncpg always does (roll back an open transaction, drop listeners).

    asyncpg's default also sends ``RESET ALL`` (and unlisten/unlock/close-all) after every
    use: a round trip per acquisition for session state Carnet never sets (the search path
    comes from the connection's server settings; advisory locks are released where taken).
    """
    del conn


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections see ``schema`` first on their search path."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_reset_connection,
        server_settings={"search_path": f"{schema},public", "application_name": f"carnet-{schema}"},
        command_timeout=30,
    )
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, schema: str, folder: Path, *, table: str = "schema_migrations") -> list[int]:
    """Apply the pending migrations of ``folder`` to ``schema``; return the versions applied.

    ``table`` keeps the history; the kit's own tables (outbox, processed events) use
    a history of their own so their versions never collide with the service's.
    """
    migrations = load_migrations(folder)
    applied_now: list[int] = []
    async with pool.acquire() as conn:
        lock_key = int.from_bytes(hashlib.sha256(f"carnet-migrate:{schema}:{table}".encode()).digest()[:8], "big", signed=True)
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".{table} ('
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = await conn.fetch(f'SELECT version, name, checksum FROM "{schema}".{table} ORDER BY version')
            history = {row["version"]: row for row in rows}
            known = {m.version for m in migrations}
            unknown = sorted(set(history) - known)
            if unknown:
                raise MigrationError(f"schema {schema} has migrations this build does not know: {unknown}")
            for migration in migrations:
                row = history.get(migration.version)
                if row is not None:
                    if row["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} of {schema} was changed after it was applied"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f'INSERT INTO "{schema}".{table} (version, name, checksum) VALUES ($1, $2, $3)',
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                log.info("applied migration %s %04d_%s", schema, migration.version, migration.name)
                applied_now.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied_now


def record_to_dict(record: Any) -> dict[str, Any]:
    """A plain dict from an asyncpg record."""
    return dict(record.items())
