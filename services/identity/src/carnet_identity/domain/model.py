"""The records identity keeps, as plain immutable values (the store fills them, the servicer reads them)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Any

from carnet_identity.domain.accounts import AccountState
from carnet_identity.domain.credentials import ChallengeState, CodeAttempts
from carnet_identity.domain.identifiers import InsType


class AccountKind(enum.StrEnum):
    """Who an account belongs to: a holder (person) or a health professional."""

    PERSON = "person"
    PROFESSIONAL = "professional"


class Channel(enum.StrEnum):
    """Delivery channel of a code or notice (values as stored)."""

    EMAIL = "email"
    SMS = "sms"
    LETTER = "letter"


@dataclasses.dataclass(frozen=True)
class PersonName:
    """A name as the INS records it."""

    birth_name: str
    first_names: tuple[str, ...]
    used_name: str = ""
    used_first_name: str = ""

    @property
    def display(self) -> str:
        """First name in use and name in use, for greetings."""
        first = self.used_first_name or (self.first_names[0] if self.first_names else "")
        return f"{first} {self.used_name or self.birth_name}".strip()


@dataclasses.dataclass(frozen=True)
class Person:
    """An insured person (holder) and the state of their space."""

    id: uuid.UUID
    ins_type: InsType
    nir: str
    ins_key: str
    name: PersonName
    sex: str
    birth_date: dt.date
    birth_date_precision: str
    birth_place_code: str
    email: str
    mobile_phone: str
    postal_address: dict[str, Any] | None
    department_code: str
    state: AccountState
    state_reason: str
    opposition_deadline: dt.datetime | None
    notice_channel: str
    one_time_code_channel: str
    password_hash: str | None
    activated_at: dt.datetime | None
    closed_at: dt.datetime | None
    scheduled_delete_at: dt.datetime | None
    activation_code_expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    # Lifecycle facts read by the lifecycle use cases (state before suspension or
    # closure, end of the archive, when a deletion was asked for).
    previous_state: AccountState | None = None
    archive_until: dt.datetime | None = None
    deletion_requested_at: dt.datetime | None = None

    @property
    def ins(self) -> str:
        """The 15-character INS."""
        return self.nir + self.ins_key

    @property
    def password_set(self) -> bool:
        """Whether the holder has set a password."""
        return self.password_hash is not None


@dataclasses.dataclass(frozen=True)
class Professional:
    """A health professional identified by RPPS number."""

    id: uuid.UUID
    rpps: str
    name: PersonName
    profession_code: str
    specialty_code: str
    organisation_ids: tuple[uuid.UUID, ...]
    email: str
    mobile_phone: str
    one_time_code_channel: str
    disabled: bool
    password_hash: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Organisation:
    """A health or medico-social organisation, an insurer or an app publisher."""

    id: uuid.UUID
    finess: str
    name: str
    kind: str
    address: dict[str, Any] | None
    department_code: str
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class SoftwareClient:
    """A software client authenticating with OAuth2 client credentials."""

    client_id: str
    display_name: str
    kind: str
    organisation_id: uuid.UUID | None
    scopes: tuple[str, ...]
    ae_titles: tuple[str, ...]
    disabled: bool
    secret_hash: str
    secret_updated_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class LoginChallenge:
    """The second step of a login: a one-time code sent to the account's owner."""

    id: uuid.UUID
    account_kind: AccountKind
    account_id: uuid.UUID
    code_hash: str
    channel: str
    masked_destination: str
    state: ChallengeState
    attempts: int
    max_attempts: int
    expires_at: dt.datetime
    created_at: dt.datetime

    @property
    def counters(self) -> CodeAttempts:
        """The try counters the domain rules work on."""
        return CodeAttempts(self.state, self.expires_at, self.attempts, self.max_attempts)


@dataclasses.dataclass(frozen=True)
class Session:
    """What a refresh token stands for: an account, and whom / where it acts for."""

    account_kind: AccountKind
    account_id: uuid.UUID
    acting_for: uuid.UUID | None = None
    organisation_id: uuid.UUID | None = None


@dataclasses.dataclass(frozen=True)
class RefreshToken:
    """A stored refresh token (its digest only) in its rotation family."""

    id: uuid.UUID
    family_id: uuid.UUID
    session: Session
    issued_at: dt.datetime
    expires_at: dt.datetime
    rotated_at: dt.datetime | None
    revoked_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Representation:
    """A legal representation of a minor or a helper nomination, as it applies to a session."""

    id: uuid.UUID
    kind: str
    holder_id: uuid.UUID
    representative_id: uuid.UUID
    access: str
    valid_from: dt.datetime
    valid_until: dt.datetime | None
