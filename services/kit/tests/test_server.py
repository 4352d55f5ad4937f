"""The server furniture: health, reflection, auth and error mapping, graceful stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet_kit.auth import Principal, current_principal
from carnet_kit.config import load
from carnet_kit.errors import NotFound
from carnet_kit.server import GrpcService, ServiceApp
from carnet_kit.settings import ServiceSettings
from carnet_kit.status import parse_rpc_error
from carnet_kit.testing import TokenFactory, free_port

SERVICE = "carnet.dossier.v1.DossierService"


class ProbeServicer(pb_grpc.DossierServiceServicer):
    """A servicer whose methods exercise the interceptors (not dossier's real behaviour)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.flaky_calls = 0
        self.seen_timeouts: list[float | None] = []

    async def GetDocument(self, request: pb.GetDocumentRequest, context: Any) -> res.Document:
        if request.document_id == "missing":
            raise NotFound("no such document", reason="DOCUMENT_NOT_FOUND")
        if request.document_id == "crash":
            raise RuntimeError("secret internal detail")
        if request.document_id == "flaky":
            self.flaky_calls += 1
            self.seen_timeouts.append(context.time_remaining())
            if self.flaky_calls <= 2:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        if request.document_id == "slow":
            self.started.set()
            await asyncio.sleep(1.0)
        return res.Document(document_id=request.document_id, metadata=res.DocumentMetadata(title=current_principal().subject))

    async def DownloadDocument(self, request: pb.DownloadDocumentRequest, context: Any) -> AsyncIterator[pb.DownloadDocumentResponse]:
        yield pb.DownloadDocumentResponse(chunk=b"first")
        raise NotFound("vanished mid-stream", reason="OBJECT_NOT_FOUND")


@pytest.fixture
async def app(token_factory: TokenFactory) -> AsyncIterator[tuple[ServiceApp, ProbeServicer]]:
    settings = load(
        ServiceSettings,
        {
            "CARNET_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
            "CARNET_DATABASE_URL": "postgresql://unused/x",
            "CARNET_REDIS_URL": "redis://unused",
            "CARNET_GRACE_SECONDS": "5",
        },
    )
    servicer = ProbeServicer()
    service_app = ServiceApp(
        name="probe",
        settings=settings,
        services=[GrpcService(SERVICE, lambda s: pb_grpc.add_DossierServiceServicer_to_server(servicer, s))],
        verifier=token_factory.verifier(),
    )
    await service_app.start()
    yield service_app, servicer
    await service_app.stop(0)


def _auth(token_factory: TokenFactory, subject: str = "p-1") -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token_factory.mint(Principal(subject=subject, role='holder'))}"),)


async def test_health_reports_serving_for_the_service_and_overall(app: tuple[ServiceApp, ProbeServicer]) -> None:
    service_app, _ = app
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service_app.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            response = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_calls_without_a_token_are_unauthenticated(app: tuple[ServiceApp, ProbeServicer]) -> None:
    service_app, _ = app
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service_app.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.DossierServiceStub(channel).GetDocument(pb.GetDocumentRequest(document_id="x"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert parse_rpc_error(info.value).reason == "TOKEN_MISSING"


async def test_the_verified_caller_reaches_the_servicer(
    app: tuple[ServiceApp, ProbeServicer], token_factory: TokenFactory
) -> None:
    service_app, _ = app
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service_app.port}") as channel:
        document = await pb_grpc.DossierServiceStub(channel).GetDocument(
            pb.GetDocumentRequest(document_id="x"), metadata=_auth(token_factory, "holder-42")
        )
    assert document.metadata.title == "holder-42"


async def test_domain_errors_become_statuses_with_error_info(
    app: tuple[ServiceApp, ProbeServicer], token_factory: TokenFactory
) -> None:
    service_app, _ = app
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service_app.port}") as channel:
        stub = pb_grpc.DossierServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetDocument(pb.GetDocumentRequest(document_id="missing"), metadata=_auth(token_factory))
        remote = parse_rpc_error(info.value)
        assert (remote.code, remote.reason, remote.domain) == (grpc.StatusCode.NOT_FOUND, "DOCUMENT_NOT_FOUND", "probe.carnet")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetDocument(pb.GetDocumentRequest(document_id="crash"), metadata=_auth(token_factory))
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in (info.value.details() or "")
        call = stub.DownloadDocument(pb.DownloadDocumentRequest(document_id="x"), metadata=_auth(token_factory))
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for message in call:
                received.append(message.chunk)
        assert received == [b"first"]
        assert parse_rpc_error(info.value).reason == "OBJECT_NOT_FOUND"


async def test_stop_lets_an_in_flight_call_finish_and_reports_not_serving(
    app: tuple[ServiceApp, ProbeServicer], token_factory: TokenFactory
) -> None:
    service_app, servicer = app
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service_app.port}") as channel:
        stub = pb_grpc.DossierServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        call = asyncio.ensure_future(
            stub.GetDocument(pb.GetDocumentRequest(document_id="slow"), metadata=_auth(token_factory))
        )
        await servicer.started.wait()
        assert service_app.health is not None
        await service_app.health.enter_graceful_shutdown()
        status = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        stopping = asyncio.create_task(service_app.stop(5))
        document = await call
        assert document.document_id == "slow"
        await stopping


async def test_methods_not_served_yet_answer_unimplemented(
    app: tuple[ServiceApp, ProbeServicer], token_factory: TokenFactory
) -> None:
    service_app, _ = app
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service_app.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.DossierServiceStub(channel).ArchiveDocument(
                pb.ArchiveDocumentRequest(document_id="x"), metadata=_auth(token_factory)
            )
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert parse_rpc_error(info.value).reason == "NOT_IMPLEMENTED"


async def test_cancel_firmly_stops_a_task_that_swallows_one_cancellation() -> None:
    from carnet_kit.server import cancel_firmly

    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what asyncio.wait_for can do on Python 3.11

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_firmly(task, patience=0.05), 5)
    assert task.done() and swallowed == 1


@pytest.mark.parametrize(("idempotent", "expected_calls"), [(True, 3), (False, 1)])
async def test_channels_retry_unavailable_only_for_idempotent_methods(
    app: tuple[ServiceApp, ProbeServicer], token_factory: TokenFactory, idempotent: bool, expected_calls: int
) -> None:
    from carnet_kit.channels import create_channel

    service_app, servicer = app
    token = token_factory.mint(Principal(subject="p-1", role="holder"))
    channel = create_channel(
        f"127.0.0.1:{service_app.port}",
        idempotent={SERVICE: ("GetDocument",)} if idempotent else {},
        timeout=4.0,
        token=lambda: token,
    )
    try:
        stub = pb_grpc.DossierServiceStub(channel)
        if idempotent:
            document = await stub.GetDocument(pb.GetDocumentRequest(document_id="flaky"))
            assert document.metadata.title == "p-1"  # the forwarded token's subject
        else:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetDocument(pb.GetDocumentRequest(document_id="flaky"))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
    assert servicer.flaky_calls == expected_calls
    # Every call carried the channel's default deadline.
    assert all(t is not None and 0 < t < 4.5 for t in servicer.seen_timeouts), servicer.seen_timeouts
