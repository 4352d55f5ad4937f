"""Dossier configuration, read from ``CARNET_*`` variables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from carnet_kit.config import ConfigError, env_name
from carnet_kit.crypto import MasterKeyRing
from carnet_kit.outbox import stream_name
from carnet_kit.settings import BlobStoreSettings, ServiceSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class DossierSettings(ServiceSettings, BlobStoreSettings):
    """Everything the dossier service needs to start."""

    master_key_file: Path
    """Master keys wrapping the holders' data keys: ``<id>:<base64 32 bytes>`` per line, current first."""
    max_document_bytes: int = 20 * 1024 * 1024
    # Identity's events (closure, reopening, deletion of spaces).
    identity_events_stream: str = stream_name("identity")
    # How often the purge of deleted spaces runs.
    purge_interval_seconds: float = 60.0
    professional_search_years: int = 2

    def validate(self) -> None:
        """Cross-field checks."""
        super().validate()
        self.validate_blob_store()
        if self.purge_interval_seconds <= 0:
            raise ConfigError(env_name("purge_interval_seconds"), "must be positive")
        if self.max_document_bytes < 1024:
            raise ConfigError(env_name("max_document_bytes"), "must be at least 1024")

    def master_keys(self) -> MasterKeyRing:
        """The master key ring read from ``CARNET_MASTER_KEY_FILE`` (ConfigError naming it when unusable).

        Read when the service is built, not when the variables are: the file is a mounted secret.
        """
        return MasterKeyRing.from_file(self.master_key_file, variable=env_name("master_key_file"))
