"""The decision rules as a systematic table: actors x actions x items x facts.

Every expected outcome comes from :func:`expected`, a transcription of the rules as
issue 3 and the README state them ("professionals only if not blocked, authorised
(care team or break-glass) and the matrix allows the class; hidden items only for
their author and the treating physician; ..."), written independently of the rule
table in ``domain.py``. The matrix cells used are the published ones of v1 (doctors
read and write every clinical class; nurses neither read nor write psychiatric
syntheses).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import pytest

from carnet_consent.access_matrix import load_access_matrices
from carnet_consent.domain import (
    Action,
    AppAccess,
    CareTeamMember,
    DecisionRequest,
    Effect,
    Facts,
    HelperAccess,
    ItemAttributes,
    Obligation,
    OppositionKind,
    decide,
)
from carnet_kit.auth import Principal

MATRIX = load_access_matrices()[-1]
HOLDER = "person-camille"

LOG = (Obligation.LOG_ACCESS,)
LOG_NOTIFY_HOLDER = (Obligation.LOG_ACCESS, Obligation.NOTIFY_HOLDER)
LOG_NOTIFY_BOTH = (Obligation.LOG_ACCESS, Obligation.NOTIFY_HOLDER, Obligation.NOTIFY_TREATING_PHYSICIAN)


@dataclass(frozen=True)
class Actor:
    """An archetype: the principal, and what it is to the holder."""

    name: str
    principal: Principal


def _pro(subject: str, profession: str) -> Principal:
    return Principal(subject=subject, role="professional", profession_code=profession, rpps="")


ACTORS = [
    Actor("holder", Principal(subject=HOLDER, role="holder")),
    Actor("other_holder", Principal(subject="person-karim", role="holder")),
    Actor("representative", Principal(subject="person-rep", role="representative", acting_for=HOLDER)),
    Actor("former_representative", Principal(subject="person-exrep", role="representative", acting_for=HOLDER)),
    Actor("read_only_helper", Principal(subject="person-ro", role="helper", acting_for=HOLDER)),
    Actor("full_helper", Principal(subject="person-full", role="helper", acting_for=HOLDER)),
    Actor("unnominated_helper", Principal(subject="person-nobody", role="helper", acting_for=HOLDER)),
    Actor("care_team_doctor", _pro("pro-doctor", "10")),
    Actor("care_team_nurse", _pro("pro-nurse", "60")),
    Actor("treating_physician", _pro("pro-traitant", "10")),
    Actor("outsider_doctor", _pro("pro-outsider", "10")),
    Actor("outsider_author_doctor", _pro("pro-author", "10")),
    Actor("lab_client", Principal(subject="client-lab", role="client", client_id="lab", scopes=("documents.deposit",))),
    Actor(
        "app_with_consent",
        Principal(
            subject="client-app", role="client", client_id="app", acting_for=HOLDER,
            scopes=("documents.read", "documents.write"),
        ),
    ),
    Actor(
        "app_without_consent",
        Principal(
            subject="client-other-app", role="client", client_id="other-app", acting_for=HOLDER,
            scopes=("documents.read", "documents.write"),
        ),
    ),
    Actor("operator", Principal(subject="op-1", role="operator")),
]

ITEMS = {
    "report": ItemAttributes(document_class="REPORT"),
    "psy_synthesis": ItemAttributes(document_class="PSY_SYNTHESIS"),
    "hidden_report_by_outsider_author": ItemAttributes(
        document_class="REPORT", hidden_from_professionals=True, author_id="pro-author"
    ),
    "report_invisible_to_holder": ItemAttributes(document_class="REPORT", invisible_to_holder=True),
    "report_invisible_to_representatives": ItemAttributes(document_class="REPORT", invisible_to_representatives=True),
}

BASE = Facts(
    representatives=frozenset({"person-rep"}),
    helpers={"person-ro": HelperAccess.READ_ONLY, "person-full": HelperAccess.FULL},
    care_team=(CareTeamMember(professional_id="pro-doctor"), CareTeamMember(professional_id="pro-nurse")),
    treating_physician="pro-traitant",
    app_consents={("app", "documents"): AppAccess.READ_WRITE},
)
FACTS = ["none", "actor_blocked", "break_glass_opposed", "regulation_opposed", "space_opposed"]
ACTIONS = [a for a in Action if a is not Action.UNSPECIFIED]


def facts_for(variant: str, actor: Principal) -> Facts:
    if variant == "actor_blocked":
        return replace(BASE, blocked_professionals=frozenset({actor.subject}))
    kinds = {
        "break_glass_opposed": OppositionKind.BREAK_GLASS,
        "regulation_opposed": OppositionKind.EMERGENCY_REGULATION,
        "space_opposed": OppositionKind.CREATION,
    }
    if variant in kinds:
        return replace(BASE, oppositions=frozenset({kinds[variant]}))
    return BASE


MAY_READ = {("10", "REPORT"), ("10", "PSY_SYNTHESIS"), ("60", "REPORT")}
MAY_WRITE = {("10", "REPORT"), ("10", "PSY_SYNTHESIS"), ("60", "REPORT")}


def expected(actor: str, action: Action, item_name: str, variant: str) -> tuple[str, tuple[Obligation, ...]]:
    """The outcome the rule text prescribes."""
    item = ITEMS[item_name]
    principal = next(a.principal for a in ACTORS if a.name == actor)
    space_open = variant != "space_opposed"
    reads = action in (Action.READ, Action.LIST)

    if actor == "operator":
        return "ACCESS_DENIED_OPERATOR_CLINICAL", ()  # operators never see clinical content

    if actor in ("holder", "other_holder"):
        if actor == "other_holder" or action in (Action.BREAK_GLASS_READ, Action.EMERGENCY_REGULATION_READ):
            return "ACCESS_DENIED_NOT_AUTHORISED", ()
        if action is not Action.CREATE and item.invisible_to_holder:
            return "ACCESS_DENIED_INVISIBLE_TO_HOLDER", ()  # not before announcement
        return "ALLOWED_HOLDER", LOG

    if actor in ("representative", "former_representative"):
        if actor == "former_representative" or action in (Action.BREAK_GLASS_READ, Action.EMERGENCY_REGULATION_READ):
            return "ACCESS_DENIED_NOT_AUTHORISED", ()
        if action is not Action.CREATE:
            if item.invisible_to_holder:
                return "ACCESS_DENIED_INVISIBLE_TO_HOLDER", ()
            if item.invisible_to_representatives:
                return "ACCESS_DENIED_INVISIBLE_TO_REPRESENTATIVES", ()
        return "ALLOWED_REPRESENTATIVE", LOG

    if actor in ("read_only_helper", "full_helper", "unnominated_helper"):
        if actor == "unnominated_helper" or action in (Action.BREAK_GLASS_READ, Action.EMERGENCY_REGULATION_READ):
            return "ACCESS_DENIED_NOT_AUTHORISED", ()
        if not reads and actor == "read_only_helper":
            return "ACCESS_DENIED_HELPER_READ_ONLY", ()
        if item.invisible_to_holder:
            return "ACCESS_DENIED_INVISIBLE_TO_HOLDER", ()
        if item.invisible_to_representatives:
            return "ACCESS_DENIED_INVISIBLE_TO_REPRESENTATIVES", ()
        return "ALLOWED_HELPER", LOG

    if actor == "lab_client":
        if action is not Action.CREATE:
            return "ACCESS_DENIED_NOT_AUTHORISED", ()
        return ("ALLOWED_CLIENT_SCOPE", LOG_NOTIFY_HOLDER) if space_open else ("ACCESS_DENIED_SPACE_NOT_OPEN", ())

    if actor in ("app_with_consent", "app_without_consent"):
        if action not in (Action.READ, Action.LIST, Action.CREATE):
            return "ACCESS_DENIED_NOT_AUTHORISED", ()
        if actor == "app_without_consent":
            return "ACCESS_DENIED_NO_APP_CONSENT", ()
        return ("ALLOWED_APP_CONSENT", LOG) if space_open else ("ACCESS_DENIED_SPACE_NOT_OPEN", ())

    # Professionals.
    blocked = variant == "actor_blocked"
    treating = actor == "treating_physician"
    authorised = actor in ("care_team_doctor", "care_team_nurse") or treating
    author = item.author_id == principal.subject
    cell = (principal.profession_code, item.document_class)
    if action is Action.CREATE:
        if not space_open:
            return "ACCESS_DENIED_SPACE_NOT_OPEN", ()
        return ("ALLOWED_AUTHOR", LOG_NOTIFY_HOLDER) if cell in MAY_WRITE else ("ACCESS_DENIED_MATRIX", ())
    if action in (Action.UPDATE, Action.DELETE):
        return "ACCESS_DENIED_NOT_AUTHORISED", ()
    if action is Action.BREAK_GLASS_READ and variant == "break_glass_opposed":
        return "ACCESS_DENIED_BREAK_GLASS_OPPOSED", ()
    if action is Action.EMERGENCY_REGULATION_READ:
        if principal.profession_code != "10":
            return "ACCESS_DENIED_NOT_AUTHORISED", ()
        if variant == "regulation_opposed":
            return "ACCESS_DENIED_EMERGENCY_REGULATION_OPPOSED", ()
    if blocked:
        return "ACCESS_DENIED_BLOCKED", ()
    if not space_open:
        return "ACCESS_DENIED_SPACE_NOT_OPEN", ()
    if reads and not authorised:
        return "ACCESS_DENIED_NOT_AUTHORISED", ()
    if cell not in MAY_READ:
        return "ACCESS_DENIED_MATRIX", ()
    if item.hidden_from_professionals and not (author or treating):
        return "ACCESS_DENIED_HIDDEN_FROM_PROFESSIONALS", ()
    if action is Action.BREAK_GLASS_READ:
        return "ALLOWED_BREAK_GLASS", LOG_NOTIFY_BOTH
    if action is Action.EMERGENCY_REGULATION_READ:
        return "ALLOWED_EMERGENCY_REGULATION", LOG_NOTIFY_BOTH
    return ("ALLOWED_TREATING_PHYSICIAN" if treating else "ALLOWED_CARE_TEAM"), LOG


@dataclass(frozen=True)
class Row:
    actor: Actor
    action: Action
    item: str
    facts: str

    @property
    def name(self) -> str:
        reason, _ = expected(self.actor.name, self.action, self.item, self.facts)
        return f"{self.actor.name}-{self.action.value}-{self.item}-{self.facts}->{reason}"


ROWS = [Row(*combo) for combo in itertools.product(ACTORS, ACTIONS, ITEMS, FACTS)]


def test_the_table_is_large_and_covers_every_reason_the_rules_name() -> None:
    assert len(ROWS) >= 300
    reasons = {expected(r.actor.name, r.action, r.item, r.facts)[0] for r in ROWS}
    assert {
        "ALLOWED_HOLDER", "ALLOWED_REPRESENTATIVE", "ALLOWED_HELPER", "ALLOWED_AUTHOR", "ALLOWED_TREATING_PHYSICIAN",
        "ALLOWED_CARE_TEAM", "ALLOWED_BREAK_GLASS", "ALLOWED_EMERGENCY_REGULATION", "ALLOWED_CLIENT_SCOPE",
        "ALLOWED_APP_CONSENT", "ACCESS_DENIED_BLOCKED", "ACCESS_DENIED_NOT_AUTHORISED", "ACCESS_DENIED_MATRIX",
        "ACCESS_DENIED_HIDDEN_FROM_PROFESSIONALS", "ACCESS_DENIED_INVISIBLE_TO_HOLDER",
        "ACCESS_DENIED_INVISIBLE_TO_REPRESENTATIVES", "ACCESS_DENIED_HELPER_READ_ONLY",
        "ACCESS_DENIED_BREAK_GLASS_OPPOSED", "ACCESS_DENIED_EMERGENCY_REGULATION_OPPOSED",
        "ACCESS_DENIED_NO_APP_CONSENT", "ACCESS_DENIED_OPERATOR_CLINICAL", "ACCESS_DENIED_SPACE_NOT_OPEN",
    } <= reasons


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_decision_table(row: Row) -> None:
    reason, obligations = expected(row.actor.name, row.action, row.item, row.facts)
    request = DecisionRequest(
        actor=row.actor.principal,
        holder_id=HOLDER,
        action=row.action,
        item=ITEMS[row.item],
        break_glass_reason="Patient inconscient, admis aux urgences",
    )
    decision = decide(request, facts_for(row.facts, row.actor.principal), MATRIX)
    assert (decision.reason_code, decision.obligations) == (reason, obligations)
    assert decision.effect is (Effect.ALLOW if reason.startswith("ALLOWED_") else Effect.DENY)


@pytest.mark.parametrize("action", [Action.BREAK_GLASS_READ, Action.EMERGENCY_REGULATION_READ])
@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_emergency_reads_without_a_written_reason_are_refused(action: Action, reason: str) -> None:
    doctor = _pro("pro-doctor", "10")
    request = DecisionRequest(doctor, HOLDER, action, ITEMS["report"], break_glass_reason=reason)
    decision = decide(request, BASE, MATRIX)
    assert decision.reason_code == "ACCESS_DENIED_BREAK_GLASS_REASON_MISSING"
