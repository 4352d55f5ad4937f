"""SQL of the consent service (schema ``consent``): the facts decisions depend on."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from typing import Any

import asyncpg

from carnet_consent.domain import Facts, OppositionKind
from carnet_kit.auth import Principal

SCHEMA = "consent"

_FACTS_SQL = """
SELECT
    EXISTS (
        SELECT 1 FROM blocks
        WHERE holder_id = $1 AND (professional_id = $2 OR ($3 <> '' AND rpps = $3))
    ) AS blocked,
    ARRAY(SELECT kind FROM oppositions WHERE holder_id = $1 AND withdraw_time IS NULL) AS oppositions
"""


def _actor_json(actor: Principal) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(actor).items()}


def new_receipt_number() -> str:
    """A receipt number given to the holder: ``OPP-`` and 12 unambiguous characters."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "OPP-" + "".join(secrets.choice(alphabet) for _ in range(12))


class ConsentStore:
    """Reads and writes the consent schema through a pool bound to it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def load_facts(self, holder_id: str, actor: Principal) -> Facts:
        """Blocks and oppositions in force that concern this holder and this actor."""
        professional_id = actor.subject if actor.role == "professional" else ""
        rpps = actor.rpps if actor.role == "professional" else ""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_FACTS_SQL, holder_id, professional_id, rpps)
        assert row is not None
        return Facts(
            blocked=bool(professional_id) and bool(row["blocked"]),
            oppositions=frozenset(OppositionKind(kind) for kind in row["oppositions"]),
        )

    async def record_opposition(
        self, holder_id: str, kind: OppositionKind, *, recorded_by: Principal, channel: str = "ONLINE"
    ) -> str:
        """Record an opposition in force; return its receipt number."""
        receipt = new_receipt_number()
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO oppositions (opposition_id, holder_id, kind, channel, receipt_number, recorded_by)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                uuid.uuid4(),
                holder_id,
                kind.value,
                channel,
                receipt,
                _actor_json(recorded_by),
            )
        return receipt

    async def add_block(self, holder_id: str, professional_id: str, *, rpps: str = "", created_by: Principal) -> str:
        """Block a professional for a holder; return the block id (the existing one if already blocked)."""
        async with self._pool.acquire() as conn:
            block_id = await conn.fetchval(
                "INSERT INTO blocks (block_id, holder_id, professional_id, rpps, created_by)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (holder_id, professional_id) DO UPDATE SET rpps = blocks.rpps"
                " RETURNING block_id",
                uuid.uuid4(),
                holder_id,
                professional_id,
                rpps,
                _actor_json(created_by),
            )
        return str(block_id)
