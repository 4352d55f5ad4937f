"""Identity's SQL (asyncpg), over its own schema only.

An :class:`IdentityStore` wraps either the pool or one connection; ``transaction()``
gives a store bound to a connection inside a transaction, so that a multi-step rule
(count a wrong code, rotate a refresh token) runs under one row lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from carnet_identity.domain.accounts import AccountState
from carnet_identity.domain.credentials import ChallengeState
from carnet_identity.domain.identifiers import InsType
from carnet_identity.domain.model import (
    AccountKind,
    LoginChallenge,
    Organisation,
    Person,
    PersonName,
    Professional,
    RefreshToken,
    Representation,
    Session,
    SoftwareClient,
)

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class StoredSigningKey:
    """A signing key row."""

    kid: str
    algorithm: str
    curve: str
    public_jwk: dict[str, Any]
    private_key_pem: str
    state: str
    created_at: dt.datetime
    activated_at: dt.datetime | None
    retire_at: dt.datetime | None


@dataclass(frozen=True)
class IssuedAccessToken:
    """An access token issued alongside a refresh token, revoked with its family."""

    token_id: str
    expires_at: dt.datetime


_PERSON_COLUMNS = """
    p.id, p.ins_type, p.nir, p.ins_key, p.birth_name, p.used_name, p.first_names, p.used_first_name, p.sex,
    p.birth_date, p.birth_date_precision, p.birth_place_code, p.email, p.mobile_phone, p.postal_address,
    p.department_code, p.state, p.state_reason, p.opposition_deadline, p.notice_channel, p.one_time_code_channel,
    p.password_hash, p.activated_at, p.closed_at, p.scheduled_delete_at, p.created_at, p.updated_at,
    (SELECT a.expires_at FROM activation_codes a
      WHERE a.person_id = p.id AND a.used_at IS NULL AND a.revoked_at IS NULL) AS activation_code_expires_at
"""

_PROFESSIONAL_COLUMNS = """
    f.id, f.rpps, f.birth_name, f.used_name, f.first_names, f.used_first_name, f.profession_code, f.specialty_code,
    f.email, f.mobile_phone, f.one_time_code_channel, f.disabled, f.password_hash, f.created_at, f.updated_at,
    ARRAY(SELECT o.organisation_id FROM professional_organisations o
           WHERE o.professional_id = f.id ORDER BY o.rank, o.organisation_id) AS organisation_ids
"""

_CLIENT_COLUMNS = """
    c.client_id, c.display_name, c.kind, c.organisation_id, c.scopes, c.disabled, c.secret_hash,
    c.secret_updated_at, c.created_at, c.updated_at,
    ARRAY(SELECT t.ae_title FROM client_ae_titles t WHERE t.client_id = c.client_id ORDER BY t.ae_title) AS ae_titles
"""


def _name(row: Any) -> PersonName:
    return PersonName(
        birth_name=row["birth_name"],
        first_names=tuple(row["first_names"]),
        used_name=row["used_name"],
        used_first_name=row["used_first_name"],
    )


def _person(row: Any) -> Person:
    return Person(
        id=row["id"],
        ins_type=InsType(row["ins_type"]),
        nir=row["nir"],
        ins_key=row["ins_key"],
        name=_name(row),
        sex=row["sex"],
        birth_date=row["birth_date"],
        birth_date_precision=row["birth_date_precision"],
        birth_place_code=row["birth_place_code"],
        email=row["email"],
        mobile_phone=row["mobile_phone"],
        postal_address=row["postal_address"],
        department_code=row["department_code"],
        state=AccountState(row["state"]),
        state_reason=row["state_reason"],
        opposition_deadline=row["opposition_deadline"],
        notice_channel=row["notice_channel"],
        one_time_code_channel=row["one_time_code_channel"],
        password_hash=row["password_hash"],
        activated_at=row["activated_at"],
        closed_at=row["closed_at"],
        scheduled_delete_at=row["scheduled_delete_at"],
        activation_code_expires_at=row["activation_code_expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _professional(row: Any) -> Professional:
    return Professional(
        id=row["id"],
        rpps=row["rpps"],
        name=_name(row),
        profession_code=row["profession_code"],
        specialty_code=row["specialty_code"],
        organisation_ids=tuple(row["organisation_ids"]),
        email=row["email"],
        mobile_phone=row["mobile_phone"],
        one_time_code_channel=row["one_time_code_channel"],
        disabled=row["disabled"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _client(row: Any) -> SoftwareClient:
    return SoftwareClient(
        client_id=row["client_id"],
        display_name=row["display_name"],
        kind=row["kind"],
        organisation_id=row["organisation_id"],
        scopes=tuple(row["scopes"]),
        ae_titles=tuple(row["ae_titles"]),
        disabled=row["disabled"],
        secret_hash=row["secret_hash"],
        secret_updated_at=row["secret_updated_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _challenge(row: Any) -> LoginChallenge:
    return LoginChallenge(
        id=row["id"],
        account_kind=AccountKind(row["account_kind"]),
        account_id=row["account_id"],
        code_hash=row["code_hash"],
        channel=row["channel"],
        masked_destination=row["masked_destination"],
        state=ChallengeState(row["state"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
    )


def _refresh_token(row: Any) -> RefreshToken:
    return RefreshToken(
        id=row["id"],
        family_id=row["family_id"],
        session=Session(
            account_kind=AccountKind(row["account_kind"]),
            account_id=row["account_id"],
            acting_for=row["acting_for"],
            organisation_id=row["organisation_id"],
        ),
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        rotated_at=row["rotated_at"],
        revoked_at=row["revoked_at"],
    )


def _signing_key(row: Any) -> StoredSigningKey:
    return StoredSigningKey(
        kid=row["kid"],
        algorithm=row["algorithm"],
        curve=row["curve"],
        public_jwk=row["public_jwk"],
        private_key_pem=row["private_key_pem"],
        state=row["state"],
        created_at=row["created_at"],
        activated_at=row["activated_at"],
        retire_at=row["retire_at"],
    )


class IdentityStore:
    """Reads and writes identity's tables."""

    def __init__(self, db: Any) -> None:
        self._db = db

    async def close(self) -> None:
        """Close the pool this store was made with."""
        if isinstance(self._db, asyncpg.Pool):
            await self._db.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[IdentityStore]:
        """A store bound to one connection inside a transaction (nested calls join it)."""
        if isinstance(self._db, asyncpg.Pool):
            async with self._db.acquire() as conn, conn.transaction():
                yield IdentityStore(conn)
        else:
            async with self._db.transaction():
                yield self

    async def advisory_lock(self, name: str) -> None:
        """A transaction-scoped advisory lock (only inside ``transaction()``)."""
        await self._db.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"carnet-identity:{name}")

    # ---- persons

    async def person_by_id(self, person_id: uuid.UUID) -> Person | None:
        """A person by id."""
        row = await self._db.fetchrow(f"SELECT {_PERSON_COLUMNS} FROM persons p WHERE p.id = $1", person_id)
        return _person(row) if row else None

    async def person_by_nir(self, nir: str) -> Person | None:
        """A person by the 13-character NIR or NIA of their INS."""
        row = await self._db.fetchrow(f"SELECT {_PERSON_COLUMNS} FROM persons p WHERE p.nir = $1", nir)
        return _person(row) if row else None

    async def person_by_email(self, email: str) -> Person | None:
        """The person an e-mail belongs to: the account that logs in with it, else the first enrolled."""
        row = await self._db.fetchrow(
            f"SELECT {_PERSON_COLUMNS} FROM persons p WHERE p.email = $1"
            " ORDER BY (p.password_hash IS NOT NULL) DESC, p.created_at, p.id LIMIT 1",
            email,
        )
        return _person(row) if row else None

    async def insert_person(self, person: Person) -> bool:
        """Enrol a person unless one with the same id or INS exists; whether it was inserted."""
        status: str = await self._db.execute(
            """
            INSERT INTO persons (id, ins_type, nir, ins_key, birth_name, used_name, first_names, used_first_name, sex,
                birth_date, birth_date_precision, birth_place_code, email, mobile_phone, postal_address,
                department_code, state, state_reason, opposition_deadline, notice_channel, one_time_code_channel,
                password_hash, password_updated_at, activated_at, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
                $22, CASE WHEN $22::text IS NULL THEN NULL ELSE $23::timestamptz END, $24, $23, $23)
            ON CONFLICT DO NOTHING
            """,
            person.id,
            person.ins_type.value,
            person.nir,
            person.ins_key,
            person.name.birth_name,
            person.name.used_name,
            list(person.name.first_names),
            person.name.used_first_name,
            person.sex,
            person.birth_date,
            person.birth_date_precision,
            person.birth_place_code,
            person.email,
            person.mobile_phone,
            person.postal_address,
            person.department_code,
            person.state.value,
            person.state_reason,
            person.opposition_deadline,
            person.notice_channel,
            person.one_time_code_channel,
            person.password_hash,
            person.created_at,
            person.activated_at,
        )
        return status.endswith(" 1")

    async def count(self, table: str) -> int:
        """Rows in one of identity's tables (for seeding reports and tests)."""
        if table not in _COUNTABLE:
            raise ValueError(f"unknown table {table!r}")
        value: int = await self._db.fetchval(f"SELECT count(*) FROM {table}")
        return value

    # ---- professionals and organisations

    async def professional_by_id(self, professional_id: uuid.UUID) -> Professional | None:
        """A professional by id."""
        row = await self._db.fetchrow(
            f"SELECT {_PROFESSIONAL_COLUMNS} FROM professionals f WHERE f.id = $1", professional_id
        )
        return _professional(row) if row else None

    async def professional_by_rpps(self, rpps: str) -> Professional | None:
        """A professional by RPPS number."""
        row = await self._db.fetchrow(f"SELECT {_PROFESSIONAL_COLUMNS} FROM professionals f WHERE f.rpps = $1", rpps)
        return _professional(row) if row else None

    async def professional_by_email(self, email: str) -> Professional | None:
        """A professional by e-mail."""
        row = await self._db.fetchrow(f"SELECT {_PROFESSIONAL_COLUMNS} FROM professionals f WHERE f.email = $1", email)
        return _professional(row) if row else None

    async def insert_professional(self, professional: Professional) -> bool:
        """Register a professional and their organisations unless the id or RPPS exists."""
        status: str = await self._db.execute(
            """
            INSERT INTO professionals (id, rpps, birth_name, used_name, first_names, used_first_name, profession_code,
                specialty_code, email, mobile_phone, one_time_code_channel, disabled, password_hash,
                password_updated_at, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                CASE WHEN $13::text IS NULL THEN NULL ELSE $14::timestamptz END, $14, $14)
            ON CONFLICT DO NOTHING
            """,
            professional.id,
            professional.rpps,
            professional.name.birth_name,
            professional.name.used_name,
            list(professional.name.first_names),
            professional.name.used_first_name,
            professional.profession_code,
            professional.specialty_code,
            professional.email,
            professional.mobile_phone,
            professional.one_time_code_channel,
            professional.disabled,
            professional.password_hash,
            professional.created_at,
        )
        inserted = status.endswith(" 1")
        if inserted:
            await self._db.executemany(
                "INSERT INTO professional_organisations (professional_id, organisation_id, rank) VALUES ($1, $2, $3)",
                [
                    (professional.id, organisation_id, rank)
                    for rank, organisation_id in enumerate(professional.organisation_ids)
                ],
            )
        return inserted

    async def organisation_by_id(self, organisation_id: uuid.UUID) -> Organisation | None:
        """An organisation by id."""
        row = await self._db.fetchrow("SELECT * FROM organisations WHERE id = $1", organisation_id)
        if row is None:
            return None
        return Organisation(
            id=row["id"],
            finess=row["finess"] or "",
            name=row["name"],
            kind=row["kind"],
            address=row["address"],
            department_code=row["department_code"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def insert_organisation(self, organisation: Organisation) -> bool:
        """Register an organisation unless the id or FINESS exists."""
        status: str = await self._db.execute(
            """
            INSERT INTO organisations (id, finess, name, kind, address, department_code, created_at, updated_at)
            VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, $7, $7)
            ON CONFLICT DO NOTHING
            """,
            organisation.id,
            organisation.finess,
            organisation.name,
            organisation.kind,
            organisation.address,
            organisation.department_code,
            organisation.created_at,
        )
        return status.endswith(" 1")

    # ---- software clients

    async def client_by_id(self, client_id: str) -> SoftwareClient | None:
        """A software client by id."""
        row = await self._db.fetchrow(
            f"SELECT {_CLIENT_COLUMNS} FROM software_clients c WHERE c.client_id = $1", client_id
        )
        return _client(row) if row else None

    async def insert_client(self, client: SoftwareClient) -> bool:
        """Register a client and its AE titles unless the client id exists."""
        status: str = await self._db.execute(
            """
            INSERT INTO software_clients (client_id, display_name, kind, organisation_id, scopes, disabled, secret_hash,
                secret_updated_at, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
            ON CONFLICT DO NOTHING
            """,
            client.client_id,
            client.display_name,
            client.kind,
            client.organisation_id,
            list(client.scopes),
            client.disabled,
            client.secret_hash,
            client.secret_updated_at,
            client.created_at,
        )
        inserted = status.endswith(" 1")
        if inserted:
            await self._db.executemany(
                "INSERT INTO client_ae_titles (ae_title, client_id) VALUES ($1, $2)",
                [(ae_title, client.client_id) for ae_title in client.ae_titles],
            )
        return inserted

    # ---- representatives and treating physician

    async def representation(
        self, holder_id: uuid.UUID, representative_id: uuid.UUID, now: dt.datetime
    ) -> Representation | None:
        """The legal representation or helper nomination of ``representative_id`` for ``holder_id`` in force now."""
        row = await self._db.fetchrow(
            """
            SELECT id, kind, holder_id, representative_id, access, valid_from, valid_until FROM representatives
             WHERE holder_id = $1 AND representative_id = $2 AND ended_at IS NULL
               AND valid_from <= $3 AND (valid_until IS NULL OR valid_until > $3)
             ORDER BY kind = 'legal' DESC LIMIT 1
            """,
            holder_id,
            representative_id,
            now,
        )
        if row is None:
            return None
        return Representation(
            id=row["id"],
            kind=row["kind"],
            holder_id=row["holder_id"],
            representative_id=row["representative_id"],
            access=row["access"],
            valid_from=row["valid_from"],
            valid_until=row["valid_until"],
        )

    async def insert_representation(
        self, representation: Representation, relationship: str, created_at: dt.datetime
    ) -> bool:
        """Record a representation unless the same one is already current."""
        status: str = await self._db.execute(
            """
            INSERT INTO representatives (id, kind, holder_id, representative_id, relationship, access, valid_from,
                valid_until, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
            ON CONFLICT DO NOTHING
            """,
            representation.id,
            representation.kind,
            representation.holder_id,
            representation.representative_id,
            relationship,
            representation.access,
            representation.valid_from,
            representation.valid_until,
            created_at,
        )
        return status.endswith(" 1")

    async def declare_treating_physician_if_none(
        self, holder_id: uuid.UUID, professional_id: uuid.UUID, declared_at: dt.datetime
    ) -> bool:
        """Declare a treating physician for a holder who has none."""
        status: str = await self._db.execute(
            "INSERT INTO treating_physicians (holder_id, professional_id, declared_at) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            holder_id,
            professional_id,
            declared_at,
        )
        return status.endswith(" 1")

    async def treating_physician_of(self, holder_id: uuid.UUID) -> uuid.UUID | None:
        """The professional id of a holder's treating physician."""
        value: uuid.UUID | None = await self._db.fetchval(
            "SELECT professional_id FROM treating_physicians WHERE holder_id = $1", holder_id
        )
        return value

    # ---- activation codes

    async def outstanding_activation_code(self, person_id: uuid.UUID) -> tuple[uuid.UUID, str] | None:
        """Id and hash of the person's current activation code."""
        row = await self._db.fetchrow(
            "SELECT id, code_hash FROM activation_codes WHERE person_id = $1 AND used_at IS NULL AND revoked_at IS NULL",
            person_id,
        )
        return (row["id"], row["code_hash"]) if row else None

    async def replace_activation_code(
        self, person_id: uuid.UUID, code_hash: str, channel: str, created_at: dt.datetime, expires_at: dt.datetime
    ) -> uuid.UUID:
        """Revoke the person's outstanding code and store a new one (inside a transaction)."""
        await self._db.execute(
            "UPDATE activation_codes SET revoked_at = $2 WHERE person_id = $1 AND used_at IS NULL AND revoked_at IS NULL",
            person_id,
            created_at,
        )
        code_id = uuid.uuid4()
        await self._db.execute(
            "INSERT INTO activation_codes (id, person_id, code_hash, channel, created_at, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            code_id,
            person_id,
            code_hash,
            channel,
            created_at,
            expires_at,
        )
        return code_id

    # ---- login challenges

    async def insert_challenge(self, challenge: LoginChallenge) -> None:
        """Store a new login challenge."""
        await self._db.execute(
            """
            INSERT INTO login_challenges (id, account_kind, account_id, code_hash, channel, masked_destination, state,
                attempts, max_attempts, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            """,
            challenge.id,
            challenge.account_kind.value,
            challenge.account_id,
            challenge.code_hash,
            challenge.channel,
            challenge.masked_destination,
            challenge.state.value,
            challenge.attempts,
            challenge.max_attempts,
            challenge.created_at,
            challenge.expires_at,
        )

    async def challenge_for_update(self, challenge_id: uuid.UUID) -> LoginChallenge | None:
        """A login challenge, locked until the end of the transaction."""
        row = await self._db.fetchrow("SELECT * FROM login_challenges WHERE id = $1 FOR UPDATE", challenge_id)
        return _challenge(row) if row else None

    async def update_challenge(
        self, challenge_id: uuid.UUID, *, state: ChallengeState, attempts: int, completed_at: dt.datetime | None = None
    ) -> None:
        """Record a try on a challenge, or its outcome."""
        await self._db.execute(
            "UPDATE login_challenges SET state = $2, attempts = $3, completed_at = $4 WHERE id = $1",
            challenge_id,
            state.value,
            attempts,
            completed_at,
        )

    # ---- refresh tokens

    async def insert_refresh_token(
        self,
        *,
        token_id: uuid.UUID,
        digest: bytes,
        family_id: uuid.UUID,
        session: Session,
        issued_at: dt.datetime,
        expires_at: dt.datetime,
        access: IssuedAccessToken,
    ) -> None:
        """Store a refresh token's digest in its family."""
        await self._db.execute(
            """
            INSERT INTO refresh_tokens (id, token_digest, family_id, account_kind, account_id, acting_for,
                organisation_id, issued_at, expires_at, access_token_id, access_expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            """,
            token_id,
            digest,
            family_id,
            session.account_kind.value,
            session.account_id,
            session.acting_for,
            session.organisation_id,
            issued_at,
            expires_at,
            access.token_id,
            access.expires_at,
        )

    async def refresh_token_for_update(self, digest: bytes) -> RefreshToken | None:
        """A refresh token by digest, locked until the end of the transaction."""
        row = await self._db.fetchrow("SELECT * FROM refresh_tokens WHERE token_digest = $1 FOR UPDATE", digest)
        return _refresh_token(row) if row else None

    async def mark_refresh_token_rotated(self, token_id: uuid.UUID, replaced_by: uuid.UUID, now: dt.datetime) -> None:
        """Record that a refresh token was exchanged for ``replaced_by``."""
        await self._db.execute(
            "UPDATE refresh_tokens SET rotated_at = $2, replaced_by = $3 WHERE id = $1", token_id, now, replaced_by
        )

    async def revoke_family(self, family_id: uuid.UUID, now: dt.datetime, reason: str) -> list[IssuedAccessToken]:
        """Revoke every refresh token of a family; the access tokens issued with them that are still alive."""
        await self._db.execute(
            "UPDATE refresh_tokens SET revoked_at = $2, revoke_reason = $3 WHERE family_id = $1 AND revoked_at IS NULL",
            family_id,
            now,
            reason,
        )
        rows = await self._db.fetch(
            "SELECT access_token_id, access_expires_at FROM refresh_tokens WHERE family_id = $1 AND access_expires_at > $2",
            family_id,
            now,
        )
        return [IssuedAccessToken(row["access_token_id"], row["access_expires_at"]) for row in rows]

    async def revoke_account_sessions(
        self, account_kind: str, account_id: uuid.UUID, now: dt.datetime, *, acting_for_too: bool = False
    ) -> list[IssuedAccessToken]:
        """End every refresh-token family of an account (and, with ``acting_for_too``, every family
        acting for it); the access tokens issued with them that are still alive."""
        acting_for = " OR (account_kind = 'person' AND acting_for = $2)" if acting_for_too else ""
        families = await self._db.fetch(
            "SELECT DISTINCT family_id FROM refresh_tokens"
            f" WHERE ((account_kind = $1 AND account_id = $2){acting_for}) AND revoked_at IS NULL",
            account_kind,
            account_id,
        )
        revoked: list[IssuedAccessToken] = []
        for row in families:
            revoked.extend(await self.revoke_family(row["family_id"], now, "account disabled"))
        return revoked

    async def purge_expired(self, before: dt.datetime) -> tuple[int, int]:
        """Delete login challenges and refresh tokens that expired before ``before``; how many of each."""
        challenges: str = await self._db.execute("DELETE FROM login_challenges WHERE expires_at < $1", before)
        tokens: str = await self._db.execute(
            "DELETE FROM refresh_tokens WHERE expires_at < $1 AND access_expires_at < $1", before
        )
        return int(challenges.split()[-1]), int(tokens.split()[-1])

    # ---- signing keys

    async def signing_keys(self) -> list[StoredSigningKey]:
        """Every signing key, newest first."""
        rows = await self._db.fetch("SELECT * FROM signing_keys ORDER BY created_at DESC, kid")
        return [_signing_key(row) for row in rows]

    async def insert_signing_key(self, key: StoredSigningKey) -> None:
        """Store a new signing key."""
        await self._db.execute(
            """
            INSERT INTO signing_keys (kid, algorithm, curve, public_jwk, private_key_pem, state, created_at,
                activated_at, retire_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            """,
            key.kid,
            key.algorithm,
            key.curve,
            key.public_jwk,
            key.private_key_pem,
            key.state,
            key.created_at,
            key.activated_at,
            key.retire_at,
        )

    async def set_signing_key_state(self, kid: str, state: str, retire_at: dt.datetime | None) -> None:
        """Move a signing key along its lifecycle."""
        await self._db.execute(
            "UPDATE signing_keys SET state = $2, retire_at = $3 WHERE kid = $1", kid, state, retire_at
        )


_COUNTABLE = frozenset(
    {
        "persons",
        "professionals",
        "professional_organisations",
        "organisations",
        "software_clients",
        "client_ae_titles",
        "representatives",
        "treating_physicians",
        "activation_codes",
        "login_challenges",
        "refresh_tokens",
        "signing_keys",
    }
)
