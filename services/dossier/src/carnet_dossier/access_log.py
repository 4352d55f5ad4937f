"""The holder's access log: every read, write and decision, hash-chained per holder.

Each entry carries its holder's next ``sequence`` (from 1, without gaps), the hash of
the entry before it (``previous_hash``) and its own ``entry_hash``: SHA-256 over a
canonical JSON of every field but the ids and the hash itself. Changing, inserting or
removing an entry anywhere breaks the chain, which :func:`verify` finds; removing the
newest entries is found by comparing with the chain head (``access_log_heads``), which
appends lock, so that a holder's entries are written one after the other.

The first allowed access by an organisation new to the holder raises an
``AccessAlertEvent`` (kind NEW_ORGANISATION) in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
from google.protobuf import json_format, timestamp_pb2
from opentelemetry import trace

from carnet.common.v1 import common_pb2
from carnet.dossier.v1 import events_pb2
from carnet_kit.errors import InvalidArgument
from carnet_kit.outbox import OutboxRow, enqueue, stream_name, wake_channel

SCHEMA = "dossier"
EVENT_STREAM = stream_name("dossier")
ACCESS_ALERT = events_pb2.AccessAlertEvent.DESCRIPTOR.full_name

OUTCOMES = ("allowed", "denied", "failed")

# What the hash covers, in this order of names (the JSON is sorted anyway).
_HASHED = (
    "holder_id",
    "sequence",
    "actor",
    "actor_display_name",
    "action",
    "operation",
    "service",
    "item_kind",
    "item_id",
    "item_label",
    "outcome",
    "reason",
    "break_glass_reason",
    "occur_time",
    "trace_id",
    "previous_hash",
)


_NEVER = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class NewEntry:
    """An access to record; the service adds its place in the chain."""

    holder_id: uuid.UUID
    actor: dict[str, Any]
    """The actor as JSON (``carnet.common.v1.Actor`` with proto field names)."""
    action: str
    """The consent action (``ACTION_READ``, ``ACTION_CREATE``…)."""
    outcome: str
    """``allowed``, ``denied`` or ``failed``."""
    operation: str = ""
    service: str = "dossier"
    item_kind: str = ""
    item_id: str = ""
    item_label: str = ""
    reason: str = ""
    break_glass_reason: str = ""
    actor_display_name: str = ""
    trace_id: str = ""


@dataclasses.dataclass(frozen=True)
class Entry(NewEntry):
    """A recorded entry with its place in the holder's chain."""

    entry_id: int = 0
    sequence: int = 0
    occur_time: dt.datetime = _NEVER
    previous_hash: str = ""
    entry_hash: str = ""

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Entry:
        """Map an ``access_log`` row."""
        return cls(
            holder_id=row["holder_id"],
            actor=row["actor"],
            action=row["action"],
            outcome=row["outcome"],
            operation=row["operation"],
            service=row["service"],
            item_kind=row["item_kind"],
            item_id=row["item_id"],
            item_label=row["item_label"],
            reason=row["reason"],
            break_glass_reason=row["break_glass_reason"],
            actor_display_name=row["actor_display_name"],
            trace_id=row["trace_id"],
            entry_id=row["entry_id"],
            sequence=row["sequence"] or 0,
            occur_time=row["created_at"],
            previous_hash=row["previous_hash"],
            entry_hash=row["entry_hash"] or "",
        )


def chain_hash(entry: Entry) -> str:
    """SHA-256 (hex) of the entry's canonical JSON, previous hash included."""
    values: dict[str, Any] = {name: getattr(entry, name) for name in _HASHED}
    values["holder_id"] = str(entry.holder_id)
    values["occur_time"] = entry.occur_time.astimezone(dt.UTC).isoformat(timespec="microseconds")
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


_ALERT_KINDS = {
    "ACTION_BREAK_GLASS_READ": events_pb2.ACCESS_ALERT_KIND_BREAK_GLASS,
    "ACTION_EMERGENCY_REGULATION_READ": events_pb2.ACCESS_ALERT_KIND_EMERGENCY_REGULATION,
}


async def append(
    db: asyncpg.Connection | asyncpg.Pool,
    new: NewEntry,
    *,
    now: dt.datetime | None = None,
    notify_holder: bool = False,
    notify_treating_physician: bool = False,
) -> Entry:
    """Record an access at the head of its holder's chain (in the caller's transaction, if any).

    With ``notify_holder`` / ``notify_treating_physician`` (a decision's obligations), an
    ``AccessAlertEvent`` is raised in the same transaction.
    """
    if new.outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {new.outcome!r}")
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            return await _append(conn, new, now, notify_holder, notify_treating_physician)
    if db.is_in_transaction():  # the caller's transaction (a deposit's): no savepoint needed
        return await _append(db, new, now, notify_holder, notify_treating_physician)
    async with db.transaction():
        return await _append(db, new, now, notify_holder, notify_treating_physician)


@dataclasses.dataclass(frozen=True)
class ChainHead:
    """A holder's chain head as locked by the current transaction: the last sequence and hash."""

    sequence: int
    head_hash: str


LOCK_HEAD_SQL = (
    "INSERT INTO access_log_heads (holder_id) VALUES ({holder})"
    " ON CONFLICT (holder_id) DO UPDATE SET holder_id = EXCLUDED.holder_id RETURNING sequence, head_hash"
)
"""Creates the holder's head if needed and locks it (ON CONFLICT DO UPDATE locks the row).

``{holder}`` is the parameter naming the holder; a caller may run it as a CTE of a statement
of its own (see :func:`carnet_dossier.store.insert_document`) and then :func:`append_at`."""


async def lock_head(conn: asyncpg.Connection, holder_id: uuid.UUID) -> ChainHead:
    """Lock the holder's chain head until the end of the caller's transaction."""
    head = await conn.fetchrow(LOCK_HEAD_SQL.format(holder="$1"), holder_id)
    return ChainHead(head["sequence"], head["head_hash"])


async def _append(
    conn: asyncpg.Connection,
    new: NewEntry,
    now: dt.datetime | None,
    notify_holder: bool,
    notify_treating_physician: bool,
) -> Entry:
    head = await lock_head(conn, new.holder_id)
    return await append_at(
        conn, new, head, now=now, notify_holder=notify_holder, notify_treating_physician=notify_treating_physician
    )


# One statement writes the entry, moves the head, notes an organisation new to the holder and,
# when the caller has one, writes its outbox event and wakes the relay (on commit).
_WRITE_ENTRY = """
    WITH written AS (
        INSERT INTO access_log (
            holder_id, sequence, actor, actor_display_name, action, operation, service, item_kind, item_id,
            item_label, outcome, reason, break_glass_reason, created_at, trace_id, previous_hash, entry_hash)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        RETURNING entry_id
    ), head AS (
        UPDATE access_log_heads SET sequence = $2, head_hash = $17 WHERE holder_id = $1
    ), first_access AS (
        INSERT INTO access_log_organisations (holder_id, organisation_id, first_entry_id, first_seen_at)
        SELECT $1, $18, entry_id, $14 FROM written WHERE $18 <> ''
        ON CONFLICT DO NOTHING
        RETURNING organisation_id
    ){event_ctes}
    SELECT (SELECT entry_id FROM written) AS entry_id, (SELECT count(*) FROM first_access) AS new_organisation{event_columns}
"""
_ENTRY_ONLY = _WRITE_ENTRY.format(event_ctes="", event_columns="")
_ENTRY_AND_EVENT = _WRITE_ENTRY.format(
    event_ctes=""", event AS (
        INSERT INTO outbox (event_id, stream, event_type, payload, traceparent)
        VALUES ($19, $20, $21, $22, $23)
        RETURNING 1
    ), wake AS (
        SELECT pg_notify($24, '') FROM event
    )""",
    event_columns=", (SELECT count(*) FROM wake) AS woken",
)


async def append_at(
    conn: asyncpg.Connection,
    new: NewEntry,
    head: ChainHead,
    *,
    now: dt.datetime | None = None,
    notify_holder: bool = False,
    notify_treating_physician: bool = False,
    event: OutboxRow | None = None,
) -> Entry:
    """Record an access after ``head``, which the caller's transaction has locked (:func:`lock_head`).

    ``event``, an outbox row of the same change, is written by the same statement.
    """
    if new.outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {new.outcome!r}")
    occur = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    entry = Entry(
        **{field.name: getattr(new, field.name) for field in dataclasses.fields(NewEntry)},
        sequence=head.sequence + 1,
        occur_time=occur,
        previous_hash=head.head_hash,
    )
    if not entry.trace_id:
        entry = dataclasses.replace(entry, trace_id=_current_trace_id())
    entry = dataclasses.replace(entry, entry_hash=chain_hash(entry))
    organisation = str(entry.actor.get("organisation_id") or "") if entry.outcome == "allowed" else ""
    values = (
        entry.holder_id,
        entry.sequence,
        entry.actor,
        entry.actor_display_name,
        entry.action,
        entry.operation,
        entry.service,
        entry.item_kind,
        entry.item_id,
        entry.item_label,
        entry.outcome,
        entry.reason,
        entry.break_glass_reason,
        entry.occur_time,
        entry.trace_id,
        entry.previous_hash,
        entry.entry_hash,
        organisation,
    )
    if event is None:
        row = await conn.fetchrow(_ENTRY_ONLY, *values)
    else:
        row = await conn.fetchrow(
            _ENTRY_AND_EVENT,
            *values,
            event.event_id,
            event.stream,
            event.event_type,
            event.payload,
            event.traceparent,
            wake_channel(SCHEMA),
        )
    entry = dataclasses.replace(entry, entry_id=row["entry_id"])
    if row["new_organisation"]:
        await _alert(conn, entry, events_pb2.ACCESS_ALERT_KIND_NEW_ORGANISATION, True, False)
    if notify_holder or notify_treating_physician:
        await _alert(conn, entry, _ALERT_KINDS.get(entry.action, 0), notify_holder, notify_treating_physician)
    return entry


async def _alert(
    conn: asyncpg.Connection, entry: Entry, kind: int, notify_holder: bool, notify_treating_physician: bool
) -> None:
    occur = timestamp_pb2.Timestamp()
    occur.FromDatetime(entry.occur_time)
    event_id = str(uuid.uuid4())
    actor = common_pb2.Actor()
    json_format.ParseDict(entry.actor, actor, ignore_unknown_fields=True)
    await enqueue(
        conn,
        schema=SCHEMA,
        stream=EVENT_STREAM,
        event_type=ACCESS_ALERT,
        event_id=event_id,
        payload=events_pb2.AccessAlertEvent(
            event_id=event_id,
            holder_id=str(entry.holder_id),
            kind=kind,  # type: ignore[arg-type]
            actor=actor,
            actor_display_name=entry.actor_display_name,
            reason=entry.break_glass_reason,
            access_log_entry_id=str(entry.entry_id),
            notify_holder=notify_holder,
            notify_treating_physician=notify_treating_physician,
            occur_time=occur,
        ),
    )


async def seal_legacy_entries(pool: asyncpg.Pool) -> int:
    """Give entries written before the chain existed their place in it (oldest first); how many."""
    holders = await pool.fetch("SELECT DISTINCT holder_id FROM access_log WHERE entry_hash IS NULL")
    sealed = 0
    for holder in holders:
        async with pool.acquire() as conn, conn.transaction():
            holder_id = holder["holder_id"]
            await conn.execute("INSERT INTO access_log_heads (holder_id) VALUES ($1) ON CONFLICT DO NOTHING", holder_id)
            head = await conn.fetchrow(
                "SELECT sequence, head_hash FROM access_log_heads WHERE holder_id = $1 FOR UPDATE", holder_id
            )
            sequence, previous = head["sequence"], head["head_hash"]
            rows = await conn.fetch(
                "SELECT * FROM access_log WHERE holder_id = $1 AND entry_hash IS NULL ORDER BY entry_id FOR UPDATE",
                holder_id,
            )
            for row in rows:
                sequence += 1
                entry = dataclasses.replace(Entry.from_row(row), sequence=sequence, previous_hash=previous)
                previous = chain_hash(entry)
                await conn.execute(
                    "UPDATE access_log SET sequence = $2, previous_hash = $3, entry_hash = $4 WHERE entry_id = $1",
                    row["entry_id"],
                    sequence,
                    entry.previous_hash,
                    previous,
                )
                sealed += 1
            await conn.execute(
                "UPDATE access_log_heads SET sequence = $2, head_hash = $3 WHERE holder_id = $1",
                holder_id,
                sequence,
                previous,
            )
    return sealed


# ---------------------------------------------------------------- verification


@dataclasses.dataclass(frozen=True)
class Verification:
    """What a walk along a holder's chain found."""

    intact: bool
    entry_count: int
    head_hash: str
    first_broken_sequence: int = 0
    failure_reason: str = ""


async def verify(pool: asyncpg.Pool, holder_id: uuid.UUID) -> Verification:
    """Walk the holder's chain from the first entry; the first entry tampered with or missing."""
    count = 0
    previous = ""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow("SELECT sequence, head_hash FROM access_log_heads WHERE holder_id = $1", holder_id)
        async for row in conn.cursor(
            "SELECT * FROM access_log WHERE holder_id = $1 AND sequence IS NOT NULL ORDER BY sequence", holder_id
        ):
            entry = Entry.from_row(row)
            expected = count + 1
            if entry.sequence != expected:
                return Verification(False, count, previous, expected, "SEQUENCE_GAP")
            if entry.previous_hash != previous:
                return Verification(False, count, previous, expected, "PREVIOUS_HASH_MISMATCH")
            if chain_hash(entry) != entry.entry_hash:
                return Verification(False, count, previous, expected, "HASH_MISMATCH")
            previous = entry.entry_hash
            count = expected
    if head is not None and head["sequence"] > count:
        # The newest entries are gone: the head still counts them.
        return Verification(False, count, previous, count + 1, "SEQUENCE_GAP")
    if head is not None and head["head_hash"] != previous:
        return Verification(False, count, previous, count, "HASH_MISMATCH")
    return Verification(True, count, previous)


# ---------------------------------------------------------------- listing


@dataclasses.dataclass(frozen=True)
class EntryFilter:
    """Filters of a holder's access log listing (all optional)."""

    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    actor_subject: str = ""
    role: str = ""
    organisation_id: str = ""
    action: str = ""
    outcome: str = ""
    item_id: str = ""


def encode_sequence_token(sequence: int) -> str:
    """An opaque page token: the listing goes on below this sequence."""
    return base64.urlsafe_b64encode(json.dumps({"s": sequence}).encode()).decode().rstrip("=")


def decode_sequence_token(token: str) -> int | None:
    """The sequence of a page token; INVALID_ARGUMENT if it was not made here."""
    if not token:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["s"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        value = None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgument("page_token is not valid", field="page_token", reason="PAGE_TOKEN_INVALID")
    return value


def _where(holder_id: uuid.UUID, filters: EntryFilter) -> tuple[list[str], list[Any]]:
    clauses, args = ["holder_id = $1", "sequence IS NOT NULL"], [holder_id]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(f"${len(args)}"))

    conditions: Mapping[str, tuple[str, Any]] = {
        "start_time": ("created_at >= {}", filters.start_time),
        "end_time": ("created_at < {}", filters.end_time),
        "actor_subject": ("actor->>'subject' = {}", filters.actor_subject),
        "role": ("actor->>'role' = {}", filters.role),
        "organisation_id": ("actor->>'organisation_id' = {}", filters.organisation_id),
        "action": ("action = {}", filters.action),
        "outcome": ("outcome = {}", filters.outcome),
        "item_id": ("item_id = {}", filters.item_id),
    }
    for sql, value in conditions.values():
        if value:
            add(sql, value)
    return clauses, args


async def list_entries(
    pool: asyncpg.Pool, holder_id: uuid.UUID, filters: EntryFilter, below: int | None, page_size: int
) -> tuple[list[Entry], str, int]:
    """A page of entries, newest first; the next page token and the number of matches."""
    clauses, args = _where(holder_id, filters)
    total = await pool.fetchval(f"SELECT count(*) FROM access_log WHERE {' AND '.join(clauses)}", *args)
    if below is not None:
        args.append(below)
        clauses.append(f"sequence < ${len(args)}")
    args.append(page_size + 1)
    rows = await pool.fetch(
        f"SELECT * FROM access_log WHERE {' AND '.join(clauses)} ORDER BY sequence DESC LIMIT ${len(args)}", *args
    )
    entries = [Entry.from_row(row) for row in rows[:page_size]]
    next_token = encode_sequence_token(entries[-1].sequence) if len(rows) > page_size else ""
    return entries, next_token, int(total)
