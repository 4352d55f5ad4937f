"""Imaging configuration, read from ``CARNET_*`` variables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from carnet_kit.config import ConfigError, HostPort, env_name
from carnet_kit.crypto import MasterKeyRing
from carnet_kit.service_tokens import read_service_secret
from carnet_kit.settings import BlobStoreSettings, ServiceSettings


def check_ae_title(title: str, variable: str) -> str:
    """An AE title: 1–16 characters of the DICOM default repertoire, no backslash, not only spaces."""
    if not 1 <= len(title) <= 16 or not title.isascii() or "\\" in title or not title.strip():
        raise ConfigError(variable, "must be 1 to 16 ASCII characters without backslash")
    if any(not ch.isprintable() for ch in title):
        raise ConfigError(variable, "must not hold control characters")
    return title


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImagingSettings(ServiceSettings, BlobStoreSettings):
    """Everything the imaging service needs to start."""

    master_key_file: Path
    """Master keys wrapping the data keys that seal DICOM objects (same format as dossier's)."""
    service_secret_file: Path
    """Imaging's own secret (the ``imaging`` file of identity's ``CARNET_SERVICE_SECRETS_DIR``): its service
    token matches patients and checks AE titles with identity when no caller's token does."""
    dicom_listen: HostPort = HostPort("127.0.0.1", 11112)
    dicom_ae_title: str = "CARNET"
    dicom_max_associations: int = 32
    """Associations served at once by one process; more are rejected (transient, local limit)."""
    dicom_acse_timeout_seconds: float = 30.0
    dicom_dimse_timeout_seconds: float = 60.0
    dicom_network_timeout_seconds: float = 120.0
    ae_refresh_seconds: float = 5.0
    """How often a process reloads the AE registry (a change made here applies at once)."""
    study_quiet_seconds: float = 120.0
    """A study that received nothing for this long is complete: its record entry and notice go out."""
    completion_check_seconds: float = 10.0
    """How often a replica looks for studies that have become complete."""
    key_cache_seconds: float = 60.0
    """How long an unwrapped data key stays in memory for the ingest (0: never)."""
    identity_cache_seconds: float = 300.0
    """How long a patient-matching answer of identity is reused for the next instances."""

    def validate(self) -> None:
        """Cross-field checks."""
        super().validate()
        self.validate_blob_store()
        check_ae_title(self.dicom_ae_title, env_name("dicom_ae_title"))
        for name in (
            "dicom_max_associations",
            "dicom_acse_timeout_seconds",
            "dicom_dimse_timeout_seconds",
            "dicom_network_timeout_seconds",
            "ae_refresh_seconds",
            "study_quiet_seconds",
            "completion_check_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(env_name(name), "must be positive")
        for name in ("key_cache_seconds", "identity_cache_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(env_name(name), "must not be negative")

    def master_keys(self) -> MasterKeyRing:
        """The master key ring read from ``CARNET_MASTER_KEY_FILE`` (read when the service is built)."""
        return MasterKeyRing.from_file(self.master_key_file, variable=env_name("master_key_file"))

    def service_secret(self) -> str:
        """Imaging's service secret read from ``CARNET_SERVICE_SECRET_FILE`` (read when the service is built)."""
        return read_service_secret(self.service_secret_file, env_name("service_secret_file"))
