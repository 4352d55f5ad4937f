"""SQL of the consent service (schema ``consent``): the holder's choices, identity facts, events.

Every change is written with the event announcing it in one transaction (kit outbox):
the holder's choices on ``carnet:events:consent``, and a facts-changed notice on
:data:`INVALIDATION_STREAM` for identity facts, so that every replica drops its cached
facts once the change is committed.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import events_pb2, resources_pb2
from carnet_consent.domain import (
    AccountState,
    AppAccess,
    CareTeamMember,
    Facts,
    HelperAccess,
    OppositionKind,
)
from carnet_kit.auth import Principal
from carnet_kit.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from carnet_kit.outbox import enqueue, stream_name

SCHEMA = "consent"
EVENT_STREAM = stream_name("consent")
INVALIDATION_STREAM = "carnet:invalidations:consent"
"""Where consent tells its own replicas that identity facts of a holder changed."""
FACTS_CHANGED = "carnet.consent.FactsChanged"

OPPOSITION_CHANGED = "carnet.consent.v1.OppositionChangedEvent"
BLOCK_CHANGED = "carnet.consent.v1.BlockChangedEvent"
CARE_TEAM_CHANGED = "carnet.consent.v1.CareTeamAuthorisationChangedEvent"
APP_CONSENT_CHANGED = "carnet.consent.v1.AppConsentChangedEvent"

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_FACTS_SQL = """
SELECT
    ARRAY(SELECT professional_id FROM blocks WHERE holder_id = $1) AS blocked_ids,
    ARRAY(SELECT rpps FROM blocks WHERE holder_id = $1 AND rpps <> '') AS blocked_rpps,
    ARRAY(SELECT kind FROM oppositions WHERE holder_id = $1 AND withdraw_time IS NULL) AS oppositions,
    ARRAY(SELECT ROW(professional_id, rpps, organisation_id, extract(epoch FROM expire_time)::float8)
          FROM care_team_authorisations
          WHERE holder_id = $1 AND revoke_time IS NULL AND (expire_time IS NULL OR expire_time > now())) AS care_team,
    (SELECT professional_id FROM treating_physicians WHERE holder_id = $1) AS treating_physician,
    ARRAY(SELECT representative_id FROM representatives WHERE holder_id = $1) AS representatives,
    ARRAY(SELECT ROW(helper_person_id, access) FROM helpers WHERE holder_id = $1) AS helpers,
    ARRAY(SELECT ROW(client_id, data_category, access) FROM app_consents
          WHERE holder_id = $1 AND revoke_time IS NULL) AS app_consents,
    (SELECT state FROM persons WHERE holder_id = $1) AS account_state
"""


def _actor_json(actor: Principal) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(actor).items()}


def actor_from_json(value: Mapping[str, Any] | None) -> Principal | None:
    """The principal stored as JSON by this module (None stays None)."""
    if not value:
        return None
    fields = {f.name for f in dataclasses.fields(Principal)}
    data = {key: value[key] for key in value if key in fields}
    data["scopes"] = tuple(data.get("scopes", ()))
    return Principal(**data)


def new_receipt_number(prefix: str = "OPP") -> str:
    """A receipt number given to the holder: a prefix and 12 unambiguous characters."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return f"{prefix}-" + "".join(secrets.choice(alphabet) for _ in range(12))


def _timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _proto_actor(principal: Principal | None) -> common_pb2.Actor | None:
    return principal.to_actor() if principal is not None else None


# ---------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class OppositionRecord:
    """An opposition with its receipts."""

    opposition_id: str
    holder_id: str
    kind: OppositionKind
    channel: str
    receipt_number: str
    recorded_by: Principal | None
    create_time: datetime
    withdrawal_receipt_number: str | None
    withdrawn_by: Principal | None
    withdraw_time: datetime | None
    request_id: str | None = None

    @property
    def active(self) -> bool:
        """Whether it is in force."""
        return self.withdraw_time is None


@dataclasses.dataclass(frozen=True)
class BlockRecord:
    """A professional the holder blocked."""

    block_id: str
    holder_id: str
    professional_id: str
    rpps: str
    created_by: Principal | None
    create_time: datetime


@dataclasses.dataclass(frozen=True)
class CareTeamRecord:
    """A care-team authorisation."""

    authorisation_id: str
    holder_id: str
    professional_id: str
    rpps: str
    organisation_id: str
    origin: str
    created_by: Principal | None
    create_time: datetime
    expire_time: datetime | None
    revoked_by: Principal | None
    revoke_time: datetime | None
    request_id: str | None = None

    def state(self, now: datetime) -> str:
        """ACTIVE, REVOKED or EXPIRED at that time."""
        if self.revoke_time is not None:
            return "REVOKED"
        if self.expire_time is not None and self.expire_time <= now:
            return "EXPIRED"
        return "ACTIVE"


@dataclasses.dataclass(frozen=True)
class AppConsentRecord:
    """A holder's consent for a catalogue app and a data category."""

    app_consent_id: str
    holder_id: str
    client_id: str
    data_category: str
    access: AppAccess
    create_time: datetime
    revoke_time: datetime | None

    @property
    def state(self) -> str:
        """ACTIVE or REVOKED."""
        return "ACTIVE" if self.revoke_time is None else "REVOKED"


def _opposition(row: asyncpg.Record) -> OppositionRecord:
    return OppositionRecord(
        opposition_id=str(row["opposition_id"]),
        holder_id=row["holder_id"],
        kind=OppositionKind(row["kind"]),
        channel=row["channel"],
        receipt_number=row["receipt_number"],
        recorded_by=actor_from_json(row["recorded_by"]),
        create_time=row["create_time"],
        withdrawal_receipt_number=row["withdrawal_receipt_number"],
        withdrawn_by=actor_from_json(row["withdrawn_by"]),
        withdraw_time=row["withdraw_time"],
        request_id=row["request_id"],
    )


def _block(row: asyncpg.Record) -> BlockRecord:
    return BlockRecord(
        block_id=str(row["block_id"]),
        holder_id=row["holder_id"],
        professional_id=row["professional_id"],
        rpps=row["rpps"],
        created_by=actor_from_json(row["created_by"]),
        create_time=row["create_time"],
    )


def _care_team(row: asyncpg.Record) -> CareTeamRecord:
    return CareTeamRecord(
        authorisation_id=str(row["authorisation_id"]),
        holder_id=row["holder_id"],
        professional_id=row["professional_id"],
        rpps=row["rpps"],
        organisation_id=row["organisation_id"],
        origin=row["origin"],
        created_by=actor_from_json(row["created_by"]),
        create_time=row["create_time"],
        expire_time=row["expire_time"],
        revoked_by=actor_from_json(row["revoked_by"]),
        revoke_time=row["revoke_time"],
        request_id=row["request_id"],
    )


def _app_consent(row: asyncpg.Record) -> AppConsentRecord:
    return AppConsentRecord(
        app_consent_id=str(row["app_consent_id"]),
        holder_id=row["holder_id"],
        client_id=row["client_id"],
        data_category=row["data_category"],
        access=AppAccess(row["access"]),
        create_time=row["create_time"],
        revoke_time=row["revoke_time"],
    )


# ---------------------------------------------------------------- pagination


def page_bounds(page_size: int, page_token: str) -> tuple[int, int]:
    """(limit, offset) from a request's page size and token; InvalidArgument for bad ones."""
    if page_size < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size", reason="FIELD_INVALID")
    limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not page_token:
        return limit, 0
    try:
        decoded = base64.urlsafe_b64decode(page_token.encode()).decode()
        prefix, _, number = decoded.partition(":")
        offset = int(number)
        if prefix != "o" or offset < 0:
            raise ValueError(decoded)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token is not one this service issued", field="page_token", reason="FIELD_INVALID") from exc
    return limit, offset


def next_page_token(limit: int, offset: int, rows: Sequence[object]) -> str:
    """Token of the next page, empty when ``rows`` (fetched with limit + 1) was the last page."""
    if len(rows) <= limit:
        return ""
    return base64.urlsafe_b64encode(f"o:{offset + limit}".encode()).decode()


def _uuid(value: str, field: str, reason: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound(f"no {what} {value!r}", reason=reason, metadata={field: value}) from exc


class ConsentStore:
    """Reads and writes the consent schema through a pool bound to it."""

    def __init__(
        self, pool: asyncpg.Pool, *, events_stream: str = EVENT_STREAM, invalidation_stream: str = INVALIDATION_STREAM
    ) -> None:
        self._pool = pool
        self.events_stream = events_stream
        self.invalidation_stream = invalidation_stream

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool (for the event consumers' transactions)."""
        return self._pool

    # ------------------------------------------------------------ facts

    async def load_facts(self, holder_id: str) -> Facts:
        """Everything a decision about this holder depends on, in one round trip."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_FACTS_SQL, holder_id)
        assert row is not None
        state = row["account_state"]
        return Facts(
            blocked_professionals=frozenset(row["blocked_ids"]),
            blocked_rpps=frozenset(row["blocked_rpps"]),
            oppositions=frozenset(OppositionKind(kind) for kind in row["oppositions"]),
            care_team=tuple(
                CareTeamMember(professional_id=pid, rpps=rpps, organisation_id=org, expire_at=expire)
                for pid, rpps, org, expire in row["care_team"]
            ),
            treating_physician=row["treating_physician"] or "",
            representatives=frozenset(row["representatives"]),
            helpers={person: HelperAccess(access) for person, access in row["helpers"]},
            app_consents={(client, category): AppAccess(access) for client, category, access in row["app_consents"]},
            account_state=AccountState(state) if state else AccountState.UNKNOWN,
        )

    async def person_window(self, holder_id: str) -> tuple[AccountState, datetime | None] | None:
        """The space's state and opposition deadline as identity announced them; None if never heard of."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT state, opposition_deadline FROM persons WHERE holder_id = $1", holder_id
            )
        if row is None:
            return None
        return AccountState(row["state"]), row["opposition_deadline"]

    # ------------------------------------------------------------ oppositions

    async def create_opposition(
        self,
        holder_id: str,
        kind: OppositionKind,
        *,
        channel: str,
        recorded_by: Principal,
        request_id: str = "",
    ) -> tuple[OppositionRecord, bool]:
        """Record an opposition in force and its event; (record, created). A known request_id returns the first."""
        async with self._pool.acquire() as conn, conn.transaction():
            if request_id:
                existing = await conn.fetchrow("SELECT * FROM oppositions WHERE request_id = $1", request_id)
                if existing is not None:
                    return _opposition(existing), False
            try:
                row = await conn.fetchrow(
                    "INSERT INTO oppositions (opposition_id, holder_id, kind, channel, receipt_number, recorded_by,"
                    " request_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                    uuid.uuid4(),
                    holder_id,
                    kind.value,
                    channel,
                    new_receipt_number(),
                    _actor_json(recorded_by),
                    request_id or None,
                )
            except asyncpg.UniqueViolationError as exc:
                if "request_id" in str(exc.constraint_name or ""):
                    raise Conflict("request_id was used for another request", reason="REQUEST_ID_REUSED") from exc
                raise Conflict(
                    f"an opposition of kind {kind.value} is already in force",
                    reason="OPPOSITION_ALREADY_ACTIVE",
                    metadata={"kind": kind.value},
                ) from exc
            assert row is not None
            record = _opposition(row)
            await self._opposition_event(conn, record, recorded_by, record.receipt_number, record.create_time)
        return record, True

    async def opposition_for_request(self, request_id: str) -> OppositionRecord | None:
        """The opposition recorded under this idempotency key, if any."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM oppositions WHERE request_id = $1", request_id)
        return _opposition(row) if row is not None else None

    async def get_opposition(self, opposition_id: str) -> OppositionRecord:
        """The opposition; NotFound OPPOSITION_NOT_FOUND."""
        key = _uuid(opposition_id, "opposition_id", "OPPOSITION_NOT_FOUND", "opposition")
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM oppositions WHERE opposition_id = $1", key)
        if row is None:
            raise NotFound(
                f"no opposition {opposition_id}", reason="OPPOSITION_NOT_FOUND", metadata={"opposition_id": opposition_id}
            )
        return _opposition(row)

    async def list_oppositions(
        self, holder_id: str, *, kind: OppositionKind | None, active: bool | None, limit: int, offset: int
    ) -> list[OppositionRecord]:
        """A holder's oppositions, newest first (limit + 1 rows to tell whether more follow)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM oppositions WHERE holder_id = $1"
                " AND ($2::text IS NULL OR kind = $2)"
                " AND ($3::bool IS NULL OR (withdraw_time IS NULL) = $3)"
                " ORDER BY create_time DESC, opposition_id DESC LIMIT $4 OFFSET $5",
                holder_id,
                kind.value if kind else None,
                active,
                limit + 1,
                offset,
            )
        return [_opposition(row) for row in rows]

    async def withdraw_opposition(self, opposition_id: str, *, withdrawn_by: Principal) -> OppositionRecord:
        """Withdraw an opposition in force with a withdrawal receipt; FailedPrecondition if already withdrawn."""
        key = _uuid(opposition_id, "opposition_id", "OPPOSITION_NOT_FOUND", "opposition")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE oppositions SET withdraw_time = now(), withdrawal_receipt_number = $2, withdrawn_by = $3"
                " WHERE opposition_id = $1 AND withdraw_time IS NULL RETURNING *",
                key,
                new_receipt_number("WDR"),
                _actor_json(withdrawn_by),
            )
            if row is None:
                current = await conn.fetchrow("SELECT 1 FROM oppositions WHERE opposition_id = $1", key)
                if current is None:
                    raise NotFound(
                        f"no opposition {opposition_id}",
                        reason="OPPOSITION_NOT_FOUND",
                        metadata={"opposition_id": opposition_id},
                    )
                raise FailedPrecondition(
                    "the opposition is already withdrawn",
                    reason="OPPOSITION_ALREADY_WITHDRAWN",
                    metadata={"opposition_id": opposition_id},
                )
            record = _opposition(row)
            assert record.withdrawal_receipt_number is not None and record.withdraw_time is not None
            await self._opposition_event(
                conn, record, withdrawn_by, record.withdrawal_receipt_number, record.withdraw_time
            )
        return record

    async def _opposition_event(
        self, conn: asyncpg.Connection, record: OppositionRecord, actor: Principal, receipt: str, when: datetime
    ) -> None:
        event = events_pb2.OppositionChangedEvent(
            event_id=str(uuid.uuid4()),
            opposition_id=record.opposition_id,
            holder_id=record.holder_id,
            kind=resources_pb2.OppositionKind.Value(f"OPPOSITION_KIND_{record.kind.value}"),
            state=resources_pb2.OPPOSITION_STATE_ACTIVE if record.active else resources_pb2.OPPOSITION_STATE_WITHDRAWN,
            receipt_number=receipt,
            actor=actor.to_actor(),
            occur_time=_timestamp(when),
        )
        await self._emit(conn, OPPOSITION_CHANGED, event)

    async def _emit(self, conn: asyncpg.Connection, event_type: str, event: Message) -> None:
        await enqueue(
            conn,
            schema=SCHEMA,
            stream=self.events_stream,
            event_type=event_type,
            payload=event,
            event_id=getattr(event, "event_id", None),
        )

    # ------------------------------------------------------------ blocks

    async def create_block(
        self, holder_id: str, professional_id: str, *, rpps: str, created_by: Principal
    ) -> BlockRecord:
        """Block a professional and emit the event; Conflict BLOCK_ALREADY_EXISTS if already blocked."""
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    "INSERT INTO blocks (block_id, holder_id, professional_id, rpps, created_by)"
                    " VALUES ($1, $2, $3, $4, $5) RETURNING *",
                    uuid.uuid4(),
                    holder_id,
                    professional_id,
                    rpps,
                    _actor_json(created_by),
                )
            except asyncpg.UniqueViolationError as exc:
                raise Conflict(
                    "this professional is already blocked",
                    reason="BLOCK_ALREADY_EXISTS",
                    metadata={"professional_id": professional_id},
                ) from exc
            assert row is not None
            record = _block(row)
            await self._block_event(conn, record, created_by, common_pb2.CHANGE_TYPE_CREATED)
        return record

    async def add_block(self, holder_id: str, professional_id: str, *, rpps: str = "", created_by: Principal) -> str:
        """Block a professional without an event (fixtures); return the block id (the existing one if any)."""
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

    async def record_opposition(
        self, holder_id: str, kind: OppositionKind, *, recorded_by: Principal, channel: str = "ONLINE"
    ) -> str:
        """Record an opposition in force (fixtures); return its receipt number."""
        record, _ = await self.create_opposition(holder_id, kind, channel=channel, recorded_by=recorded_by)
        return record.receipt_number

    async def get_block(self, block_id: str) -> BlockRecord:
        """The block; NotFound BLOCK_NOT_FOUND."""
        key = _uuid(block_id, "block_id", "BLOCK_NOT_FOUND", "block")
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM blocks WHERE block_id = $1", key)
        if row is None:
            raise NotFound(f"no block {block_id}", reason="BLOCK_NOT_FOUND", metadata={"block_id": block_id})
        return _block(row)

    async def list_blocks(self, holder_id: str, *, limit: int, offset: int) -> list[BlockRecord]:
        """A holder's blocks, newest first (limit + 1 rows)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM blocks WHERE holder_id = $1 ORDER BY create_time DESC, block_id DESC LIMIT $2 OFFSET $3",
                holder_id,
                limit + 1,
                offset,
            )
        return [_block(row) for row in rows]

    async def delete_block(self, block_id: str, *, deleted_by: Principal) -> BlockRecord:
        """Unblock and emit the event; NotFound BLOCK_NOT_FOUND."""
        key = _uuid(block_id, "block_id", "BLOCK_NOT_FOUND", "block")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("DELETE FROM blocks WHERE block_id = $1 RETURNING *", key)
            if row is None:
                raise NotFound(f"no block {block_id}", reason="BLOCK_NOT_FOUND", metadata={"block_id": block_id})
            record = _block(row)
            await self._block_event(conn, record, deleted_by, common_pb2.CHANGE_TYPE_DELETED)
        return record

    async def _block_event(
        self, conn: asyncpg.Connection, record: BlockRecord, actor: Principal, change: common_pb2.ChangeType.ValueType
    ) -> None:
        event = events_pb2.BlockChangedEvent(
            event_id=str(uuid.uuid4()),
            block_id=record.block_id,
            holder_id=record.holder_id,
            professional_id=record.professional_id,
            change_type=change,
            actor=actor.to_actor(),
            occur_time=_timestamp(datetime.now(UTC)),
        )
        await self._emit(conn, BLOCK_CHANGED, event)

    # ------------------------------------------------------------ care team

    async def create_authorisation(
        self,
        holder_id: str,
        *,
        professional_id: str,
        rpps: str,
        organisation_id: str,
        origin: str,
        expire_time: datetime | None,
        created_by: Principal,
        request_id: str = "",
    ) -> tuple[CareTeamRecord, bool]:
        """Record a care-team authorisation and its event; (record, created). A known request_id returns the first."""
        async with self._pool.acquire() as conn, conn.transaction():
            if request_id:
                existing = await conn.fetchrow(
                    "SELECT * FROM care_team_authorisations WHERE request_id = $1", request_id
                )
                if existing is not None:
                    return _care_team(existing), False
            row = await conn.fetchrow(
                "INSERT INTO care_team_authorisations (authorisation_id, holder_id, professional_id, rpps,"
                " organisation_id, origin, created_by, expire_time, request_id)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
                uuid.uuid4(),
                holder_id,
                professional_id,
                rpps,
                organisation_id,
                origin,
                _actor_json(created_by),
                expire_time,
                request_id or None,
            )
            assert row is not None
            record = _care_team(row)
            await self._care_team_event(conn, record, created_by, record.create_time)
        return record, True

    async def get_authorisation(self, authorisation_id: str) -> CareTeamRecord:
        """The authorisation; NotFound AUTHORISATION_NOT_FOUND."""
        key = _uuid(authorisation_id, "authorisation_id", "AUTHORISATION_NOT_FOUND", "authorisation")
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM care_team_authorisations WHERE authorisation_id = $1", key)
        if row is None:
            raise NotFound(
                f"no authorisation {authorisation_id}",
                reason="AUTHORISATION_NOT_FOUND",
                metadata={"authorisation_id": authorisation_id},
            )
        return _care_team(row)

    async def list_authorisations(
        self, *, holder_id: str, professional_id: str, state: str, limit: int, offset: int
    ) -> list[CareTeamRecord]:
        """Authorisations of a holder and/or a professional in a state, newest first (limit + 1 rows)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM care_team_authorisations"
                " WHERE ($1 = '' OR holder_id = $1) AND ($2 = '' OR professional_id = $2)"
                " AND CASE $3"
                "   WHEN 'ACTIVE' THEN revoke_time IS NULL AND (expire_time IS NULL OR expire_time > now())"
                "   WHEN 'REVOKED' THEN revoke_time IS NOT NULL"
                "   ELSE revoke_time IS NULL AND expire_time <= now() END"
                " ORDER BY create_time DESC, authorisation_id DESC LIMIT $4 OFFSET $5",
                holder_id,
                professional_id,
                state,
                limit + 1,
                offset,
            )
        return [_care_team(row) for row in rows]

    async def revoke_authorisation(self, authorisation_id: str, *, revoked_by: Principal) -> CareTeamRecord:
        """Mark an authorisation in force revoked and emit the event; FailedPrecondition GRANT_NOT_ACTIVE otherwise."""
        key = _uuid(authorisation_id, "authorisation_id", "AUTHORISATION_NOT_FOUND", "authorisation")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE care_team_authorisations SET revoke_time = now(), revoked_by = $2"
                " WHERE authorisation_id = $1 AND revoke_time IS NULL"
                " AND (expire_time IS NULL OR expire_time > now()) RETURNING *",
                key,
                _actor_json(revoked_by),
            )
            if row is None:
                await self.get_authorisation(authorisation_id)
                raise FailedPrecondition(
                    "the authorisation is not in force",
                    reason="GRANT_NOT_ACTIVE",
                    metadata={"authorisation_id": authorisation_id},
                )
            record = _care_team(row)
            assert record.revoke_time is not None
            await self._care_team_event(conn, record, revoked_by, record.revoke_time)
        return record

    async def _care_team_event(
        self, conn: asyncpg.Connection, record: CareTeamRecord, actor: Principal, when: datetime
    ) -> None:
        event = events_pb2.CareTeamAuthorisationChangedEvent(
            event_id=str(uuid.uuid4()),
            authorisation_id=record.authorisation_id,
            holder_id=record.holder_id,
            professional_id=record.professional_id,
            organisation_id=record.organisation_id,
            origin=resources_pb2.AuthorisationOrigin.Value(f"AUTHORISATION_ORIGIN_{record.origin}"),
            state=resources_pb2.GrantState.Value(f"GRANT_STATE_{record.state(datetime.now(UTC))}"),
            actor=actor.to_actor(),
            occur_time=_timestamp(when),
        )
        await self._emit(conn, CARE_TEAM_CHANGED, event)

    # ------------------------------------------------------------ app consents

    async def create_app_consent(
        self, holder_id: str, client_id: str, data_category: str, access: AppAccess, *, created_by: Principal
    ) -> AppConsentRecord:
        """Record an app consent in force and its event; an earlier one for the same app and category is replaced."""
        async with self._pool.acquire() as conn, conn.transaction():
            previous = await conn.fetch(
                "UPDATE app_consents SET revoke_time = now(), revoked_by = $4"
                " WHERE holder_id = $1 AND client_id = $2 AND data_category = $3 AND revoke_time IS NULL RETURNING *",
                holder_id,
                client_id,
                data_category,
                _actor_json(created_by),
            )
            for row in previous:
                await self._app_consent_event(conn, _app_consent(row))
            row = await conn.fetchrow(
                "INSERT INTO app_consents (app_consent_id, holder_id, client_id, data_category, access, created_by)"
                " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                uuid.uuid4(),
                holder_id,
                client_id,
                data_category,
                access.value,
                _actor_json(created_by),
            )
            assert row is not None
            record = _app_consent(row)
            await self._app_consent_event(conn, record)
        return record

    async def get_app_consent(self, app_consent_id: str) -> AppConsentRecord:
        """The app consent; NotFound APP_CONSENT_NOT_FOUND."""
        key = _uuid(app_consent_id, "app_consent_id", "APP_CONSENT_NOT_FOUND", "app consent")
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM app_consents WHERE app_consent_id = $1", key)
        if row is None:
            raise NotFound(
                f"no app consent {app_consent_id}",
                reason="APP_CONSENT_NOT_FOUND",
                metadata={"app_consent_id": app_consent_id},
            )
        return _app_consent(row)

    async def list_app_consents(
        self, holder_id: str, *, client_id: str, active: bool, limit: int, offset: int
    ) -> list[AppConsentRecord]:
        """A holder's app consents in force (or revoked), newest first (limit + 1 rows)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM app_consents WHERE holder_id = $1 AND ($2 = '' OR client_id = $2)"
                " AND (revoke_time IS NULL) = $3"
                " ORDER BY create_time DESC, app_consent_id DESC LIMIT $4 OFFSET $5",
                holder_id,
                client_id,
                active,
                limit + 1,
                offset,
            )
        return [_app_consent(row) for row in rows]

    async def revoke_app_consent(self, app_consent_id: str, *, revoked_by: Principal) -> AppConsentRecord:
        """Mark an app consent revoked and emit the event; FailedPrecondition GRANT_NOT_ACTIVE if it was."""
        key = _uuid(app_consent_id, "app_consent_id", "APP_CONSENT_NOT_FOUND", "app consent")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE app_consents SET revoke_time = now(), revoked_by = $2"
                " WHERE app_consent_id = $1 AND revoke_time IS NULL RETURNING *",
                key,
                _actor_json(revoked_by),
            )
            if row is None:
                await self.get_app_consent(app_consent_id)
                raise FailedPrecondition(
                    "the app consent is already revoked",
                    reason="GRANT_NOT_ACTIVE",
                    metadata={"app_consent_id": app_consent_id},
                )
            record = _app_consent(row)
            await self._app_consent_event(conn, record)
        return record

    async def _app_consent_event(self, conn: asyncpg.Connection, record: AppConsentRecord) -> None:
        event = events_pb2.AppConsentChangedEvent(
            event_id=str(uuid.uuid4()),
            app_consent_id=record.app_consent_id,
            holder_id=record.holder_id,
            client_id=record.client_id,
            data_category=record.data_category,
            state=resources_pb2.GrantState.Value(f"GRANT_STATE_{record.state}"),
            occur_time=_timestamp(record.revoke_time or record.create_time),
        )
        await self._emit(conn, APP_CONSENT_CHANGED, event)

    # ------------------------------------------------------------ identity facts

    async def _facts_changed(self, conn: asyncpg.Connection, holder_id: str) -> None:
        await enqueue(
            conn, schema=SCHEMA, stream=self.invalidation_stream, event_type=FACTS_CHANGED, payload={"holder_id": holder_id}
        )

    async def set_account_state(
        self,
        conn: asyncpg.Connection,
        holder_id: str,
        state: AccountState,
        deadline: datetime | None,
        when: datetime,
        *,
        tell_replicas: bool = True,
    ) -> None:
        """Remember the space's state (and deadline when given), unless a newer fact is known.

        ``tell_replicas=False`` when decisions cannot change (an enrolment into an open
        state decides like an unknown space), so an import of a million persons does not
        publish a million notices.
        """
        await conn.execute(
            "INSERT INTO persons (holder_id, state, opposition_deadline, occur_time) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (holder_id) DO UPDATE SET state = EXCLUDED.state,"
            " opposition_deadline = COALESCE(EXCLUDED.opposition_deadline, persons.opposition_deadline),"
            " occur_time = EXCLUDED.occur_time WHERE persons.occur_time <= EXCLUDED.occur_time",
            holder_id,
            state.value,
            deadline,
            when,
        )
        if tell_replicas:
            await self._facts_changed(conn, holder_id)

    async def set_treating_physician(
        self, conn: asyncpg.Connection, holder_id: str, professional_id: str, when: datetime
    ) -> None:
        """Remember the treating physician; a block of the new one is lifted (they cannot be blocked)."""
        updated = await conn.fetchval(
            "INSERT INTO treating_physicians (holder_id, professional_id, occur_time) VALUES ($1, $2, $3)"
            " ON CONFLICT (holder_id) DO UPDATE SET professional_id = EXCLUDED.professional_id,"
            " occur_time = EXCLUDED.occur_time WHERE treating_physicians.occur_time <= EXCLUDED.occur_time"
            " RETURNING true",
            holder_id,
            professional_id,
            when,
        )
        if updated and professional_id:
            rows = await conn.fetch(
                "DELETE FROM blocks WHERE holder_id = $1 AND professional_id = $2 RETURNING *", holder_id, professional_id
            )
            for row in rows:
                system = Principal(subject="consent", role="service")
                await self._block_event(conn, _block(row), system, common_pb2.CHANGE_TYPE_DELETED)
        await self._facts_changed(conn, holder_id)

    async def set_representative(
        self, conn: asyncpg.Connection, holder_id: str, representative_id: str, present: bool, when: datetime
    ) -> None:
        """Add or remove a legal representative."""
        if present:
            await conn.execute(
                "INSERT INTO representatives (holder_id, representative_id, occur_time) VALUES ($1, $2, $3)"
                " ON CONFLICT (holder_id, representative_id) DO UPDATE SET occur_time = EXCLUDED.occur_time",
                holder_id,
                representative_id,
                when,
            )
        else:
            await conn.execute(
                "DELETE FROM representatives WHERE holder_id = $1 AND representative_id = $2",
                holder_id,
                representative_id,
            )
        await self._facts_changed(conn, holder_id)

    async def set_helper(
        self, conn: asyncpg.Connection, holder_id: str, helper_id: str, access: HelperAccess | None, when: datetime
    ) -> None:
        """Add, change (``access``) or remove (None) a helper."""
        if access is not None:
            await conn.execute(
                "INSERT INTO helpers (holder_id, helper_person_id, access, occur_time) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (holder_id, helper_person_id) DO UPDATE SET access = EXCLUDED.access,"
                " occur_time = EXCLUDED.occur_time WHERE helpers.occur_time <= EXCLUDED.occur_time",
                holder_id,
                helper_id,
                access.value,
                when,
            )
        else:
            await conn.execute(
                "DELETE FROM helpers WHERE holder_id = $1 AND helper_person_id = $2", holder_id, helper_id
            )
        await self._facts_changed(conn, holder_id)
