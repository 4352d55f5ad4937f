"""gRPC server bootstrap shared by every service.

Each server carries the standard health service, reflection, and one interceptor for
tracing (OpenTelemetry server spans), authentication and error mapping. On SIGTERM (or
SIGINT) it reports NOT_SERVING, stops accepting calls, lets in-flight calls finish within
the grace period, then stops its background tasks and closes its resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from carnet_kit.auth import TokenVerifier
from carnet_kit.config import ConfigError, fail, load_or_exit
from carnet_kit.interceptors import CallInterceptor
from carnet_kit.settings import ServiceSettings
from carnet_kit.telemetry import setup_telemetry

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class _ReflectionPool:
    """The default descriptor pool, also answering for method names.

    The upb-backed pool does not resolve ``package.Service.Method`` to its file, which
    grpcurl asks for on ``describe``; the method's file is its service's file.
    """

    def __init__(self) -> None:
        self._pool = descriptor_pool.Default()

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            parent, _, _ = symbol.rpartition(".")
            if not parent:
                raise
            return self._pool.FindFileContainingSymbol(parent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


@dataclass(frozen=True)
class GrpcService:
    """One gRPC service to mount: its full name, how to add it, and its public methods."""

    full_name: str
    add_to_server: Callable[[grpc.aio.Server], None]
    public_methods: frozenset[str] = frozenset()


@dataclass
class ServiceApp:
    """Everything a service process runs: gRPC services, background tasks, resources."""

    name: str
    settings: ServiceSettings
    services: Sequence[GrpcService]
    verifier: TokenVerifier
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    server: grpc.aio.Server | None = None
    health: HealthServicer | None = None
    port: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def domain(self) -> str:
        """The ErrorInfo domain of this service."""
        return f"{self.name}.carnet"

    async def start(self) -> int:
        """Bind, start serving and report SERVING; return the bound port."""
        public = frozenset(m for service in self.services for m in service.public_methods)
        server = grpc.aio.server(
            interceptors=[CallInterceptor(self.verifier, public, self.domain)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        for service in self.services:
            service.add_to_server(server)
        reflection.enable_server_reflection(
            [service.full_name for service in self.services] + [reflection.SERVICE_NAME, "grpc.health.v1.Health"],
            server,
            pool=_ReflectionPool(),
        )
        address = str(self.settings.grpc_listen)
        self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        self.server, self.health = server, health
        for make in self.background:
            self._tasks.append(asyncio.create_task(make(), name=f"{self.name}-background"))
        for service in self.services:
            await health.set(service.full_name, health_pb2.HealthCheckResponse.SERVING)
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("%s serving gRPC on %s (port %d)", self.name, address, self.port)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, then a graceful stop letting in-flight calls finish."""
        grace = self.settings.grace_seconds if grace is None else grace
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(grace)
        for task in self._tasks:
            await cancel_firmly(task)
        self._tasks.clear()
        await self.resources.aclose()
        log.info("%s stopped", self.name)

    async def run_until_signal(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop gracefully."""
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await self.start()
        try:
            waiter = asyncio.create_task(stopping.wait())
            watched = [waiter, *self._tasks]
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and task.exception() is not None:
                    log.error("background task of %s died: %r", self.name, task.exception())
                    raise SystemExit(1)
            if not done:
                return
            if waiter not in done:
                await waiter
            log.info("%s received a stop signal; draining", self.name)
        finally:
            await self.stop()


async def cancel_firmly(task: asyncio.Task[Any], *, patience: float = 0.5) -> None:
    """Cancel ``task`` and wait for it to end.

    On Python 3.11 ``asyncio.wait_for`` (used inside redis-py) can swallow a
    cancellation, leaving a loop running after one ``cancel()``: cancel again until
    the task is really done.
    """
    while not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(task), patience)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


def configure_logging(level: str) -> None:
    """One line per record on stderr, with the service in the logger name."""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_service(
    program: str,
    settings_cls: type[S],
    build: Callable[[S], Awaitable[ServiceApp]],
) -> None:
    """Entry point of a service process: config (or a clear exit), telemetry, serve."""
    settings = load_or_exit(settings_cls, program)
    configure_logging(settings.log_level)
    setup_telemetry(os.environ.get("OTEL_SERVICE_NAME") or program)

    async def main() -> None:
        try:
            app = await build(settings)
        except ConfigError as error:
            # What only building can check (a key file that does not read, say) stops the
            # process like a bad variable does: its name, exit status 78.
            fail(program, error)
        await app.run_until_signal()

    asyncio.run(main())
