"""Decide and GetAccessMatrix over gRPC, with real tokens and the facts in PostgreSQL."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest

from carnet.consent.v1 import consent_service_pb2, consent_service_pb2_grpc, resources_pb2
from carnet_consent.app import ConsentRuntime
from carnet_consent.domain import OppositionKind
from carnet_consent.store import SCHEMA, ConsentStore
from carnet_kit.auth import Principal
from carnet_kit.server import ServiceApp
from carnet_kit.status import parse_rpc_error
from carnet_kit.testing import TokenFactory, wait_until


@pytest.fixture
def consent_app(runtime: ConsentRuntime) -> ServiceApp:
    return runtime.app


def bearer(token_factory: TokenFactory, principal: Principal) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token_factory.mint(principal)}"),)


def new_holder() -> str:
    return f"person-{uuid.uuid4().hex[:12]}"


def nurse() -> Principal:
    subject = f"pro-{uuid.uuid4().hex[:8]}"
    return Principal(subject=subject, role="professional", profession_code="60", rpps="10000000025")


async def grant_care_team(store: ConsentStore, holder_id: str, professional: Principal) -> None:
    await store.create_authorisation(
        holder_id,
        professional_id=professional.subject,
        rpps=professional.rpps,
        organisation_id="",
        origin="HOLDER_GRANT",
        expire_time=None,
        created_by=Principal(subject=holder_id, role="holder"),
    )


def read_request(actor: Principal, holder_id: str, document_class: str) -> consent_service_pb2.DecideRequest:
    return consent_service_pb2.DecideRequest(
        actor=actor.to_actor(),
        holder_id=holder_id,
        action=resources_pb2.ACTION_READ,
        item=resources_pb2.ItemAttributes(kind=resources_pb2.ITEM_KIND_DOCUMENT, document_class=document_class),
    )


async def test_decide_allows_holder_reading_own_document_with_log_obligation(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    holder_id = new_holder()
    holder = Principal(subject=holder_id, role="holder")
    response = await stub.Decide(read_request(holder, holder_id, "LAB"), metadata=bearer(token_factory, holder))
    assert response.effect == resources_pb2.EFFECT_ALLOW
    assert response.reason_code == "ALLOWED_HOLDER"
    assert list(response.obligations) == [resources_pb2.OBLIGATION_LOG_ACCESS]
    assert response.access_matrix_version == "1"


async def test_decide_answers_a_denial_not_an_error(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    actor = nurse()
    response = await stub.Decide(
        read_request(actor, new_holder(), "PSY_SYNTHESIS"), metadata=bearer(token_factory, actor)
    )
    assert response.effect == resources_pb2.EFFECT_DENY
    assert response.reason_code == "ACCESS_DENIED_NOT_AUTHORISED"
    assert list(response.obligations) == []


async def test_decide_rejects_an_actor_other_than_the_caller(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    holder_id = new_holder()
    caller = nurse()
    impersonated = Principal(subject=holder_id, role="holder")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Decide(read_request(impersonated, holder_id, "LAB"), metadata=bearer(token_factory, caller))
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.reason == "ACTOR_MISMATCH"
    assert error.domain == "consent.carnet"


async def test_decide_rejects_a_caller_inflating_its_own_scopes(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    client = Principal(subject="client-x", role="client", client_id="x", scopes=("imaging.push",))
    inflated = Principal(subject="client-x", role="client", client_id="x", scopes=("documents.deposit",))
    request = consent_service_pb2.DecideRequest(
        actor=inflated.to_actor(), holder_id=new_holder(), action=resources_pb2.ACTION_CREATE
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Decide(request, metadata=bearer(token_factory, client))
    assert parse_rpc_error(raised.value).reason == "ACTOR_MISMATCH"


async def test_decide_without_actor_evaluates_the_caller(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    holder_id = new_holder()
    holder = Principal(subject=holder_id, role="holder")
    request = consent_service_pb2.DecideRequest(holder_id=holder_id, action=resources_pb2.ACTION_LIST)
    response = await stub.Decide(request, metadata=bearer(token_factory, holder))
    assert response.reason_code == "ALLOWED_HOLDER"


async def test_service_caller_may_ask_about_any_actor(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    dossier = Principal(subject="dossier", role="service")
    lab = Principal(subject="client-lab", role="client", client_id="lab-demo", scopes=("documents.deposit",))
    request = consent_service_pb2.DecideRequest(
        actor=lab.to_actor(),
        holder_id=new_holder(),
        action=resources_pb2.ACTION_CREATE,
        item=resources_pb2.ItemAttributes(kind=resources_pb2.ITEM_KIND_DOCUMENT, document_class="LAB"),
    )
    response = await stub.Decide(request, metadata=bearer(token_factory, dossier))
    assert response.effect == resources_pb2.EFFECT_ALLOW
    assert response.reason_code == "ALLOWED_CLIENT_SCOPE"
    assert list(response.obligations) == [resources_pb2.OBLIGATION_LOG_ACCESS, resources_pb2.OBLIGATION_NOTIFY_HOLDER]


async def test_a_block_made_by_another_replica_reaches_the_cached_facts(
    stub: consent_service_pb2_grpc.ConsentServiceStub, store: ConsentStore, token_factory: TokenFactory
) -> None:
    holder_id = new_holder()
    actor = nurse()
    holder = Principal(subject=holder_id, role="holder")
    await grant_care_team(store, holder_id, actor)
    before = await stub.Decide(read_request(actor, holder_id, "LAB"), metadata=bearer(token_factory, actor))
    assert before.reason_code == "ALLOWED_CARE_TEAM"
    await store.create_block(holder_id, actor.subject, rpps=actor.rpps, created_by=holder)

    async def denied() -> bool:
        after = await stub.Decide(read_request(actor, holder_id, "LAB"), metadata=bearer(token_factory, actor))
        return after.reason_code == "ACCESS_DENIED_BLOCKED"

    await wait_until(denied, timeout=5.0)


async def test_block_by_rpps_catches_the_professional_under_another_id(
    stub: consent_service_pb2_grpc.ConsentServiceStub, store: ConsentStore, token_factory: TokenFactory
) -> None:
    holder_id = new_holder()
    actor = nurse()
    holder = Principal(subject=holder_id, role="holder")
    await store.add_block(holder_id, "pro-old-id", rpps=actor.rpps, created_by=holder)
    response = await stub.Decide(read_request(actor, holder_id, "LAB"), metadata=bearer(token_factory, actor))
    assert response.reason_code == "ACCESS_DENIED_BLOCKED"


async def test_decide_reads_creation_opposition_from_the_store(
    stub: consent_service_pb2_grpc.ConsentServiceStub, store: ConsentStore, token_factory: TokenFactory
) -> None:
    holder_id = new_holder()
    lab = Principal(subject="client-lab", role="client", client_id="lab-demo", scopes=("documents.deposit",))
    holder = Principal(subject=holder_id, role="holder")
    await store.record_opposition(holder_id, OppositionKind.CREATION, recorded_by=holder)
    request = consent_service_pb2.DecideRequest(
        actor=lab.to_actor(),
        holder_id=holder_id,
        action=resources_pb2.ACTION_CREATE,
        item=resources_pb2.ItemAttributes(kind=resources_pb2.ITEM_KIND_DOCUMENT, document_class="LAB"),
    )
    response = await stub.Decide(request, metadata=bearer(token_factory, lab))
    assert response.reason_code == "ACCESS_DENIED_SPACE_NOT_OPEN"


async def test_batch_decide_answers_each_item_in_order(
    stub: consent_service_pb2_grpc.ConsentServiceStub, store: ConsentStore, token_factory: TokenFactory
) -> None:
    actor = nurse()
    holder_id = new_holder()
    await grant_care_team(store, holder_id, actor)
    classes = ["LAB", "CERTIFICATE", "CARE_PLAN", "PSY_SYNTHESIS"]
    request = consent_service_pb2.BatchDecideRequest(
        actor=actor.to_actor(),
        holder_id=holder_id,
        action=resources_pb2.ACTION_LIST,
        items=[resources_pb2.ItemAttributes(document_class=c) for c in classes],
    )
    response = await stub.BatchDecide(request, metadata=bearer(token_factory, actor))
    assert [d.reason_code for d in response.decisions] == [
        "ALLOWED_CARE_TEAM", "ACCESS_DENIED_MATRIX", "ALLOWED_CARE_TEAM", "ACCESS_DENIED_MATRIX",
    ]


async def test_batch_decide_with_a_gate_answers_the_list_question_and_then_each_item(
    stub: consent_service_pb2_grpc.ConsentServiceStub, store: ConsentStore, token_factory: TokenFactory
) -> None:
    actor = nurse()
    holder_id = new_holder()
    await grant_care_team(store, holder_id, actor)
    classes = ["LAB", "CERTIFICATE", "LAB"]
    request = consent_service_pb2.BatchDecideRequest(
        actor=actor.to_actor(),
        holder_id=holder_id,
        action=resources_pb2.ACTION_READ,
        items=[resources_pb2.ItemAttributes(kind=resources_pb2.ITEM_KIND_DOCUMENT, document_class=c) for c in classes],
        gate=consent_service_pb2.GateQuestion(
            action=resources_pb2.ACTION_LIST, item=resources_pb2.ItemAttributes(kind=resources_pb2.ITEM_KIND_SPACE)
        ),
    )
    response = await stub.BatchDecide(request, metadata=bearer(token_factory, actor))
    alone = await stub.Decide(
        consent_service_pb2.DecideRequest(
            actor=actor.to_actor(), holder_id=holder_id, action=resources_pb2.ACTION_LIST, item=request.gate.item
        ),
        metadata=bearer(token_factory, actor),
    )
    ungated = consent_service_pb2.BatchDecideRequest()
    ungated.CopyFrom(request)
    ungated.ClearField("gate")
    without_gate = await stub.BatchDecide(ungated, metadata=bearer(token_factory, actor))

    assert response.HasField("gate")
    assert response.gate == alone
    assert response.gate.effect == resources_pb2.EFFECT_ALLOW
    assert list(response.decisions) == list(without_gate.decisions)
    assert [d.reason_code for d in response.decisions] == ["ALLOWED_CARE_TEAM", "ACCESS_DENIED_MATRIX", "ALLOWED_CARE_TEAM"]
    assert not without_gate.HasField("gate")


async def test_batch_decide_whose_gate_denies_decides_no_item(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    outsider = nurse()
    request = consent_service_pb2.BatchDecideRequest(
        actor=outsider.to_actor(),
        holder_id=new_holder(),
        action=resources_pb2.ACTION_READ,
        items=[resources_pb2.ItemAttributes(kind=resources_pb2.ITEM_KIND_DOCUMENT, document_class="LAB")],
        gate=consent_service_pb2.GateQuestion(
            action=resources_pb2.ACTION_LIST, item=resources_pb2.ItemAttributes(kind=resources_pb2.ITEM_KIND_SPACE)
        ),
    )
    response = await stub.BatchDecide(request, metadata=bearer(token_factory, outsider))
    assert response.gate.effect == resources_pb2.EFFECT_DENY
    assert response.gate.reason_code.startswith("ACCESS_DENIED_")
    assert list(response.decisions) == []


async def test_decide_without_holder_is_invalid_argument_naming_the_field(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    holder = Principal(subject=new_holder(), role="holder")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Decide(consent_service_pb2.DecideRequest(action=resources_pb2.ACTION_READ),
                          metadata=bearer(token_factory, holder))
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.metadata["field"] == "holder_id"


async def test_decide_without_token_is_unauthenticated(stub: consent_service_pb2_grpc.ConsentServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Decide(consent_service_pb2.DecideRequest(holder_id="x", action=resources_pb2.ACTION_READ))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_get_access_matrix_serves_every_cell_of_the_current_version(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    metadata = bearer(token_factory, Principal(subject="pro-1", role="professional", profession_code="10"))
    matrix = await stub.GetAccessMatrix(consent_service_pb2.GetAccessMatrixRequest(), metadata=metadata)
    assert matrix.version == "1"
    assert matrix.effective_time.seconds > 0
    assert len(matrix.rules) == len(matrix.profession_codes) * len(matrix.document_classes)
    cells = {(r.profession_code, r.document_class): r for r in matrix.rules}
    assert not cells[("60", "PSY_SYNTHESIS")].read
    assert cells[("10", "PSY_SYNTHESIS")].read


async def test_get_access_matrix_of_an_unknown_version_is_not_found(
    stub: consent_service_pb2_grpc.ConsentServiceStub, token_factory: TokenFactory
) -> None:
    metadata = bearer(token_factory, Principal(subject="pro-1", role="professional", profession_code="10"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetAccessMatrix(consent_service_pb2.GetAccessMatrixRequest(version="1999.9"), metadata=metadata)
    error = parse_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "ACCESS_MATRIX_VERSION_NOT_FOUND"


async def test_migrations_create_the_consent_tables(consent_app: ServiceApp, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", SCHEMA)
        tables = {row["table_name"] for row in rows}
    finally:
        await conn.close()
    assert {
        "oppositions", "blocks", "care_team_authorisations", "app_consents", "persons", "treating_physicians",
        "representatives", "helpers", "outbox",
    } <= tables
