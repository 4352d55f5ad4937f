"""Services as processes: a bad variable stops them clearly; SIGTERM lets in-flight calls finish."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.identity.v1 import identity_service_pb2_grpc as identity_grpc
from carnet_dossier.seed import make_pdf
from carnet_kit.crypto import new_master_key_line
from carnet_kit.testing import free_port
from tests.conftest import Platform

GOOD = {
    "CARNET_GRPC_LISTEN": "127.0.0.1:1",
    "CARNET_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
    "CARNET_REDIS_URL": "redis://127.0.0.1:1/0",
    "CARNET_BLOB_DIR": "/nonexistent",
    "CARNET_SMTP_HOST": "127.0.0.1",
    "CARNET_SMTP_PORT": "1",
    "CARNET_MAIL_FROM": "ne-pas-repondre@carnet.test",
    "CARNET_MASTER_KEY_FILE": "/nonexistent/master-keys",
    "CARNET_SERVICE_SECRET_FILE": "/nonexistent/service-secret",
}


def _run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    return subprocess.run(
        [sys.executable, "-m", module], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("service", ["identity", "consent", "dossier", "imaging", "notify"])
def test_a_malformed_variable_stops_the_service_naming_it(service: str) -> None:
    result = _run(f"carnet_{service}", {**GOOD, "CARNET_GRPC_LISTEN": "no-port-here"})
    assert result.returncode == 78, result.stderr
    assert f"carnet-{service}: configuration error: CARNET_GRPC_LISTEN" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("service", ["identity", "dossier"])
def test_a_missing_variable_stops_the_service_naming_it(service: str) -> None:
    env = dict(GOOD)
    del env["CARNET_DATABASE_URL"]
    result = _run(f"carnet_{service}", env)
    assert result.returncode == 78
    assert "CARNET_DATABASE_URL: is required but not set" in result.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        ("k1:too-short\n", "line 1: the key of 'k1' is not base64"),
        ("# no key yet\n", "holds no master key"),
    ],
)
def test_dossier_stops_naming_an_unusable_master_key_file(tmp_path, content: str | None, problem: str) -> None:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "master-keys"
    if content is not None:
        key_file.write_text(content)
    result = _run("carnet_dossier", {**GOOD, "CARNET_MASTER_KEY_FILE": str(key_file)})
    assert result.returncode == 78, result.stderr
    assert "carnet-dossier: configuration error: CARNET_MASTER_KEY_FILE" in result.stderr
    assert problem in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), ("short\n", "at least 32 characters")],
)
def test_notify_stops_on_an_unusable_service_secret(tmp_path: Path, content: str | None, problem: str) -> None:
    key_file = tmp_path / "master-keys"
    key_file.write_text(new_master_key_line("k1") + "\n")
    secret_file = tmp_path / "service-secret"
    if content is not None:
        secret_file.write_text(content)
    result = _run(
        "carnet_notify",
        {
            **GOOD,
            "CARNET_MASTER_KEY_FILE": str(key_file),
            "CARNET_SERVICE_SECRET_FILE": str(secret_file),
            "CARNET_BLOB_DIR": str(tmp_path / "blobs"),
        },
    )
    assert result.returncode == 78, result.stderr
    assert "carnet-notify: configuration error: CARNET_SERVICE_SECRET_FILE" in result.stderr
    assert problem in result.stderr
    assert "Traceback" not in result.stderr


def test_the_gateway_refuses_a_bad_listen_address() -> None:
    result = _run("carnet_gateway", {"CARNET_HTTP_LISTEN": "127.0.0.1:http"})
    assert result.returncode == 78
    assert "CARNET_HTTP_LISTEN" in result.stderr


async def test_sigterm_during_a_deposit_lets_it_finish(platform: Platform) -> None:
    port = free_port()
    env = {**platform.env, "CARNET_GRPC_LISTEN": f"127.0.0.1:{port}", "CARNET_GRACE_SECONDS": "20"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env["CARNET_PROFILE"] = "embedded"
    env["CARNET_BLOB_STORE"] = "fs"
    env["CARNET_BLOB_DIR"] = str(platform.data_dir / "objects")
    process = subprocess.Popen(
        [sys.executable, "-m", "carnet_dossier"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel, grpc.aio.insecure_channel(
            platform.grpc["identity"]
        ) as identity_channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                if process.poll() is not None:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"dossier exited at start ({process.returncode}):\n{output}")
                try:
                    status = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.2)
            tokens = await identity_grpc.IdentityServiceStub(identity_channel).ExchangeClientCredentials(
                identity_pb.ExchangeClientCredentialsRequest(client_id="lab-demo", client_secret="lab-demo-secret")
            )
            content = make_pdf("Arrêt propre", ["envoyé en deux fois"])
            halfway = asyncio.Event()
            signalled = asyncio.Event()

            async def requests() -> AsyncIterator[pb.DepositDocumentRequest]:
                yield pb.DepositDocumentRequest(
                    metadata=res.DocumentMetadata(
                        unique_id=f"sigterm-{port}",
                        holder_ins="284057512000531",
                        type_code="11502-2",
                        format=res.DOCUMENT_FORMAT_PDF,
                        title="Arrêt propre",
                    )
                )
                yield pb.DepositDocumentRequest(chunk=content[:100])
                halfway.set()
                await asyncio.wait_for(signalled.wait(), 30)
                yield pb.DepositDocumentRequest(chunk=content[100:])

            call = pb_grpc.DossierServiceStub(channel).DepositDocument(
                requests(), metadata=(("authorization", f"Bearer {tokens.access_token}"),), timeout=30
            )
            waiting = asyncio.ensure_future(call)
            await asyncio.wait_for(asyncio.wait([waiting, asyncio.ensure_future(halfway.wait())], return_when=asyncio.FIRST_COMPLETED), 30)
            assert halfway.is_set(), f"the deposit ended before its second chunk: {waiting.exception()!r}"
            await asyncio.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert process.poll() is None, "the service quit with a call in flight"
            signalled.set()
            document = await asyncio.wait_for(waiting, 30)
            assert document.size_bytes == len(content)
        returncode = await asyncio.to_thread(process.wait, 30)
        output = process.stdout.read().decode() if process.stdout else ""
        assert returncode == 0, output
        assert "received a stop signal" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
