"""The daily prevention-reminder job: who is due what (``prevention.py``), sent once per period.

Every day, after ``prevention_run_hour`` (Paris time), one replica takes the job (a
PostgreSQL advisory lock), reads from identity every person whose space is open, page by
page, computes the reminders due that day and sends those not yet sent for their period:
the reminder row and its notification (inbox item + e-mail, per the holder's preferences)
are written in one transaction, and the reminder's unique key (holder, programme, period)
makes a second replica, a repeated run or a run for one holder send nothing twice. The day
is then marked done. A failed run (identity unreachable, say) is tried again at the next
check; what it sent already stays sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import asyncpg
from opentelemetry import trace

from carnet_notify.domain import Cursor, NotificationIntent, RecipientPreferences, prepare_notification
from carnet_notify.kinds import Channel, Kind
from carnet_notify.peers import IdentityPersons, PersonFacts
from carnet_notify.prevention import Due, to_send
from carnet_notify.store import NotifyStore, insert_notification

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

PARIS = ZoneInfo("Europe/Paris")
# Any constant both replicas agree on: the key of the job's advisory lock.
_LOCK_KEY = 0x43_41_52_4E_50_52_45_56  # "CARNPREV"


def paris_today(now: dt.datetime | None = None) -> dt.date:
    """Today's date in Paris."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(PARIS).date()


@dataclass(frozen=True)
class ReminderRecord:
    """A prevention reminder sent."""

    reminder_id: uuid.UUID
    recipient_id: str
    program: str
    period: str
    detail: str
    notification_id: uuid.UUID
    send_time: dt.datetime


@dataclass(frozen=True)
class RunResult:
    """What a run found and did."""

    due: int
    sent: int


class AlreadySent(Exception):
    """Raised inside a reminder's transaction to roll it back when its period was claimed meanwhile."""


class PreventionStore:
    """Notify's tables of reminders sent and days run."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def sent_pairs(self, recipient_ids: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
        """(programme, period) pairs already sent, by holder."""
        rows = await self._pool.fetch(
            "SELECT recipient_id, program, period FROM prevention_reminders WHERE recipient_id = ANY($1::text[])",
            list(recipient_ids),
        )
        found: dict[str, set[tuple[str, str]]] = {}
        for row in rows:
            found.setdefault(row["recipient_id"], set()).add((row["program"], row["period"]))
        return found

    async def record(
        self,
        person: PersonFacts,
        due: Due,
        preferences: RecipientPreferences,
        channels_unavailable: dict[Channel, str],
    ) -> None:
        """Write the reminder and its notification together; ``AlreadySent`` (nothing written) when its
        period was claimed by another run since."""
        reminder_id = uuid.uuid4()
        intent = NotificationIntent(
            recipient_id=person.person_id,
            kind=Kind.PREVENTION_REMINDER,
            channels=(Channel.IN_APP, Channel.EMAIL),
            parameters={"program": due.program.value, "period": due.period, "detail": due.detail},
            email=person.email,
            source_event_id=f"prevention:{due.program.value}:{due.period}",
        )
        prepared = prepare_notification(intent, preferences=preferences, unavailable=channels_unavailable)
        async with self._pool.acquire() as conn, conn.transaction():
            # The notification first (the reminder row refers to it), then the reminder's claim;
            # a lost claim rolls both back.
            notification, _ = await insert_notification(conn, prepared, request_id="", created_by="prevention")
            claimed = await conn.fetchval(
                "INSERT INTO prevention_reminders (reminder_id, recipient_id, program, period, detail, notification_id)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (recipient_id, program, period) DO NOTHING"
                " RETURNING reminder_id",
                reminder_id,
                person.person_id,
                due.program.value,
                due.period,
                due.detail,
                notification.notification_id,
            )
            if claimed is None:
                raise AlreadySent

    async def list(self, recipient_id: str, after: Cursor | None, limit: int) -> list[ReminderRecord]:
        """A holder's reminders, newest first, after ``after``."""
        rows = await self._pool.fetch(
            "SELECT reminder_id, recipient_id, program, period, detail, notification_id, send_time"
            " FROM prevention_reminders WHERE recipient_id = $1"
            " AND ($2::timestamptz IS NULL OR (send_time, reminder_id) < ($2, $3))"
            " ORDER BY send_time DESC, reminder_id DESC LIMIT $4",
            recipient_id,
            after.time if after else None,
            after.row_id if after else None,
            limit,
        )
        return [ReminderRecord(**dict(row)) for row in rows]

    async def ran_on(self, day: dt.date) -> bool:
        """Whether the daily run of ``day`` went to its end."""
        return bool(await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM prevention_runs WHERE run_date = $1)", day))

    async def finish_run(self, day: dt.date, result: RunResult) -> None:
        """Mark ``day`` done."""
        await self._pool.execute(
            "INSERT INTO prevention_runs (run_date, due_count, sent_count) VALUES ($1, $2, $3)"
            " ON CONFLICT (run_date) DO UPDATE SET due_count = EXCLUDED.due_count, sent_count = EXCLUDED.sent_count,"
            " finish_time = now()",
            day,
            result.due,
            result.sent,
        )


class PreventionJob:
    """Computes and sends the day's prevention reminders."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        notify: NotifyStore,
        persons: IdentityPersons,
        *,
        unavailable: dict[Channel, str],
        on_new_deliveries: Callable[[], None],
        run_hour: int,
        check_seconds: float,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._pool = pool
        self.store = PreventionStore(pool)
        self._notify = notify
        self._persons = persons
        self._unavailable = unavailable
        self._on_new_deliveries = on_new_deliveries
        self._run_hour = run_hour
        self._check_seconds = check_seconds
        self._clock = clock

    async def run(self, day: dt.date, *, dry_run: bool = False, recipient_id: str = "") -> RunResult:
        """Find the reminders due on ``day`` and not yet sent, and send them (unless ``dry_run``)."""
        with tracer.start_as_current_span("notify.prevention.run") as span:
            span.set_attribute("carnet.prevention.day", day.isoformat())
            due = sent = 0
            if recipient_id:
                person = await self._persons.one(recipient_id)
                pages = [[person]] if person is not None else []
                for page in pages:
                    d, s = await self._page(page, day, dry_run)
                    due, sent = due + d, sent + s
            else:
                async for page in self._persons.pages():
                    d, s = await self._page(page, day, dry_run)
                    due, sent = due + d, sent + s
            span.set_attribute("carnet.prevention.due", due)
            span.set_attribute("carnet.prevention.sent", sent)
            return RunResult(due=due, sent=sent)

    async def _page(self, persons: list[PersonFacts], day: dt.date, dry_run: bool) -> tuple[int, int]:
        dated = [person for person in persons if person.birth_date is not None]
        sent_before = await self.store.sent_pairs([person.person_id for person in dated])
        due = sent = 0
        wake = False
        for person in dated:
            assert person.birth_date is not None
            reminders = to_send(person.birth_date, person.sex, day, sent_before.get(person.person_id, ()))
            due += len(reminders)
            if dry_run or not reminders:
                continue
            preferences = await self._notify.get_preferences(person.person_id)
            for reminder in reminders:
                try:
                    await self.store.record(person, reminder, preferences, self._unavailable)
                except AlreadySent:
                    due -= 1  # another replica or run sent it since this page was read
                    continue
                sent += 1
                wake = wake or (Channel.EMAIL not in self._unavailable and bool(person.email))
        if wake:
            self._on_new_deliveries()
        return due, sent

    async def run_daily(self) -> None:
        """Forever: once a day after the run hour (Paris), the day's run, on one replica at a time."""
        while True:
            try:
                await self.run_if_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the prevention reminder run failed; it is tried again at the next check")
            await asyncio.sleep(self._check_seconds)

    async def run_if_due(self) -> RunResult | None:
        """Today's run if it is past the run hour, not done yet and no other replica is on it; None otherwise."""
        now = self._clock().astimezone(PARIS)
        day = now.date()
        if now.hour < self._run_hour or await self.store.ran_on(day):
            return None
        async with self._pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
                return None  # another replica is on it
            try:
                if await self.store.ran_on(day):
                    return None
                result = await self.run(day)
                await self.store.finish_run(day, result)
                log.info("prevention reminders of %s: %d due, %d sent", day, result.due, result.sent)
                return result
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)

