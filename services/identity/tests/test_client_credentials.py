"""OAuth2 client-credentials grant over gRPC, against the real database."""

from __future__ import annotations

import grpc
import pytest

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2
from carnet_kit.status import parse_rpc_error

pytestmark = pytest.mark.asyncio


async def test_client_credentials_issue_a_client_token_with_its_scopes_and_organisation(identity, accounts) -> None:
    organisation = await accounts.organisation()
    client = await accounts.client(
        secret="s3cret-of-the-pacs", scopes=("imaging.push", "documents.deposit"), organisation_id=organisation.id
    )
    tokens = await identity.stub.ExchangeClientCredentials(
        identity_service_pb2.ExchangeClientCredentialsRequest(
            client_id=client.client_id, client_secret="s3cret-of-the-pacs"
        )
    )
    assert tokens.token_type == "Bearer"
    assert tokens.expires_in == 300
    assert tokens.refresh_token == ""  # RFC 6749 §4.4.3
    assert tokens.scope == "imaging.push documents.deposit"
    assert tokens.actor.role == common_pb2.ROLE_CLIENT
    principal = await identity.verifier().verify(tokens.access_token)
    assert principal.role == "client"
    assert principal.subject == client.client_id
    assert principal.client_id == client.client_id
    assert principal.organisation_id == str(organisation.id)
    assert principal.scopes == ("imaging.push", "documents.deposit")


async def test_client_credentials_narrow_to_the_requested_scopes(identity, accounts) -> None:
    client = await accounts.client(secret="another-secret", scopes=("imaging.push", "documents.deposit"))
    tokens = await identity.stub.ExchangeClientCredentials(
        identity_service_pb2.ExchangeClientCredentialsRequest(
            client_id=client.client_id, client_secret="another-secret", scopes=["documents.deposit"]
        )
    )
    assert (await identity.verifier().verify(tokens.access_token)).scopes == ("documents.deposit",)


async def test_wrong_secret_and_unknown_client_get_the_same_answer(identity, accounts) -> None:
    client = await accounts.client(secret="the-right-secret", scopes=("documents.deposit",))
    answers = []
    for client_id, secret in ((client.client_id, "a-wrong-secret"), ("no-such-client", "the-right-secret")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity.stub.ExchangeClientCredentials(
                identity_service_pb2.ExchangeClientCredentialsRequest(client_id=client_id, client_secret=secret)
            )
        remote = parse_rpc_error(caught.value)
        answers.append((remote.code, remote.reason, remote.message))
    assert answers[0] == answers[1]
    assert answers[0][:2] == (grpc.StatusCode.UNAUTHENTICATED, "CLIENT_CREDENTIALS_INVALID")


async def test_a_scope_not_granted_to_the_client_is_refused(identity, accounts) -> None:
    client = await accounts.client(secret="lab-secret-value", scopes=("documents.deposit",))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.stub.ExchangeClientCredentials(
            identity_service_pb2.ExchangeClientCredentialsRequest(
                client_id=client.client_id, client_secret="lab-secret-value", scopes=["imaging.push"]
            )
        )
    remote = parse_rpc_error(caught.value)
    assert remote.code == grpc.StatusCode.PERMISSION_DENIED
    assert remote.reason == "SCOPE_NOT_ALLOWED"
    assert remote.domain == "identity.carnet"
