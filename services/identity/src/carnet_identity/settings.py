"""Configuration of the identity service (``CARNET_*`` environment variables)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from carnet_kit.config import ConfigError, env_name
from carnet_kit.service_tokens import ServiceSecrets, read_service_secrets
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
    # Failed logins from one client address (any accounts) within the same window.
    login_max_failures_per_address: int = 50
    login_failure_window_seconds: int = 900
    # How long a replaced signing key stays published; must outlive the tokens it signed.
    signing_key_overlap_seconds: int = 3600
    # The platform services' secrets (a file per service, named by it): a service proving its secret
    # gets a token of role "service" from ExchangeClientCredentials. None: no service may get one.
    service_secrets_dir: Path | None = None
    # Where seed-demo writes the demo activation codes (and future local secrets).
    secrets_dir: Path | None = None
    # OpenID Connect provider as professionals' login source (e.g. Pro Santé Connect); off when the issuer is empty.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_redirect_uri: str = ""
    oidc_scopes: tuple[str, ...] = ("openid",)
    oidc_acr_values: str = ""
    # The ID-token claim carrying the professional's national id, and the prefix before the RPPS number
    # (Pro Santé Connect: "preferred_username" = "8" + RPPS).
    oidc_rpps_claim: str = "preferred_username"
    oidc_rpps_prefix: str = "8"

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
            "login_max_failures_per_address",
            "login_failure_window_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(env_name(name), "must be positive")
        if self.oidc_issuer:
            for name in ("oidc_client_id", "oidc_redirect_uri"):
                if not getattr(self, name):
                    raise ConfigError(env_name(name), "is required when CARNET_OIDC_ISSUER is set")
            if "openid" not in self.oidc_scopes:
                raise ConfigError(env_name("oidc_scopes"), "must include openid")
        if self.signing_key_overlap_seconds < self.access_token_ttl_seconds:
            raise ConfigError(
                env_name("signing_key_overlap_seconds"),
                "must be at least CARNET_ACCESS_TOKEN_TTL_SECONDS (a replaced key must outlive its tokens)",
            )

    def service_secrets(self) -> ServiceSecrets:
        """The platform services' secrets (``ConfigError`` if the directory or a file in it is unusable).

        Read when the service is built, not when the variables are: the directory is a mounted secret.
        """
        if self.service_secrets_dir is None:
            return ServiceSecrets({})
        return ServiceSecrets(read_service_secrets(self.service_secrets_dir, env_name("service_secrets_dir")))
