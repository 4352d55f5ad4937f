"""Configuration of the consent service (``CARNET_*`` variables)."""

from __future__ import annotations

import dataclasses

from carnet_kit.config import ConfigError, env_name
from carnet_kit.outbox import stream_name
from carnet_kit.settings import ServiceSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConsentSettings(ServiceSettings):
    """What the consent service needs: what every service needs, and the facts cache's bounds.

    The access matrix is not configured: the latest version packaged with the
    service is the one in force, so it changes only by deploying a new version.
    """

    events_stream: str = stream_name("consent")
    """Where consent publishes its events (and reads other replicas' changes)."""
    identity_events_stream: str = stream_name("identity")
    """Where identity publishes the facts consent keeps (treating physician, helpers, ...)."""
    invalidation_stream: str = "carnet:invalidations:consent"
    """Where consent tells its replicas that a holder's identity facts changed."""
    facts_ttl_seconds: float = 30.0
    """How long cached facts of a holder live without an invalidation (safety net)."""
    facts_max_holders: int = 200_000
    """How many holders' facts one replica keeps (oldest dropped first)."""

    def validate(self) -> None:
        """Cross-field checks, and positive cache bounds."""
        super().validate()
        for name in ("events_stream", "identity_events_stream", "invalidation_stream"):
            if not getattr(self, name):
                raise ConfigError(env_name(name), "must not be empty")
        if self.facts_ttl_seconds <= 0:
            raise ConfigError(env_name("facts_ttl_seconds"), "must be positive")
        if self.facts_max_holders < 1:
            raise ConfigError(env_name("facts_max_holders"), "must be at least 1")
