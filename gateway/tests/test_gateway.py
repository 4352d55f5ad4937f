"""The gateway's own behaviour: stable entry points, problem+json, the dev mailbox's profile gate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient

from carnet_gateway.app import create_app
from carnet_gateway.problems import from_rpc_error
from carnet_gateway.settings import GatewaySettings
from carnet_kit.config import HostPort, load
from carnet_kit.errors import NotFound
from carnet_kit.testing import free_port


def _dead_addresses() -> dict[str, str]:
    # Ports nobody listens on: the services are down for these tests.
    return {f"CARNET_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in ("identity", "consent", "dossier", "imaging", "notify")}


@pytest.fixture
def mailbox(tmp_path: Path) -> Path:
    folder = tmp_path / "mailbox"
    folder.mkdir()
    message = EmailMessage()
    message["From"] = "ne-pas-repondre@carnet.test"
    message["To"] = "camille.martin@demo.carnet.test"
    message["Subject"] = "Votre code de connexion"
    message.set_content("Votre code de connexion Carnet : 123456")
    (folder / "20260101T000000000000-a.eml").write_bytes(bytes(message))
    return folder


def _client(profile: str, mailbox: Path) -> Iterator[TestClient]:
    settings = load(
        GatewaySettings,
        {"CARNET_PROFILE": profile, "CARNET_DEV_MAILBOX_DIR": str(mailbox), "CARNET_CALL_TIMEOUT_SECONDS": "1", **_dead_addresses()},
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def embedded(mailbox: Path) -> Iterator[TestClient]:
    yield from _client("embedded", mailbox)


@pytest.fixture
def production(mailbox: Path) -> Iterator[TestClient]:
    yield from _client("production", mailbox)


def test_openapi_describes_the_api_with_snake_case_operation_ids(embedded: TestClient) -> None:
    document = embedded.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    for path in ("/oauth/token", "/.well-known/jwks.json", "/api/v1/auth/login", "/api/v1/auth/otp", "/api/v1/documents"):
        assert path in paths
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert operation_ids
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", op) for op in operation_ids), operation_ids
    assert "/dev/mailbox" not in paths
    assert embedded.get("/api/v1/docs").status_code == 200


def test_healthz_is_alive_and_readyz_reports_unreachable_services(embedded: TestClient) -> None:
    assert embedded.get("/healthz").json() == {"status": "ok"}
    ready = embedded.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["content-type"].startswith("application/problem+json")
    assert set(ready.json()["services"].values()) == {"UNREACHABLE"}


def test_mailbox_lists_mails_in_the_embedded_profile_only(embedded: TestClient, production: TestClient) -> None:
    messages = embedded.get("/dev/mailbox", headers={"accept": "application/json"}).json()["messages"]
    assert messages[0]["to"] == "camille.martin@demo.carnet.test"
    assert "123456" in messages[0]["text"]
    page = embedded.get("/dev/mailbox")
    assert page.headers["content-type"].startswith("text/html")
    assert "Votre code de connexion" in page.text
    assert production.get("/dev/mailbox").status_code == 404


def test_requests_without_token_get_a_401_problem(embedded: TestClient) -> None:
    response = embedded.get("/api/v1/documents")
    assert response.status_code == 401
    assert response.json()["reason"] == "TOKEN_MISSING"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_malformed_bodies_get_a_400_problem_naming_the_field(embedded: TestClient) -> None:
    response = embedded.post("/api/v1/auth/login", json={"login": "x"})
    assert response.status_code == 400
    assert response.json()["field"] == "body.password"


def test_unsupported_grant_is_an_oauth_error(embedded: TestClient) -> None:
    response = embedded.post("/oauth/token", data={"grant_type": "password"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_a_down_service_is_a_503_problem(embedded: TestClient) -> None:
    response = embedded.post("/api/v1/auth/login", json={"login": "x@y.z", "password": "p"})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")


def test_rpc_errors_keep_their_reason_and_field() -> None:
    from carnet_kit.status import trailing_metadata_for

    error = NotFound("no such document", reason="DOCUMENT_NOT_FOUND", domain="dossier.carnet", metadata={"field": "document_id"})
    rpc_error = grpc.aio.AioRpcError(
        grpc.StatusCode.NOT_FOUND,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*trailing_metadata_for(error)),
        details="no such document",
    )
    response = from_rpc_error(rpc_error)
    assert response.status_code == 404
    body = response.body.decode()
    assert '"reason":"DOCUMENT_NOT_FOUND"' in body
    assert '"field":"document_id"' in body
    assert HostPort.parse("127.0.0.1:1").port == 1
