"""Configuration of the notify service (``CARNET_*`` variables)."""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse
from pathlib import Path
from typing import Literal

from carnet_kit.config import ConfigError, env_name
from carnet_kit.crypto import MasterKeyRing
from carnet_kit.outbox import stream_name
from carnet_kit.service_tokens import read_service_secret
from carnet_kit.settings import BlobStoreSettings, ServiceSettings
from carnet_notify.domain import is_email_address


@dataclasses.dataclass(frozen=True, kw_only=True)
class NotifySettings(ServiceSettings, BlobStoreSettings):
    """What the notify service needs: the SMTP relay, the sender, the SMS and push webhooks, retries, rate limit,
    and for secure messaging the object store and master keys of the attachments.

    Without a webhook URL its channel is unavailable: its deliveries are SUPPRESSED
    (and an intent with no other channel is refused), the service starts all the same.
    """

    smtp_host: str
    smtp_port: int
    mail_from: str
    """The platform's one sender address; no other is ever used."""
    master_key_file: Path
    """Master keys wrapping the data keys of attachments: ``<id>:<base64 32 bytes>`` per line, current first."""
    service_secret_file: Path
    """Notify's own secret (the ``notify`` file of identity's ``CARNET_SERVICE_SECRETS_DIR``), exchanged with
    identity for a service token: contact points for event e-mails, persons for prevention reminders."""
    max_attachment_bytes: int = 10 * 1024 * 1024
    """Largest attachment accepted; an upload is cut off as soon as it passes it."""
    smtp_timeout_seconds: float = 10.0
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str = ""
    smtp_password: str = ""
    max_delivery_attempts: int = 8
    retry_initial_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    delivery_poll_seconds: float = 1.0
    delivery_lease_seconds: float = 0.0
    """How long one attempt holds its delivery: a replica dying mid-send leaves it to be tried again after
    that. 0: three times the longest provider time-out plus 30 s. Set, it must exceed both time-outs."""
    dossier_events_stream: str = stream_name("dossier")
    identity_events_stream: str = stream_name("identity")
    """Identity's events: closed accounts, treating physicians."""
    consent_events_stream: str = stream_name("consent")
    """Consent's events: recorded oppositions (their receipts)."""
    sms_webhook_url: str = ""
    """Provider endpoint SMS deliveries are POSTed to; empty: no SMS."""
    sms_webhook_secret: str = ""
    """Bearer token sent to the SMS provider, if it wants one."""
    push_webhook_url: str = ""
    """Provider endpoint push deliveries are POSTed to; empty: no push."""
    push_webhook_secret: str = ""
    """Bearer token sent to the push provider, if it wants one."""
    webhook_timeout_seconds: float = 10.0
    recipient_rate_limit: int = 20
    """Non-security deliveries per recipient and channel in one window; more wait for the next window."""
    recipient_rate_window_seconds: int = 3600
    prevention_job: bool = True
    """Whether this replica takes part in the daily prevention run (one replica at a time runs it)."""
    prevention_run_hour: int = 9
    """Hour (Paris time, 0-23) from which the day's prevention reminders are computed and sent."""
    prevention_check_seconds: float = 600.0
    """How often a replica checks whether the day's prevention run is due."""

    def validate(self) -> None:
        """Cross-field checks, each naming the variable at fault."""
        super().validate()
        self.validate_blob_store()
        if self.max_attachment_bytes < 1024:
            raise ConfigError(env_name("max_attachment_bytes"), "must be at least 1024")
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
        if self.delivery_lease_seconds and self.delivery_lease_seconds <= max(
            self.smtp_timeout_seconds, self.webhook_timeout_seconds
        ):
            raise ConfigError(
                env_name("delivery_lease_seconds"),
                "must exceed CARNET_SMTP_TIMEOUT_SECONDS and CARNET_WEBHOOK_TIMEOUT_SECONDS (or be 0)",
            )
        for stream_field in ("dossier_events_stream", "identity_events_stream", "consent_events_stream"):
            if not getattr(self, stream_field):
                raise ConfigError(env_name(stream_field), "must not be empty")
        for channel in ("sms", "push"):
            url, secret = getattr(self, f"{channel}_webhook_url"), getattr(self, f"{channel}_webhook_secret")
            if url:
                self._check_webhook_url(f"{channel}_webhook_url", url)
            elif secret:
                raise ConfigError(
                    env_name(f"{channel}_webhook_secret"), f"is set but {env_name(f'{channel}_webhook_url')} is not"
                )
        if self.webhook_timeout_seconds <= 0:
            raise ConfigError(env_name("webhook_timeout_seconds"), "must be positive")
        if self.recipient_rate_limit < 1:
            raise ConfigError(env_name("recipient_rate_limit"), "must be at least 1")
        if self.recipient_rate_window_seconds < 1:
            raise ConfigError(env_name("recipient_rate_window_seconds"), "must be at least 1")
        if not 0 <= self.prevention_run_hour <= 23:
            raise ConfigError(env_name("prevention_run_hour"), f"must be an hour (0-23); got {self.prevention_run_hour}")
        if self.prevention_check_seconds <= 0:
            raise ConfigError(env_name("prevention_check_seconds"), "must be positive")

    def _check_webhook_url(self, field_name: str, url: str) -> None:
        """An absolute http(s) URL; in production, https unless the provider is on this host."""
        variable = env_name(field_name)
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(variable, f"must be an http:// or https:// URL; got {url!r}")
        if parsed.username or parsed.password:
            raise ConfigError(variable, "must not carry credentials; use the matching _SECRET variable")
        if self.profile == "production" and parsed.scheme == "http" and not _is_loopback(parsed.hostname):
            raise ConfigError(variable, "must use https in production (phone numbers and codes travel in it)")

    def master_keys(self) -> MasterKeyRing:
        """The master key ring read from ``CARNET_MASTER_KEY_FILE`` (ConfigError naming it when unusable).

        Read when the service is built, not when the variables are: the file is a mounted secret.
        """
        return MasterKeyRing.from_file(self.master_key_file, variable=env_name("master_key_file"))

    def service_secret(self) -> str:
        """Notify's service secret read from ``CARNET_SERVICE_SECRET_FILE`` (ConfigError naming it when unusable)."""
        return read_service_secret(self.service_secret_file, env_name("service_secret_file"))

    @property
    def lease_seconds(self) -> float:
        """How long an attempt may run before another replica may take the delivery again."""
        return self.delivery_lease_seconds or 3 * max(self.smtp_timeout_seconds, self.webhook_timeout_seconds) + 30


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
