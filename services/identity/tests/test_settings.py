"""IdentitySettings read from CARNET_* variables, validated with a message naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from carnet_identity.settings import IdentitySettings
from carnet_kit.config import ConfigError, load

BASE = {
    "CARNET_GRPC_LISTEN": "127.0.0.1:50051",
    "CARNET_DATABASE_URL": "postgresql://postgres@127.0.0.1/carnet",
    "CARNET_REDIS_URL": "redis://127.0.0.1:6379/0",
}


def test_defaults_are_the_product_numbers() -> None:
    settings = load(IdentitySettings, BASE)
    assert settings.access_token_ttl_seconds == 300
    assert settings.refresh_token_ttl_seconds == 30 * 24 * 3600
    assert settings.otp_ttl_seconds == 600
    assert settings.otp_max_attempts == 5
    assert (settings.login_max_failures, settings.login_failure_window_seconds) == (5, 900)
    assert settings.secrets_dir is None


def test_variables_override_defaults() -> None:
    settings = load(IdentitySettings, BASE | {"CARNET_OTP_TTL_SECONDS": "120", "CARNET_SECRETS_DIR": "/run/secrets"})
    assert settings.otp_ttl_seconds == 120
    assert settings.secrets_dir == Path("/run/secrets")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CARNET_OTP_TTL_SECONDS", "0"),
        ("CARNET_ACCESS_TOKEN_TTL_SECONDS", "soon"),
        ("CARNET_SIGNING_KEY_OVERLAP_SECONDS", "10"),
    ],
)
def test_bad_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(IdentitySettings, BASE | {variable: value})
    assert caught.value.variable == variable
