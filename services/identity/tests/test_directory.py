"""Professionals, organisations and software clients over gRPC, against the real PostgreSQL and Redis."""

from __future__ import annotations

import json
import random
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2 as svc
from carnet.identity.v1 import resources_pb2
from carnet_identity.domain.identifiers import luhn_check_digit
from carnet_kit.auth import Principal
from carnet_kit.outbox import stream_name
from carnet_kit.redis_client import create_redis
from carnet_kit.testing import wait_until

OPERATOR = Principal(subject="ops-1", role="operator")
SERVICE = Principal(subject="dossier", role="service")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def new_rpps() -> str:
    stem = f"1{random.randint(0, 10**9 - 1):09d}"
    return stem + luhn_check_digit(stem)


def new_finess() -> str:
    stem = f"{random.randint(10, 95)}{random.randint(0, 10**6 - 1):06d}"
    return stem + luhn_check_digit(stem)


def professional_message(**overrides: object) -> resources_pb2.Professional:
    values: dict[str, object] = {
        "rpps": new_rpps(),
        "name": common_pb2.PersonName(birth_name="Lambert", first_names=["Inès"]),
        "profession_code": "10",
        "specialty_code": "SM26",
        "email": f"pro-{uuid.uuid4().hex[:10]}@test.carnet.test",
    }
    values.update(overrides)
    return resources_pb2.Professional(**values)  # type: ignore[arg-type]


@pytest.fixture
async def operator(issue_token) -> tuple[tuple[str, str], ...]:
    return bearer(await issue_token(OPERATOR))


async def create_organisation(identity, operator, **overrides: object) -> resources_pb2.Organisation:
    values: dict[str, object] = {
        "finess": new_finess(),
        "name": "Centre de santé Essai",
        "kind": resources_pb2.ORGANISATION_KIND_PRACTICE,
        "department_code": "75",
    }
    values.update(overrides)
    return await identity.stub.CreateOrganisation(
        svc.CreateOrganisationRequest(organisation=resources_pb2.Organisation(**values)),  # type: ignore[arg-type]
        metadata=operator,
    )


async def stream_events(redis_url: str, event_type: str) -> list[dict[str, object]]:
    client = create_redis(redis_url)
    try:
        entries = await client.xrange(stream_name("identity"))
    finally:
        await client.aclose()
    return [json.loads(fields[b"payload"]) for _, fields in entries if fields.get(b"type", b"").decode() == event_type]


# ---- professionals


async def test_an_operator_registers_a_professional_who_is_then_found_by_id_rpps_and_listing(
    identity, operator, issue_token
) -> None:
    organisation = await create_organisation(identity, operator)
    given = professional_message(organisation_ids=[organisation.organisation_id])
    created = await identity.stub.CreateProfessional(
        svc.CreateProfessionalRequest(professional=given), metadata=operator
    )
    assert created.professional_id and created.rpps == given.rpps
    assert created.name.birth_name == "LAMBERT"
    assert list(created.organisation_ids) == [organisation.organisation_id]

    service = bearer(await issue_token(SERVICE))
    by_id = await identity.stub.GetProfessional(
        svc.GetProfessionalRequest(professional_id=created.professional_id), metadata=service
    )
    assert by_id == created
    by_rpps = await identity.stub.LookupProfessional(svc.LookupProfessionalRequest(rpps=given.rpps), metadata=service)
    assert by_rpps.professional_id == created.professional_id
    listed = await identity.stub.ListProfessionals(
        svc.ListProfessionalsRequest(organisation_id=organisation.organisation_id, profession_code="10"),
        metadata=service,
    )
    assert [item.professional_id for item in listed.professionals] == [created.professional_id]
    assert listed.total_size == 1


async def test_a_holder_cannot_create_professionals(identity, issue_token, rpc_error) -> None:
    holder = bearer(await issue_token(Principal(subject=str(uuid.uuid4()), role="holder")))
    error = await rpc_error(
        identity.stub.CreateProfessional(
            svc.CreateProfessionalRequest(professional=professional_message()), metadata=holder
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")


async def test_a_professional_cannot_create_professionals_either(identity, accounts, issue_token, rpc_error) -> None:
    professional = await accounts.professional()
    token = bearer(await issue_token(Principal(subject=str(professional.id), role="professional")))
    error = await rpc_error(
        identity.stub.CreateProfessional(
            svc.CreateProfessionalRequest(professional=professional_message()), metadata=token
        )
    )
    assert error.reason == "CALLER_NOT_ALLOWED"


async def test_a_professional_with_a_wrong_rpps_check_digit_is_refused(identity, operator, rpc_error) -> None:
    rpps = new_rpps()
    wrong = rpps[:-1] + str((int(rpps[-1]) + 1) % 10)
    error = await rpc_error(
        identity.stub.CreateProfessional(
            svc.CreateProfessionalRequest(professional=professional_message(rpps=wrong)), metadata=operator
        )
    )
    assert (error.code, error.reason, error.metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "RPPS_MALFORMED",
        "rpps",
    )


async def test_a_second_professional_with_the_same_rpps_already_exists(identity, operator, rpc_error) -> None:
    given = professional_message()
    await identity.stub.CreateProfessional(svc.CreateProfessionalRequest(professional=given), metadata=operator)
    again = professional_message(rpps=given.rpps)
    error = await rpc_error(
        identity.stub.CreateProfessional(svc.CreateProfessionalRequest(professional=again), metadata=operator)
    )
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "PROFESSIONAL_ALREADY_EXISTS")


async def test_an_unknown_profession_code_or_organisation_is_refused(identity, operator, rpc_error) -> None:
    error = await rpc_error(
        identity.stub.CreateProfessional(
            svc.CreateProfessionalRequest(professional=professional_message(profession_code="99")), metadata=operator
        )
    )
    assert (error.code, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "profession_code")
    error = await rpc_error(
        identity.stub.CreateProfessional(
            svc.CreateProfessionalRequest(professional=professional_message(organisation_ids=[str(uuid.uuid4())])),
            metadata=operator,
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "ORGANISATION_NOT_FOUND")


async def test_a_professional_reads_themself_but_not_a_colleague(identity, accounts, issue_token, rpc_error) -> None:
    me, colleague = await accounts.professional(), await accounts.professional()
    token = bearer(await issue_token(Principal(subject=str(me.id), role="professional", rpps=me.rpps)))
    mine = await identity.stub.GetProfessional(svc.GetProfessionalRequest(professional_id=str(me.id)), metadata=token)
    assert mine.rpps == me.rpps
    error = await rpc_error(
        identity.stub.GetProfessional(svc.GetProfessionalRequest(professional_id=str(colleague.id)), metadata=token)
    )
    assert error.reason == "CALLER_NOT_ALLOWED"
    # The RPPS directory is public: by number a colleague is found, without their contacts.
    public = await identity.stub.LookupProfessional(svc.LookupProfessionalRequest(rpps=colleague.rpps), metadata=token)
    assert (public.professional_id, public.rpps) == (str(colleague.id), colleague.rpps)
    assert public.email == "" and public.mobile_phone == ""
    error = await rpc_error(
        identity.stub.LookupProfessional(svc.LookupProfessionalRequest(rpps=new_rpps()), metadata=token)
    )
    assert error.reason == "PROFESSIONAL_NOT_FOUND"


async def test_updating_a_professional_changes_only_the_masked_fields_and_is_announced(
    identity, operator, redis_url
) -> None:
    created = await identity.stub.CreateProfessional(
        svc.CreateProfessionalRequest(professional=professional_message()), metadata=operator
    )
    change = resources_pb2.Professional(
        professional_id=created.professional_id, disabled=True, specialty_code="SM44", email="ignored@x.test"
    )
    updated = await identity.stub.UpdateProfessional(
        svc.UpdateProfessionalRequest(
            professional=change, update_mask=field_mask_pb2.FieldMask(paths=["disabled", "specialty_code"])
        ),
        metadata=operator,
    )
    assert (updated.disabled, updated.specialty_code, updated.email) == (True, "SM44", created.email)

    async def announced() -> bool:
        events = await stream_events(redis_url, "carnet.identity.v1.ProfessionalChangedEvent")
        mine = [event for event in events if event["professional_id"] == created.professional_id]
        return {event["change_type"] for event in mine} == {"CHANGE_TYPE_CREATED", "CHANGE_TYPE_UPDATED"}

    await wait_until(announced)


async def test_the_rpps_of_a_professional_cannot_be_changed(identity, operator, rpc_error) -> None:
    created = await identity.stub.CreateProfessional(
        svc.CreateProfessionalRequest(professional=professional_message()), metadata=operator
    )
    error = await rpc_error(
        identity.stub.UpdateProfessional(
            svc.UpdateProfessionalRequest(
                professional=resources_pb2.Professional(professional_id=created.professional_id, rpps=new_rpps()),
                update_mask=field_mask_pb2.FieldMask(paths=["rpps"]),
            ),
            metadata=operator,
        )
    )
    assert (error.code, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "update_mask")


async def test_a_professional_registered_with_a_password_logs_in_by_rpps(identity, operator, do_login) -> None:
    given = professional_message()
    await identity.stub.CreateProfessional(
        svc.CreateProfessionalRequest(professional=given, initial_password="Girouette-Océane-73"), metadata=operator
    )
    tokens = await do_login(identity, given.rpps, "Girouette-Océane-73")
    assert (tokens.actor.rpps, tokens.actor.profession_code) == (given.rpps, "10")


# ---- organisations


async def test_an_operator_registers_an_organisation_found_by_finess(identity, operator, issue_token) -> None:
    created = await create_organisation(identity, operator, name="Clinique des Essais")
    holder = bearer(await issue_token(Principal(subject=str(uuid.uuid4()), role="holder")))
    fetched = await identity.stub.GetOrganisation(
        svc.GetOrganisationRequest(organisation_id=created.organisation_id), metadata=holder
    )
    assert fetched.name == "Clinique des Essais"
    listed = await identity.stub.ListOrganisations(svc.ListOrganisationsRequest(finess=created.finess), metadata=holder)
    assert [item.organisation_id for item in listed.organisations] == [created.organisation_id]


async def test_an_organisation_with_a_wrong_finess_check_digit_is_refused(identity, operator, rpc_error) -> None:
    finess = new_finess()
    wrong = finess[:-1] + str((int(finess[-1]) + 1) % 10)
    error = await rpc_error(create_organisation(identity, operator, finess=wrong))
    assert (error.code, error.reason, error.metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "FINESS_MALFORMED",
        "finess",
    )


async def test_an_organisation_is_renamed_by_an_operator_only(identity, operator, issue_token, rpc_error) -> None:
    created = await create_organisation(identity, operator)
    request = svc.UpdateOrganisationRequest(
        organisation=resources_pb2.Organisation(organisation_id=created.organisation_id, name="Nouveau nom"),
        update_mask=field_mask_pb2.FieldMask(paths=["name"]),
    )
    holder = bearer(await issue_token(Principal(subject=str(uuid.uuid4()), role="holder")))
    assert (await rpc_error(identity.stub.UpdateOrganisation(request, metadata=holder))).reason == "CALLER_NOT_ALLOWED"
    updated = await identity.stub.UpdateOrganisation(request, metadata=operator)
    assert (updated.name, updated.finess) == ("Nouveau nom", created.finess)


# ---- software clients


def client_message(organisation_id: str, **overrides: object) -> resources_pb2.SoftwareClient:
    values: dict[str, object] = {
        "display_name": "PACS d'essai",
        "kind": resources_pb2.CLIENT_KIND_PACS,
        "organisation_id": organisation_id,
        "scopes": ["imaging.push", "documents.deposit"],
        "ae_titles": [f"AE{uuid.uuid4().hex[:8].upper()}"],
    }
    values.update(overrides)
    return resources_pb2.SoftwareClient(**values)  # type: ignore[arg-type]


async def test_a_client_secret_is_shown_once_and_works_for_client_credentials(identity, operator, issue_token) -> None:
    organisation = await create_organisation(identity, operator, kind=resources_pb2.ORGANISATION_KIND_IMAGING_CENTRE)
    created = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id)), metadata=operator
    )
    assert created.client_id.startswith("pacs-") and len(created.client_secret) >= 32
    service = bearer(await issue_token(SERVICE))
    fetched = await identity.stub.GetSoftwareClient(
        svc.GetSoftwareClientRequest(client_id=created.client_id), metadata=service
    )
    assert fetched.client_secret == ""
    assert list(fetched.ae_titles) == list(created.ae_titles)
    tokens = await identity.stub.ExchangeClientCredentials(
        svc.ExchangeClientCredentialsRequest(client_id=created.client_id, client_secret=created.client_secret)
    )
    principal = await identity.verifier().verify(tokens.access_token)
    assert (principal.role, principal.organisation_id) == ("client", organisation.organisation_id)
    assert set(principal.scopes) == {"imaging.push", "documents.deposit"}
    stored = await identity.store.client_by_id(created.client_id)
    assert stored is not None and stored.secret_hash.startswith("$argon2id$")


async def test_rotating_a_secret_invalidates_the_old_one_and_its_tokens(identity, operator, rpc_error) -> None:
    organisation = await create_organisation(identity, operator)
    created = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id)), metadata=operator
    )
    old = await identity.stub.ExchangeClientCredentials(
        svc.ExchangeClientCredentialsRequest(client_id=created.client_id, client_secret=created.client_secret)
    )
    rotated = await identity.stub.RotateSoftwareClientSecret(
        svc.RotateSoftwareClientSecretRequest(client_id=created.client_id), metadata=operator
    )
    assert rotated.client_secret and rotated.client_secret != created.client_secret
    error = await rpc_error(
        identity.stub.ExchangeClientCredentials(
            svc.ExchangeClientCredentialsRequest(client_id=created.client_id, client_secret=created.client_secret)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CLIENT_CREDENTIALS_INVALID")
    await identity.stub.ExchangeClientCredentials(
        svc.ExchangeClientCredentialsRequest(client_id=created.client_id, client_secret=rotated.client_secret)
    )
    # The token obtained with the old secret is revoked too.
    error = await rpc_error(
        identity.stub.GetSoftwareClient(
            svc.GetSoftwareClientRequest(client_id=created.client_id), metadata=bearer(old.access_token)
        )
    )
    assert error.reason == "TOKEN_REVOKED"


async def test_an_ae_title_belongs_to_one_client_only(identity, operator, rpc_error) -> None:
    organisation = await create_organisation(identity, operator)
    first = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id)), metadata=operator
    )
    taken = first.ae_titles[0]
    error = await rpc_error(
        identity.stub.CreateSoftwareClient(
            svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id, ae_titles=[taken])),
            metadata=operator,
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "AE_TITLE_ALREADY_REGISTERED")
    second = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id)), metadata=operator
    )
    error = await rpc_error(
        identity.stub.UpdateSoftwareClient(
            svc.UpdateSoftwareClientRequest(
                client=resources_pb2.SoftwareClient(client_id=second.client_id, ae_titles=[*second.ae_titles, taken]),
                update_mask=field_mask_pb2.FieldMask(paths=["ae_titles"]),
            ),
            metadata=operator,
        )
    )
    assert error.reason == "AE_TITLE_ALREADY_REGISTERED"
    unchanged = await identity.stub.GetSoftwareClient(
        svc.GetSoftwareClientRequest(client_id=second.client_id), metadata=operator
    )
    assert list(unchanged.ae_titles) == list(second.ae_titles)


async def test_imaging_finds_the_client_of_an_ae_title(identity, operator, issue_token) -> None:
    organisation = await create_organisation(identity, operator)
    created = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id)), metadata=operator
    )
    service = bearer(await issue_token(Principal(subject="imaging", role="service")))
    found = await identity.stub.ListSoftwareClients(
        svc.ListSoftwareClientsRequest(ae_title=created.ae_titles[0]), metadata=service
    )
    assert [client.client_id for client in found.clients] == [created.client_id]
    by_scope = await identity.stub.ListSoftwareClients(
        svc.ListSoftwareClientsRequest(organisation_id=organisation.organisation_id, scope="imaging.push"),
        metadata=service,
    )
    assert [client.client_id for client in by_scope.clients] == [created.client_id]


async def test_invalid_ae_titles_and_unknown_scopes_are_refused(identity, operator, rpc_error) -> None:
    organisation = await create_organisation(identity, operator)
    for bad in (
        client_message(organisation.organisation_id, ae_titles=["THIS-TITLE-IS-TOO-LONG"]),
        client_message(organisation.organisation_id, scopes=["documents.delete"]),
    ):
        error = await rpc_error(
            identity.stub.CreateSoftwareClient(svc.CreateSoftwareClientRequest(client=bad), metadata=operator)
        )
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_client_without_an_organisation_is_refused(identity, operator, rpc_error) -> None:
    error = await rpc_error(
        identity.stub.CreateSoftwareClient(
            svc.CreateSoftwareClientRequest(client=client_message("")), metadata=operator
        )
    )
    assert (error.code, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "organisation_id")


async def test_deleting_a_client_stops_its_tokens_frees_its_ae_titles_and_is_announced(
    identity, operator, rpc_error, redis_url
) -> None:
    organisation = await create_organisation(identity, operator)
    created = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id)), metadata=operator
    )
    tokens = await identity.stub.ExchangeClientCredentials(
        svc.ExchangeClientCredentialsRequest(client_id=created.client_id, client_secret=created.client_secret)
    )
    await identity.stub.DeleteSoftwareClient(
        svc.DeleteSoftwareClientRequest(client_id=created.client_id), metadata=operator
    )
    error = await rpc_error(
        identity.stub.GetSoftwareClient(
            svc.GetSoftwareClientRequest(client_id=created.client_id), metadata=bearer(tokens.access_token)
        )
    )
    assert error.reason == "TOKEN_REVOKED"
    error = await rpc_error(
        identity.stub.GetSoftwareClient(svc.GetSoftwareClientRequest(client_id=created.client_id), metadata=operator)
    )
    assert error.reason == "CLIENT_NOT_FOUND"
    reuse = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(
            client=client_message(organisation.organisation_id, ae_titles=list(created.ae_titles))
        ),
        metadata=operator,
    )
    assert list(reuse.ae_titles) == list(created.ae_titles)

    async def announced() -> bool:
        events = await stream_events(redis_url, "carnet.identity.v1.SoftwareClientChangedEvent")
        changes = {event["change_type"] for event in events if event["client_id"] == created.client_id}
        return changes == {"CHANGE_TYPE_CREATED", "CHANGE_TYPE_DELETED"}

    await wait_until(announced)


async def test_disabling_a_client_revokes_its_tokens(identity, operator, rpc_error) -> None:
    organisation = await create_organisation(identity, operator)
    created = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id)), metadata=operator
    )
    tokens = await identity.stub.ExchangeClientCredentials(
        svc.ExchangeClientCredentialsRequest(client_id=created.client_id, client_secret=created.client_secret)
    )
    updated = await identity.stub.UpdateSoftwareClient(
        svc.UpdateSoftwareClientRequest(
            client=resources_pb2.SoftwareClient(client_id=created.client_id, disabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["disabled"]),
        ),
        metadata=operator,
    )
    assert updated.disabled
    error = await rpc_error(
        identity.stub.GetSoftwareClient(
            svc.GetSoftwareClientRequest(client_id=created.client_id), metadata=bearer(tokens.access_token)
        )
    )
    assert error.reason == "TOKEN_REVOKED"


async def test_a_client_reads_itself_but_not_other_clients(identity, operator, rpc_error) -> None:
    organisation = await create_organisation(identity, operator)
    mine = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id)), metadata=operator
    )
    other = await identity.stub.CreateSoftwareClient(
        svc.CreateSoftwareClientRequest(client=client_message(organisation.organisation_id)), metadata=operator
    )
    tokens = await identity.stub.ExchangeClientCredentials(
        svc.ExchangeClientCredentialsRequest(client_id=mine.client_id, client_secret=mine.client_secret)
    )
    me = bearer(tokens.access_token)
    assert (
        await identity.stub.GetSoftwareClient(svc.GetSoftwareClientRequest(client_id=mine.client_id), metadata=me)
    ).client_id == mine.client_id
    error = await rpc_error(
        identity.stub.GetSoftwareClient(svc.GetSoftwareClientRequest(client_id=other.client_id), metadata=me)
    )
    assert error.reason == "CALLER_NOT_ALLOWED"


async def test_disabling_a_professional_ends_their_sessions_at_once(
    identity, accounts, operator, do_login, password, rpc_error
) -> None:
    professional = await accounts.professional()
    tokens = await do_login(identity, professional.rpps, password)
    me = bearer(tokens.access_token)
    await identity.stub.GetProfessional(svc.GetProfessionalRequest(professional_id=str(professional.id)), metadata=me)
    await identity.stub.UpdateProfessional(
        svc.UpdateProfessionalRequest(
            professional=resources_pb2.Professional(professional_id=str(professional.id), disabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["disabled"]),
        ),
        metadata=operator,
    )
    error = await rpc_error(
        identity.stub.GetProfessional(svc.GetProfessionalRequest(professional_id=str(professional.id)), metadata=me)
    )
    assert error.reason == "TOKEN_REVOKED"
    error = await rpc_error(identity.stub.RefreshTokens(svc.RefreshTokensRequest(refresh_token=tokens.refresh_token)))
    assert error.reason == "REFRESH_TOKEN_INVALID"
