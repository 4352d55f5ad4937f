"""Invariants of the policy, checked on generated actors, items and facts (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from carnet_consent.access_matrix import load_access_matrices
from carnet_consent.domain import (
    AccountState,
    Action,
    AppAccess,
    CareTeamMember,
    DecisionRequest,
    Facts,
    HelperAccess,
    ItemAttributes,
    ItemKind,
    Obligation,
    OppositionKind,
    check_blockable,
    decide,
)
from carnet_kit.auth import ROLES, Principal
from carnet_kit.errors import FailedPrecondition

MATRIX = load_access_matrices()[-1]
HOLDER = "person-camille"
SUBJECTS = ["person-camille", "person-karim", "person-rep", "person-helper", "pro-a", "pro-b", "pro-c", "client-x"]
RPPS = ["", "10000000017", "10000000025"]
CLASSES = [*MATRIX.document_classes, "", "UNKNOWN_CLASS"]

principals = st.builds(
    Principal,
    subject=st.sampled_from(SUBJECTS),
    role=st.sampled_from([*ROLES, ""]),
    profession_code=st.sampled_from(["", *MATRIX.professions, "99"]),
    rpps=st.sampled_from(RPPS),
    organisation_id=st.sampled_from(["", "org-1", "org-2"]),
    client_id=st.sampled_from(["", "app", "lab"]),
    acting_for=st.sampled_from(["", HOLDER, "person-karim"]),
    scopes=st.lists(
        st.sampled_from(["documents.deposit", "documents.read", "documents.write", "imaging.push"]), unique=True
    ).map(tuple),
)
items = st.builds(
    ItemAttributes,
    document_class=st.sampled_from(CLASSES),
    author_id=st.sampled_from(["", *SUBJECTS]),
    author_rpps=st.sampled_from(RPPS),
    hidden_from_professionals=st.booleans(),
    invisible_to_holder=st.booleans(),
    invisible_to_representatives=st.booleans(),
    kind=st.sampled_from(list(ItemKind)),
    data_category=st.sampled_from(["", "documents", "measurements", "imaging"]),
)
care_team_members = st.builds(
    CareTeamMember,
    professional_id=st.sampled_from(["", "pro-a", "pro-b"]),
    rpps=st.sampled_from(RPPS),
    organisation_id=st.sampled_from(["", "org-1"]),
    expire_at=st.one_of(st.none(), st.floats(min_value=0, max_value=2000)),
)
facts = st.builds(
    Facts,
    blocked_professionals=st.frozensets(st.sampled_from(["pro-a", "pro-b", "pro-c"])),
    blocked_rpps=st.frozensets(st.sampled_from(RPPS[1:])),
    oppositions=st.frozensets(st.sampled_from(list(OppositionKind))),
    care_team=st.lists(care_team_members, max_size=3).map(tuple),
    treating_physician=st.sampled_from(["", "pro-a", "pro-b", "pro-c"]),
    representatives=st.frozensets(st.sampled_from(["person-rep", "person-helper"])),
    helpers=st.dictionaries(st.sampled_from(["person-helper", "person-rep"]), st.sampled_from(list(HelperAccess))),
    app_consents=st.dictionaries(
        st.tuples(st.sampled_from(["app", "lab"]), st.sampled_from(["documents", "measurements"])),
        st.sampled_from(list(AppAccess)),
    ),
    account_state=st.sampled_from(list(AccountState)),
)
requests = st.builds(
    DecisionRequest,
    actor=principals,
    holder_id=st.sampled_from([HOLDER, "person-karim"]),
    action=st.sampled_from(list(Action)),
    item=items,
    break_glass_reason=st.sampled_from(["", "  ", "Patient inconscient"]),
    at=st.floats(min_value=0, max_value=3000),
)


def _blocked(request: DecisionRequest, known: Facts) -> bool:
    actor = request.actor
    return actor.role == "professional" and (
        actor.subject in known.blocked_professionals or (bool(actor.rpps) and actor.rpps in known.blocked_rpps)
    )


@settings(max_examples=1000, deadline=None, database=None)
@given(requests, facts)
def test_a_blocked_professional_is_never_allowed_to_read(request: DecisionRequest, known: Facts) -> None:
    decision = decide(request, known, MATRIX)
    # A blocked professional may still feed the record (CREATE); nothing gets through to them.
    if _blocked(request, known) and request.action is not Action.CREATE:
        assert not decision.allowed


@settings(max_examples=500, deadline=None, database=None)
@given(st.sampled_from(["pro-a", "pro-b", "pro-c"]), facts)
def test_the_treating_physician_can_never_be_blocked(professional_id: str, known: Facts) -> None:
    try:
        check_blockable(professional_id, known)
    except FailedPrecondition as error:
        assert error.reason == "TREATING_PHYSICIAN_CANNOT_BE_BLOCKED"
        assert known.treating_physician == professional_id
    else:
        assert known.treating_physician != professional_id


@settings(max_examples=1000, deadline=None, database=None)
@given(requests, facts)
def test_an_item_invisible_to_the_holder_is_never_shown_to_the_holder_or_their_proxies(
    request: DecisionRequest, known: Facts
) -> None:
    decision = decide(request, known, MATRIX)
    on_behalf_of_holder = request.actor.role in ("holder", "representative", "helper")
    shows = request.action in (Action.READ, Action.LIST, Action.UPDATE, Action.DELETE)
    if request.item.invisible_to_holder and on_behalf_of_holder and shows:
        assert not decision.allowed
        if request.actor.subject == request.holder_id and request.actor.role == "holder":
            assert decision.reason_code == "ACCESS_DENIED_INVISIBLE_TO_HOLDER"


@settings(max_examples=1000, deadline=None, database=None)
@given(requests, facts)
def test_an_emergency_allow_always_carries_log_and_both_notifications(request: DecisionRequest, known: Facts) -> None:
    decision = decide(request, known, MATRIX)
    if decision.allowed and request.action in (Action.BREAK_GLASS_READ, Action.EMERGENCY_REGULATION_READ):
        assert decision.obligations == (
            Obligation.LOG_ACCESS,
            Obligation.NOTIFY_HOLDER,
            Obligation.NOTIFY_TREATING_PHYSICIAN,
        )
        assert request.break_glass_reason.strip()
    if decision.reason_code in ("ALLOWED_BREAK_GLASS", "ALLOWED_EMERGENCY_REGULATION"):
        assert Obligation.NOTIFY_TREATING_PHYSICIAN in decision.obligations


@settings(max_examples=1000, deadline=None, database=None)
@given(requests, facts)
def test_every_allow_logs_and_operators_never_get_clinical_content(request: DecisionRequest, known: Facts) -> None:
    decision = decide(request, known, MATRIX)
    if decision.allowed:
        assert decision.obligations[0] is Obligation.LOG_ACCESS
    if request.actor.role == "operator" and request.item.kind is not ItemKind.SPACE:
        assert not decision.allowed
