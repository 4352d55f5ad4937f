"""Dossier configuration, read from ``CARNET_*`` variables."""

from __future__ import annotations

import dataclasses

from carnet_kit.config import ConfigError, env_name
from carnet_kit.settings import BlobStoreSettings, ServiceSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class DossierSettings(ServiceSettings, BlobStoreSettings):
    """Everything the dossier service needs to start."""

    max_document_bytes: int = 20 * 1024 * 1024
    professional_search_years: int = 2

    def validate(self) -> None:
        """Cross-field checks."""
        super().validate()
        self.validate_blob_store()
        if self.max_document_bytes < 1024:
            raise ConfigError(env_name("max_document_bytes"), "must be at least 1024")
