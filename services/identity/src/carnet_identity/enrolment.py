"""Enrolling persons: one by one (CreatePerson), in bulk from the insurer's CSV (ImportPersons), and changes.

Every new person is ``notified`` with an opposition deadline 6 weeks ahead, gets an
activation code (stored as a digest) and a pending notice that the notice worker sends
through notify (e-mail, or a letter record without e-mail). A bulk import is
idempotent on the INS: a row whose INS is enrolled with the same data is counted
unchanged, with other data it updates the person (no new code, no new notice).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg

from carnet_identity import person_events
from carnet_identity.domain.accounts import ACTIVATION_CODE_VALIDITY, OPPOSITION_WINDOW, AccountState
from carnet_identity.domain.enrolment import UPDATABLE_FIELDS, PersonTraits, check_person
from carnet_identity.domain.model import Person
from carnet_identity.keys import utcnow
from carnet_identity.notices import new_code
from carnet_identity.store_persons import (
    PERSON_CREATED,
    PersonFilter,
    PersonStore,
    decode_page_token,
    encode_page_token,
    stored_traits,
)
from carnet_kit.auth import Principal, require_scope
from carnet_kit.errors import CarnetError, Conflict, InvalidArgument, NotFound, PermissionDenied

IMPORT_SCOPE = "persons.import"
ENROL_ROLES = frozenset({"operator", "service", "client"})
LIST_ROLES = frozenset({"operator", "service"})
# Fields a holder may change on their own record (contact points); traits come from the registry.
HOLDER_FIELDS = frozenset({"email", "mobile_phone", "postal_address", "one_time_code_channel"})
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
IMPORT_BATCH_ROWS = 5000
MAX_REPORTED_ERRORS = 1000

# CSV columns (header row, any order, "," or ";" separated); the first five are required.
REQUIRED_COLUMNS = ("ins", "birth_name", "first_names", "sex", "birth_date")
OPTIONAL_COLUMNS = (
    "ins_type",
    "used_name",
    "used_first_name",
    "birth_place_code",
    "email",
    "mobile_phone",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "country_code",
    "department_code",
)


def ensure_may_enrol(caller: Principal) -> None:
    """Operators, services, and software clients holding the ``persons.import`` scope (the insurer's registry)."""
    if caller.role not in ENROL_ROLES:
        raise PermissionDenied("you may not enrol persons", reason="CALLER_NOT_ALLOWED")
    require_scope(caller, IMPORT_SCOPE)


@dataclasses.dataclass(frozen=True)
class RowError:
    """Why one CSV row was refused."""

    line_number: int
    field: str
    reason: str
    message: str


@dataclasses.dataclass
class ImportReport:
    """The outcome of a bulk import."""

    import_id: uuid.UUID
    row_count: int = 0
    created_count: int = 0
    unchanged_count: int = 0
    updated_count: int = 0
    rejected_count: int = 0
    errors: list[RowError] = dataclasses.field(default_factory=list)

    def reject(self, error: RowError) -> None:
        """Count a refused row (the first 1 000 are reported)."""
        self.rejected_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)


class CsvLines:
    """Splits a CSV byte stream into numbered records (one per line; the header is line 1)."""

    def __init__(self) -> None:
        self._pending = b""
        self._line = 0
        self.delimiter = ","

    def _records(self, text: str) -> list[tuple[int, list[str]]]:
        out = []
        for raw in text.splitlines():
            self._line += 1
            if self._line == 1:
                raw = raw.lstrip("\ufeff")
                if raw.count(";") > raw.count(","):
                    self.delimiter = ";"
            if not raw.strip():
                continue
            out.append((self._line, next(csv.reader([raw], delimiter=self.delimiter))))
        return out

    def feed(self, chunk: bytes) -> list[tuple[int, list[str]]]:
        """The complete lines of what was received so far."""
        data = self._pending + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending = data
            return []
        self._pending = data[cut + 1 :]
        return self._records(self._decode(data[: cut + 1]))

    def finish(self) -> list[tuple[int, list[str]]]:
        """The last line, if the file did not end with a line break."""
        data, self._pending = self._pending, b""
        return self._records(self._decode(data)) if data else []

    def _decode(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(
                f"the CSV is not UTF-8 (after line {self._line})", field="csv_chunk", reason="FIELD_INVALID"
            ) from None


def _columns(header: list[str]) -> dict[str, int]:
    columns = {name.strip().lower(): index for index, name in enumerate(header)}
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise InvalidArgument(
            f"the CSV header lacks the column(s) {', '.join(missing)}", field="csv_chunk", reason="FIELD_INVALID"
        )
    return columns


def traits_from_row(row: list[str], columns: dict[str, int], today: dt.date) -> PersonTraits:
    """Check one CSV row (InvalidArgument naming the CSV column at fault)."""
    if len(row) != len(columns):
        raise InvalidArgument(
            f"the row has {len(row)} fields, the header {len(columns)}", field="", reason="FIELD_INVALID"
        )

    def get(name: str) -> str:
        index = columns.get(name)
        return row[index] if index is not None else ""

    lines = [line for line in (get("address_line1"), get("address_line2")) if line.strip()]
    return check_person(
        ins=get("ins"),
        ins_type=get("ins_type"),
        birth_name=get("birth_name"),
        used_name=get("used_name"),
        first_names=get("first_names").split(),
        used_first_name=get("used_first_name"),
        sex=get("sex"),
        birth_date=get("birth_date"),
        birth_place_code=get("birth_place_code"),
        email=get("email"),
        mobile_phone=get("mobile_phone"),
        postal_address={
            "lines": lines,
            "postal_code": get("postal_code"),
            "city": get("city"),
            "country_code": get("country_code"),
        },
        department_code=get("department_code"),
        today=today,
    )


_COLUMN_OF_FIELD = {
    "name.birth_name": "birth_name",
    "name.used_name": "used_name",
    "name.first_names": "first_names",
    "name.used_first_name": "used_first_name",
}
_TRAIT_FIELDS = (
    "ins_type",
    "name.birth_name",
    "name.used_name",
    "name.first_names",
    "name.used_first_name",
    "sex",
    "birth_date",
    "birth_date",
    "birth_place_code",
    "email",
    "mobile_phone",
    "postal_address",
    "department_code",
)
_TRAIT_STORAGE = (
    "ins_type",
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


def changed_values(person: Person, traits: PersonTraits) -> tuple[dict[str, Any], list[str]]:
    """Columns to store and Person field names that differ between a stored person and checked traits."""
    values: dict[str, Any] = {}
    fields: list[str] = []
    for column, field, old, new in zip(
        _TRAIT_STORAGE, _TRAIT_FIELDS, stored_traits(person), traits.comparable(), strict=True
    ):
        if old != new:
            values[column] = list(new) if isinstance(new, tuple) else new
            if field not in fields:
                fields.append(field)
    if "email" in values:
        values["notice_channel"] = traits.notice_channel
    return values, fields


class PersonRegistry:
    """Enrols, changes and lists persons."""

    def __init__(self, store: PersonStore, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._store = store
        self._clock = clock

    async def create(self, caller: Principal, traits: PersonTraits, request_id: str = "") -> Person:
        """Enrol one person; a retry with the same request id returns the first result."""
        ensure_may_enrol(caller)
        now = self._clock()
        request_key = f"{caller.subject}:{request_id}" if request_id else ""
        async with self._store.transaction() as tx:
            if request_key:
                earlier = await tx.create_request(request_key)
                if earlier is not None:
                    person = await tx.person(earlier)
                    assert person is not None
                    return person
            person_id = uuid.uuid4()
            if not await tx.insert_person(person_id, traits, now + OPPOSITION_WINDOW, now):
                raise Conflict("a person with this INS is already enrolled", reason="PERSON_ALREADY_EXISTS")
            code = new_code(person_id, traits.notice_channel, traits.email)
            await tx.insert_codes_and_notices([code], now, now + ACTIVATION_CODE_VALIDITY)
            if request_key:
                await tx.record_create_request(request_key, person_id)
            person = await tx.person(person_id)
            assert person is not None
            await person_events.person_created(tx, person, now)
        return person

    async def update(
        self, caller: Principal, person_id: uuid.UUID, mask: Sequence[str], build: Callable[[Person], PersonTraits]
    ) -> Person:
        """Change the masked fields; ``build`` checks the person as it would be after the change."""
        if not mask:
            raise InvalidArgument("update_mask lists no field", field="update_mask", reason="FIELD_INVALID")
        for path in mask:
            if path not in UPDATABLE_FIELDS:
                raise InvalidArgument(
                    f"{path} cannot be changed with UpdatePerson", field="update_mask", reason="FIELD_INVALID"
                )
        if caller.role == "holder":
            if caller.subject != str(person_id) or not set(mask) <= HOLDER_FIELDS:
                raise PermissionDenied("a holder may change only their own contact points", reason="CALLER_NOT_ALLOWED")
        else:
            ensure_may_enrol(caller)
        now = self._clock()
        async with self._store.transaction() as tx:
            person = await tx.person(person_id, for_update=True)
            if person is None:
                raise NotFound("no such person", reason="PERSON_NOT_FOUND")
            if person.state is AccountState.DELETED:
                raise InvalidArgument("a deleted space cannot be changed", field="person_id", reason="FIELD_INVALID")
            traits = build(person)
            values, fields = changed_values(person, traits)
            if traits.one_time_code_channel != person.one_time_code_channel:
                values["one_time_code_channel"] = traits.one_time_code_channel
                fields.append("one_time_code_channel")
            if values:
                try:
                    await tx.update_person(person_id, values, now)
                except asyncpg.UniqueViolationError:
                    raise InvalidArgument(
                        "this e-mail is already the login of another account", field="email", reason="FIELD_INVALID"
                    ) from None
                await person_events.person_updated(tx, person_id, fields, now)
            updated = await tx.person(person_id)
            assert updated is not None
        return updated

    async def list(
        self, caller: Principal, filters: PersonFilter, page_size: int, page_token: str
    ) -> tuple[list[Person], str, int]:
        """A page of persons, the next page's token (empty at the end) and the number of matches."""
        if caller.role not in LIST_ROLES:
            raise PermissionDenied("only operators and services may list persons", reason="CALLER_NOT_ALLOWED")
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", field="page_size", reason="FIELD_INVALID")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = None
        if page_token:
            try:
                after = decode_page_token(page_token)
            except (ValueError, TypeError):
                raise InvalidArgument("page_token is not valid", field="page_token", reason="FIELD_INVALID") from None
        persons, total = await self._store.list_persons(filters, size + 1, after)
        next_token = ""
        if len(persons) > size:
            persons = persons[:size]
            next_token = encode_page_token(persons[-1].created_at, persons[-1].id)
        return persons, next_token, total

    # ---- bulk import

    async def import_csv(
        self, caller: Principal, file_name: str, dry_run: bool, chunks: AsyncIterator[bytes]
    ) -> ImportReport:
        """Enrol the rows of the insurer's CSV; bad rows are reported with their line number, good ones go in.

        Rows are checked as they arrive and written in batches of
        :data:`IMPORT_BATCH_ROWS`, each in its own transaction, while the next batch is
        being parsed. A dry run does the same work and rolls every batch back.
        """
        ensure_may_enrol(caller)
        report = ImportReport(import_id=uuid.uuid4())
        await self._store.start_import(report.import_id, file_name, dry_run, caller.subject)
        lines = CsvLines()
        columns: dict[str, int] | None = None
        today = self._clock().date()
        batch: dict[str, tuple[int, uuid.UUID, PersonTraits]] = {}
        writing: asyncio.Task[None] | None = None

        async def flush() -> None:
            nonlocal batch, writing
            if writing is not None:
                await writing
                writing = None
            if batch:
                rows, batch = batch, {}
                writing = asyncio.create_task(self._write_batch(rows, report, dry_run))

        def take(records: list[tuple[int, list[str]]]) -> None:
            nonlocal columns
            for line_number, row in records:
                if columns is None:
                    columns = _columns(row)
                    continue
                report.row_count += 1
                try:
                    traits = traits_from_row(row, columns, today)
                except CarnetError as exc:
                    report.reject(RowError(line_number, exc.metadata.get("field", ""), exc.reason, exc.message))
                    continue
                earlier = batch.get(traits.nir)
                if earlier is not None:
                    report.reject(
                        RowError(
                            line_number, "ins", "FIELD_INVALID", f"the same INS is on line {earlier[0]} of this file"
                        )
                    )
                    continue
                batch[traits.nir] = (line_number, uuid.uuid4(), traits)

        try:
            async for chunk in chunks:
                take(lines.feed(chunk))
                if len(batch) >= IMPORT_BATCH_ROWS:
                    await flush()
            take(lines.finish())
            if columns is None:
                raise InvalidArgument("the CSV is empty (no header row)", field="csv_chunk", reason="FIELD_INVALID")
            await flush()
            await flush()
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
        await self._store.finish_import(
            report.import_id,
            (report.row_count, report.created_count, report.updated_count, report.unchanged_count, report.rejected_count),
        )
        return report

    async def _write_batch(
        self, rows: dict[str, tuple[int, uuid.UUID, PersonTraits]], report: ImportReport, dry_run: bool
    ) -> None:
        now = self._clock()
        try:
            async with self._store.transaction() as tx:
                counts = await self._write(tx, rows, report, now)
                if dry_run:
                    raise _DryRun(counts)
        except _DryRun as rolled_back:
            counts = rolled_back.counts
        report.created_count += counts[0]
        report.updated_count += counts[1]
        report.unchanged_count += counts[2]

    async def _write(
        self,
        tx: PersonStore,
        rows: dict[str, tuple[int, uuid.UUID, PersonTraits]],
        report: ImportReport,
        now: dt.datetime,
    ) -> tuple[int, int, int]:
        deadline = now + OPPOSITION_WINDOW
        outcome = await tx.import_batch(
            [(person_id, traits) for _line, person_id, traits in rows.values()], deadline, now
        )
        codes = []
        events = []
        for person_id, nir in outcome.created:
            traits = rows[nir][2]
            codes.append(new_code(person_id, traits.notice_channel, traits.email))
            event_id = uuid.uuid4()
            payload = person_events.person_created_payload(event_id, person_id, nir + traits.ins_key, deadline, now)
            events.append((event_id, PERSON_CREATED, payload))
        await tx.insert_codes_and_notices(codes, now, now + ACTIVATION_CODE_VALIDITY)
        await tx.enqueue_events_bulk(events)
        updated = unchanged = 0
        for person in outcome.existing:
            line_number, _id, traits = rows[person.nir]
            values, fields = changed_values(person, traits)
            if not values or person.state is AccountState.DELETED:
                unchanged += 1
                continue
            try:
                async with tx.transaction():
                    await tx.update_person(person.id, values, now)
            except asyncpg.UniqueViolationError:
                report.reject(
                    RowError(line_number, "email", "FIELD_INVALID", "this e-mail is already the login of another account")
                )
                continue
            await person_events.person_updated(tx, person.id, fields, now)
            updated += 1
        return len(outcome.created), updated, unchanged


class _DryRun(Exception):
    """Rolls a dry-run batch back, carrying what it would have done."""

    def __init__(self, counts: tuple[int, int, int]) -> None:
        super().__init__("dry run")
        self.counts = counts
