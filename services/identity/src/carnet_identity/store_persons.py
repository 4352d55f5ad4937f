"""SQL of persons' enrolment, lifecycle, activation and notices (asyncpg), over identity's schema.

Like :class:`~carnet_identity.store.IdentityStore`, a :class:`PersonStore` wraps the
pool or one connection; ``transaction()`` binds it to one connection so that a rule
(a state change and its event, a wrong code and its counter) commits as a whole.
The bulk path (:meth:`PersonStore.import_batch`) copies rows into a temporary staging
table and inserts from it, so that a million rows cost a few hundred statements.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import asyncpg
from google.protobuf.message import Message

from carnet_identity.domain.accounts import AccountState, SpaceStatus
from carnet_identity.domain.enrolment import PersonTraits
from carnet_identity.domain.model import Person
from carnet_identity.settings import SCHEMA
from carnet_identity.store import _PERSON_COLUMNS, IdentityStore, _person
from carnet_kit.outbox import enqueue, stream_name

EVENT_STREAM = stream_name("identity")
PERSON_CREATED = "carnet.identity.v1.PersonCreatedEvent"
PERSON_UPDATED = "carnet.identity.v1.PersonUpdatedEvent"
ACCOUNT_STATE_CHANGED = "carnet.identity.v1.AccountStateChangedEvent"

_SELECT_PERSON = (
    f"SELECT {_PERSON_COLUMNS}, p.previous_state, p.archive_until, p.deletion_requested_at FROM persons p"
)
_TRAIT_COLUMNS = (
    "ins_type",
    "nir",
    "ins_key",
    "birth_name",
    "used_name",
    "first_names",
    "used_first_name",
    "sex",
    "birth_date",
    "birth_date_precision",
    "birth_place_code",
    "email",
    "mobile_phone",
    "postal_address",
    "department_code",
)
_STAGING_COLUMNS = ("id", *_TRAIT_COLUMNS)
# The e-mail of the current legal representative of person p (the first recorded one).
_REPRESENTATIVE_EMAIL = """
    SELECT r.email FROM representatives rep JOIN persons r ON r.id = rep.representative_id
     WHERE rep.holder_id = p.id AND rep.kind = 'legal' AND rep.ended_at IS NULL AND r.email <> ''
       AND rep.valid_from <= now() AND (rep.valid_until IS NULL OR rep.valid_until > now())
     ORDER BY rep.valid_from, rep.id LIMIT 1
"""


def person_from_row(row: Any) -> Person:
    """A person with its lifecycle facts."""
    previous = row["previous_state"]
    return dataclasses.replace(
        _person(row),
        previous_state=AccountState(previous) if previous else None,
        archive_until=row["archive_until"],
        deletion_requested_at=row["deletion_requested_at"],
    )


def status_of(person: Person) -> SpaceStatus:
    """The lifecycle facts of a person's space."""
    return SpaceStatus(
        state=person.state,
        previous_state=person.previous_state,
        opposition_deadline=person.opposition_deadline,
        closed_at=person.closed_at,
        archive_until=person.archive_until,
        scheduled_delete_at=person.scheduled_delete_at,
        deletion_requested_at=person.deletion_requested_at,
        activated_at=person.activated_at,
        reason=person.state_reason,
    )


def _traits_values(traits: PersonTraits) -> tuple[Any, ...]:
    return (
        traits.ins_type,
        traits.nir,
        traits.ins_key,
        traits.birth_name,
        traits.used_name,
        list(traits.first_names),
        traits.used_first_name,
        traits.sex,
        traits.birth_date,
        traits.birth_date_precision,
        traits.birth_place_code,
        traits.email,
        traits.mobile_phone,
        traits.postal_address,
        traits.department_code,
    )


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value) if value is not None else None


def stored_traits(person: Person) -> tuple[Any, ...]:
    """A stored person's values in the order of :meth:`PersonTraits.comparable`."""
    return (
        person.ins_type.value,
        person.name.birth_name,
        person.name.used_name,
        tuple(person.name.first_names),
        person.name.used_first_name,
        person.sex,
        person.birth_date,
        person.birth_date_precision,
        person.birth_place_code,
        person.email,
        person.mobile_phone,
        person.postal_address or None,
        person.department_code,
    )


@dataclasses.dataclass(frozen=True)
class NewActivationCode:
    """An activation code about to be stored with its notice (the plain code goes to the notice only)."""

    code_id: uuid.UUID
    person_id: uuid.UUID
    digest: str
    code: str
    channel: str
    email: str


@dataclasses.dataclass(frozen=True)
class StoredActivationCode:
    """The outstanding activation code of a person."""

    id: uuid.UUID
    person_id: uuid.UUID
    code_hash: str
    attempts: int
    max_attempts: int
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class DueNotice:
    """An activation notice to send through notify."""

    code_id: uuid.UUID
    person_id: uuid.UUID
    channel: str
    email: str
    code: str
    attempts: int
    first_name: str
    opposition_deadline: dt.datetime | None
    postal_address: dict[str, Any] | None
    birth_date: dt.date | None = None
    representative_email: str = ""


@dataclasses.dataclass(frozen=True)
class PersonFilter:
    """ListPersons filters (empty = any)."""

    state: str = ""
    department_code: str = ""
    name_query: str = ""
    opposition_deadline_before: dt.datetime | None = None


def encode_page_token(created_at: dt.datetime, person_id: uuid.UUID) -> str:
    """An opaque cursor after ``(created_at, id)``."""
    raw = json.dumps([created_at.isoformat(), str(person_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[dt.datetime, uuid.UUID]:
    """The cursor of a page token; ValueError when it was not made by :func:`encode_page_token`."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    created_at, person_id = json.loads(raw)
    return dt.datetime.fromisoformat(created_at), uuid.UUID(person_id)


# French accents folded for name search (no unaccent extension needed).
_ACCENTS = "àâäáãåçéèêëíìîïñóòôöõúùûüýÿœæ"
_PLAIN = "aaaaaaceeeeiiiinooooouuuuyyoa"


def fold(text: str) -> str:
    """Lower-case and strip French accents, as the name search does in SQL."""
    return text.lower().translate(str.maketrans(_ACCENTS, _PLAIN))


@dataclasses.dataclass(frozen=True)
class BatchOutcome:
    """What one import batch did."""

    created: list[tuple[uuid.UUID, str]]
    existing: list[Person]


class PersonStore:
    """Reads and writes persons' enrolment, lifecycle and activation rows."""

    def __init__(self, db: Any) -> None:
        self._db = db

    @classmethod
    def sharing(cls, store: IdentityStore) -> PersonStore:
        """A person store over the same pool (or connection) as ``store``."""
        return cls(store._db)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PersonStore]:
        """A store bound to one connection inside a transaction (nested calls join it)."""
        if isinstance(self._db, asyncpg.Pool):
            async with self._db.acquire() as conn, conn.transaction():
                yield PersonStore(conn)
        else:
            async with self._db.transaction():
                yield self

    @property
    def connection(self) -> asyncpg.Connection:
        """The connection of a store bound by ``transaction()`` (for the kit's outbox helpers)."""
        if isinstance(self._db, asyncpg.Pool):
            raise RuntimeError("only a store bound to a transaction has a connection")
        return self._db

    async def enqueue_event(self, event_type: str, payload: Message, event_id: str) -> None:
        """Write an event to identity's outbox in this transaction."""
        await enqueue(self._db, schema=SCHEMA, stream=EVENT_STREAM, event_type=event_type, payload=payload, event_id=event_id)

    # ---- reading

    async def person(self, person_id: uuid.UUID, *, for_update: bool = False) -> Person | None:
        """A person with lifecycle facts; locked until the end of the transaction when ``for_update``."""
        lock = " FOR UPDATE OF p" if for_update else ""
        row = await self._db.fetchrow(f"{_SELECT_PERSON} WHERE p.id = $1{lock}", person_id)
        return person_from_row(row) if row else None

    async def person_by_nir(self, nir: str, *, for_update: bool = False) -> Person | None:
        """A person by the 13-character number of their INS."""
        lock = " FOR UPDATE OF p" if for_update else ""
        row = await self._db.fetchrow(f"{_SELECT_PERSON} WHERE p.nir = $1{lock}", nir)
        return person_from_row(row) if row else None

    async def list_persons(
        self, filters: PersonFilter, page_size: int, after: tuple[dt.datetime, uuid.UUID] | None
    ) -> tuple[list[Person], int]:
        """A page of persons in enrolment order, and the total number of matches."""
        clauses: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if filters.state:
            clauses.append(f"p.state = {arg(filters.state)}")
        if filters.department_code:
            clauses.append(f"p.department_code = {arg(filters.department_code)}")
        if filters.name_query:
            folded = "%" + fold(filters.name_query).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            haystack = "lower(p.birth_name || ' ' || p.used_name || ' ' || array_to_string(p.first_names, ' ') || ' ' || p.used_first_name)"
            clauses.append(f"translate({haystack}, '{_ACCENTS}', '{_PLAIN}') LIKE {arg(folded)}")
        if filters.opposition_deadline_before is not None:
            clauses.append(f"p.opposition_deadline < {arg(filters.opposition_deadline_before)}")
        where = " AND ".join(clauses) or "true"
        total: int = await self._db.fetchval(f"SELECT count(*) FROM persons p WHERE {where}", *args)
        page_where = where
        if after is not None:
            page_where += f" AND (p.created_at, p.id) > ({arg(after[0])}, {arg(after[1])})"
        rows = await self._db.fetch(
            f"{_SELECT_PERSON} WHERE {page_where} ORDER BY p.created_at, p.id LIMIT {arg(page_size)}", *args
        )
        return [person_from_row(row) for row in rows], total

    # ---- enrolment

    async def create_request(self, request_id: str) -> uuid.UUID | None:
        """The person a CreatePerson request id already enrolled."""
        value: uuid.UUID | None = await self._db.fetchval(
            "SELECT person_id FROM person_create_requests WHERE request_id = $1", request_id
        )
        return value

    async def insert_person(
        self, person_id: uuid.UUID, traits: PersonTraits, deadline: dt.datetime, now: dt.datetime
    ) -> bool:
        """Enrol one person in the notified state unless the INS exists; whether it was inserted."""
        status: str = await self._db.execute(
            f"""
            INSERT INTO persons (id, {", ".join(_TRAIT_COLUMNS)}, one_time_code_channel, state, opposition_deadline,
                notice_channel, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 'notified', $18, $19,
                $20, $20)
            ON CONFLICT (nir) DO NOTHING
            """,
            person_id,
            *_traits_values(traits),
            traits.one_time_code_channel,
            deadline,
            traits.notice_channel,
            now,
        )
        return status.endswith(" 1")

    async def record_create_request(self, request_id: str, person_id: uuid.UUID) -> None:
        """Remember which person a CreatePerson request id enrolled."""
        await self._db.execute(
            "INSERT INTO person_create_requests (request_id, person_id) VALUES ($1, $2)", request_id, person_id
        )

    async def update_person(self, person_id: uuid.UUID, values: dict[str, Any], now: dt.datetime) -> None:
        """Change traits or contact points (column → value)."""
        columns = list(values)
        assignments = ", ".join(f"{column} = ${index}" for index, column in enumerate(columns, start=3))
        await self._db.execute(
            f"UPDATE persons SET {assignments}, updated_at = $2 WHERE id = $1", person_id, now, *values.values()
        )

    async def start_import(self, import_id: uuid.UUID, file_name: str, dry_run: bool, started_by: str) -> None:
        """Record an import run."""
        await self._db.execute(
            "INSERT INTO person_imports (id, file_name, dry_run, started_by) VALUES ($1, $2, $3, $4)",
            import_id,
            file_name,
            dry_run,
            started_by,
        )

    async def finish_import(self, import_id: uuid.UUID, counts: Sequence[int]) -> None:
        """Record the outcome of an import run (rows, created, updated, unchanged, rejected)."""
        await self._db.execute(
            "UPDATE person_imports SET finished_at = now(), row_count = $2, created_count = $3, updated_count = $4,"
            " unchanged_count = $5, rejected_count = $6 WHERE id = $1",
            import_id,
            *counts,
        )

    async def import_batch(
        self, rows: Sequence[tuple[uuid.UUID, PersonTraits]], deadline: dt.datetime, now: dt.datetime
    ) -> BatchOutcome:
        """Insert the rows whose INS is new (state notified); return them and the persons that already exist.

        Rows are copied into a temporary staging table, then inserted with
        ``ON CONFLICT (nir) DO NOTHING``: a re-import, or two imports at once, never
        enrol the same INS twice.
        """
        await self._db.execute(
            """
            CREATE TEMPORARY TABLE IF NOT EXISTS person_import_staging (
                id uuid, ins_type text, nir char(13), ins_key char(2), birth_name text, used_name text, first_names text[],
                used_first_name text, sex text, birth_date date, birth_date_precision text, birth_place_code text,
                email text, mobile_phone text, postal_address text, department_code text
            ) ON COMMIT DELETE ROWS
            """
        )
        await self._db.execute("TRUNCATE person_import_staging")
        await self._db.copy_records_to_table(
            "person_import_staging",
            # Binary COPY has no jsonb encoder: the address travels as JSON text, cast on insert.
            records=[
                (person_id, *_traits_values(traits)[:-2], _json_or_none(traits.postal_address), traits.department_code)
                for person_id, traits in rows
            ],
            columns=list(_STAGING_COLUMNS),
        )
        columns = ", ".join(_TRAIT_COLUMNS)
        selected = columns.replace("postal_address", "postal_address::jsonb")
        created = await self._db.fetch(
            f"""
            INSERT INTO persons (id, {columns}, state, opposition_deadline, notice_channel, created_at, updated_at)
            SELECT id, {selected}, 'notified', $1, CASE WHEN email <> '' THEN 'email' ELSE 'letter' END, $2, $2
              FROM person_import_staging
            ON CONFLICT (nir) DO NOTHING
            RETURNING id, nir
            """,
            deadline,
            now,
        )
        created_list = [(row["id"], row["nir"]) for row in created]
        existing: list[Person] = []
        if len(created_list) < len(rows):
            new_ids = [row["id"] for row in created]
            found = await self._db.fetch(
                f"{_SELECT_PERSON} JOIN person_import_staging s ON s.nir = p.nir WHERE NOT (p.id = ANY($1::uuid[]))",
                new_ids,
            )
            existing = [person_from_row(row) for row in found]
        return BatchOutcome(created_list, existing)

    async def insert_codes_and_notices(
        self, codes: Sequence[NewActivationCode], created_at: dt.datetime, expires_at: dt.datetime
    ) -> None:
        """Store activation codes (digests) and their pending notices (plain code until sent), in bulk."""
        if not codes:
            return
        await self._db.copy_records_to_table(
            "activation_codes",
            records=[(c.code_id, c.person_id, c.digest, c.channel, created_at, expires_at) for c in codes],
            columns=["id", "person_id", "code_hash", "channel", "created_at", "expires_at"],
        )
        await self._db.copy_records_to_table(
            "activation_notices",
            records=[(c.code_id, c.person_id, c.channel, c.email, c.code, created_at, created_at) for c in codes],
            columns=["code_id", "person_id", "channel", "email", "code", "next_attempt_at", "created_at"],
        )

    async def enqueue_events_bulk(self, events: Iterable[tuple[uuid.UUID, str, dict[str, Any]]]) -> None:
        """Write many events to identity's outbox at once (COPY), then wake the relay once.

        The kit's :func:`carnet_kit.outbox.enqueue` writes one row and one NOTIFY per
        event; a bulk import writes the same rows with a single COPY.
        """
        rows = list(events)
        if not rows:
            return
        # One statement for the whole batch (binary COPY has no jsonb encoder).
        await self._db.execute(
            "INSERT INTO outbox (event_id, stream, event_type, payload, traceparent)"
            " SELECT event_id, $3, event_type, payload::jsonb, '' FROM unnest($1::uuid[], $2::text[], $4::text[])"
            " AS e(event_id, event_type, payload)",
            [event_id for event_id, _type, _payload in rows],
            [event_type for _id, event_type, _payload in rows],
            EVENT_STREAM,
            [json.dumps(payload) for _id, _type, payload in rows],
        )
        await self._db.execute("SELECT pg_notify($1, '')", f"{SCHEMA}_outbox")

    # ---- lifecycle

    async def save_status(self, person_id: uuid.UUID, status: SpaceStatus, now: dt.datetime) -> None:
        """Store a space's new lifecycle facts."""
        await self._db.execute(
            """
            UPDATE persons SET state = $2, previous_state = $3, closed_at = $4, archive_until = $5,
                scheduled_delete_at = $6, deletion_requested_at = $7, activated_at = $8, state_reason = $9,
                updated_at = $10
             WHERE id = $1
            """,
            person_id,
            status.state.value,
            status.previous_state.value if status.previous_state else None,
            status.closed_at,
            status.archive_until,
            status.scheduled_delete_at,
            status.deletion_requested_at,
            status.activated_at,
            status.reason,
            now,
        )

    async def erase_deleted(self, person_id: uuid.UUID) -> None:
        """Keep only the tombstone of a deleted space: no contact points, no password, no codes."""
        await self._db.execute(
            "UPDATE persons SET email = '', mobile_phone = '', postal_address = NULL, password_hash = NULL"
            " WHERE id = $1",
            person_id,
        )
        await self.revoke_codes(person_id, dt.datetime.now(dt.UTC))

    async def ids_due(self, query: str, now: dt.datetime, limit: int) -> list[uuid.UUID]:
        """Ids of spaces a scheduled transition is due for, locked (SKIP LOCKED: replicas share the work)."""
        conditions = {
            "past_deadline": "state = 'notified' AND opposition_deadline <= $1",
            "suspension_over": "state = 'suspended' AND closed_at <= $1",
            "deletion_due": "state = 'closed' AND scheduled_delete_at <= $1",
        }
        rows = await self._db.fetch(
            f"SELECT id FROM persons WHERE {conditions[query]} ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
        return [row["id"] for row in rows]

    # ---- activation codes

    async def outstanding_code(self, person_id: uuid.UUID, *, for_update: bool = False) -> StoredActivationCode | None:
        """The person's current activation code."""
        lock = " FOR UPDATE" if for_update else ""
        row = await self._db.fetchrow(
            "SELECT id, person_id, code_hash, attempts, max_attempts, expires_at FROM activation_codes"
            f" WHERE person_id = $1 AND used_at IS NULL AND revoked_at IS NULL{lock}",
            person_id,
        )
        if row is None:
            return None
        return StoredActivationCode(
            row["id"], row["person_id"], row["code_hash"], row["attempts"], row["max_attempts"], row["expires_at"]
        )

    async def count_wrong_code(self, code_id: uuid.UUID) -> int:
        """One more wrong try; the new count."""
        value: int = await self._db.fetchval(
            "UPDATE activation_codes SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts", code_id
        )
        return value

    async def mark_code_used(self, code_id: uuid.UUID, now: dt.datetime) -> None:
        """An activation code is single use."""
        await self._db.execute("UPDATE activation_codes SET used_at = $2 WHERE id = $1", code_id, now)

    async def revoke_codes(self, person_id: uuid.UUID, now: dt.datetime) -> None:
        """Invalidate the person's outstanding code and cancel its unsent notice."""
        await self._db.execute(
            "UPDATE activation_codes SET revoked_at = $2 WHERE person_id = $1 AND used_at IS NULL AND revoked_at IS NULL",
            person_id,
            now,
        )
        await self._db.execute(
            "UPDATE activation_notices SET state = 'cancelled', code = NULL WHERE person_id = $1 AND state = 'pending'",
            person_id,
        )

    # ---- password

    async def insert_setup_token(self, digest: bytes, person_id: uuid.UUID, expires_at: dt.datetime) -> None:
        """Store the digest of a password setup token."""
        await self._db.execute(
            "INSERT INTO password_setup_tokens (token_digest, person_id, expires_at) VALUES ($1, $2, $3)",
            digest,
            person_id,
            expires_at,
        )

    async def consume_setup_token(self, digest: bytes, now: dt.datetime) -> uuid.UUID | None:
        """Use a setup token once; the person it was issued to, or None if unknown, used or expired."""
        value: uuid.UUID | None = await self._db.fetchval(
            "UPDATE password_setup_tokens SET used_at = $2 WHERE token_digest = $1 AND used_at IS NULL"
            " AND expires_at > $2 RETURNING person_id",
            digest,
            now,
        )
        return value

    async def set_person_password(self, person_id: uuid.UUID, password_hash: str, now: dt.datetime) -> None:
        """Store a holder's new argon2id password hash."""
        await self._db.execute(
            "UPDATE persons SET password_hash = $2, password_updated_at = $3, updated_at = $3 WHERE id = $1",
            person_id,
            password_hash,
            now,
        )

    async def set_professional_password(self, professional_id: uuid.UUID, password_hash: str, now: dt.datetime) -> None:
        """Store a professional's new argon2id password hash."""
        await self._db.execute(
            "UPDATE professionals SET password_hash = $2, password_updated_at = $3, updated_at = $3 WHERE id = $1",
            professional_id,
            password_hash,
            now,
        )

    # ---- notices

    async def due_notices(self, now: dt.datetime, limit: int) -> list[DueNotice]:
        """Pending notices whose next attempt is due, locked (SKIP LOCKED: replicas share the work)."""
        rows = await self._db.fetch(
            """
            SELECT n.code_id, n.person_id, n.channel, n.email, n.code, n.attempts, p.used_first_name, p.first_names,
                   p.opposition_deadline, p.postal_address, p.birth_date, (REPRESENTATIVE) AS representative_email
              FROM activation_notices n JOIN persons p ON p.id = n.person_id
             WHERE n.state = 'pending' AND n.next_attempt_at <= $1
             ORDER BY n.next_attempt_at LIMIT $2
               FOR UPDATE OF n SKIP LOCKED
            """.replace("REPRESENTATIVE", _REPRESENTATIVE_EMAIL),
            now,
            limit,
        )
        return [
            DueNotice(
                code_id=row["code_id"],
                person_id=row["person_id"],
                channel=row["channel"],
                email=row["email"],
                code=row["code"] or "",
                attempts=row["attempts"],
                first_name=row["used_first_name"] or (row["first_names"][0] if row["first_names"] else ""),
                opposition_deadline=row["opposition_deadline"],
                postal_address=row["postal_address"],
                birth_date=row["birth_date"],
                representative_email=row["representative_email"] or "",
            )
            for row in rows
        ]

    async def legal_representative_email(self, person_id: uuid.UUID) -> str:
        """The e-mail of the person's current legal representative (a minor's notices go there), or ""."""
        value: str | None = await self._db.fetchval(
            f"SELECT ({_REPRESENTATIVE_EMAIL}) FROM persons p WHERE p.id = $1", person_id
        )
        return value or ""

    async def notice_sent(self, code_ids: Sequence[uuid.UUID], now: dt.datetime) -> None:
        """Notify accepted these notices: forget their plain codes."""
        await self._db.execute(
            "UPDATE activation_notices SET state = 'sent', sent_at = $2, code = NULL, attempts = attempts + 1,"
            " last_error = '' WHERE code_id = ANY($1::uuid[])",
            list(code_ids),
            now,
        )

    async def notice_retry(self, code_id: uuid.UUID, next_attempt_at: dt.datetime, error: str) -> None:
        """A transient failure: try again later."""
        await self._db.execute(
            "UPDATE activation_notices SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3"
            " WHERE code_id = $1",
            code_id,
            next_attempt_at,
            error,
        )

    async def notice_failed(self, code_id: uuid.UUID, error: str) -> None:
        """Given up (notify refused it for good, or too many attempts): the plain code is dropped."""
        await self._db.execute(
            "UPDATE activation_notices SET state = 'failed', code = NULL, attempts = attempts + 1, last_error = $2"
            " WHERE code_id = $1",
            code_id,
            error,
        )

    async def notices_of(self, person_id: uuid.UUID) -> list[dict[str, Any]]:
        """A person's notices (state, channel, attempts), oldest first (support and tests)."""
        rows = await self._db.fetch(
            "SELECT code_id, channel, email, state, attempts, last_error, created_at, sent_at FROM activation_notices"
            " WHERE person_id = $1 ORDER BY created_at, code_id",
            person_id,
        )
        return [dict(row) for row in rows]
