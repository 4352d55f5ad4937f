"""SQL of the medical profile: entries (current state, tombstones) and their revisions."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from typing import Any, TypeAlias

import asyncpg

from carnet_dossier.profile import EntryFilter, ProfileEntryRecord, Visibility

Db: TypeAlias = "asyncpg.Connection | asyncpg.Pool"

ONE_PER_HOLDER_INDEX = "profile_one_per_holder"
TRUSTED_PERSON_INDEX = "profile_one_trusted_person"
DERIVED_BMI_INDEX = "profile_one_derived_bmi"


@dataclasses.dataclass(frozen=True)
class Revision:
    """One state an entry went through."""

    version: int
    entry: ProfileEntryRecord
    change_type: str
    """``CREATED``, ``UPDATED`` or ``DELETED``."""
    changed_by: dict[str, Any]
    changed_at: dt.datetime


def _record(row: asyncpg.Record) -> ProfileEntryRecord:
    return ProfileEntryRecord(
        entry_id=row["entry_id"],
        holder_id=row["holder_id"],
        kind=row["kind"],
        value=row["value"],
        source=row["source"],
        created_by=row["created_by"],
        recorded_by=row["recorded_by"],
        version=row["version"],
        hidden_from_professionals=row["hidden_from_professionals"],
        created_at=row["created_at"],
        effective_time=row["effective_time"],
        measurement_type=row["measurement_type"],
        author_rpps=row["author_rpps"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
    )


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def snapshot(record: ProfileEntryRecord) -> dict[str, Any]:
    """The entry as a revision keeps it."""
    data = dataclasses.asdict(record)
    data.update(
        entry_id=str(record.entry_id),
        holder_id=str(record.holder_id),
        created_at=_time(record.created_at),
        effective_time=_time(record.effective_time),
        updated_at=_time(record.updated_at),
        deleted_at=_time(record.deleted_at),
    )
    return data


def from_snapshot(data: dict[str, Any]) -> ProfileEntryRecord:
    """The entry a revision kept."""
    created_at = _parse_time(data["created_at"])
    effective = _parse_time(data["effective_time"])
    assert created_at is not None and effective is not None
    return ProfileEntryRecord(
        **{
            **data,
            "entry_id": uuid.UUID(data["entry_id"]),
            "holder_id": uuid.UUID(data["holder_id"]),
            "created_at": created_at,
            "effective_time": effective,
            "updated_at": _parse_time(data.get("updated_at")),
            "deleted_at": _parse_time(data.get("deleted_at")),
        }
    )


async def lock_measurements(conn: asyncpg.Connection, holder_id: uuid.UUID) -> None:
    """Serialise the changes of a holder's weights and heights (the derived BMI follows them)."""
    key = int.from_bytes(hashlib.sha256(f"carnet-profile-bmi:{holder_id}".encode()).digest()[:8], "big", signed=True)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", key)


async def insert_entry(
    conn: asyncpg.Connection,
    record: ProfileEntryRecord,
    *,
    requester: str | None = None,
    request_id: str | None = None,
    request_digest: str | None = None,
) -> bool:
    """Insert a new entry; False if the caller's ``request_id`` is already taken (a concurrent retry).

    UniqueViolationError (index ``profile_one_per_holder`` or ``profile_one_trusted_person``)
    if the holder already has such an entry.
    """
    inserted = await conn.fetchval(
        """
        INSERT INTO profile_entries (
            entry_id, holder_id, kind, measurement_type, value, source, created_by, author_rpps, recorded_by,
            version, hidden_from_professionals, effective_time, requester, request_id, request_digest, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
        ON CONFLICT (requester, request_id) DO NOTHING
        RETURNING true
        """,
        record.entry_id,
        record.holder_id,
        record.kind,
        record.measurement_type,
        record.value,
        record.source,
        record.created_by,
        record.author_rpps,
        record.recorded_by,
        record.version,
        record.hidden_from_professionals,
        record.effective_time,
        requester,
        request_id,
        request_digest,
        record.created_at,
    )
    return bool(inserted)


async def update_entry(conn: asyncpg.Connection, record: ProfileEntryRecord) -> None:
    """Write an entry's new state (its value, flag, version, last author, times)."""
    await conn.execute(
        """
        UPDATE profile_entries
           SET value = $2, measurement_type = $3, hidden_from_professionals = $4, effective_time = $5,
               recorded_by = $6, version = $7, updated_at = $8, deleted_at = $9
         WHERE entry_id = $1
        """,
        record.entry_id,
        record.value,
        record.measurement_type,
        record.hidden_from_professionals,
        record.effective_time,
        record.recorded_by,
        record.version,
        record.updated_at,
        record.deleted_at,
    )


async def insert_revision(
    conn: asyncpg.Connection, record: ProfileEntryRecord, change_type: str, changed_by: dict[str, Any], at: dt.datetime
) -> None:
    """Keep the state an entry reached by a change."""
    await conn.execute(
        "INSERT INTO profile_entry_revisions (entry_id, version, holder_id, change_type, entry, changed_by, changed_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        record.entry_id,
        record.version,
        record.holder_id,
        change_type,
        snapshot(record),
        changed_by,
        at,
    )


async def get_entry(db: Db, entry_id: uuid.UUID, *, for_update: bool = False) -> ProfileEntryRecord | None:
    """An entry, tombstones included."""
    lock = " FOR UPDATE" if for_update else ""
    row = await db.fetchrow(f"SELECT * FROM profile_entries WHERE entry_id = $1{lock}", entry_id)
    return _record(row) if row is not None else None


async def find_request(db: Db, requester: str, request_id: str) -> tuple[uuid.UUID, str] | None:
    """The entry a caller's earlier create with ``request_id`` made, and the digest of that request."""
    row = await db.fetchrow(
        "SELECT entry_id, request_digest FROM profile_entries WHERE requester = $1 AND request_id = $2",
        requester,
        request_id,
    )
    return (row["entry_id"], row["request_digest"] or "") if row is not None else None


async def live_entry_of_kind(db: Db, holder_id: uuid.UUID, kind: str) -> uuid.UUID | None:
    """The holder's entry of a one-per-holder kind, if any."""
    value: uuid.UUID | None = await db.fetchval(
        "SELECT entry_id FROM profile_entries WHERE holder_id = $1 AND kind = $2 AND deleted_at IS NULL LIMIT 1",
        holder_id,
        kind,
    )
    return value


async def latest_measurement(
    conn: asyncpg.Connection, holder_id: uuid.UUID, measurement_type: str
) -> ProfileEntryRecord | None:
    """The holder's most recently measured entry of that type (entered, not deleted)."""
    row = await conn.fetchrow(
        """
        SELECT * FROM profile_entries
         WHERE holder_id = $1 AND kind = 'MEASUREMENT' AND measurement_type = $2 AND deleted_at IS NULL
           AND source <> 'DERIVED'
         ORDER BY effective_time DESC, created_at DESC, entry_id DESC
         LIMIT 1
        """,
        holder_id,
        measurement_type,
    )
    return _record(row) if row is not None else None


async def derived_bmi(conn: asyncpg.Connection, holder_id: uuid.UUID) -> ProfileEntryRecord | None:
    """The holder's derived BMI entry, locked, if there is one."""
    row = await conn.fetchrow(
        "SELECT * FROM profile_entries WHERE holder_id = $1 AND source = 'DERIVED' AND deleted_at IS NULL FOR UPDATE",
        holder_id,
    )
    return _record(row) if row is not None else None


def _where(holder_id: uuid.UUID, filters: EntryFilter, visibility: Visibility) -> tuple[list[str], list[Any]]:
    args: list[Any] = [
        holder_id,
        sorted(visibility.open_kinds),
        sorted(visibility.hidden_kinds),
        sorted(visibility.own_hidden_kinds),
        visibility.author_rpps,
    ]
    clauses = [
        "holder_id = $1",
        "deleted_at IS NULL",
        "((NOT hidden_from_professionals AND kind = ANY($2::text[]))"
        " OR (hidden_from_professionals AND kind = ANY($3::text[]))"
        " OR (hidden_from_professionals AND kind = ANY($4::text[]) AND $5 <> '' AND author_rpps = $5))",
    ]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(f"${len(args)}"))

    if filters.kinds:
        add("kind = ANY({}::text[])", list(filters.kinds))
    if filters.measurement_type:
        add("measurement_type = {}", filters.measurement_type)
    if filters.start_time is not None:
        add("effective_time >= {}", filters.start_time)
    if filters.end_time is not None:
        add("effective_time < {}", filters.end_time)
    if filters.source:
        add("source = {}", filters.source)
    return clauses, args


async def list_entries(
    db: Db,
    holder_id: uuid.UUID,
    filters: EntryFilter,
    visibility: Visibility,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> tuple[list[ProfileEntryRecord], int]:
    """Up to ``limit`` entries newest first (after ``after``), and the number of all matches."""
    clauses, args = _where(holder_id, filters, visibility)
    total = await db.fetchval(f"SELECT count(*) FROM profile_entries WHERE {' AND '.join(clauses)}", *args)
    if after is not None:
        args.extend(after)
        clauses.append(f"(effective_time, entry_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    rows = await db.fetch(
        f"SELECT * FROM profile_entries WHERE {' AND '.join(clauses)}"
        f" ORDER BY effective_time DESC, entry_id DESC LIMIT ${len(args)}",
        *args,
    )
    return [_record(row) for row in rows], int(total)


async def list_revisions(db: Db, entry_id: uuid.UUID, below: int | None, limit: int) -> list[Revision]:
    """Up to ``limit`` revisions of an entry, newest first (below version ``below``)."""
    rows = await db.fetch(
        "SELECT * FROM profile_entry_revisions WHERE entry_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3",
        entry_id,
        below if below is not None else 2**31 - 1,
        limit,
    )
    return [
        Revision(row["version"], from_snapshot(row["entry"]), row["change_type"], row["changed_by"], row["changed_at"])
        for row in rows
    ]


async def first_revision(db: Db, entry_id: uuid.UUID) -> Revision | None:
    """What a create returned: the entry's first revision."""
    revisions = await db.fetch("SELECT * FROM profile_entry_revisions WHERE entry_id = $1 AND version = 1", entry_id)
    if not revisions:
        return None
    row = revisions[0]
    return Revision(
        row["version"], from_snapshot(row["entry"]), row["change_type"], row["changed_by"], row["changed_at"]
    )


async def entries_of_holder(db: Db, holder_id: uuid.UUID) -> list[ProfileEntryRecord]:
    """Every live entry of a holder, oldest first (for the export)."""
    rows = await db.fetch(
        "SELECT * FROM profile_entries WHERE holder_id = $1 AND deleted_at IS NULL ORDER BY effective_time, entry_id",
        holder_id,
    )
    return [_record(row) for row in rows]

