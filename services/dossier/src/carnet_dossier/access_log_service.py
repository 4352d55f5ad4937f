"""Use cases of the access log: the holder reads it and checks it; services write to it.

Who may do what:

- list: the holder, and those consent lets read the holder's access log (their legal
  representatives, their helpers); nobody else — professionals see their own actions in
  their own software, operators check integrity without reading;
- verify: the same, plus operators and services (the answer holds no entry);
- create: services only (imaging, notify, consent record the accesses they serve); the
  recorded ``service`` is the caller's own name from its token, never the request's.
"""

from __future__ import annotations

import uuid

import asyncpg

from carnet.consent.v1 import resources_pb2 as consent_pb
from carnet_dossier import access_log
from carnet_dossier.access_log import Entry, EntryFilter, NewEntry, Verification
from carnet_dossier.peers import ConsentClient, ItemFacts
from carnet_kit.auth import Principal
from carnet_kit.errors import InvalidArgument, PermissionDenied

READERS = frozenset({"holder", "representative", "helper"})
CHECKERS = READERS | {"operator", "service"}


class AccessLogService:
    """Reading, checking and appending to holders' access logs."""

    def __init__(self, pool: asyncpg.Pool, consent: ConsentClient) -> None:
        self._pool = pool
        self._consent = consent

    async def _ensure_may_read(self, principal: Principal, holder_id: uuid.UUID) -> None:
        if principal.role not in READERS:
            raise PermissionDenied(
                "only the holder and those acting for them read an access log", reason="ACCESS_LOG_HOLDER_ONLY"
            )
        decision = await self._consent.decide(
            principal, str(holder_id), consent_pb.ACTION_READ, ItemFacts(kind=consent_pb.ITEM_KIND_ACCESS_LOG)
        )
        if not decision.allowed:
            raise PermissionDenied(
                f"consent refused this access ({decision.reason_code})", reason=decision.reason_code or "ACCESS_DENIED"
            )

    async def list(
        self, principal: Principal, holder_id: uuid.UUID, filters: EntryFilter, page_token: str, page_size: int
    ) -> tuple[list[Entry], str, int]:
        """A page of the holder's entries, newest first; next page token; number of matches."""
        below = access_log.decode_sequence_token(page_token)
        await self._ensure_may_read(principal, holder_id)
        return await access_log.list_entries(self._pool, holder_id, filters, below, page_size)

    async def verify(self, principal: Principal, holder_id: uuid.UUID) -> Verification:
        """Walk the holder's chain."""
        if principal.role not in CHECKERS:
            raise PermissionDenied("this caller may not check an access log", reason="CALLER_NOT_ALLOWED")
        if principal.role in READERS:
            await self._ensure_may_read(principal, holder_id)
        return await access_log.verify(self._pool, holder_id)

    async def create(
        self, principal: Principal, new: NewEntry, *, notify_holder: bool, notify_treating_physician: bool
    ) -> Entry:
        """Append an entry a service reports; obligations to tell raise an alert event."""
        if principal.role != "service":
            raise PermissionDenied("only a service records accesses", reason="CALLER_NOT_ALLOWED")
        if not new.actor.get("subject"):
            raise InvalidArgument("entry.actor.subject is required", field="entry.actor.subject")
        if not new.action or new.action == "ACTION_UNSPECIFIED":
            raise InvalidArgument("entry.action is required", field="entry.action")
        if new.outcome not in access_log.OUTCOMES:
            raise InvalidArgument("entry.outcome is required", field="entry.outcome")
        return await access_log.append(
            self._pool,
            NewEntry(**{**new.__dict__, "service": principal.subject}),
            notify_holder=notify_holder,
            notify_treating_physician=notify_treating_physician,
        )
