"""A holder's space in dossier: closure, deletion (crypto-shred, then removal), summary and export.

Identity owns the lifecycle (PRODUCT.md "Lifecycle of a space"); dossier follows its
``AccountStateChangedEvent``\\ s, read in the consumer group ``dossier-spaces``:

- closed → the space is **archived** until its scheduled deletion (10 years, or the
  deletion request's date); consent already lets nobody but the holder in, and the
  holder only after reopening;
- reopened (active, created by default, notified again) → **open**, as it was;
- deleted → the holder's data key is **shredded at once** (every blob unreadable from
  that moment), then the purge job removes the blobs and the rows.

The export is the whole space as one ZIP, streamed: the documents as deposited (each
decrypted and checked against its SHA-256 on the way), their metadata, the access log
and a manifest, as JSON.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import re
import unicodedata
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as redis

from carnet.consent.v1 import resources_pb2 as consent_pb
from carnet.identity.v1 import events_pb2 as identity_events
from carnet.identity.v1 import resources_pb2 as identity_resources
from carnet_dossier import access_log
from carnet_dossier.access_log import NewEntry
from carnet_dossier.documents import item_facts
from carnet_dossier.keys import HolderKeys
from carnet_dossier.peers import ConsentClient, ItemFacts
from carnet_dossier.protoconv import actor_record as _actor
from carnet_dossier.store import DocumentRecord
from carnet_kit.auth import Principal
from carnet_kit.crypto import SealedBlobError, open_stream
from carnet_kit.errors import DataLoss, PermissionDenied
from carnet_kit.objectstore import ObjectStore
from carnet_kit.outbox import Event, StreamConsumer, claim_event, replica_name, stream_name

log = logging.getLogger(__name__)

IDENTITY_STREAM = stream_name("identity")
SPACES_GROUP = "dossier-spaces"
ACCOUNT_STATE_CHANGED = identity_events.AccountStateChangedEvent.DESCRIPTOR.full_name

OPEN, ARCHIVED, DELETED = "OPEN", "ARCHIVED", "DELETED"
_OPEN_STATES = frozenset(
    {
        identity_resources.ACCOUNT_STATE_NOTIFIED,
        identity_resources.ACCOUNT_STATE_ACTIVE,
        identity_resources.ACCOUNT_STATE_CREATED_BY_DEFAULT,
    }
)
# Rows of a deleted space, removed by the purge (the key's tombstone stays in holder_keys).
HOLDER_TABLES = (
    "access_log_organisations",
    "access_log_heads",
    "access_log",
    "agenda_events",
    "profile_entry_revisions",
    "profile_entries",
    "documents",
)
EXPORTERS = frozenset({"holder", "representative", "helper"})


@dataclass(frozen=True)
class SpaceRecord:
    """Dossier's view of a holder's space."""

    holder_id: uuid.UUID
    state: str
    archived_at: dt.datetime | None = None
    scheduled_delete_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    document_count: int = 0
    total_size_bytes: int = 0


class SpaceEvents:
    """Applies identity's lifecycle events to dossier's spaces."""

    def __init__(self, pool: asyncpg.Pool, keys: HolderKeys) -> None:
        self._pool = pool
        self._keys = keys

    def consumer(self, client: redis.Redis, *, stream: str = IDENTITY_STREAM, block_ms: int = 1000) -> StreamConsumer:
        """The consumer-group reader of identity's events (shared by dossier's replicas)."""
        return StreamConsumer(client, stream, SPACES_GROUP, replica_name("dossier"), self.handle, block_ms=block_ms)

    async def handle(self, event: Event) -> None:
        """One identity event: only state changes matter here."""
        if event.event_type != ACCOUNT_STATE_CHANGED:
            return
        changed = identity_events.AccountStateChangedEvent()
        event.parse(changed)
        holder_id = uuid.UUID(changed.person_id)
        when = changed.occur_time.ToDatetime(tzinfo=dt.UTC) if changed.HasField("occur_time") else dt.datetime.now(dt.UTC)
        delete_at = (
            changed.scheduled_delete_time.ToDatetime(tzinfo=dt.UTC) if changed.HasField("scheduled_delete_time") else None
        )
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim_event(conn, SPACES_GROUP, event.event_id):
                return
            if changed.state == identity_resources.ACCOUNT_STATE_CLOSED:
                await _set_state(conn, holder_id, ARCHIVED, when, archived_at=when, scheduled_delete_at=delete_at)
            elif changed.state == identity_resources.ACCOUNT_STATE_DELETED:
                await _set_state(conn, holder_id, DELETED, when, deleted_at=when)
            elif changed.state in _OPEN_STATES:
                await _set_state(conn, holder_id, OPEN, when)
            else:  # suspended, opposed: consent keeps everyone out; nothing is archived or removed
                return
        if changed.state == identity_resources.ACCOUNT_STATE_DELETED:
            # Unreadable at once; the purge removes the bytes and rows afterwards.
            await self._keys.shred(holder_id, now=when)
            log.info("space of %s deleted: its data key is shredded", holder_id)


async def _set_state(
    conn: asyncpg.Connection,
    holder_id: uuid.UUID,
    state: str,
    when: dt.datetime,
    *,
    archived_at: dt.datetime | None = None,
    scheduled_delete_at: dt.datetime | None = None,
    deleted_at: dt.datetime | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO spaces (holder_id, state, archived_at, scheduled_delete_at, deleted_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (holder_id) DO UPDATE SET
            state = CASE WHEN spaces.state = 'DELETED' THEN spaces.state ELSE EXCLUDED.state END,
            archived_at = CASE WHEN spaces.state = 'DELETED' THEN spaces.archived_at ELSE EXCLUDED.archived_at END,
            scheduled_delete_at = CASE WHEN spaces.state = 'DELETED' THEN spaces.scheduled_delete_at
                                       ELSE EXCLUDED.scheduled_delete_at END,
            deleted_at = COALESCE(spaces.deleted_at, EXCLUDED.deleted_at),
            updated_at = EXCLUDED.updated_at
        """,
        holder_id,
        state,
        archived_at,
        scheduled_delete_at,
        deleted_at,
        when,
    )


class SpacePurger:
    """Removes what is left of deleted spaces: blobs, then rows (retried until it is all gone)."""

    def __init__(self, pool: asyncpg.Pool, blobs: ObjectStore, *, interval_seconds: float = 60.0) -> None:
        self._pool = pool
        self._blobs = blobs
        self._interval = interval_seconds

    async def purge_once(self, *, batch: int = 20) -> int:
        """Purge up to ``batch`` deleted spaces; how many were finished."""
        holders = await self._pool.fetch(
            "SELECT holder_id FROM spaces WHERE state = 'DELETED' AND purged_at IS NULL ORDER BY deleted_at LIMIT $1",
            batch,
        )
        done = 0
        for row in holders:
            holder_id = row["holder_id"]
            keys = await self._pool.fetch("SELECT blob_key FROM documents WHERE holder_id = $1", holder_id)
            for key in keys:
                await self._blobs.delete(key["blob_key"])
            async with self._pool.acquire() as conn, conn.transaction():
                # documents reference each other (version chains): cut the links first.
                await conn.execute(
                    "UPDATE documents SET replaces_document_id = NULL, replaced_by_document_id = NULL WHERE holder_id = $1",
                    holder_id,
                )
                for table in HOLDER_TABLES:
                    await conn.execute(f"DELETE FROM {table} WHERE holder_id = $1", holder_id)
                await conn.execute("UPDATE spaces SET purged_at = now() WHERE holder_id = $1", holder_id)
            done += 1
            log.info("space of %s purged (%d blobs removed)", holder_id, len(keys))
        return done

    async def run(self) -> None:
        """Purge every ``interval`` seconds, forever (a background task of every replica)."""
        while True:
            try:
                await self.purge_once()
            except Exception:  # the next round retries; nothing is marked purged until it is
                log.exception("purging deleted spaces failed; retrying later")
            await asyncio.sleep(self._interval)


# ---------------------------------------------------------------- summary and export


class _Sink:
    """A write-only file that the ZIP writer fills and the stream drains."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._buffer)

    def drain(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


_EXTENSIONS = {
    "application/pdf": ".pdf",
    "image/jpeg": ".jpg",
    "text/plain; charset=utf-8": ".txt",
}


def member_name(record: DocumentRecord) -> str:
    """``documents/<date>-<title>-<short id>.<ext>``: readable, unique, safe in any ZIP tool."""
    plain = unicodedata.normalize("NFKD", record.title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", plain).strip("-").lower()[:60] or "document"
    extension = _EXTENSIONS.get(record.mime_type, ".xml" if "xml" in record.mime_type else ".bin")
    return f"documents/{record.created_at:%Y-%m-%d}-{slug}-{str(record.document_id)[:8]}{extension}"


@dataclass(frozen=True)
class Export:
    """What the first message of an export says, and the ZIP's bytes."""

    file_name: str
    document_count: int
    created_at: dt.datetime
    chunks: AsyncIterator[bytes]
    profile_entry_count: int = 0


class SpaceService:
    """The summary of a space and its export."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        blobs: ObjectStore,
        keys: HolderKeys,
        consent: ConsentClient,
        *,
        document_json: Callable[[DocumentRecord], dict[str, Any]],
        extra_parts: Callable[[uuid.UUID], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self._pool = pool
        self._blobs = blobs
        self._keys = keys
        self._consent = consent
        self._document_json = document_json
        self._extra_parts = extra_parts

    async def _ensure(self, principal: Principal, holder_id: uuid.UUID, operation: str) -> None:
        decision = await self._consent.decide(
            principal, str(holder_id), consent_pb.ACTION_READ, ItemFacts(kind=consent_pb.ITEM_KIND_SPACE)
        )
        if not decision.allowed:
            await access_log.append(
                self._pool,
                NewEntry(
                    holder_id=holder_id,
                    actor=_actor(principal),
                    action="ACTION_READ",
                    operation=operation,
                    item_kind="ITEM_KIND_SPACE",
                    item_id=str(holder_id),
                    reason=decision.reason_code,
                    outcome="denied",
                ),
            )
            raise PermissionDenied(
                f"consent refused this access ({decision.reason_code})", reason=decision.reason_code or "ACCESS_DENIED"
            )

    async def get(self, principal: Principal, holder_id: uuid.UUID) -> SpaceRecord:
        """State, counts and dates of a space."""
        await self._ensure(principal, holder_id, "GetSpace")
        row = await self._pool.fetchrow("SELECT * FROM spaces WHERE holder_id = $1", holder_id)
        totals = await self._pool.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(size_bytes), 0) AS size, min(created_at) AS first"
            " FROM documents WHERE holder_id = $1 AND status <> 'deleted'",
            holder_id,
        )
        return SpaceRecord(
            holder_id=holder_id,
            state=row["state"] if row else OPEN,
            archived_at=row["archived_at"] if row else None,
            scheduled_delete_at=row["scheduled_delete_at"] if row else None,
            deleted_at=row["deleted_at"] if row else None,
            created_at=totals["first"] or (row["created_at"] if row else None),
            document_count=int(totals["n"]),
            total_size_bytes=int(totals["size"]),
        )

    async def export(self, principal: Principal, holder_id: uuid.UUID) -> Export:
        """The whole space as one ZIP, for the holder and those acting for them."""
        if principal.role not in EXPORTERS:
            raise PermissionDenied("only the holder and those acting for them export a space", reason="EXPORT_HOLDER_ONLY")
        await self._ensure(principal, holder_id, "ExportSpace")
        rows = await self._pool.fetch(
            "SELECT * FROM documents WHERE holder_id = $1 AND status <> 'deleted' ORDER BY created_at, document_id",
            holder_id,
        )
        records = [DocumentRecord.from_row(row) for row in rows]
        # What the caller may read (a representative does not get a minor's secrets, and
        # nobody gets what is still kept from the holder): consent decides each one.
        decisions = await self._consent.decide_each(
            principal, str(holder_id), consent_pb.ACTION_READ, [item_facts(record) for record in records]
        )
        readable = [record for record, decision in zip(records, decisions, strict=True) if decision.allowed]
        now = dt.datetime.now(dt.UTC)
        entry = await access_log.append(
            self._pool,
            NewEntry(
                holder_id=holder_id,
                actor=_actor(principal),
                action="ACTION_READ",
                operation="ExportSpace",
                item_kind="ITEM_KIND_SPACE",
                item_id=str(holder_id),
                item_label=f"{len(readable)} documents",
                outcome="allowed",
            ),
            now=now,
        )
        data_key = await self._keys.data_key(holder_id) if any(r.sealed for r in readable) else b""
        extra = await self._extra_parts(holder_id) if self._extra_parts is not None else {}
        return Export(
            file_name=f"carnet-export-{now:%Y-%m-%d}.zip",
            document_count=len(readable),
            created_at=now,
            chunks=self._zip(holder_id, readable, data_key, extra, now, entry.entry_hash),
            profile_entry_count=len(extra.get("profile.json", [])),
        )

    async def _zip(
        self,
        holder_id: uuid.UUID,
        records: list[DocumentRecord],
        data_key: bytes,
        extra: dict[str, Any],
        now: dt.datetime,
        log_head: str,
    ) -> AsyncIterator[bytes]:
        sink = _Sink()
        stamp = now.timetuple()[:6]
        with zipfile.ZipFile(sink, "w") as archive:
            listed = []
            for record in records:
                name = member_name(record)
                info = zipfile.ZipInfo(name, date_time=record.created_at.timetuple()[:6])
                info.compress_type = zipfile.ZIP_STORED  # PDFs and JPEGs are compressed already
                digest = hashlib.sha256()
                stored = self._blobs.stream(record.blob_key)
                plain = open_stream(data_key, record.blob_key, stored) if record.sealed else stored
                with archive.open(info, "w") as member:
                    try:
                        async for chunk in plain:
                            digest.update(chunk)
                            member.write(chunk)
                            if len(sink) >= 256 * 1024:
                                yield sink.drain()
                    except SealedBlobError as exc:
                        raise DataLoss(f"document {record.document_id} failed its integrity check: {exc}",
                                       reason="CONTENT_INTEGRITY_FAILED") from None
                if digest.hexdigest() != record.sha256:
                    raise DataLoss(f"document {record.document_id} failed its integrity check",
                                   reason="CONTENT_INTEGRITY_FAILED")
                listed.append({**self._document_json(record), "file": name})
                yield sink.drain()
            entries, _, _ = await access_log.list_entries(
                self._pool, holder_id, access_log.EntryFilter(), None, 1_000_000
            )
            parts: dict[str, Any] = {
                "documents.json": listed,
                "access-log.json": [_entry_json(entry) for entry in reversed(entries)],
                **extra,
            }
            for part, content in parts.items():
                info = zipfile.ZipInfo(part, date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, json.dumps(content, ensure_ascii=False, indent=2, default=str))
                yield sink.drain()
            manifest = {
                "format": "carnet-export/1",
                "holder_id": str(holder_id),
                "created_at": now.isoformat(),
                "document_count": len(listed),
                "parts": ["documents/", *parts],
                "access_log_head_hash": log_head,
            }
            info = zipfile.ZipInfo("manifest.json", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, json.dumps(manifest, ensure_ascii=False, indent=2))
        yield sink.drain()



def _entry_json(entry: access_log.Entry) -> dict[str, Any]:
    return {
        "sequence": entry.sequence,
        "time": entry.occur_time.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "operation": entry.operation,
        "item": {"kind": entry.item_kind, "id": entry.item_id, "label": entry.item_label},
        "outcome": entry.outcome,
        "reason": entry.reason,
        "break_glass_reason": entry.break_glass_reason,
        "entry_hash": entry.entry_hash,
    }
