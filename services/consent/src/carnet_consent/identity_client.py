"""What consent asks identity directly: a space it has not yet heard of through events."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet_consent.domain import AccountState
from carnet_consent.events import account_state
from carnet_kit.status import parse_rpc_error


class IdentityPersons:
    """Reads a person's state and opposition deadline from identity (``GetPerson``, the caller's token)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = identity_service_pb2_grpc.IdentityServiceStub(channel)

    async def window(self, holder_id: str) -> tuple[AccountState, datetime | None] | None:
        """(state, opposition deadline), or None when identity does not know the person."""
        try:
            person = await self._stub.GetPerson(identity_service_pb2.GetPersonRequest(person_id=holder_id))
        except grpc.aio.AioRpcError as exc:
            error = parse_rpc_error(exc)
            if error.code == grpc.StatusCode.NOT_FOUND:
                return None
            raise error.to_error() from exc
        deadline = person.opposition_deadline.ToDatetime(tzinfo=UTC) if person.HasField("opposition_deadline") else None
        return account_state(person.state), deadline


class IdentityProfessionals:
    """Finds a professional's id by RPPS number (``LookupProfessional``, the caller's token)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = identity_service_pb2_grpc.IdentityServiceStub(channel)

    async def id_for_rpps(self, rpps: str) -> str | None:
        """The professional id of an RPPS number, or None when identity knows no such professional."""
        try:
            professional = await self._stub.LookupProfessional(identity_service_pb2.LookupProfessionalRequest(rpps=rpps))
        except grpc.aio.AioRpcError as exc:
            error = parse_rpc_error(exc)
            if error.code == grpc.StatusCode.NOT_FOUND:
                return None
            raise error.to_error() from exc
        return professional.professional_id
