"""gRPC surface of the consent service: proto ↔ domain, nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import timestamp_pb2
from opentelemetry import metrics, trace

from carnet.consent.v1 import consent_service_pb2, consent_service_pb2_grpc, resources_pb2
from carnet_consent.access_matrix import AccessMatrix
from carnet_consent.domain import (
    Action,
    Decision,
    DecisionRequest,
    Effect,
    ItemAttributes,
    Obligation,
    check_actor,
    decide,
    validate_request,
)
from carnet_consent.store import ConsentStore
from carnet_kit.auth import Principal, current_principal
from carnet_kit.errors import InvalidArgument, NotFound
from carnet_kit.telemetry import ATTR_ACTOR_ROLE, ATTR_DECISION, ATTR_HOLDER_ID

MAX_BATCH_ITEMS = 1000

_meter = metrics.get_meter("carnet_consent")
_decisions = _meter.create_counter(
    "carnet.consent.decisions", unit="{decision}", description="Access decisions taken, by effect and reason code"
)

_ACTIONS = {
    resources_pb2.ACTION_UNSPECIFIED: Action.UNSPECIFIED,
    resources_pb2.ACTION_READ: Action.READ,
    resources_pb2.ACTION_LIST: Action.LIST,
    resources_pb2.ACTION_CREATE: Action.CREATE,
    resources_pb2.ACTION_UPDATE: Action.UPDATE,
    resources_pb2.ACTION_DELETE: Action.DELETE,
    resources_pb2.ACTION_BREAK_GLASS_READ: Action.BREAK_GLASS_READ,
    resources_pb2.ACTION_EMERGENCY_REGULATION_READ: Action.EMERGENCY_REGULATION_READ,
}
_EFFECTS = {Effect.ALLOW: resources_pb2.EFFECT_ALLOW, Effect.DENY: resources_pb2.EFFECT_DENY}
_OBLIGATIONS = {
    Obligation.LOG_ACCESS: resources_pb2.OBLIGATION_LOG_ACCESS,
    Obligation.NOTIFY_HOLDER: resources_pb2.OBLIGATION_NOTIFY_HOLDER,
    Obligation.NOTIFY_TREATING_PHYSICIAN: resources_pb2.OBLIGATION_NOTIFY_TREATING_PHYSICIAN,
}


def _action(value: resources_pb2.Action.ValueType) -> Action:
    action = _ACTIONS.get(value)
    if action is None:
        raise InvalidArgument(f"unknown action {value}", field="action", reason="FIELD_INVALID")
    return action


def _item(item: resources_pb2.ItemAttributes) -> ItemAttributes:
    return ItemAttributes(
        document_class=item.document_class,
        author_id=item.author_id,
        author_rpps=item.author_rpps,
        hidden_from_professionals=item.hidden_from_professionals,
        invisible_to_holder=item.invisible_to_holder,
        invisible_to_representatives=item.invisible_to_representatives,
    )


def _actor(request: Any, caller: Principal) -> Principal:
    """The actor asked about; absent, the caller itself."""
    if not request.HasField("actor"):
        return caller
    return Principal.from_actor(request.actor)


def _decision_proto(decision: Decision) -> consent_service_pb2.DecideResponse:
    return consent_service_pb2.DecideResponse(
        effect=_EFFECTS[decision.effect],
        reason_code=decision.reason_code,
        obligations=[_OBLIGATIONS[obligation] for obligation in decision.obligations],
        access_matrix_version=decision.access_matrix_version,
    )


def _record(decision: Decision, actor: Principal, holder_id: str) -> None:
    span = trace.get_current_span()
    span.set_attribute(ATTR_DECISION, decision.effect.value)
    span.set_attribute(ATTR_ACTOR_ROLE, actor.role)
    span.set_attribute(ATTR_HOLDER_ID, holder_id)
    _decisions.add(1, {"effect": decision.effect.value, "reason_code": decision.reason_code})


def matrix_to_proto(matrix: AccessMatrix) -> resources_pb2.AccessMatrix:
    """The access matrix as served by ``GetAccessMatrix``: every cell, explicitly."""
    effective = timestamp_pb2.Timestamp()
    if matrix.effective_time is not None:
        effective.FromDatetime(matrix.effective_time)
    return resources_pb2.AccessMatrix(
        version=matrix.version,
        effective_time=effective,
        profession_codes=list(matrix.professions),
        document_classes=list(matrix.document_classes),
        rules=[
            resources_pb2.AccessMatrixRule(
                profession_code=profession, document_class=document_class, read=right.read, write=right.write
            )
            for profession, row in matrix.rights.items()
            for document_class, right in row.items()
        ],
    )


class ConsentServicer(consent_service_pb2_grpc.ConsentServiceServicer):
    """Decisions and the access matrix; the holder's choices come with issue 3."""

    def __init__(self, store: ConsentStore, matrices: Sequence[AccessMatrix]) -> None:
        self._store = store
        self._matrices = {matrix.version: matrix for matrix in matrices}
        self._matrix = matrices[-1]

    async def Decide(
        self, request: consent_service_pb2.DecideRequest, context: Any
    ) -> consent_service_pb2.DecideResponse:
        caller = current_principal()
        actor = _actor(request, caller)
        check_actor(caller, actor)
        question = DecisionRequest(
            actor=actor,
            holder_id=request.holder_id,
            action=_action(request.action),
            item=_item(request.item),
            break_glass_reason=request.break_glass_reason,
        )
        validate_request(question)
        facts = await self._store.load_facts(question.holder_id, actor)
        decision = decide(question, facts, self._matrix)
        _record(decision, actor, question.holder_id)
        return _decision_proto(decision)

    async def BatchDecide(
        self, request: consent_service_pb2.BatchDecideRequest, context: Any
    ) -> consent_service_pb2.BatchDecideResponse:
        caller = current_principal()
        actor = _actor(request, caller)
        check_actor(caller, actor)
        if len(request.items) > MAX_BATCH_ITEMS:
            raise InvalidArgument(f"at most {MAX_BATCH_ITEMS} items per batch", field="items", reason="FIELD_INVALID")
        questions = [
            DecisionRequest(
                actor=actor,
                holder_id=request.holder_id,
                action=_action(request.action),
                item=_item(item),
                break_glass_reason=request.break_glass_reason,
            )
            for item in request.items
        ]
        validate_request(DecisionRequest(actor=actor, holder_id=request.holder_id, action=_action(request.action)))
        facts = await self._store.load_facts(request.holder_id, actor)
        decisions = [decide(question, facts, self._matrix) for question in questions]
        for decision in decisions:
            _record(decision, actor, request.holder_id)
        return consent_service_pb2.BatchDecideResponse(decisions=[_decision_proto(d) for d in decisions])

    async def GetAccessMatrix(
        self, request: consent_service_pb2.GetAccessMatrixRequest, context: Any
    ) -> resources_pb2.AccessMatrix:
        current_principal()
        matrix = self._matrices.get(request.version) if request.version else self._matrix
        if matrix is None:
            raise NotFound(
                f"there is no access matrix version {request.version}",
                reason="ACCESS_MATRIX_VERSION_NOT_FOUND",
                metadata={"version": request.version},
            )
        return matrix_to_proto(matrix)
