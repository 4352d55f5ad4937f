"""``python -m carnet_launcher`` end to end, with stand-in service modules on PYTHONPATH.

The real services are not needed: small fake ``carnet_<svc>`` packages serve the standard
gRPC health check (the gateway answers ``/readyz``), record their environment and what
happens to them, and implement ``seed-demo``. PostgreSQL, Redis and the SMTP sink are real.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from carnet_launcher.config import SERVICES
from carnet_launcher.layout import DataDir
from carnet_launcher.ports import PortBook
from carnet_launcher.postgres import EmbeddedPostgres
from carnet_launcher.redis_server import EmbeddedRedis
from carnet_launcher.traces import CAPACITY, QUERY_METHOD

SRC = Path(__file__).resolve().parents[1] / "src"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0

FAKE_MAIN = textwrap.dedent("""
    import json, os, signal, sys, threading
    from pathlib import Path

    name = __package__.removeprefix("carnet_")
    out = Path(os.environ["FAKE_OUT"])

    def record(event):
        with (out / "events.log").open("a") as log:
            log.write(f"{name} {event}\\n")

    if sys.argv[1:] == ["seed-demo"]:
        record("seed")
        if name == "identity":
            codes = Path(os.environ["CARNET_SECRETS_DIR"]) / "demo-activation-codes.json"
            codes.write_text(json.dumps({"156081305504244": "ACT-JD-2026"}))
        sys.exit(0)

    (out / f"{name}.env.json").write_text(json.dumps(dict(os.environ)))
    if os.environ.get("FAKE_FAIL") == name:
        print(f"{name}: CARNET_SOMETHING is malformed", file=sys.stderr)
        sys.exit(2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    if name == "gateway":
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Ready(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path == "/readyz" else 404)
                self.end_headers()

        host, port = os.environ["CARNET_HTTP_LISTEN"].rsplit(":", 1)
        http = ThreadingHTTPServer((host, int(port)), Ready)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        shutdown = http.shutdown
    else:
        from concurrent import futures
        import grpc
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        server.add_insecure_port(os.environ["CARNET_GRPC_LISTEN"])
        server.start()
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        shutdown = lambda: server.stop(grace=1).wait()

    record("up")
    stop.wait()
    record("sigterm")
    shutdown()
    record("stopped")
""")


@dataclass
class Platform:
    data: DataDir
    out: Path
    env: dict[str, str]

    tag: str = "launcher"

    def launch(
        self, *args: str, tag: str = "launcher", **extra_env: str
    ) -> subprocess.Popen[bytes]:
        self.tag = tag
        stdout = (self.out / f"{tag}.stdout").open("wb")
        stderr = (self.out / f"{tag}.stderr").open("wb")
        with stdout, stderr:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "carnet_launcher",
                    *args,
                    "--data-dir",
                    os.fspath(self.data.root),
                ],
                stdout=stdout,
                stderr=stderr,
                env={**self.env, **extra_env},
            )

    def stdout(self) -> str:
        return (self.out / f"{self.tag}.stdout").read_text()

    def stderr(self) -> str:
        return (self.out / f"{self.tag}.stderr").read_text()

    def wait_for_output(self, process: subprocess.Popen[bytes], text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while text not in self.stdout():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(
                    f"no {text!r} in the output.\nstdout:\n{self.stdout()}\n"
                    f"stderr:\n{self.stderr()}"
                )
            time.sleep(0.1)

    def events(self) -> list[str]:
        path = self.out / "events.log"
        return path.read_text().splitlines() if path.exists() else []

    def child_env(self, name: str) -> dict[str, str]:
        env: dict[str, str] = json.loads((self.out / f"{name}.env.json").read_text())
        return env

    def assert_infra_stopped(self) -> None:
        ports = PortBook(self.data.ports_file)
        assert EmbeddedPostgres(self.data, ports).running_port() is None
        assert EmbeddedRedis(self.data, ports).running_pid() is None


def distinct_free_ports(count: int) -> list[int]:
    # Held open together: a port released by one bind(0) can come back from the next.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def platform(tmp_path: Path, data_parent: Path) -> Iterator[Platform]:
    fakes = tmp_path / "fakes"
    for module in [*(s.module for s in SERVICES), "carnet_gateway"]:
        (fakes / module).mkdir(parents=True)
        (fakes / module / "__init__.py").write_text("")
        (fakes / module / "__main__.py").write_text(FAKE_MAIN)
    out = tmp_path / "out"
    out.mkdir()
    # No OTEL_* either: without a collector of the user's, the launcher runs its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARNET_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join([os.fspath(fakes), os.fspath(SRC)])
    env["FAKE_OUT"] = os.fspath(out)
    # Free ports instead of the defaults, so the test runs beside a real platform.
    variables = [s.addr_variable for s in SERVICES] + ["CARNET_HTTP_LISTEN", "CARNET_DICOM_LISTEN"]
    for variable, port in zip(variables, distinct_free_ports(len(variables)), strict=True):
        env[variable] = f"127.0.0.1:{port}"
    data = DataDir.at(data_parent / "carnet-data")
    yield Platform(data, out, env)
    subprocess.run(
        [sys.executable, "-m", "carnet_launcher", "stop", "--data-dir", os.fspath(data.root)],
        env=env,
        capture_output=True,
        timeout=STOP_TIMEOUT,
        check=False,
    )


SEEDS = ["identity seed", "dossier seed", "imaging seed"]


def test_run_starts_everything_seeds_once_prints_the_banner_and_stops_in_order(
    platform: Platform,
) -> None:
    launcher = platform.launch("run")
    platform.wait_for_output(launcher, "Ctrl-C stops everything")
    banner = platform.stdout()
    gateway = platform.env["CARNET_HTTP_LISTEN"]
    assert f"http://{gateway}/api/v1/openapi.json" in banner
    assert f"http://{gateway}/dev/mailbox" in banner
    assert "AE title CARNET" in banner
    assert "ACT-JD-2026" in banner, "activation code read from the seed's file"
    assert "camille.martin@demo.carnet.test" in banner
    assert platform.data.seeded_marker.exists()
    assert [e for e in platform.events() if e.endswith("seed")] == SEEDS

    ports = json.loads(platform.data.ports_file.read_text())
    identity = platform.child_env("identity")
    assert identity["CARNET_PROFILE"] == "embedded"
    assert identity["CARNET_DATABASE_URL"] == (
        f"postgresql://postgres@127.0.0.1:{ports['postgres']}/carnet"
    )
    assert identity["CARNET_REDIS_URL"] == f"redis://127.0.0.1:{ports['redis']}/0"
    assert identity["CARNET_SMTP_PORT"] == str(ports["smtp"])
    assert identity["CARNET_GRPC_LISTEN"] == platform.env["CARNET_IDENTITY_ADDR"]
    assert identity["CARNET_BLOB_STORE"] == "fs"
    assert identity["CARNET_BLOB_DIR"] == os.fspath(platform.data.objects)
    assert identity["TCP_NODELAY"] == "1"
    assert "CARNET_DICOM_LISTEN" not in identity
    assert platform.child_env("imaging")["CARNET_DICOM_AE_TITLE"] == "CARNET"
    assert platform.child_env("gateway")["CARNET_DEV_MAILBOX_DIR"] == os.fspath(
        platform.data.mailbox
    )
    assert (platform.data.secrets.stat().st_mode & 0o777) == 0o700
    endpoint = f"http://127.0.0.1:{ports['traces']}"
    assert identity["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == endpoint
    assert platform.child_env("gateway")["CARNET_DEV_TRACES_URL"] == endpoint
    assert "CARNET_DEV_TRACES_URL" not in identity
    with grpc.insecure_channel(endpoint.removeprefix("http://")) as channel:
        reply = json.loads(channel.unary_unary(QUERY_METHOD)(b"{}", timeout=5))
    assert reply["capacity"] == CAPACITY, "the collector answers while the platform runs"

    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(STOP_TIMEOUT) == 0, platform.stderr()
    stops = [e for e in platform.events() if e.endswith("sigterm")]
    assert stops[0] == "gateway sigterm", "the gateway stops before the services"
    assert sorted(e for e in platform.events() if e.endswith("stopped")) == sorted(
        f"{name} stopped" for name in [*(s.name for s in SERVICES), "gateway"]
    ), "every child stopped gracefully on SIGTERM"
    platform.assert_infra_stopped()

    # Second start on the same data directory: same ports, no second seed; Ctrl-C stops it.
    launcher = platform.launch("run")
    platform.wait_for_output(launcher, "Ctrl-C stops everything")
    assert json.loads(platform.data.ports_file.read_text()) == ports
    assert [e for e in platform.events() if e.endswith("seed")] == SEEDS
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(STOP_TIMEOUT) == 0, platform.stderr()
    platform.assert_infra_stopped()


def test_run_stops_everything_and_shows_the_log_of_a_service_failing_at_start(
    platform: Platform,
) -> None:
    launcher = platform.launch("run", "--no-seed", FAKE_FAIL="consent")
    assert launcher.wait(START_TIMEOUT) == 1
    stderr = platform.stderr()
    assert "consent exited with status 2" in stderr
    assert "consent: CARNET_SOMETHING is malformed" in stderr
    assert "Ctrl-C stops everything" not in platform.stdout()
    assert not platform.data.seeded_marker.exists()
    platform.assert_infra_stopped()


def test_run_refuses_an_address_already_in_use(platform: Platform) -> None:
    host, port = platform.env["CARNET_HTTP_LISTEN"].rsplit(":", 1)
    with socket.socket() as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        launcher = platform.launch("run")
        assert launcher.wait(START_TIMEOUT) == 1
    assert f"CARNET_HTTP_LISTEN={host}:{port}" in platform.stderr()
    platform.assert_infra_stopped()


def test_infra_prints_exports_and_stop_ends_it_from_another_terminal(platform: Platform) -> None:
    launcher = platform.launch("infra")
    platform.wait_for_output(launcher, "export CARNET_SMTP_PORT=")
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in platform.stdout().splitlines()
    )
    assert exports["CARNET_DATABASE_URL"].startswith("postgresql://postgres@127.0.0.1:")
    assert exports["CARNET_REDIS_URL"].startswith("redis://127.0.0.1:")
    assert exports["CARNET_PROFILE"] == "embedded"

    busy = platform.launch("run", tag="second")
    assert busy.wait(START_TIMEOUT) == 1, "one launcher per data directory"
    assert "another launcher" in platform.stderr()
    platform.tag = "launcher"

    stop = subprocess.run(
        [
            sys.executable,
            "-m",
            "carnet_launcher",
            "stop",
            "--data-dir",
            os.fspath(platform.data.root),
        ],
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
        check=False,
    )
    assert stop.returncode == 0, stop.stderr
    assert launcher.wait(STOP_TIMEOUT) == 0
    platform.assert_infra_stopped()
