"""Who may change a document and how: pure rules for replace, metadata updates, announce, archive, delete.

PRODUCT.md: hidden from professionals is set by the holder or the author; invisible to
the holder is set only at deposit and lifted by the announcement consultation (the
author announces); invisible to legal representatives is a minor's secret, and revealing
it cannot be undone; the first two flags are never set together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from carnet_dossier.domain import searchable
from carnet_dossier.store import DocumentRecord
from carnet_dossier.valuesets import DOCUMENT_CLASSES, DOCUMENT_TYPES
from carnet_kit.auth import Principal
from carnet_kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied

AUTHOR_FIELDS = frozenset({"title", "type_code", "class_code", "service_time", "hidden_from_professionals"})
"""What the author (the depositor) may change after the deposit."""
HOLDER_FIELDS = frozenset({"hidden_from_professionals", "invisible_to_representatives"})
"""What the holder's side may change."""
UPDATABLE = AUTHOR_FIELDS | HOLDER_FIELDS
HOLDER_SIDE = frozenset({"holder", "representative", "helper"})


def is_depositor(principal: Principal, record: DocumentRecord) -> bool:
    """Whether the caller speaks for the document's author: the same account, RPPS or organisation's software."""
    deposited = record.deposited_by
    if principal.subject and principal.subject == deposited.get("subject") and principal.role == _role(deposited):
        return True
    if principal.role == "professional" and principal.rpps and principal.rpps == record.author.rpps:
        return True
    organisation = principal.organisation_id
    return (
        principal.role in ("professional", "client")
        and not principal.acting_for
        and bool(organisation)
        and organisation == deposited.get("organisation_id")
    )


def _role(actor: Mapping[str, Any]) -> str:
    return str(actor.get("role", "")).removeprefix("ROLE_").lower()


def is_holder_side(principal: Principal, record: DocumentRecord) -> bool:
    """The holder, or someone acting for the holder (consent still decides whether they may)."""
    holder = str(record.holder_id)
    if principal.role == "holder":
        return principal.subject == holder
    return principal.role in HOLDER_SIDE and principal.acting_for == holder


def ensure_changeable(record: DocumentRecord, change: str) -> None:
    """Only the current (approved) version of a document changes."""
    if record.status != "approved":
        raise FailedPrecondition(
            f"only an approved document can be {change}; this one is {record.status}",
            reason="DOCUMENT_NOT_CURRENT",
            metadata={"status": record.status},
        )


def ensure_may_replace(principal: Principal, record: DocumentRecord, holder_id: str) -> None:
    """A new version comes from the same author (or the holder, for the holder's own documents)."""
    if str(record.holder_id) != holder_id:
        raise InvalidArgument(
            "the replaced document belongs to another holder",
            field="metadata.replaces_document_id",
            reason="REPLACED_DOCUMENT_OF_ANOTHER_HOLDER",
        )
    if not (is_depositor(principal, record) or (record.holder_own and is_holder_side(principal, record))):
        raise PermissionDenied("only the document's author can replace it", reason="NOT_THE_AUTHOR")
    ensure_changeable(record, "replaced")


@dataclass(frozen=True)
class MetadataChange:
    """The checked new values of an update (only the fields named by the mask)."""

    values: dict[str, Any]


def check_metadata_change(
    principal: Principal,
    record: DocumentRecord,
    paths: Iterable[str],
    proposed: Mapping[str, Any],
    *,
    now: dt.datetime | None = None,
) -> MetadataChange:
    """The update a caller may make, or the reason they may not."""
    named = list(dict.fromkeys(paths))
    if not named:
        raise InvalidArgument("update_mask names no field", field="update_mask", reason="FIELD_INVALID")
    for path in named:
        if path not in UPDATABLE:
            raise InvalidArgument(
                f"{path!r} cannot be changed after the deposit",
                field="update_mask",
                reason="FIELD_NOT_UPDATABLE",
                metadata={"path": path},
            )
    author = is_depositor(principal, record)
    holder_side = is_holder_side(principal, record)
    allowed = (AUTHOR_FIELDS if author else frozenset()) | (HOLDER_FIELDS if holder_side else frozenset())
    for path in named:
        if path not in allowed:
            raise PermissionDenied(f"{path} is not yours to change", reason="FIELD_NOT_YOURS", metadata={"path": path})
    ensure_changeable(record, "changed")
    values = {path: proposed[path] for path in named}
    if "title" in values:
        title = str(values["title"]).strip()
        if not title or len(title) > 256:
            raise InvalidArgument("title is required, at most 256 characters", field="metadata.title")
        values["title"] = title
        values["title_search"] = searchable(title)
    if "type_code" in values:
        document_type = DOCUMENT_TYPES.get(values["type_code"])
        if document_type is None:
            raise InvalidArgument(
                f"type_code {values['type_code']!r} is not in the document type value set",
                field="metadata.type_code",
                reason="UNKNOWN_TYPE_CODE",
            )
        if "class_code" not in values:
            values["class_code"] = document_type.default_class
    if "class_code" in values and values["class_code"] not in DOCUMENT_CLASSES:
        raise InvalidArgument(
            f"class_code {values['class_code']!r} is not a known document class",
            field="metadata.class_code",
            reason="UNKNOWN_CLASS_CODE",
        )
    service_time = values.get("service_time")
    if service_time is not None and service_time > (now or dt.datetime.now(dt.UTC)) + dt.timedelta(days=1):
        raise InvalidArgument("service_time is in the future", field="metadata.service_time")
    if values.get("hidden_from_professionals") and record.invisible_to_holder:
        raise FailedPrecondition(
            "a document invisible to its holder until announced cannot also be hidden from professionals",
            reason="VISIBILITY_FLAGS_CONFLICT",
        )
    if "invisible_to_representatives" in values:
        wanted = bool(values["invisible_to_representatives"])
        if wanted and not record.invisible_to_representatives:
            raise FailedPrecondition(
                "a document revealed to the legal representatives cannot be hidden from them again",
                reason="REVEAL_IRREVERSIBLE",
            )
        if not wanted and record.invisible_to_representatives and principal.role != "holder":
            # The secret is kept from the representatives: only the minor reveals it.
            raise PermissionDenied(
                "only the holder reveals a document kept from their legal representatives",
                reason="FIELD_NOT_YOURS",
                metadata={"path": "invisible_to_representatives"},
            )
    return MetadataChange(values)


def ensure_may_announce(principal: Principal, record: DocumentRecord) -> None:
    """The author announces a document kept from the holder, after the announcement consultation."""
    if not is_depositor(principal, record):
        raise PermissionDenied("only the document's author announces it", reason="NOT_THE_AUTHOR")
    ensure_changeable(record, "announced")
    if not record.invisible_to_holder:
        raise FailedPrecondition("the document is already visible to its holder", reason="ALREADY_VISIBLE_TO_HOLDER")


def ensure_may_archive_or_delete(principal: Principal, record: DocumentRecord, change: str) -> None:
    """The author or the holder's side (consent then decides for the holder's side)."""
    if not (is_depositor(principal, record) or is_holder_side(principal, record)):
        raise PermissionDenied(f"only the author or the holder may have a document {change}", reason="NOT_THE_AUTHOR")
    if change == "archived":
        ensure_changeable(record, change)
