"""Configuration of the identity service (``CARNET_*`` environment variables)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from carnet_kit.config import ConfigError, env_name
from carnet_kit.settings import ServiceSettings

SCHEMA = "identity"


@dataclasses.dataclass(frozen=True, kw_only=True)
class IdentitySettings(ServiceSettings):
    """What identity needs beyond the common service settings."""

    access_token_ttl_seconds: int = 300
    refresh_token_ttl_seconds: int = 2_592_000
    service_token_ttl_seconds: int = 300
    otp_ttl_seconds: int = 600
    otp_max_attempts: int = 5
    login_max_failures: int = 5
    login_failure_window_seconds: int = 900
    # How long a replaced signing key stays published; must outlive the tokens it signed.
    signing_key_overlap_seconds: int = 3600
    # Where seed-demo writes the demo activation codes (and future local secrets).
    secrets_dir: Path | None = None

    def validate(self) -> None:
        """Common checks, then lifetimes that must be positive and consistent."""
        super().validate()
        for name in (
            "access_token_ttl_seconds",
            "refresh_token_ttl_seconds",
            "service_token_ttl_seconds",
            "otp_ttl_seconds",
            "otp_max_attempts",
            "login_max_failures",
            "login_failure_window_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(env_name(name), "must be positive")
        if self.signing_key_overlap_seconds < self.access_token_ttl_seconds:
            raise ConfigError(
                env_name("signing_key_overlap_seconds"),
                "must be at least CARNET_ACCESS_TOKEN_TTL_SECONDS (a replaced key must outlive its tokens)",
            )
