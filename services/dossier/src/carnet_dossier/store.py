"""SQL of the dossier schema (documents and the access log)."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from carnet_dossier.access_log import LOCK_HEAD_SQL, ChainHead
from carnet_dossier.domain import Author, DocumentFormat, DocumentOrder, NewDocument, PageCursor, searchable
from carnet_dossier.keys import LIVE_KEY_SQL

SCHEMA = "dossier"


@dataclass(frozen=True)
class DocumentRecord:
    """A stored document's metadata."""

    document_id: uuid.UUID
    logical_id: uuid.UUID
    version: int
    holder_id: uuid.UUID
    unique_id: str
    type_code: str
    class_code: str
    format: DocumentFormat
    mime_type: str
    title: str
    service_time: dt.datetime | None
    author: Author
    hidden_from_professionals: bool
    invisible_to_holder: bool
    invisible_to_representatives: bool
    holder_own: bool
    status: str
    size_bytes: int
    sha256: str
    blob_key: str
    accession_number: str
    replaces_document_id: uuid.UUID | None
    deposited_by: dict[str, Any]
    created_at: dt.datetime
    sealed: bool = False
    replaced_by_document_id: uuid.UUID | None = None
    updated_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> DocumentRecord:
        """Map a ``documents`` row."""
        return cls(
            document_id=row["document_id"],
            logical_id=row["logical_id"],
            version=row["version"],
            holder_id=row["holder_id"],
            unique_id=row["unique_id"],
            type_code=row["type_code"],
            class_code=row["class_code"],
            format=DocumentFormat[row["format"]],
            mime_type=row["mime_type"],
            title=row["title"],
            service_time=row["service_time"],
            author=Author(row["author_rpps"], row["author_profession"], row["author_organisation"], row["author_name"]),
            hidden_from_professionals=row["hidden_from_professionals"],
            invisible_to_holder=row["invisible_to_holder"],
            invisible_to_representatives=row["invisible_to_representatives"],
            holder_own=row["holder_own"],
            status=row["status"],
            size_bytes=row["size_bytes"],
            sha256=row["sha256"],
            blob_key=row["blob_key"],
            accession_number=row["accession_number"],
            replaces_document_id=row["replaces_document_id"],
            deposited_by=row["deposited_by"],
            created_at=row["created_at"],
            sealed=row["sealed"],
            replaced_by_document_id=row["replaced_by_document_id"],
            updated_at=row["updated_at"],
        )


_INSERT_DOCUMENT = """
    INSERT INTO documents (
        document_id, logical_id, version, holder_id, unique_id, type_code, class_code, format, mime_type,
        title, service_time, author_rpps, author_profession, author_organisation, author_name,
        hidden_from_professionals, invisible_to_holder, invisible_to_representatives, holder_own,
        size_bytes, sha256, blob_key, accession_number, deposited_by, sealed, replaces_document_id, title_search)
    VALUES ($1, $24, $25, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
            $21, $22, $23, $26, $27)
    RETURNING *
"""
# The same insert, the holder's access-log chain head locked for the entry that goes with it, and
# whether the key the content was sealed with is still live: one round trip instead of three.
_INSERT_DOCUMENT_LOCKING_HEAD = (
    f"WITH document AS ({_INSERT_DOCUMENT}), head AS ({LOCK_HEAD_SQL.format(holder='$2')})"
    " SELECT document.*, head.sequence AS chain_sequence, head.head_hash AS chain_head_hash,"
    f" ({LIVE_KEY_SQL.format(holder='$2')}) AS live_keys FROM document, head"
)


def _insert_arguments(
    document_id: uuid.UUID,
    holder_id: uuid.UUID,
    new: NewDocument,
    holder_own: bool,
    size_bytes: int,
    sha256: str,
    blob_key: str,
    sealed: bool,
    deposited_by: dict[str, Any],
    replaces: DocumentRecord | None,
) -> tuple[Any, ...]:
    return (
        document_id,
        holder_id,
        new.unique_id,
        new.type_code,
        new.class_code,
        new.format.name,
        new.format.value,
        new.title,
        new.service_time,
        new.author.rpps,
        new.author.profession_code,
        new.author.organisation_id,
        new.author.display_name,
        new.hidden_from_professionals,
        new.invisible_to_holder,
        new.invisible_to_representatives,
        holder_own,
        size_bytes,
        sha256,
        blob_key,
        new.accession_number,
        deposited_by,
        sealed,
        replaces.logical_id if replaces else document_id,
        replaces.version + 1 if replaces else 1,
        replaces.document_id if replaces else None,
        searchable(new.title),
    )


async def insert_document(
    conn: asyncpg.Connection,
    *,
    document_id: uuid.UUID,
    holder_id: uuid.UUID,
    new: NewDocument,
    holder_own: bool,
    size_bytes: int,
    sha256: str,
    blob_key: str,
    sealed: bool,
    deposited_by: dict[str, Any],
    replaces: DocumentRecord | None = None,
) -> DocumentRecord:
    """Insert a first version, or the next version of ``replaces``; UniqueViolationError if the
    unique_id is taken (or, for a new version, if the replaced one is no longer current)."""
    row = await conn.fetchrow(
        _INSERT_DOCUMENT,
        *_insert_arguments(
            document_id, holder_id, new, holder_own, size_bytes, sha256, blob_key, sealed, deposited_by, replaces
        ),
    )
    return DocumentRecord.from_row(row)


async def insert_document_locking_head(
    conn: asyncpg.Connection,
    *,
    document_id: uuid.UUID,
    holder_id: uuid.UUID,
    new: NewDocument,
    holder_own: bool,
    size_bytes: int,
    sha256: str,
    blob_key: str,
    sealed: bool,
    deposited_by: dict[str, Any],
    replaces: DocumentRecord | None = None,
) -> tuple[DocumentRecord, ChainHead, bool]:
    """:func:`insert_document`, and in the same statement the holder's access-log chain head locked
    (for :func:`carnet_dossier.access_log.append_at` in the caller's transaction) and whether
    the holder's data key is still live (False: shredded since the content was sealed; the
    caller rolls back)."""
    row = await conn.fetchrow(
        _INSERT_DOCUMENT_LOCKING_HEAD,
        *_insert_arguments(
            document_id, holder_id, new, holder_own, size_bytes, sha256, blob_key, sealed, deposited_by, replaces
        ),
    )
    return DocumentRecord.from_row(row), ChainHead(row["chain_sequence"], row["chain_head_hash"]), row["live_keys"] > 0


async def get_document_for_update(conn: asyncpg.Connection, document_id: uuid.UUID) -> DocumentRecord | None:
    """A document, locked until the end of the transaction."""
    row = await conn.fetchrow("SELECT * FROM documents WHERE document_id = $1 FOR UPDATE", document_id)
    return DocumentRecord.from_row(row) if row else None


_CHANGEABLE_COLUMNS = frozenset(
    {
        "title",
        "type_code",
        "class_code",
        "service_time",
        "hidden_from_professionals",
        "invisible_to_holder",
        "invisible_to_representatives",
        "status",
        "replaced_by_document_id",
        "announced_at",
        "deleted_at",
        "delete_reason",
        "title_search",
    }
)


async def update_document(
    conn: asyncpg.Connection, document_id: uuid.UUID, values: dict[str, Any], now: dt.datetime
) -> DocumentRecord:
    """Set some columns (named by the caller's checked change) and ``updated_at``."""
    unknown = set(values) - _CHANGEABLE_COLUMNS
    if unknown:
        raise ValueError(f"not changeable: {sorted(unknown)}")
    names = list(values)
    assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(names, start=3))
    row = await conn.fetchrow(
        f"UPDATE documents SET updated_at = $2, {assignments} WHERE document_id = $1 RETURNING *",
        document_id,
        now,
        *(values[name] for name in names),
    )
    return DocumentRecord.from_row(row)


async def get_document(conn: asyncpg.Connection | asyncpg.Pool, document_id: uuid.UUID) -> DocumentRecord | None:
    """A document by id."""
    row = await conn.fetchrow("SELECT * FROM documents WHERE document_id = $1", document_id)
    return DocumentRecord.from_row(row) if row else None


async def find_by_unique_id(conn: asyncpg.Connection | asyncpg.Pool, unique_id: str) -> DocumentRecord | None:
    """A document by the depositor's unique id."""
    row = await conn.fetchrow("SELECT * FROM documents WHERE unique_id = $1", unique_id)
    return DocumentRecord.from_row(row) if row else None


@dataclass(frozen=True)
class DocumentFilter:
    """Filters of a listing."""

    type_code: str = ""
    class_code: str = ""
    author_rpps: str = ""
    organisation_id: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    statuses: tuple[str, ...] = ("approved",)
    title_query: str = ""
    accession_number: str = ""
    exclude_flags: tuple[str, ...] = ()
    """Visibility columns whose documents are left out (``invisible_to_holder``…): what the caller may never see."""


def _document_filters(holder_id: uuid.UUID, filters: DocumentFilter) -> tuple[list[str], list[Any]]:
    clauses = ["holder_id = $1", "status = ANY($2::text[])"]
    args: list[Any] = [holder_id, list(filters.statuses)]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(f"${len(args)}"))

    if filters.type_code:
        add("type_code = {}", filters.type_code)
    if filters.class_code:
        add("class_code = {}", filters.class_code)
    if filters.author_rpps:
        add("author_rpps = {}", filters.author_rpps)
    if filters.organisation_id:
        add("author_organisation = {}", filters.organisation_id)
    if filters.since is not None:
        add("coalesce(service_time, created_at) >= {}", filters.since)
    if filters.until is not None:
        add("coalesce(service_time, created_at) < {}", filters.until)
    if filters.accession_number:
        add("accession_number = {}", filters.accession_number)
    for word in searchable(filters.title_query).split():
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        add("title_search LIKE {}", f"%{escaped}%")
    for flag in filters.exclude_flags:
        clauses.append(f"NOT {flag}")
    return clauses, args


async def list_documents(
    conn: asyncpg.Connection | asyncpg.Pool,
    holder_id: uuid.UUID,
    filters: DocumentFilter,
    cursor: PageCursor | None,
    limit: int,
    order: DocumentOrder = DocumentOrder.SERVICE_TIME_DESC,
) -> list[DocumentRecord]:
    """A page of a holder's documents in ``order``, after ``cursor``."""
    clauses, args = _document_filters(holder_id, filters)
    direction = "DESC" if order.descending else "ASC"
    if cursor is not None:
        args.extend([cursor.value, cursor.document_id])
        comparison = "<" if order.descending else ">"
        clauses.append(f"({order.expression}, document_id) {comparison} (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    sql = (
        f"SELECT * FROM documents WHERE {' AND '.join(clauses)}"
        f" ORDER BY {order.expression} {direction}, document_id {direction} LIMIT ${len(args)}"
    )
    if not _narrowed(filters):
        rows = await conn.fetch(sql, *args)
    else:
        # A filter the index does not hold (type, title, author…) matches a few percent of a
        # holder's documents. Planned for the values at hand, the page walks the date index
        # until it has enough (1-3 ms for 10 000 documents); the generic plan PostgreSQL moves
        # to after five runs of a prepared statement can instead sort every document of the
        # holder (20-30 ms measured). These pages are therefore always planned for their values.
        async with conn.acquire() if isinstance(conn, asyncpg.Pool) else _same(conn) as held, held.transaction():
            await held.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            rows = await held.fetch(sql, *args)
    return [DocumentRecord.from_row(row) for row in rows]


def _narrowed(filters: DocumentFilter) -> bool:
    """Whether a listing filters on more than the holder, the dates and the current documents."""
    return bool(
        filters.statuses != ("approved",)
        or filters.type_code
        or filters.class_code
        or filters.author_rpps
        or filters.organisation_id
        or filters.accession_number
        or filters.title_query.strip()
    )


@contextlib.asynccontextmanager
async def _same(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    yield conn


async def count_documents(conn: asyncpg.Connection | asyncpg.Pool, holder_id: uuid.UUID, filters: DocumentFilter) -> int:
    """How many of a holder's documents match the filters."""
    clauses, args = _document_filters(holder_id, filters)
    count: int = await conn.fetchval(f"SELECT count(*) FROM documents WHERE {' AND '.join(clauses)}", *args)
    return count
