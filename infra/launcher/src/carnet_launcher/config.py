"""What the launcher starts and with which environment, resolved once from ``os.environ``."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import LauncherError
from .layout import DataDir
from .ports import dial_address, split_host_port

PROFILE = "embedded"
MAIL_FROM = "ne-pas-repondre@carnet.test"
HTTP_LISTEN = "127.0.0.1:8080"
DICOM_LISTEN = "127.0.0.1:11112"
DICOM_AE_TITLE = "CARNET"
TRACE_BATCH_DELAY_MS = "200"
"""``OTEL_BSP_SCHEDULE_DELAY`` given to the children: spans show up at once, not after 5 s."""


@dataclass(frozen=True)
class ServiceDef:
    """One gRPC service: its module and where it listens by default."""

    name: str
    module: str
    addr_variable: str
    default_addr: str


SERVICES: tuple[ServiceDef, ...] = (
    ServiceDef("identity", "carnet_identity", "CARNET_IDENTITY_ADDR", "127.0.0.1:50051"),
    ServiceDef("consent", "carnet_consent", "CARNET_CONSENT_ADDR", "127.0.0.1:50052"),
    ServiceDef("dossier", "carnet_dossier", "CARNET_DOSSIER_ADDR", "127.0.0.1:50053"),
    ServiceDef("imaging", "carnet_imaging", "CARNET_IMAGING_ADDR", "127.0.0.1:50054"),
    ServiceDef("notify", "carnet_notify", "CARNET_NOTIFY_ADDR", "127.0.0.1:50055"),
)
GATEWAY_NAME = "gateway"
GATEWAY_MODULE = "carnet_gateway"
SEED_MODULES: tuple[str, ...] = ("carnet_identity", "carnet_dossier", "carnet_imaging")
"""Run in this order with ``seed-demo``: dossier's documents and imaging's demo PACS need
identity's persons and clients."""

_PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "grpc_proxy",
)
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Settings:
    """Addresses and choices of one launch; a variable the user set always wins."""

    data: DataDir
    environ: Mapping[str, str]
    service_addrs: Mapping[str, str]
    http_listen: str
    dicom_listen: str
    dicom_ae_title: str
    mail_from: str
    user_database_url: str | None
    user_redis_url: str | None
    user_smtp_host: str | None
    user_smtp_port: int | None
    user_traces_endpoint: str | None
    blob_store: str
    blob_dir: Path
    mailbox_dir: Path
    secrets_dir: Path
    master_key_file: Path
    """The master keys sealing dossier's documents and notify's attachments (one ring, given
    to every service); the launcher makes one on first start unless the user names a file."""

    @classmethod
    def resolve(cls, data: DataDir, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check the ``CARNET_*`` variables; raise LauncherError naming a bad one."""
        env = dict(os.environ if environ is None else environ)

        def address(variable: str, default: str) -> str:
            value = env.get(variable) or default
            try:
                split_host_port(value)
            except ValueError:
                raise LauncherError(f"{variable}={value!r} is not a host:port address") from None
            return value

        smtp_port: int | None = None
        if env.get("CARNET_SMTP_PORT"):
            try:
                smtp_port = int(env["CARNET_SMTP_PORT"])
            except ValueError:
                raise LauncherError(
                    f"CARNET_SMTP_PORT={env['CARNET_SMTP_PORT']!r} is not a port number"
                ) from None
            if not 0 < smtp_port < 65536:
                raise LauncherError(f"CARNET_SMTP_PORT={smtp_port} is out of range")
        ae_title = env.get("CARNET_DICOM_AE_TITLE") or DICOM_AE_TITLE
        if not 0 < len(ae_title) <= 16 or "\\" in ae_title or not ae_title.isascii():
            raise LauncherError(
                f"CARNET_DICOM_AE_TITLE={ae_title!r}: an AE title is 1 to 16 ASCII characters"
            )
        return cls(
            data=data,
            environ=env,
            service_addrs={s.name: address(s.addr_variable, s.default_addr) for s in SERVICES},
            http_listen=address("CARNET_HTTP_LISTEN", HTTP_LISTEN),
            dicom_listen=address("CARNET_DICOM_LISTEN", DICOM_LISTEN),
            dicom_ae_title=ae_title,
            mail_from=env.get("CARNET_MAIL_FROM") or MAIL_FROM,
            user_database_url=env.get("CARNET_DATABASE_URL") or None,
            user_redis_url=env.get("CARNET_REDIS_URL") or None,
            user_smtp_host=env.get("CARNET_SMTP_HOST") or None,
            user_smtp_port=smtp_port,
            user_traces_endpoint=(
                env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or None
            ),
            blob_store=env.get("CARNET_BLOB_STORE") or "fs",
            blob_dir=Path(env.get("CARNET_BLOB_DIR") or data.objects).resolve(),
            mailbox_dir=Path(env.get("CARNET_DEV_MAILBOX_DIR") or data.mailbox).resolve(),
            secrets_dir=Path(env.get("CARNET_SECRETS_DIR") or data.secrets).resolve(),
            master_key_file=Path(
                env.get("CARNET_MASTER_KEY_FILE")
                or Path(env.get("CARNET_SECRETS_DIR") or data.secrets) / "master-keys"
            ).resolve(),
        )

    @property
    def service_secrets_dir(self) -> Path:
        """The platform services' own secrets, a file per service.

        Identity reads them all, each service its own.
        """
        return self.secrets_dir / "services"

    @property
    def runs_smtp_sink(self) -> bool:
        """False when the user points the platform at their own SMTP server."""
        return self.user_smtp_host is None

    @property
    def runs_trace_collector(self) -> bool:
        """False when the user sends the platform's spans to their own OTLP collector."""
        return self.user_traces_endpoint is None

    @property
    def activation_codes_file(self) -> Path:
        """Demo activation codes written by the identity seed (NIR → code)."""
        return self.secrets_dir / "demo-activation-codes.json"

    @property
    def gateway_url(self) -> str:
        """Base URL of the gateway, as a browser on this machine reaches it."""
        return f"http://{dial_address(self.http_listen)}"

    def listen_addresses(self) -> dict[str, str]:
        """Every address a platform process will listen on, by the variable that sets it."""
        addresses = {s.addr_variable: self.service_addrs[s.name] for s in SERVICES}
        addresses["CARNET_HTTP_LISTEN"] = self.http_listen
        addresses["CARNET_DICOM_LISTEN"] = self.dicom_listen
        return addresses


@dataclass(frozen=True)
class Backends:
    """Where the running infrastructure is: the URLs and SMTP endpoint handed to services."""

    database_url: str
    redis_url: str
    smtp_host: str
    smtp_port: int
    traces_endpoint: str | None = None
    """The launcher's own OTLP trace collector, when it runs one."""


def platform_environment(settings: Settings, backends: Backends) -> dict[str, str]:
    """The ``CARNET_*`` (and ``OTEL_*``) variables common to every process of the platform."""
    env = {
        "CARNET_PROFILE": PROFILE,
        "CARNET_DATABASE_URL": backends.database_url,
        "CARNET_REDIS_URL": backends.redis_url,
        "CARNET_SMTP_HOST": backends.smtp_host,
        "CARNET_SMTP_PORT": str(backends.smtp_port),
        "CARNET_MAIL_FROM": settings.mail_from,
        "CARNET_SECRETS_DIR": os.fspath(settings.secrets_dir),
        "CARNET_MASTER_KEY_FILE": os.fspath(settings.master_key_file),
        "CARNET_BLOB_STORE": settings.blob_store,
        "CARNET_HTTP_LISTEN": settings.http_listen,
        "CARNET_DEV_MAILBOX_DIR": os.fspath(settings.mailbox_dir),
        "CARNET_DICOM_LISTEN": settings.dicom_listen,
        "CARNET_DICOM_AE_TITLE": settings.dicom_ae_title,
    }
    if settings.blob_store == "fs":
        env["CARNET_BLOB_DIR"] = os.fspath(settings.blob_dir)
    if backends.traces_endpoint:
        # Traces only: metrics and logs stay as each process configures them without OTLP.
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = backends.traces_endpoint
        env["OTEL_EXPORTER_OTLP_TRACES_INSECURE"] = "true"
        env["CARNET_DEV_TRACES_URL"] = backends.traces_endpoint
        if not settings.environ.get("OTEL_BSP_SCHEDULE_DELAY"):
            env["OTEL_BSP_SCHEDULE_DELAY"] = TRACE_BATCH_DELAY_MS
    for service in SERVICES:
        env[service.addr_variable] = settings.service_addrs[service.name]
    return env


_GATEWAY_ONLY = ("CARNET_HTTP_LISTEN", "CARNET_DEV_MAILBOX_DIR", "CARNET_DEV_TRACES_URL")
SERVICES_WITH_SECRET = ("imaging", "notify")
"""Services that get a token of their own from identity (for work no caller's token covers)."""
_IMAGING_ONLY = ("CARNET_DICOM_LISTEN", "CARNET_DICOM_AE_TITLE")


def child_environment(settings: Settings, platform: Mapping[str, str], name: str) -> dict[str, str]:
    """The full environment of process ``name`` (a service name, or ``gateway``)."""
    env = dict(settings.environ)
    # The same variable names are reused by every service; a value the user exported for
    # one must not leak into the others.
    for variable in (
        *_GATEWAY_ONLY,
        *_IMAGING_ONLY,
        "CARNET_GRPC_LISTEN",
        "CARNET_SERVICE_SECRETS_DIR",
        "CARNET_SERVICE_SECRET_FILE",
    ):
        env.pop(variable, None)
    selected = {
        key: value
        for key, value in platform.items()
        if (key not in _GATEWAY_ONLY or name == GATEWAY_NAME)
        and (key not in _IMAGING_ONLY or name == "imaging")
    }
    env.update(selected)
    if name in settings.service_addrs:
        env["CARNET_GRPC_LISTEN"] = settings.service_addrs[name]
    if name == "identity":
        env["CARNET_SERVICE_SECRETS_DIR"] = os.fspath(settings.service_secrets_dir)
    if name in SERVICES_WITH_SECRET:
        env["CARNET_SERVICE_SECRET_FILE"] = os.fspath(settings.service_secrets_dir / name)
    env["TCP_NODELAY"] = "1"
    # Logs go to files; unbuffered output keeps the tail shown after a crash complete.
    env.setdefault("PYTHONUNBUFFERED", "1")
    if any(env.get(variable) for variable in _PROXY_VARIABLES):
        present = [n for n in (env.get("no_proxy") or env.get("NO_PROXY") or "").split(",") if n]
        merged = ",".join([*present, *(n for n in _LOOPBACK_NAMES if n not in present)])
        env["no_proxy"] = env["NO_PROXY"] = merged
    return env


def module_argv(module: str, *args: str) -> list[str]:
    """``python -m module args…`` with the launcher's own interpreter."""
    return [sys.executable, "-m", module, *args]
