"""Who acts for a holder, and their treating physician.

- Legal representatives of minors (recorded by an operator from civil-status
  evidence): access ends at the holder's 18th birthday, stored as the end of the
  representation and re-checked at every token refresh.
- Helpers, chosen by the holder, read-only or full; tokens carry ``space.read`` or
  ``space.read space.write``. Ending or narrowing a nomination revokes the helper's
  sessions for that holder at once.
- The treating physician (médecin traitant), declared by the holder; a doctor only.

Each change is written with its event (consent keeps cached facts from them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from google.protobuf import timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import events_pb2, resources_pb2
from carnet_identity.directory import Listing, mask_paths
from carnet_identity.domain.directory import (
    HELPER_ACCESS_LEVELS,
    OPERATOR,
    SERVICE,
    RepresentationRecord,
    TreatingPhysicianRecord,
    acts_for,
    caller_not_allowed,
    ensure_is_doctor,
    ensure_may_declare_treating_physician,
    ensure_may_manage_helpers,
    ensure_may_manage_legal_representatives,
    legal_representation_end,
    next_page_token,
    page_of,
    parse_id,
)
from carnet_identity.domain.identifiers import normalise_rpps
from carnet_identity.domain.model import Person, Professional
from carnet_identity.keys import utcnow
from carnet_identity.sessions import SessionService
from carnet_identity.store_directory import DirectoryStore
from carnet_kit.auth import Principal
from carnet_kit.errors import Conflict, InvalidArgument, NotFound

log = logging.getLogger(__name__)

LEGAL = "legal"
HELPER = "helper"
RELATIONSHIPS = ("parent", "guardian")
HELPER_MUTABLE = frozenset({"access", "end_time"})


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def actor_record(caller: Principal) -> dict[str, str]:
    """Who made a change, as stored with it."""
    return {
        key: value
        for key, value in (("subject", caller.subject), ("role", caller.role), ("acting_for", caller.acting_for))
        if value
    }


def _may_list(caller: Principal, holder_id: uuid.UUID | None, person_id: uuid.UUID | None) -> None:
    """Services and operators list anything; others only their own side (as holder, or as the delegate)."""
    if caller.role in (OPERATOR, SERVICE):
        return
    if holder_id is not None and acts_for(caller, holder_id, write=False):
        return
    if (
        person_id is not None
        and caller.role in ("holder", "representative", "helper")
        and caller.subject == str(person_id)
    ):
        return
    raise caller_not_allowed("you may only list your own representations")


@dataclasses.dataclass(frozen=True)
class TreatingPhysicianView:
    """A declaration with the physician it names."""

    record: TreatingPhysicianRecord
    professional: Professional


class RepresentationService:
    """Legal representatives, helpers and treating physicians."""

    def __init__(
        self, store: DirectoryStore, sessions: SessionService, *, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._clock = clock

    async def _person(self, person_id: uuid.UUID) -> Person:
        person = await self._store.person_by_id(person_id)
        if person is None:
            raise NotFound("no such person", reason="PERSON_NOT_FOUND", metadata={"person_id": str(person_id)})
        return person

    async def _end_sessions(self, tx: DirectoryStore, record: RepresentationRecord, now: dt.datetime) -> list[Any]:
        revoked = []
        for family in await tx.refresh_families_of(record.representative_id, record.holder_id):
            revoked.extend(await tx.revoke_family(family, now, "representation ended"))
        return revoked

    # ---- legal representatives

    async def create_legal_representative(
        self,
        caller: Principal,
        *,
        holder_id: str,
        representative_id: str,
        relationship: str,
        end_time: dt.datetime | None,
    ) -> RepresentationRecord:
        """Record a legal representative of a minor, until the 18th birthday (HOLDER_NOT_MINOR for an adult)."""
        ensure_may_manage_legal_representatives(caller)
        holder = await self._person(parse_id(holder_id, "holder_id"))
        representative = await self._person(parse_id(representative_id, "representative_id"))
        if holder.id == representative.id:
            raise InvalidArgument(
                "a person does not represent themself", field="representative_id", reason="FIELD_INVALID"
            )
        if relationship not in RELATIONSHIPS:
            raise InvalidArgument("relationship is parent or guardian", field="relationship", reason="FIELD_INVALID")
        now = self._clock()
        valid_until = legal_representation_end(holder.birth_date, now.date(), end_time)
        if valid_until <= now:
            raise InvalidArgument("end_time is in the past", field="end_time", reason="FIELD_INVALID")
        async with self._store.transaction() as tx:
            existing = await tx.current_representation(LEGAL, holder.id, representative.id)
            if existing is not None and existing.in_force(now):
                return existing
            if existing is not None:
                await tx.end_representation(existing.id, now)
            record = RepresentationRecord(
                id=uuid.uuid4(),
                kind=LEGAL,
                holder_id=holder.id,
                representative_id=representative.id,
                relationship=relationship,
                access="full",
                valid_from=now,
                valid_until=valid_until,
                created_by=actor_record(caller),
                created_at=now,
                updated_at=now,
                ended_at=None,
            )
            await tx.insert_representation_record(record)
            await self._publish_legal(tx, record, common_pb2.CHANGE_TYPE_CREATED, now)
        return record

    @staticmethod
    async def _publish_legal(
        tx: DirectoryStore, record: RepresentationRecord, change: common_pb2.ChangeType.ValueType, now: dt.datetime
    ) -> None:
        await tx.publish(
            events_pb2.LegalRepresentativeChangedEvent(
                legal_representative_id=str(record.id),
                holder_id=str(record.holder_id),
                representative_id=str(record.representative_id),
                change_type=change,
                occur_time=_timestamp(now),
            )
        )

    async def list_legal_representatives(
        self,
        caller: Principal,
        *,
        holder_id: str,
        representative_id: str,
        include_ended: bool,
        page_size: int,
        page_token: str,
    ) -> Listing[RepresentationRecord]:
        """Representations of a minor, or those a person holds (in force unless ``include_ended``)."""
        return await self._list(
            caller, LEGAL, holder_id, representative_id, "representative_id", include_ended, page_size, page_token
        )

    async def _list(
        self,
        caller: Principal,
        kind: str,
        holder_id: str,
        person_id: str,
        person_field: str,
        include_ended: bool,
        page_size: int,
        page_token: str,
    ) -> Listing[RepresentationRecord]:
        holder = parse_id(holder_id, "holder_id") if holder_id else None
        person = parse_id(person_id, person_field) if person_id else None
        _may_list(caller, holder, person)
        filters = f"{kind}|{holder_id}|{person_id}|{include_ended}"
        page = page_of(page_size, page_token, filters)
        items, total = await self._store.list_representations(
            kind=kind,
            holder_id=holder,
            representative_id=person,
            include_ended=include_ended,
            now=self._clock(),
            page=page,
        )
        return Listing(items, next_page_token(page, len(items), total, filters), total)

    async def delete_legal_representative(self, caller: Principal, legal_representative_id: str) -> None:
        """End a legal representation now; the representative's sessions for the minor end with it."""
        ensure_may_manage_legal_representatives(caller)
        wanted = parse_id(legal_representative_id, "legal_representative_id")
        await self._end(wanted, LEGAL)

    async def _end(self, representation_id: uuid.UUID, kind: str, caller: Principal | None = None) -> None:
        now = self._clock()
        async with self._store.transaction() as tx:
            record = await tx.representation_by_id(representation_id, kind)
            if record is None or record.ended_at is not None:
                raise NotFound("no such representation", reason="REPRESENTATION_NOT_FOUND")
            if caller is not None and caller.subject != str(record.representative_id):
                ensure_may_manage_helpers(caller, record.holder_id)
            await tx.end_representation(record.id, now)
            revoked = await self._end_sessions(tx, record, now)
            if kind == LEGAL:
                await self._publish_legal(tx, record, common_pb2.CHANGE_TYPE_DELETED, now)
            else:
                await self._publish_helper(tx, record, common_pb2.CHANGE_TYPE_DELETED, now)
        await self._sessions.revoke_access_tokens(revoked)

    async def end_lapsed(self, batch_size: int = 500) -> int:
        """Mark representations past their end (a minor's 18th birthday, a helper's end) as ended, with their events.

        Access already stops at that moment (tokens are checked against the end); this
        tells consent, whose cached facts would otherwise still list the representative.
        """
        now = self._clock()
        async with self._store.transaction() as tx:
            lapsed = await tx.lapsed_representations(now, batch_size)
            for record in lapsed:
                ended_at = record.valid_until or now
                await tx.mark_representation_lapsed(record.id, ended_at)
                if record.kind == LEGAL:
                    await self._publish_legal(tx, record, common_pb2.CHANGE_TYPE_DELETED, now)
                else:
                    await self._publish_helper(tx, record, common_pb2.CHANGE_TYPE_DELETED, now)
        return len(lapsed)

    # ---- helpers

    async def create_helper(
        self,
        caller: Principal,
        *,
        holder_id: str,
        helper_person_id: str,
        access: str,
        start_time: dt.datetime | None,
        end_time: dt.datetime | None,
    ) -> RepresentationRecord:
        """Nominate a helper, read-only or full (the holder's choice)."""
        holder_uuid = parse_id(holder_id, "holder_id")
        ensure_may_manage_helpers(caller, holder_uuid)
        holder = await self._person(holder_uuid)
        helper = await self._person(parse_id(helper_person_id, "helper_person_id"))
        if holder.id == helper.id:
            raise InvalidArgument("a holder does not help themself", field="helper_person_id", reason="FIELD_INVALID")
        if access not in HELPER_ACCESS_LEVELS:
            raise InvalidArgument("access is read-only or full", field="access", reason="FIELD_INVALID")
        now = self._clock()
        valid_from = max(start_time, now) if start_time is not None else now
        if end_time is not None and end_time <= valid_from:
            raise InvalidArgument("end_time must come after the start", field="end_time", reason="FIELD_INVALID")
        async with self._store.transaction() as tx:
            existing = await tx.current_representation(HELPER, holder.id, helper.id)
            if existing is not None and existing.in_force(now):
                raise Conflict(
                    "this person already helps the holder; change the nomination instead",
                    reason="HELPER_ALREADY_NOMINATED",
                    metadata={"helper_id": str(existing.id)},
                )
            if existing is not None:
                await tx.end_representation(existing.id, now)
            record = RepresentationRecord(
                id=uuid.uuid4(),
                kind=HELPER,
                holder_id=holder.id,
                representative_id=helper.id,
                relationship="",
                access=access,
                valid_from=valid_from,
                valid_until=end_time,
                created_by=actor_record(caller),
                created_at=now,
                updated_at=now,
                ended_at=None,
            )
            await tx.insert_representation_record(record)
            await self._publish_helper(tx, record, common_pb2.CHANGE_TYPE_CREATED, now)
        return record

    @staticmethod
    async def _publish_helper(
        tx: DirectoryStore, record: RepresentationRecord, change: common_pb2.ChangeType.ValueType, now: dt.datetime
    ) -> None:
        await tx.publish(
            events_pb2.HelperChangedEvent(
                helper_id=str(record.id),
                holder_id=str(record.holder_id),
                helper_person_id=str(record.representative_id),
                access=resources_pb2.HELPER_ACCESS_FULL
                if record.access == "full"
                else resources_pb2.HELPER_ACCESS_READ_ONLY,
                change_type=change,
                occur_time=_timestamp(now),
            )
        )

    async def list_helpers(
        self, caller: Principal, *, holder_id: str, helper_person_id: str, page_size: int, page_token: str
    ) -> Listing[RepresentationRecord]:
        """A holder's helpers, or the nominations of a person as helper (current ones)."""
        return await self._list(
            caller, HELPER, holder_id, helper_person_id, "helper_person_id", False, page_size, page_token
        )

    async def update_helper(
        self, caller: Principal, helper_id: str, fields: Mapping[str, Any], paths: Sequence[str]
    ) -> RepresentationRecord:
        """Change a helper's access or end; narrowing it ends the helper's current sessions for the holder."""
        wanted = parse_id(helper_id, "helper.helper_id")
        named = mask_paths(paths, HELPER_MUTABLE)
        now = self._clock()
        revoked: list[Any] = []
        async with self._store.transaction() as tx:
            record = await tx.representation_by_id(wanted, HELPER)
            if record is None or record.ended_at is not None:
                raise NotFound("no such helper", reason="REPRESENTATION_NOT_FOUND")
            ensure_may_manage_helpers(caller, record.holder_id)
            access = record.access
            if "access" in named:
                access = str(fields["access"])
                if access not in HELPER_ACCESS_LEVELS:
                    raise InvalidArgument("access is read-only or full", field="access", reason="FIELD_INVALID")
            valid_until = fields.get("end_time") if "end_time" in named else record.valid_until
            if valid_until is not None and valid_until <= record.valid_from:
                raise InvalidArgument("end_time must come after the start", field="end_time", reason="FIELD_INVALID")
            await tx.update_representation(record.id, access=access, valid_until=valid_until, now=now)
            updated = dataclasses.replace(record, access=access, valid_until=valid_until, updated_at=now)
            narrowed = (record.access == "full" and access == "read_only") or (
                valid_until is not None and valid_until <= now
            )
            if narrowed:
                revoked = await self._end_sessions(tx, record, now)
            await self._publish_helper(tx, updated, common_pb2.CHANGE_TYPE_UPDATED, now)
        await self._sessions.revoke_access_tokens(revoked)
        return updated

    async def delete_helper(self, caller: Principal, helper_id: str) -> None:
        """End a nomination (the holder, or the helper stepping down); the helper's sessions end with it."""
        await self._end(parse_id(helper_id, "helper_id"), HELPER, caller)

    # ---- treating physician

    async def declare_treating_physician(
        self, caller: Principal, *, holder_id: str, professional_id: str, rpps: str
    ) -> TreatingPhysicianView:
        """Declare or replace the holder's treating physician, who must be a doctor (profession 10)."""
        holder_uuid = parse_id(holder_id, "holder_id")
        ensure_may_declare_treating_physician(caller, holder_uuid)
        holder = await self._person(holder_uuid)
        if professional_id:
            professional = await self._store.professional_by_id(parse_id(professional_id, "professional_id"))
        elif rpps:
            professional = await self._store.professional_by_rpps(normalise_rpps(rpps))
        else:
            raise InvalidArgument(
                "name the physician by professional_id or rpps", field="physician", reason="FIELD_INVALID"
            )
        if professional is None:
            raise NotFound("no such professional", reason="PROFESSIONAL_NOT_FOUND")
        ensure_is_doctor(professional.profession_code)
        now = self._clock()
        record = TreatingPhysicianRecord(holder.id, professional.id, actor_record(caller), now)
        async with self._store.transaction() as tx:
            previous = await tx.put_treating_physician(record)
            if previous != professional.id:
                await self._publish_physician(tx, holder.id, professional.id, previous, now)
        return TreatingPhysicianView(record, professional)

    @staticmethod
    async def _publish_physician(
        tx: DirectoryStore,
        holder_id: uuid.UUID,
        professional_id: uuid.UUID | None,
        previous: uuid.UUID | None,
        now: dt.datetime,
    ) -> None:
        await tx.publish(
            events_pb2.TreatingPhysicianChangedEvent(
                holder_id=str(holder_id),
                professional_id=str(professional_id) if professional_id else "",
                previous_professional_id=str(previous) if previous else "",
                occur_time=_timestamp(now),
            )
        )

    async def get_treating_physician(self, caller: Principal, holder_id: str) -> TreatingPhysicianView:
        """The declaration (the holder and who acts for them, services, operators, the physician named)."""
        holder = parse_id(holder_id, "holder_id")
        allowed = caller.role in (OPERATOR, SERVICE) or acts_for(caller, holder, write=False)
        record = await self._store.treating_physician(holder)
        if not allowed and not (
            record is not None and caller.role == "professional" and caller.subject == str(record.professional_id)
        ):
            raise caller_not_allowed("you may not read this holder's treating physician")
        if record is None:
            raise NotFound("no treating physician is declared", reason="REPRESENTATION_NOT_FOUND")
        professional = await self._store.professional_by_id(record.professional_id)
        assert professional is not None  # foreign key
        return TreatingPhysicianView(record, professional)

    async def delete_treating_physician(self, caller: Principal, holder_id: str) -> None:
        """Withdraw the declaration."""
        holder = parse_id(holder_id, "holder_id")
        ensure_may_declare_treating_physician(caller, holder)
        now = self._clock()
        async with self._store.transaction() as tx:
            previous = await tx.delete_treating_physician(holder)
            if previous is None:
                raise NotFound("no treating physician is declared", reason="REPRESENTATION_NOT_FOUND")
            await self._publish_physician(tx, holder, None, previous, now)


REPRESENTATION_SWEEP_INTERVAL_SECONDS = 300.0


def representation_sweeper(
    service: RepresentationService, interval: float = REPRESENTATION_SWEEP_INTERVAL_SECONDS
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background loop ending lapsed representations (18th birthdays, helpers' ends)."""

    async def run() -> None:
        while True:
            try:
                while await service.end_lapsed() > 0:
                    pass
            except Exception:
                log.exception("ending lapsed representations failed; will retry")
            await asyncio.sleep(interval)

    return run
