"""The policy decision: may this actor do this action on this holder's item, and why.

:func:`decide` is pure: it reads the request, the :class:`Facts` known about the
holder (blocks, care team, oppositions, treating physician, representatives,
helpers, app consents, state of the space) and the access matrix, and answers
ALLOW or DENY with a reason code and the obligations the enforcing service must
honour. The rules are the :data:`RULES` table: one rule per (role, action), each a
sequence of checks; the first failing check names the reason of a denial.

The module also holds the other rules of the service that need no I/O: who may
manage a holder's choices, when a creation opposition may still be recorded.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from carnet_consent.access_matrix import AccessMatrix
from carnet_kit.auth import ROLES, Principal
from carnet_kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied

DEPOSIT_SCOPE = "documents.deposit"
REGULATION_PROFESSION = "10"
"""Emergency regulation (centre 15) is done by doctors."""


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


class ItemKind(enum.Enum):
    """What kind of item a decision is about."""

    UNSPECIFIED = "UNSPECIFIED"
    DOCUMENT = "DOCUMENT"
    PROFILE_ENTRY = "PROFILE_ENTRY"
    IMAGING_STUDY = "IMAGING_STUDY"
    AGENDA_EVENT = "AGENDA_EVENT"
    MESSAGE = "MESSAGE"
    ACCESS_LOG = "ACCESS_LOG"
    SPACE = "SPACE"


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


class AccountState(enum.Enum):
    """Lifecycle state of the holder's space, as identity announced it (UNKNOWN: never heard of)."""

    UNKNOWN = "UNKNOWN"
    NOTIFIED = "NOTIFIED"
    ACTIVE = "ACTIVE"
    OPPOSED = "OPPOSED"
    CREATED_BY_DEFAULT = "CREATED_BY_DEFAULT"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"
    DELETED = "DELETED"


CLOSED_STATES = frozenset({AccountState.OPPOSED, AccountState.CLOSED, AccountState.DELETED})
"""States in which nothing is deposited and no professional reads (the space is not open)."""


class HelperAccess(enum.Enum):
    """What a nominated helper may do (aidant): read, or act as the holder."""

    READ_ONLY = "READ_ONLY"
    FULL = "FULL"


class AppAccess(enum.Enum):
    """What a catalogue app may do with a data category."""

    READ = "READ"
    WRITE = "WRITE"
    READ_WRITE = "READ_WRITE"

    @property
    def reads(self) -> bool:
        """Whether the access includes reading."""
        return self is not AppAccess.WRITE

    @property
    def writes(self) -> bool:
        """Whether the access includes writing."""
        return self is not AppAccess.READ


@dataclass(frozen=True)
class ItemAttributes:
    """What the decision needs to know about the item acted on."""

    document_class: str = ""
    author_id: str = ""
    author_rpps: str = ""
    hidden_from_professionals: bool = False
    invisible_to_holder: bool = False
    invisible_to_representatives: bool = False
    kind: ItemKind = ItemKind.UNSPECIFIED
    data_category: str = ""


_CATEGORY_OF_KIND = {
    ItemKind.DOCUMENT: "documents",
    ItemKind.IMAGING_STUDY: "imaging",
    ItemKind.PROFILE_ENTRY: "profile",
    ItemKind.AGENDA_EVENT: "agenda",
    ItemKind.MESSAGE: "messages",
}
DATA_CATEGORIES = frozenset({"documents", "measurements", "agenda", "profile", "messages", "imaging"})


def data_category(item: ItemAttributes) -> str:
    """The item's data category: as given, else from its kind, else ``documents``."""
    return item.data_category or _CATEGORY_OF_KIND.get(item.kind, "documents")


@dataclass(frozen=True)
class DecisionRequest:
    """One question put to the policy; ``at`` is the time of the question (epoch seconds)."""

    actor: Principal
    holder_id: str
    action: Action
    item: ItemAttributes = field(default_factory=ItemAttributes)
    break_glass_reason: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class CareTeamMember:
    """An authorisation in force: a professional (id and/or RPPS) or a whole organisation."""

    professional_id: str = ""
    rpps: str = ""
    organisation_id: str = ""
    expire_at: float | None = None
    """Epoch seconds; None for no expiry."""

    def covers(self, actor: Principal, at: float) -> bool:
        """Whether this authorisation covers the actor at that time."""
        if self.expire_at is not None and at >= self.expire_at:
            return False
        if self.professional_id or self.rpps:
            by_id = bool(self.professional_id) and self.professional_id == actor.subject
            by_rpps = bool(self.rpps) and self.rpps == actor.rpps
            if not (by_id or by_rpps):
                return False
            return not self.organisation_id or not actor.organisation_id or self.organisation_id == actor.organisation_id
        return bool(self.organisation_id) and self.organisation_id == actor.organisation_id


@dataclass(frozen=True)
class Facts:
    """Everything consent knows about one holder that a decision depends on."""

    blocked_professionals: frozenset[str] = frozenset()
    """Professional ids the holder blocked."""
    blocked_rpps: frozenset[str] = frozenset()
    """RPPS numbers of the professionals the holder blocked."""
    oppositions: frozenset[OppositionKind] = frozenset()
    """The holder's oppositions in force."""
    care_team: tuple[CareTeamMember, ...] = ()
    """Care-team authorisations not revoked (expiry is checked at decision time)."""
    treating_physician: str = ""
    """Professional id of the treating physician (médecin traitant); empty if none."""
    representatives: frozenset[str] = frozenset()
    """Person ids of the holder's legal representatives."""
    helpers: Mapping[str, HelperAccess] = field(default_factory=dict)
    """Person id of each nominated helper → their access."""
    app_consents: Mapping[tuple[str, str], AppAccess] = field(default_factory=dict)
    """(client id, data category) → what the holder consented the app may do."""
    account_state: AccountState = AccountState.UNKNOWN

    def is_blocked(self, actor: Principal) -> bool:
        """Whether the holder blocked this professional (by id or by RPPS)."""
        return actor.subject in self.blocked_professionals or (bool(actor.rpps) and actor.rpps in self.blocked_rpps)

    def is_treating_physician(self, actor: Principal) -> bool:
        """Whether the actor is the holder's declared treating physician."""
        return actor.role == "professional" and bool(self.treating_physician) and actor.subject == self.treating_physician

    def in_care_team(self, actor: Principal, at: float) -> bool:
        """Whether an authorisation in force covers the professional."""
        return any(member.covers(actor, at) for member in self.care_team)

    @property
    def space_open(self) -> bool:
        """No creation opposition in force and the space is neither opposed, closed nor deleted."""
        return OppositionKind.CREATION not in self.oppositions and self.account_state not in CLOSED_STATES


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
SPACE_NOT_OPEN = "ACCESS_DENIED_SPACE_NOT_OPEN"


def _is_holder(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if request.actor.subject == request.holder_id else NOT_AUTHORISED


def _is_representative(request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    # The token says for whom the actor acts; identity's events say the representation is real.
    if request.actor.acting_for == request.holder_id and request.actor.subject in facts.representatives:
        return None
    return NOT_AUTHORISED


def _is_helper(request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    if request.actor.acting_for == request.holder_id and request.actor.subject in facts.helpers:
        return None
    return NOT_AUTHORISED


def _helper_has_full_access(request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    if facts.helpers.get(request.actor.subject) is HelperAccess.FULL:
        return None
    return "ACCESS_DENIED_HELPER_READ_ONLY"


def _not_invisible_to_holder(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    # Shown only after the announcement consultation; what the holder may not see yet,
    # nobody acting for them sees either.
    return "ACCESS_DENIED_INVISIBLE_TO_HOLDER" if request.item.invisible_to_holder else None


def _not_invisible_to_representatives(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return "ACCESS_DENIED_INVISIBLE_TO_REPRESENTATIVES" if request.item.invisible_to_representatives else None


_SCOPE_FOR_DEPOSIT = {"documents": DEPOSIT_SCOPE, "imaging": "imaging.push", "measurements": "measurements.write"}


def _has_deposit_scope(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    scope = _SCOPE_FOR_DEPOSIT.get(data_category(request.item))
    return None if scope is not None and request.actor.has_scope(scope) else "ACCESS_DENIED_SCOPE"


def _is_app_for_holder(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if request.actor.acting_for == request.holder_id else NOT_AUTHORISED


def _app_has_scope(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    category = data_category(request.item)
    verb = "read" if request.action in _READS else "write"
    return None if request.actor.has_scope(f"{category}.{verb}") else "ACCESS_DENIED_SCOPE"


def _app_has_consent(request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    access = facts.app_consents.get((request.actor.client_id, data_category(request.item)))
    if access is None:
        return "ACCESS_DENIED_NO_APP_CONSENT"
    granted = access.reads if request.action in _READS else access.writes
    return None if granted else "ACCESS_DENIED_NO_APP_CONSENT"


def _space_open(_request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if facts.space_open else SPACE_NOT_OPEN


def _not_blocked(request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    return "ACCESS_DENIED_BLOCKED" if facts.is_blocked(request.actor) else None


def _authorised(request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    # The treating physician and the care team are authorised; anyone else needs a
    # care-team authorisation (a one-consultation consent is one) or break-glass.
    if facts.is_treating_physician(request.actor) or facts.in_care_team(request.actor, request.at):
        return None
    return NOT_AUTHORISED


def _whole_space(item: ItemAttributes) -> bool:
    # Opening the record as a whole (break-glass) concerns no class; each item read
    # afterwards is decided on its own.
    return item.kind is ItemKind.SPACE


def _matrix_allows_read(request: DecisionRequest, _facts: Facts, matrix: AccessMatrix) -> str | None:
    if _whole_space(request.item):
        return None
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


def _not_hidden_unless_author_or_treating_physician(
    request: DecisionRequest, facts: Facts, _matrix: AccessMatrix
) -> str | None:
    # Hidden documents stay visible to their author and to the treating physician (PRODUCT.md).
    item = request.item
    if item.hidden_from_professionals and not (
        is_author(request.actor, item) or facts.is_treating_physician(request.actor)
    ):
        return "ACCESS_DENIED_HIDDEN_FROM_PROFESSIONALS"
    return None


def _break_glass_reason_given(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if request.break_glass_reason.strip() else "ACCESS_DENIED_BREAK_GLASS_REASON_MISSING"


def _break_glass_not_opposed(_request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    return "ACCESS_DENIED_BREAK_GLASS_OPPOSED" if OppositionKind.BREAK_GLASS in facts.oppositions else None


def _is_regulation_doctor(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if request.actor.profession_code == REGULATION_PROFESSION else NOT_AUTHORISED


def _regulation_not_opposed(_request: DecisionRequest, facts: Facts, _matrix: AccessMatrix) -> str | None:
    if OppositionKind.EMERGENCY_REGULATION in facts.oppositions:
        return "ACCESS_DENIED_EMERGENCY_REGULATION_OPPOSED"
    return None


def _is_operator_non_clinical(request: DecisionRequest, _facts: Facts, _matrix: AccessMatrix) -> str | None:
    return None if request.item.kind is ItemKind.SPACE else OPERATOR_CLINICAL


AllowReason = Callable[[DecisionRequest, Facts], str]


def _care_team_reason(request: DecisionRequest, facts: Facts) -> str:
    return "ALLOWED_TREATING_PHYSICIAN" if facts.is_treating_physician(request.actor) else "ALLOWED_CARE_TEAM"


def _fixed(reason: str) -> AllowReason:
    return lambda _request, _facts: reason


@dataclass(frozen=True)
class Rule:
    """Roles x actions it covers, the checks that must all hold, and what an allow obliges."""

    allow_reason: AllowReason
    roles: frozenset[str]
    actions: frozenset[Action]
    checks: tuple[Check, ...]
    obligations: tuple[Obligation, ...] = ()
    allow_reasons: tuple[str, ...] = ()
    """Every reason code this rule may allow with (documentation and tests)."""


def _rule(
    reason: str | tuple[AllowReason, tuple[str, ...]],
    roles: Iterable[str],
    actions: Iterable[Action],
    checks: tuple[Check, ...],
    obligations: tuple[Obligation, ...] = (),
) -> Rule:
    if isinstance(reason, str):
        return Rule(_fixed(reason), frozenset(roles), frozenset(actions), checks, obligations, (reason,))
    function, reasons = reason
    return Rule(function, frozenset(roles), frozenset(actions), checks, obligations, reasons)


_READS = frozenset({Action.READ, Action.LIST})
_WRITES = frozenset({Action.CREATE, Action.UPDATE, Action.DELETE})
_EVERYTHING = frozenset(Action) - {Action.UNSPECIFIED}
_TOLD = (Obligation.NOTIFY_HOLDER, Obligation.NOTIFY_TREATING_PHYSICIAN)
_CARE_TEAM = (_care_team_reason, ("ALLOWED_TREATING_PHYSICIAN", "ALLOWED_CARE_TEAM"))

RULES: tuple[Rule, ...] = (
    _rule("ALLOWED_HOLDER", {"holder"}, _READS, (_is_holder, _not_invisible_to_holder)),
    _rule("ALLOWED_HOLDER", {"holder"}, {Action.CREATE}, (_is_holder,)),
    _rule("ALLOWED_HOLDER", {"holder"}, {Action.UPDATE, Action.DELETE}, (_is_holder, _not_invisible_to_holder)),
    # A legal representative exercises the minor's rights, except the minor's secrets.
    _rule(
        "ALLOWED_REPRESENTATIVE",
        {"representative"},
        _READS | {Action.UPDATE, Action.DELETE},
        (_is_representative, _not_invisible_to_holder, _not_invisible_to_representatives),
    ),
    _rule("ALLOWED_REPRESENTATIVE", {"representative"}, {Action.CREATE}, (_is_representative,)),
    # A helper reads what the holder's representatives may read; a full helper also writes.
    _rule(
        "ALLOWED_HELPER",
        {"helper"},
        _READS,
        (_is_helper, _not_invisible_to_holder, _not_invisible_to_representatives),
    ),
    _rule(
        "ALLOWED_HELPER",
        {"helper"},
        _WRITES,
        (_is_helper, _helper_has_full_access, _not_invisible_to_holder, _not_invisible_to_representatives),
    ),
    # A software client acting for nobody (practice, lab or imaging software) only deposits.
    # A catalogue app acts for the holder (token acting_for) and needs the holder's consent.
    _rule(
        "ALLOWED_CLIENT_SCOPE",
        {"client"},
        {Action.CREATE},
        (_has_deposit_scope, _space_open),
        (Obligation.NOTIFY_HOLDER,),
    ),
    _rule(
        "ALLOWED_APP_CONSENT",
        {"app"},
        _READS | {Action.CREATE},
        (_is_app_for_holder, _app_has_scope, _app_has_consent, _space_open),
    ),
    # A blocked professional can no longer read the record, but can still feed it.
    _rule(
        "ALLOWED_AUTHOR",
        {"professional"},
        {Action.CREATE},
        (_space_open, _matrix_allows_write),
        (Obligation.NOTIFY_HOLDER,),
    ),
    _rule(
        _CARE_TEAM,
        {"professional"},
        _READS,
        (_not_blocked, _space_open, _authorised, _matrix_allows_read, _not_hidden_unless_author_or_treating_physician),
    ),
    _rule(
        "ALLOWED_BREAK_GLASS",
        {"professional"},
        {Action.BREAK_GLASS_READ},
        (
            _break_glass_reason_given,
            _break_glass_not_opposed,
            _not_blocked,
            _space_open,
            _matrix_allows_read,
            _not_hidden_unless_author_or_treating_physician,
        ),
        _TOLD,
    ),
    _rule(
        "ALLOWED_EMERGENCY_REGULATION",
        {"professional"},
        {Action.EMERGENCY_REGULATION_READ},
        (
            _is_regulation_doctor,
            _break_glass_reason_given,
            _regulation_not_opposed,
            _not_blocked,
            _space_open,
            _matrix_allows_read,
            _not_hidden_unless_author_or_treating_physician,
        ),
        _TOLD,
    ),
    # Operators run the platform: the space's settings and state, never clinical content.
    _rule("ALLOWED_OPERATOR_NON_CLINICAL", {"operator"}, _READS, (_is_operator_non_clinical,)),
)
"""The decision table, one rule per (role, action); a pair without a rule is denied.

The pseudo-role ``app`` is a software client acting for a holder (a catalogue app).
"""


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


_OBLIGATIONS_OF = {id(rule): _ordered((Obligation.LOG_ACCESS, *rule.obligations)) for rule in RULES}


def rule_role(actor: Principal) -> str:
    """The role the decision table is looked up with (``app`` for a client acting for a holder)."""
    if actor.role == "client" and actor.acting_for:
        return "app"
    return actor.role


def decide(request: DecisionRequest, facts: Facts, matrix: AccessMatrix) -> Decision:
    """Decide a request; every ALLOW obliges the enforcing service to log the access."""
    actor = request.actor
    if not actor.subject or actor.role not in ROLES:
        return Decision(Effect.DENY, UNKNOWN_ACTOR, (), matrix.version)
    if actor.role == "operator" and request.action not in _READS:
        # Operators run the platform; they never touch clinical content.
        return Decision(Effect.DENY, OPERATOR_CLINICAL, (), matrix.version)
    rule = _RULE_FOR.get((rule_role(actor), request.action))
    if rule is None:
        return Decision(Effect.DENY, NOT_AUTHORISED, (), matrix.version)
    for check in rule.checks:
        reason = check(request, facts, matrix)
        if reason is not None:
            return Decision(Effect.DENY, reason, (), matrix.version)
    return Decision(Effect.ALLOW, rule.allow_reason(request, facts), _OBLIGATIONS_OF[id(rule)], matrix.version)


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


# ---------------------------------------------------------------- managing the holder's choices


def _caller_not_allowed(caller: Principal, what: str) -> PermissionDenied:
    return PermissionDenied(
        f"a {caller.role or 'caller'} may not {what} for this holder",
        reason="CALLER_NOT_ALLOWED",
        metadata={"role": caller.role},
    )


def may_manage_choices(caller: Principal, holder_id: str, facts: Facts) -> bool:
    """The holder, their legal representative, or a helper with full access manage the holder's choices."""
    if caller.role == "holder":
        return caller.subject == holder_id
    if caller.acting_for != holder_id:
        return False
    if caller.role == "representative":
        return caller.subject in facts.representatives
    if caller.role == "helper":
        return facts.helpers.get(caller.subject) is HelperAccess.FULL
    return False


def may_see_choices(caller: Principal, holder_id: str, facts: Facts) -> bool:
    """Who may list the holder's choices: those who manage them, any helper, operators and services."""
    if caller.role in ("operator", "service") or may_manage_choices(caller, holder_id, facts):
        return True
    return caller.role == "helper" and caller.acting_for == holder_id and caller.subject in facts.helpers


def require_manager(caller: Principal, holder_id: str, facts: Facts, what: str) -> None:
    """PermissionDenied CALLER_NOT_ALLOWED unless the caller manages this holder's choices."""
    if not may_manage_choices(caller, holder_id, facts):
        raise _caller_not_allowed(caller, what)


def require_viewer(caller: Principal, holder_id: str, facts: Facts, what: str) -> None:
    """PermissionDenied CALLER_NOT_ALLOWED unless the caller may see this holder's choices."""
    if not may_see_choices(caller, holder_id, facts):
        raise _caller_not_allowed(caller, what)


def require_opposition_recorder(caller: Principal, holder_id: str, facts: Facts, *, by_agent: bool) -> None:
    """Oppositions are made online by whoever manages the holder's choices, or by an agent (operator)."""
    if by_agent:
        if caller.role != "operator":
            raise _caller_not_allowed(caller, "record an opposition by desk or letter")
        return
    if caller.role == "operator":
        return
    require_manager(caller, holder_id, facts, "record or withdraw oppositions")


def check_creation_window(state: AccountState, deadline: float | None, at: float) -> None:
    """A creation opposition is possible only while the space is notified and before its deadline.

    FailedPrecondition OPPOSITION_WINDOW_CLOSED otherwise, naming the current state.
    """
    if state is AccountState.NOTIFIED and (deadline is None or at < deadline):
        return
    raise FailedPrecondition(
        "the opposition window of this space is closed",
        reason="OPPOSITION_WINDOW_CLOSED",
        metadata={"state": state.value},
    )


def check_blockable(professional_id: str, facts: Facts) -> None:
    """The treating physician cannot be blocked (FailedPrecondition TREATING_PHYSICIAN_CANNOT_BE_BLOCKED)."""
    if professional_id and professional_id == facts.treating_physician:
        raise FailedPrecondition(
            "the treating physician cannot be blocked",
            reason="TREATING_PHYSICIAN_CANNOT_BE_BLOCKED",
            metadata={"professional_id": professional_id},
        )
