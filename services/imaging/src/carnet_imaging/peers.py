"""What imaging asks identity, with its own service token (a PACS pushing over DICOM has no token).

- the software client owning an AE title, and whether a client lists a title as its own
  (the AE registry);
- the person an INS designates, or a person by id, for patient matching.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet.identity.v1 import resources_pb2 as identity_res
from carnet_kit.errors import CarnetError, Unavailable
from carnet_kit.service_tokens import ServiceTokens
from carnet_kit.status import parse_rpc_error

log = logging.getLogger(__name__)

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _failure(error: grpc.aio.AioRpcError) -> CarnetError:
    remote = parse_rpc_error(error)
    if remote.code in _UNREACHABLE:
        return Unavailable(f"identity did not answer: {remote.message}", reason="DEPENDENCY_UNAVAILABLE")
    return remote.to_error()


@dataclass(frozen=True)
class ClientFacts:
    """A software client as the AE registry needs it."""

    client_id: str
    organisation_id: str
    ae_titles: tuple[str, ...]
    disabled: bool


@dataclass(frozen=True)
class PersonFacts:
    """A person as patient matching needs it."""

    person_id: str
    birth_date: str
    """YYYYMMDD (DICOM DA), with 0000 for an unknown month or day stripped: YYYY or YYYYMM."""
    sex: str
    """M, F, O or empty."""
    state: int


def _birth_date(person: identity_res.Person) -> str:
    date = person.birth_date
    if not person.HasField("birth_date") or not date.year:
        return ""
    if not date.month:
        return f"{date.year:04d}"
    if not date.day:
        return f"{date.year:04d}{date.month:02d}"
    return f"{date.year:04d}{date.month:02d}{date.day:02d}"


_SEX = {1: "F", 2: "M", 3: "O"}


def person_facts(person: identity_res.Person) -> PersonFacts:
    """The facts of an identity Person message."""
    return PersonFacts(person.person_id, _birth_date(person), _SEX.get(person.sex, ""), person.state)


class IdentityDirectory:
    """Identity's answers imaging needs, asked with imaging's service token."""

    def __init__(self, identity: grpc.aio.Channel, tokens: ServiceTokens, *, timeout: float) -> None:
        self._stub = identity_service_pb2_grpc.IdentityServiceStub(identity)
        self._tokens = tokens
        self._timeout = timeout

    async def client(self, client_id: str) -> ClientFacts | None:
        """A software client; None when identity knows none by that id."""
        try:
            found = await self._stub.GetSoftwareClient(
                identity_service_pb2.GetSoftwareClientRequest(client_id=client_id),
                metadata=await self._tokens.metadata(),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _failure(error) from None
        return ClientFacts(found.client_id, found.organisation_id, tuple(found.ae_titles), found.disabled)

    async def person_by_ins(self, ins: str) -> PersonFacts | None:
        """The person an INS (with or without its key) designates; None when identity knows none."""
        return await self._lookup(identity_service_pb2.LookupPersonRequest(ins=ins))

    async def person(self, person_id: str) -> PersonFacts | None:
        """A person by id; None when identity knows none."""
        return await self._lookup(identity_service_pb2.LookupPersonRequest(person_id=person_id))

    async def _lookup(self, request: identity_service_pb2.LookupPersonRequest) -> PersonFacts | None:
        try:
            person = await self._stub.LookupPerson(
                request, metadata=await self._tokens.metadata(), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return None  # not an INS identity accepts: nobody
            raise _failure(error) from None
        return person_facts(person)
