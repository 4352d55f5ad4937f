"""Rules of secure messaging, pure: who starts, reads and writes a thread, what a message
and an attachment may be, and whom a new message is told to.

PRODUCT.md: "only professionals and institutions start a conversation; the holder
replies; attachments allowed (a document can be saved into the record)".
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from carnet_kit.auth import Principal
from carnet_kit.errors import InvalidArgument, PermissionDenied
from carnet_notify.domain import NotificationIntent
from carnet_notify.kinds import Channel, Kind

MAX_SUBJECT_CHARS = 200
MAX_BODY_CHARS = 20_000
MAX_ATTACHMENTS_PER_MESSAGE = 10
MAX_FILE_NAME_CHARS = 255
MAX_REQUEST_ID_CHARS = 128
MAX_RECORD_TITLE_CHARS = 256
"""Dossier's limit on a document title."""

THREADS_PAGE_DEFAULT, THREADS_PAGE_MAX = 50, 500
MESSAGES_PAGE_DEFAULT, MESSAGES_PAGE_MAX = 50, 500

SPACE_WRITE_SCOPE = "space.write"
"""Scope identity gives the tokens of helpers with full access (read-only helpers lack it)."""

STARTER_ROLES = ("professional", "client")
"""Roles whose callers take part in a thread as themselves (not for a holder)."""

# Types an attachment may have, checked against its first bytes; and the dossier document
# format each becomes when saved to the record (PNG has none there).
ALLOWED_TYPES: tuple[str, ...] = ("application/pdf", "image/jpeg", "image/png", "text/plain")
RECORD_FORMATS: dict[str, str] = {"application/pdf": "PDF", "image/jpeg": "JPEG", "text/plain": "TEXT"}
_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "application/x-pdf": "application/pdf"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILE_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\]")
_TEXT_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _invalid(message: str, field_name: str, **metadata: str) -> InvalidArgument:
    return InvalidArgument(message, field=field_name, reason="FIELD_INVALID", metadata=metadata)


def parse_id(text: str, field_name: str) -> uuid.UUID:
    """A UUID given in a request; INVALID_ARGUMENT naming the field otherwise."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise _invalid(f"{field_name} is not a valid id", field_name) from None


# ---------------------------------------------------------------- who may do what


def may_start_threads(caller: Principal) -> bool:
    """Professionals, and the software of an organisation (a hospital, a lab), start threads."""
    return caller.role == "professional" or (caller.role == "client" and bool(caller.organisation_id))


def check_thread_starter(caller: Principal) -> None:
    """PERMISSION_DENIED ``THREAD_START_FORBIDDEN`` unless the caller may start a thread.

    A holder, their representatives and helpers answer threads; they never start one.
    """
    if not may_start_threads(caller):
        raise PermissionDenied(
            "only professionals and institutions start a conversation; a holder replies to one",
            reason="THREAD_START_FORBIDDEN",
            metadata={"role": caller.role},
        )


def holder_acted_for(caller: Principal) -> str:
    """The holder the caller acts for: themself (a holder) or ``acting_for``; empty for anyone else."""
    if caller.role == "holder":
        return caller.subject
    if caller.role in ("representative", "helper"):
        return caller.acting_for
    return ""


def acts_for_holder(caller: Principal, holder_id: str, *, write: bool) -> bool:
    """Whether the caller is the holder or acts for them; a write needs a representative or a full helper.

    Identity puts ``acting_for`` in a token only for a representation it records, and
    the ``space.write`` scope only for a helper with full access.
    """
    if not holder_id or holder_acted_for(caller) != holder_id:
        return False
    return not write or caller.role != "helper" or SPACE_WRITE_SCOPE in caller.scopes


@dataclass(frozen=True)
class ThreadAccess:
    """What access to a thread depends on: its holder and who takes part as themselves."""

    thread_id: uuid.UUID
    holder_id: str
    participants: frozenset[tuple[str, str]]
    """(subject, role) of every participant."""

    def has_participant(self, caller: Principal) -> bool:
        """Whether the caller takes part in the thread as themself (a professional or a client)."""
        return caller.role in STARTER_ROLES and (caller.subject, caller.role) in self.participants


def may_read_thread(caller: Principal, thread: ThreadAccess) -> bool:
    """The holder side (holder, representatives, helpers) and the professionals and clients taking part."""
    return acts_for_holder(caller, thread.holder_id, write=False) or thread.has_participant(caller)


def check_thread_reader(caller: Principal, thread: ThreadAccess) -> None:
    """PERMISSION_DENIED ``NOT_A_PARTICIPANT`` unless the caller may read the thread."""
    if not may_read_thread(caller, thread):
        raise PermissionDenied("you do not take part in this conversation", reason="NOT_A_PARTICIPANT")


def check_thread_writer(caller: Principal, thread: ThreadAccess) -> None:
    """PERMISSION_DENIED ``NOT_A_PARTICIPANT`` unless the caller may post to the thread.

    The holder replies (and whoever writes for them); a read-only helper reads only;
    other professionals cannot join a conversation they did not start.
    """
    if acts_for_holder(caller, thread.holder_id, write=True) or thread.has_participant(caller):
        return
    if acts_for_holder(caller, thread.holder_id, write=False):
        raise PermissionDenied(
            "a helper with read-only access cannot write", reason="NOT_A_PARTICIPANT", metadata={"access": "read_only"}
        )
    raise PermissionDenied("you do not take part in this conversation", reason="NOT_A_PARTICIPANT")


def check_record_saver(caller: Principal, thread: ThreadAccess) -> None:
    """Only the holder (or whoever writes for them) turns an attachment into a document of the record."""
    check_thread_reader(caller, thread)
    if not acts_for_holder(caller, thread.holder_id, write=True):
        raise PermissionDenied(
            "only the holder, or someone writing for them, saves an attachment to their record",
            reason="ROLE_NOT_ALLOWED",
            metadata={"role": caller.role},
        )


@dataclass(frozen=True)
class ThreadView:
    """Which threads a listing may show the caller: the holder's (holder side), else those they take part in."""

    holder_id: str = ""
    participant_subject: str = ""


def thread_view(caller: Principal, *, holder_id: str, participant_subject: str) -> tuple[ThreadView, ThreadView]:
    """(what the caller may see, what the request narrows to).

    The holder side sees every thread of its holder and may not name another holder;
    professionals and clients see the threads they take part in (naming a holder
    narrows to their threads with that holder). Nobody else lists threads.
    """
    acted_for = holder_acted_for(caller)
    if acted_for:
        if holder_id and holder_id != acted_for:
            raise PermissionDenied("these conversations belong to someone else", reason="NOT_A_PARTICIPANT")
        return ThreadView(holder_id=acted_for), ThreadView(holder_id=holder_id, participant_subject=participant_subject)
    if caller.role in STARTER_ROLES:
        return ThreadView(participant_subject=caller.subject), ThreadView(holder_id, participant_subject)
    raise PermissionDenied(f"role {caller.role!r} takes part in no conversation", reason="NOT_A_PARTICIPANT")


# ---------------------------------------------------------------- what a thread and a message may be


def check_request_id(request_id: str) -> str:
    """An idempotency key: at most 128 characters; empty means none."""
    request_id = request_id.strip()
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise _invalid(f"request_id is at most {MAX_REQUEST_ID_CHARS} characters", "request_id")
    return request_id


@dataclass(frozen=True)
class NewThread:
    """A validated thread to start."""

    holder_id: str
    subject: str
    organisation_id: str


def check_new_thread(caller: Principal, *, holder_id: str, subject: str, organisation_id: str) -> NewThread:
    """The thread the caller asked for; INVALID_ARGUMENT naming the first bad field.

    The starter writes for the organisation of their token; naming another is refused.
    """
    holder_id = holder_id.strip()
    if not holder_id:
        raise _invalid("thread.holder_id is required", "thread.holder_id")
    parse_id(holder_id, "thread.holder_id")
    subject = " ".join(subject.split())
    if not subject or len(subject) > MAX_SUBJECT_CHARS:
        raise _invalid(f"thread.subject is required, at most {MAX_SUBJECT_CHARS} characters", "thread.subject")
    organisation_id = organisation_id.strip()
    if organisation_id and caller.organisation_id and organisation_id != caller.organisation_id:
        raise _invalid("you write for the organisation your access token names", "thread.organisation_id")
    return NewThread(str(uuid.UUID(holder_id)), subject, organisation_id or caller.organisation_id)


@dataclass(frozen=True)
class NewMessage:
    """A validated message to post: its text and the attachments (uploaded before) it carries."""

    body: str
    attachment_ids: tuple[uuid.UUID, ...]


def check_new_message(body: str, attachment_ids: Sequence[str], *, field_prefix: str) -> NewMessage:
    """A message has text or attachments (at most 10, each once); INVALID_ARGUMENT naming the field."""
    body = body.strip()
    if len(body) > MAX_BODY_CHARS:
        raise _invalid(f"the message is at most {MAX_BODY_CHARS} characters", f"{field_prefix}.body")
    if len(attachment_ids) > MAX_ATTACHMENTS_PER_MESSAGE:
        raise _invalid(
            f"a message carries at most {MAX_ATTACHMENTS_PER_MESSAGE} attachments", f"{field_prefix}.attachments"
        )
    parsed: list[uuid.UUID] = []
    for index, text in enumerate(attachment_ids):
        field_name = f"{field_prefix}.attachments[{index}].attachment_id"
        attachment_id = parse_id(text, field_name)
        if attachment_id in parsed:
            raise _invalid("an attachment is listed twice", field_name)
        parsed.append(attachment_id)
    if not body and not parsed:
        raise _invalid("a message needs a text or an attachment", f"{field_prefix}.body")
    return NewMessage(body, tuple(parsed))


# ---------------------------------------------------------------- attachments


def normalise_mime_type(text: str) -> str:
    """``Image/JPG; charset=x`` → ``image/jpeg``: lower case, without parameters, common aliases folded."""
    base = text.split(";", 1)[0].strip().lower()
    return _TYPE_ALIASES.get(base, base)


@dataclass(frozen=True)
class AttachmentUpload:
    """The checked metadata of an upload: the thread it is for (None: a thread to start), name and type."""

    thread_id: uuid.UUID | None
    file_name: str
    mime_type: str


def check_attachment_metadata(thread_id: str, file_name: str, mime_type: str) -> AttachmentUpload:
    """The upload's metadata; INVALID_ARGUMENT naming the bad field (``metadata.…``)."""
    thread = parse_id(thread_id, "metadata.thread_id") if thread_id.strip() else None
    name = file_name.strip()
    if not name or len(name) > MAX_FILE_NAME_CHARS or _FILE_NAME_FORBIDDEN.search(name) or name in (".", ".."):
        raise _invalid(
            f"metadata.file_name is required: a plain file name of at most {MAX_FILE_NAME_CHARS} characters",
            "metadata.file_name",
        )
    kind = normalise_mime_type(mime_type)
    if kind not in ALLOWED_TYPES:
        raise _invalid(
            f"attachments may be {', '.join(ALLOWED_TYPES)}; not {mime_type!r}",
            "metadata.mime_type",
            allowed=" ".join(ALLOWED_TYPES),
        )
    return AttachmentUpload(thread, name, kind)


def check_attachment_content(content: bytes, mime_type: str) -> None:
    """The bytes are what the declared type says (its signature; UTF-8 for text).

    ATTACHMENT_EMPTY without content; FIELD_INVALID (``field=chunk``) when the bytes
    are of another type than declared.
    """
    if not content:
        raise InvalidArgument("the attachment has no content", field="chunk", reason="ATTACHMENT_EMPTY")
    problem = ""
    if mime_type == "application/pdf":
        if not content.startswith(b"%PDF-"):
            problem = "the content is not a PDF (no %PDF- header)"
    elif mime_type == "image/jpeg":
        if not (content.startswith(b"\xff\xd8\xff") and content.rstrip(b"\x00").endswith(b"\xff\xd9")):
            problem = "the content is not a JPEG image"
    elif mime_type == "image/png":
        if not content.startswith(_PNG_SIGNATURE):
            problem = "the content is not a PNG image"
    elif mime_type == "text/plain":
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            problem = "text must be UTF-8"
        else:
            if _TEXT_CONTROL.search(content):
                problem = "the content is not plain text (control characters)"
    else:
        problem = f"{mime_type} is not an accepted type"
    if problem:
        raise _invalid(problem, "chunk", mime_type=mime_type)


@dataclass(frozen=True)
class RecordSaveRequest:
    """What the holder asked "save to my record" to make: the document's title and codes."""

    title: str
    type_code: str
    class_code: str
    format: str


def check_record_save(
    *, title: str, type_code: str, class_code: str, file_name: str, mime_type: str
) -> RecordSaveRequest:
    """The document to deposit; the attachment's file name is the title when none is given.

    A PNG image has no document format in the record and is refused (``field=attachment_id``).
    """
    type_code = type_code.strip()
    if not type_code:
        raise _invalid("type_code is required (a LOINC code of the document type value set)", "type_code")
    chosen = " ".join(title.split()) or file_name
    if len(chosen) > MAX_RECORD_TITLE_CHARS:
        raise _invalid(f"title is at most {MAX_RECORD_TITLE_CHARS} characters", "title")
    record_format = RECORD_FORMATS.get(mime_type)
    if record_format is None:
        raise _invalid(
            f"a {mime_type} attachment cannot become a document of the record (PDF, JPEG or plain text only)",
            "attachment_id",
            mime_type=mime_type,
        )
    return RecordSaveRequest(chosen, type_code, class_code.strip(), record_format)


def record_unique_id(attachment_id: uuid.UUID) -> str:
    """The dossier uniqueId of the document made from an attachment: a retry deposits nothing new."""
    return f"notify-attachment-{attachment_id}"


# ---------------------------------------------------------------- telling people


@dataclass(frozen=True)
class Participant:
    """A participant as the notices need it."""

    subject: str
    role: str


def new_message_intents(
    *,
    sender: Principal,
    holder_id: str,
    participants: Collection[Participant],
    thread_id: uuid.UUID,
    message_id: uuid.UUID,
    thread_subject: str,
    holder_email: str,
) -> list[NotificationIntent]:
    """Who hears of a new message, as NEW_MESSAGE intents (one per message and recipient).

    A message to the holder tells the holder: their inbox and, per their preferences, an
    e-mail (which says only that a message arrived). A message from the holder side
    tells the professionals taking part, in their inbox. Clients (software) have no inbox.
    Neither ever carries the message's text.
    """
    parameters = {"thread_id": str(thread_id), "message_id": str(message_id), "thread_subject": thread_subject}
    source = f"message:{message_id}"
    if acts_for_holder(sender, holder_id, write=False):
        return [
            NotificationIntent(
                recipient_id=participant.subject,
                kind=Kind.NEW_MESSAGE,
                channels=(Channel.IN_APP,),
                parameters=parameters,
                source_event_id=source,
            )
            for participant in participants
            if participant.role == "professional" and participant.subject != sender.subject
        ]
    return [
        NotificationIntent(
            recipient_id=holder_id,
            kind=Kind.NEW_MESSAGE,
            channels=(Channel.IN_APP, Channel.EMAIL),
            parameters=parameters,
            email=holder_email,
            source_event_id=source,
        )
    ]
