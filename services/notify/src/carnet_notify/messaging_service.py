"""Secure-messaging use cases: start a thread, post, read, list, mark read; and the notices they cause."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from carnet_kit.auth import Principal
from carnet_kit.errors import NotFound
from carnet_kit.paging import page_size
from carnet_notify.attachments import AttachmentService, Binding, thread_not_found
from carnet_notify.domain import (
    Cursor,
    PreparedNotification,
    decode_page_token,
    encode_page_token,
    is_email_address,
    prepare_notification,
)
from carnet_notify.kinds import PROVIDER_CHANNELS, Channel, Kind
from carnet_notify.messaging import (
    MESSAGES_PAGE_DEFAULT,
    MESSAGES_PAGE_MAX,
    THREADS_PAGE_DEFAULT,
    THREADS_PAGE_MAX,
    NewMessage,
    Participant,
    ThreadAccess,
    acts_for_holder,
    check_new_message,
    check_new_thread,
    check_request_id,
    check_thread_reader,
    check_thread_starter,
    check_thread_writer,
    new_message_intents,
    thread_view,
)
from carnet_notify.messaging_store import (
    AttachmentRecord,
    MessageRecord,
    MessageToPost,
    MessagingStore,
    ThreadRecord,
)
from carnet_notify.peers import HolderContacts, ParticipantNames
from carnet_notify.store import NotifyStore


def access_of(thread: ThreadRecord) -> ThreadAccess:
    """What access to a stored thread depends on."""
    return ThreadAccess(thread.thread_id, thread.holder_id, frozenset((p.subject, p.role) for p in thread.participants))


@dataclass(frozen=True)
class ThreadPage:
    """A page of threads, the token of the next one, and how many match."""

    threads: list[ThreadRecord]
    next_page_token: str
    total_size: int


@dataclass(frozen=True)
class MessagePage:
    """A page of messages, oldest first, and the token of the next one."""

    messages: list[MessageRecord]
    next_page_token: str


class MessagingService:
    """Threads and messages, with the NEW_MESSAGE notices written in the same transaction as the message."""

    def __init__(
        self,
        store: MessagingStore,
        notifications: NotifyStore,
        attachments: AttachmentService,
        contacts: HolderContacts,
        names: ParticipantNames,
        *,
        on_new_deliveries: Callable[[], None],
        unavailable: Mapping[Channel, str] | None = None,
    ) -> None:
        self._names = names
        self._store = store
        self._notifications = notifications
        self._attachments = attachments
        self._contacts = contacts
        self._on_new_deliveries = on_new_deliveries
        self._unavailable = dict(unavailable or {})

    async def _thread(self, thread_id: uuid.UUID, reader: str) -> ThreadRecord:
        record = await self._store.get_thread(thread_id, reader)
        if record is None:
            raise thread_not_found()
        return record

    async def _unposted(
        self, caller: Principal, message: NewMessage, thread_id: uuid.UUID | None, field_prefix: str
    ) -> list[AttachmentRecord]:
        """The attachments a message names: uploaded by the caller, for this thread (or one to start), not posted."""
        found = await self._store.get_attachments(message.attachment_ids)
        chosen: list[AttachmentRecord] = []
        for index, attachment_id in enumerate(message.attachment_ids):
            record = found.get(attachment_id)
            if (
                record is None
                or not record.uploaded_by_caller(caller)
                or record.message_id is not None
                or (record.thread_id is not None and record.thread_id != thread_id)
            ):
                raise NotFound(
                    "no such attachment to post: upload it first, for this conversation",
                    reason="ATTACHMENT_NOT_FOUND",
                    metadata={
                        "attachment_id": str(attachment_id),
                        "field": f"{field_prefix}.attachments[{index}].attachment_id",
                    },
                )
            chosen.append(record)
        return chosen

    async def _notices(
        self,
        sender: Principal,
        *,
        holder_id: str,
        participants: Sequence[Participant],
        thread_id: uuid.UUID,
        message_id: uuid.UUID,
        thread_subject: str,
    ) -> tuple[PreparedNotification, ...]:
        """The NEW_MESSAGE notifications of a message, ready to store with it.

        The holder's e-mail is asked of identity only when an e-mail would go out.
        """
        holder_email = ""
        if not acts_for_holder(sender, holder_id, write=False):
            preferences = await self._notifications.get_preferences(holder_id)
            if not preferences.turned_off(Channel.EMAIL, Kind.NEW_MESSAGE) and Channel.EMAIL not in self._unavailable:
                holder_email = await self._contacts.email(holder_id)
                if not is_email_address(holder_email):
                    holder_email = ""
        intents = new_message_intents(
            sender=sender,
            holder_id=holder_id,
            participants=participants,
            thread_id=thread_id,
            message_id=message_id,
            thread_subject=thread_subject,
            holder_email=holder_email,
        )
        prepared = []
        for intent in intents:
            preferences = await self._notifications.get_preferences(intent.recipient_id)
            prepared.append(prepare_notification(intent, preferences=preferences, unavailable=self._unavailable))
        return tuple(prepared)

    def _wake_deliveries(self, notifications: Sequence[PreparedNotification]) -> None:
        if any(d.channel in PROVIDER_CHANNELS and d.state.is_open for n in notifications for d in n.deliveries):
            self._on_new_deliveries()

    async def create_thread(
        self,
        caller: Principal,
        *,
        holder_id: str,
        subject: str,
        organisation_id: str,
        body: str,
        attachment_ids: Sequence[str],
        request_id: str,
    ) -> ThreadRecord:
        """Start a thread with a holder, with its first message (professionals and institutions only).

        A retry with the same ``request_id`` returns the thread started the first time.
        """
        check_thread_starter(caller)
        new = check_new_thread(caller, holder_id=holder_id, subject=subject, organisation_id=organisation_id)
        first = check_new_message(body, attachment_ids, field_prefix="first_message")
        request_id = check_request_id(request_id)
        if request_id:
            earlier = await self._store.thread_started_with(caller.subject, request_id)
            if earlier is not None:
                return await self._thread(earlier, caller.subject)
        attachments = await self._unposted(caller, first, None, "first_message")
        thread_id, message_id = uuid.uuid4(), uuid.uuid4()
        notifications = await self._notices(
            caller,
            holder_id=new.holder_id,
            participants=(Participant(caller.subject, caller.role), Participant(new.holder_id, "holder")),
            thread_id=thread_id,
            message_id=message_id,
            thread_subject=new.subject,
        )
        binding = await self._attachments.bind(attachments, new.holder_id)
        message = MessageToPost(
            message_id,
            caller,
            first.body,
            request_id,
            binding.posted,
            notifications,
            sender_display_name=await self._names.of(caller.role, caller.subject),
        )
        try:
            record = await self._store.create_thread(
                thread_id, new, request_id, message, holder_name=await self._names.of("holder", new.holder_id)
            )
        except asyncpg.UniqueViolationError:
            await binding.undo()
            # The same request, sent twice at once: the other one started the thread.
            earlier = await self._store.thread_started_with(caller.subject, request_id)
            if earlier is None:
                raise
            return await self._thread(earlier, caller.subject)
        except BaseException:
            await binding.undo()
            raise
        await binding.done()
        self._wake_deliveries(notifications)
        return record

    async def get_thread(self, caller: Principal, thread_id: uuid.UUID) -> ThreadRecord:
        """A thread the caller may read, with their unread count."""
        record = await self._thread(thread_id, caller.subject)
        check_thread_reader(caller, access_of(record))
        return record

    async def list_threads(
        self,
        caller: Principal,
        *,
        holder_id: str,
        participant_subject: str,
        unread_only: bool,
        requested_page_size: int,
        page_token: str,
    ) -> ThreadPage:
        """The threads the caller may see, narrowed as asked, latest message first."""
        visible, wanted = thread_view(
            caller, holder_id=holder_id.strip(), participant_subject=participant_subject.strip()
        )
        scope = f"threads|{caller.role}:{caller.subject}|{visible}|{wanted}|{unread_only}"
        limit = page_size(requested_page_size, default=THREADS_PAGE_DEFAULT, maximum=THREADS_PAGE_MAX)
        after = decode_page_token(page_token, scope)
        threads, total = await self._store.list_threads(
            visible, wanted, caller.subject, unread_only=unread_only, after=after, limit=limit + 1
        )
        token = ""
        if len(threads) > limit:
            threads = threads[:limit]
            token = encode_page_token(Cursor(threads[-1].last_message_time, threads[-1].thread_id), scope)
        return ThreadPage(threads, token, total)

    async def mark_read(self, caller: Principal, thread_id: uuid.UUID) -> ThreadRecord:
        """Mark the thread read up to now for the caller (each reader has their own read state)."""
        await self.get_thread(caller, thread_id)
        record = await self._store.mark_read(thread_id, caller.subject)
        if record is None:
            raise thread_not_found()
        return record

    async def post_message(
        self, caller: Principal, thread_id: uuid.UUID, *, body: str, attachment_ids: Sequence[str], request_id: str
    ) -> MessageRecord:
        """Post to a thread the caller may write in; a retry with the same ``request_id`` returns the first post."""
        message = check_new_message(body, attachment_ids, field_prefix="message")
        request_id = check_request_id(request_id)
        thread = await self._thread(thread_id, caller.subject)
        check_thread_writer(caller, access_of(thread))
        if request_id:
            earlier = await self._store.message_posted_with(caller.subject, request_id)
            if earlier is not None:
                return earlier
        attachments = await self._unposted(caller, message, thread_id, "message")
        message_id = uuid.uuid4()
        notifications = await self._notices(
            caller,
            holder_id=thread.holder_id,
            participants=[Participant(p.subject, p.role) for p in thread.participants],
            thread_id=thread_id,
            message_id=message_id,
            thread_subject=thread.subject,
        )
        binding: Binding = await self._attachments.bind(attachments, thread.holder_id)
        to_post = MessageToPost(
            message_id,
            caller,
            message.body,
            request_id,
            binding.posted,
            notifications,
            sender_display_name=await self._names.of(caller.role, caller.subject),
        )
        try:
            posted = await self._store.post_message(thread_id, to_post)
        except asyncpg.UniqueViolationError:
            await binding.undo()
            earlier = await self._store.message_posted_with(caller.subject, request_id)
            if earlier is None:
                raise
            return earlier
        except BaseException:
            await binding.undo()
            raise
        await binding.done()
        self._wake_deliveries(notifications)
        return posted

    async def list_messages(
        self, caller: Principal, thread_id: uuid.UUID, *, requested_page_size: int, page_token: str
    ) -> MessagePage:
        """A page of a thread's messages, oldest first."""
        await self.get_thread(caller, thread_id)
        scope = f"messages|{thread_id}"
        limit = page_size(requested_page_size, default=MESSAGES_PAGE_DEFAULT, maximum=MESSAGES_PAGE_MAX)
        after = decode_page_token(page_token, scope)
        messages = await self._store.list_messages(thread_id, after, limit + 1)
        token = ""
        if len(messages) > limit:
            messages = messages[:limit]
            token = encode_page_token(Cursor(messages[-1].create_time, messages[-1].message_id), scope)
        return MessagePage(messages, token)
