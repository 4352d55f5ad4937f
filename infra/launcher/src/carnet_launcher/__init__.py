"""Carnet's local launcher: the whole platform on one machine, with embedded infrastructure."""

from .config import Backends, Settings
from .errors import (
    ChildExited,
    DataDirBusy,
    InfraError,
    Interrupted,
    LauncherError,
    NotReady,
    PortInUse,
    StepFailed,
)
from .layout import DataDir
from .postgres import EmbeddedPostgres
from .redis_server import EmbeddedRedis
from .smtp_sink import SmtpSink
from .supervisor import ChildSpec, StopFlag, Supervisor

__all__ = [
    "Backends",
    "ChildExited",
    "ChildSpec",
    "DataDir",
    "DataDirBusy",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "InfraError",
    "Interrupted",
    "LauncherError",
    "NotReady",
    "PortInUse",
    "Settings",
    "SmtpSink",
    "StepFailed",
    "StopFlag",
    "Supervisor",
]
