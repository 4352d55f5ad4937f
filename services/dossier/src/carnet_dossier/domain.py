"""Rules of the record that need no I/O: metadata checks, content formats, page tokens."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import unicodedata
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import Enum

from carnet_dossier.valuesets import DOCUMENT_CLASSES, DOCUMENT_TYPES
from carnet_kit.errors import InvalidArgument

CDA_NAMESPACE = "urn:hl7-org:v3"
MAX_TITLE_LENGTH = 256
MAX_UNIQUE_ID_LENGTH = 128


class DocumentFormat(Enum):
    """Formats a document may be deposited in, with their MIME type."""

    PDF = "application/pdf"
    CDA_R2_STRUCTURED = "application/hl7-cda+xml"
    CDA_R2_UNSTRUCTURED = "application/hl7-cda+xml; level=1"
    TEXT = "text/plain; charset=utf-8"
    JPEG = "image/jpeg"


@dataclass(frozen=True)
class Author:
    """Who wrote a document."""

    rpps: str = ""
    profession_code: str = ""
    organisation_id: str = ""
    display_name: str = ""


@dataclass(frozen=True)
class NewDocument:
    """Validated metadata of a document being deposited."""

    unique_id: str
    type_code: str
    class_code: str
    format: DocumentFormat
    title: str
    service_time: dt.datetime | None
    author: Author
    hidden_from_professionals: bool
    invisible_to_holder: bool
    invisible_to_representatives: bool
    accession_number: str


def validate_new_document(
    *,
    unique_id: str,
    type_code: str,
    class_code: str,
    format: DocumentFormat | None,
    title: str,
    service_time: dt.datetime | None,
    author: Author,
    hidden_from_professionals: bool,
    invisible_to_holder: bool,
    invisible_to_representatives: bool,
    accession_number: str = "",
    now: dt.datetime | None = None,
) -> NewDocument:
    """Check deposit metadata; InvalidArgument names the first bad field."""
    unique_id = unique_id.strip()
    if not unique_id or len(unique_id) > MAX_UNIQUE_ID_LENGTH or any(c.isspace() for c in unique_id):
        raise InvalidArgument(
            "unique_id is required: the depositor's identifier of this document, without spaces",
            field="metadata.unique_id",
        )
    document_type = DOCUMENT_TYPES.get(type_code)
    if document_type is None:
        raise InvalidArgument(
            f"type_code {type_code!r} is not in the document type value set",
            field="metadata.type_code",
            reason="UNKNOWN_TYPE_CODE",
        )
    class_code = class_code or document_type.default_class
    if class_code not in DOCUMENT_CLASSES:
        raise InvalidArgument(
            f"class_code {class_code!r} is not a known document class",
            field="metadata.class_code",
            reason="UNKNOWN_CLASS_CODE",
        )
    if format is None:
        raise InvalidArgument("format is required", field="metadata.format")
    title = title.strip()
    if not title or len(title) > MAX_TITLE_LENGTH:
        raise InvalidArgument(f"title is required, at most {MAX_TITLE_LENGTH} characters", field="metadata.title")
    now = now or dt.datetime.now(dt.UTC)
    if service_time is not None and service_time > now + dt.timedelta(days=1):
        raise InvalidArgument("service_time is in the future", field="metadata.service_time")
    if hidden_from_professionals and invisible_to_holder:
        raise InvalidArgument(
            "a document cannot be both hidden from professionals and invisible to the holder",
            field="metadata.invisible_to_holder",
            reason="VISIBILITY_FLAGS_CONFLICT",
        )
    return NewDocument(
        unique_id=unique_id,
        type_code=type_code,
        class_code=class_code,
        format=format,
        title=title,
        service_time=service_time,
        author=author,
        hidden_from_professionals=hidden_from_professionals,
        invisible_to_holder=invisible_to_holder,
        invisible_to_representatives=invisible_to_representatives,
        accession_number=accession_number.strip(),
    )


def check_content(content: bytes, format: DocumentFormat) -> None:
    """Refuse content that is not what its declared format says."""
    if not content:
        raise InvalidArgument("the document has no content", field="chunk", reason="EMPTY_CONTENT")
    if format is DocumentFormat.PDF:
        if not content.startswith(b"%PDF-"):
            raise InvalidArgument("content is not a PDF (no %PDF- header)", field="chunk", reason="CONTENT_FORMAT_MISMATCH")
    elif format in (DocumentFormat.CDA_R2_STRUCTURED, DocumentFormat.CDA_R2_UNSTRUCTURED):
        try:
            root = ET.fromstring(content)
        except ET.ParseError as exc:
            raise InvalidArgument(
                f"content is not well-formed XML: {exc}", field="chunk", reason="CONTENT_FORMAT_MISMATCH"
            ) from None
        if root.tag != f"{{{CDA_NAMESPACE}}}ClinicalDocument":
            raise InvalidArgument(
                "content is not a CDA R2 document (root must be ClinicalDocument in urn:hl7-org:v3)",
                field="chunk",
                reason="CONTENT_FORMAT_MISMATCH",
            )
    elif format is DocumentFormat.JPEG:
        if not (content.startswith(b"\xff\xd8\xff") and content.rstrip(b"\x00").endswith(b"\xff\xd9")):
            raise InvalidArgument("content is not a JPEG image", field="chunk", reason="CONTENT_FORMAT_MISMATCH")
    elif format is DocumentFormat.TEXT:
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("text content must be UTF-8", field="chunk", reason="CONTENT_FORMAT_MISMATCH") from None


class DocumentOrder(Enum):
    """How a listing is sorted: by the document's date (service time, else deposit time) or by deposit."""

    SERVICE_TIME_DESC = ("coalesce(service_time, created_at)", "DESC")
    SERVICE_TIME_ASC = ("coalesce(service_time, created_at)", "ASC")
    CREATE_TIME_DESC = ("created_at", "DESC")
    CREATE_TIME_ASC = ("created_at", "ASC")

    @property
    def expression(self) -> str:
        """The SQL the rows are sorted on."""
        return self.value[0]

    @property
    def descending(self) -> bool:
        """Newest first."""
        return self.value[1] == "DESC"

    def key(self, service_time: dt.datetime | None, created_at: dt.datetime) -> dt.datetime:
        """The sort value of a document."""
        return (service_time or created_at) if self.name.startswith("SERVICE") else created_at


@dataclass(frozen=True)
class PageCursor:
    """Where the next page of a listing starts: after this sort value and document, in this order."""

    value: dt.datetime
    document_id: uuid.UUID
    order: DocumentOrder = DocumentOrder.SERVICE_TIME_DESC
    total: int = 0
    """The number of matches counted on the first page (counting again on every page would cost a scan)."""


def encode_page_token(cursor: PageCursor) -> str:
    """An opaque page token."""
    raw = json.dumps(
        {"t": cursor.value.isoformat(), "id": str(cursor.document_id), "o": cursor.order.name, "n": cursor.total}
    ).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, order: DocumentOrder = DocumentOrder.SERVICE_TIME_DESC) -> PageCursor | None:
    """The cursor of a page token; InvalidArgument if it was not made by us, or for another order."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        cursor = PageCursor(
            dt.datetime.fromisoformat(data["t"]), uuid.UUID(data["id"]), DocumentOrder[data["o"]], int(data.get("n", 0))
        )
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError):
        raise InvalidArgument("page_token is not valid", field="page_token", reason="PAGE_TOKEN_INVALID") from None
    if cursor.order is not order:
        raise InvalidArgument(
            "page_token was made for another order", field="page_token", reason="PAGE_TOKEN_INVALID"
        )
    return cursor


def searchable(text: str) -> str:
    """Text as titles are searched: lower case, without accents or ligatures' marks."""
    decomposed = unicodedata.normalize("NFKD", text.replace("œ", "oe").replace("æ", "ae").lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def clamp_page_size(page_size: int, *, default: int = 50, maximum: int = 500) -> int:
    """The page size to use; negative sizes are refused."""
    if page_size < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    return default if page_size == 0 else min(page_size, maximum)


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """A UUID from a request field, or InvalidArgument naming it."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError):
        raise InvalidArgument(f"{field} must be a UUID", field=field) from None
