"""The AE registry: which DICOM application entities may talk to Carnet, and where C-MOVE sends.

Every AE is bound to a software client of identity that lists the AE title as its own
(checked with identity when the AE is registered or changed). The DICOM server accepts an
association only from a registered calling AE title; each process keeps the registry in
memory (:class:`CallingAeTitles`), reloads it every ``CARNET_AE_REFRESH_SECONDS`` and at
once after a change it made itself.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from carnet_imaging.peers import IdentityDirectory
from carnet_imaging.settings import check_ae_title
from carnet_kit.auth import Principal
from carnet_kit.config import ConfigError
from carnet_kit.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

UPDATABLE = frozenset({"host", "port", "move_destination", "local_issuer_of_patient_id", "description", "client_id"})


@dataclasses.dataclass(frozen=True)
class AeRecord:
    """A registered application entity."""

    application_entity_id: uuid.UUID
    ae_title: str
    client_id: str
    host: str
    port: int | None
    move_destination: bool
    local_issuer_of_patient_id: str
    description: str
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "application_entity_id, ae_title, client_id, host, port, move_destination, local_issuer_of_patient_id,"
    " description, created_at, updated_at"
)


def _record(row: Mapping[str, object]) -> AeRecord:
    return AeRecord(**dict(row))  # type: ignore[arg-type]


def ae_title_of(value: str, field: str = "application_entity.ae_title") -> str:
    """A valid AE title (surrounding spaces are not significant in DICOM); INVALID_ARGUMENT otherwise."""
    title = value.strip()
    try:
        return check_ae_title(title, field)
    except ConfigError:
        raise InvalidArgument(
            "an AE title is 1 to 16 ASCII characters without backslash", field=field, reason="AE_TITLE_INVALID"
        ) from None


def _check_network(host: str, port: int | None, move_destination: bool) -> None:
    if host:
        if len(host) > 253 or any(ch.isspace() for ch in host):
            raise InvalidArgument("host is not a host name or address", field="application_entity.host",
                                  reason="FIELD_INVALID")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            labels = host.rstrip(".").split(".")
            if not all(label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels):
                raise InvalidArgument("host is not a host name or address", field="application_entity.host",
                                      reason="FIELD_INVALID") from None
    if port is not None and not 1 <= port <= 65535:
        raise InvalidArgument("port must be 1-65535", field="application_entity.port", reason="FIELD_INVALID")
    if move_destination and (not host or port is None):
        raise InvalidArgument(
            "a C-MOVE destination needs a host and a port", field="application_entity.host", reason="FIELD_INVALID"
        )


def require_operator(caller: Principal) -> None:
    """The registry is operators' work."""
    if caller.role != "operator":
        raise PermissionDenied("only an operator may change the AE registry", reason="CALLER_NOT_ALLOWED")


class CallingAeTitles:
    """The registered AE titles and their records, shared with the DICOM server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_title: dict[str, AeRecord] = {}

    def replace(self, records: Sequence[AeRecord]) -> None:
        """Install a fresh copy of the registry."""
        fresh = {record.ae_title: record for record in records}
        with self._lock:
            self._by_title = fresh

    def get(self, title: str) -> AeRecord | None:
        """The record of a calling AE title (spaces around it ignored)."""
        with self._lock:
            return self._by_title.get(title.strip())

    def titles(self) -> list[str]:
        """Every registered title."""
        with self._lock:
            return list(self._by_title)


class AeRegistry:
    """The ``application_entities`` table and the rules of the registry."""

    def __init__(self, pool: asyncpg.Pool, identity: IdentityDirectory, known: CallingAeTitles) -> None:
        self._pool = pool
        self._identity = identity
        self.known = known

    async def refresh(self) -> None:
        """Reload the registry into :attr:`known`."""
        rows = await self._pool.fetch(f"SELECT {_COLUMNS} FROM application_entities")
        self.known.replace([_record(row) for row in rows])

    async def _check_owner(self, client_id: str, title: str) -> None:
        client = await self._identity.client(client_id)
        if client is None:
            raise NotFound(
                f"identity knows no software client {client_id!r}",
                reason="CLIENT_NOT_FOUND",
                metadata={"field": "application_entity.client_id"},
            )
        if title not in client.ae_titles:
            raise FailedPrecondition(
                f"identity does not list {title} among the AE titles of {client_id}",
                reason="AE_TITLE_NOT_OWNED_BY_CLIENT",
                metadata={"ae_title": title, "client_id": client_id},
            )

    async def create(
        self,
        caller: Principal,
        *,
        ae_title: str,
        client_id: str,
        host: str,
        port: int | None,
        move_destination: bool,
        local_issuer_of_patient_id: str,
        description: str,
    ) -> AeRecord:
        """Register an AE for a client that owns its title."""
        require_operator(caller)
        title = ae_title_of(ae_title)
        if not client_id.strip():
            raise InvalidArgument("client_id is required", field="application_entity.client_id",
                                  reason="FIELD_INVALID")
        _check_network(host.strip(), port, move_destination)
        await self._check_owner(client_id.strip(), title)
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO application_entities (ae_title, client_id, host, port, move_destination,"
                f" local_issuer_of_patient_id, description) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
                title,
                client_id.strip(),
                host.strip(),
                port,
                move_destination,
                local_issuer_of_patient_id.strip(),
                description.strip(),
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"{title} is already registered", reason="AE_TITLE_ALREADY_REGISTERED",
                                metadata={"ae_title": title}) from None
        await self.refresh()
        return _record(row)

    async def get(self, application_entity_id: str) -> AeRecord:
        """One AE by id."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM application_entities WHERE application_entity_id = $1",
            _ae_id(application_entity_id),
        )
        if row is None:
            raise NotFound("no such application entity", reason="APPLICATION_ENTITY_NOT_FOUND")
        return _record(row)

    async def list(
        self, *, client_id: str, ae_title: str, after: str, limit: int
    ) -> list[AeRecord]:
        """AEs ordered by title, after the title ``after``."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM application_entities WHERE ($1 = '' OR client_id = $1)"
            " AND ($2 = '' OR ae_title = $2) AND ae_title > $3 ORDER BY ae_title LIMIT $4",
            client_id.strip(),
            ae_title.strip(),
            after,
            limit,
        )
        return [_record(row) for row in rows]

    async def update(self, caller: Principal, application_entity_id: str, changes: Mapping[str, object]) -> AeRecord:
        """Change the fields named in ``changes`` (the title itself never changes: register another AE)."""
        require_operator(caller)
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise InvalidArgument(f"cannot change {', '.join(sorted(unknown))}", field="update_mask",
                                  reason="FIELD_INVALID")
        current = await self.get(application_entity_id)
        merged = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
        _check_network(merged.host, merged.port, merged.move_destination)
        if merged.client_id != current.client_id:
            await self._check_owner(merged.client_id, merged.ae_title)
        row = await self._pool.fetchrow(
            "UPDATE application_entities SET client_id = $2, host = $3, port = $4, move_destination = $5,"
            " local_issuer_of_patient_id = $6, description = $7, updated_at = now()"
            f" WHERE application_entity_id = $1 RETURNING {_COLUMNS}",
            current.application_entity_id,
            merged.client_id,
            merged.host,
            merged.port,
            merged.move_destination,
            merged.local_issuer_of_patient_id,
            merged.description,
        )
        if row is None:
            raise NotFound("no such application entity", reason="APPLICATION_ENTITY_NOT_FOUND")
        await self.refresh()
        return _record(row)

    async def delete(self, caller: Principal, application_entity_id: str) -> None:
        """Remove an AE: associations from it are rejected from then on."""
        require_operator(caller)
        done = await self._pool.execute(
            "DELETE FROM application_entities WHERE application_entity_id = $1", _ae_id(application_entity_id)
        )
        if done == "DELETE 0":
            raise NotFound("no such application entity", reason="APPLICATION_ENTITY_NOT_FOUND")
        await self.refresh()


def _ae_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidArgument("application_entity_id is not an id", field="application_entity_id",
                              reason="FIELD_INVALID") from None
