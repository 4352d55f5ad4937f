"""Legal representatives of minors, helpers chosen by the holder, and the treating physician."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import grpc
from google.protobuf import field_mask_pb2

from carnet.identity.v1 import identity_service_pb2 as svc
from carnet.identity.v1 import resources_pb2
from carnet_identity.domain.accounts import majority_date
from carnet_kit.auth import Principal
from carnet_kit.outbox import stream_name
from carnet_kit.redis_client import create_redis
from carnet_kit.testing import wait_until

OPERATOR = Principal(subject="ops-1", role="operator")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def minor_birth_date(years: int = 10) -> dt.date:
    today = dt.date.today()
    return dt.date(today.year - years, 1, 15)


async def stream_events(redis_url: str, event_type: str) -> list[dict[str, object]]:
    client = create_redis(redis_url)
    try:
        entries = await client.xrange(stream_name("identity"))
    finally:
        await client.aclose()
    return [json.loads(fields[b"payload"]) for _, fields in entries if fields.get(b"type", b"").decode() == event_type]


async def as_holder(issue_token, person) -> tuple[tuple[str, str], ...]:
    return bearer(await issue_token(Principal(subject=str(person.id), role="holder")))


async def record_parent(identity, issue_token, minor, parent) -> resources_pb2.LegalRepresentative:
    return await identity.stub.CreateLegalRepresentative(
        svc.CreateLegalRepresentativeRequest(
            legal_representative=resources_pb2.LegalRepresentative(
                holder_id=str(minor.id),
                representative_id=str(parent.id),
                relationship=resources_pb2.LEGAL_REPRESENTATIVE_RELATIONSHIP_PARENT,
            )
        ),
        metadata=bearer(await issue_token(OPERATOR)),
    )


# ---- legal representatives


async def test_a_legal_representation_of_a_minor_ends_on_the_18th_birthday(
    identity, accounts, issue_token, redis_url
) -> None:
    minor = await accounts.holder(birth_date=minor_birth_date(), password=None)
    parent = await accounts.holder()
    created = await record_parent(identity, issue_token, minor, parent)
    end = created.end_time.ToDatetime(tzinfo=dt.UTC)
    assert end == dt.datetime.combine(majority_date(minor.birth_date), dt.time(), tzinfo=dt.UTC)
    assert created.created_by.subject == "ops-1"

    listed = await identity.stub.ListLegalRepresentatives(
        svc.ListLegalRepresentativesRequest(representative_id=str(parent.id)),
        metadata=await as_holder(issue_token, parent),
    )
    assert [item.legal_representative_id for item in listed.legal_representatives] == [created.legal_representative_id]

    async def announced() -> bool:
        events = await stream_events(redis_url, "carnet.identity.v1.LegalRepresentativeChangedEvent")
        return any(event["legal_representative_id"] == created.legal_representative_id for event in events)

    await wait_until(announced)


async def test_an_adult_cannot_get_a_legal_representative(identity, accounts, issue_token, rpc_error) -> None:
    adult, other = await accounts.holder(), await accounts.holder()
    error = await rpc_error(record_parent(identity, issue_token, adult, other))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "HOLDER_NOT_MINOR")


async def test_a_holder_cannot_record_a_legal_representative(identity, accounts, issue_token, rpc_error) -> None:
    minor = await accounts.holder(birth_date=minor_birth_date(), password=None)
    parent = await accounts.holder()
    error = await rpc_error(
        identity.stub.CreateLegalRepresentative(
            svc.CreateLegalRepresentativeRequest(
                legal_representative=resources_pb2.LegalRepresentative(
                    holder_id=str(minor.id),
                    representative_id=str(parent.id),
                    relationship=resources_pb2.LEGAL_REPRESENTATIVE_RELATIONSHIP_PARENT,
                )
            ),
            metadata=await as_holder(issue_token, parent),
        )
    )
    assert error.reason == "CALLER_NOT_ALLOWED"


async def test_a_representative_acts_for_the_minor_until_the_18th_birthday(
    identity, accounts, issue_token, do_login, password, pool, rpc_error
) -> None:
    minor = await accounts.holder(birth_date=minor_birth_date(), password=None)
    parent = await accounts.holder()
    await record_parent(identity, issue_token, minor, parent)
    tokens = await do_login(identity, parent.email, password)
    acting = await identity.stub.RefreshTokens(
        svc.RefreshTokensRequest(refresh_token=tokens.refresh_token, acting_for=str(minor.id))
    )
    principal = await identity.verifier().verify(acting.access_token)
    assert (principal.role, principal.acting_for) == ("representative", str(minor.id))
    assert set(principal.scopes) == {"space.read", "space.write"}

    # The 18th birthday comes: the minor is now an adult.
    await pool.execute(
        "UPDATE persons SET birth_date = $2 WHERE id = $1",
        minor.id,
        dt.date.today().replace(year=dt.date.today().year - 18),
    )
    error = await rpc_error(
        identity.stub.RefreshTokens(
            svc.RefreshTokensRequest(refresh_token=acting.refresh_token, acting_for=str(minor.id))
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ACTING_FOR")


async def test_an_expired_legal_representation_no_longer_lets_one_act_for_the_holder(
    identity, accounts, issue_token, do_login, password, pool, rpc_error
) -> None:
    minor = await accounts.holder(birth_date=minor_birth_date(), password=None)
    parent = await accounts.holder()
    created = await record_parent(identity, issue_token, minor, parent)
    await pool.execute(
        "UPDATE representatives SET valid_until = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(created.legal_representative_id),
    )
    tokens = await do_login(identity, parent.email, password)
    error = await rpc_error(
        identity.stub.RefreshTokens(
            svc.RefreshTokensRequest(refresh_token=tokens.refresh_token, acting_for=str(minor.id))
        )
    )
    assert error.reason == "NOT_ACTING_FOR"
    listed = await identity.stub.ListLegalRepresentatives(
        svc.ListLegalRepresentativesRequest(holder_id=str(minor.id)), metadata=bearer(await issue_token(OPERATOR))
    )
    assert list(listed.legal_representatives) == []
    history = await identity.stub.ListLegalRepresentatives(
        svc.ListLegalRepresentativesRequest(holder_id=str(minor.id), include_ended=True),
        metadata=bearer(await issue_token(OPERATOR)),
    )
    assert [item.legal_representative_id for item in history.legal_representatives] == [created.legal_representative_id]


async def test_ending_a_legal_representation_revokes_the_representatives_sessions(
    identity, accounts, issue_token, do_login, password, rpc_error
) -> None:
    minor = await accounts.holder(birth_date=minor_birth_date(), password=None)
    parent = await accounts.holder()
    created = await record_parent(identity, issue_token, minor, parent)
    tokens = await do_login(identity, parent.email, password)
    acting = await identity.stub.RefreshTokens(
        svc.RefreshTokensRequest(refresh_token=tokens.refresh_token, acting_for=str(minor.id))
    )
    await identity.stub.DeleteLegalRepresentative(
        svc.DeleteLegalRepresentativeRequest(legal_representative_id=created.legal_representative_id),
        metadata=bearer(await issue_token(OPERATOR)),
    )
    error = await rpc_error(
        identity.stub.GetPerson(svc.GetPersonRequest(person_id=str(minor.id)), metadata=bearer(acting.access_token))
    )
    assert error.reason == "TOKEN_REVOKED"


# ---- helpers


async def nominate(identity, issue_token, holder, helper, access) -> resources_pb2.Helper:
    return await identity.stub.CreateHelper(
        svc.CreateHelperRequest(
            helper=resources_pb2.Helper(holder_id=str(holder.id), helper_person_id=str(helper.id), access=access)
        ),
        metadata=await as_holder(issue_token, holder),
    )


async def test_helper_read_only_or_full_is_reflected_in_the_token(
    identity, accounts, issue_token, do_login, password
) -> None:
    holder, reader, writer = await accounts.holder(), await accounts.holder(), await accounts.holder()
    await nominate(identity, issue_token, holder, reader, resources_pb2.HELPER_ACCESS_READ_ONLY)
    await nominate(identity, issue_token, holder, writer, resources_pb2.HELPER_ACCESS_FULL)
    for person, expected in ((reader, {"space.read"}), (writer, {"space.read", "space.write"})):
        tokens = await do_login(identity, person.email, password)
        acting = await identity.stub.RefreshTokens(
            svc.RefreshTokensRequest(refresh_token=tokens.refresh_token, acting_for=str(holder.id))
        )
        assert (acting.actor.role, acting.actor.acting_for) == (3, str(holder.id))  # ROLE_HELPER
        principal = await identity.verifier().verify(acting.access_token)
        assert principal.role == "helper"
        assert set(principal.scopes) == expected


async def test_only_the_holder_chooses_their_helpers(identity, accounts, issue_token, rpc_error) -> None:
    holder, helper, stranger = await accounts.holder(), await accounts.holder(), await accounts.holder()
    error = await rpc_error(
        identity.stub.CreateHelper(
            svc.CreateHelperRequest(
                helper=resources_pb2.Helper(
                    holder_id=str(holder.id), helper_person_id=str(helper.id), access=resources_pb2.HELPER_ACCESS_FULL
                )
            ),
            metadata=await as_holder(issue_token, stranger),
        )
    )
    assert error.reason == "CALLER_NOT_ALLOWED"
    # Even a full helper may not nominate other helpers.
    full_helper = bearer(
        await issue_token(
            Principal(
                subject=str(helper.id), role="helper", acting_for=str(holder.id), scopes=("space.read", "space.write")
            )
        )
    )
    error = await rpc_error(
        identity.stub.CreateHelper(
            svc.CreateHelperRequest(
                helper=resources_pb2.Helper(
                    holder_id=str(holder.id), helper_person_id=str(stranger.id), access=resources_pb2.HELPER_ACCESS_FULL
                )
            ),
            metadata=full_helper,
        )
    )
    assert error.reason == "CALLER_NOT_ALLOWED"


async def test_a_helper_needs_an_access_level_and_is_nominated_once(identity, accounts, issue_token, rpc_error) -> None:
    holder, helper = await accounts.holder(), await accounts.holder()
    error = await rpc_error(nominate(identity, issue_token, holder, helper, resources_pb2.HELPER_ACCESS_UNSPECIFIED))
    assert (error.code, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "access")
    await nominate(identity, issue_token, holder, helper, resources_pb2.HELPER_ACCESS_READ_ONLY)
    error = await rpc_error(nominate(identity, issue_token, holder, helper, resources_pb2.HELPER_ACCESS_FULL))
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "HELPER_ALREADY_NOMINATED")


async def test_holder_and_helper_list_the_nomination_and_nobody_else_does(
    identity, accounts, issue_token, rpc_error, redis_url
) -> None:
    holder, helper, stranger = await accounts.holder(), await accounts.holder(), await accounts.holder()
    created = await nominate(identity, issue_token, holder, helper, resources_pb2.HELPER_ACCESS_READ_ONLY)
    mine = await identity.stub.ListHelpers(
        svc.ListHelpersRequest(holder_id=str(holder.id)), metadata=await as_holder(issue_token, holder)
    )
    assert [item.helper_id for item in mine.helpers] == [created.helper_id]
    theirs = await identity.stub.ListHelpers(
        svc.ListHelpersRequest(helper_person_id=str(helper.id)), metadata=await as_holder(issue_token, helper)
    )
    assert [item.holder_id for item in theirs.helpers] == [str(holder.id)]
    error = await rpc_error(
        identity.stub.ListHelpers(
            svc.ListHelpersRequest(holder_id=str(holder.id)), metadata=await as_holder(issue_token, stranger)
        )
    )
    assert error.reason == "CALLER_NOT_ALLOWED"

    async def announced() -> bool:
        events = await stream_events(redis_url, "carnet.identity.v1.HelperChangedEvent")
        return any(
            event["helper_id"] == created.helper_id and event["access"] == "HELPER_ACCESS_READ_ONLY" for event in events
        )

    await wait_until(announced)


async def test_narrowing_a_helper_to_read_only_ends_their_full_sessions(
    identity, accounts, issue_token, do_login, password, rpc_error
) -> None:
    holder, helper = await accounts.holder(), await accounts.holder()
    created = await nominate(identity, issue_token, holder, helper, resources_pb2.HELPER_ACCESS_FULL)
    tokens = await do_login(identity, helper.email, password)
    acting = await identity.stub.RefreshTokens(
        svc.RefreshTokensRequest(refresh_token=tokens.refresh_token, acting_for=str(holder.id))
    )
    updated = await identity.stub.UpdateHelper(
        svc.UpdateHelperRequest(
            helper=resources_pb2.Helper(helper_id=created.helper_id, access=resources_pb2.HELPER_ACCESS_READ_ONLY),
            update_mask=field_mask_pb2.FieldMask(paths=["access"]),
        ),
        metadata=await as_holder(issue_token, holder),
    )
    assert updated.access == resources_pb2.HELPER_ACCESS_READ_ONLY
    error = await rpc_error(
        identity.stub.GetPerson(svc.GetPersonRequest(person_id=str(holder.id)), metadata=bearer(acting.access_token))
    )
    assert error.reason == "TOKEN_REVOKED"
    error = await rpc_error(
        identity.stub.RefreshTokens(
            svc.RefreshTokensRequest(refresh_token=acting.refresh_token, acting_for=str(holder.id))
        )
    )
    assert error.reason == "REFRESH_TOKEN_INVALID"
    again = await do_login(identity, helper.email, password)
    narrowed = await identity.stub.RefreshTokens(
        svc.RefreshTokensRequest(refresh_token=again.refresh_token, acting_for=str(holder.id))
    )
    assert list(narrowed.actor.scopes) == ["space.read"]


async def test_removing_a_helper_revokes_their_access_at_once(
    identity, accounts, issue_token, do_login, password, rpc_error
) -> None:
    holder, helper = await accounts.holder(), await accounts.holder()
    created = await nominate(identity, issue_token, holder, helper, resources_pb2.HELPER_ACCESS_READ_ONLY)
    tokens = await do_login(identity, helper.email, password)
    acting = await identity.stub.RefreshTokens(
        svc.RefreshTokensRequest(refresh_token=tokens.refresh_token, acting_for=str(holder.id))
    )
    await identity.stub.GetPerson(svc.GetPersonRequest(person_id=str(holder.id)), metadata=bearer(acting.access_token))
    await identity.stub.DeleteHelper(
        svc.DeleteHelperRequest(helper_id=created.helper_id), metadata=await as_holder(issue_token, holder)
    )
    error = await rpc_error(
        identity.stub.GetPerson(svc.GetPersonRequest(person_id=str(holder.id)), metadata=bearer(acting.access_token))
    )
    assert error.reason == "TOKEN_REVOKED"
    # The login session the helper acted in ends with the grant; a new login no longer acts for the holder.
    fresh = await do_login(identity, helper.email, password)
    error = await rpc_error(
        identity.stub.RefreshTokens(
            svc.RefreshTokensRequest(refresh_token=fresh.refresh_token, acting_for=str(holder.id))
        )
    )
    assert error.reason == "NOT_ACTING_FOR"


async def test_a_helper_may_step_down(identity, accounts, issue_token, rpc_error) -> None:
    holder, helper = await accounts.holder(), await accounts.holder()
    created = await nominate(identity, issue_token, holder, helper, resources_pb2.HELPER_ACCESS_READ_ONLY)
    await identity.stub.DeleteHelper(
        svc.DeleteHelperRequest(helper_id=created.helper_id), metadata=await as_holder(issue_token, helper)
    )
    error = await rpc_error(
        identity.stub.DeleteHelper(
            svc.DeleteHelperRequest(helper_id=created.helper_id), metadata=await as_holder(issue_token, holder)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "REPRESENTATION_NOT_FOUND")


# ---- treating physician


async def test_the_holder_declares_a_doctor_as_treating_physician(identity, accounts, issue_token, redis_url) -> None:
    holder = await accounts.holder()
    doctor = await accounts.professional(profession_code="10")
    me = await as_holder(issue_token, holder)
    declared = await identity.stub.DeclareTreatingPhysician(
        svc.DeclareTreatingPhysicianRequest(holder_id=str(holder.id), rpps=doctor.rpps), metadata=me
    )
    assert (declared.professional_id, declared.rpps) == (str(doctor.id), doctor.rpps)
    assert declared.declared_by.subject == str(holder.id)
    fetched = await identity.stub.GetTreatingPhysician(
        svc.GetTreatingPhysicianRequest(holder_id=str(holder.id)), metadata=me
    )
    assert fetched.professional_id == str(doctor.id)
    # The physician named may read the declaration too.
    as_doctor = bearer(await issue_token(Principal(subject=str(doctor.id), role="professional", profession_code="10")))
    await identity.stub.GetTreatingPhysician(
        svc.GetTreatingPhysicianRequest(holder_id=str(holder.id)), metadata=as_doctor
    )

    async def announced() -> bool:
        events = await stream_events(redis_url, "carnet.identity.v1.TreatingPhysicianChangedEvent")
        return any(
            event["holder_id"] == str(holder.id) and event.get("professional_id") == str(doctor.id) for event in events
        )

    await wait_until(announced)


async def test_a_treating_physician_must_be_a_doctor(identity, accounts, issue_token, rpc_error) -> None:
    holder = await accounts.holder()
    nurse = await accounts.professional(profession_code="60")
    error = await rpc_error(
        identity.stub.DeclareTreatingPhysician(
            svc.DeclareTreatingPhysicianRequest(holder_id=str(holder.id), professional_id=str(nurse.id)),
            metadata=await as_holder(issue_token, holder),
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TREATING_PHYSICIAN_NOT_A_DOCTOR")


async def test_only_the_holder_declares_their_treating_physician(identity, accounts, issue_token, rpc_error) -> None:
    holder, stranger = await accounts.holder(), await accounts.holder()
    doctor = await accounts.professional()
    for caller in (
        await as_holder(issue_token, stranger),
        bearer(await issue_token(Principal(subject=str(doctor.id), role="professional", profession_code="10"))),
        bearer(
            await issue_token(
                Principal(subject=str(stranger.id), role="helper", acting_for=str(holder.id), scopes=("space.read",))
            )
        ),
    ):
        error = await rpc_error(
            identity.stub.DeclareTreatingPhysician(
                svc.DeclareTreatingPhysicianRequest(holder_id=str(holder.id), professional_id=str(doctor.id)),
                metadata=caller,
            )
        )
        assert error.reason == "CALLER_NOT_ALLOWED"


async def test_replacing_then_withdrawing_the_treating_physician(
    identity, accounts, issue_token, rpc_error, redis_url
) -> None:
    holder = await accounts.holder()
    first, second = await accounts.professional(), await accounts.professional()
    me = await as_holder(issue_token, holder)
    for doctor in (first, second):
        await identity.stub.DeclareTreatingPhysician(
            svc.DeclareTreatingPhysicianRequest(holder_id=str(holder.id), professional_id=str(doctor.id)), metadata=me
        )
    fetched = await identity.stub.GetTreatingPhysician(
        svc.GetTreatingPhysicianRequest(holder_id=str(holder.id)), metadata=me
    )
    assert fetched.professional_id == str(second.id)
    await identity.stub.DeleteTreatingPhysician(
        svc.DeleteTreatingPhysicianRequest(holder_id=str(holder.id)), metadata=me
    )
    error = await rpc_error(
        identity.stub.GetTreatingPhysician(svc.GetTreatingPhysicianRequest(holder_id=str(holder.id)), metadata=me)
    )
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "REPRESENTATION_NOT_FOUND")

    async def announced() -> bool:
        events = [
            event
            for event in await stream_events(redis_url, "carnet.identity.v1.TreatingPhysicianChangedEvent")
            if event["holder_id"] == str(holder.id)
        ]
        return [(event.get("professional_id", ""), event.get("previous_professional_id", "")) for event in events] == [
            (str(first.id), ""),
            (str(second.id), str(first.id)),
            ("", str(second.id)),
        ]

    await wait_until(announced)


async def test_representations_past_their_end_are_closed_and_announced(
    identity, accounts, issue_token, pool, redis_url
) -> None:
    from carnet_identity.keys import KeyRing
    from carnet_identity.representation import RepresentationService
    from carnet_identity.sessions import SessionService
    from carnet_identity.store_directory import DirectoryStore
    from carnet_identity.tokens import TokenIssuer

    minor = await accounts.holder(birth_date=minor_birth_date(), password=None)
    parent = await accounts.holder()
    created = await record_parent(identity, issue_token, minor, parent)
    # The minor's 18th birthday has just passed.
    await pool.execute(
        "UPDATE representatives SET valid_until = now() - interval '1 minute' WHERE id = $1",
        uuid.UUID(created.legal_representative_id),
    )
    client = create_redis(redis_url)
    try:
        keys = KeyRing(identity.store, default_overlap=dt.timedelta(hours=1))
        await keys.reload()
        sessions = SessionService(
            identity.store, TokenIssuer(keys), client, access_ttl_seconds=300, refresh_ttl_seconds=3600
        )
        service = RepresentationService(DirectoryStore.sharing(identity.store), sessions)
        assert await service.end_lapsed() >= 1
        assert await service.end_lapsed() == 0
    finally:
        await client.aclose()
    ended_at = await pool.fetchval(
        "SELECT ended_at FROM representatives WHERE id = $1", uuid.UUID(created.legal_representative_id)
    )
    assert ended_at is not None

    async def announced() -> bool:
        events = await stream_events(redis_url, "carnet.identity.v1.LegalRepresentativeChangedEvent")
        return any(
            event["legal_representative_id"] == created.legal_representative_id
            and event["change_type"] == "CHANGE_TYPE_DELETED"
            for event in events
        )

    await wait_until(announced)
