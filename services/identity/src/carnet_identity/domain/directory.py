"""The directory's rules, pure: professions, organisation and client kinds, scopes, AE titles, who may do what.

The tables here are the single place these vocabularies are defined; the servicer,
the store checks and the README follow them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping

from carnet_identity.domain.accounts import majority_date
from carnet_kit.auth import Principal
from carnet_kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied


@dataclasses.dataclass(frozen=True)
class Profession:
    """A profession of the national nomenclatures, with its official label."""

    code: str
    label: str
    nomenclature: str
    has_specialties: bool = False


# Codes and labels of the Annuaire Santé nomenclatures (TRE_G15-ProfessionSante, and
# for the medico-social professions TRE_R94-ProfessionSocial and TRE_R95-UsagerTitre),
# the same set consent's access matrix covers.
PROFESSIONS: Mapping[str, Profession] = {
    profession.code: profession
    for profession in (
        Profession("10", "Médecin", "TRE_G15-ProfessionSante", has_specialties=True),
        Profession("21", "Pharmacien", "TRE_G15-ProfessionSante", has_specialties=True),
        Profession("35", "Aide-soignant", "TRE_G15-ProfessionSante"),
        Profession("37", "Auxiliaire de puériculture", "TRE_G15-ProfessionSante"),
        Profession("40", "Chirurgien-dentiste", "TRE_G15-ProfessionSante", has_specialties=True),
        Profession("41", "Assistant de service social", "TRE_R94-ProfessionSocial"),
        Profession("50", "Sage-femme", "TRE_G15-ProfessionSante"),
        Profession("60", "Infirmier", "TRE_G15-ProfessionSante", has_specialties=True),
        Profession("70", "Masseur-kinésithérapeute", "TRE_G15-ProfessionSante"),
        Profession("93", "Psychologue", "TRE_R95-UsagerTitre"),
    )
}
DOCTOR = "10"

# Specialty codes look like SM26 (general medicine), SM44 (radiology), PH… for pharmacists.
_SPECIALTY = re.compile(r"^[A-Z]{1,4}[0-9]{1,4}$")


def check_profession(code: str, *, field: str = "profession_code") -> Profession:
    """The profession of a code from the table; INVALID_ARGUMENT otherwise."""
    profession = PROFESSIONS.get(code.strip())
    if profession is None:
        raise InvalidArgument(
            f"unknown profession code {code!r}; known: {' '.join(PROFESSIONS)}", field=field, reason="FIELD_INVALID"
        )
    return profession


def check_specialty(profession: Profession, specialty_code: str, *, field: str = "specialty_code") -> str:
    """A specialty code (e.g. SM26), only for professions that have specialties; empty is allowed."""
    code = specialty_code.strip().upper()
    if not code:
        return ""
    if not profession.has_specialties:
        raise InvalidArgument(
            f"the profession {profession.label} has no specialties", field=field, reason="FIELD_INVALID"
        )
    if not _SPECIALTY.match(code):
        raise InvalidArgument("a specialty code looks like SM26", field=field, reason="FIELD_INVALID")
    return code


# Organisation kinds and software client kinds (values as stored).
ORGANISATION_KINDS = (
    "hospital",
    "laboratory",
    "imaging_centre",
    "practice",
    "pharmacy",
    "medico_social",
    "insurer",
    "app_publisher",
    "other",
)
CLIENT_KINDS = (
    "pacs",
    "practice_software",
    "hospital_system",
    "laboratory_system",
    "catalogue_app",
    "insurer_registry",
    "operator_console",
)
# The agents' desk software of an insurer: its tokens act as an operator (recording
# oppositions and closures for people who come to the desk), never on clinical content.
OPERATOR_CLIENT_KINDS = frozenset({"operator_console"})


@dataclasses.dataclass(frozen=True)
class Scope:
    """An OAuth2 scope a software client may be granted."""

    name: str
    description: str


# The catalogue of scopes software clients may hold; nothing outside it can be granted.
SCOPES: Mapping[str, Scope] = {
    scope.name: scope
    for scope in (
        Scope("documents.deposit", "deposit documents in a holder's record"),
        Scope("documents.read", "read documents of a holder's record (within consent)"),
        Scope("imaging.push", "push imaging studies (DICOM C-STORE, STOW-RS)"),
        Scope("imaging.read", "retrieve imaging studies (C-FIND/C-MOVE/C-GET, WADO-RS)"),
        Scope("measurements.write", "push measurements to a holder's profile (with consent)"),
        Scope("measurements.read", "read a holder's measurements (with consent)"),
        Scope("agenda.write", "add events to a holder's agenda (with consent)"),
        Scope("persons.import", "enrol persons from the insurer's registry"),
    )
}


def check_scopes(scopes: Iterable[str], *, field: str = "scopes") -> tuple[str, ...]:
    """Scopes from the catalogue, de-duplicated in the order given; INVALID_ARGUMENT naming unknown ones."""
    wanted = tuple(dict.fromkeys(scope.strip() for scope in scopes if scope.strip()))
    unknown = [scope for scope in wanted if scope not in SCOPES]
    if unknown:
        raise InvalidArgument(
            f"unknown scope(s): {' '.join(unknown)}",
            field=field,
            reason="FIELD_INVALID",
            metadata={"scopes": " ".join(unknown)},
        )
    return wanted


# What a delegated session may do, carried in the ``scope`` claim of representative and
# helper tokens so that every service can tell a read-only helper from a full one.
SPACE_READ = "space.read"
SPACE_WRITE = "space.write"
HELPER_ACCESS_LEVELS = ("read_only", "full")
DELEGATION_SCOPES: Mapping[str, tuple[str, ...]] = {
    "read_only": (SPACE_READ,),
    "full": (SPACE_READ, SPACE_WRITE),
}

AE_TITLE_MAX_LENGTH = 16
# DICOM PS3.5 §6.2, VR AE: default character repertoire without backslash or control characters.
_AE_TITLE = re.compile(r"^[ -\[\]-~]{1,16}$")


def normalise_ae_title(text: str, *, field: str = "ae_titles") -> str:
    """A DICOM Application Entity title: 1–16 printable ASCII characters, no backslash.

    Leading and trailing spaces are not significant (PS3.5) and are removed; a title of
    spaces only is refused. Titles are case-sensitive.
    """
    title = text.strip(" ")
    if not title or len(title) > AE_TITLE_MAX_LENGTH or not _AE_TITLE.match(title):
        raise InvalidArgument(
            "an AE title is 1 to 16 printable ASCII characters without backslash",
            field=field,
            reason="FIELD_INVALID",
            metadata={"ae_title": text[:32]},
        )
    return title


def normalise_ae_titles(titles: Iterable[str], *, field: str = "ae_titles") -> tuple[str, ...]:
    """Several AE titles, each checked, without duplicates."""
    return tuple(dict.fromkeys(normalise_ae_title(title, field=field) for title in titles))


_CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
CLIENT_SECRET_MIN_LENGTH = 24
CLIENT_SECRET_BYTES = 32


def check_client_id(client_id: str, *, field: str = "client_id") -> str:
    """A client id: 2–63 lower-case letters, digits, dots, dashes or underscores."""
    if not _CLIENT_ID.match(client_id):
        raise InvalidArgument(
            "a client id is 2 to 63 characters among a-z 0-9 . _ - (starting with a letter or digit)",
            field=field,
            reason="FIELD_INVALID",
        )
    return client_id


def new_client_id(kind: str) -> str:
    """A generated client id, prefixed with its kind for readability."""
    return f"{kind.replace('_', '-')}-{secrets.token_hex(5)}"


def new_client_secret() -> str:
    """A generated client secret (256 bits)."""
    return secrets.token_urlsafe(CLIENT_SECRET_BYTES)


def check_client_secret(secret: str, *, field: str = "client_secret") -> str:
    """A client-chosen secret must be long enough to resist guessing."""
    if len(secret) < CLIENT_SECRET_MIN_LENGTH or len(secret) > 256:
        raise InvalidArgument(
            f"a client secret has {CLIENT_SECRET_MIN_LENGTH} to 256 characters", field=field, reason="FIELD_INVALID"
        )
    return secret


def parse_id(text: str, field: str) -> uuid.UUID:
    """A UUID given in a request; INVALID_ARGUMENT naming the field otherwise."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidArgument(f"{field} is not an id", field=field, reason="FIELD_INVALID") from None


def check_name(text: str, field: str) -> str:
    """A required display text, trimmed."""
    value = text.strip()
    if not value or len(value) > 300:
        raise InvalidArgument(f"{field} is required (at most 300 characters)", field=field, reason="FIELD_INVALID")
    return value


# ---- who may do what

OPERATOR = "operator"
SERVICE = "service"


def caller_not_allowed(message: str) -> PermissionDenied:
    """The one refusal of this module (reason CALLER_NOT_ALLOWED)."""
    return PermissionDenied(message, reason="CALLER_NOT_ALLOWED")


def ensure_operator(caller: Principal) -> None:
    """Directory writes (professionals, organisations, software clients) are operators' work."""
    if caller.role != OPERATOR:
        raise caller_not_allowed("only an operator may change the directory")


def ensure_may_read_professional(caller: Principal, professional_id: uuid.UUID) -> None:
    """Services and operators read any professional; a professional reads themself."""
    if caller.role in (OPERATOR, SERVICE):
        return
    if caller.role == "professional" and caller.subject == str(professional_id):
        return
    raise caller_not_allowed("you may not read this professional")


def ensure_may_list_professionals(caller: Principal) -> None:
    """Listing the directory of professionals is for services and operators."""
    if caller.role not in (OPERATOR, SERVICE):
        raise caller_not_allowed("only services and operators list professionals")


def ensure_may_read_client(caller: Principal, client_id: str) -> None:
    """Services and operators read any client; a client reads itself."""
    if caller.role in (OPERATOR, SERVICE):
        return
    if caller.role == "client" and caller.client_id == client_id:
        return
    raise caller_not_allowed("you may not read this software client")


def ensure_may_list_clients(caller: Principal) -> None:
    """Listing software clients (e.g. finding one by AE title) is for services and operators."""
    if caller.role not in (OPERATOR, SERVICE):
        raise caller_not_allowed("only services and operators list software clients")


def acts_for(caller: Principal, holder_id: uuid.UUID, *, write: bool) -> bool:
    """Whether the caller is the holder, or represents or helps them (a write needs full access)."""
    holder = str(holder_id)
    if caller.role == "holder":
        return caller.subject == holder
    if caller.role in ("representative", "helper") and caller.acting_for == holder:
        return not write or caller.role == "representative" or SPACE_WRITE in caller.scopes
    return False


def ensure_may_manage_legal_representatives(caller: Principal) -> None:
    """Legal representations are recorded from civil-status evidence: operators and services only."""
    if caller.role not in (OPERATOR, SERVICE):
        raise caller_not_allowed("legal representatives are recorded by an operator")


def ensure_may_manage_helpers(caller: Principal, holder_id: uuid.UUID) -> None:
    """Helpers are chosen by the holder themself (or, for a minor, their legal representative), or an operator.

    A helper, even with full access, may not manage helpers (HelperAccess, contract).
    """
    if caller.role == OPERATOR:
        return
    holder = str(holder_id)
    if caller.role == "holder" and caller.subject == holder:
        return
    if caller.role == "representative" and caller.acting_for == holder:
        return
    raise caller_not_allowed("only the holder chooses their helpers")


def ensure_may_declare_treating_physician(caller: Principal, holder_id: uuid.UUID) -> None:
    """The holder declares their treating physician (or who acts for them with full access), or an operator."""
    if caller.role == OPERATOR or acts_for(caller, holder_id, write=True):
        return
    raise caller_not_allowed("only the holder declares their treating physician")


def ensure_is_doctor(profession_code: str) -> None:
    """A treating physician is a doctor (profession 10)."""
    if profession_code != DOCTOR:
        raise FailedPrecondition(
            "a treating physician must be a doctor (profession 10)",
            reason="TREATING_PHYSICIAN_NOT_A_DOCTOR",
            metadata={"profession_code": profession_code},
        )


def legal_representation_end(birth_date: dt.date, today: dt.date, requested_end: dt.datetime | None) -> dt.datetime:
    """When a legal representation ends: the holder's 18th birthday, or earlier if asked.

    HOLDER_NOT_MINOR for a holder who is 18 already (PRODUCT.md: access ends at 18).
    """
    majority = majority_date(birth_date)
    if today >= majority:
        raise FailedPrecondition(
            "the holder is not a minor; an adult has no legal representative",
            reason="HOLDER_NOT_MINOR",
            metadata={"majority_date": majority.isoformat()},
        )
    end = dt.datetime.combine(majority, dt.time(), tzinfo=dt.UTC)
    if requested_end is not None and requested_end < end:
        return requested_end
    return end


# ---- records of representations and declarations


@dataclasses.dataclass(frozen=True)
class RepresentationRecord:
    """A legal representation (kind ``legal``) or helper nomination (kind ``helper``), as stored."""

    id: uuid.UUID
    kind: str
    holder_id: uuid.UUID
    representative_id: uuid.UUID
    relationship: str
    access: str
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    created_by: dict[str, str] | None
    created_at: dt.datetime
    updated_at: dt.datetime
    ended_at: dt.datetime | None

    def in_force(self, now: dt.datetime) -> bool:
        """Whether it applies at ``now`` (not ended, started, not past its end)."""
        return self.ended_at is None and self.valid_from <= now and (self.valid_until is None or now < self.valid_until)


@dataclasses.dataclass(frozen=True)
class TreatingPhysicianRecord:
    """A holder's declared treating physician."""

    holder_id: uuid.UUID
    professional_id: uuid.UUID
    declared_by: dict[str, str] | None
    declared_at: dt.datetime


# ---- pages

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class Page:
    """Which slice of a listing to return."""

    limit: int
    offset: int


def page_of(page_size: int, page_token: str, filters: str) -> Page:
    """The slice a request asks for; a page token only works with the filters it was made for."""
    if page_size < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size", reason="FIELD_INVALID")
    limit = DEFAULT_PAGE_SIZE if page_size == 0 else min(page_size, MAX_PAGE_SIZE)
    if not page_token:
        return Page(limit, 0)
    prefix, _, offset = page_token.partition(".")
    if prefix != _fingerprint(filters) or not offset.isdigit():
        raise InvalidArgument("page_token is not valid here", field="page_token", reason="FIELD_INVALID")
    return Page(limit, int(offset))


def next_page_token(page: Page, returned: int, total: int, filters: str) -> str:
    """The token of the page after this one; empty at the end."""
    following = page.offset + returned
    return f"{_fingerprint(filters)}.{following}" if returned and following < total else ""


def _fingerprint(filters: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, "carnet-page:" + filters).hex[:12]
