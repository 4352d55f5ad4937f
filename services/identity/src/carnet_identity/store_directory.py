"""The directory's SQL: professionals, organisations, software clients, representations, treating physicians.

:class:`DirectoryStore` extends :class:`IdentityStore` (same tables, same connection
handling) and adds the transactional outbox: events are written in the transaction
that makes the change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
from google.protobuf.message import Message

from carnet_identity.domain.directory import Page, RepresentationRecord, TreatingPhysicianRecord
from carnet_identity.domain.model import Organisation, Professional, SoftwareClient
from carnet_identity.settings import SCHEMA
from carnet_identity.store import (
    _CLIENT_COLUMNS,
    _PROFESSIONAL_COLUMNS,
    IdentityStore,
    IssuedAccessToken,
    _client,
    _professional,
)
from carnet_kit.errors import Conflict
from carnet_kit.outbox import enqueue, stream_name

EVENT_STREAM = stream_name("identity")


def _organisation(row: Any) -> Organisation:
    return Organisation(
        id=row["id"],
        finess=row["finess"] or "",
        name=row["name"],
        kind=row["kind"],
        address=row["address"],
        department_code=row["department_code"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _representation(row: Any) -> RepresentationRecord:
    return RepresentationRecord(
        id=row["id"],
        kind=row["kind"],
        holder_id=row["holder_id"],
        representative_id=row["representative_id"],
        relationship=row["relationship"],
        access=row["access"],
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        ended_at=row["ended_at"],
    )


def _like(text: str) -> str:
    """A case-insensitive substring pattern with LIKE's wildcards escaped."""
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class _Where:
    """Builds a WHERE clause with numbered parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def add(self, clause: str, value: Any) -> None:
        self.args.append(value)
        self.clauses.append(clause.replace("?", f"${len(self.args)}"))

    def sql(self) -> str:
        return (" WHERE " + " AND ".join(self.clauses)) if self.clauses else ""

    def page(self, page: Page) -> str:
        self.args.extend([page.limit, page.offset])
        return f" LIMIT ${len(self.args) - 1} OFFSET ${len(self.args)}"


def _ae_conflict(exc: asyncpg.UniqueViolationError) -> Conflict:
    return Conflict(
        "an AE title is already registered to another client",
        reason="AE_TITLE_ALREADY_REGISTERED",
        metadata={"detail": str(exc.detail or "")},
    )


class DirectoryStore(IdentityStore):
    """Identity's store plus the directory's queries and the outbox."""

    @classmethod
    def sharing(cls, store: IdentityStore) -> DirectoryStore:
        """A directory store over the same pool (or connection) as ``store``."""
        return cls(store._db)

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool this store was made with (for the outbox relay)."""
        if not isinstance(self._db, asyncpg.Pool):
            raise TypeError("this store is bound to one connection")
        return self._db

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[DirectoryStore]:
        """A directory store bound to one connection inside a transaction."""
        if isinstance(self._db, asyncpg.Pool):
            async with self._db.acquire() as conn, conn.transaction():
                yield DirectoryStore(conn)
        else:
            async with self._db.transaction():
                yield self

    async def publish(self, event: Message) -> str:
        """Write an identity event to the outbox (inside ``transaction()``); its id is ``event.event_id``."""
        event_id = str(uuid.uuid4())
        event.event_id = event_id  # type: ignore[attr-defined]
        return await enqueue(
            self._db,
            schema=SCHEMA,
            stream=EVENT_STREAM,
            event_type=event.DESCRIPTOR.full_name,
            payload=event,
            event_id=event_id,
        )

    # ---- professionals

    async def list_professionals(
        self, *, profession_code: str, organisation_id: uuid.UUID | None, name_query: str, page: Page
    ) -> tuple[list[Professional], int]:
        """A page of professionals (by name, then id) and the total number of matches."""
        where = _Where()
        if profession_code:
            where.add("f.profession_code = ?", profession_code)
        if organisation_id is not None:
            where.add(
                "EXISTS (SELECT 1 FROM professional_organisations o WHERE o.professional_id = f.id"
                " AND o.organisation_id = ?)",
                organisation_id,
            )
        if name_query.strip():
            where.add(
                "lower(f.birth_name || ' ' || f.used_name || ' ' || array_to_string(f.first_names, ' ')"
                " || ' ' || f.used_first_name) LIKE ?",
                _like(name_query),
            )
        clause = where.sql()
        total: int = await self._db.fetchval(f"SELECT count(*) FROM professionals f{clause}", *where.args)
        rows = await self._db.fetch(
            f"SELECT {_PROFESSIONAL_COLUMNS} FROM professionals f{clause}"
            f" ORDER BY f.birth_name, f.id{where.page(page)}",
            *where.args,
        )
        return [_professional(row) for row in rows], total

    async def update_professional(self, professional: Professional, *, password_hash: str | None = None) -> None:
        """Write a professional's fields and organisations (rank = order given)."""
        await self._db.execute(
            """
            UPDATE professionals SET birth_name = $2, used_name = $3, first_names = $4, used_first_name = $5,
                profession_code = $6, specialty_code = $7, email = $8, mobile_phone = $9, disabled = $10,
                updated_at = $11,
                password_hash = COALESCE($12, password_hash),
                password_updated_at = CASE WHEN $12::text IS NULL THEN password_updated_at ELSE $11 END
             WHERE id = $1
            """,
            professional.id,
            professional.name.birth_name,
            professional.name.used_name,
            list(professional.name.first_names),
            professional.name.used_first_name,
            professional.profession_code,
            professional.specialty_code,
            professional.email,
            professional.mobile_phone,
            professional.disabled,
            professional.updated_at,
            password_hash,
        )
        await self._db.execute("DELETE FROM professional_organisations WHERE professional_id = $1", professional.id)
        await self._db.executemany(
            "INSERT INTO professional_organisations (professional_id, organisation_id, rank) VALUES ($1, $2, $3)",
            [
                (professional.id, organisation_id, rank)
                for rank, organisation_id in enumerate(professional.organisation_ids)
            ],
        )

    # ---- organisations

    async def organisation_by_finess(self, finess: str) -> Organisation | None:
        """An organisation by FINESS number."""
        row = await self._db.fetchrow("SELECT * FROM organisations WHERE finess = $1", finess)
        return _organisation(row) if row else None

    async def missing_organisations(self, organisation_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Those of ``organisation_ids`` that do not exist."""
        if not organisation_ids:
            return []
        found = {
            row["id"]
            for row in await self._db.fetch("SELECT id FROM organisations WHERE id = ANY($1::uuid[])", organisation_ids)
        }
        return [organisation_id for organisation_id in organisation_ids if organisation_id not in found]

    async def list_organisations(
        self, *, kind: str, finess: str, name_query: str, department_code: str, page: Page
    ) -> tuple[list[Organisation], int]:
        """A page of organisations (by name, then id) and the total number of matches."""
        where = _Where()
        if kind:
            where.add("kind = ?", kind)
        if finess:
            where.add("finess = ?", finess)
        if department_code:
            where.add("department_code = ?", department_code)
        if name_query.strip():
            where.add("lower(name) LIKE ?", _like(name_query))
        clause = where.sql()
        total: int = await self._db.fetchval(f"SELECT count(*) FROM organisations{clause}", *where.args)
        rows = await self._db.fetch(
            f"SELECT * FROM organisations{clause} ORDER BY name, id{where.page(page)}", *where.args
        )
        return [_organisation(row) for row in rows], total

    async def update_organisation(self, organisation: Organisation) -> None:
        """Write an organisation's fields."""
        await self._db.execute(
            "UPDATE organisations SET finess = NULLIF($2, ''), name = $3, kind = $4, address = $5,"
            " department_code = $6, updated_at = $7 WHERE id = $1",
            organisation.id,
            organisation.finess,
            organisation.name,
            organisation.kind,
            organisation.address,
            organisation.department_code,
            organisation.updated_at,
        )

    # ---- software clients

    async def ae_titles_owned_by_others(self, client_id: str, ae_titles: Sequence[str]) -> list[str]:
        """Those of ``ae_titles`` registered to another client."""
        if not ae_titles:
            return []
        rows = await self._db.fetch(
            "SELECT ae_title FROM client_ae_titles WHERE ae_title = ANY($1::text[]) AND client_id <> $2"
            " ORDER BY ae_title",
            list(ae_titles),
            client_id,
        )
        return [row["ae_title"] for row in rows]

    async def create_client(self, client: SoftwareClient) -> bool:
        """Register a client and its AE titles; False when the client id exists."""
        try:
            return await self.insert_client(client)
        except asyncpg.UniqueViolationError as exc:
            raise _ae_conflict(exc) from None

    async def list_clients(
        self, *, organisation_id: uuid.UUID | None, kind: str, ae_title: str, scope: str, page: Page
    ) -> tuple[list[SoftwareClient], int]:
        """A page of clients (by id) and the total number of matches."""
        where = _Where()
        if organisation_id is not None:
            where.add("c.organisation_id = ?", organisation_id)
        if kind:
            where.add("c.kind = ?", kind)
        if ae_title:
            where.add(
                "EXISTS (SELECT 1 FROM client_ae_titles t WHERE t.client_id = c.client_id AND t.ae_title = ?)", ae_title
            )
        if scope:
            where.add("c.scopes @> ARRAY[?]::text[]", scope)
        clause = where.sql()
        total: int = await self._db.fetchval(f"SELECT count(*) FROM software_clients c{clause}", *where.args)
        rows = await self._db.fetch(
            f"SELECT {_CLIENT_COLUMNS} FROM software_clients c{clause} ORDER BY c.client_id{where.page(page)}",
            *where.args,
        )
        return [_client(row) for row in rows], total

    async def update_client(self, client: SoftwareClient) -> None:
        """Write a client's fields and replace its AE titles (inside ``transaction()``)."""
        await self._db.execute(
            "UPDATE software_clients SET display_name = $2, organisation_id = $3, scopes = $4, disabled = $5,"
            " updated_at = $6 WHERE client_id = $1",
            client.client_id,
            client.display_name,
            client.organisation_id,
            list(client.scopes),
            client.disabled,
            client.updated_at,
        )
        await self._db.execute(
            "DELETE FROM client_ae_titles WHERE client_id = $1 AND NOT (ae_title = ANY($2::text[]))",
            client.client_id,
            list(client.ae_titles),
        )
        await self._db.executemany(
            "INSERT INTO client_ae_titles (ae_title, client_id) VALUES ($1, $2) ON CONFLICT (ae_title) DO NOTHING",
            [(title, client.client_id) for title in client.ae_titles],
        )
        taken = await self.ae_titles_owned_by_others(client.client_id, client.ae_titles)
        if taken:
            raise Conflict(
                f"AE title(s) already registered to another client: {' '.join(taken)}",
                reason="AE_TITLE_ALREADY_REGISTERED",
                metadata={"ae_titles": " ".join(taken)},
            )

    async def set_client_secret(self, client_id: str, secret_hash: str, now: dt.datetime) -> None:
        """Replace a client's secret hash."""
        await self._db.execute(
            "UPDATE software_clients SET secret_hash = $2, secret_updated_at = $3, updated_at = $3 WHERE client_id = $1",
            client_id,
            secret_hash,
            now,
        )

    async def delete_client(self, client_id: str) -> bool:
        """Remove a client (its AE titles go with it); whether it existed."""
        status: str = await self._db.execute("DELETE FROM software_clients WHERE client_id = $1", client_id)
        return status.endswith(" 1")

    async def record_client_token(
        self, client_id: str, token_id: str, issued_at: dt.datetime, expires_at: dt.datetime
    ) -> None:
        """Remember an access token issued to a client, to revoke it with the client."""
        await self._db.execute(
            "INSERT INTO client_access_tokens (token_id, client_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING",
            token_id,
            client_id,
            issued_at,
            expires_at,
        )

    async def live_client_tokens(self, client_id: str, now: dt.datetime) -> list[IssuedAccessToken]:
        """The client's access tokens that have not expired yet."""
        rows = await self._db.fetch(
            "SELECT token_id, expires_at FROM client_access_tokens WHERE client_id = $1 AND expires_at > $2",
            client_id,
            now,
        )
        return [IssuedAccessToken(row["token_id"], row["expires_at"]) for row in rows]

    async def purge_client_tokens(self, before: dt.datetime) -> int:
        """Forget client tokens that expired before ``before``."""
        status: str = await self._db.execute("DELETE FROM client_access_tokens WHERE expires_at < $1", before)
        return int(status.split()[-1])

    # ---- representations (legal representatives and helpers)

    async def representation_by_id(self, representation_id: uuid.UUID, kind: str) -> RepresentationRecord | None:
        """A legal representation or helper nomination by id."""
        row = await self._db.fetchrow(
            "SELECT * FROM representatives WHERE id = $1 AND kind = $2", representation_id, kind
        )
        return _representation(row) if row else None

    async def current_representation(
        self, kind: str, holder_id: uuid.UUID, representative_id: uuid.UUID
    ) -> RepresentationRecord | None:
        """The not-ended representation of this kind between these two persons."""
        row = await self._db.fetchrow(
            "SELECT * FROM representatives WHERE kind = $1 AND holder_id = $2 AND representative_id = $3"
            " AND ended_at IS NULL",
            kind,
            holder_id,
            representative_id,
        )
        return _representation(row) if row else None

    async def insert_representation_record(self, record: RepresentationRecord) -> None:
        """Record a new representation or nomination."""
        await self._db.execute(
            """
            INSERT INTO representatives (id, kind, holder_id, representative_id, relationship, access, valid_from,
                valid_until, created_by, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
            """,
            record.id,
            record.kind,
            record.holder_id,
            record.representative_id,
            record.relationship,
            record.access,
            record.valid_from,
            record.valid_until,
            record.created_by,
            record.created_at,
        )

    async def update_representation(
        self, representation_id: uuid.UUID, *, access: str, valid_until: dt.datetime | None, now: dt.datetime
    ) -> None:
        """Change a nomination's access and end."""
        await self._db.execute(
            "UPDATE representatives SET access = $2, valid_until = $3, updated_at = $4 WHERE id = $1",
            representation_id,
            access,
            valid_until,
            now,
        )

    async def end_representation(self, representation_id: uuid.UUID, now: dt.datetime) -> None:
        """End a representation or nomination now (it stays in the history)."""
        await self._db.execute(
            "UPDATE representatives SET ended_at = $2, updated_at = $2 WHERE id = $1 AND ended_at IS NULL",
            representation_id,
            now,
        )

    async def lapsed_representations(self, now: dt.datetime, limit: int) -> list[RepresentationRecord]:
        """Representations past their end but not yet marked ended, locked (inside ``transaction()``)."""
        rows = await self._db.fetch(
            "SELECT * FROM representatives WHERE ended_at IS NULL AND valid_until <= $1"
            " ORDER BY valid_until LIMIT $2 FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
        return [_representation(row) for row in rows]

    async def mark_representation_lapsed(self, representation_id: uuid.UUID, ended_at: dt.datetime) -> None:
        """Record that a representation ended at its planned end."""
        await self._db.execute(
            "UPDATE representatives SET ended_at = $2, updated_at = $2 WHERE id = $1 AND ended_at IS NULL",
            representation_id,
            ended_at,
        )

    async def list_representations(
        self,
        *,
        kind: str,
        holder_id: uuid.UUID | None,
        representative_id: uuid.UUID | None,
        include_ended: bool,
        now: dt.datetime,
        page: Page,
    ) -> tuple[list[RepresentationRecord], int]:
        """A page of representations of one kind (oldest first) and the total number of matches.

        Without ``include_ended`` only those in force at ``now`` are listed (a legal
        representation past the holder's 18th birthday is over).
        """
        where = _Where()
        where.add("kind = ?", kind)
        if holder_id is not None:
            where.add("holder_id = ?", holder_id)
        if representative_id is not None:
            where.add("representative_id = ?", representative_id)
        if not include_ended:
            where.add("ended_at IS NULL AND (valid_until IS NULL OR valid_until > ?)", now)
        clause = where.sql()
        total: int = await self._db.fetchval(f"SELECT count(*) FROM representatives{clause}", *where.args)
        rows = await self._db.fetch(
            f"SELECT * FROM representatives{clause} ORDER BY created_at, id{where.page(page)}", *where.args
        )
        return [_representation(row) for row in rows], total

    async def refresh_families_of(self, representative_id: uuid.UUID, holder_id: uuid.UUID) -> list[uuid.UUID]:
        """The live refresh-token families in which ``representative_id`` acts for ``holder_id``."""
        rows = await self._db.fetch(
            "SELECT DISTINCT family_id FROM refresh_tokens WHERE account_kind = 'person' AND account_id = $1"
            " AND acting_for = $2 AND revoked_at IS NULL",
            representative_id,
            holder_id,
        )
        return [row["family_id"] for row in rows]

    # ---- treating physician

    async def treating_physician(self, holder_id: uuid.UUID) -> TreatingPhysicianRecord | None:
        """A holder's treating physician declaration."""
        row = await self._db.fetchrow("SELECT * FROM treating_physicians WHERE holder_id = $1", holder_id)
        if row is None:
            return None
        return TreatingPhysicianRecord(row["holder_id"], row["professional_id"], row["declared_by"], row["declared_at"])

    async def put_treating_physician(self, record: TreatingPhysicianRecord) -> uuid.UUID | None:
        """Declare or replace a holder's treating physician; the previous one's id."""
        previous: uuid.UUID | None = await self._db.fetchval(
            "SELECT professional_id FROM treating_physicians WHERE holder_id = $1 FOR UPDATE", record.holder_id
        )
        await self._db.execute(
            """
            INSERT INTO treating_physicians (holder_id, professional_id, declared_by, declared_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (holder_id) DO UPDATE SET professional_id = EXCLUDED.professional_id,
                declared_by = EXCLUDED.declared_by, declared_at = EXCLUDED.declared_at
            """,
            record.holder_id,
            record.professional_id,
            record.declared_by,
            record.declared_at,
        )
        return previous

    async def delete_treating_physician(self, holder_id: uuid.UUID) -> uuid.UUID | None:
        """Withdraw a holder's declaration; the professional it named, or None when there was none."""
        value: uuid.UUID | None = await self._db.fetchval(
            "DELETE FROM treating_physicians WHERE holder_id = $1 RETURNING professional_id", holder_id
        )
        return value
