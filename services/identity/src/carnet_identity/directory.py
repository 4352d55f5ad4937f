"""The directory's use cases: professionals, organisations and software clients.

Writes are operators' work; every change is written with its event in one
transaction (outbox). Field values arrive as plain mappings built by the servicer
from the request, keyed by the contract's field names; an update changes only the
fields its mask names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from google.protobuf import timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import events_pb2
from carnet_identity.domain.credentials import check_password_policy
from carnet_identity.domain.directory import (
    CLIENT_KINDS,
    ORGANISATION_KINDS,
    check_client_id,
    check_client_secret,
    check_name,
    check_profession,
    check_scopes,
    check_specialty,
    ensure_may_list_clients,
    ensure_may_list_professionals,
    ensure_may_read_client,
    ensure_may_read_professional,
    ensure_operator,
    new_client_id,
    new_client_secret,
    next_page_token,
    normalise_ae_titles,
    page_of,
    parse_id,
)
from carnet_identity.domain.identifiers import normalise_email, normalise_finess, normalise_rpps
from carnet_identity.domain.model import Organisation, PersonName, Professional, SoftwareClient
from carnet_identity.hashing import SecretHasher
from carnet_identity.keys import utcnow
from carnet_identity.sessions import SessionService
from carnet_identity.store_directory import DirectoryStore
from carnet_identity.tokens import IssuedToken
from carnet_kit.auth import Principal
from carnet_kit.errors import Conflict, InvalidArgument, NotFound, PermissionDenied

if TYPE_CHECKING:
    from carnet_identity.representation import RepresentationService

log = logging.getLogger(__name__)

_MOBILE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_DEPARTMENT = re.compile(r"^([0-9]{2}|2[AB]|9[78][0-9])$")

PROFESSIONAL_MUTABLE = frozenset(
    {"name", "profession_code", "specialty_code", "organisation_ids", "email", "mobile_phone", "disabled"}
)
ORGANISATION_MUTABLE = frozenset({"finess", "name", "kind", "address", "department_code"})
CLIENT_MUTABLE = frozenset({"display_name", "scopes", "ae_titles", "disabled", "organisation_id"})


T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Listing(Generic[T]):
    """A page of results, the token of the next one, and the total."""

    items: list[T]
    next_page_token: str
    total_size: int


def mask_paths(paths: Sequence[str], allowed: frozenset[str]) -> set[str]:
    """The top-level fields an update mask names; INVALID_ARGUMENT for an empty mask or a field not changeable."""
    fields = {path.split(".", 1)[0] for path in paths}
    if not fields:
        raise InvalidArgument("update_mask must name the fields to change", field="update_mask", reason="FIELD_INVALID")
    refused = sorted(fields - allowed)
    if refused:
        raise InvalidArgument(
            f"these fields cannot be changed: {' '.join(refused)}",
            field="update_mask",
            reason="FIELD_INVALID",
            metadata={"fields": " ".join(refused)},
        )
    return fields


def _name(value: PersonName) -> PersonName:
    first_names = tuple(name.strip() for name in value.first_names if name.strip())
    if not value.birth_name.strip() or not first_names:
        raise InvalidArgument("a name needs a birth name and a first name", field="name", reason="FIELD_INVALID")
    return PersonName(
        birth_name=value.birth_name.strip().upper(),
        first_names=first_names,
        used_name=value.used_name.strip().upper(),
        used_first_name=value.used_first_name.strip(),
    )


def _email(value: str) -> str:
    return normalise_email(value) if value.strip() else ""


def _mobile(value: str) -> str:
    number = value.replace(" ", "")
    if number and not _MOBILE.match(number):
        raise InvalidArgument(
            "a mobile phone is in E.164 form (+33612345678)", field="mobile_phone", reason="FIELD_INVALID"
        )
    return number


def _department(value: str) -> str:
    code = value.strip().upper()
    if code and not _DEPARTMENT.match(code):
        raise InvalidArgument("not an INSEE département code", field="department_code", reason="FIELD_INVALID")
    return code


def _ids(values: Sequence[str], field: str) -> tuple[uuid.UUID, ...]:
    return tuple(dict.fromkeys(parse_id(value, field) for value in values))


def _change_type(created: bool) -> common_pb2.ChangeType.ValueType:
    return common_pb2.CHANGE_TYPE_CREATED if created else common_pb2.CHANGE_TYPE_UPDATED


def _timestamp(now: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(now)
    return stamp


class ProfessionalDirectory:
    """Registers professionals and tells who they are."""

    def __init__(
        self,
        store: DirectoryStore,
        hasher: SecretHasher,
        sessions: SessionService,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._sessions = sessions
        self._clock = clock

    async def _checked(self, base: Professional, fields: Mapping[str, Any], paths: set[str]) -> Professional:
        changes: dict[str, Any] = {}
        if "name" in paths:
            changes["name"] = _name(fields["name"])
        if "profession_code" in paths or "specialty_code" in paths:
            profession = check_profession(
                str(fields["profession_code"]) if "profession_code" in paths else base.profession_code
            )
            changes["profession_code"] = profession.code
            changes["specialty_code"] = check_specialty(
                profession, str(fields["specialty_code"]) if "specialty_code" in paths else base.specialty_code
            )
        if "organisation_ids" in paths:
            organisation_ids = _ids(fields["organisation_ids"], "organisation_ids")
            missing = await self._store.missing_organisations(organisation_ids)
            if missing:
                raise NotFound(
                    "no such organisation",
                    reason="ORGANISATION_NOT_FOUND",
                    metadata={"organisation_id": str(missing[0])},
                )
            changes["organisation_ids"] = organisation_ids
        if "email" in paths:
            changes["email"] = _email(fields["email"])
            if changes["email"]:
                other = await self._store.professional_by_email(changes["email"])
                if other is not None and other.id != base.id:
                    raise Conflict(
                        "another professional logs in with this e-mail",
                        reason="PROFESSIONAL_ALREADY_EXISTS",
                        metadata={"field": "email"},
                    )
        if "mobile_phone" in paths:
            changes["mobile_phone"] = _mobile(fields["mobile_phone"])
        if "disabled" in paths:
            changes["disabled"] = bool(fields["disabled"])
        return dataclasses.replace(base, **changes)

    async def create(self, caller: Principal, fields: Mapping[str, Any], initial_password: str = "") -> Professional:
        """Register a professional (operators); RPPS checked (11 digits, Luhn) and unique."""
        ensure_operator(caller)
        rpps = normalise_rpps(str(fields.get("rpps", "")))
        now = self._clock()
        blank = Professional(
            id=uuid.uuid4(),
            rpps=rpps,
            name=PersonName("", ()),
            profession_code="",
            specialty_code="",
            organisation_ids=(),
            email="",
            mobile_phone="",
            one_time_code_channel="email",
            disabled=False,
            password_hash=None,
            created_at=now,
            updated_at=now,
        )
        professional = await self._checked(blank, fields, set(PROFESSIONAL_MUTABLE))
        if initial_password:
            check_password_policy(
                initial_password, personal=(rpps, professional.email.partition("@")[0], professional.name.birth_name)
            )
            professional = dataclasses.replace(professional, password_hash=await self._hasher.hash(initial_password))
        async with self._store.transaction() as tx:
            if await tx.professional_by_rpps(rpps) is not None or not await tx.insert_professional(professional):
                raise Conflict(
                    "a professional with this RPPS number exists",
                    reason="PROFESSIONAL_ALREADY_EXISTS",
                    metadata={"field": "rpps"},
                )
            await self._publish(tx, professional, created=True, now=now)
        return professional

    async def _publish(
        self, tx: DirectoryStore, professional: Professional, *, created: bool, now: dt.datetime
    ) -> None:
        await tx.publish(
            events_pb2.ProfessionalChangedEvent(
                professional_id=str(professional.id),
                rpps=professional.rpps,
                change_type=_change_type(created),
                occur_time=_timestamp(now),
            )
        )

    async def _get(self, professional_id: uuid.UUID) -> Professional:
        professional = await self._store.professional_by_id(professional_id)
        if professional is None:
            raise NotFound("no such professional", reason="PROFESSIONAL_NOT_FOUND")
        return professional

    async def get(self, caller: Principal, professional_id: str) -> Professional:
        """A professional by id (services, operators, the professional themself)."""
        wanted = parse_id(professional_id, "professional_id")
        ensure_may_read_professional(caller, wanted)
        return await self._get(wanted)

    async def lookup(self, caller: Principal, key: str, value: str) -> Professional:
        """A professional by ``rpps``, ``email`` or ``professional_id``."""
        if key == "professional_id":
            return await self.get(caller, value)
        if key == "rpps":
            professional = await self._store.professional_by_rpps(normalise_rpps(value))
        elif key == "email":
            professional = await self._store.professional_by_email(normalise_email(value))
        else:
            raise InvalidArgument("give an rpps, an email or a professional_id", field="key", reason="FIELD_INVALID")
        if key == "rpps":
            # The RPPS directory is public (annuaire santé): anyone signed in may find a
            # professional by number, e.g. a holder blocking one, but not their contacts.
            if professional is None:
                raise NotFound("no professional has this RPPS number", reason="PROFESSIONAL_NOT_FOUND")
            try:
                ensure_may_read_professional(caller, professional.id)
            except PermissionDenied:
                return dataclasses.replace(professional, email="", mobile_phone="", password_hash=None)
            return professional
        if professional is None:
            # Only callers who may list the directory learn that an address is unknown.
            ensure_may_list_professionals(caller)
            raise NotFound("no such professional", reason="PROFESSIONAL_NOT_FOUND")
        ensure_may_read_professional(caller, professional.id)
        return professional

    async def list(
        self,
        caller: Principal,
        *,
        profession_code: str,
        organisation_id: str,
        name_query: str,
        page_size: int,
        page_token: str,
    ) -> Listing[Professional]:
        """Professionals matching the filters (services and operators)."""
        ensure_may_list_professionals(caller)
        organisation = parse_id(organisation_id, "organisation_id") if organisation_id else None
        filters = f"professionals|{profession_code}|{organisation_id}|{name_query}"
        page = page_of(page_size, page_token, filters)
        items, total = await self._store.list_professionals(
            profession_code=profession_code.strip(), organisation_id=organisation, name_query=name_query, page=page
        )
        return Listing(items, next_page_token(page, len(items), total, filters), total)

    async def update(
        self, caller: Principal, professional_id: str, fields: Mapping[str, Any], paths: Sequence[str]
    ) -> Professional:
        """Change the fields named by the mask (operators); the RPPS never changes; disabling ends the sessions."""
        ensure_operator(caller)
        wanted = parse_id(professional_id, "professional.professional_id")
        named = mask_paths(paths, PROFESSIONAL_MUTABLE)
        now = self._clock()
        async with self._store.transaction() as tx:
            current = await tx.professional_by_id(wanted)
            if current is None:
                raise NotFound("no such professional", reason="PROFESSIONAL_NOT_FOUND")
            updated = dataclasses.replace(await self._checked(current, fields, named), updated_at=now)
            await tx.update_professional(updated)
            await self._publish(tx, updated, created=False, now=now)
            # A professional struck off loses their sessions at once, not at the next refresh.
            revoked = (
                await tx.revoke_account_sessions("professional", updated.id, now)
                if updated.disabled and not current.disabled
                else []
            )
        await self._sessions.revoke_access_tokens(revoked)
        return updated


class OrganisationDirectory:
    """Registers organisations (FINESS-checked)."""

    def __init__(self, store: DirectoryStore, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._store = store
        self._clock = clock

    async def _checked(self, base: Organisation, fields: Mapping[str, Any], paths: set[str]) -> Organisation:
        changes: dict[str, Any] = {}
        if "finess" in paths:
            finess = str(fields["finess"]).strip()
            changes["finess"] = normalise_finess(finess) if finess else ""
            if changes["finess"]:
                other = await self._store.organisation_by_finess(changes["finess"])
                if other is not None and other.id != base.id:
                    raise Conflict(
                        "an organisation with this FINESS number exists",
                        reason="ORGANISATION_ALREADY_EXISTS",
                        metadata={"field": "finess", "organisation_id": str(other.id)},
                    )
        if "name" in paths:
            changes["name"] = check_name(str(fields["name"]), "name")
        if "kind" in paths:
            kind = str(fields["kind"])
            if kind not in ORGANISATION_KINDS:
                raise InvalidArgument("the organisation kind is required", field="kind", reason="FIELD_INVALID")
            changes["kind"] = kind
        if "address" in paths:
            changes["address"] = fields["address"] or None
        if "department_code" in paths:
            changes["department_code"] = _department(str(fields["department_code"]))
        return dataclasses.replace(base, **changes)

    async def create(self, caller: Principal, fields: Mapping[str, Any]) -> Organisation:
        """Register an organisation (operators)."""
        ensure_operator(caller)
        now = self._clock()
        blank = Organisation(uuid.uuid4(), "", "", "", None, "", now, now)
        organisation = await self._checked(blank, fields, set(ORGANISATION_MUTABLE))
        if not await self._store.insert_organisation(organisation):
            raise Conflict("an organisation with this FINESS number exists", reason="ORGANISATION_ALREADY_EXISTS")
        return organisation

    async def get(self, caller: Principal, organisation_id: str) -> Organisation:
        """An organisation by id (any authenticated caller: the FINESS directory is public)."""
        organisation = await self._store.organisation_by_id(parse_id(organisation_id, "organisation_id"))
        if organisation is None:
            raise NotFound("no such organisation", reason="ORGANISATION_NOT_FOUND")
        return organisation

    async def list(
        self,
        caller: Principal,
        *,
        kind: str,
        finess: str,
        name_query: str,
        department_code: str,
        page_size: int,
        page_token: str,
    ) -> Listing[Organisation]:
        """Organisations matching the filters."""
        finess_value = normalise_finess(finess) if finess.strip() else ""
        filters = f"organisations|{kind}|{finess_value}|{name_query}|{department_code}"
        page = page_of(page_size, page_token, filters)
        items, total = await self._store.list_organisations(
            kind=kind, finess=finess_value, name_query=name_query, department_code=department_code.strip(), page=page
        )
        return Listing(items, next_page_token(page, len(items), total, filters), total)

    async def update(
        self, caller: Principal, organisation_id: str, fields: Mapping[str, Any], paths: Sequence[str]
    ) -> Organisation:
        """Change the fields named by the mask (operators)."""
        ensure_operator(caller)
        wanted = parse_id(organisation_id, "organisation.organisation_id")
        named = mask_paths(paths, ORGANISATION_MUTABLE)
        async with self._store.transaction() as tx:
            current = await tx.organisation_by_id(wanted)
            if current is None:
                raise NotFound("no such organisation", reason="ORGANISATION_NOT_FOUND")
            updated = dataclasses.replace(await self._checked(current, fields, named), updated_at=self._clock())
            await tx.update_organisation(updated)
        return updated


@dataclasses.dataclass(frozen=True)
class ClientWithSecret:
    """A client and, right after creation or rotation only, its secret in clear."""

    client: SoftwareClient
    secret: str = ""


class SoftwareClientRegistry:
    """Registers software clients, their scopes, AE titles and secrets."""

    def __init__(
        self,
        store: DirectoryStore,
        hasher: SecretHasher,
        sessions: SessionService,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._sessions = sessions
        self._clock = clock

    async def _checked(self, base: SoftwareClient, fields: Mapping[str, Any], paths: set[str]) -> SoftwareClient:
        changes: dict[str, Any] = {}
        if "display_name" in paths:
            changes["display_name"] = check_name(str(fields["display_name"]), "display_name")
        if "scopes" in paths:
            changes["scopes"] = check_scopes(fields["scopes"])
        if "ae_titles" in paths:
            changes["ae_titles"] = normalise_ae_titles(fields["ae_titles"])
        if "disabled" in paths:
            changes["disabled"] = bool(fields["disabled"])
        if "organisation_id" in paths:
            text = str(fields["organisation_id"])
            if not text:
                raise InvalidArgument(
                    "a software client is bound to an organisation", field="organisation_id", reason="FIELD_INVALID"
                )
            organisation_id = parse_id(text, "organisation_id")
            if await self._store.organisation_by_id(organisation_id) is None:
                raise NotFound("no such organisation", reason="ORGANISATION_NOT_FOUND")
            changes["organisation_id"] = organisation_id
        return dataclasses.replace(base, **changes)

    async def create(self, caller: Principal, fields: Mapping[str, Any]) -> ClientWithSecret:
        """Register a client (operators); the answer carries its secret, the only time it is shown."""
        ensure_operator(caller)
        kind = str(fields.get("kind", ""))
        if kind not in CLIENT_KINDS:
            raise InvalidArgument("the client kind is required", field="kind", reason="FIELD_INVALID")
        client_id = check_client_id(str(fields["client_id"])) if fields.get("client_id") else new_client_id(kind)
        secret = (
            check_client_secret(str(fields["client_secret"])) if fields.get("client_secret") else new_client_secret()
        )
        now = self._clock()
        blank = SoftwareClient(
            client_id=client_id,
            display_name="",
            kind=kind,
            organisation_id=None,
            scopes=(),
            ae_titles=(),
            disabled=False,
            secret_hash="",
            secret_updated_at=now,
            created_at=now,
            updated_at=now,
        )
        client = await self._checked(blank, fields, set(CLIENT_MUTABLE))
        client = dataclasses.replace(client, secret_hash=await self._hasher.hash(secret))
        async with self._store.transaction() as tx:
            taken = await tx.ae_titles_owned_by_others(client_id, client.ae_titles)
            if taken:
                raise Conflict(
                    f"AE title(s) already registered to another client: {' '.join(taken)}",
                    reason="AE_TITLE_ALREADY_REGISTERED",
                    metadata={"ae_titles": " ".join(taken)},
                )
            if not await tx.create_client(client):
                raise Conflict("a client with this id exists", reason="CLIENT_ALREADY_EXISTS")
            await self._publish(tx, client_id, common_pb2.CHANGE_TYPE_CREATED, now)
        return ClientWithSecret(client, secret)

    @staticmethod
    async def _publish(
        tx: DirectoryStore, client_id: str, change: common_pb2.ChangeType.ValueType, now: dt.datetime
    ) -> None:
        await tx.publish(
            events_pb2.SoftwareClientChangedEvent(client_id=client_id, change_type=change, occur_time=_timestamp(now))
        )

    async def _get(self, client_id: str) -> SoftwareClient:
        client = await self._store.client_by_id(client_id) if client_id else None
        if client is None:
            raise NotFound("no such software client", reason="CLIENT_NOT_FOUND")
        return client

    async def get(self, caller: Principal, client_id: str) -> SoftwareClient:
        """A client without its secret (services, operators, the client itself)."""
        ensure_may_read_client(caller, client_id)
        return await self._get(client_id)

    async def list(
        self,
        caller: Principal,
        *,
        organisation_id: str,
        kind: str,
        ae_title: str,
        scope: str,
        page_size: int,
        page_token: str,
    ) -> Listing[SoftwareClient]:
        """Clients matching the filters (services and operators; imaging finds a client by AE title)."""
        ensure_may_list_clients(caller)
        organisation = parse_id(organisation_id, "organisation_id") if organisation_id else None
        title = ae_title.strip(" ")
        filters = f"clients|{organisation_id}|{kind}|{title}|{scope}"
        page = page_of(page_size, page_token, filters)
        items, total = await self._store.list_clients(
            organisation_id=organisation, kind=kind, ae_title=title, scope=scope.strip(), page=page
        )
        return Listing(items, next_page_token(page, len(items), total, filters), total)

    async def update(
        self, caller: Principal, client_id: str, fields: Mapping[str, Any], paths: Sequence[str]
    ) -> SoftwareClient:
        """Change scopes, AE titles, state, name or organisation (operators); disabling revokes its tokens."""
        ensure_operator(caller)
        named = mask_paths(paths, CLIENT_MUTABLE)
        now = self._clock()
        async with self._store.transaction() as tx:
            current = await tx.client_by_id(client_id) if client_id else None
            if current is None:
                raise NotFound("no such software client", reason="CLIENT_NOT_FOUND")
            updated = dataclasses.replace(await self._checked(current, fields, named), updated_at=now)
            await tx.update_client(updated)
            await self._publish(tx, client_id, common_pb2.CHANGE_TYPE_UPDATED, now)
        if updated.disabled and not current.disabled:
            await self._revoke_tokens(client_id)
        return await self._get(client_id)

    async def rotate_secret(self, caller: Principal, client_id: str) -> ClientWithSecret:
        """A new secret (shown once); the old one stops working and tokens obtained with it are revoked."""
        ensure_operator(caller)
        secret = new_client_secret()
        secret_hash = await self._hasher.hash(secret)
        now = self._clock()
        async with self._store.transaction() as tx:
            if await tx.client_by_id(client_id) is None:
                raise NotFound("no such software client", reason="CLIENT_NOT_FOUND")
            await tx.set_client_secret(client_id, secret_hash, now)
            await self._publish(tx, client_id, common_pb2.CHANGE_TYPE_UPDATED, now)
        await self._revoke_tokens(client_id)
        return ClientWithSecret(await self._get(client_id), secret)

    async def delete(self, caller: Principal, client_id: str) -> None:
        """Remove a client (operators); its AE titles are freed and its tokens stop working."""
        ensure_operator(caller)
        now = self._clock()
        async with self._store.transaction() as tx:
            if not await tx.delete_client(client_id):
                raise NotFound("no such software client", reason="CLIENT_NOT_FOUND")
            await self._publish(tx, client_id, common_pb2.CHANGE_TYPE_DELETED, now)
        await self._revoke_tokens(client_id)

    async def _revoke_tokens(self, client_id: str) -> None:
        await self._sessions.revoke_access_tokens(await self._store.live_client_tokens(client_id, self._clock()))


@dataclasses.dataclass(frozen=True)
class DirectoryServices:
    """The directory's use cases, handed to the servicer together."""

    professionals: ProfessionalDirectory
    organisations: OrganisationDirectory
    clients: SoftwareClientRegistry
    representation: RepresentationService


CLIENT_TOKEN_RETENTION = dt.timedelta(hours=1)


def client_token_housekeeping(
    store: DirectoryStore, interval: float = 3600.0
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background loop forgetting the ids of client tokens long expired."""

    async def run() -> None:
        while True:
            try:
                await store.purge_client_tokens(utcnow() - CLIENT_TOKEN_RETENTION)
            except Exception:
                log.exception("client token housekeeping failed; will retry")
            await asyncio.sleep(interval)

    return run


def client_token_recorder(store: DirectoryStore) -> Callable[[str, IssuedToken], Awaitable[None]]:
    """Records each token issued to a client, so that removing or disabling the client revokes it."""

    async def record(client_id: str, token: IssuedToken) -> None:
        await store.record_client_token(client_id, token.token_id, utcnow(), token.expires_at)

    return record
