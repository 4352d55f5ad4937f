"""Imaging configuration, read from ``CARNET_*`` variables."""

from __future__ import annotations

import dataclasses

from carnet_kit.config import ConfigError, HostPort, env_name
from carnet_kit.settings import BlobStoreSettings, ServiceSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImagingSettings(ServiceSettings, BlobStoreSettings):
    """Everything the imaging service needs to start."""

    dicom_listen: HostPort = HostPort("127.0.0.1", 11112)
    dicom_ae_title: str = "CARNET"

    def validate(self) -> None:
        """Cross-field checks (an AE title is 1–16 characters of the DICOM default repertoire)."""
        super().validate()
        self.validate_blob_store()
        title = self.dicom_ae_title
        if not 1 <= len(title) <= 16 or not title.isascii() or "\\" in title or not title.strip():
            raise ConfigError(env_name("dicom_ae_title"), "must be 1 to 16 ASCII characters without backslash")
