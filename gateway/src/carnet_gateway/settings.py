"""Gateway configuration, read from ``CARNET_*`` variables."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from carnet_kit.config import HostPort


@dataclasses.dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """Everything the gateway needs to start (it keeps no state of its own)."""

    http_listen: HostPort = HostPort("127.0.0.1", 8080)
    profile: Literal["embedded", "production", "test"] = "production"
    redis_url: str = ""
    identity_addr: HostPort = HostPort("127.0.0.1", 50051)
    consent_addr: HostPort = HostPort("127.0.0.1", 50052)
    dossier_addr: HostPort = HostPort("127.0.0.1", 50053)
    imaging_addr: HostPort = HostPort("127.0.0.1", 50054)
    notify_addr: HostPort = HostPort("127.0.0.1", 50055)
    call_timeout_seconds: float = 10.0
    upload_timeout_seconds: float = 120.0
    max_document_bytes: int = 20 * 1024 * 1024
    """Largest document a deposit may carry: larger ones get 413 before anything reaches dossier (same
    variable, ``CARNET_MAX_DOCUMENT_BYTES``, and default as dossier's own limit, which dossier also enforces)."""
    dev_mailbox_dir: Path | None = None
    dev_traces_url: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def mailbox_enabled(self) -> bool:
        """The development mailbox exists only in the embedded profile."""
        return self.profile == "embedded" and self.dev_mailbox_dir is not None
