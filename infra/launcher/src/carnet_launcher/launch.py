"""The three commands: ``run`` the platform, start only its ``infra``, ``stop`` leftovers."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import demo
from .banner import banner
from .config import (
    GATEWAY_MODULE,
    GATEWAY_NAME,
    SEED_MODULES,
    SERVICES,
    SERVICES_WITH_SECRET,
    Backends,
    Settings,
    child_environment,
    module_argv,
    platform_environment,
)
from .errors import (
    ChildExited,
    InfraError,
    Interrupted,
    LauncherError,
    NotReady,
    PortInUse,
    StepFailed,
)
from .health import grpc_probe, http_probe
from .layout import DataDir
from .lock import DataDirLock
from .ports import LOOPBACK, PortBook, address_is_free, dial_address, split_host_port
from .postgres import EmbeddedPostgres
from .redis_server import EmbeddedRedis
from .smtp_sink import SmtpSink
from .supervisor import ChildSpec, StopFlag, Supervisor, stop_leftovers
from .traces import TraceCollector

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
STOP_LAUNCHER_TIMEOUT = 120.0


def say(message: str) -> None:
    """Progress for the person at the terminal (stderr, so stdout stays for results)."""
    print(f"carnet: {message}", file=sys.stderr, flush=True)


def _signal_notice(stop: StopFlag) -> Callable[[int], None]:
    def notice(_signum: int) -> None:
        # A raw write: print() from a signal handler can collide with a print in progress.
        text = "stopping now, without grace period" if stop.hurry else "stopping…"
        os.write(sys.stderr.fileno(), f"carnet: {text}\n".encode())

    return notice


def _show_log(path: str, text: str) -> None:
    print(f"--- last lines of {path} ---", file=sys.stderr)
    print(text.rstrip() or "(empty)", file=sys.stderr)
    print("---", file=sys.stderr, flush=True)


class Infrastructure:
    """PostgreSQL, Redis, the SMTP sink and the trace collector, minus what the user supplies."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ports = PortBook(settings.data.ports_file)
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.sink: SmtpSink | None = None
        self.traces: TraceCollector | None = None

    def start(self, stop: StopFlag) -> Backends:
        """Start what is needed; return the URLs the services get."""
        settings = self.settings
        # Ports promised to the services must not be handed to PostgreSQL, Redis or the sink.
        promised = [split_host_port(a)[1] for a in settings.listen_addresses().values()]

        def checkpoint() -> None:
            if stop.requested:
                raise Interrupted

        traces_endpoint = None
        if settings.runs_trace_collector:
            # First up and last down: it must hear every process, including its final spans.
            self.traces = self._start_trace_collector(promised)
            traces_endpoint = self.traces.endpoint
        else:
            say(f"traces: exported to {settings.user_traces_endpoint} (OTEL_EXPORTER_OTLP_*)")
        checkpoint()
        if settings.user_database_url:
            database_url = settings.user_database_url
            say("PostgreSQL: using CARNET_DATABASE_URL")
        else:
            self.postgres = EmbeddedPostgres(settings.data, self.ports, avoid_ports=promised)
            say("starting PostgreSQL…")
            database_url = self.postgres.start()
        checkpoint()
        if settings.user_redis_url:
            redis_url = settings.user_redis_url
            say("Redis: using CARNET_REDIS_URL")
        else:
            self.redis = EmbeddedRedis(settings.data, self.ports, avoid_ports=promised)
            say("starting Redis…")
            redis_url = self.redis.start()
        checkpoint()
        if settings.runs_smtp_sink:
            port = settings.user_smtp_port or self.ports.choose("smtp", avoid=promised)
            self.sink = SmtpSink(settings.mailbox_dir, port)
            self.sink.start()
            smtp_host, smtp_port = LOOPBACK, port
        else:
            smtp_host = settings.user_smtp_host or LOOPBACK
            smtp_port = settings.user_smtp_port or 25
            say(f"SMTP: using CARNET_SMTP_HOST ({smtp_host}:{smtp_port})")
        return Backends(database_url, redis_url, smtp_host, smtp_port, traces_endpoint)

    def _start_trace_collector(self, promised: list[int]) -> TraceCollector:
        collector = TraceCollector()
        attempts = 3
        for attempt in range(1, attempts + 1):
            # The remembered port when still free, else a new one: the next try moves on
            # when something took the port between the check and the bind.
            port = self.ports.choose("traces", avoid=promised)
            try:
                collector.start(port)
            except InfraError:
                if attempt == attempts:
                    raise
            else:
                say(f"trace collector listening on {collector.endpoint} (OTLP/gRPC)")
                return collector
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the SMTP sink, Redis, PostgreSQL, then the trace collector; survive failures."""
        steps: list[tuple[str, Callable[[], None]]] = []
        if self.sink is not None:
            steps.append(("SMTP sink", self.sink.stop))
        if self.redis is not None:
            steps.append(("Redis", self.redis.stop))
        if self.postgres is not None:
            steps.append(("PostgreSQL", self.postgres.stop))
        if self.traces is not None:
            steps.append(("the trace collector", self.traces.stop))
        for name, stop in steps:
            say(f"stopping {name}")
            try:
                stop()
            except LauncherError as exc:
                say(f"could not stop {name}: {exc}")
        self.sink = self.redis = self.postgres = None
        self.traces = None


def _prepare(settings: Settings) -> None:
    settings.data.prepare()
    for directory in (settings.mailbox_dir, settings.secrets_dir):
        directory.mkdir(parents=True, exist_ok=True)
    settings.secrets_dir.chmod(0o700)
    _ensure_master_key(settings.master_key_file)
    _ensure_service_secrets(settings.service_secrets_dir)
    if settings.blob_store == "fs":
        settings.blob_dir.mkdir(parents=True, exist_ok=True)


def _ensure_master_key(path: Path) -> None:
    """The master key ring, made once and kept with the data.

    It seals dossier's documents and notify's attachments. One line
    ``<id>:<base64 of 32 random bytes>``, readable by its owner only.
    """
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"local-1:{base64.b64encode(os.urandom(32)).decode()}\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(line)


def _ensure_service_secrets(directory: Path) -> None:
    """Each platform service's own secret (for its token from identity).

    Made once and kept with the data.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in SERVICES_WITH_SECRET:
        path = directory / name
        if path.exists():
            continue
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")


def _check_addresses_free(settings: Settings) -> None:
    taken = [
        f"{variable}={address}"
        for variable, address in settings.listen_addresses().items()
        if not address_is_free(address)
    ]
    if taken:
        raise PortInUse(
            "already in use: " + ", ".join(taken) + ". Another Carnet may be running "
            "(python -m carnet_launcher stop --data-dir …), or set these variables to free "
            "addresses."
        )


def _service_specs(settings: Settings, platform: dict[str, str]) -> list[ChildSpec]:
    data = settings.data
    return [
        ChildSpec(
            name=service.name,
            argv=module_argv(service.module),
            env=child_environment(settings, platform, service.name),
            log_path=data.log(service.name),
            probe=grpc_probe(dial_address(settings.service_addrs[service.name])),
            marker=service.module,
        )
        for service in SERVICES
    ]


def _gateway_spec(settings: Settings, platform: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name=GATEWAY_NAME,
        argv=module_argv(GATEWAY_MODULE),
        env=child_environment(settings, platform, GATEWAY_NAME),
        log_path=settings.data.log(GATEWAY_NAME),
        probe=http_probe(f"{settings.gateway_url}/readyz"),
        marker=GATEWAY_MODULE,
    )


def _seed(settings: Settings, platform: dict[str, str], supervisor: Supervisor) -> None:
    for module in SEED_MODULES:
        name = module.removeprefix("carnet_")
        say(f"seeding the demo population: {module} seed-demo")
        supervisor.run_step(
            f"{module} seed-demo",
            module_argv(module, "seed-demo"),
            child_environment(settings, platform, name),
        )
        supervisor.check_alive()
    settings.data.seeded_marker.write_text(
        time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n", encoding="utf-8"
    )


def _on_ready(child_name: str, started: float) -> None:
    say(f"{child_name} ready ({time.monotonic() - started:.1f} s)")


def _report(error: LauncherError) -> int:
    """Tell the user what went wrong, with the evidence; return the exit status."""
    if isinstance(error, Interrupted):
        return EXIT_INTERRUPTED
    if isinstance(error, ChildExited | NotReady):
        say(f"{error}; stopping everything")
        _show_log(error.log_path, error.log_tail)
    elif isinstance(error, StepFailed):
        say(f"{error}; stopping everything. Its output:")
        print(error.output.rstrip() or "(no output)", file=sys.stderr, flush=True)
    else:
        say(str(error))
    return EXIT_FAILURE


def run_platform(settings: Settings, *, seed: bool = True) -> int:
    """Start everything, print the banner, run until Ctrl-C/SIGTERM or a crash; stop cleanly."""
    stop = StopFlag()
    stop.install_signal_handlers(_signal_notice(stop))
    data = settings.data
    with DataDirLock(data.lock_file):
        _prepare(settings)
        leftovers = stop_leftovers(data.run / "children.json")
        if leftovers:
            say(f"stopped processes left by a previous launcher: {', '.join(leftovers)}")
        infra = Infrastructure(settings)
        supervisor = Supervisor(stop, registry=data.run / "children.json")
        try:
            _check_addresses_free(settings)
            backends = infra.start(stop)
            platform = platform_environment(settings, backends)
            started = time.monotonic()
            say("starting " + ", ".join(s.name for s in SERVICES))
            services = supervisor.start(_service_specs(settings, platform))
            supervisor.wait_ready(services, on_ready=lambda c: _on_ready(c.name, started))
            say("starting the gateway")
            gateway = supervisor.start([_gateway_spec(settings, platform)])
            supervisor.wait_ready(gateway, on_ready=lambda c: _on_ready(c.name, started))
            if seed and not data.seeded_marker.exists():
                _seed(settings, platform, supervisor)
            codes = demo.read_activation_codes(settings.activation_codes_file)
            print(banner(settings, backends, codes, seeded=data.seeded_marker.exists()), flush=True)
            crashed = supervisor.watch()
            if crashed is not None:
                raise crashed.exit_error()
            return 0
        except LauncherError as exc:
            return _report(exc)
        finally:
            supervisor.stop_all(on_stop=lambda child: say(f"stopping {child.name}"))
            infra.stop()
            say("stopped")


def run_infra(settings: Settings) -> int:
    """Start PostgreSQL, Redis and the SMTP sink; print their variables; wait for Ctrl-C."""
    stop = StopFlag()
    stop.install_signal_handlers(_signal_notice(stop))
    with DataDirLock(settings.data.lock_file):
        _prepare(settings)
        infra = Infrastructure(settings)
        try:
            backends = infra.start(stop)
            platform = platform_environment(settings, backends)
            for name, value in platform.items():
                print(f"export {name}={shlex.quote(value)}")
            sys.stdout.flush()
            say("infrastructure ready; run one service with the variables above. Ctrl-C stops.")
            while not stop.wait(3600):
                pass
            return 0
        except LauncherError as exc:
            return _report(exc)
        finally:
            infra.stop()
            say("stopped")


def stop_data_dir(data: DataDir) -> int:
    """Stop a launcher still holding ``data``, then any PostgreSQL/Redis/service it left."""
    lock = DataDirLock(data.lock_file)
    if not data.root.is_dir():
        say(f"nothing to stop: {data.root} does not exist")
        return 0
    if not lock.try_acquire():
        holder = lock.holder_pid()
        if holder:
            say(f"asking the launcher (pid {holder}) to stop")
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGTERM)
        deadline = time.monotonic() + STOP_LAUNCHER_TIMEOUT
        while not lock.try_acquire():
            if time.monotonic() > deadline:
                say(f"the launcher holding {data.root} did not stop")
                return EXIT_FAILURE
            time.sleep(0.2)
    try:
        leftovers = stop_leftovers(data.run / "children.json")
        if leftovers:
            say(f"stopped {', '.join(leftovers)}")
        ports = PortBook(data.ports_file)
        status = 0
        for name, server in (
            ("Redis", EmbeddedRedis(data, ports)),
            ("PostgreSQL", EmbeddedPostgres(data, ports)),
        ):
            try:
                running = (
                    server.running_pid() is not None
                    if isinstance(server, EmbeddedRedis)
                    else server.running_port() is not None
                )
                if running:
                    say(f"stopping {name}")
                    server.stop()
            except InfraError as exc:
                say(f"could not stop {name}: {exc}")
                status = EXIT_FAILURE
        return status
    finally:
        lock.release()
