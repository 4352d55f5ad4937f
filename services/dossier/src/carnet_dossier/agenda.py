"""The holder's agenda: appointments, vaccinations, screenings, medication, with reminders.

Events come from the holder's side, from professionals (an appointment, a vaccination
to plan) and from apps acting for the holder; ``source`` follows the caller's role. Every
call asks consent (item kind AGENDA_EVENT; for the access matrix an event counts as the
document class its kind matches: an appointment as a care plan, a vaccination as a
vaccination, a screening as prevention, medication as a prescription) and is logged.
A job in every replica turns due reminders into ``AgendaReminderDueEvent`` (notify sends
them), each reminder once (rows locked ``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from google.protobuf import timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import resources_pb2 as consent_pb
from carnet.dossier.v1 import events_pb2
from carnet_dossier import access_log
from carnet_dossier.access_log import NewEntry
from carnet_dossier.peers import ConsentClient, ItemFacts
from carnet_dossier.protoconv import actor_record as _actor
from carnet_kit.auth import Principal
from carnet_kit.errors import InvalidArgument, NotFound, PermissionDenied
from carnet_kit.outbox import enqueue, stream_name

log = logging.getLogger(__name__)

SCHEMA = "dossier"
EVENT_STREAM = stream_name("dossier")
REMINDER_DUE = events_pb2.AgendaReminderDueEvent.DESCRIPTOR.full_name

KINDS = ("APPOINTMENT", "VACCINATION", "SCREENING", "MEDICATION", "OTHER")
MATRIX_CLASS = {
    "APPOINTMENT": "CARE_PLAN",
    "VACCINATION": "VACCINATION",
    "SCREENING": "PREVENTION",
    "MEDICATION": "PRESCRIPTION",
    "OTHER": "CARE_PLAN",
}
CHANNELS = frozenset({"EMAIL", "SMS", "PUSH", "IN_APP"})
MAX_REMINDERS = 5
MAX_OFFSET = dt.timedelta(days=365)
MAX_TITLE = 200
MAX_TEXT = 2000
UPDATABLE = frozenset(
    {
        "kind",
        "title",
        "description",
        "start_time",
        "end_time",
        "all_day",
        "location",
        "reminders",
        "professional_id",
        "organisation_id",
    }
)
HOLDER_SIDE = frozenset({"holder", "representative", "helper"})


@dataclasses.dataclass(frozen=True)
class Reminder:
    """How long before the start to remind, through which channels (the holder's preferences when none)."""

    offset: dt.timedelta
    channels: tuple[str, ...] = ()
    sent_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class AgendaEvent:
    """An event of a holder's agenda."""

    agenda_event_id: uuid.UUID
    holder_id: uuid.UUID
    kind: str
    title: str
    start_time: dt.datetime
    source: str
    created_by: dict[str, Any]
    description: str = ""
    end_time: dt.datetime | None = None
    all_day: bool = False
    location: str = ""
    professional_id: str = ""
    organisation_id: str = ""
    reminders: tuple[Reminder, ...] = ()
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


def source_of(principal: Principal) -> str:
    """Who an entry comes from, by the caller's role (never from the request)."""
    if principal.role in HOLDER_SIDE:
        return "HOLDER"
    if principal.role == "professional":
        return "PROFESSIONAL"
    if principal.role == "client" and principal.acting_for:
        return "APP"
    raise PermissionDenied("this caller does not write agenda events", reason="CALLER_NOT_ALLOWED")


def validate(event: AgendaEvent) -> AgendaEvent:
    """The event as stored, or INVALID_ARGUMENT naming the field."""
    if event.kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {list(KINDS)}", field="agenda_event.kind")
    title = event.title.strip()
    if not title or len(title) > MAX_TITLE:
        raise InvalidArgument(f"title is required, at most {MAX_TITLE} characters", field="agenda_event.title")
    if len(event.description) > MAX_TEXT or len(event.location) > MAX_TITLE:
        raise InvalidArgument("description or location too long", field="agenda_event.description")
    if event.end_time is not None and event.end_time < event.start_time:
        raise InvalidArgument("end_time is before start_time", field="agenda_event.end_time")
    if len(event.reminders) > MAX_REMINDERS:
        raise InvalidArgument(f"at most {MAX_REMINDERS} reminders", field="agenda_event.reminders")
    for index, reminder in enumerate(event.reminders):
        if not dt.timedelta(0) <= reminder.offset <= MAX_OFFSET:
            raise InvalidArgument(
                "a reminder's offset is between 0 and 365 days before the start",
                field=f"agenda_event.reminders[{index}].offset",
            )
        unknown = [channel for channel in reminder.channels if channel not in CHANNELS]
        if unknown:
            raise InvalidArgument(
                f"unknown channel {unknown[0]}; one of {sorted(CHANNELS)}",
                field=f"agenda_event.reminders[{index}].channels",
            )
    return dataclasses.replace(
        event, title=title, description=event.description.strip(), location=event.location.strip()
    )


def encode_token(start: dt.datetime, agenda_event_id: uuid.UUID) -> str:
    """An opaque page token (listing goes on after this event)."""
    raw = json.dumps({"t": start.isoformat(), "id": str(agenda_event_id)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[dt.datetime, uuid.UUID] | None:
    """The position of a page token; INVALID_ARGUMENT if it was not made here."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return dt.datetime.fromisoformat(data["t"]), uuid.UUID(data["id"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token is not valid", field="page_token", reason="PAGE_TOKEN_INVALID") from None


# ---------------------------------------------------------------- store


def _from_row(row: asyncpg.Record, reminders: Sequence[asyncpg.Record]) -> AgendaEvent:
    return AgendaEvent(
        agenda_event_id=row["agenda_event_id"],
        holder_id=row["holder_id"],
        kind=row["kind"],
        title=row["title"],
        description=row["description"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        all_day=row["all_day"],
        location=row["location"],
        professional_id=row["professional_id"],
        organisation_id=row["organisation_id"],
        source=row["source"],
        created_by=row["created_by"],
        reminders=tuple(
            Reminder(dt.timedelta(seconds=r["offset_seconds"]), tuple(r["channels"]), r["sent_at"])
            for r in sorted(reminders, key=lambda r: r["position"])
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _reminders_of(db: Any, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[asyncpg.Record]]:
    rows = await db.fetch("SELECT * FROM agenda_reminders WHERE agenda_event_id = ANY($1::uuid[])", list(ids))
    found: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for row in rows:
        found.setdefault(row["agenda_event_id"], []).append(row)
    return found


async def _load(db: Any, agenda_event_id: uuid.UUID, *, lock: bool = False) -> AgendaEvent | None:
    row = await db.fetchrow(
        f"SELECT * FROM agenda_events WHERE agenda_event_id = $1{' FOR UPDATE' if lock else ''}", agenda_event_id
    )
    if row is None:
        return None
    return _from_row(row, (await _reminders_of(db, [agenda_event_id])).get(agenda_event_id, []))


async def _write_reminders(conn: asyncpg.Connection, event: AgendaEvent) -> None:
    await conn.execute("DELETE FROM agenda_reminders WHERE agenda_event_id = $1", event.agenda_event_id)
    for position, reminder in enumerate(event.reminders):
        await conn.execute(
            "INSERT INTO agenda_reminders (agenda_event_id, position, offset_seconds, channels, due_at, sent_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            event.agenda_event_id,
            position,
            int(reminder.offset.total_seconds()),
            list(reminder.channels),
            event.start_time - reminder.offset,
            reminder.sent_at,
        )


# ---------------------------------------------------------------- use cases


class AgendaService:
    """Create, read, list, change and delete agenda events; send due reminders."""

    def __init__(self, pool: asyncpg.Pool, consent: ConsentClient) -> None:
        self._pool = pool
        self._consent = consent

    async def _decide(
        self,
        principal: Principal,
        holder_id: uuid.UUID,
        action: int,
        kind: str,
        item_id: str,
        operation: str,
        label: str = "",
    ) -> None:
        facts = ItemFacts(kind=consent_pb.ITEM_KIND_AGENDA_EVENT, document_class=MATRIX_CLASS.get(kind, "CARE_PLAN"))
        decision = await self._consent.decide(principal, str(holder_id), action, facts)
        if decision.allowed:
            return
        await access_log.append(
            self._pool,
            NewEntry(
                holder_id=holder_id,
                actor=_actor(principal),
                action=consent_pb.Action.Name(action),  # type: ignore[arg-type]
                operation=operation,
                item_kind="ITEM_KIND_AGENDA_EVENT",
                item_id=item_id,
                item_label=label,
                reason=decision.reason_code,
                outcome="denied",
            ),
        )
        raise PermissionDenied(
            f"consent refused this access ({decision.reason_code})", reason=decision.reason_code or "ACCESS_DENIED"
        )

    async def _log(self, conn: Any, principal: Principal, event: AgendaEvent, action: str, operation: str) -> None:
        await access_log.append(
            conn,
            NewEntry(
                holder_id=event.holder_id,
                actor=_actor(principal),
                action=action,
                operation=operation,
                item_kind="ITEM_KIND_AGENDA_EVENT",
                item_id=str(event.agenda_event_id),
                item_label=event.title,
                outcome="allowed",
            ),
        )

    async def create(self, principal: Principal, proposed: AgendaEvent, request_id: str) -> AgendaEvent:
        """Add an event (idempotent on ``request_id``)."""
        if request_id:
            existing = await self._pool.fetchval(
                "SELECT agenda_event_id FROM agenda_events WHERE request_id = $1", request_id
            )
            if existing is not None:
                found = await _load(self._pool, existing)
                if found is not None and found.holder_id == proposed.holder_id:
                    return found
        event = validate(
            dataclasses.replace(
                proposed, agenda_event_id=uuid.uuid4(), source=source_of(principal), created_by=_actor(principal)
            )
        )
        await self._decide(
            principal,
            event.holder_id,
            consent_pb.ACTION_CREATE,
            event.kind,
            str(event.agenda_event_id),
            "CreateAgendaEvent",
            event.title,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchrow(
                """
                INSERT INTO agenda_events (agenda_event_id, holder_id, kind, title, description, start_time, end_time,
                    all_day, location, professional_id, organisation_id, source, created_by, request_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                ON CONFLICT (request_id) DO NOTHING
                RETURNING agenda_event_id
                """,
                event.agenda_event_id,
                event.holder_id,
                event.kind,
                event.title,
                event.description,
                event.start_time,
                event.end_time,
                event.all_day,
                event.location,
                event.professional_id,
                event.organisation_id,
                event.source,
                event.created_by,
                request_id or None,
            )
            if inserted is None:  # a concurrent retry with the same request id won
                winner = await conn.fetchval(
                    "SELECT agenda_event_id FROM agenda_events WHERE request_id = $1", request_id
                )
                found = await _load(conn, winner)
                assert found is not None
                return found
            await _write_reminders(conn, event)
            await self._log(conn, principal, event, "ACTION_CREATE", "CreateAgendaEvent")
            stored = await _load(conn, event.agenda_event_id)
        assert stored is not None
        return stored

    async def _existing(self, agenda_event_id: uuid.UUID) -> AgendaEvent:
        event = await _load(self._pool, agenda_event_id)
        if event is None:
            raise NotFound(
                "no such agenda event",
                reason="AGENDA_EVENT_NOT_FOUND",
                metadata={"agenda_event_id": str(agenda_event_id)},
            )
        return event

    async def get(self, principal: Principal, agenda_event_id: uuid.UUID) -> AgendaEvent:
        """One event, if consent lets the caller read the holder's agenda."""
        event = await self._existing(agenda_event_id)
        await self._decide(
            principal,
            event.holder_id,
            consent_pb.ACTION_READ,
            event.kind,
            str(agenda_event_id),
            "GetAgendaEvent",
            event.title,
        )
        await self._log(self._pool, principal, event, "ACTION_READ", "GetAgendaEvent")
        return event

    async def list(
        self,
        principal: Principal,
        holder_id: uuid.UUID,
        *,
        start: dt.datetime | None,
        end: dt.datetime | None,
        kind: str,
        page_token: str,
        page_size: int,
    ) -> tuple[list[AgendaEvent], str]:
        """A holder's events by start time (those ending at or after ``start``, starting before ``end``)."""
        after = decode_token(page_token)
        await self._decide(
            principal, holder_id, consent_pb.ACTION_LIST, kind or "OTHER", str(holder_id), "ListAgendaEvents"
        )
        clauses: list[str] = ["holder_id = $1"]
        args: list[Any] = [holder_id]

        def add(sql: str, *values: Any) -> None:
            args.extend(values)
            clauses.append(sql.format(*(f"${len(args) - len(values) + i + 1}" for i in range(len(values)))))

        if start is not None:
            add("coalesce(end_time, start_time) >= {}", start)
        if end is not None:
            add("start_time < {}", end)
        if kind:
            add("kind = {}", kind)
        if after is not None:
            add("(start_time, agenda_event_id) > ({}, {})", *after)
        args.append(page_size + 1)
        rows = await self._pool.fetch(
            f"SELECT * FROM agenda_events WHERE {' AND '.join(clauses)}"
            f" ORDER BY start_time, agenda_event_id LIMIT ${len(args)}",
            *args,
        )
        page = rows[:page_size]
        reminders = await _reminders_of(self._pool, [row["agenda_event_id"] for row in page])
        events = [_from_row(row, reminders.get(row["agenda_event_id"], [])) for row in page]
        await access_log.append(
            self._pool,
            NewEntry(
                holder_id=holder_id,
                actor=_actor(principal),
                action="ACTION_LIST",
                operation="ListAgendaEvents",
                item_kind="ITEM_KIND_AGENDA_EVENT",
                item_id=str(holder_id),
                outcome="allowed",
            ),
        )
        token = encode_token(events[-1].start_time, events[-1].agenda_event_id) if len(rows) > page_size else ""
        return events, token

    def _ensure_may_change(self, principal: Principal, event: AgendaEvent) -> None:
        holder_side = (principal.role == "holder" and principal.subject == str(event.holder_id)) or (
            principal.role in HOLDER_SIDE and principal.acting_for == str(event.holder_id)
        )
        creator = principal.subject == event.created_by.get("subject")
        if not (holder_side or creator):
            raise PermissionDenied("only the holder or the event's author changes it", reason="NOT_THE_AUTHOR")

    async def update(
        self, principal: Principal, agenda_event_id: uuid.UUID, paths: Sequence[str], proposed: Mapping[str, Any]
    ) -> AgendaEvent:
        """Change the fields the mask names (holder's side or the event's author)."""
        named = list(dict.fromkeys(paths))
        if not named:
            raise InvalidArgument("update_mask names no field", field="update_mask", reason="FIELD_INVALID")
        for path in named:
            if path not in UPDATABLE:
                raise InvalidArgument(
                    f"{path!r} cannot be changed",
                    field="update_mask",
                    reason="FIELD_NOT_UPDATABLE",
                    metadata={"path": path},
                )
        current = await self._existing(agenda_event_id)
        self._ensure_may_change(principal, current)
        changed = validate(dataclasses.replace(current, **{path: proposed[path] for path in named}))
        await self._decide(
            principal,
            current.holder_id,
            consent_pb.ACTION_UPDATE,
            changed.kind,
            str(agenda_event_id),
            "UpdateAgendaEvent",
            changed.title,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            if await _load(conn, agenda_event_id, lock=True) != current:
                raise InvalidArgument(
                    "the event changed meanwhile; read it again", field="agenda_event", reason="CONCURRENT_CHANGE"
                )
            await conn.execute(
                """
                UPDATE agenda_events SET kind = $2, title = $3, description = $4, start_time = $5, end_time = $6,
                    all_day = $7, location = $8, professional_id = $9, organisation_id = $10, updated_at = now()
                WHERE agenda_event_id = $1
                """,
                agenda_event_id,
                changed.kind,
                changed.title,
                changed.description,
                changed.start_time,
                changed.end_time,
                changed.all_day,
                changed.location,
                changed.professional_id,
                changed.organisation_id,
            )
            if "reminders" in named or "start_time" in named:
                # A moved event or new reminders: reminders fall due again from the new start.
                fresh = (
                    changed
                    if "reminders" in named
                    else dataclasses.replace(
                        changed, reminders=tuple(dataclasses.replace(r, sent_at=None) for r in changed.reminders)
                    )
                )
                await _write_reminders(conn, fresh)
            await self._log(conn, principal, changed, "ACTION_UPDATE", "UpdateAgendaEvent")
            stored = await _load(conn, agenda_event_id)
        assert stored is not None
        return stored

    async def delete(self, principal: Principal, agenda_event_id: uuid.UUID) -> None:
        """Remove an event and its reminders (holder's side or the event's author)."""
        current = await self._existing(agenda_event_id)
        self._ensure_may_change(principal, current)
        await self._decide(
            principal,
            current.holder_id,
            consent_pb.ACTION_DELETE,
            current.kind,
            str(agenda_event_id),
            "DeleteAgendaEvent",
            current.title,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM agenda_events WHERE agenda_event_id = $1", agenda_event_id)
            await self._log(conn, principal, current, "ACTION_DELETE", "DeleteAgendaEvent")

    # ---- reminders

    async def send_due_reminders(self, *, now: dt.datetime | None = None, batch: int = 200) -> int:
        """Publish an AgendaReminderDueEvent for each reminder due and not sent yet; how many."""
        now = now or dt.datetime.now(dt.UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                SELECT r.agenda_event_id, r.position, r.channels, r.due_at, e.holder_id, e.title, e.start_time
                  FROM agenda_reminders r JOIN agenda_events e USING (agenda_event_id)
                 WHERE r.sent_at IS NULL AND r.due_at <= $1 AND e.start_time > $1 - interval '1 day'
                 ORDER BY r.due_at LIMIT $2
                   FOR UPDATE OF r SKIP LOCKED
                """,
                now,
                batch,
            )
            for row in rows:
                start = timestamp_pb2.Timestamp()
                start.FromDatetime(row["start_time"])
                occur = timestamp_pb2.Timestamp()
                occur.FromDatetime(row["due_at"])
                event_id = str(uuid.uuid4())
                await enqueue(
                    conn,
                    schema=SCHEMA,
                    stream=EVENT_STREAM,
                    event_type=REMINDER_DUE,
                    event_id=event_id,
                    payload=events_pb2.AgendaReminderDueEvent(
                        event_id=event_id,
                        agenda_event_id=str(row["agenda_event_id"]),
                        holder_id=str(row["holder_id"]),
                        title=row["title"],
                        start_time=start,
                        channels=[common_pb2.DeliveryChannel.Value(f"DELIVERY_CHANNEL_{c}") for c in row["channels"]],
                        occur_time=occur,
                    ),
                )
                await conn.execute(
                    "UPDATE agenda_reminders SET sent_at = $3 WHERE agenda_event_id = $1 AND position = $2",
                    row["agenda_event_id"],
                    row["position"],
                    now,
                )
        return len(rows)

    async def run_reminders(self, interval_seconds: float = 30.0) -> None:
        """Send due reminders every ``interval_seconds``, forever (a background task of every replica)."""
        while True:
            try:
                await self.send_due_reminders()
            except Exception:
                log.exception("sending agenda reminders failed; retrying later")
            await asyncio.sleep(interval_seconds)
