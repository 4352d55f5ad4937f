"""gRPC surface of the consent service: proto ↔ domain, nothing more."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2
from opentelemetry import metrics, trace

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import consent_service_pb2, consent_service_pb2_grpc, resources_pb2
from carnet_consent.access_matrix import AccessMatrix
from carnet_consent.domain import (
    DATA_CATEGORIES,
    AccountState,
    Action,
    AppAccess,
    Decision,
    DecisionRequest,
    Effect,
    Facts,
    ItemAttributes,
    ItemKind,
    Obligation,
    OppositionKind,
    check_actor,
    check_blockable,
    check_creation_window,
    decide,
    may_manage_choices,
    require_manager,
    require_opposition_recorder,
    require_viewer,
    validate_request,
)
from carnet_consent.facts import FactsCache
from carnet_consent.store import (
    AppConsentRecord,
    BlockRecord,
    CareTeamRecord,
    ConsentStore,
    OppositionRecord,
    next_page_token,
    page_bounds,
)
from carnet_kit.auth import Principal, current_principal
from carnet_kit.errors import InvalidArgument, NotFound, PermissionDenied
from carnet_kit.telemetry import ATTR_ACTOR_ROLE, ATTR_DECISION, ATTR_HOLDER_ID

MAX_BATCH_ITEMS = 1000
CONSULTATION_CONSENT_LIFETIME = timedelta(hours=24)
"""A one-consultation consent without an explicit expiry lasts a day."""

PersonWindow = Callable[[str], Awaitable[tuple[AccountState, datetime | None] | None]]
"""Asks identity for a space's state and opposition deadline (None: identity does not know it)."""

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
_KINDS = {value: ItemKind(name.removeprefix("ITEM_KIND_")) for name, value in resources_pb2.ItemKind.items()}
_EFFECTS = {Effect.ALLOW: resources_pb2.EFFECT_ALLOW, Effect.DENY: resources_pb2.EFFECT_DENY}
_OBLIGATIONS = {
    Obligation.LOG_ACCESS: resources_pb2.OBLIGATION_LOG_ACCESS,
    Obligation.NOTIFY_HOLDER: resources_pb2.OBLIGATION_NOTIFY_HOLDER,
    Obligation.NOTIFY_TREATING_PHYSICIAN: resources_pb2.OBLIGATION_NOTIFY_TREATING_PHYSICIAN,
}
_OPPOSITION_KINDS = {
    resources_pb2.OPPOSITION_KIND_CREATION: OppositionKind.CREATION,
    resources_pb2.OPPOSITION_KIND_BREAK_GLASS: OppositionKind.BREAK_GLASS,
    resources_pb2.OPPOSITION_KIND_EMERGENCY_REGULATION: OppositionKind.EMERGENCY_REGULATION,
    resources_pb2.OPPOSITION_KIND_RESEARCH: OppositionKind.RESEARCH,
}
_OPPOSITION_KIND_PROTO = {kind: value for value, kind in _OPPOSITION_KINDS.items()}
_CHANNELS = {
    resources_pb2.OPPOSITION_CHANNEL_UNSPECIFIED: "ONLINE",
    resources_pb2.OPPOSITION_CHANNEL_ONLINE: "ONLINE",
    resources_pb2.OPPOSITION_CHANNEL_AGENT: "AGENT",
    resources_pb2.OPPOSITION_CHANNEL_LETTER: "LETTER",
}
_APP_ACCESS = {
    resources_pb2.APP_ACCESS_READ: AppAccess.READ,
    resources_pb2.APP_ACCESS_WRITE: AppAccess.WRITE,
    resources_pb2.APP_ACCESS_READ_WRITE: AppAccess.READ_WRITE,
}
_APP_ACCESS_PROTO = {access: value for value, access in _APP_ACCESS.items()}
_ORIGINS = {
    resources_pb2.AUTHORISATION_ORIGIN_HOLDER_GRANT: "HOLDER_GRANT",
    resources_pb2.AUTHORISATION_ORIGIN_PROFESSIONAL_DECLARATION: "PROFESSIONAL_DECLARATION",
    resources_pb2.AUTHORISATION_ORIGIN_CONSULTATION_CONSENT: "CONSULTATION_CONSENT",
}
_GRANT_STATES = {
    resources_pb2.GRANT_STATE_UNSPECIFIED: "ACTIVE",
    resources_pb2.GRANT_STATE_ACTIVE: "ACTIVE",
    resources_pb2.GRANT_STATE_REVOKED: "REVOKED",
    resources_pb2.GRANT_STATE_EXPIRED: "EXPIRED",
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
        kind=_KINDS.get(item.kind, ItemKind.UNSPECIFIED),
        data_category=item.data_category,
    )


def _actor(request: Any, caller: Principal) -> Principal:
    """The actor asked about; absent, the caller itself."""
    if not request.HasField("actor"):
        return caller
    return Principal.from_actor(request.actor)


_DECISION_PROTOS: dict[Decision, consent_service_pb2.DecideResponse] = {}


def _decision_proto(decision: Decision) -> consent_service_pb2.DecideResponse:
    # Few distinct decisions exist (reason x obligations x version): build each once.
    cached = _DECISION_PROTOS.get(decision)
    if cached is None:
        cached = consent_service_pb2.DecideResponse(
            effect=_EFFECTS[decision.effect],
            reason_code=decision.reason_code,
            obligations=[_OBLIGATIONS[obligation] for obligation in decision.obligations],
            access_matrix_version=decision.access_matrix_version,
        )
        _DECISION_PROTOS[decision] = cached
    return cached


def _record(decisions: Sequence[Decision], actor: Principal, holder_id: str) -> None:
    """Span attributes once per call; the counter once per distinct (effect, reason) of the call."""
    span = trace.get_current_span()
    if span.is_recording() and decisions:
        span.set_attribute(ATTR_DECISION, decisions[0].effect.value if len(decisions) == 1 else "BATCH")
        span.set_attribute(ATTR_ACTOR_ROLE, actor.role)
        span.set_attribute(ATTR_HOLDER_ID, holder_id)
    for (effect, reason_code), count in Counter((d.effect.value, d.reason_code) for d in decisions).items():
        _decisions.add(count, {"effect": effect, "reason_code": reason_code})


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


# ---------------------------------------------------------------- resources ↔ proto


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _actor_proto(principal: Principal | None) -> common_pb2.Actor | None:
    return principal.to_actor() if principal is not None else None


def opposition_proto(record: OppositionRecord) -> resources_pb2.Opposition:
    """An opposition with its receipts."""
    return resources_pb2.Opposition(
        opposition_id=record.opposition_id,
        holder_id=record.holder_id,
        kind=_OPPOSITION_KIND_PROTO[record.kind],
        state=resources_pb2.OPPOSITION_STATE_ACTIVE if record.active else resources_pb2.OPPOSITION_STATE_WITHDRAWN,
        channel=resources_pb2.OppositionChannel.Value(f"OPPOSITION_CHANNEL_{record.channel}"),
        receipt_number=record.receipt_number,
        recorded_by=_actor_proto(record.recorded_by),
        create_time=_ts(record.create_time),
        withdrawal_receipt_number=record.withdrawal_receipt_number or "",
        withdrawn_by=_actor_proto(record.withdrawn_by),
        withdraw_time=_ts(record.withdraw_time),
    )


def block_proto(record: BlockRecord) -> resources_pb2.Block:
    """A block."""
    return resources_pb2.Block(
        block_id=record.block_id,
        holder_id=record.holder_id,
        professional_id=record.professional_id,
        rpps=record.rpps,
        created_by=_actor_proto(record.created_by),
        create_time=_ts(record.create_time),
    )


def authorisation_proto(record: CareTeamRecord) -> resources_pb2.CareTeamAuthorisation:
    """A care-team authorisation with its state now."""
    return resources_pb2.CareTeamAuthorisation(
        authorisation_id=record.authorisation_id,
        holder_id=record.holder_id,
        professional_id=record.professional_id,
        rpps=record.rpps,
        organisation_id=record.organisation_id,
        origin=resources_pb2.AuthorisationOrigin.Value(f"AUTHORISATION_ORIGIN_{record.origin}"),
        state=resources_pb2.GrantState.Value(f"GRANT_STATE_{record.state(datetime.now(UTC))}"),
        created_by=_actor_proto(record.created_by),
        create_time=_ts(record.create_time),
        expire_time=_ts(record.expire_time),
        revoked_by=_actor_proto(record.revoked_by),
        revoke_time=_ts(record.revoke_time),
    )


def app_consent_proto(record: AppConsentRecord) -> resources_pb2.AppConsent:
    """An app consent."""
    return resources_pb2.AppConsent(
        app_consent_id=record.app_consent_id,
        holder_id=record.holder_id,
        client_id=record.client_id,
        data_category=record.data_category,
        access=_APP_ACCESS_PROTO[record.access],
        state=resources_pb2.GrantState.Value(f"GRANT_STATE_{record.state}"),
        create_time=_ts(record.create_time),
        revoke_time=_ts(record.revoke_time),
    )


def _required(value: str, field: str) -> str:
    if not value.strip():
        raise InvalidArgument(f"{field} is required", field=field, reason="FIELD_INVALID")
    return value.strip()


class ConsentServicer(consent_service_pb2_grpc.ConsentServiceServicer):
    """Decisions, the access matrix, and the holder's choices."""

    def __init__(
        self,
        store: ConsentStore,
        matrices: Sequence[AccessMatrix],
        *,
        cache: FactsCache | None = None,
        person_window: PersonWindow | None = None,
        professional_for_rpps: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self._store = store
        self._professional_for_rpps = professional_for_rpps
        self._matrices = {matrix.version: matrix for matrix in matrices}
        self._matrix = matrices[-1]
        self._cache = cache if cache is not None else FactsCache(store.load_facts)
        self._person_window = person_window

    async def _facts(self, holder_id: str) -> Facts:
        return await self._cache.get(holder_id)

    # ------------------------------------------------------------ decisions

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
            at=time.time(),
        )
        validate_request(question)
        facts = self._cache.peek(question.holder_id) or await self._cache.get(question.holder_id)
        decision = decide(question, facts, self._matrix)
        _record((decision,), actor, question.holder_id)
        return _decision_proto(decision)

    async def BatchDecide(
        self, request: consent_service_pb2.BatchDecideRequest, context: Any
    ) -> consent_service_pb2.BatchDecideResponse:
        caller = current_principal()
        actor = _actor(request, caller)
        check_actor(caller, actor)
        if len(request.items) > MAX_BATCH_ITEMS:
            raise InvalidArgument(f"at most {MAX_BATCH_ITEMS} items per batch", field="items", reason="FIELD_INVALID")
        action = _action(request.action)
        gate_asked = request.HasField("gate")
        gate_action = _action(request.gate.action) if gate_asked else action
        holder_id = request.holder_id
        reason = request.break_glass_reason
        at = time.time()
        validate_request(DecisionRequest(actor=actor, holder_id=holder_id, action=action))
        facts = self._cache.peek(holder_id) or await self._facts(holder_id)
        response = consent_service_pb2.BatchDecideResponse()
        gate: Decision | None = None
        if gate_asked:
            gate = decide(
                DecisionRequest(
                    actor=actor,
                    holder_id=holder_id,
                    action=gate_action,
                    item=_item(request.gate.item),
                    break_glass_reason=reason,
                    at=at,
                ),
                facts,
                self._matrix,
            )
            response.gate.CopyFrom(_decision_proto(gate))
        decisions: list[Decision] = []
        if gate is None or gate.effect is Effect.ALLOW:
            # The items of a page repeat few distinct attributes, and a decision depends only on
            # the question: each distinct item is decided once.
            known: dict[tuple[Any, ...], Decision] = {}
            for item in request.items:
                key = (
                    item.kind,
                    item.document_class,
                    item.author_id,
                    item.author_rpps,
                    item.hidden_from_professionals,
                    item.invisible_to_holder,
                    item.invisible_to_representatives,
                    item.data_category,
                )
                decision = known.get(key)
                if decision is None:
                    question = DecisionRequest(
                        actor=actor,
                        holder_id=holder_id,
                        action=action,
                        item=_item(item),
                        break_glass_reason=reason,
                        at=at,
                    )
                    decision = known[key] = decide(question, facts, self._matrix)
                decisions.append(decision)
            response.decisions.extend(_decision_proto(d) for d in decisions)
        _record(decisions if gate is None else (gate, *decisions), actor, holder_id)
        return response

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

    # ------------------------------------------------------------ oppositions

    async def _creation_window(self, holder_id: str) -> tuple[AccountState, datetime | None]:
        known = await self._store.person_window(holder_id)
        if known is None and self._person_window is not None:
            known = await self._person_window(holder_id)
        if known is None:
            raise NotFound(f"no holder {holder_id}", reason="HOLDER_NOT_FOUND", metadata={"holder_id": holder_id})
        return known

    async def CreateOpposition(
        self, request: consent_service_pb2.CreateOppositionRequest, context: Any
    ) -> resources_pb2.Opposition:
        caller = current_principal()
        wanted = request.opposition
        holder_id = _required(wanted.holder_id, "opposition.holder_id")
        kind = _OPPOSITION_KINDS.get(wanted.kind)
        if kind is None:
            raise InvalidArgument("opposition.kind is required", field="opposition.kind", reason="FIELD_INVALID")
        channel = _CHANNELS.get(wanted.channel)
        if channel is None:
            raise InvalidArgument("unknown channel", field="opposition.channel", reason="FIELD_INVALID")
        facts = await self._facts(holder_id)
        require_opposition_recorder(caller, holder_id, facts, by_agent=channel != "ONLINE")
        if request.request_id:
            earlier = await self._store.opposition_for_request(request.request_id)
            if earlier is not None and earlier.holder_id == holder_id and earlier.kind is kind:
                return opposition_proto(earlier)
        if kind is OppositionKind.CREATION:
            state, deadline = await self._creation_window(holder_id)
            check_creation_window(state, deadline.timestamp() if deadline else None, time.time())
        record, _ = await self._store.create_opposition(
            holder_id, kind, channel=channel, recorded_by=caller, request_id=request.request_id
        )
        self._cache.invalidate(holder_id)
        return opposition_proto(record)

    async def GetOpposition(
        self, request: consent_service_pb2.GetOppositionRequest, context: Any
    ) -> resources_pb2.Opposition:
        caller = current_principal()
        record = await self._store.get_opposition(_required(request.opposition_id, "opposition_id"))
        require_viewer(caller, record.holder_id, await self._facts(record.holder_id), "see oppositions")
        return opposition_proto(record)

    async def ListOppositions(
        self, request: consent_service_pb2.ListOppositionsRequest, context: Any
    ) -> consent_service_pb2.ListOppositionsResponse:
        caller = current_principal()
        holder_id = _required(request.holder_id, "holder_id")
        require_viewer(caller, holder_id, await self._facts(holder_id), "see oppositions")
        limit, offset = page_bounds(request.page_size, request.page_token)
        active = {
            resources_pb2.OPPOSITION_STATE_ACTIVE: True,
            resources_pb2.OPPOSITION_STATE_WITHDRAWN: False,
        }.get(request.state)
        rows = await self._store.list_oppositions(
            holder_id, kind=_OPPOSITION_KINDS.get(request.kind), active=active, limit=limit, offset=offset
        )
        return consent_service_pb2.ListOppositionsResponse(
            oppositions=[opposition_proto(row) for row in rows[:limit]],
            next_page_token=next_page_token(limit, offset, rows),
        )

    async def WithdrawOpposition(
        self, request: consent_service_pb2.WithdrawOppositionRequest, context: Any
    ) -> resources_pb2.Opposition:
        caller = current_principal()
        record = await self._store.get_opposition(_required(request.opposition_id, "opposition_id"))
        facts = await self._facts(record.holder_id)
        require_opposition_recorder(caller, record.holder_id, facts, by_agent=caller.role == "operator")
        withdrawn = await self._store.withdraw_opposition(record.opposition_id, withdrawn_by=caller)
        self._cache.invalidate(record.holder_id)
        return opposition_proto(withdrawn)

    # ------------------------------------------------------------ blocks

    async def CreateBlock(self, request: consent_service_pb2.CreateBlockRequest, context: Any) -> resources_pb2.Block:
        caller = current_principal()
        wanted = request.block
        holder_id = _required(wanted.holder_id, "block.holder_id")
        rpps = wanted.rpps.strip()
        if not wanted.professional_id.strip() and not rpps:
            raise InvalidArgument(
                "block.professional_id or block.rpps is required", field="block.professional_id", reason="FIELD_INVALID"
            )
        professional_id = wanted.professional_id.strip() or await self._professional_id_for_rpps(rpps, "block.rpps")
        facts = await self._facts(holder_id)
        require_manager(caller, holder_id, facts, "block professionals")
        check_blockable(professional_id, facts)
        record = await self._store.create_block(holder_id, professional_id, rpps=rpps, created_by=caller)
        self._cache.invalidate(holder_id)
        return block_proto(record)

    async def ListBlocks(
        self, request: consent_service_pb2.ListBlocksRequest, context: Any
    ) -> consent_service_pb2.ListBlocksResponse:
        caller = current_principal()
        holder_id = _required(request.holder_id, "holder_id")
        require_viewer(caller, holder_id, await self._facts(holder_id), "see blocks")
        limit, offset = page_bounds(request.page_size, request.page_token)
        rows = await self._store.list_blocks(holder_id, limit=limit, offset=offset)
        return consent_service_pb2.ListBlocksResponse(
            blocks=[block_proto(row) for row in rows[:limit]], next_page_token=next_page_token(limit, offset, rows)
        )

    async def DeleteBlock(self, request: consent_service_pb2.DeleteBlockRequest, context: Any) -> empty_pb2.Empty:
        caller = current_principal()
        record = await self._store.get_block(_required(request.block_id, "block_id"))
        require_manager(caller, record.holder_id, await self._facts(record.holder_id), "unblock professionals")
        await self._store.delete_block(record.block_id, deleted_by=caller)
        self._cache.invalidate(record.holder_id)
        return empty_pb2.Empty()

    # ------------------------------------------------------------ care team

    async def _professional_id_for_rpps(self, rpps: str, field: str) -> str:
        """The professional an RPPS number names (NOT_FOUND when identity knows none).

        Without a directory to ask (consent alone in tests), the number itself keys the record.
        """
        if self._professional_for_rpps is None:
            return f"rpps:{rpps}"
        found = await self._professional_for_rpps(rpps)
        if found is None:
            raise NotFound(
                "no professional has this RPPS number", reason="PROFESSIONAL_NOT_FOUND", metadata={"field": field}
            )
        return found

    async def CreateCareTeamAuthorisation(
        self, request: consent_service_pb2.CreateCareTeamAuthorisationRequest, context: Any
    ) -> resources_pb2.CareTeamAuthorisation:
        caller = current_principal()
        wanted = request.authorisation
        holder_id = _required(wanted.holder_id, "authorisation.holder_id")
        facts = await self._facts(holder_id)
        expire_time = wanted.expire_time.ToDatetime(tzinfo=UTC) if wanted.HasField("expire_time") else None
        now = datetime.now(UTC)
        if expire_time is not None and expire_time <= now:
            raise InvalidArgument(
                "authorisation.expire_time is in the past", field="authorisation.expire_time", reason="FIELD_INVALID"
            )
        if caller.role == "professional":
            # A professional declares only themself, in their own organisation; the holder is told.
            if wanted.origin not in (
                resources_pb2.AUTHORISATION_ORIGIN_UNSPECIFIED,
                resources_pb2.AUTHORISATION_ORIGIN_PROFESSIONAL_DECLARATION,
            ) or wanted.professional_id not in ("", caller.subject):
                raise PermissionDenied(
                    "a professional may only declare their own care relationship",
                    reason="CALLER_NOT_ALLOWED",
                    metadata={"role": caller.role},
                )
            if facts.is_blocked(caller):
                raise PermissionDenied(
                    "the holder blocked this professional", reason="CALLER_NOT_ALLOWED", metadata={"blocked": "true"}
                )
            origin = "PROFESSIONAL_DECLARATION"
            professional_id, rpps, organisation_id = caller.subject, caller.rpps, caller.organisation_id
        else:
            require_manager(caller, holder_id, facts, "grant care-team authorisations")
            origin = _ORIGINS.get(wanted.origin, "HOLDER_GRANT")
            if origin == "PROFESSIONAL_DECLARATION":
                raise InvalidArgument(
                    "only a professional declares a care relationship",
                    field="authorisation.origin",
                    reason="FIELD_INVALID",
                )
            professional_id, rpps = wanted.professional_id.strip(), wanted.rpps.strip()
            organisation_id = wanted.organisation_id.strip()
            if not (professional_id or rpps or organisation_id):
                raise InvalidArgument(
                    "authorisation.professional_id or authorisation.organisation_id is required",
                    field="authorisation.professional_id",
                    reason="FIELD_INVALID",
                )
            if origin == "CONSULTATION_CONSENT" and expire_time is None:
                expire_time = now + CONSULTATION_CONSENT_LIFETIME
            if rpps and not professional_id:
                # An authorisation given by RPPS number names the professional behind it.
                professional_id = await self._professional_id_for_rpps(rpps, "authorisation.rpps")
        record, _ = await self._store.create_authorisation(
            holder_id,
            professional_id=professional_id,
            rpps=rpps,
            organisation_id=organisation_id,
            origin=origin,
            expire_time=expire_time,
            created_by=caller,
            request_id=request.request_id,
        )
        self._cache.invalidate(holder_id)
        return authorisation_proto(record)

    def _may_see_authorisation(self, caller: Principal, record: CareTeamRecord, facts: Facts) -> bool:
        if caller.role == "professional":
            return caller.subject == record.professional_id
        try:
            require_viewer(caller, record.holder_id, facts, "see the care team")
        except PermissionDenied:
            return False
        return True

    async def GetCareTeamAuthorisation(
        self, request: consent_service_pb2.GetCareTeamAuthorisationRequest, context: Any
    ) -> resources_pb2.CareTeamAuthorisation:
        caller = current_principal()
        record = await self._store.get_authorisation(_required(request.authorisation_id, "authorisation_id"))
        if not self._may_see_authorisation(caller, record, await self._facts(record.holder_id)):
            raise PermissionDenied(
                "this authorisation concerns someone else", reason="CALLER_NOT_ALLOWED", metadata={"role": caller.role}
            )
        return authorisation_proto(record)

    async def ListCareTeamAuthorisations(
        self, request: consent_service_pb2.ListCareTeamAuthorisationsRequest, context: Any
    ) -> consent_service_pb2.ListCareTeamAuthorisationsResponse:
        caller = current_principal()
        holder_id, professional_id = request.holder_id.strip(), request.professional_id.strip()
        if caller.role == "professional":
            # A professional sees the holders they are authorised for, nothing of others.
            if professional_id not in ("", caller.subject):
                raise PermissionDenied(
                    "a professional lists only their own authorisations",
                    reason="CALLER_NOT_ALLOWED",
                    metadata={"role": caller.role},
                )
            professional_id = caller.subject
        elif holder_id:
            require_viewer(caller, holder_id, await self._facts(holder_id), "see the care team")
        elif caller.role not in ("operator", "service"):
            raise InvalidArgument("holder_id is required", field="holder_id", reason="FIELD_INVALID")
        limit, offset = page_bounds(request.page_size, request.page_token)
        rows = await self._store.list_authorisations(
            holder_id=holder_id,
            professional_id=professional_id,
            state=_GRANT_STATES.get(request.state, "ACTIVE"),
            limit=limit,
            offset=offset,
        )
        return consent_service_pb2.ListCareTeamAuthorisationsResponse(
            authorisations=[authorisation_proto(row) for row in rows[:limit]],
            next_page_token=next_page_token(limit, offset, rows),
        )

    async def RevokeCareTeamAuthorisation(
        self, request: consent_service_pb2.RevokeCareTeamAuthorisationRequest, context: Any
    ) -> resources_pb2.CareTeamAuthorisation:
        caller = current_principal()
        record = await self._store.get_authorisation(_required(request.authorisation_id, "authorisation_id"))
        facts = await self._facts(record.holder_id)
        own_declaration = caller.role == "professional" and caller.subject == record.professional_id
        if not (own_declaration or may_manage_choices(caller, record.holder_id, facts)):
            raise PermissionDenied(
                "only the holder or the professional concerned may revoke this authorisation",
                reason="CALLER_NOT_ALLOWED",
                metadata={"role": caller.role},
            )
        revoked = await self._store.revoke_authorisation(record.authorisation_id, revoked_by=caller)
        self._cache.invalidate(record.holder_id)
        return authorisation_proto(revoked)

    # ------------------------------------------------------------ app consents

    async def CreateAppConsent(
        self, request: consent_service_pb2.CreateAppConsentRequest, context: Any
    ) -> resources_pb2.AppConsent:
        caller = current_principal()
        wanted = request.app_consent
        holder_id = _required(wanted.holder_id, "app_consent.holder_id")
        client_id = _required(wanted.client_id, "app_consent.client_id")
        category = wanted.data_category.strip()
        if category not in DATA_CATEGORIES:
            raise InvalidArgument(
                f"unknown data category {category!r}",
                field="app_consent.data_category",
                reason="DATA_CATEGORY_UNKNOWN",
            )
        access = _APP_ACCESS.get(wanted.access)
        if access is None:
            raise InvalidArgument("app_consent.access is required", field="app_consent.access", reason="FIELD_INVALID")
        require_manager(caller, holder_id, await self._facts(holder_id), "consent to apps")
        record = await self._store.create_app_consent(holder_id, client_id, category, access, created_by=caller)
        self._cache.invalidate(holder_id)
        return app_consent_proto(record)

    async def ListAppConsents(
        self, request: consent_service_pb2.ListAppConsentsRequest, context: Any
    ) -> consent_service_pb2.ListAppConsentsResponse:
        caller = current_principal()
        holder_id = _required(request.holder_id, "holder_id")
        require_viewer(caller, holder_id, await self._facts(holder_id), "see app consents")
        limit, offset = page_bounds(request.page_size, request.page_token)
        rows = await self._store.list_app_consents(
            holder_id,
            client_id=request.client_id.strip(),
            active=request.state != resources_pb2.GRANT_STATE_REVOKED,
            limit=limit,
            offset=offset,
        )
        return consent_service_pb2.ListAppConsentsResponse(
            app_consents=[app_consent_proto(row) for row in rows[:limit]],
            next_page_token=next_page_token(limit, offset, rows),
        )

    async def RevokeAppConsent(
        self, request: consent_service_pb2.RevokeAppConsentRequest, context: Any
    ) -> resources_pb2.AppConsent:
        caller = current_principal()
        record = await self._store.get_app_consent(_required(request.app_consent_id, "app_consent_id"))
        require_manager(caller, record.holder_id, await self._facts(record.holder_id), "revoke app consents")
        revoked = await self._store.revoke_app_consent(record.app_consent_id, revoked_by=caller)
        self._cache.invalidate(record.holder_id)
        return app_consent_proto(revoked)
