"""Use cases of the medical profile: create, read, list, change, delete entries; their history.

Every call asks consent (item kind PROFILE_ENTRY, the entry kind's access-matrix class,
its author's RPPS and whether it is hidden from professionals) and writes the access log;
a refusal is logged too and answered PERMISSION_DENIED with consent's reason. Each
create, update and delete writes the entry, its revision and its access-log entry in one
transaction. The BMI is a derived entry (source DERIVED) that follows the holder's
latest weight and height in the same transaction as the change of either.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import asyncpg
from google.protobuf.message import Message

from carnet.consent.v1 import resources_pb2 as consent_pb
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier import access_log
from carnet_dossier import profile_store as store
from carnet_dossier.access_log import NewEntry
from carnet_dossier.peers import ConsentClient, ItemFacts
from carnet_dossier.profile import (
    KINDS,
    EntryFilter,
    ProfileEntryRecord,
    Visibility,
    apply_update,
    changes_as_author,
    check_filter,
    check_kind,
    check_update_mask,
    decode_entries_token,
    decode_revisions_token,
    derived_bmi,
    effective_time,
    encode_entries_token,
    encode_revisions_token,
    ensure_may_change,
    ensure_may_delete,
    entry_label,
    measurement_type,
    query_fingerprint,
    source_of,
    validate_value,
    value_json,
    value_message,
)
from carnet_dossier.profile_store import Revision
from carnet_dossier.protoconv import actor_record as _actor
from carnet_kit.auth import Principal
from carnet_kit.errors import Conflict, NotFound, PermissionDenied

ITEM_KIND = "ITEM_KIND_PROFILE_ENTRY"
BMI_INPUTS = frozenset({"WEIGHT", "HEIGHT"})



def item_facts(record: ProfileEntryRecord) -> ItemFacts:
    """What consent is told of an entry."""
    return ItemFacts(
        kind=consent_pb.ITEM_KIND_PROFILE_ENTRY,
        document_class=KINDS[record.kind].matrix_class,
        author_rpps=record.author_rpps,
        author_organisation_id="" if record.source == "DERIVED" else str(record.created_by.get("organisation_id", "")),
        hidden_from_professionals=record.hidden_from_professionals,
    )


def _affects_bmi(record: ProfileEntryRecord) -> bool:
    return record.kind == "MEASUREMENT" and record.source != "DERIVED" and record.measurement_type in BMI_INPUTS


def _requester(principal: Principal) -> str:
    return f"{principal.role}:{principal.subject}:{principal.client_id}:{principal.acting_for}"


def _conflict(error: asyncpg.UniqueViolationError, kind: str) -> Conflict | None:
    """The conflict a unique index of the profile means (None for any other)."""
    if error.constraint_name == store.ONE_PER_HOLDER_INDEX:
        return Conflict(
            f"the holder already has a {KINDS[kind].label} entry; change it instead",
            reason="PROFILE_ENTRY_EXISTS",
            metadata={"kind": kind},
        )
    if error.constraint_name == store.TRUSTED_PERSON_INDEX:
        return Conflict(
            "another person to contact is already the trusted person; change that entry first",
            reason="TRUSTED_PERSON_EXISTS",
        )
    return None


@dataclasses.dataclass(frozen=True)
class ProposedEntry:
    """What a create asks for: the holder, the kind (name, "" when unset) and its value."""

    holder_id: uuid.UUID
    kind: str
    value_field: str | None
    value: Message | None
    hidden_from_professionals: bool = False


@dataclasses.dataclass(frozen=True)
class ProfilePage:
    """One page of a profile listing."""

    entries: list[ProfileEntryRecord]
    next_page_token: str
    total_size: int


@dataclasses.dataclass(frozen=True)
class RevisionPage:
    """One page of an entry's history, newest first."""

    revisions: list[Revision]
    next_page_token: str


class ProfileService:
    """The medical profile's use cases."""

    def __init__(self, pool: asyncpg.Pool, consent: ConsentClient) -> None:
        self._pool = pool
        self._consent = consent

    # ---- consent and the access log

    async def _decide(
        self,
        principal: Principal,
        holder_id: uuid.UUID,
        action: int,
        facts: ItemFacts,
        *,
        operation: str,
        item_id: str = "",
        item_label: str = "",
    ) -> None:
        """Ask consent; a refusal is logged (outcome ``denied``) and answered PERMISSION_DENIED."""
        decision = await self._consent.decide(principal, str(holder_id), action, facts)
        if not decision.allowed:
            await self._refused(principal, holder_id, action, decision.reason_code, operation, item_id, item_label)

    async def _refused(
        self,
        principal: Principal,
        holder_id: uuid.UUID,
        action: int,
        reason: str,
        operation: str,
        item_id: str = "",
        item_label: str = "",
    ) -> NoReturn:
        await self._log_refusal(principal, holder_id, action, reason, operation, item_id, item_label)
        raise PermissionDenied(f"consent refused this access ({reason})", reason=reason or "ACCESS_DENIED")

    async def _log_refusal(
        self,
        principal: Principal,
        holder_id: uuid.UUID,
        action: int,
        reason: str,
        operation: str,
        item_id: str = "",
        item_label: str = "",
    ) -> None:
        await access_log.append(
            self._pool,
            NewEntry(
                holder_id=holder_id,
                actor=_actor(principal),
                action=consent_pb.Action.Name(action),  # type: ignore[arg-type]
                operation=operation,
                item_kind=ITEM_KIND,
                item_id=item_id,
                item_label=item_label,
                reason=reason,
                outcome="denied",
            ),
        )

    async def _ensure(
        self, rule: Callable[[], None], principal: Principal, record: ProfileEntryRecord, action: int, operation: str
    ) -> None:
        """Apply one of dossier's rules of who changes what; a refusal is logged like consent's."""
        try:
            rule()
        except PermissionDenied as refusal:
            await self._log_refusal(
                principal,
                record.holder_id,
                action,
                refusal.reason,
                operation,
                str(record.entry_id),
                entry_label(record.kind, record.value),
            )
            raise

    async def _log(
        self,
        db: asyncpg.Connection | asyncpg.Pool,
        principal: Principal,
        record: ProfileEntryRecord,
        action: int,
        operation: str,
        now: dt.datetime | None = None,
    ) -> None:
        await access_log.append(
            db,
            NewEntry(
                holder_id=record.holder_id,
                actor=_actor(principal),
                action=consent_pb.Action.Name(action),  # type: ignore[arg-type]
                operation=operation,
                item_kind=ITEM_KIND,
                item_id=str(record.entry_id),
                item_label=entry_label(record.kind, record.value),
                outcome="allowed",
            ),
            now=now,
        )

    # ---- reading

    async def _existing(self, entry_id: uuid.UUID, *, deleted_too: bool = False) -> ProfileEntryRecord:
        record = await store.get_entry(self._pool, entry_id)
        if record is None or (record.deleted_at is not None and not deleted_too):
            raise NotFound(
                "no such profile entry", reason="PROFILE_ENTRY_NOT_FOUND", metadata={"entry_id": str(entry_id)}
            )
        return record

    async def get(self, principal: Principal, entry_id: uuid.UUID) -> ProfileEntryRecord:
        """An entry, if consent lets the caller read it."""
        record = await self._existing(entry_id)
        await self._decide(
            principal,
            record.holder_id,
            consent_pb.ACTION_READ,
            item_facts(record),
            operation="GetProfileEntry",
            item_id=str(entry_id),
            item_label=entry_label(record.kind, record.value),
        )
        await self._log(self._pool, principal, record, consent_pb.ACTION_READ, "GetProfileEntry")
        return record

    async def _visibility(self, principal: Principal, holder_id: uuid.UUID, kinds: Sequence[str]) -> Visibility:
        """Which kinds, hidden or not, consent lets the caller list: one LIST decision per
        access-matrix class, for an entry not hidden, a hidden one, and (a professional)
        a hidden one they wrote. Refused altogether: logged and PERMISSION_DENIED."""
        classes = sorted({KINDS[kind].matrix_class for kind in kinds})
        variants = ["open", "hidden"] + (["own"] if principal.rpps else [])
        probes = [(matrix_class, variant) for matrix_class in classes for variant in variants]
        facts = [
            ItemFacts(
                kind=consent_pb.ITEM_KIND_PROFILE_ENTRY,
                document_class=matrix_class,
                hidden_from_professionals=variant != "open",
                author_rpps=principal.rpps if variant == "own" else "",
            )
            for matrix_class, variant in probes
        ]
        decisions = await self._consent.decide_each(principal, str(holder_id), consent_pb.ACTION_LIST, facts)
        allowed = {probe for probe, decision in zip(probes, decisions, strict=True) if decision.allowed}

        def kinds_for(variant: str) -> frozenset[str]:
            return frozenset(kind for kind in kinds if (KINDS[kind].matrix_class, variant) in allowed)

        visibility = Visibility(kinds_for("open"), kinds_for("hidden"), kinds_for("own"), principal.rpps)
        if visibility.nothing:
            await self._refused(
                principal, holder_id, consent_pb.ACTION_LIST, decisions[0].reason_code, "ListProfileEntries"
            )
        return visibility

    async def list(
        self, principal: Principal, holder_id: uuid.UUID, filters: EntryFilter, page_token: str, page_size: int
    ) -> ProfilePage:
        """A page of the holder's entries the caller may see, newest first (measurements by
        measure time, other entries by creation), with the number of all of them."""
        filters = check_filter(filters)
        query = query_fingerprint(holder_id, filters)
        after = decode_entries_token(page_token, query)
        visibility = await self._visibility(principal, holder_id, filters.kinds or tuple(KINDS))
        records, total = await store.list_entries(self._pool, holder_id, filters, visibility, after, page_size + 1)
        await access_log.append(
            self._pool,
            NewEntry(
                holder_id=holder_id,
                actor=_actor(principal),
                action="ACTION_LIST",
                operation="ListProfileEntries",
                item_kind=ITEM_KIND,
                item_label="medical profile",
                outcome="allowed",
            ),
        )
        page = records[:page_size]
        token = ""
        if len(records) > page_size:
            token = encode_entries_token((page[-1].effective_time, page[-1].entry_id), query)
        return ProfilePage(page, token, total)

    async def revisions(
        self, principal: Principal, entry_id: uuid.UUID, page_token: str, page_size: int
    ) -> RevisionPage:
        """An entry's history of changes, newest first (a deleted entry's too), if consent lets
        the caller read the entry."""
        record = await self._existing(entry_id, deleted_too=True)
        below = decode_revisions_token(page_token, entry_id)
        await self._decide(
            principal,
            record.holder_id,
            consent_pb.ACTION_READ,
            item_facts(record),
            operation="ListProfileEntryRevisions",
            item_id=str(entry_id),
            item_label=entry_label(record.kind, record.value),
        )
        await self._log(self._pool, principal, record, consent_pb.ACTION_READ, "ListProfileEntryRevisions")
        revisions = await store.list_revisions(self._pool, entry_id, below, page_size + 1)
        page = revisions[:page_size]
        token = encode_revisions_token(entry_id, page[-1].version) if len(revisions) > page_size else ""
        return RevisionPage(page, token)

    # ---- changes

    async def create(self, principal: Principal, proposed: ProposedEntry, request_id: str = "") -> ProfileEntryRecord:
        """Add an entry; the same caller's retry with the same ``request_id`` returns the first result."""
        rule = check_kind(proposed.kind, proposed.value_field)
        assert proposed.value is not None
        now = dt.datetime.now(dt.UTC)
        asked = value_json(proposed.value)
        value = validate_value(proposed.kind, proposed.value, now=now)
        stored = value_json(value)
        holder_id = proposed.holder_id
        author_rpps = principal.rpps if principal.role == "professional" else ""
        facts = ItemFacts(
            kind=consent_pb.ITEM_KIND_PROFILE_ENTRY,
            document_class=rule.matrix_class,
            author_rpps=author_rpps,
            author_organisation_id=principal.organisation_id,
            hidden_from_professionals=proposed.hidden_from_professionals,
        )
        await self._decide(
            principal,
            holder_id,
            consent_pb.ACTION_CREATE,
            facts,
            operation="CreateProfileEntry",
            item_label=entry_label(proposed.kind, stored),
        )
        requester = _requester(principal) if request_id else None
        digest = hashlib.sha256(
            json.dumps(
                [str(holder_id), proposed.kind, asked, proposed.hidden_from_professionals], sort_keys=True
            ).encode()
        ).hexdigest()
        if requester is not None:
            earlier = await store.find_request(self._pool, requester, request_id)
            if earlier is not None:
                return await self._first_result(earlier, digest)
        if rule.one_per_holder:
            existing = await store.live_entry_of_kind(self._pool, holder_id, proposed.kind)
            if existing is not None:
                raise Conflict(
                    f"the holder already has a {rule.label} entry; change it instead",
                    reason="PROFILE_ENTRY_EXISTS",
                    metadata={"kind": proposed.kind, "entry_id": str(existing)},
                )
        actor = _actor(principal)
        record = ProfileEntryRecord(
            entry_id=uuid.uuid4(),
            holder_id=holder_id,
            kind=proposed.kind,
            value=stored,
            source=source_of(principal),
            created_by=actor,
            recorded_by=actor,
            version=1,
            hidden_from_professionals=proposed.hidden_from_professionals,
            created_at=now,
            effective_time=effective_time(value, now),
            measurement_type=measurement_type(value) if isinstance(value, res.Measurement) else "",
            author_rpps=author_rpps,
        )
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if _affects_bmi(record):
                    await store.lock_measurements(conn, holder_id)
                inserted = await store.insert_entry(
                    conn,
                    record,
                    requester=requester,
                    request_id=request_id or None,
                    request_digest=digest if requester else None,
                )
                if not inserted:  # a concurrent retry with the same request id won
                    earlier = await store.find_request(conn, requester or "", request_id)
                    assert earlier is not None
                    return await self._first_result(earlier, digest, conn)
                await store.insert_revision(conn, record, "CREATED", actor, now)
                await self._log(conn, principal, record, consent_pb.ACTION_CREATE, "CreateProfileEntry", now)
                if _affects_bmi(record):
                    await self._follow_bmi(conn, holder_id, actor, now)
        except asyncpg.UniqueViolationError as error:
            conflict = _conflict(error, record.kind)
            if conflict is None:
                raise
            raise conflict from None
        return record

    async def _first_result(
        self, earlier: tuple[uuid.UUID, str], digest: str, db: asyncpg.Connection | None = None
    ) -> ProfileEntryRecord:
        entry_id, earlier_digest = earlier
        if earlier_digest != digest:
            raise Conflict(
                "this request_id was used for another entry",
                reason="REQUEST_ID_REUSED",
                metadata={"entry_id": str(entry_id)},
            )
        first = await store.first_revision(db or self._pool, entry_id)
        assert first is not None
        return first.entry

    async def _write(
        self,
        principal: Principal,
        before: ProfileEntryRecord,
        after: ProfileEntryRecord,
        *,
        change_type: str,
        action: int,
        operation: str,
        now: dt.datetime,
    ) -> None:
        """Write a change of an entry with its revision and access-log entry (and the BMI's follow-up)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if _affects_bmi(before):
                    await store.lock_measurements(conn, before.holder_id)
                locked = await store.get_entry(conn, before.entry_id, for_update=True)
                if locked is None or locked.version != before.version or locked.deleted_at is not None:
                    raise Conflict(
                        "the entry changed meanwhile; read it again",
                        reason="CONCURRENT_CHANGE",
                        metadata={"entry_id": str(before.entry_id)},
                    )
                await store.update_entry(conn, after)
                await store.insert_revision(conn, after, change_type, after.recorded_by, now)
                await self._log(conn, principal, after, action, operation, now)
                if _affects_bmi(before):
                    await self._follow_bmi(conn, before.holder_id, after.recorded_by, now)
        except asyncpg.UniqueViolationError as error:
            conflict = _conflict(error, before.kind)
            if conflict is None:
                raise
            raise conflict from None

    async def update(
        self, principal: Principal, entry_id: uuid.UUID, proposed: res.ProfileEntry, paths: Sequence[str]
    ) -> ProfileEntryRecord:
        """Change the fields the mask names (see :func:`carnet_dossier.profile.ensure_may_change`):
        a new version, its revision and its access-log entry."""
        record = await self._existing(entry_id)
        named = check_update_mask(record.kind, paths)
        await self._ensure(
            lambda: ensure_may_change(principal, record, named),
            principal,
            record,
            consent_pb.ACTION_UPDATE,
            "UpdateProfileEntry",
        )
        now = dt.datetime.now(dt.UTC)
        merged, hidden = apply_update(
            record.kind, value_message(record.kind, record.value), record.hidden_from_professionals, proposed, named
        )
        value = validate_value(record.kind, merged, now=now)
        action = consent_pb.ACTION_CREATE if changes_as_author(principal, record) else consent_pb.ACTION_UPDATE
        await self._decide(
            principal,
            record.holder_id,
            action,
            item_facts(record),
            operation="UpdateProfileEntry",
            item_id=str(entry_id),
            item_label=entry_label(record.kind, record.value),
        )
        updated = dataclasses.replace(
            record,
            value=value_json(value),
            hidden_from_professionals=hidden,
            effective_time=effective_time(value, record.created_at),
            recorded_by=_actor(principal),
            version=record.version + 1,
            updated_at=now,
        )
        await self._write(
            principal, record, updated, change_type="UPDATED", action=action, operation="UpdateProfileEntry", now=now
        )
        return updated

    async def delete(self, principal: Principal, entry_id: uuid.UUID) -> None:
        """Delete an entry: it is no longer read or listed; its history stays."""
        record = await self._existing(entry_id)
        await self._ensure(
            lambda: ensure_may_delete(principal, record),
            principal,
            record,
            consent_pb.ACTION_DELETE,
            "DeleteProfileEntry",
        )
        action = consent_pb.ACTION_CREATE if changes_as_author(principal, record) else consent_pb.ACTION_DELETE
        await self._decide(
            principal,
            record.holder_id,
            action,
            item_facts(record),
            operation="DeleteProfileEntry",
            item_id=str(entry_id),
            item_label=entry_label(record.kind, record.value),
        )
        now = dt.datetime.now(dt.UTC)
        deleted = dataclasses.replace(
            record, recorded_by=_actor(principal), version=record.version + 1, updated_at=now, deleted_at=now
        )
        await self._write(
            principal, record, deleted, change_type="DELETED", action=action, operation="DeleteProfileEntry", now=now
        )

    # ---- the derived BMI

    async def _follow_bmi(
        self, conn: asyncpg.Connection, holder_id: uuid.UUID, actor: dict[str, Any], now: dt.datetime
    ) -> None:
        """Bring the derived BMI in line with the latest weight and height (created, changed or
        deleted, each with its revision). It is hidden from professionals when either input is."""
        weight = await store.latest_measurement(conn, holder_id, "WEIGHT")
        height = await store.latest_measurement(conn, holder_id, "HEIGHT")
        current = await store.derived_bmi(conn, holder_id)
        bmi = None
        if weight is not None and height is not None:
            weight_value = value_message("MEASUREMENT", weight.value)
            height_value = value_message("MEASUREMENT", height.value)
            assert isinstance(weight_value, res.Measurement) and isinstance(height_value, res.Measurement)
            bmi = derived_bmi(weight_value, height_value)
        if bmi is None:
            if current is not None:
                gone = dataclasses.replace(
                    current, recorded_by=actor, version=current.version + 1, updated_at=now, deleted_at=now
                )
                await store.update_entry(conn, gone)
                await store.insert_revision(conn, gone, "DELETED", actor, now)
            return
        assert weight is not None and height is not None
        hidden = weight.hidden_from_professionals or height.hidden_from_professionals
        value = value_json(bmi)
        if current is None:
            created = ProfileEntryRecord(
                entry_id=uuid.uuid4(),
                holder_id=holder_id,
                kind="MEASUREMENT",
                value=value,
                source="DERIVED",
                created_by=actor,
                recorded_by=actor,
                version=1,
                hidden_from_professionals=hidden,
                created_at=now,
                effective_time=effective_time(bmi, now),
                measurement_type="BMI",
            )
            await store.insert_entry(conn, created)
            await store.insert_revision(conn, created, "CREATED", actor, now)
        elif current.value != value or current.hidden_from_professionals != hidden:
            changed = dataclasses.replace(
                current,
                value=value,
                hidden_from_professionals=hidden,
                effective_time=effective_time(bmi, now),
                recorded_by=actor,
                version=current.version + 1,
                updated_at=now,
            )
            await store.update_entry(conn, changed)
            await store.insert_revision(conn, changed, "UPDATED", actor, now)
