"""SQL of secure messaging (schema ``notify``): threads, participants, read state, messages, attachments.

A message, the attachments it carries and the NEW_MESSAGE notifications it causes are
written in one transaction: a message is never posted without its notices, nor a
notice sent for a message that was rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from carnet_kit.auth import Principal
from carnet_kit.errors import NotFound
from carnet_notify.domain import Cursor, PreparedNotification
from carnet_notify.messaging import NewThread, ThreadAccess, ThreadView
from carnet_notify.store import insert_notification

_ACTOR_FIELDS = ("subject", "role", "profession_code", "rpps", "organisation_id", "client_id", "acting_for")


def actor_json(principal: Principal) -> dict[str, str]:
    """What is kept of a caller in a thread or a message (no token id, no scopes)."""
    return {name: str(getattr(principal, name)) for name in _ACTOR_FIELDS}


def actor_principal(stored: Any) -> Principal:
    """The principal a stored actor describes."""
    value = {name: str(stored.get(name, "")) for name in _ACTOR_FIELDS}
    return Principal(
        subject=value["subject"],
        role=value["role"],
        profession_code=value["profession_code"],
        rpps=value["rpps"],
        organisation_id=value["organisation_id"],
        client_id=value["client_id"],
        acting_for=value["acting_for"],
    )


@dataclass(frozen=True)
class ParticipantRecord:
    """A participant and up to when they have read the thread."""

    subject: str
    role: str
    display_name: str
    last_read_time: datetime | None


@dataclass(frozen=True)
class ThreadRecord:
    """A thread, with its participants and the unread count of the reader it was read for."""

    thread_id: uuid.UUID
    holder_id: str
    subject: str
    organisation_id: str
    started_by: Principal
    participants: tuple[ParticipantRecord, ...]
    message_count: int
    unread_count: int
    create_time: datetime
    last_message_time: datetime


@dataclass(frozen=True)
class AttachmentRecord:
    """An uploaded attachment: what it is, where its sealed content is, and with which key."""

    attachment_id: uuid.UUID
    thread_id: uuid.UUID | None
    message_id: uuid.UUID | None
    uploaded_by: str
    uploaded_by_role: str
    file_name: str
    mime_type: str
    size_bytes: int
    sha256: str
    blob_key: str
    key_owner_id: uuid.UUID
    saved_document_id: str
    saved_as: dict[str, str] | None
    create_time: datetime

    def uploaded_by_caller(self, caller: Principal) -> bool:
        """Whether ``caller`` uploaded it."""
        return (self.uploaded_by, self.uploaded_by_role) == (caller.subject, caller.role)


@dataclass(frozen=True)
class MessageRecord:
    """A posted message with its attachments, in the order they were posted."""

    message_id: uuid.UUID
    thread_id: uuid.UUID
    sender: Principal
    body: str
    attachments: tuple[AttachmentRecord, ...]
    create_time: datetime
    sender_display_name: str = ""


@dataclass(frozen=True)
class PostedAttachment:
    """An attachment a message carries, and where its sealed content is from now on."""

    attachment_id: uuid.UUID
    blob_key: str
    key_owner_id: uuid.UUID


@dataclass(frozen=True)
class MessageToPost:
    """A validated message, ready to store with the notices it causes."""

    message_id: uuid.UUID
    sender: Principal
    body: str
    request_id: str
    attachments: tuple[PostedAttachment, ...]
    notifications: tuple[PreparedNotification, ...]
    sender_display_name: str = ""


@dataclass(frozen=True)
class NewAttachment:
    """An upload whose sealed content is already in the object store."""

    attachment_id: uuid.UUID
    thread_id: uuid.UUID | None
    uploader: Principal
    file_name: str
    mime_type: str
    size_bytes: int
    sha256: str
    blob_key: str
    key_owner_id: uuid.UUID


_ATTACHMENT_COLUMNS = (
    "attachment_id, thread_id, message_id, uploaded_by, uploaded_by_role, file_name, mime_type, size_bytes,"
    " sha256, blob_key, key_owner_id, saved_document_id, saved_as, create_time"
)
_THREAD_COLUMNS = (
    "t.thread_id, t.holder_id, t.subject, t.organisation_id, t.started_by, t.message_count, t.create_time,"
    " t.last_message_time"
)
# Messages of thread t the reader ($1) did not write and has not read.
_UNREAD = (
    "FROM thread_messages m WHERE m.thread_id = t.thread_id AND m.sender_subject <> $1"
    " AND m.create_time > COALESCE((SELECT r.last_read_time FROM thread_reads r"
    " WHERE r.thread_id = t.thread_id AND r.reader = $1), '-infinity'::timestamptz)"
)


def _attachment(row: Any) -> AttachmentRecord:
    return AttachmentRecord(
        attachment_id=row["attachment_id"],
        thread_id=row["thread_id"],
        message_id=row["message_id"],
        uploaded_by=row["uploaded_by"],
        uploaded_by_role=row["uploaded_by_role"],
        file_name=row["file_name"],
        mime_type=row["mime_type"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        blob_key=row["blob_key"],
        key_owner_id=row["key_owner_id"],
        saved_document_id=row["saved_document_id"],
        saved_as=dict(row["saved_as"]) if row["saved_as"] is not None else None,
        create_time=row["create_time"],
    )


async def _participants(
    conn: asyncpg.Connection, thread_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ParticipantRecord]]:
    rows = await conn.fetch(
        "SELECT p.thread_id, p.subject, p.role, p.display_name, r.last_read_time FROM thread_participants p"
        " LEFT JOIN thread_reads r ON r.thread_id = p.thread_id AND r.reader = p.subject"
        " WHERE p.thread_id = ANY($1::uuid[]) ORDER BY p.join_time, p.subject",
        list(thread_ids),
    )
    found: dict[uuid.UUID, list[ParticipantRecord]] = {}
    for row in rows:
        found.setdefault(row["thread_id"], []).append(
            ParticipantRecord(row["subject"], row["role"], row["display_name"], row["last_read_time"])
        )
    return found


async def _threads(conn: asyncpg.Connection, rows: Sequence[Any]) -> list[ThreadRecord]:
    participants = await _participants(conn, [row["thread_id"] for row in rows])
    return [
        ThreadRecord(
            thread_id=row["thread_id"],
            holder_id=row["holder_id"],
            subject=row["subject"],
            organisation_id=row["organisation_id"],
            started_by=actor_principal(row["started_by"]),
            participants=tuple(participants.get(row["thread_id"], ())),
            message_count=row["message_count"],
            unread_count=row["unread_count"],
            create_time=row["create_time"],
            last_message_time=row["last_message_time"],
        )
        for row in rows
    ]


async def _thread(conn: asyncpg.Connection, thread_id: uuid.UUID, reader: str) -> ThreadRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_THREAD_COLUMNS}, (SELECT count(*) {_UNREAD}) AS unread_count FROM threads t WHERE t.thread_id = $2",
        reader,
        thread_id,
    )
    if row is None:
        return None
    (record,) = await _threads(conn, [row])
    return record


async def _messages(conn: asyncpg.Connection, rows: Sequence[Any]) -> list[MessageRecord]:
    attachments = await conn.fetch(
        f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments WHERE message_id = ANY($1::uuid[])"
        " ORDER BY message_id, position",
        [row["message_id"] for row in rows],
    )
    by_message: dict[uuid.UUID, list[AttachmentRecord]] = {}
    for attachment in attachments:
        by_message.setdefault(attachment["message_id"], []).append(_attachment(attachment))
    names = {
        (row["thread_id"], row["subject"]): row["display_name"]
        for row in await conn.fetch(
            "SELECT thread_id, subject, display_name FROM thread_participants WHERE thread_id = ANY($1::uuid[])",
            list({row["thread_id"] for row in rows}),
        )
    }
    messages = []
    for row in rows:
        sender = actor_principal(row["sender"])
        messages.append(
            MessageRecord(
                message_id=row["message_id"],
                thread_id=row["thread_id"],
                sender=sender,
                body=row["body"],
                attachments=tuple(by_message.get(row["message_id"], ())),
                create_time=row["create_time"],
                sender_display_name=names.get((row["thread_id"], sender.subject), ""),
            )
        )
    return messages


class MessagingStore:
    """Reads and writes the messaging tables through a pool bound to the notify schema."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------------ threads

    async def thread_access(self, thread_id: uuid.UUID) -> ThreadAccess | None:
        """What access to a thread depends on; None if there is no such thread."""
        async with self._pool.acquire() as conn:
            holder_id = await conn.fetchval("SELECT holder_id FROM threads WHERE thread_id = $1", thread_id)
            if holder_id is None:
                return None
            rows = await conn.fetch("SELECT subject, role FROM thread_participants WHERE thread_id = $1", thread_id)
        return ThreadAccess(thread_id, holder_id, frozenset((row["subject"], row["role"]) for row in rows))

    async def get_thread(self, thread_id: uuid.UUID, reader: str) -> ThreadRecord | None:
        """A thread with the unread count of ``reader`` (a subject)."""
        async with self._pool.acquire() as conn:
            return await _thread(conn, thread_id, reader)

    async def thread_started_with(self, starter: str, request_id: str) -> uuid.UUID | None:
        """The thread ``starter`` already started with this idempotency key, if any."""
        async with self._pool.acquire() as conn:
            found: uuid.UUID | None = await conn.fetchval(
                "SELECT thread_id FROM threads WHERE started_by_subject = $1 AND request_id = $2", starter, request_id
            )
        return found

    async def list_threads(
        self,
        visible: ThreadView,
        wanted: ThreadView,
        reader: str,
        *,
        unread_only: bool,
        after: Cursor | None,
        limit: int,
    ) -> tuple[list[ThreadRecord], int]:
        """A page of the threads ``visible`` allows and ``wanted`` narrows to, latest message first; and the count."""
        args: list[Any] = [reader]
        # $1 is the reader, for the unread counts; typed here for the queries that do not count.
        conditions = ["$1::text IS NOT NULL"]

        def add(condition: str, value: Any) -> None:
            args.append(value)
            conditions.append(condition.replace("?", f"${len(args)}"))

        for view in (visible, wanted):
            if view.holder_id:
                add("t.holder_id = ?", view.holder_id)
            if view.participant_subject:
                add(
                    "EXISTS (SELECT 1 FROM thread_participants p WHERE p.thread_id = t.thread_id AND p.subject = ?)",
                    view.participant_subject,
                )
        if unread_only:
            conditions.append(f"EXISTS (SELECT 1 {_UNREAD})")
        async with self._pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM threads t WHERE {' AND '.join(conditions)}", *args)
            if after is not None:
                args.extend((after.time, after.row_id))
                conditions.append(f"(t.last_message_time, t.thread_id) < (${len(args) - 1}, ${len(args)})")
            args.append(limit)
            rows = await conn.fetch(
                f"SELECT {_THREAD_COLUMNS}, (SELECT count(*) {_UNREAD}) AS unread_count FROM threads t"
                f" WHERE {' AND '.join(conditions)}"
                f" ORDER BY t.last_message_time DESC, t.thread_id DESC LIMIT ${len(args)}",
                *args,
            )
            return await _threads(conn, rows), int(total)

    async def mark_read(self, thread_id: uuid.UUID, reader: str) -> ThreadRecord | None:
        """Mark the thread read up to now for ``reader``; the thread as they now see it."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO thread_reads (thread_id, reader, last_read_time) VALUES ($1, $2, clock_timestamp())"
                " ON CONFLICT (thread_id, reader)"
                " DO UPDATE SET last_read_time = GREATEST(thread_reads.last_read_time, EXCLUDED.last_read_time)",
                thread_id,
                reader,
            )
            return await _thread(conn, thread_id, reader)

    async def create_thread(
        self, thread_id: uuid.UUID, new: NewThread, request_id: str, first: MessageToPost, *, holder_name: str = ""
    ) -> ThreadRecord:
        """Start a thread with its first message, its participants (starter and holder) and the notices.

        ``asyncpg.UniqueViolationError`` when the starter used ``request_id`` meanwhile;
        NOT_FOUND ``ATTACHMENT_NOT_FOUND`` when an attachment was posted meanwhile.
        """
        starter = first.sender
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO threads (thread_id, holder_id, subject, organisation_id, started_by, started_by_subject,"
                " request_id, last_message_time) VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''), clock_timestamp())",
                thread_id,
                new.holder_id,
                new.subject,
                new.organisation_id,
                actor_json(starter),
                starter.subject,
                request_id,
            )
            await conn.executemany(
                "INSERT INTO thread_participants (thread_id, subject, role, display_name) VALUES ($1, $2, $3, $4)",
                [
                    (thread_id, starter.subject, starter.role, first.sender_display_name),
                    (thread_id, new.holder_id, "holder", holder_name),
                ],
            )
            # The first message's idempotency key is the thread's.
            await self._insert_message(conn, thread_id, first, request_id="")
            record = await _thread(conn, thread_id, starter.subject)
        assert record is not None
        return record

    # ------------------------------------------------------------------ messages

    async def message_posted_with(self, sender: str, request_id: str) -> MessageRecord | None:
        """The message ``sender`` already posted with this idempotency key, if any."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT message_id, thread_id, sender, body, create_time FROM thread_messages"
                " WHERE sender_subject = $1 AND request_id = $2",
                sender,
                request_id,
            )
            if row is None:
                return None
            (message,) = await _messages(conn, [row])
        return message

    async def post_message(self, thread_id: uuid.UUID, message: MessageToPost) -> MessageRecord:
        """Add a message to a thread, with its attachments and notices; the sender takes part from now on.

        ``asyncpg.UniqueViolationError`` when the sender used the request id meanwhile;
        NOT_FOUND ``ATTACHMENT_NOT_FOUND`` when an attachment was posted meanwhile.
        """
        sender = message.sender
        async with self._pool.acquire() as conn, conn.transaction():
            # A name learnt late (identity was down when the participant joined) is filled in.
            await conn.execute(
                "INSERT INTO thread_participants (thread_id, subject, role, display_name) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (thread_id, subject) DO UPDATE SET display_name = EXCLUDED.display_name"
                " WHERE thread_participants.display_name = '' AND EXCLUDED.display_name <> ''",
                thread_id,
                sender.subject,
                sender.role,
                message.sender_display_name,
            )
            row = await self._insert_message(conn, thread_id, message, request_id=message.request_id)
            (posted,) = await _messages(conn, [row])
        return posted

    async def _insert_message(
        self, conn: asyncpg.Connection, thread_id: uuid.UUID, message: MessageToPost, *, request_id: str
    ) -> Any:
        sender = message.sender
        row = await conn.fetchrow(
            "INSERT INTO thread_messages (message_id, thread_id, sender, sender_subject, body, request_id)"
            " VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''))"
            " RETURNING message_id, thread_id, sender, body, create_time",
            message.message_id,
            thread_id,
            actor_json(sender),
            sender.subject,
            message.body,
            request_id,
        )
        await conn.execute(
            "UPDATE threads SET message_count = message_count + 1,"
            " last_message_time = GREATEST(last_message_time, $2) WHERE thread_id = $1",
            thread_id,
            row["create_time"],
        )
        # Writing in a thread is having read it up to one's own message.
        await conn.execute(
            "INSERT INTO thread_reads (thread_id, reader, last_read_time) VALUES ($1, $2, $3)"
            " ON CONFLICT (thread_id, reader)"
            " DO UPDATE SET last_read_time = GREATEST(thread_reads.last_read_time, EXCLUDED.last_read_time)",
            thread_id,
            sender.subject,
            row["create_time"],
        )
        for position, attachment in enumerate(message.attachments):
            taken = await conn.fetchval(
                "UPDATE attachments SET thread_id = $2, message_id = $3, position = $4, blob_key = $5, key_owner_id = $6"
                " WHERE attachment_id = $1 AND uploaded_by = $7 AND uploaded_by_role = $8 AND message_id IS NULL"
                " AND (thread_id IS NULL OR thread_id = $2) RETURNING attachment_id",
                attachment.attachment_id,
                thread_id,
                message.message_id,
                position,
                attachment.blob_key,
                attachment.key_owner_id,
                sender.subject,
                sender.role,
            )
            if taken is None:
                raise NotFound(
                    "the attachment was posted meanwhile",
                    reason="ATTACHMENT_NOT_FOUND",
                    metadata={"attachment_id": str(attachment.attachment_id)},
                )
        for prepared in message.notifications:
            await insert_notification(conn, prepared, request_id="", created_by=f"{sender.role}:{sender.subject}")
        return row

    async def list_messages(self, thread_id: uuid.UUID, after: Cursor | None, limit: int) -> list[MessageRecord]:
        """A page of a thread's messages, oldest first."""
        args: list[Any] = [thread_id]
        condition = ""
        if after is not None:
            args.extend((after.time, after.row_id))
            condition = " AND (create_time, message_id) > ($2, $3)"
        args.append(limit)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT message_id, thread_id, sender, body, create_time FROM thread_messages"
                f" WHERE thread_id = $1{condition} ORDER BY create_time, message_id LIMIT ${len(args)}",
                *args,
            )
            return await _messages(conn, rows)

    # ------------------------------------------------------------------ attachments

    async def insert_attachment(self, new: NewAttachment) -> AttachmentRecord:
        """Record an upload whose sealed content is stored."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "INSERT INTO attachments (attachment_id, thread_id, uploaded_by, uploaded_by_role, file_name, mime_type,"
                " size_bytes, sha256, blob_key, key_owner_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                f" RETURNING {_ATTACHMENT_COLUMNS}",
                new.attachment_id,
                new.thread_id,
                new.uploader.subject,
                new.uploader.role,
                new.file_name,
                new.mime_type,
                new.size_bytes,
                new.sha256,
                new.blob_key,
                new.key_owner_id,
            )
        return _attachment(row)

    async def get_attachment(self, attachment_id: uuid.UUID) -> AttachmentRecord | None:
        """An attachment by id."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments WHERE attachment_id = $1", attachment_id
            )
        return None if row is None else _attachment(row)

    async def get_attachments(self, attachment_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, AttachmentRecord]:
        """Attachments by id (absent ones left out)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments WHERE attachment_id = ANY($1::uuid[])",
                list(attachment_ids),
            )
        return {row["attachment_id"]: _attachment(row) for row in rows}

    async def mark_saved(
        self, attachment_id: uuid.UUID, document_id: str, saved_as: dict[str, str]
    ) -> AttachmentRecord:
        """Record the dossier document made from an attachment (the first one stays if two saves race)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "UPDATE attachments SET saved_document_id = CASE WHEN saved_document_id = '' THEN $2"
                " ELSE saved_document_id END, saved_as = COALESCE(saved_as, $3)"
                f" WHERE attachment_id = $1 RETURNING {_ATTACHMENT_COLUMNS}",
                attachment_id,
                document_id,
                saved_as,
            )
        if row is None:
            raise NotFound("no such attachment", reason="ATTACHMENT_NOT_FOUND")
        return _attachment(row)
