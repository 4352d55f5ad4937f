"""Calls dossier makes to other services: consent for every decision, identity for INS lookups."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import grpc

from carnet.consent.v1 import consent_service_pb2 as consent_pb
from carnet.consent.v1 import consent_service_pb2_grpc as consent_grpc
from carnet.consent.v1 import resources_pb2 as consent_res
from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.identity.v1 import identity_service_pb2_grpc as identity_grpc
from carnet_kit.auth import Principal
from carnet_kit.channels import create_channel
from carnet_kit.errors import CarnetError, NotFound, PermissionDenied, Unavailable
from carnet_kit.settings import ServiceSettings
from carnet_kit.status import parse_rpc_error

CONSENT_SERVICE = "carnet.consent.v1.ConsentService"


@dataclass(frozen=True)
class Decision:
    """What consent answered."""

    allowed: bool
    reason_code: str
    obligations: tuple[str, ...]
    matrix_version: str


@dataclass(frozen=True)
class ItemFacts:
    """What consent needs to know of the item an action is about."""

    kind: int
    document_class: str = ""
    type_code: str = ""
    author_rpps: str = ""
    author_organisation_id: str = ""
    hidden_from_professionals: bool = False
    invisible_to_holder: bool = False
    invisible_to_representatives: bool = False


def _item_attributes(item: ItemFacts) -> consent_res.ItemAttributes:
    return consent_res.ItemAttributes(
        kind=item.kind,  # type: ignore[arg-type]
        document_class=item.document_class,
        type_code=item.type_code,
        author_rpps=item.author_rpps,
        author_organisation_id=item.author_organisation_id,
        hidden_from_professionals=item.hidden_from_professionals,
        invisible_to_holder=item.invisible_to_holder,
        invisible_to_representatives=item.invisible_to_representatives,
    )


_DECISIONS: dict[tuple[int, str, tuple[int, ...], str], Decision] = {}


def _decision(response: consent_pb.DecideResponse) -> Decision:
    # A page's answers repeat a few distinct decisions: each is built once (the table stays small).
    key = (response.effect, response.reason_code, tuple(response.obligations), response.access_matrix_version)
    decision = _DECISIONS.get(key)
    if decision is None:
        decision = Decision(
            allowed=response.effect == consent_res.EFFECT_ALLOW,
            reason_code=response.reason_code,
            obligations=tuple(consent_res.Obligation.Name(o) for o in response.obligations),
            matrix_version=response.access_matrix_version,
        )
        if len(_DECISIONS) >= 1024:
            _DECISIONS.clear()
        _DECISIONS[key] = decision
    return decision


def _remote(error: grpc.aio.AioRpcError) -> CarnetError:
    remote = parse_rpc_error(error)
    if remote.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"a service dossier depends on did not answer: {remote.message}", reason="DEPENDENCY_UNAVAILABLE")
    return remote.to_error()


class ConsentClient:
    """Asks consent's Decide (retried on UNAVAILABLE: a decision has no side effect)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.channel = create_channel(
            settings.consent_addr,
            idempotent={CONSENT_SERVICE: ("Decide", "BatchDecide", "GetAccessMatrix")},
            timeout=settings.call_timeout_seconds,
        )
        self._stub = consent_grpc.ConsentServiceStub(self.channel)

    async def decide(
        self, principal: Principal, holder_id: str, action: int, item: ItemFacts, break_glass_reason: str = ""
    ) -> Decision:
        """Consent's decision for ``principal`` doing ``action`` on ``item`` of ``holder_id``."""
        request = consent_pb.DecideRequest(
            actor=principal.to_actor(),
            holder_id=holder_id,
            action=action,  # type: ignore[arg-type]
            item=_item_attributes(item),
            break_glass_reason=break_glass_reason,
        )
        try:
            response = await self._stub.Decide(request)
        except grpc.aio.AioRpcError as error:
            raise _remote(error) from None
        return _decision(response)

    async def decide_each(
        self, principal: Principal, holder_id: str, action: int, items: list[ItemFacts], break_glass_reason: str = ""
    ) -> list[Decision]:
        """Consent's decision for each item, in order, in one call."""
        if not items:
            return []
        request = consent_pb.BatchDecideRequest(
            actor=principal.to_actor(),
            holder_id=holder_id,
            action=action,  # type: ignore[arg-type]
            items=[_item_attributes(item) for item in items],
            break_glass_reason=break_glass_reason,
        )
        try:
            response = await self._stub.BatchDecide(request)
        except grpc.aio.AioRpcError as error:
            raise _remote(error) from None
        return [_decision(answer) for answer in response.decisions]

    async def decide_page(
        self,
        principal: Principal,
        holder_id: str,
        list_action: int,
        container: ItemFacts,
        item_action: int,
        items: list[ItemFacts],
        break_glass_reason: str = "",
    ) -> tuple[Decision, list[Decision]]:
        """Consent's decision to list the container, then (if it allows) for each item, in one call.

        Without the list's answer (a consent that predates the gate question) it is asked for
        on its own, so a denial is never missed.
        """
        request = consent_pb.BatchDecideRequest(
            actor=principal.to_actor(),
            holder_id=holder_id,
            action=item_action,  # type: ignore[arg-type]
            items=[_item_attributes(item) for item in items],
            break_glass_reason=break_glass_reason,
            gate=consent_pb.GateQuestion(
                action=list_action,  # type: ignore[arg-type]
                item=_item_attributes(container),
            ),
        )
        try:
            response = await self._stub.BatchDecide(request)
        except grpc.aio.AioRpcError as error:
            raise _remote(error) from None
        if not response.HasField("gate"):
            gate = await self.decide(principal, holder_id, list_action, container, break_glass_reason)
        else:
            gate = _decision(response.gate)
        if not gate.allowed:
            return gate, []
        return gate, [_decision(answer) for answer in response.decisions]

    async def require(
        self, principal: Principal, holder_id: str, action: int, item: ItemFacts
    ) -> Decision:
        """The decision if it allows; PermissionDenied carrying consent's reason otherwise."""
        decision = await self.decide(principal, holder_id, action, item)
        if not decision.allowed:
            raise PermissionDenied(
                f"consent refused this access ({decision.reason_code})",
                reason=decision.reason_code or "ACCESS_DENIED",
            )
        return decision


class IdentityClient:
    """Resolves an INS to the holder's person id, remembering recent answers briefly.

    Depositors name holders by INS on every deposit; a short cache spares identity one
    call per document while an identity merge still shows within ``ttl`` seconds.
    """

    def __init__(self, channel: grpc.aio.Channel, *, ttl: float = 60.0, capacity: int = 10_000) -> None:
        self._stub = identity_grpc.IdentityServiceStub(channel)
        self._ttl = ttl
        self._capacity = capacity
        self._known: collections.OrderedDict[str, tuple[float, str]] = collections.OrderedDict()

    async def person_id_for_ins(self, ins: str) -> str:
        """The person id of an INS; NotFound if identity does not know it."""
        now = time.monotonic()
        cached = self._known.get(ins)
        if cached is not None and cached[0] > now:
            self._known.move_to_end(ins)
            return cached[1]
        person_id = await self._lookup(ins)
        self._known[ins] = (now + self._ttl, person_id)
        self._known.move_to_end(ins)
        while len(self._known) > self._capacity:
            self._known.popitem(last=False)
        return person_id

    async def _lookup(self, ins: str) -> str:
        try:
            person = await self._stub.LookupPerson(identity_pb.LookupPersonRequest(ins=ins))
        except grpc.aio.AioRpcError as error:
            failure = _remote(error)
            if isinstance(failure, NotFound):
                raise NotFound("no holder has this INS", reason="HOLDER_NOT_FOUND", metadata={"field": "metadata.holder_ins"}) from None
            raise failure from None
        return person.person_id
