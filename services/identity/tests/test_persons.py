"""LookupPerson: by INS (with or without key), e-mail or id; who may ask."""

from __future__ import annotations

import grpc

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2, resources_pb2
from carnet_identity.domain.identifiers import ins_key
from carnet_kit.auth import Principal


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def service_token(identity, accounts) -> str:
    client = await accounts.client(secret="lookup-client-secret", scopes=("documents.deposit",))
    tokens = await identity.stub.ExchangeClientCredentials(
        identity_service_pb2.ExchangeClientCredentialsRequest(
            client_id=client.client_id, client_secret="lookup-client-secret"
        )
    )
    return tokens.access_token


async def test_lookup_by_ins_with_or_without_key_email_and_id(identity, accounts) -> None:
    holder = await accounts.holder()
    token = await service_token(identity, accounts)
    for request in (
        identity_service_pb2.LookupPersonRequest(ins=holder.ins),
        identity_service_pb2.LookupPersonRequest(ins=holder.nir),
        identity_service_pb2.LookupPersonRequest(email=holder.email.upper()),
        identity_service_pb2.LookupPersonRequest(person_id=str(holder.id)),
    ):
        person = await identity.stub.LookupPerson(request, metadata=bearer(token))
        assert person.person_id == str(holder.id)
    assert person.ins == holder.nir + ins_key(holder.nir)
    assert person.ins_type == resources_pb2.INS_TYPE_NIR
    assert person.name.birth_name == "ESSAI"
    assert list(person.name.first_names) == ["Alix", "Marie"]
    assert person.sex == common_pb2.SEX_FEMALE
    assert (person.birth_date.year, person.birth_date.month, person.birth_date.day) == (1990, 6, 15)
    assert person.state == resources_pb2.ACCOUNT_STATE_ACTIVE
    assert person.password_set
    assert person.HasField("create_time")


async def test_lookup_with_a_wrong_ins_key_names_the_ins_field(identity, accounts, rpc_error) -> None:
    holder = await accounts.holder()
    token = await service_token(identity, accounts)
    wrong_key = f"{(int(holder.ins_key) % 97) + 1:02d}"
    error = await rpc_error(
        identity.stub.LookupPerson(
            identity_service_pb2.LookupPersonRequest(ins=holder.nir + wrong_key), metadata=bearer(token)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INS_KEY_MISMATCH")
    assert error.metadata["field"] == "ins"
    malformed = await rpc_error(
        identity.stub.LookupPerson(identity_service_pb2.LookupPersonRequest(ins="12345"), metadata=bearer(token))
    )
    assert (malformed.code, malformed.reason, malformed.metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INS_MALFORMED",
        "ins",
    )


async def test_lookup_of_an_unknown_ins_is_not_found(identity, accounts, rpc_error) -> None:
    token = await service_token(identity, accounts)
    nir = "1991299999999"
    error = await rpc_error(
        identity.stub.LookupPerson(
            identity_service_pb2.LookupPersonRequest(ins=nir + ins_key(nir)), metadata=bearer(token)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "PERSON_NOT_FOUND")


async def test_lookup_needs_a_token(identity, accounts, rpc_error) -> None:
    holder = await accounts.holder()
    error = await rpc_error(identity.stub.LookupPerson(identity_service_pb2.LookupPersonRequest(ins=holder.ins)))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


async def test_a_holder_sees_only_themself(identity, accounts, password, do_login, rpc_error) -> None:
    holder = await accounts.holder()
    other = await accounts.holder()
    tokens = await do_login(identity, holder.email, password)
    mine = await identity.stub.LookupPerson(
        identity_service_pb2.LookupPersonRequest(ins=holder.ins), metadata=bearer(tokens.access_token)
    )
    assert mine.person_id == str(holder.id)
    for request in (
        identity_service_pb2.LookupPersonRequest(ins=other.ins),
        identity_service_pb2.LookupPersonRequest(ins="1991299999999"),
    ):
        error = await rpc_error(identity.stub.LookupPerson(request, metadata=bearer(tokens.access_token)))
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")


async def test_tokens_not_signed_by_identity_are_refused(identity, accounts, token_factory, rpc_error) -> None:
    holder = await accounts.holder()
    forged = token_factory.mint(Principal(subject="svc", role="service"))
    error = await rpc_error(
        identity.stub.LookupPerson(identity_service_pb2.LookupPersonRequest(ins=holder.ins), metadata=bearer(forged))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_a_software_client_may_not_list_persons(identity, accounts, rpc_error) -> None:
    token = await service_token(identity, accounts)
    error = await rpc_error(
        identity.stub.ListPersons(identity_service_pb2.ListPersonsRequest(), metadata=bearer(token))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
