"""Calls notify makes to other services.

- identity, with notify's own service token (``carnet_kit.service_tokens``): a person's
  e-mail contact point, for the e-mails of events and messages (a refusal or an outage only
  leaves the e-mail out, the inbox item goes through); and the persons with a space, their
  birth date and sex, for the daily prevention reminders;
- dossier, with the caller's own token: "save to my record", a DepositDocument made as the
  holder, so that dossier and consent decide on the holder and mark the document as the
  holder's own.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from carnet.common.v1 import common_pb2
from carnet.dossier.v1 import dossier_service_pb2 as dossier_pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as dossier_grpc
from carnet.dossier.v1 import resources_pb2 as dossier_res
from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet.identity.v1 import resources_pb2 as identity_res
from carnet_kit.auth import current_token
from carnet_kit.channels import create_channel
from carnet_kit.errors import CarnetError, Unavailable
from carnet_kit.service_tokens import ServiceTokens
from carnet_kit.settings import ServiceSettings
from carnet_kit.status import parse_rpc_error
from carnet_notify.messaging import RecordSaveRequest

log = logging.getLogger(__name__)

DEPOSIT_CHUNK_BYTES = 512 * 1024
"""Dossier takes chunks of up to 1 MiB."""
DEPOSIT_TIMEOUT_SECONDS = 60.0
"""An attachment travels whole to dossier: more time than a plain call."""

_RECORD_FORMATS = {
    "PDF": dossier_res.DOCUMENT_FORMAT_PDF,
    "JPEG": dossier_res.DOCUMENT_FORMAT_JPEG,
    "TEXT": dossier_res.DOCUMENT_FORMAT_TEXT,
}
# Dossier's names for the fields of its deposit metadata, as SaveAttachmentToRecord names them.
_DEPOSIT_FIELDS = {"metadata.title": "title", "metadata.type_code": "type_code", "metadata.class_code": "class_code"}


def _caller_metadata() -> tuple[tuple[str, str], ...]:
    """The caller's own bearer token, so that the other service decides on the caller, not on notify."""
    token = current_token()
    return (("authorization", f"Bearer {token}"),) if token else ()


def _remote(error: grpc.aio.AioRpcError, service: str) -> CarnetError:
    remote = parse_rpc_error(error)
    if remote.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"{service} did not answer: {remote.message}", reason="DEPENDENCY_UNAVAILABLE")
    failure = remote.to_error()
    named = failure.metadata.get("field", "")
    if named in _DEPOSIT_FIELDS:
        failure.metadata["field"] = _DEPOSIT_FIELDS[named]
    return failure


class HolderContacts:
    """A person's e-mail contact point, read from identity (``GetPerson``) with notify's service token."""

    def __init__(self, identity: grpc.aio.Channel, tokens: ServiceTokens, *, timeout: float) -> None:
        self._stub = identity_service_pb2_grpc.IdentityServiceStub(identity)
        self._tokens = tokens
        self._timeout = timeout

    async def email(self, holder_id: str) -> str:
        """The person's e-mail address; empty when identity has none, refuses, or does not answer."""
        try:
            person = await self._stub.GetPerson(
                identity_service_pb2.GetPersonRequest(person_id=holder_id),
                metadata=await self._tokens.metadata(),
                timeout=self._timeout,
            )
        except Unavailable as error:
            log.warning("no e-mail contact point for holder %s: %s", holder_id, error.message)
            return ""
        except grpc.aio.AioRpcError as error:
            remote = parse_rpc_error(error)
            log.warning(
                "no e-mail contact point for holder %s: identity answered %s %s",
                holder_id,
                remote.code.name,
                remote.reason,
            )
            return ""
        return person.email


_PROFESSION_TITLES = {"10": "Dr ", "40": "Dr "}
NAMES_CACHED = 4096
"""Display names kept in memory (names change rarely; a new process reads them again)."""


def _person_name(name: common_pb2.PersonName) -> str:
    first = name.first_names[0] if name.first_names else ""
    last = (name.used_name or name.birth_name).upper()
    return " ".join(part for part in (first, last) if part)


class ParticipantNames:
    """How a thread shows who wrote: a professional's name (``Dr Paul DUBOIS``), a client's display name, a
    person's name; read from identity with notify's service token. Presentation only: a name identity cannot
    give stays empty (and is asked again next time)."""

    def __init__(self, identity: grpc.aio.Channel, tokens: ServiceTokens, *, timeout: float) -> None:
        self._stub = identity_service_pb2_grpc.IdentityServiceStub(identity)
        self._tokens = tokens
        self._timeout = timeout
        self._known: dict[tuple[str, str], str] = {}

    async def of(self, role: str, subject: str) -> str:
        """The display name of the participant ``subject`` taking part as ``role``; empty when unknown."""
        key = (role, subject)
        if key in self._known:
            return self._known[key]
        try:
            name = await self._ask(role, subject)
        except (Unavailable, grpc.aio.AioRpcError) as error:
            reason = error.message if isinstance(error, Unavailable) else parse_rpc_error(error).reason
            log.warning("no display name for %s %s: %s", role, subject, reason)
            return ""
        if len(self._known) >= NAMES_CACHED:
            self._known.pop(next(iter(self._known)))
        self._known[key] = name
        return name

    async def _ask(self, role: str, subject: str) -> str:
        metadata = await self._tokens.metadata()
        if role == "professional":
            professional = await self._stub.GetProfessional(
                identity_service_pb2.GetProfessionalRequest(professional_id=subject),
                metadata=metadata,
                timeout=self._timeout,
            )
            return _PROFESSION_TITLES.get(professional.profession_code, "") + _person_name(professional.name)
        if role == "client":
            client = await self._stub.GetSoftwareClient(
                identity_service_pb2.GetSoftwareClientRequest(client_id=subject), metadata=metadata, timeout=self._timeout
            )
            return client.display_name
        if role in ("holder", "representative", "helper"):
            person = await self._stub.GetPerson(
                identity_service_pb2.GetPersonRequest(person_id=subject), metadata=metadata, timeout=self._timeout
            )
            return _person_name(person.name)
        return ""


SPACE_STATES = (identity_res.ACCOUNT_STATE_ACTIVE, identity_res.ACCOUNT_STATE_CREATED_BY_DEFAULT)
"""The states in which a person has a space to be reminded in."""
PERSONS_PAGE_SIZE = 1000


@dataclass(frozen=True)
class PersonFacts:
    """What the prevention rules need of a person: birth date (unknown month or day taken as the 1st),
    administrative sex (``F``, ``M``, or empty when unknown) and where to write."""

    person_id: str
    birth_date: dt.date | None
    sex: str
    email: str


def person_facts(person: identity_res.Person) -> PersonFacts:
    """The facts of an identity Person message."""
    born = person.birth_date
    birth = None
    if person.HasField("birth_date") and 1 <= born.year <= 9999:
        try:
            birth = dt.date(born.year, born.month or 1, born.day or 1)
        except ValueError:
            birth = None
    sex = {common_pb2.SEX_FEMALE: "F", common_pb2.SEX_MALE: "M"}.get(person.sex, "")
    return PersonFacts(person_id=person.person_id, birth_date=birth, sex=sex, email=person.email)


class IdentityPersons:
    """Persons with a space, from identity (``ListPersons``, ``GetPerson``) with notify's service token."""

    def __init__(self, identity: grpc.aio.Channel, tokens: ServiceTokens, *, timeout: float) -> None:
        self._stub = identity_service_pb2_grpc.IdentityServiceStub(identity)
        self._tokens = tokens
        self._timeout = timeout

    async def pages(self, *, page_size: int = PERSONS_PAGE_SIZE) -> AsyncIterator[list[PersonFacts]]:
        """Every person whose space is open (active or created by default), a page at a time."""
        for state in SPACE_STATES:
            token = ""
            while True:
                try:
                    page = await self._stub.ListPersons(
                        identity_service_pb2.ListPersonsRequest(page_size=page_size, page_token=token, state=state),
                        metadata=await self._tokens.metadata(),
                        timeout=self._timeout,
                    )
                except grpc.aio.AioRpcError as error:
                    raise _remote(error, "identity") from None
                yield [person_facts(person) for person in page.persons]
                token = page.next_page_token
                if not token:
                    break

    async def one(self, person_id: str) -> PersonFacts | None:
        """One person if their space is open; None when identity knows no such person or the space is not open."""
        try:
            person = await self._stub.GetPerson(
                identity_service_pb2.GetPersonRequest(person_id=person_id),
                metadata=await self._tokens.metadata(),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _remote(error, "identity") from None
        return person_facts(person) if person.state in SPACE_STATES else None


class DossierRecord:
    """Deposits documents into a holder's record, as the caller (the holder or whoever writes for them)."""

    def __init__(self, settings: ServiceSettings) -> None:
        # Not retried by the channel: a deposit streams its content (its unique_id makes a retry by hand safe).
        self.channel = create_channel(settings.dossier_addr, timeout=settings.call_timeout_seconds)
        self._stub = dossier_grpc.DossierServiceStub(self.channel)
        self._timeout = max(settings.call_timeout_seconds, DEPOSIT_TIMEOUT_SECONDS)

    async def deposit(self, *, holder_id: str, unique_id: str, request: RecordSaveRequest, content: bytes) -> str:
        """The id of the document made of ``content`` (the existing one for a ``unique_id`` seen before)."""
        metadata = dossier_res.DocumentMetadata(
            unique_id=unique_id,
            holder_id=holder_id,
            type_code=request.type_code,
            class_code=request.class_code,
            format=_RECORD_FORMATS[request.format],
            title=request.title,
        )

        async def messages() -> AsyncIterator[dossier_pb.DepositDocumentRequest]:
            yield dossier_pb.DepositDocumentRequest(metadata=metadata)
            for start in range(0, len(content), DEPOSIT_CHUNK_BYTES):
                yield dossier_pb.DepositDocumentRequest(chunk=content[start : start + DEPOSIT_CHUNK_BYTES])

        try:
            document = await self._stub.DepositDocument(messages(), metadata=_caller_metadata(), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _remote(error, "dossier") from None
        return document.document_id

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close(None)
