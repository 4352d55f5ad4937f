"""Configuration of the notify service (``CARNET_*`` variables)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from carnet_kit.config import ConfigError, env_name
from carnet_kit.outbox import stream_name
from carnet_kit.settings import ServiceSettings
from carnet_notify.domain import is_email_address


@dataclasses.dataclass(frozen=True, kw_only=True)
class NotifySettings(ServiceSettings):
    """What the notify service needs: the SMTP relay, the sender, the retry policy."""

    smtp_host: str
    smtp_port: int
    mail_from: str
    """The platform's one sender address; no other is ever used."""
    smtp_timeout_seconds: float = 10.0
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str = ""
    smtp_password: str = ""
    max_delivery_attempts: int = 8
    retry_initial_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    delivery_poll_seconds: float = 1.0
    dossier_events_stream: str = stream_name("dossier")

    def validate(self) -> None:
        """Cross-field checks, each naming the variable at fault."""
        super().validate()
        if not self.smtp_host.strip():
            raise ConfigError(env_name("smtp_host"), "must not be empty")
        if not 1 <= self.smtp_port <= 65535:
            raise ConfigError(env_name("smtp_port"), f"must be a TCP port (1-65535); got {self.smtp_port}")
        if not is_email_address(self.mail_from):
            raise ConfigError(env_name("mail_from"), f"must be an e-mail address; got {self.mail_from!r}")
        if self.smtp_timeout_seconds <= 0:
            raise ConfigError(env_name("smtp_timeout_seconds"), "must be positive")
        if bool(self.smtp_username) != bool(self.smtp_password):
            raise ConfigError(env_name("smtp_password"), "CARNET_SMTP_USERNAME and CARNET_SMTP_PASSWORD go together")
        if self.max_delivery_attempts < 1:
            raise ConfigError(env_name("max_delivery_attempts"), "must be at least 1")
        if self.retry_initial_seconds <= 0:
            raise ConfigError(env_name("retry_initial_seconds"), "must be positive")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ConfigError(env_name("retry_max_seconds"), "must be at least CARNET_RETRY_INITIAL_SECONDS")
        if self.delivery_poll_seconds <= 0:
            raise ConfigError(env_name("delivery_poll_seconds"), "must be positive")
        if not self.dossier_events_stream:
            raise ConfigError(env_name("dossier_events_stream"), "must not be empty")
