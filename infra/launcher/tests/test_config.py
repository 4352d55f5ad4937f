"""Environment handed to each child, user overrides, the demo table and the banner."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import unicodedata
from pathlib import Path

import pytest

from carnet_launcher import demo
from carnet_launcher.banner import banner
from carnet_launcher.config import (
    SERVICES,
    Backends,
    Settings,
    child_environment,
    platform_environment,
)
from carnet_launcher.errors import LauncherError
from carnet_launcher.launch import _ensure_master_key
from carnet_launcher.layout import DataDir

BACKENDS = Backends(
    "postgresql://postgres@127.0.0.1:5555/carnet", "redis://127.0.0.1:6666/0", "127.0.0.1", 2525
)


def settings_for(tmp_path: Path, **environ: str) -> Settings:
    return Settings.resolve(DataDir.at(tmp_path / ".carnet"), {"PATH": "/usr/bin", **environ})


def test_each_service_gets_its_own_listen_address_and_the_shared_variables(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    platform = platform_environment(settings, BACKENDS)
    for index, service in enumerate(SERVICES, start=1):
        env = child_environment(settings, platform, service.name)
        assert env["CARNET_GRPC_LISTEN"] == f"127.0.0.1:5005{index}"
        assert env["CARNET_PROFILE"] == "embedded"
        assert env["CARNET_DATABASE_URL"] == BACKENDS.database_url
        assert env["CARNET_REDIS_URL"] == BACKENDS.redis_url
        assert env["CARNET_SMTP_HOST"] == "127.0.0.1"
        assert env["CARNET_SMTP_PORT"] == "2525"
        assert env["CARNET_MAIL_FROM"] == "ne-pas-repondre@carnet.test"
        assert env["CARNET_BLOB_STORE"] == "fs"
        assert env["CARNET_BLOB_DIR"] == os.fspath(tmp_path / ".carnet" / "objects")
        assert env["CARNET_SECRETS_DIR"] == os.fspath(tmp_path / ".carnet" / "secrets")
        assert env["CARNET_NOTIFY_ADDR"] == "127.0.0.1:50055"
        assert env["TCP_NODELAY"] == "1"
        assert env["PATH"] == "/usr/bin", "the rest of os.environ is passed through"
        assert ("CARNET_DICOM_LISTEN" in env) == (service.name == "imaging")
        assert "CARNET_HTTP_LISTEN" not in env
        # Identity reads every service's secret; notify only its own; the others none.
        secrets = tmp_path / ".carnet" / "secrets" / "services"
        expected_dir = os.fspath(secrets) if service.name == "identity" else None
        assert env.get("CARNET_SERVICE_SECRETS_DIR") == expected_dir
        assert env.get("CARNET_SERVICE_SECRET_FILE") == (
            os.fspath(secrets / service.name) if service.name in ("imaging", "notify") else None
        )
    imaging = child_environment(settings, platform, "imaging")
    assert imaging["CARNET_DICOM_LISTEN"] == "127.0.0.1:11112"
    assert imaging["CARNET_DICOM_AE_TITLE"] == "CARNET"
    gateway = child_environment(settings, platform, "gateway")
    assert gateway["CARNET_HTTP_LISTEN"] == "127.0.0.1:8080"
    assert gateway["CARNET_DEV_MAILBOX_DIR"] == os.fspath(tmp_path / ".carnet" / "mailbox")
    assert "CARNET_GRPC_LISTEN" not in gateway
    assert "CARNET_SERVICE_SECRETS_DIR" not in gateway
    assert "CARNET_SERVICE_SECRET_FILE" not in gateway


def test_addresses_the_user_set_win_everywhere(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        CARNET_DOSSIER_ADDR="127.0.0.1:60053",
        CARNET_HTTP_LISTEN="0.0.0.0:9090",
        CARNET_DICOM_AE_TITLE="MYCARNET",
        CARNET_GRPC_LISTEN="127.0.0.1:1",
    )
    platform = platform_environment(settings, BACKENDS)
    assert child_environment(settings, platform, "dossier")["CARNET_GRPC_LISTEN"] == (
        "127.0.0.1:60053"
    )
    assert child_environment(settings, platform, "identity")["CARNET_DOSSIER_ADDR"] == (
        "127.0.0.1:60053"
    )
    assert child_environment(settings, platform, "identity")["CARNET_GRPC_LISTEN"] == (
        "127.0.0.1:50051"
    ), "a global CARNET_GRPC_LISTEN cannot serve five services"
    assert child_environment(settings, platform, "imaging")["CARNET_DICOM_AE_TITLE"] == "MYCARNET"
    assert settings.gateway_url == "http://127.0.0.1:9090"


def test_s3_configured_by_the_user_is_passed_through_without_a_blob_dir(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        CARNET_BLOB_STORE="s3",
        CARNET_S3_ENDPOINT="http://127.0.0.1:9000",
        CARNET_S3_BUCKET="carnet",
    )
    env = child_environment(settings, platform_environment(settings, BACKENDS), "dossier")
    assert env["CARNET_BLOB_STORE"] == "s3"
    assert env["CARNET_S3_ENDPOINT"] == "http://127.0.0.1:9000"
    assert env["CARNET_S3_BUCKET"] == "carnet"
    assert "CARNET_BLOB_DIR" not in env


def test_external_database_redis_and_smtp_are_recognised(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        CARNET_DATABASE_URL="postgresql://db/carnet",
        CARNET_REDIS_URL="redis://r/1",
        CARNET_SMTP_HOST="mail.example",
        CARNET_SMTP_PORT="587",
    )
    assert settings.user_database_url == "postgresql://db/carnet"
    assert settings.user_redis_url == "redis://r/1"
    assert not settings.runs_smtp_sink
    assert settings.user_smtp_port == 587


def test_every_child_exports_its_spans_to_the_launchers_collector(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert settings.runs_trace_collector
    backends = dataclasses.replace(BACKENDS, traces_endpoint="http://127.0.0.1:4317")
    platform = platform_environment(settings, backends)
    for name in [*(s.name for s in SERVICES), "gateway"]:
        env = child_environment(settings, platform, name)
        assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:4317"
        assert env["OTEL_EXPORTER_OTLP_TRACES_INSECURE"] == "true"
        assert env["OTEL_BSP_SCHEDULE_DELAY"] == "200"
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env, "metrics are not the collector's"
        assert ("CARNET_DEV_TRACES_URL" in env) == (name == "gateway")
    gateway = child_environment(settings, platform, "gateway")
    assert gateway["CARNET_DEV_TRACES_URL"] == "http://127.0.0.1:4317"
    text = banner(settings, backends, {}, seeded=False)
    assert "http://127.0.0.1:4317 (launcher, every process)" in text


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_a_collector_of_the_users_own_replaces_the_launchers(
    tmp_path: Path, variable: str
) -> None:
    settings = settings_for(
        tmp_path, **{variable: "http://otel:4317", "OTEL_BSP_SCHEDULE_DELAY": "9"}
    )
    assert not settings.runs_trace_collector
    env = child_environment(settings, platform_environment(settings, BACKENDS), "gateway")
    assert env[variable] == "http://otel:4317"
    assert env["OTEL_BSP_SCHEDULE_DELAY"] == "9"
    assert "CARNET_DEV_TRACES_URL" not in env
    assert "http://otel:4317 (OTEL_EXPORTER_OTLP_*)" in banner(settings, BACKENDS, {}, seeded=False)


def test_the_users_batch_delay_wins(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, OTEL_BSP_SCHEDULE_DELAY="1000")
    backends = dataclasses.replace(BACKENDS, traces_endpoint="http://127.0.0.1:4317")
    env = child_environment(settings, platform_environment(settings, backends), "identity")
    assert env["OTEL_BSP_SCHEDULE_DELAY"] == "1000"


def test_a_proxy_in_the_environment_is_bypassed_for_loopback(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, https_proxy="http://proxy:3128", no_proxy="intra.example")
    env = child_environment(settings, platform_environment(settings, BACKENDS), "notify")
    assert env["no_proxy"] == "intra.example,127.0.0.1,localhost,::1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CARNET_IDENTITY_ADDR", "50051"),
        ("CARNET_SMTP_PORT", "smtp"),
        ("CARNET_DICOM_AE_TITLE", "A-TITLE-FAR-TOO-LONG"),
    ],
)
def test_a_malformed_variable_is_named_in_the_error(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(LauncherError, match=variable):
        settings_for(tmp_path, **{variable: value})


def test_demo_nirs_carry_a_valid_key() -> None:
    for holder in demo.HOLDERS:
        body, key = holder.nir[:13], holder.nir[13:]
        assert len(holder.nir) == 15
        assert int(key) == 97 - int(body) % 97, holder.display_name


def test_demo_rpps_numbers_pass_the_luhn_check() -> None:
    def luhn_ok(number: str) -> bool:
        total = 0
        for position, char in enumerate(reversed(number)):
            digit = int(char) * (2 if position % 2 else 1)
            total += digit - 9 if digit > 9 else digit
        return total % 10 == 0

    assert [p.rpps for p in demo.PROFESSIONALS] == [
        "10000000017",
        "10000000025",
        "10000000033",
        "10000000041",
    ]
    assert all(luhn_ok(p.rpps) for p in demo.PROFESSIONALS)


def test_demo_emails_are_firstname_lastname_without_accents() -> None:
    assert demo.LEA.email == "lea.martin@demo.carnet.test"
    emails = [h.email for h in demo.HOLDERS] + [p.email for p in demo.PROFESSIONALS]
    assert "paul.dubois@demo.carnet.test" in emails
    for address in emails:
        assert unicodedata.normalize("NFKD", address).isascii()
        assert address == address.lower()


def test_banner_lists_urls_dicom_and_accounts_with_the_seeded_activation_code(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    settings.secrets_dir.mkdir(parents=True)
    settings.activation_codes_file.write_text(json.dumps({"156081305504244": "K7Q-42"}))
    text = banner(
        settings,
        BACKENDS,
        demo.read_activation_codes(settings.activation_codes_file),
        seeded=True,
    )
    for expected in [
        "http://127.0.0.1:8080/api/v1/openapi.json",
        "http://127.0.0.1:8080/api/v1/docs",
        "http://127.0.0.1:8080/dev/mailbox",
        "http://127.0.0.1:8080/debug/traces",
        "127.0.0.1:50053",
        "127.0.0.1:11112  AE title CARNET",
        "Carnet-demo-2026",
        "284057512000531",
        "Léa MARTIN",
        "activation code K7Q-42",
        "RPPS",
        "pacs-demo-secret",
        "imaging.push documents.deposit",
        "DEMOPACS",
        "lab-demo-secret",
        "Dr Anne MOREAU",
        "marc.girard@demo.carnet.test",
    ]:
        assert expected in text, expected


def test_dossier_gets_a_master_key_made_once_and_kept_or_the_users_own(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    env = child_environment(settings, platform_environment(settings, BACKENDS), "dossier")
    key_file = tmp_path / ".carnet" / "secrets" / "master-keys"
    assert env["CARNET_MASTER_KEY_FILE"] == os.fspath(key_file)
    key_file.parent.mkdir(parents=True)
    _ensure_master_key(key_file)
    first = key_file.read_text()
    key_id, _, encoded = first.strip().partition(":")
    assert key_id == "local-1"
    assert len(base64.b64decode(encoded, validate=True)) == 32
    assert key_file.stat().st_mode & 0o777 == 0o600
    _ensure_master_key(key_file)  # a restart keeps the key: the data stays readable
    assert key_file.read_text() == first
    own = settings_for(tmp_path, CARNET_MASTER_KEY_FILE=os.fspath(tmp_path / "vault" / "keys"))
    env = child_environment(own, platform_environment(own, BACKENDS), "dossier")
    assert env["CARNET_MASTER_KEY_FILE"] == os.fspath(tmp_path / "vault" / "keys")
