"""Use cases of the record's documents: deposit, read, list, download.

Every call asks consent first and writes the access log; a deposit writes its
metadata, its access-log entry and its ``DocumentDeposited`` event in one transaction,
after the content is safely in the object store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from google.protobuf import timestamp_pb2
from opentelemetry import trace

from carnet.consent.v1 import resources_pb2 as consent_pb
from carnet.dossier.v1 import events_pb2
from carnet_dossier import access_log, store
from carnet_dossier.access_log import NewEntry
from carnet_dossier.changes import (
    check_metadata_change,
    ensure_may_announce,
    ensure_may_archive_or_delete,
    ensure_may_replace,
    is_depositor,
)
from carnet_dossier.domain import DocumentOrder, NewDocument, PageCursor, check_content, encode_page_token
from carnet_dossier.keys import HolderKeys
from carnet_dossier.peers import ConsentClient, Decision, IdentityClient, ItemFacts
from carnet_dossier.protoconv import actor_record
from carnet_dossier.store import DocumentFilter, DocumentRecord
from carnet_kit.auth import Principal
from carnet_kit.crypto import SealedBlobError, open_stream, seal
from carnet_kit.errors import (
    Conflict,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from carnet_kit.objectstore import ObjectStore
from carnet_kit.outbox import enqueue, outbox_row, stream_name
from carnet_kit.telemetry import ATTR_DOCUMENT_ID, ATTR_HOLDER_ID

tracer = trace.get_tracer("carnet_dossier")

EVENT_STREAM = stream_name("dossier")
DOCUMENT_DEPOSITED = "carnet.dossier.v1.DocumentDepositedEvent"
DOCUMENT_CHANGED = "carnet.dossier.v1.DocumentChangedEvent"
log = logging.getLogger(__name__)



def item_facts(record: DocumentRecord) -> ItemFacts:
    return ItemFacts(
        kind=consent_pb.ITEM_KIND_DOCUMENT,
        document_class=record.class_code,
        type_code=record.type_code,
        author_rpps=record.author.rpps,
        author_organisation_id=record.author.organisation_id,
        hidden_from_professionals=record.hidden_from_professionals,
        invisible_to_holder=record.invisible_to_holder,
        invisible_to_representatives=record.invisible_to_representatives,
    )


def _read_entry(principal: Principal, record: DocumentRecord, operation: str) -> NewEntry:
    return NewEntry(
        holder_id=record.holder_id,
        actor=actor_record(principal),
        action="ACTION_READ",
        operation=operation,
        item_kind="ITEM_KIND_DOCUMENT",
        item_id=str(record.document_id),
        item_label=record.title,
        outcome="allowed",
    )


@dataclass(frozen=True)
class BreakGlass:
    """A professional opening a record in an emergency, with the written reason (PRODUCT.md "Break-glass")."""

    reason: str
    emergency_regulation: bool = False

    @property
    def action(self) -> int:
        """The consent action it is decided under."""
        return (
            consent_pb.ACTION_EMERGENCY_REGULATION_READ
            if self.emergency_regulation
            else consent_pb.ACTION_BREAK_GLASS_READ
        )


# The holder and the treating physician are told of a break-glass access once per actor and
# holder within this time, not at every document read of the same emergency.
BREAK_GLASS_ALERT_QUIET = dt.timedelta(hours=1)


@dataclass(frozen=True)
class HolderRef:
    """How a deposit names its holder: a person id or an INS."""

    holder_id: str = ""
    holder_ins: str = ""


@dataclass(frozen=True)
class DocumentPage:
    """One page of a listing."""

    documents: list[DocumentRecord]
    next_page_token: str
    total_size: int = 0


class DocumentService:
    """The document use cases of the dossier service."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        blobs: ObjectStore,
        keys: HolderKeys,
        consent: ConsentClient,
        identity: IdentityClient,
        *,
        max_document_bytes: int,
        professional_search_years: int = 2,
    ) -> None:
        self._pool = pool
        self._blobs = blobs
        self._keys = keys
        self._consent = consent
        self._identity = identity
        self._max_bytes = max_document_bytes
        self._professional_years = professional_search_years

    async def _resolve_holder(self, ref: HolderRef) -> uuid.UUID:
        if ref.holder_id:
            try:
                return uuid.UUID(ref.holder_id)
            except ValueError:
                raise InvalidArgument("holder_id must be a UUID", field="metadata.holder_id") from None
        if ref.holder_ins:
            return uuid.UUID(await self._identity.person_id_for_ins(ref.holder_ins))
        raise InvalidArgument("holder_id or holder_ins is required", field="metadata.holder_id")

    async def _decide(
        self,
        principal: Principal,
        holder_id: uuid.UUID,
        action: int,
        facts: ItemFacts,
        item_id: str,
        *,
        operation: str,
        item_label: str = "",
        break_glass: BreakGlass | None = None,
    ) -> Decision:
        """Ask consent; a refusal is logged (outcome ``denied``) and answered PERMISSION_DENIED.

        A read in an emergency is decided as break-glass (or emergency regulation) with its reason.
        """
        if break_glass is not None and action in (consent_pb.ACTION_READ, consent_pb.ACTION_LIST):
            action = break_glass.action
        reason = break_glass.reason if break_glass is not None else ""
        decision = await self._consent.decide(principal, str(holder_id), action, facts, reason)
        if not decision.allowed:
            await access_log.append(
                self._pool,
                NewEntry(
                    holder_id=holder_id,
                    actor=actor_record(principal),
                    action=consent_pb.Action.Name(action),  # type: ignore[arg-type]
                    operation=operation,
                    item_kind=consent_pb.ItemKind.Name(facts.kind),  # type: ignore[arg-type]
                    item_id=item_id,
                    item_label=item_label,
                    reason=decision.reason_code,
                    break_glass_reason=reason,
                    outcome="denied",
                ),
            )
            raise PermissionDenied(
                f"consent refused this access ({decision.reason_code})", reason=decision.reason_code or "ACCESS_DENIED"
            )
        return decision

    async def _log_allowed(self, entry: NewEntry, decision: Decision, break_glass: BreakGlass | None) -> None:
        """Log an allowed access and honour the decision's obligations to tell (break-glass: once an hour)."""
        if break_glass is None:
            await access_log.append(self._pool, entry)
            return
        entry = dataclasses.replace(
            entry,
            action=consent_pb.Action.Name(break_glass.action),  # type: ignore[arg-type]
            break_glass_reason=break_glass.reason,
            reason=decision.reason_code,
        )
        tell_holder = "OBLIGATION_NOTIFY_HOLDER" in decision.obligations
        tell_physician = "OBLIGATION_NOTIFY_TREATING_PHYSICIAN" in decision.obligations
        recent = await self._pool.fetchval(
            "SELECT count(*) FROM access_log WHERE holder_id = $1 AND actor->>'subject' = $2 AND action = $3"
            " AND outcome = 'allowed' AND created_at > now() - $4::interval",
            entry.holder_id,
            entry.actor.get("subject", ""),
            entry.action,
            BREAK_GLASS_ALERT_QUIET,
        )
        await access_log.append(
            self._pool,
            entry,
            notify_holder=tell_holder and not recent,
            notify_treating_physician=tell_physician and not recent,
        )

    async def _read_content(self, chunks: AsyncIterator[bytes]) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self._max_bytes:
                raise ResourceExhausted(
                    f"the document exceeds the size limit of {self._max_bytes} bytes",
                    reason="DOCUMENT_TOO_LARGE",
                    metadata={"limit_bytes": str(self._max_bytes)},
                )
            parts.append(chunk)
        return b"".join(parts)

    async def _existing(self, unique_id: str, holder_id: uuid.UUID, sha256: str) -> DocumentRecord | None:
        existing = await store.find_by_unique_id(self._pool, unique_id)
        if existing is None:
            return None
        if existing.holder_id == holder_id and existing.sha256 == sha256:
            return existing
        raise Conflict(
            "a document with this unique_id exists with other content",
            reason="UNIQUE_ID_TAKEN",
            metadata={"unique_id": unique_id},
        )

    async def deposit(
        self,
        principal: Principal,
        holder: HolderRef,
        new: NewDocument,
        chunks: AsyncIterator[bytes],
        *,
        replaces_document_id: uuid.UUID | None = None,
    ) -> tuple[DocumentRecord, bool]:
        """Store a document (or the next version of ``replaces_document_id``, which becomes deprecated);
        the same unique_id and bytes returns the existing one (created=False)."""
        holder_id = await self._resolve_holder(holder)
        replaces: DocumentRecord | None = None
        if replaces_document_id is not None:
            replaces = await self._load(replaces_document_id)
            ensure_may_replace(principal, replaces, str(holder_id))
        facts = ItemFacts(
            kind=consent_pb.ITEM_KIND_DOCUMENT,
            document_class=new.class_code,
            type_code=new.type_code,
            author_rpps=new.author.rpps,
            author_organisation_id=new.author.organisation_id,
            hidden_from_professionals=new.hidden_from_professionals,
            invisible_to_holder=new.invisible_to_holder,
            invisible_to_representatives=new.invisible_to_representatives,
        )
        await self._decide(
            principal,
            holder_id,
            consent_pb.ACTION_CREATE,
            facts,
            new.unique_id,
            operation="DepositDocument",
            item_label=new.title,
        )
        content = await self._read_content(chunks)
        check_content(content, new.format)
        sha256 = hashlib.sha256(content).hexdigest()
        # No look-up of the unique_id first: the insert's unique index answers it. A deposit sent
        # again (same unique_id and bytes) or a taken unique_id is found below, after the insert fails.
        document_id = uuid.uuid4()
        blob_key = f"documents/{holder_id}/{document_id}"
        actor = actor_record(principal)
        with tracer.start_as_current_span("store document content", attributes={ATTR_DOCUMENT_ID: str(document_id)}):
            try:
                data_key = await self._keys.sealing_key(holder_id)
            except (FailedPrecondition, DataLoss):
                # A deposit sent again is answered with the document it made, even once no key seals.
                existing = await self._existing(new.unique_id, holder_id, sha256)
                if existing is not None:
                    return existing, False
                raise
            await self._blobs.put(blob_key, seal(data_key, blob_key, content))
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if replaces is not None:
                    # The previous version stops being current first (one current version per logical id).
                    current = await store.get_document_for_update(conn, replaces.document_id)
                    if current is None or current.status != "approved":
                        raise FailedPrecondition(
                            "the replaced document is no longer the current version",
                            reason="DOCUMENT_NOT_CURRENT",
                            metadata={"status": current.status if current else "deleted"},
                        )
                    await store.update_document(
                        conn, replaces.document_id, {"status": "deprecated"}, dt.datetime.now(dt.UTC)
                    )
                # Three statements: the document with its holder's chain head locked (and its key
                # checked); the access-log entry with the DocumentDepositedEvent; the commit.
                record, head, key_live = await store.insert_document_locking_head(
                    conn,
                    document_id=document_id,
                    holder_id=holder_id,
                    new=new,
                    holder_own=principal.role == "holder" and principal.subject == str(holder_id),
                    size_bytes=len(content),
                    sha256=sha256,
                    blob_key=blob_key,
                    sealed=True,
                    deposited_by=actor,
                    replaces=replaces,
                )
                if not key_live:
                    # Shredded (by another replica) since the content was sealed: nothing is recorded.
                    self._keys.forget(holder_id)
                    await self._keys.data_key(holder_id)  # raises HOLDER_DATA_SHREDDED, with its date
                    raise FailedPrecondition("this holder's data was erased", reason="HOLDER_DATA_SHREDDED")
                occur = timestamp_pb2.Timestamp()
                occur.FromDatetime(record.created_at)
                event_id = str(uuid.uuid4())
                event = outbox_row(
                    stream=EVENT_STREAM,
                    event_type=DOCUMENT_DEPOSITED,
                    event_id=event_id,
                    payload=events_pb2.DocumentDepositedEvent(
                        event_id=event_id,
                        document_id=str(document_id),
                        holder_id=str(holder_id),
                        title=record.title,
                        type_code=record.type_code,
                        class_code=record.class_code,
                        deposited_by=principal.to_actor(),
                        occur_time=occur,
                        invisible_to_holder=record.invisible_to_holder,
                        invisible_to_representatives=record.invisible_to_representatives,
                        holder_own=record.holder_own,
                    ),
                )
                await access_log.append_at(
                    conn,
                    NewEntry(
                        holder_id=holder_id,
                        actor=actor,
                        action="ACTION_CREATE",
                        operation="DepositDocument",
                        item_kind="ITEM_KIND_DOCUMENT",
                        item_id=str(document_id),
                        item_label=record.title,
                        outcome="allowed",
                    ),
                    head,
                    event=event,
                )
                if replaces is not None:
                    deprecated = await store.update_document(
                        conn, replaces.document_id, {"replaced_by_document_id": document_id}, record.created_at
                    )
                    await self._changed(conn, principal, deprecated, events_pb2.DOCUMENT_CHANGE_REPLACED, document_id)
        except asyncpg.UniqueViolationError:
            # The unique_id is taken: by this same deposit sent again, by a concurrent one that won
            # the race, or by other content (a conflict).
            await self._blobs.delete(blob_key)
            winner = await self._existing(new.unique_id, holder_id, sha256)
            if winner is None:
                raise
            return winner, False
        except BaseException:
            await asyncio.shield(self._blobs.delete(blob_key))
            raise
        trace.get_current_span().set_attributes({ATTR_DOCUMENT_ID: str(document_id), ATTR_HOLDER_ID: str(holder_id)})
        return record, True

    async def _load(self, document_id: uuid.UUID) -> DocumentRecord:
        record = await store.get_document(self._pool, document_id)
        if record is None or record.status == "deleted":
            raise NotFound("no such document", reason="DOCUMENT_NOT_FOUND", metadata={"document_id": str(document_id)})
        return record

    async def _read(
        self, principal: Principal, document_id: uuid.UUID, operation: str, break_glass: BreakGlass | None = None
    ) -> DocumentRecord:
        """Load a document, ask consent to read it, log the read."""
        record = await self._load(document_id)
        decision = await self._decide(
            principal,
            record.holder_id,
            consent_pb.ACTION_READ,
            item_facts(record),
            str(document_id),
            operation=operation,
            item_label=record.title,
            break_glass=break_glass,
        )
        await self._log_allowed(_read_entry(principal, record, operation), decision, break_glass)
        return record

    async def get(
        self, principal: Principal, document_id: uuid.UUID, break_glass: BreakGlass | None = None
    ) -> DocumentRecord:
        """A document's metadata, if consent allows reading it."""
        return await self._read(principal, document_id, "GetDocument", break_glass)

    async def download(
        self, principal: Principal, document_id: uuid.UUID, break_glass: BreakGlass | None = None
    ) -> tuple[DocumentRecord, AsyncIterator[bytes]]:
        """The metadata and the content stream; the stream fails with DATA_LOSS if the bytes changed."""
        record = await self._read(principal, document_id, "DownloadDocument", break_glass)

        data_key = await self._keys.data_key(record.holder_id) if record.sealed else b""

        async def content() -> AsyncIterator[bytes]:
            digest = hashlib.sha256()
            size = 0
            stored = self._blobs.stream(record.blob_key)
            plain = open_stream(data_key, record.blob_key, stored) if record.sealed else stored
            try:
                async for chunk in plain:
                    digest.update(chunk)
                    size += len(chunk)
                    yield chunk
            except SealedBlobError as exc:
                raise DataLoss(
                    f"stored content failed its integrity check: {exc}", reason="CONTENT_INTEGRITY_FAILED"
                ) from None
            if digest.hexdigest() != record.sha256 or size != record.size_bytes:
                raise DataLoss("stored content failed its integrity check", reason="CONTENT_INTEGRITY_FAILED")

        return record, content()

    async def _refuse_listing(
        self,
        principal: Principal,
        holder_id: uuid.UUID,
        action: int,
        decision: Decision,
        break_glass: BreakGlass | None,
    ) -> None:
        """A refused listing: logged with outcome ``denied``, answered PERMISSION_DENIED."""
        reason = break_glass.reason if break_glass is not None else ""
        await access_log.append(
            self._pool,
            NewEntry(
                holder_id=holder_id,
                actor=actor_record(principal),
                action=consent_pb.Action.Name(action),  # type: ignore[arg-type]
                operation="ListDocuments",
                item_kind="ITEM_KIND_SPACE",
                item_id=str(holder_id),
                reason=decision.reason_code,
                break_glass_reason=reason,
                outcome="denied",
            ),
        )
        raise PermissionDenied(
            f"consent refused this access ({decision.reason_code})", reason=decision.reason_code or "ACCESS_DENIED"
        )

    async def list(
        self,
        principal: Principal,
        holder_id: uuid.UUID,
        filters: DocumentFilter,
        cursor: PageCursor | None,
        page_size: int,
        order: DocumentOrder = DocumentOrder.SERVICE_TIME_DESC,
        break_glass: BreakGlass | None = None,
    ) -> DocumentPage:
        """A page of the documents the caller may see, in ``order`` (newest document date first by default).

        A professional's search without a start date covers the last two years
        (PRODUCT.md: "a professional's first automatic search"). In an emergency
        (``break_glass``) the record is opened under break-glass: logged with the reason,
        the holder and the treating physician told.

        Consent is asked once per page: whether the caller may list the space, and what
        they may read of the page. The SQL runs before that answer is known; nothing of it
        is returned or logged as allowed unless consent allows the listing.
        """
        if principal.role == "professional" and filters.since is None:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(days=365 * self._professional_years)
            filters = dataclasses.replace(filters, since=since)
        # What the caller's side can never see is left out in SQL (and so out of the count);
        # consent still decides each listed document.
        never = {
            "holder": ("invisible_to_holder",),
            "representative": ("invisible_to_holder", "invisible_to_representatives"),
            "helper": ("invisible_to_holder", "invisible_to_representatives"),
        }.get(principal.role, ())
        filters = dataclasses.replace(filters, exclude_flags=never)
        # The holder's side sees every match but those left out above: the count is exact for them.
        # It is counted on the first page and carried by the page tokens (a count reads every match),
        # on a connection of its own while the page is read and decided.
        counting: asyncio.Task[int] | None = None
        if cursor is None and never:
            counting = asyncio.ensure_future(store.count_documents(self._pool, holder_id, filters))
        try:
            rows = await store.list_documents(self._pool, holder_id, filters, cursor, page_size + 1, order)
            page, more = rows[:page_size], len(rows) > page_size
            list_action = break_glass.action if break_glass is not None else consent_pb.ACTION_LIST
            opened, decisions = await self._consent.decide_page(
                principal,
                str(holder_id),
                list_action,
                ItemFacts(kind=consent_pb.ITEM_KIND_SPACE),
                break_glass.action if break_glass is not None else consent_pb.ACTION_READ,
                [item_facts(record) for record in page],
                break_glass.reason if break_glass is not None else "",
            )
            if not opened.allowed:
                await self._refuse_listing(principal, holder_id, list_action, opened, break_glass)
            visible = [record for record, decision in zip(page, decisions, strict=True) if decision.allowed]
            await self._log_allowed(
                NewEntry(
                    holder_id=holder_id,
                    actor=actor_record(principal),
                    action="ACTION_LIST",
                    operation="ListDocuments",
                    item_kind="ITEM_KIND_SPACE",
                    item_id=str(holder_id),
                    outcome="allowed",
                ),
                opened,
                break_glass,
            )
            if cursor is not None:
                total = cursor.total
            else:
                total = await counting if counting is not None else 0
        finally:
            if counting is not None:
                counting.cancel()  # left over only when the listing failed or was refused
                await asyncio.gather(counting, return_exceptions=True)
        last = page[-1] if page else None
        next_token = (
            encode_page_token(PageCursor(order.key(last.service_time, last.created_at), last.document_id, order, total))
            if more and last is not None
            else ""
        )
        return DocumentPage(visible, next_token, total)

    # ---- changes after the deposit

    async def _changed(
        self,
        conn: asyncpg.Connection,
        principal: Principal,
        record: DocumentRecord,
        change: int,
        replaced_by: uuid.UUID | None = None,
    ) -> None:
        """Publish a DocumentChangedEvent in the caller's transaction."""
        occur = timestamp_pb2.Timestamp()
        occur.FromDatetime(record.updated_at or dt.datetime.now(dt.UTC))
        event_id = str(uuid.uuid4())
        await enqueue(
            conn,
            schema=store.SCHEMA,
            stream=EVENT_STREAM,
            event_type=DOCUMENT_CHANGED,
            event_id=event_id,
            payload=events_pb2.DocumentChangedEvent(
                event_id=event_id,
                document_id=str(record.document_id),
                holder_id=str(record.holder_id),
                change=change,  # type: ignore[arg-type]
                actor=principal.to_actor(),
                replaced_by_document_id=str(replaced_by) if replaced_by else "",
                occur_time=occur,
            ),
        )

    async def _change(
        self,
        principal: Principal,
        document_id: uuid.UUID,
        *,
        operation: str,
        holder_side_action: int,
        check: Callable[[DocumentRecord], dict[str, Any]],
        change: int,
        reason: str = "",
    ) -> DocumentRecord:
        """Load, check (rules, then consent), then apply ``check``'s values with their log entry and event.

        The author changes their document under their right to write to the space (consent's
        CREATE); the holder's side under UPDATE or DELETE.
        """
        record = await self._load(document_id)
        values = check(record)
        action = consent_pb.ACTION_CREATE if is_depositor(principal, record) else holder_side_action
        await self._decide(
            principal,
            record.holder_id,
            action,
            item_facts(record),
            str(document_id),
            operation=operation,
            item_label=record.title,
        )
        now = dt.datetime.now(dt.UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            locked = await store.get_document_for_update(conn, document_id)
            if locked is None or locked != record:
                raise Conflict(
                    "the document changed meanwhile; read it again",
                    reason="CONCURRENT_CHANGE",
                    metadata={"document_id": str(document_id)},
                )
            updated = await store.update_document(conn, document_id, values, now)
            await access_log.append(
                conn,
                NewEntry(
                    holder_id=record.holder_id,
                    actor=actor_record(principal),
                    action=consent_pb.Action.Name(action),  # type: ignore[arg-type]
                    operation=operation,
                    item_kind="ITEM_KIND_DOCUMENT",
                    item_id=str(document_id),
                    item_label=updated.title,
                    reason=reason,
                    outcome="allowed",
                ),
                now=now,
            )
            await self._changed(conn, principal, updated, change)
        return updated

    async def update_metadata(
        self, principal: Principal, document_id: uuid.UUID, paths: Sequence[str], proposed: dict[str, Any]
    ) -> DocumentRecord:
        """Change the fields the mask names, as far as the caller may (see :mod:`carnet_dossier.changes`)."""
        return await self._change(
            principal,
            document_id,
            operation="UpdateDocumentMetadata",
            holder_side_action=consent_pb.ACTION_UPDATE,
            check=lambda record: check_metadata_change(principal, record, paths, proposed).values,
            change=events_pb2.DOCUMENT_CHANGE_METADATA_UPDATED,
        )

    async def announce(self, principal: Principal, document_id: uuid.UUID) -> DocumentRecord:
        """After the announcement consultation, the author makes the document visible to its holder."""

        def check(record: DocumentRecord) -> dict[str, Any]:
            ensure_may_announce(principal, record)
            return {"invisible_to_holder": False, "announced_at": dt.datetime.now(dt.UTC)}

        return await self._change(
            principal,
            document_id,
            operation="AnnounceDocument",
            holder_side_action=consent_pb.ACTION_UPDATE,
            check=check,
            change=events_pb2.DOCUMENT_CHANGE_ANNOUNCED,
        )

    async def archive(self, principal: Principal, document_id: uuid.UUID) -> DocumentRecord:
        """Take a document out of the current record (still readable, listed with status archived)."""

        def check(record: DocumentRecord) -> dict[str, Any]:
            ensure_may_archive_or_delete(principal, record, "archived")
            return {"status": "archived"}

        return await self._change(
            principal,
            document_id,
            operation="ArchiveDocument",
            holder_side_action=consent_pb.ACTION_UPDATE,
            check=check,
            change=events_pb2.DOCUMENT_CHANGE_ARCHIVED,
        )

    async def delete(self, principal: Principal, document_id: uuid.UUID, reason: str) -> None:
        """Delete a document: its content is removed from the object store, a tombstone stays."""
        reason = reason.strip()[:500]

        def check(record: DocumentRecord) -> dict[str, Any]:
            ensure_may_archive_or_delete(principal, record, "deleted")
            return {"status": "deleted", "deleted_at": dt.datetime.now(dt.UTC), "delete_reason": reason}

        deleted = await self._change(
            principal,
            document_id,
            operation="DeleteDocument",
            holder_side_action=consent_pb.ACTION_DELETE,
            check=check,
            change=events_pb2.DOCUMENT_CHANGE_DELETED,
            reason=reason,
        )
        try:
            await self._blobs.delete(deleted.blob_key)
        except Exception:  # the tombstone is committed; the sweep of orphan blobs takes it later
            log.exception("could not remove the content of deleted document %s", document_id)
