"""The policy decision: may this actor do this action on this holder's item, and why.

:func:`decide` is pure: it reads the request, the facts the store loaded about the
holder and the actor (blocks, oppositions), and the access matrix, and answers
ALLOW or DENY with a reason code and the obligations the enforcing service must
honour. The rules are the :data:`RULES` table: one rule per (role, action), each a
sequence of checks; the first failing check names the reason of a denial.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from carnet_consent.access_matrix import AccessMatrix
from carnet_kit.auth import ROLES, Principal
from carnet_kit.errors import InvalidArgument, PermissionDenied

DEPOSIT_SCOPE = "documents.deposit"


class Action(enum.Enum):
    """What the actor wants to do with the item (UNSPECIFIED is always denied)."""

    UNSPECIFIED = "UNSPECIFIED"
    READ = "READ"
    LIST = "LIST"
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    BREAK_GLASS_READ = "BREAK_GLASS_READ"
    EMERGENCY_REGULATION_READ = "EMERGENCY_REGULATION_READ"


class Effect(enum.Enum):
    """The outcome of a decision."""

    ALLOW = "ALLOW"
    DENY = "DENY"


class Obligation(enum.Enum):
    """What the enforcing service must do when it acts on an ALLOW."""

    LOG_ACCESS = "LOG_ACCESS"
    NOTIFY_HOLDER = "NOTIFY_HOLDER"
    NOTIFY_TREATING_PHYSICIAN = "NOTIFY_TREATING_PHYSICIAN"


class OppositionKind(enum.Enum):
    """What a holder objected to."""

    CREATION = "CREATION"
    """Opposition to the creation of the space (opt-out): nothing may be deposited."""
    BREAK_GLASS = "BREAK_GLASS"
    EMERGENCY_REGULATION = "EMERGENCY_REGULATION"
    RESEARCH = "RESEARCH"


@dataclass(frozen=True)
class ItemAttributes:
    """What the decision needs to know about the item (a document) acted on."""

    document_class: str = ""
    author_id: str = ""
    author_rpps: str = ""
    hidden_from_professionals: bool = False
    invisible_to_holder: bool = False
    invisible_to_representatives: bool = False


@dataclass(frozen=True)
class DecisionRequest:
    """One question put to the policy."""

    actor: Principal
    holder_id: str
    action: Action
    item: ItemAttributes = field(default_factory=ItemAttributes)
    break_glass_reason: str = ""


@dataclass(frozen=True)
class Facts:
    """What the store knows about this holder and this actor."""

    blocked: bool = False
    """The holder blocked this professional."""
    oppositions: frozenset[OppositionKind] = frozenset()
    """The holder's oppositions in force."""


@dataclass(frozen=True)
class Decision:
    """The answer: effect, reason code (UPPER_SNAKE), obligations, matrix version."""

    effect: Effect
    reason_code: str
    obligations: tuple[Obligation, ...]
    access_matrix_version: str

    @property
    def allowed(self) -> bool:
        """Whether the effect is ALLOW."""
        return self.effect is Effect.ALLOW


Check = Callable[[DecisionRequest, Facts, AccessMatrix], str | None]
"""A condition of a rule: None when it holds, else the reason code of the denial."""

# Denial reason codes, as listed in carnet/consent/v1/consent_service.proto.
NOT_AUTHORISED = "ACCESS_DENIED_NOT_AUTHORISED"
UNKNOWN_ACTOR = "ACCESS_DENIED_UNKNOWN_ACTOR"
OPERATOR_CLINICAL = "ACCESS_DENIED_OPERATOR_CLINICAL"


def _is_holder(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if request.actor.subject == request.holder_id else NOT_AUTHORISED


def _acts_for_holder(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if request.actor.acting_for == request.holder_id else NOT_AUTHORISED


def _not_invisible_to_holder(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    # Shown only after the announcement consultation; what the holder may not see yet,
    # nobody acting for them sees either.
    return "ACCESS_DENIED_INVISIBLE_TO_HOLDER" if request.item.invisible_to_holder else None


def _not_invisible_to_representatives(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return "ACCESS_DENIED_INVISIBLE_TO_REPRESENTATIVES" if request.item.invisible_to_representatives else None


def _has_deposit_scope(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if request.actor.has_scope(DEPOSIT_SCOPE) else "ACCESS_DENIED_SCOPE"


def _space_not_opposed(_request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    return "ACCESS_DENIED_SPACE_NOT_OPEN" if OppositionKind.CREATION in facts.oppositions else None


def _not_blocked(_request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    return "ACCESS_DENIED_BLOCKED" if facts.blocked else None


def _matrix_allows_read(request: DecisionRequest, _facts: Facts, matrix: AccessMatrix) -> str | None:
    # A class the matrix does not know allows nothing.
    allowed = matrix.may_read(request.actor.profession_code, request.item.document_class)
    return None if allowed else "ACCESS_DENIED_MATRIX"


def _matrix_allows_write(request: DecisionRequest, _facts: Facts, matrix: AccessMatrix) -> str | None:
    allowed = matrix.may_write(request.actor.profession_code, request.item.document_class)
    return None if allowed else "ACCESS_DENIED_MATRIX"


def is_author(actor: Principal, item: ItemAttributes) -> bool:
    """Whether the actor wrote the item (matched on professional id or RPPS)."""
    return bool(
        (item.author_id and item.author_id == actor.subject) or (item.author_rpps and item.author_rpps == actor.rpps)
    )


def _not_hidden_unless_author(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    # Hidden documents stay visible to their author (PRODUCT.md, visibility flags).
    if request.item.hidden_from_professionals and not is_author(request.actor, request.item):
        return "ACCESS_DENIED_HIDDEN_FROM_PROFESSIONALS"
    return None


def _break_glass_reason_given(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if request.break_glass_reason.strip() else "ACCESS_DENIED_BREAK_GLASS_REASON_MISSING"


def _break_glass_not_opposed(_request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    return "ACCESS_DENIED_BREAK_GLASS_OPPOSED" if OppositionKind.BREAK_GLASS in facts.oppositions else None


@dataclass(frozen=True)
class Rule:
    """Roles x actions it covers, the checks that must all hold, and what an allow obliges."""

    allow_reason: str
    roles: frozenset[str]
    actions: frozenset[Action]
    checks: tuple[Check, ...]
    obligations: tuple[Obligation, ...] = ()


_READS = frozenset({Action.READ, Action.LIST})
_CREATE = frozenset({Action.CREATE})

RULES: tuple[Rule, ...] = (
    Rule("ALLOWED_HOLDER", frozenset({"holder"}), _READS, (_is_holder, _not_invisible_to_holder)),
    Rule("ALLOWED_HOLDER", frozenset({"holder"}), _CREATE, (_is_holder,)),
    Rule(
        "ALLOWED_REPRESENTATIVE",
        frozenset({"representative"}),
        _READS,
        (_acts_for_holder, _not_invisible_to_holder, _not_invisible_to_representatives),
    ),
    Rule(
        "ALLOWED_HELPER",
        frozenset({"helper"}),
        _READS,
        (_acts_for_holder, _not_invisible_to_holder, _not_invisible_to_representatives),
    ),
    Rule(
        "ALLOWED_CLIENT_SCOPE",
        frozenset({"client"}),
        _CREATE,
        (_has_deposit_scope, _space_not_opposed),
        (Obligation.NOTIFY_HOLDER,),
    ),
    # A blocked professional can no longer read the record, but can still feed it.
    Rule(
        "ALLOWED_AUTHOR",
        frozenset({"professional"}),
        _CREATE,
        (_space_not_opposed, _matrix_allows_write),
        (Obligation.NOTIFY_HOLDER,),
    ),
    # In the foundation every professional counts as the holder's care team (deemed
    # authorised, PRODUCT.md); issue 3 narrows this to care-team authorisations.
    Rule(
        "ALLOWED_CARE_TEAM",
        frozenset({"professional"}),
        _READS,
        (_not_blocked, _matrix_allows_read, _not_hidden_unless_author),
    ),
    Rule(
        "ALLOWED_BREAK_GLASS",
        frozenset({"professional"}),
        frozenset({Action.BREAK_GLASS_READ}),
        (
            _break_glass_reason_given,
            _break_glass_not_opposed,
            _not_blocked,
            _matrix_allows_read,
            _not_hidden_unless_author,
        ),
        (Obligation.NOTIFY_HOLDER, Obligation.NOTIFY_TREATING_PHYSICIAN),
    ),
)
"""The decision table, one rule per (role, action); a pair without a rule is denied."""


def _index(rules: Iterable[Rule]) -> dict[tuple[str, Action], Rule]:
    index: dict[tuple[str, Action], Rule] = {}
    for rule in rules:
        for role in rule.roles:
            for action in rule.actions:
                if (role, action) in index:
                    raise ValueError(f"two rules cover {role} x {action.value}")
                index[(role, action)] = rule
    return index


_RULE_FOR = _index(RULES)


def _ordered(obligations: Iterable[Obligation]) -> tuple[Obligation, ...]:
    seen: dict[Obligation, None] = {}
    for obligation in obligations:
        seen.setdefault(obligation, None)
    return tuple(seen)


def decide(request: DecisionRequest, facts: Facts, matrix: AccessMatrix) -> Decision:
    """Decide a request; every ALLOW obliges the enforcing service to log the access."""

    def deny(reason: str) -> Decision:
        return Decision(Effect.DENY, reason, (), matrix.version)

    if not request.actor.subject or request.actor.role not in ROLES:
        return deny(UNKNOWN_ACTOR)
    if request.actor.role == "operator":
        # Operators run the platform; they never see clinical content.
        return deny(OPERATOR_CLINICAL)
    rule = _RULE_FOR.get((request.actor.role, request.action))
    if rule is None:
        return deny(NOT_AUTHORISED)
    for check in rule.checks:
        reason = check(request, facts, matrix)
        if reason is not None:
            return deny(reason)
    return Decision(
        Effect.ALLOW, rule.allow_reason, _ordered((Obligation.LOG_ACCESS, *rule.obligations)), matrix.version
    )


def validate_request(request: DecisionRequest) -> None:
    """InvalidArgument for a request the policy cannot evaluate (a denial is not an error)."""
    if not request.holder_id:
        raise InvalidArgument("holder_id is required", field="holder_id", reason="FIELD_INVALID")


def _identity(principal: Principal) -> tuple[str, str, str, str, str, str, str, tuple[str, ...]]:
    return (
        principal.subject,
        principal.role,
        principal.profession_code,
        principal.rpps,
        principal.organisation_id,
        principal.client_id,
        principal.acting_for,
        tuple(sorted(principal.scopes)),
    )


def check_actor(caller: Principal, actor: Principal) -> None:
    """The evaluated actor must be the verified caller, unless the caller is a service.

    A service (dossier, imaging) may ask on behalf of anyone; an end user's token
    forwarded by a service may only be asked about itself.
    """
    if caller.role == "service":
        return
    if _identity(caller) != _identity(actor):
        raise PermissionDenied(
            "the actor does not match the caller's token",
            reason="ACTOR_MISMATCH",
            metadata={"caller_subject": caller.subject, "actor_subject": actor.subject},
        )
