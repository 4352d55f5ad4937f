"""The REST routes translate faithfully: path, query, body and caller land in the right request fields.

The services behind are stand-ins of the consent and identity contracts (synchronous gRPC
servers recording what they receive), so these tests see exactly what the gateway sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from carnet.consent.v1 import consent_service_pb2 as consent_pb
from carnet.consent.v1 import consent_service_pb2_grpc as consent_grpc
from carnet.consent.v1 import resources_pb2 as consent_res
from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.identity.v1 import identity_service_pb2_grpc as identity_grpc
from carnet.identity.v1 import resources_pb2 as identity_res
from carnet_gateway.app import create_app
from carnet_gateway.settings import GatewaySettings
from carnet_kit.auth import Principal
from carnet_kit.config import load
from carnet_kit.testing import TokenFactory, free_port

HOLDER = Principal(subject="11111111-1111-1111-1111-111111111111", role="holder")


class RecordingConsent(consent_grpc.ConsentServiceServicer):
    """Records requests; answers with what it was given."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def CreateBlock(self, request: consent_pb.CreateBlockRequest, context: Any) -> consent_res.Block:
        self.requests.append(request)
        block = consent_res.Block()
        block.CopyFrom(request.block)
        block.block_id = "b-1"
        return block

    def ListOppositions(self, request: consent_pb.ListOppositionsRequest, context: Any) -> consent_pb.ListOppositionsResponse:
        self.requests.append(request)
        return consent_pb.ListOppositionsResponse()

    def Decide(self, request: consent_pb.DecideRequest, context: Any) -> consent_pb.DecideResponse:
        self.requests.append(request)
        if "refuse" in request.break_glass_reason:
            return consent_pb.DecideResponse(effect=consent_res.EFFECT_DENY, reason_code="ACCESS_DENIED_BREAK_GLASS_OPPOSED")
        return consent_pb.DecideResponse(
            effect=consent_res.EFFECT_ALLOW,
            reason_code="ALLOWED_BREAK_GLASS",
            obligations=[consent_res.OBLIGATION_LOG_ACCESS, consent_res.OBLIGATION_NOTIFY_HOLDER],
        )


class RecordingIdentity(identity_grpc.IdentityServiceServicer):
    """Records activation requests."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def StartOidcLogin(self, request: identity_pb.StartOidcLoginRequest, context: Any) -> identity_pb.StartOidcLoginResponse:
        return identity_pb.StartOidcLoginResponse(authorization_url="https://provider.test/authorize?state=s-1", state="s-1")

    def CompleteOidcLogin(self, request: identity_pb.CompleteOidcLoginRequest, context: Any) -> identity_pb.TokenSet:
        self.requests.append(request)
        return identity_pb.TokenSet(access_token=f"access-for-{request.code}", token_type="Bearer", expires_in=300)

    def StartLogin(self, request: identity_pb.StartLoginRequest, context: Any) -> identity_pb.StartLoginResponse:
        self.requests.append((request, dict(context.invocation_metadata())))
        return identity_pb.StartLoginResponse(challenge_id="c-1")

    def ActivateAccount(self, request: identity_pb.ActivateAccountRequest, context: Any) -> identity_pb.ActivateAccountResponse:
        self.requests.append(request)
        return identity_pb.ActivateAccountResponse(person=identity_res.Person(person_id="p-1"), password_setup_token="t")


@pytest.fixture
def peers() -> Iterator[tuple[RecordingConsent, RecordingIdentity, dict[str, str]]]:
    consent, identity = RecordingConsent(), RecordingIdentity()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    consent_grpc.add_ConsentServiceServicer_to_server(consent, server)
    identity_grpc.add_IdentityServiceServicer_to_server(identity, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    addresses = {f"CARNET_{name}_ADDR": f"127.0.0.1:{port}" for name in ("IDENTITY", "CONSENT")}
    addresses |= {f"CARNET_{name}_ADDR": f"127.0.0.1:{free_port()}" for name in ("DOSSIER", "IMAGING", "NOTIFY")}
    yield consent, identity, addresses
    server.stop(0)


@pytest.fixture
def client(peers: tuple[RecordingConsent, RecordingIdentity, dict[str, str]], token_factory: TokenFactory) -> Iterator[TestClient]:
    settings = load(GatewaySettings, {"CARNET_PROFILE": "test", **peers[2]})
    with TestClient(create_app(settings, verifier=token_factory.verifier())) as test_client:
        yield test_client


def _auth(token_factory: TokenFactory, principal: Principal = HOLDER) -> dict[str, str]:
    return {"authorization": f"Bearer {token_factory.mint(principal)}"}


def test_a_holder_blocking_defaults_the_holder_to_themself(client: TestClient, peers: Any, token_factory: TokenFactory) -> None:
    response = client.post("/api/v1/blocks", json={"rpps": "10000000025"}, headers=_auth(token_factory))
    assert response.status_code == 201, response.text
    assert response.json()["block_id"] == "b-1"
    sent = peers[0].requests[-1]
    assert (sent.block.holder_id, sent.block.rpps) == (HOLDER.subject, "10000000025")
    # The caller's token travels to consent, which decides.
    assert response.json()["holder_id"] == HOLDER.subject


def test_query_parameters_fill_typed_fields(client: TestClient, peers: Any, token_factory: TokenFactory) -> None:
    response = client.get(
        "/api/v1/oppositions", params={"kind": "OPPOSITION_KIND_BREAK_GLASS", "page_size": "5"}, headers=_auth(token_factory)
    )
    assert response.status_code == 200, response.text
    sent = peers[0].requests[-1]
    assert sent.kind == consent_res.OPPOSITION_KIND_BREAK_GLASS
    assert sent.page_size == 5
    assert sent.holder_id == HOLDER.subject


def test_bad_values_are_400_problems_naming_the_field(client: TestClient, token_factory: TokenFactory) -> None:
    bad_enum = client.get("/api/v1/oppositions", params={"kind": "SOMETIMES"}, headers=_auth(token_factory))
    assert bad_enum.status_code == 400
    assert bad_enum.json()["field"] == "kind"
    bad_json = client.post(
        "/api/v1/blocks", content=b"{not json", headers={**_auth(token_factory), "content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.headers["content-type"].startswith("application/problem+json")
    unknown_field = client.post("/api/v1/blocks", json={"colour": "red"}, headers=_auth(token_factory))
    assert unknown_field.status_code == 400
    assert unknown_field.json()["field"] == "block"


def test_activation_is_public_and_accepts_an_iso_birth_date(client: TestClient, peers: Any) -> None:
    response = client.post(
        "/api/v1/activation",
        json={"activation_code": "ABCD2345EF", "ins": "156081305504244", "birth_date": "1956-08-21"},
    )
    assert response.status_code == 200, response.text
    sent = peers[1].requests[-1]
    assert (sent.birth_date.year, sent.birth_date.month, sent.birth_date.day) == (1956, 8, 21)
    impossible = client.post("/api/v1/activation", json={"activation_code": "x", "ins": "1", "birth_date": "1956-02-30"})
    assert impossible.status_code == 400
    assert impossible.json()["field"] == "birth_date"


def test_break_glass_returns_the_obligations_or_a_403_with_consents_reason(
    client: TestClient, peers: Any, token_factory: TokenFactory
) -> None:
    doctor = Principal(subject="d-1", role="professional", profession_code="10", rpps="10000000017")
    allowed = client.post(
        "/api/v1/persons/p-9/break-glass", json={"reason": "patient inconscient aux urgences"}, headers=_auth(token_factory, doctor)
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["obligations"] == ["OBLIGATION_LOG_ACCESS", "OBLIGATION_NOTIFY_HOLDER"]
    sent = peers[0].requests[-1]
    assert (sent.holder_id, sent.action, sent.actor.rpps) == ("p-9", consent_res.ACTION_BREAK_GLASS_READ, "10000000017")
    refused = client.post(
        "/api/v1/persons/p-9/break-glass", json={"reason": "refuse this one please"}, headers=_auth(token_factory, doctor)
    )
    assert refused.status_code == 403
    assert refused.json()["reason"] == "ACCESS_DENIED_BREAK_GLASS_OPPOSED"
    too_short = client.post("/api/v1/persons/p-9/break-glass", json={"reason": "x"}, headers=_auth(token_factory, doctor))
    assert too_short.status_code == 400


def test_routes_need_a_token_unless_public(client: TestClient) -> None:
    assert client.post("/api/v1/blocks", json={}).status_code == 401
    assert client.get("/api/v1/me").status_code == 401


def test_the_oidc_start_redirects_the_browser_when_asked(client: TestClient, peers: Any) -> None:
    as_json = client.get("/api/v1/auth/oidc/start")
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["authorization_url"].startswith("https://provider.test/authorize?")
    redirected = client.get("/api/v1/auth/oidc/start", params={"redirect": "true"}, follow_redirects=False)
    assert redirected.status_code == 302
    assert redirected.headers["location"].startswith("https://provider.test/authorize?")
    tokens = client.get("/api/v1/auth/oidc/callback", params={"code": "c-1", "state": "s-1"})
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["access_token"] == "access-for-c-1"
    assert peers[1].requests[-1].state == "s-1"


def test_login_tells_identity_the_callers_address_for_throttling(client: TestClient, peers: Any) -> None:
    response = client.post("/api/v1/auth/login", json={"login": "camille@example.test", "password": "a long secret"})
    assert response.status_code == 200, response.text
    assert response.json()["challenge_id"] == "c-1"
    request, metadata = peers[1].requests[-1]
    assert (request.login, request.password) == ("camille@example.test", "a long secret")
    # Starlette's test client calls from the host "testclient".
    assert metadata["x-carnet-client-address"] == "testclient"
