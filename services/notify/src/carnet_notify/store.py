"""SQL of the notify service (schema ``notify``): notifications, deliveries, attempts, inbox, preferences."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from carnet_kit.outbox import claim_event
from carnet_notify.domain import (
    SECRET_PARAMETERS,
    ChannelChoice,
    Cursor,
    PreparedNotification,
    RecipientPreferences,
    RecipientRateLimit,
)
from carnet_notify.kinds import AttemptOutcome, Channel, DeliveryState, Kind
from carnet_notify.templates import render_letter

SCHEMA = "notify"


@dataclass(frozen=True)
class NotificationRecord:
    """A stored notification intent."""

    notification_id: uuid.UUID
    recipient_id: str
    kind: Kind
    channels: tuple[Channel, ...]
    parameters: dict[str, str]
    email: str
    phone: str
    source_event_id: str
    create_time: datetime


@dataclass(frozen=True)
class AttemptRecord:
    """One delivery attempt; no outcome while running or when it was interrupted."""

    attempt_number: int
    start_time: datetime
    end_time: datetime | None
    outcome: AttemptOutcome | None
    detail: str


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery with its attempts."""

    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    recipient_id: str
    kind: Kind
    channel: Channel
    state: DeliveryState
    destination: str
    next_attempt_time: datetime | None
    create_time: datetime
    update_time: datetime
    attempts: tuple[AttemptRecord, ...]


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this worker holds a lease on, for one attempt."""

    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    recipient_id: str
    kind: Kind
    channel: Channel
    parameters: dict[str, str]
    destination: str
    attempt_number: int


@dataclass(frozen=True)
class PostponedDelivery:
    """A due delivery held back by the recipient's rate limit until ``until``."""

    delivery_id: uuid.UUID
    channel: Channel
    until: datetime


@dataclass(frozen=True)
class ClaimBatch:
    """What one claim found due: deliveries to attempt now, and those pushed to the next window."""

    claimed: list[ClaimedDelivery]
    postponed: list[PostponedDelivery]


@dataclass(frozen=True)
class InboxItemRecord:
    """An item of an in-app inbox."""

    item_id: uuid.UUID
    recipient_id: str
    kind: Kind
    title: str
    body: str
    parameters: dict[str, str]
    source_event_id: str
    create_time: datetime
    read_time: datetime | None


@dataclass(frozen=True)
class DeliveryFilter:
    """What ListDeliveries narrows to (empty: no restriction)."""

    notification_id: uuid.UUID | None = None
    recipient_id: str = ""
    channel: Channel | None = None
    state: DeliveryState | None = None


def _notification(row: Any) -> NotificationRecord:
    return NotificationRecord(
        notification_id=row["notification_id"],
        recipient_id=row["recipient_id"],
        kind=Kind(row["kind"]),
        channels=tuple(Channel(c) for c in row["channels"]),
        parameters=dict(row["parameters"]),
        email=row["email"],
        phone=row["phone"],
        source_event_id=row["source_event_id"],
        create_time=row["create_time"],
    )


def _inbox_item(row: Any) -> InboxItemRecord:
    return InboxItemRecord(
        item_id=row["item_id"],
        recipient_id=row["recipient_id"],
        kind=Kind(row["kind"]),
        title=row["title"],
        body=row["body"],
        parameters=dict(row["parameters"]),
        source_event_id=row["source_event_id"],
        create_time=row["create_time"],
        read_time=row["read_time"],
    )


_NOTIFICATION_COLUMNS = (
    "notification_id, recipient_id, kind, channels, parameters, email, phone, source_event_id, create_time"
)
_INBOX_COLUMNS = "item_id, recipient_id, kind, title, body, parameters, source_event_id, create_time, read_time"


async def insert_notification(
    conn: asyncpg.Connection, prepared: PreparedNotification, *, request_id: str, created_by: str
) -> tuple[NotificationRecord, bool]:
    """Insert a notification, its deliveries and its inbox item, or find the one it repeats.

    Runs in the caller's transaction, so that what caused the notification (an event, a
    message) and the notification are written together.
    """
    intent = prepared.intent
    row = await conn.fetchrow(
        "INSERT INTO notifications (notification_id, request_id, recipient_id, kind, channels, parameters,"
        " email, phone, source_event_id, created_by)"
        " VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, $7, $8, $9, $10)"
        f" ON CONFLICT DO NOTHING RETURNING {_NOTIFICATION_COLUMNS}",
        uuid.uuid4(),
        request_id,
        intent.recipient_id,
        prepared.kind.value,
        [delivery.channel.value for delivery in prepared.deliveries],
        dict(intent.parameters),
        intent.email,
        intent.phone,
        intent.source_event_id,
        created_by,
    )
    if row is None:
        existing = await conn.fetchrow(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"
            " WHERE (request_id = NULLIF($1, ''))"
            " OR (source_event_id <> '' AND source_event_id = $2 AND recipient_id = $3 AND kind = $4)"
            " LIMIT 1",
            request_id,
            intent.source_event_id,
            intent.recipient_id,
            prepared.kind.value,
        )
        if existing is None:
            raise RuntimeError("notification conflicted with a row that cannot be found")
        return _notification(existing), False
    notification = _notification(row)
    for delivery in prepared.deliveries:
        delivery_id = uuid.uuid4()
        # In-app items and letters are done once written: the letter joins the print queue.
        delivered_now = delivery.channel in (Channel.IN_APP, Channel.LETTER)
        state = DeliveryState.DELIVERED if delivered_now else delivery.state
        await conn.execute(
            "INSERT INTO deliveries (delivery_id, notification_id, channel, destination, state, attempt_count,"
            " next_attempt_time, state_detail) VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN now() END, $8)",
            delivery_id,
            notification.notification_id,
            delivery.channel.value,
            delivery.destination,
            state.value,
            1 if delivered_now else 0,
            state.is_open,
            delivery.detail,
        )
        if delivery.channel is Channel.LETTER:
            letter = render_letter(prepared.kind, intent.parameters)
            await conn.execute(
                "INSERT INTO letters (letter_id, delivery_id, recipient_id, kind, subject, body)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                uuid.uuid4(),
                delivery_id,
                intent.recipient_id,
                prepared.kind.value,
                letter.subject,
                letter.text,
            )
            await conn.execute(
                "INSERT INTO delivery_attempts (delivery_id, attempt_number, end_time, outcome, detail)"
                " VALUES ($1, 1, now(), 'SUCCEEDED', 'queued for printing')",
                delivery_id,
            )
        if delivery.channel is Channel.IN_APP and prepared.inbox_item is not None:
            await conn.execute(
                "INSERT INTO inbox_items (item_id, recipient_id, kind, title, body, parameters, notification_id,"
                " source_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                uuid.uuid4(),
                intent.recipient_id,
                prepared.kind.value,
                prepared.inbox_item.title,
                prepared.inbox_item.body,
                {k: v for k, v in intent.parameters.items() if k not in SECRET_PARAMETERS},
                notification.notification_id,
                intent.source_event_id,
            )
            await conn.execute(
                "INSERT INTO delivery_attempts (delivery_id, attempt_number, end_time, outcome)"
                " VALUES ($1, 1, now(), 'SUCCEEDED')",
                delivery_id,
            )
    return notification, True


class NotifyStore:
    """Reads and writes the notify schema through a pool bound to it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_notification(
        self, prepared: PreparedNotification, *, request_id: str, created_by: str
    ) -> tuple[NotificationRecord, bool]:
        """Store a notification with its deliveries; an intent seen before returns the first one (False)."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await insert_notification(conn, prepared, request_id=request_id, created_by=created_by)

    async def record_event(self, consumer: str, event_id: str, prepared: PreparedNotification | None) -> bool:
        """Handle an event once: claim it and store its notification in one transaction.

        False means the event was handled before (a redelivery) and nothing was done.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_event(conn, consumer, event_id):
                return False
            if prepared is not None:
                await insert_notification(conn, prepared, request_id="", created_by=f"event:{event_id}")
            return True

    async def get_notification(self, notification_id: uuid.UUID) -> NotificationRecord | None:
        """A notification by id."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE notification_id = $1", notification_id
            )
        return None if row is None else _notification(row)

    # ------------------------------------------------------------------ deliveries through providers

    async def claim_due(
        self, channels: Iterable[Channel], limit: int, lease_seconds: float, rate_limit: RecipientRateLimit
    ) -> ClaimBatch:
        """Take a lease on due deliveries of ``channels`` and open an attempt for each.

        The lease moves ``next_attempt_time`` ahead, so a worker that dies mid-send
        leaves the delivery due again once the lease is over. A delivery counts against
        its recipient's rate limit once, at its first attempt, in this transaction; one
        over the limit is not attempted but moved to the start of the next window.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            now: datetime = await conn.fetchval("SELECT now()")
            due = await conn.fetch(
                "SELECT d.delivery_id, d.channel, d.attempt_count, n.recipient_id, n.kind"
                " FROM deliveries AS d JOIN notifications AS n USING (notification_id)"
                " WHERE d.state IN ('PENDING', 'RETRYING') AND d.channel = ANY($1::text[])"
                " AND d.next_attempt_time <= now()"
                " ORDER BY d.next_attempt_time, d.create_time LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
                sorted(channel.value for channel in channels),
                limit,
            )
            window_start, window_end = rate_limit.window(now)
            counted = [
                row
                for row in due
                if row["attempt_count"] == 0 and rate_limit.applies_to(Kind(row["kind"]), Channel(row["channel"]))
            ]
            held: set[uuid.UUID] = set()
            # One lock order on the counters for every replica: no deadlock between two claims.
            for row in sorted(counted, key=lambda r: (r["recipient_id"], r["channel"])):
                within_limit = await conn.fetchval(
                    "INSERT INTO send_counts (recipient_id, channel, window_start, sent) VALUES ($1, $2, $3, 1)"
                    " ON CONFLICT (recipient_id, channel, window_start)"
                    " DO UPDATE SET sent = send_counts.sent + 1 WHERE send_counts.sent < $4 RETURNING sent",
                    row["recipient_id"],
                    row["channel"],
                    window_start,
                    rate_limit.limit,
                )
                if within_limit is None:
                    held.add(row["delivery_id"])
            postponed = [
                PostponedDelivery(row["delivery_id"], Channel(row["channel"]), window_end)
                for row in due
                if row["delivery_id"] in held
            ]
            if postponed:
                note = (
                    f"postponed: over {rate_limit.limit} deliveries per {rate_limit.window_seconds} s"
                    " for this recipient and channel"
                )
                await conn.executemany(
                    "UPDATE deliveries SET next_attempt_time = $2, state_detail = $3, update_time = now()"
                    " WHERE delivery_id = $1",
                    [(item.delivery_id, item.until, note) for item in postponed],
                )
            taken = [row["delivery_id"] for row in due if row["delivery_id"] not in held]
            rows = []
            if taken:
                rows = await conn.fetch(
                    "UPDATE deliveries AS d SET attempt_count = d.attempt_count + 1, state_detail = '',"
                    " next_attempt_time = now() + make_interval(secs => $2), update_time = now()"
                    " FROM notifications AS n"
                    " WHERE d.delivery_id = ANY($1::uuid[]) AND n.notification_id = d.notification_id"
                    " RETURNING d.delivery_id, d.notification_id, d.channel, d.destination, d.attempt_count,"
                    " n.recipient_id, n.kind, n.parameters",
                    taken,
                    lease_seconds,
                )
                await conn.executemany(
                    "INSERT INTO delivery_attempts (delivery_id, attempt_number) VALUES ($1, $2)",
                    [(row["delivery_id"], row["attempt_count"]) for row in rows],
                )
        claimed = [
            ClaimedDelivery(
                delivery_id=row["delivery_id"],
                notification_id=row["notification_id"],
                recipient_id=row["recipient_id"],
                kind=Kind(row["kind"]),
                channel=Channel(row["channel"]),
                parameters=dict(row["parameters"]),
                destination=row["destination"],
                attempt_number=row["attempt_count"],
            )
            for row in rows
        ]
        return ClaimBatch(claimed, postponed)

    async def forget_send_counts(self, before: datetime) -> int:
        """Delete the rate-limit counters of windows that started before ``before``; return how many."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute("DELETE FROM send_counts WHERE window_start < $1", before)
        return int(status.rpartition(" ")[2] or 0)

    async def finish_attempt(
        self,
        claimed: ClaimedDelivery,
        outcome: AttemptOutcome,
        detail: str,
        state: DeliveryState,
        retry_in_seconds: float | None,
    ) -> None:
        """Record an attempt's outcome and move the delivery on (unless its lease was lost)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE delivery_attempts SET end_time = now(), outcome = $3, detail = $4"
                " WHERE delivery_id = $1 AND attempt_number = $2",
                claimed.delivery_id,
                claimed.attempt_number,
                outcome.value,
                detail[:1000],
            )
            await conn.execute(
                "UPDATE deliveries SET state = $3, update_time = now(),"
                " next_attempt_time = CASE WHEN $4::float8 IS NULL THEN NULL"
                " ELSE now() + make_interval(secs => $4::float8) END"
                " WHERE delivery_id = $1 AND attempt_count = $2",
                claimed.delivery_id,
                claimed.attempt_number,
                state.value,
                retry_in_seconds,
            )
            if not state.is_open:
                # Codes have no business staying in storage once nothing more will be sent.
                await conn.execute(
                    "UPDATE notifications SET parameters = parameters - $2::text[]"
                    " WHERE notification_id = $1 AND NOT EXISTS ("
                    " SELECT 1 FROM deliveries WHERE notification_id = $1 AND state IN ('PENDING', 'RETRYING'))",
                    claimed.notification_id,
                    sorted(SECRET_PARAMETERS),
                )

    async def list_deliveries(
        self, where: DeliveryFilter, after: Cursor | None, limit: int
    ) -> tuple[list[DeliveryRecord], int]:
        """A page of deliveries, newest first, with their attempts; and the number of matches."""
        conditions = ["TRUE"]
        args: list[Any] = []

        def add(condition: str, value: Any) -> None:
            args.append(value)
            conditions.append(condition.replace("?", f"${len(args)}"))

        if where.notification_id is not None:
            add("d.notification_id = ?", where.notification_id)
        if where.recipient_id:
            add("n.recipient_id = ?", where.recipient_id)
        if where.channel is not None:
            add("d.channel = ?", where.channel.value)
        if where.state is not None:
            add("d.state = ?", where.state.value)
        base = " FROM deliveries d JOIN notifications n USING (notification_id) WHERE "
        async with self._pool.acquire() as conn:
            total = await conn.fetchval("SELECT count(*)" + base + " AND ".join(conditions), *args)
            if after is not None:
                args.append(after.time)
                args.append(after.row_id)
                conditions.append(f"(d.create_time, d.delivery_id) < (${len(args) - 1}, ${len(args)})")
            args.append(limit)
            rows = await conn.fetch(
                "SELECT d.delivery_id, d.notification_id, n.recipient_id, n.kind, d.channel, d.state, d.destination,"
                " d.next_attempt_time, d.create_time, d.update_time"
                + base
                + " AND ".join(conditions)
                + f" ORDER BY d.create_time DESC, d.delivery_id DESC LIMIT ${len(args)}",
                *args,
            )
            attempts = await conn.fetch(
                "SELECT delivery_id, attempt_number, start_time, end_time, outcome, detail FROM delivery_attempts"
                " WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id, attempt_number",
                [row["delivery_id"] for row in rows],
            )
        by_delivery: dict[uuid.UUID, list[AttemptRecord]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt["delivery_id"], []).append(
                AttemptRecord(
                    attempt_number=attempt["attempt_number"],
                    start_time=attempt["start_time"],
                    end_time=attempt["end_time"],
                    outcome=AttemptOutcome(attempt["outcome"]) if attempt["outcome"] else None,
                    detail=attempt["detail"],
                )
            )
        deliveries = [
            DeliveryRecord(
                delivery_id=row["delivery_id"],
                notification_id=row["notification_id"],
                recipient_id=row["recipient_id"],
                kind=Kind(row["kind"]),
                channel=Channel(row["channel"]),
                state=DeliveryState(row["state"]),
                destination=row["destination"],
                next_attempt_time=row["next_attempt_time"],
                create_time=row["create_time"],
                update_time=row["update_time"],
                attempts=tuple(by_delivery.get(row["delivery_id"], ())),
            )
            for row in rows
        ]
        return deliveries, int(total)

    # ------------------------------------------------------------------ inbox

    async def list_inbox(
        self, recipient_id: str, *, unread_only: bool, after: Cursor | None, limit: int
    ) -> tuple[list[InboxItemRecord], int]:
        """A page of a recipient's inbox, newest first, and the unread count of the whole inbox."""
        conditions = ["recipient_id = $1"]
        args: list[Any] = [recipient_id]
        if unread_only:
            conditions.append("read_time IS NULL")
        if after is not None:
            args.extend((after.time, after.row_id))
            conditions.append("(create_time, item_id) < ($2, $3)")
        args.append(limit)
        sql = (
            f"SELECT {_INBOX_COLUMNS} FROM inbox_items WHERE {' AND '.join(conditions)}"
            f" ORDER BY create_time DESC, item_id DESC LIMIT ${len(args)}"
        )
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
            unread = await conn.fetchval(
                "SELECT count(*) FROM inbox_items WHERE recipient_id = $1 AND read_time IS NULL", recipient_id
            )
        return [_inbox_item(row) for row in rows], int(unread)

    async def mark_inbox_item_read(self, item_id: uuid.UUID, recipient_id: str) -> InboxItemRecord | None:
        """Mark a recipient's item read (the first read time is kept); None if it is not theirs."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "UPDATE inbox_items SET read_time = COALESCE(read_time, now())"
                f" WHERE item_id = $1 AND recipient_id = $2 RETURNING {_INBOX_COLUMNS}",
                item_id,
                recipient_id,
            )
        return None if row is None else _inbox_item(row)

    # ------------------------------------------------------------------ preferences

    async def get_preferences(self, recipient_id: str) -> RecipientPreferences:
        """A recipient's preferences; defaults (every channel, every kind) when never set."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT channel, enabled, disabled_kinds, update_time FROM preferences WHERE recipient_id = $1",
                recipient_id,
            )
        return _preferences(recipient_id, rows)

    async def update_preferences(
        self, recipient_id: str, choices: Mapping[Channel, ChannelChoice]
    ) -> RecipientPreferences:
        """Replace the choice of each channel in ``choices``; other channels keep theirs."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO preferences (recipient_id, channel, enabled, disabled_kinds) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (recipient_id, channel) DO UPDATE SET enabled = EXCLUDED.enabled,"
                " disabled_kinds = EXCLUDED.disabled_kinds, update_time = now()",
                [
                    (recipient_id, channel.value, choice.enabled, sorted(kind.value for kind in choice.disabled_kinds))
                    for channel, choice in choices.items()
                ],
            )
            rows = await conn.fetch(
                "SELECT channel, enabled, disabled_kinds, update_time FROM preferences WHERE recipient_id = $1",
                recipient_id,
            )
        return _preferences(recipient_id, rows)


def _preferences(recipient_id: str, rows: Sequence[Any]) -> RecipientPreferences:
    choices = {
        Channel(row["channel"]): ChannelChoice(
            enabled=row["enabled"], disabled_kinds=frozenset(Kind(kind) for kind in row["disabled_kinds"])
        )
        for row in rows
    }
    update_time = max((row["update_time"] for row in rows), default=None)
    return RecipientPreferences(recipient_id, choices, update_time)
