"""carnet_kit: the runtime every Carnet service shares (never copied into a service)."""

from carnet_kit.auth import Principal, TokenVerifier, current_principal, current_token
from carnet_kit.config import ConfigError, HostPort, load, load_or_exit
from carnet_kit.errors import (
    CarnetError,
    Conflict,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from carnet_kit.settings import BlobStoreSettings, ServiceSettings

__all__ = [
    "BlobStoreSettings",
    "CarnetError",
    "ConfigError",
    "Conflict",
    "DataLoss",
    "FailedPrecondition",
    "HostPort",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Principal",
    "ResourceExhausted",
    "ServiceSettings",
    "TokenVerifier",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "current_principal",
    "current_token",
    "load",
    "load_or_exit",
]
