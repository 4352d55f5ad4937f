"""Configuration of the consent service (``CARNET_*`` variables)."""

from __future__ import annotations

import dataclasses

from carnet_kit.settings import ServiceSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConsentSettings(ServiceSettings):
    """What the consent service needs; today, only what every service needs.

    The access matrix is not configured: the latest version packaged with the
    service is the one in force, so it changes only by deploying a new version.
    """
