"""Configuration shared by every service; each service extends :class:`ServiceSettings`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from carnet_kit.config import ConfigError, HostPort, env_name

Profile = Literal["embedded", "production", "test"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """What every Carnet gRPC service needs to start."""

    grpc_listen: HostPort
    database_url: str
    redis_url: str
    profile: Profile = "production"
    identity_addr: HostPort = HostPort("127.0.0.1", 50051)
    consent_addr: HostPort = HostPort("127.0.0.1", 50052)
    dossier_addr: HostPort = HostPort("127.0.0.1", 50053)
    imaging_addr: HostPort = HostPort("127.0.0.1", 50054)
    notify_addr: HostPort = HostPort("127.0.0.1", 50055)
    grace_seconds: float = 10.0
    call_timeout_seconds: float = 5.0
    db_pool_min: int = 1
    db_pool_max: int = 10
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def validate(self) -> None:
        """Cross-field checks that a type alone cannot express."""
        if not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(env_name("database_url"), "must be a postgresql:// URL")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(env_name("redis_url"), "must be a redis:// URL")
        if self.grace_seconds < 0:
            raise ConfigError(env_name("grace_seconds"), "must not be negative")
        if self.db_pool_min < 1 or self.db_pool_max < self.db_pool_min:
            raise ConfigError(env_name("db_pool_max"), "must be at least CARNET_DB_POOL_MIN (>= 1)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlobStoreSettings:
    """Where a service keeps blobs: a filesystem directory or an S3 bucket."""

    blob_store: Literal["fs", "s3"] = "fs"
    blob_dir: Path | None = None
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    s3_secure: bool = True

    def validate_blob_store(self) -> None:
        """Check that the chosen store has what it needs."""
        if self.blob_store == "fs" and self.blob_dir is None:
            raise ConfigError(env_name("blob_dir"), "is required when CARNET_BLOB_STORE=fs")
        if self.blob_store == "s3":
            for name in ("s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret_key"):
                if not getattr(self, name):
                    raise ConfigError(env_name(name), "is required when CARNET_BLOB_STORE=s3")
