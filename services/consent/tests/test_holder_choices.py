"""Oppositions, blocks, care team and app consents over gRPC: permissions, facts, cache and events.

Identity's facts arrive the way identity publishes them: as events on its stream
(here a stream unique to the test), read by consent's durable consumer group.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import consent_service_pb2 as pb
from carnet.consent.v1 import consent_service_pb2_grpc, resources_pb2
from carnet.identity.v1 import events_pb2 as identity_events
from carnet.identity.v1 import resources_pb2 as identity_resources
from carnet_consent.app import ConsentRuntime
from carnet_consent.settings import ConsentSettings
from carnet_kit.auth import Principal
from carnet_kit.redis_client import create_redis
from carnet_kit.status import parse_rpc_error
from carnet_kit.testing import TokenFactory, publish_event, wait_until

Stub = consent_service_pb2_grpc.ConsentServiceStub
DOSSIER = Principal(subject="dossier", role="service")


@pytest.fixture
async def client(consent_settings: ConsentSettings) -> AsyncIterator[redis.Redis]:
    connection = create_redis(consent_settings.redis_url)
    yield connection
    await connection.aclose()


class Identity:
    """Publishes identity's events the way identity's outbox relay does."""

    def __init__(self, client: redis.Redis, stream: str) -> None:
        self._redis = client
        self._stream = stream

    async def publish(self, message: Message, *, event_id: str | None = None) -> str:
        return await publish_event(self._redis, self._stream, message, event_id=event_id)


@pytest.fixture
def identity(client: redis.Redis, consent_settings: ConsentSettings) -> Identity:
    return Identity(client, consent_settings.identity_events_stream)


def stamp(when: datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(when)
    return value


def new_holder() -> Principal:
    return Principal(subject=f"person-{uuid.uuid4().hex[:12]}", role="holder")


def new_professional(profession: str = "10") -> Principal:
    return Principal(
        subject=f"pro-{uuid.uuid4().hex[:8]}", role="professional", profession_code=profession, rpps="10000000017"
    )


def auth(token_factory: TokenFactory, principal: Principal) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token_factory.mint(principal)}"),)


async def rpc_error(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


async def decide(
    stub: Stub,
    token_factory: TokenFactory,
    actor: Principal,
    holder_id: str,
    action: int = resources_pb2.ACTION_READ,
    document_class: str = "REPORT",
    reason: str = "",
) -> str:
    response = await stub.Decide(
        pb.DecideRequest(
            actor=actor.to_actor(),
            holder_id=holder_id,
            action=action,  # type: ignore[arg-type]
            item=resources_pb2.ItemAttributes(kind=resources_pb2.ITEM_KIND_DOCUMENT, document_class=document_class),
            break_glass_reason=reason,
        ),
        metadata=auth(token_factory, DOSSIER),
    )
    return str(response.reason_code)


async def events_of(client: redis.Redis, stream: str, event_type: str) -> list[dict[str, Any]]:
    entries = await client.xrange(stream)
    return [
        json.loads(fields[b"payload"])
        for _id, fields in entries
        if fields[b"type"].decode() == f"carnet.consent.v1.{event_type}"
    ]


async def person_created(identity: Identity, holder_id: str, *, deadline: datetime) -> None:
    await identity.publish(
        identity_events.PersonCreatedEvent(
            person_id=holder_id,
            state=identity_resources.ACCOUNT_STATE_NOTIFIED,
            opposition_deadline=stamp(deadline),
            occur_time=stamp(datetime.now(UTC)),
        )
    )


async def known_to_consent(runtime: ConsentRuntime, holder_id: str) -> None:
    await wait_until(lambda: runtime.store.person_window(holder_id), timeout=5.0)


def opposition(holder_id: str, kind: int, channel: int = resources_pb2.OPPOSITION_CHANNEL_ONLINE) -> Any:
    return resources_pb2.Opposition(holder_id=holder_id, kind=kind, channel=channel)  # type: ignore[arg-type]


# ---------------------------------------------------------------- oppositions


async def test_creation_opposition_inside_the_window_gives_a_receipt_and_tells_identity(
    stub: Stub, runtime: ConsentRuntime, identity: Identity, client: redis.Redis,
    consent_settings: ConsentSettings, token_factory: TokenFactory,
) -> None:
    holder = new_holder()
    await person_created(identity, holder.subject, deadline=datetime.now(UTC) + timedelta(weeks=6))
    await known_to_consent(runtime, holder.subject)
    created = await stub.CreateOpposition(
        pb.CreateOppositionRequest(opposition=opposition(holder.subject, resources_pb2.OPPOSITION_KIND_CREATION)),
        metadata=auth(token_factory, holder),
    )
    assert created.opposition_id and created.receipt_number.startswith("OPP-")
    assert created.state == resources_pb2.OPPOSITION_STATE_ACTIVE
    assert created.create_time.seconds > 0 and created.recorded_by.subject == holder.subject

    async def published() -> list[dict[str, Any]]:
        return await events_of(client, consent_settings.events_stream, "OppositionChangedEvent")

    [event] = await wait_until(published, timeout=5.0)
    assert event["opposition_id"] == created.opposition_id
    assert event["kind"] == "OPPOSITION_KIND_CREATION" and event["state"] == "OPPOSITION_STATE_ACTIVE"
    assert event["receipt_number"] == created.receipt_number
    # The space is opposed: nothing may be deposited any more.
    lab = Principal(subject="client-lab", role="client", client_id="lab", scopes=("documents.deposit",))
    assert await decide(stub, token_factory, lab, holder.subject, resources_pb2.ACTION_CREATE, "LAB") == (
        "ACCESS_DENIED_SPACE_NOT_OPEN"
    )


async def test_creation_opposition_after_activation_or_deadline_is_failed_precondition(
    stub: Stub, runtime: ConsentRuntime, identity: Identity, token_factory: TokenFactory
) -> None:
    active, late = new_holder(), new_holder()
    await person_created(identity, active.subject, deadline=datetime.now(UTC) + timedelta(weeks=6))
    await identity.publish(
        identity_events.AccountStateChangedEvent(
            person_id=active.subject,
            previous_state=identity_resources.ACCOUNT_STATE_NOTIFIED,
            state=identity_resources.ACCOUNT_STATE_ACTIVE,
            occur_time=stamp(datetime.now(UTC) + timedelta(seconds=1)),
        )
    )
    await person_created(identity, late.subject, deadline=datetime.now(UTC) - timedelta(days=1))
    await known_to_consent(runtime, late.subject)

    async def activated() -> bool:
        window = await runtime.store.person_window(active.subject)
        return window is not None and window[0].value == "ACTIVE"

    await wait_until(activated, timeout=5.0)
    for holder, state in ((active, "ACTIVE"), (late, "NOTIFIED")):
        error = await rpc_error(
            stub.CreateOpposition(
                pb.CreateOppositionRequest(opposition=opposition(holder.subject, resources_pb2.OPPOSITION_KIND_CREATION)),
                metadata=auth(token_factory, holder),
            )
        )
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert error.reason == "OPPOSITION_WINDOW_CLOSED"
        assert error.metadata["state"] == state


async def test_creation_opposition_for_a_holder_unknown_to_events_asks_identity(
    stub: Stub, token_factory: TokenFactory
) -> None:
    holder = new_holder()
    # Identity is unreachable in this test: the answer is UNAVAILABLE, never a guess.
    error = await rpc_error(
        stub.CreateOpposition(
            pb.CreateOppositionRequest(opposition=opposition(holder.subject, resources_pb2.OPPOSITION_KIND_CREATION)),
            metadata=auth(token_factory, holder),
        )
    )
    assert error.code == grpc.StatusCode.UNAVAILABLE


async def test_create_opposition_is_idempotent_on_request_id_and_one_per_kind(
    stub: Stub, token_factory: TokenFactory
) -> None:
    holder = new_holder()
    request = pb.CreateOppositionRequest(
        opposition=opposition(holder.subject, resources_pb2.OPPOSITION_KIND_RESEARCH), request_id=str(uuid.uuid4())
    )
    first = await stub.CreateOpposition(request, metadata=auth(token_factory, holder))
    again = await stub.CreateOpposition(request, metadata=auth(token_factory, holder))
    assert again == first
    error = await rpc_error(
        stub.CreateOpposition(
            pb.CreateOppositionRequest(opposition=opposition(holder.subject, resources_pb2.OPPOSITION_KIND_RESEARCH)),
            metadata=auth(token_factory, holder),
        )
    )
    assert error.code == grpc.StatusCode.ALREADY_EXISTS and error.reason == "OPPOSITION_ALREADY_ACTIVE"


async def test_break_glass_opposition_refuses_break_glass_until_withdrawn(
    stub: Stub, client: redis.Redis, consent_settings: ConsentSettings, token_factory: TokenFactory
) -> None:
    holder, doctor = new_holder(), new_professional()
    reason = "Patient inconscient aux urgences"
    assert await decide(stub, token_factory, doctor, holder.subject, resources_pb2.ACTION_BREAK_GLASS_READ,
                        reason=reason) == "ALLOWED_BREAK_GLASS"
    created = await stub.CreateOpposition(
        pb.CreateOppositionRequest(opposition=opposition(holder.subject, resources_pb2.OPPOSITION_KIND_BREAK_GLASS)),
        metadata=auth(token_factory, holder),
    )
    # Local writes take effect on the very next decision.
    assert await decide(stub, token_factory, doctor, holder.subject, resources_pb2.ACTION_BREAK_GLASS_READ,
                        reason=reason) == "ACCESS_DENIED_BREAK_GLASS_OPPOSED"
    # The emergency regulation doctor is under a separate opposition.
    assert await decide(stub, token_factory, doctor, holder.subject, resources_pb2.ACTION_EMERGENCY_REGULATION_READ,
                        reason=reason) == "ALLOWED_EMERGENCY_REGULATION"
    withdrawn = await stub.WithdrawOpposition(
        pb.WithdrawOppositionRequest(opposition_id=created.opposition_id), metadata=auth(token_factory, holder)
    )
    assert withdrawn.state == resources_pb2.OPPOSITION_STATE_WITHDRAWN
    assert withdrawn.withdrawal_receipt_number.startswith("WDR-") and withdrawn.withdraw_time.seconds > 0
    assert withdrawn.receipt_number == created.receipt_number
    assert await decide(stub, token_factory, doctor, holder.subject, resources_pb2.ACTION_BREAK_GLASS_READ,
                        reason=reason) == "ALLOWED_BREAK_GLASS"
    error = await rpc_error(
        stub.WithdrawOpposition(
            pb.WithdrawOppositionRequest(opposition_id=created.opposition_id), metadata=auth(token_factory, holder)
        )
    )
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "OPPOSITION_ALREADY_WITHDRAWN"

    async def both_published() -> list[dict[str, Any]]:
        events = await events_of(client, consent_settings.events_stream, "OppositionChangedEvent")
        return events if len(events) == 2 else []

    recorded, withdrawal = await wait_until(both_published, timeout=5.0)
    assert recorded["state"] == "OPPOSITION_STATE_ACTIVE"
    assert withdrawal["state"] == "OPPOSITION_STATE_WITHDRAWN"
    assert withdrawal["receipt_number"] == withdrawn.withdrawal_receipt_number


async def test_emergency_regulation_opposition_refuses_the_regulation_doctor(
    stub: Stub, token_factory: TokenFactory
) -> None:
    holder, doctor = new_holder(), new_professional()
    await stub.CreateOpposition(
        pb.CreateOppositionRequest(
            opposition=opposition(holder.subject, resources_pb2.OPPOSITION_KIND_EMERGENCY_REGULATION)
        ),
        metadata=auth(token_factory, holder),
    )
    assert await decide(stub, token_factory, doctor, holder.subject, resources_pb2.ACTION_EMERGENCY_REGULATION_READ,
                        reason="Appel au 15") == "ACCESS_DENIED_EMERGENCY_REGULATION_OPPOSED"
    assert await decide(stub, token_factory, doctor, holder.subject, resources_pb2.ACTION_BREAK_GLASS_READ,
                        reason="Urgence vitale") == "ALLOWED_BREAK_GLASS"


async def test_list_and_get_oppositions_filter_and_page(stub: Stub, token_factory: TokenFactory) -> None:
    holder = new_holder()
    kinds = [
        resources_pb2.OPPOSITION_KIND_BREAK_GLASS,
        resources_pb2.OPPOSITION_KIND_EMERGENCY_REGULATION,
        resources_pb2.OPPOSITION_KIND_RESEARCH,
    ]
    created = [
        await stub.CreateOpposition(
            pb.CreateOppositionRequest(opposition=opposition(holder.subject, kind)), metadata=auth(token_factory, holder)
        )
        for kind in kinds
    ]
    await stub.WithdrawOpposition(
        pb.WithdrawOppositionRequest(opposition_id=created[0].opposition_id), metadata=auth(token_factory, holder)
    )
    first = await stub.ListOppositions(
        pb.ListOppositionsRequest(holder_id=holder.subject, page_size=2), metadata=auth(token_factory, holder)
    )
    second = await stub.ListOppositions(
        pb.ListOppositionsRequest(holder_id=holder.subject, page_size=2, page_token=first.next_page_token),
        metadata=auth(token_factory, holder),
    )
    assert len(first.oppositions) == 2 and first.next_page_token and not second.next_page_token
    assert {o.opposition_id for o in [*first.oppositions, *second.oppositions]} == {c.opposition_id for c in created}
    active = await stub.ListOppositions(
        pb.ListOppositionsRequest(holder_id=holder.subject, state=resources_pb2.OPPOSITION_STATE_ACTIVE),
        metadata=auth(token_factory, holder),
    )
    assert {o.kind for o in active.oppositions} == set(kinds[1:])
    research = await stub.ListOppositions(
        pb.ListOppositionsRequest(holder_id=holder.subject, kind=resources_pb2.OPPOSITION_KIND_RESEARCH),
        metadata=auth(token_factory, holder),
    )
    assert [o.opposition_id for o in research.oppositions] == [created[2].opposition_id]
    got = await stub.GetOpposition(
        pb.GetOppositionRequest(opposition_id=created[1].opposition_id), metadata=auth(token_factory, holder)
    )
    assert got == created[1]
    missing = await rpc_error(
        stub.GetOpposition(pb.GetOppositionRequest(opposition_id=str(uuid.uuid4())), metadata=auth(token_factory, holder))
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND and missing.reason == "OPPOSITION_NOT_FOUND"
    bad_token = await rpc_error(
        stub.ListOppositions(
            pb.ListOppositionsRequest(holder_id=holder.subject, page_token="garbage"),
            metadata=auth(token_factory, holder),
        )
    )
    assert bad_token.code == grpc.StatusCode.INVALID_ARGUMENT and bad_token.metadata["field"] == "page_token"


async def test_only_the_holder_their_representative_full_helper_or_an_agent_manage_oppositions(
    stub: Stub, runtime: ConsentRuntime, identity: Identity, token_factory: TokenFactory
) -> None:
    holder = new_holder()
    representative = Principal(subject=f"person-{uuid.uuid4().hex[:8]}", role="representative", acting_for=holder.subject)
    full = Principal(subject=f"person-{uuid.uuid4().hex[:8]}", role="helper", acting_for=holder.subject)
    read_only = Principal(subject=f"person-{uuid.uuid4().hex[:8]}", role="helper", acting_for=holder.subject)
    now = datetime.now(UTC)
    await identity.publish(identity_events.LegalRepresentativeChangedEvent(
        holder_id=holder.subject, representative_id=representative.subject,
        change_type=common_pb2.CHANGE_TYPE_CREATED, occur_time=stamp(now)))
    for helper, access in ((full, identity_resources.HELPER_ACCESS_FULL),
                           (read_only, identity_resources.HELPER_ACCESS_READ_ONLY)):
        await identity.publish(identity_events.HelperChangedEvent(
            holder_id=holder.subject, helper_person_id=helper.subject, access=access,
            change_type=common_pb2.CHANGE_TYPE_CREATED, occur_time=stamp(now)))

    async def facts_known() -> bool:
        facts = await runtime.store.load_facts(holder.subject)
        return len(facts.helpers) == 2 and bool(facts.representatives)

    await wait_until(facts_known, timeout=5.0)
    refused = [
        (new_holder(), resources_pb2.OPPOSITION_CHANNEL_ONLINE),
        (new_professional(), resources_pb2.OPPOSITION_CHANNEL_ONLINE),
        (read_only, resources_pb2.OPPOSITION_CHANNEL_ONLINE),
        (holder, resources_pb2.OPPOSITION_CHANNEL_AGENT),  # only an agent records by desk or letter
    ]
    for caller, channel in refused:
        error = await rpc_error(stub.CreateOpposition(
            pb.CreateOppositionRequest(
                opposition=opposition(holder.subject, resources_pb2.OPPOSITION_KIND_RESEARCH, channel)),
            metadata=auth(token_factory, caller)))
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED"), caller
    allowed = [
        (representative, resources_pb2.OPPOSITION_KIND_RESEARCH, resources_pb2.OPPOSITION_CHANNEL_ONLINE),
        (full, resources_pb2.OPPOSITION_KIND_BREAK_GLASS, resources_pb2.OPPOSITION_CHANNEL_ONLINE),
        (Principal(subject="op-desk", role="operator"), resources_pb2.OPPOSITION_KIND_EMERGENCY_REGULATION,
         resources_pb2.OPPOSITION_CHANNEL_LETTER),
    ]
    for caller, kind, channel in allowed:
        made = await stub.CreateOpposition(
            pb.CreateOppositionRequest(opposition=opposition(holder.subject, kind, channel)),
            metadata=auth(token_factory, caller))
        assert made.recorded_by.subject == caller.subject
    error = await rpc_error(stub.ListOppositions(
        pb.ListOppositionsRequest(holder_id=holder.subject), metadata=auth(token_factory, new_holder())))
    assert error.reason == "CALLER_NOT_ALLOWED"
    listed = await stub.ListOppositions(
        pb.ListOppositionsRequest(holder_id=holder.subject), metadata=auth(token_factory, read_only))
    assert len(listed.oppositions) == 3


# ---------------------------------------------------------------- blocks


async def test_a_block_takes_effect_on_the_next_decide_and_unblocking_restores_access(
    stub: Stub, client: redis.Redis, consent_settings: ConsentSettings, token_factory: TokenFactory
) -> None:
    holder, doctor = new_holder(), new_professional()
    await stub.CreateCareTeamAuthorisation(
        pb.CreateCareTeamAuthorisationRequest(authorisation=resources_pb2.CareTeamAuthorisation(
            holder_id=holder.subject, professional_id=doctor.subject)),
        metadata=auth(token_factory, holder))
    assert await decide(stub, token_factory, doctor, holder.subject) == "ALLOWED_CARE_TEAM"
    block = await stub.CreateBlock(
        pb.CreateBlockRequest(block=resources_pb2.Block(
            holder_id=holder.subject, professional_id=doctor.subject, rpps=doctor.rpps)),
        metadata=auth(token_factory, holder))
    assert block.block_id and block.created_by.subject == holder.subject
    assert await decide(stub, token_factory, doctor, holder.subject) == "ACCESS_DENIED_BLOCKED"
    # Nothing gets through, not even break-glass.
    assert await decide(stub, token_factory, doctor, holder.subject, resources_pb2.ACTION_BREAK_GLASS_READ,
                        reason="Urgence") == "ACCESS_DENIED_BLOCKED"
    again = await rpc_error(stub.CreateBlock(
        pb.CreateBlockRequest(block=resources_pb2.Block(holder_id=holder.subject, professional_id=doctor.subject)),
        metadata=auth(token_factory, holder)))
    assert (again.code, again.reason) == (grpc.StatusCode.ALREADY_EXISTS, "BLOCK_ALREADY_EXISTS")
    listed = await stub.ListBlocks(pb.ListBlocksRequest(holder_id=holder.subject), metadata=auth(token_factory, holder))
    assert [b.block_id for b in listed.blocks] == [block.block_id]
    await stub.DeleteBlock(pb.DeleteBlockRequest(block_id=block.block_id), metadata=auth(token_factory, holder))
    assert await decide(stub, token_factory, doctor, holder.subject) == "ALLOWED_CARE_TEAM"
    gone = await rpc_error(
        stub.DeleteBlock(pb.DeleteBlockRequest(block_id=block.block_id), metadata=auth(token_factory, holder)))
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "BLOCK_NOT_FOUND")

    async def published() -> list[dict[str, Any]]:
        events = await events_of(client, consent_settings.events_stream, "BlockChangedEvent")
        return events if len(events) == 2 else []

    created, deleted = await wait_until(published, timeout=5.0)
    assert created["change_type"] == "CHANGE_TYPE_CREATED" and deleted["change_type"] == "CHANGE_TYPE_DELETED"
    assert created["professional_id"] == doctor.subject


async def test_only_the_holders_side_blocks_professionals(stub: Stub, token_factory: TokenFactory) -> None:
    holder, doctor = new_holder(), new_professional()
    for caller in (doctor, new_holder(), Principal(subject="person-x", role="helper", acting_for=holder.subject)):
        error = await rpc_error(stub.CreateBlock(
            pb.CreateBlockRequest(block=resources_pb2.Block(holder_id=holder.subject, professional_id=doctor.subject)),
            metadata=auth(token_factory, caller)))
        assert error.reason == "CALLER_NOT_ALLOWED"
    missing = await rpc_error(stub.CreateBlock(
        pb.CreateBlockRequest(block=resources_pb2.Block(holder_id=holder.subject)), metadata=auth(token_factory, holder)))
    assert missing.code == grpc.StatusCode.INVALID_ARGUMENT and missing.metadata["field"] == "block.professional_id"


async def test_identity_declaring_a_treating_physician_updates_facts_and_they_cannot_be_blocked(
    stub: Stub, identity: Identity, token_factory: TokenFactory
) -> None:
    holder, physician = new_holder(), new_professional()
    assert await decide(stub, token_factory, physician, holder.subject) == "ACCESS_DENIED_NOT_AUTHORISED"
    await identity.publish(identity_events.TreatingPhysicianChangedEvent(
        holder_id=holder.subject, professional_id=physician.subject, occur_time=stamp(datetime.now(UTC))))

    async def treating() -> bool:
        return await decide(stub, token_factory, physician, holder.subject) == "ALLOWED_TREATING_PHYSICIAN"

    await wait_until(treating, timeout=5.0)
    error = await rpc_error(stub.CreateBlock(
        pb.CreateBlockRequest(block=resources_pb2.Block(holder_id=holder.subject, professional_id=physician.subject)),
        metadata=auth(token_factory, holder)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TREATING_PHYSICIAN_CANNOT_BE_BLOCKED")


async def test_declaring_a_blocked_professional_treating_physician_lifts_the_block(
    stub: Stub, identity: Identity, token_factory: TokenFactory
) -> None:
    holder, physician = new_holder(), new_professional()
    await stub.CreateBlock(
        pb.CreateBlockRequest(block=resources_pb2.Block(holder_id=holder.subject, professional_id=physician.subject)),
        metadata=auth(token_factory, holder))
    event_id = await identity.publish(identity_events.TreatingPhysicianChangedEvent(
        holder_id=holder.subject, professional_id=physician.subject, occur_time=stamp(datetime.now(UTC))))

    async def unblocked() -> bool:
        listed = await stub.ListBlocks(pb.ListBlocksRequest(holder_id=holder.subject),
                                       metadata=auth(token_factory, holder))
        return not listed.blocks

    await wait_until(unblocked, timeout=5.0)
    # A redelivered event is applied once; an older declaration never overwrites a newer one.
    newer = new_professional()
    await identity.publish(identity_events.TreatingPhysicianChangedEvent(
        holder_id=holder.subject, professional_id=newer.subject, previous_professional_id=physician.subject,
        occur_time=stamp(datetime.now(UTC) + timedelta(seconds=5))))

    async def replaced() -> bool:
        return await decide(stub, token_factory, newer, holder.subject) == "ALLOWED_TREATING_PHYSICIAN"

    await wait_until(replaced, timeout=5.0)
    await identity.publish(identity_events.TreatingPhysicianChangedEvent(
        holder_id=holder.subject, professional_id=physician.subject, occur_time=stamp(datetime.now(UTC))),
        event_id=event_id)
    await identity.publish(identity_events.TreatingPhysicianChangedEvent(
        holder_id=holder.subject, professional_id=physician.subject,
        occur_time=stamp(datetime.now(UTC) - timedelta(days=1))))
    assert await decide(stub, token_factory, newer, holder.subject) == "ALLOWED_TREATING_PHYSICIAN"


async def test_a_closed_space_is_closed_to_professionals(
    stub: Stub, identity: Identity, token_factory: TokenFactory
) -> None:
    holder, physician = new_holder(), new_professional()
    await identity.publish(identity_events.TreatingPhysicianChangedEvent(
        holder_id=holder.subject, professional_id=physician.subject, occur_time=stamp(datetime.now(UTC))))
    await identity.publish(identity_events.AccountStateChangedEvent(
        person_id=holder.subject, previous_state=identity_resources.ACCOUNT_STATE_ACTIVE,
        state=identity_resources.ACCOUNT_STATE_CLOSED, occur_time=stamp(datetime.now(UTC))))

    async def closed() -> bool:
        return await decide(stub, token_factory, physician, holder.subject) == "ACCESS_DENIED_SPACE_NOT_OPEN"

    await wait_until(closed, timeout=5.0)


# ---------------------------------------------------------------- care team


async def test_a_professional_declares_a_care_relationship_the_holder_is_told_and_may_revoke(
    stub: Stub, client: redis.Redis, consent_settings: ConsentSettings, token_factory: TokenFactory
) -> None:
    holder = new_holder()
    nurse = Principal(subject=f"pro-{uuid.uuid4().hex[:8]}", role="professional", profession_code="60",
                      rpps="10000000025", organisation_id="org-cabinet")
    assert await decide(stub, token_factory, nurse, holder.subject, document_class="LAB") == (
        "ACCESS_DENIED_NOT_AUTHORISED"
    )
    declared = await stub.CreateCareTeamAuthorisation(
        pb.CreateCareTeamAuthorisationRequest(
            authorisation=resources_pb2.CareTeamAuthorisation(holder_id=holder.subject), request_id="decl-1-" + holder.subject),
        metadata=auth(token_factory, nurse))
    assert declared.origin == resources_pb2.AUTHORISATION_ORIGIN_PROFESSIONAL_DECLARATION
    assert (declared.professional_id, declared.rpps, declared.organisation_id) == (
        nurse.subject, nurse.rpps, "org-cabinet")
    assert declared.state == resources_pb2.GRANT_STATE_ACTIVE
    assert await decide(stub, token_factory, nurse, holder.subject, document_class="LAB") == "ALLOWED_CARE_TEAM"

    async def told() -> list[dict[str, Any]]:
        return await events_of(client, consent_settings.events_stream, "CareTeamAuthorisationChangedEvent")

    [event] = await wait_until(told, timeout=5.0)
    assert event["origin"] == "AUTHORISATION_ORIGIN_PROFESSIONAL_DECLARATION"
    assert event["holder_id"] == holder.subject and event["professional_id"] == nurse.subject

    listed = await stub.ListCareTeamAuthorisations(
        pb.ListCareTeamAuthorisationsRequest(holder_id=holder.subject), metadata=auth(token_factory, holder))
    assert [a.authorisation_id for a in listed.authorisations] == [declared.authorisation_id]
    mine = await stub.ListCareTeamAuthorisations(
        pb.ListCareTeamAuthorisationsRequest(), metadata=auth(token_factory, nurse))
    assert [a.holder_id for a in mine.authorisations] == [holder.subject]
    revoked = await stub.RevokeCareTeamAuthorisation(
        pb.RevokeCareTeamAuthorisationRequest(authorisation_id=declared.authorisation_id),
        metadata=auth(token_factory, holder))
    assert revoked.state == resources_pb2.GRANT_STATE_REVOKED and revoked.revoked_by.subject == holder.subject
    assert await decide(stub, token_factory, nurse, holder.subject, document_class="LAB") == (
        "ACCESS_DENIED_NOT_AUTHORISED"
    )
    twice = await rpc_error(stub.RevokeCareTeamAuthorisation(
        pb.RevokeCareTeamAuthorisationRequest(authorisation_id=declared.authorisation_id),
        metadata=auth(token_factory, holder)))
    assert (twice.code, twice.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "GRANT_NOT_ACTIVE")
    history = await stub.ListCareTeamAuthorisations(
        pb.ListCareTeamAuthorisationsRequest(holder_id=holder.subject, state=resources_pb2.GRANT_STATE_REVOKED),
        metadata=auth(token_factory, holder))
    assert [a.authorisation_id for a in history.authorisations] == [declared.authorisation_id]


async def test_care_team_permissions(stub: Stub, token_factory: TokenFactory) -> None:
    holder, doctor, other = new_holder(), new_professional(), new_professional()
    for authorisation in (
        resources_pb2.CareTeamAuthorisation(holder_id=holder.subject, professional_id=other.subject),
        resources_pb2.CareTeamAuthorisation(
            holder_id=holder.subject, origin=resources_pb2.AUTHORISATION_ORIGIN_HOLDER_GRANT),
    ):
        error = await rpc_error(stub.CreateCareTeamAuthorisation(
            pb.CreateCareTeamAuthorisationRequest(authorisation=authorisation), metadata=auth(token_factory, doctor)))
        assert error.reason == "CALLER_NOT_ALLOWED"
    stranger = await rpc_error(stub.CreateCareTeamAuthorisation(
        pb.CreateCareTeamAuthorisationRequest(authorisation=resources_pb2.CareTeamAuthorisation(
            holder_id=holder.subject, professional_id=doctor.subject)),
        metadata=auth(token_factory, new_holder())))
    assert stranger.reason == "CALLER_NOT_ALLOWED"
    granted = await stub.CreateCareTeamAuthorisation(
        pb.CreateCareTeamAuthorisationRequest(authorisation=resources_pb2.CareTeamAuthorisation(
            holder_id=holder.subject, professional_id=doctor.subject)),
        metadata=auth(token_factory, holder))
    assert granted.origin == resources_pb2.AUTHORISATION_ORIGIN_HOLDER_GRANT
    peek = await rpc_error(stub.GetCareTeamAuthorisation(
        pb.GetCareTeamAuthorisationRequest(authorisation_id=granted.authorisation_id),
        metadata=auth(token_factory, other)))
    assert peek.reason == "CALLER_NOT_ALLOWED"
    seen = await stub.GetCareTeamAuthorisation(
        pb.GetCareTeamAuthorisationRequest(authorisation_id=granted.authorisation_id),
        metadata=auth(token_factory, doctor))
    assert seen.authorisation_id == granted.authorisation_id
    # The professional concerned may end the relationship too.
    revoked = await stub.RevokeCareTeamAuthorisation(
        pb.RevokeCareTeamAuthorisationRequest(authorisation_id=granted.authorisation_id),
        metadata=auth(token_factory, doctor))
    assert revoked.state == resources_pb2.GRANT_STATE_REVOKED


async def test_a_consultation_consent_is_short_lived(stub: Stub, token_factory: TokenFactory) -> None:
    holder, doctor = new_holder(), new_professional()
    consent = await stub.CreateCareTeamAuthorisation(
        pb.CreateCareTeamAuthorisationRequest(authorisation=resources_pb2.CareTeamAuthorisation(
            holder_id=holder.subject, professional_id=doctor.subject,
            origin=resources_pb2.AUTHORISATION_ORIGIN_CONSULTATION_CONSENT)),
        metadata=auth(token_factory, holder))
    lifetime = consent.expire_time.seconds - consent.create_time.seconds
    assert 23 * 3600 < lifetime <= 24 * 3600 + 1
    assert await decide(stub, token_factory, doctor, holder.subject) == "ALLOWED_CARE_TEAM"
    past = await rpc_error(stub.CreateCareTeamAuthorisation(
        pb.CreateCareTeamAuthorisationRequest(authorisation=resources_pb2.CareTeamAuthorisation(
            holder_id=holder.subject, professional_id=doctor.subject,
            expire_time=stamp(datetime.now(UTC) - timedelta(hours=1)))),
        metadata=auth(token_factory, holder)))
    assert past.code == grpc.StatusCode.INVALID_ARGUMENT and past.metadata["field"] == "authorisation.expire_time"


# ---------------------------------------------------------------- app consents


async def test_a_catalogue_app_needs_the_holders_consent_for_the_data_category(
    stub: Stub, client: redis.Redis, consent_settings: ConsentSettings, token_factory: TokenFactory
) -> None:
    holder = new_holder()
    app = Principal(subject="client-diary", role="client", client_id="diary", acting_for=holder.subject,
                    scopes=("documents.read", "measurements.write"))
    assert await decide(stub, token_factory, app, holder.subject, document_class="LAB") == (
        "ACCESS_DENIED_NO_APP_CONSENT"
    )
    consent = await stub.CreateAppConsent(
        pb.CreateAppConsentRequest(app_consent=resources_pb2.AppConsent(
            holder_id=holder.subject, client_id="diary", data_category="documents",
            access=resources_pb2.APP_ACCESS_READ)),
        metadata=auth(token_factory, holder))
    assert consent.state == resources_pb2.GRANT_STATE_ACTIVE
    assert await decide(stub, token_factory, app, holder.subject, document_class="LAB") == "ALLOWED_APP_CONSENT"
    listed = await stub.ListAppConsents(
        pb.ListAppConsentsRequest(holder_id=holder.subject), metadata=auth(token_factory, holder))
    assert [c.app_consent_id for c in listed.app_consents] == [consent.app_consent_id]
    revoked = await stub.RevokeAppConsent(
        pb.RevokeAppConsentRequest(app_consent_id=consent.app_consent_id), metadata=auth(token_factory, holder))
    assert revoked.state == resources_pb2.GRANT_STATE_REVOKED and revoked.revoke_time.seconds > 0
    assert await decide(stub, token_factory, app, holder.subject, document_class="LAB") == (
        "ACCESS_DENIED_NO_APP_CONSENT"
    )
    unknown = await rpc_error(stub.CreateAppConsent(
        pb.CreateAppConsentRequest(app_consent=resources_pb2.AppConsent(
            holder_id=holder.subject, client_id="diary", data_category="horoscope",
            access=resources_pb2.APP_ACCESS_READ)),
        metadata=auth(token_factory, holder)))
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DATA_CATEGORY_UNKNOWN")
    foreign = await rpc_error(stub.CreateAppConsent(
        pb.CreateAppConsentRequest(app_consent=resources_pb2.AppConsent(
            holder_id=holder.subject, client_id="diary", data_category="documents",
            access=resources_pb2.APP_ACCESS_READ)),
        metadata=auth(token_factory, app)))
    assert foreign.reason == "CALLER_NOT_ALLOWED"

    async def published() -> list[dict[str, Any]]:
        events = await events_of(client, consent_settings.events_stream, "AppConsentChangedEvent")
        return events if len(events) == 2 else []

    given, withdrawn = await wait_until(published, timeout=5.0)
    assert given["state"] == "GRANT_STATE_ACTIVE" and withdrawn["state"] == "GRANT_STATE_REVOKED"
