"""Configuration is typed, validated, and names the variable that is wrong."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from carnet_kit.config import EX_CONFIG, ConfigError, HostPort, load, load_or_exit
from carnet_kit.settings import BlobStoreSettings, ServiceSettings

BASE = {
    "CARNET_GRPC_LISTEN": "127.0.0.1:50099",
    "CARNET_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x",
    "CARNET_REDIS_URL": "redis://127.0.0.1:6379/0",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample:
    name: str
    port: int = 7
    ratio: float = 0.5
    enabled: bool = False
    mode: Literal["a", "b"] = "a"
    listen: HostPort = HostPort("127.0.0.1", 1)
    folder: Path | None = None
    tags: tuple[str, ...] = ()


def test_values_are_converted_by_their_annotation() -> None:
    sample = load(
        Sample,
        {
            "CARNET_NAME": "x",
            "CARNET_PORT": "8080",
            "CARNET_RATIO": "0.25",
            "CARNET_ENABLED": "yes",
            "CARNET_MODE": "b",
            "CARNET_LISTEN": "[::1]:9000",
            "CARNET_FOLDER": "/tmp/x",
            "CARNET_TAGS": "a, b,,c",
        },
    )
    assert sample == Sample(
        name="x",
        port=8080,
        ratio=0.25,
        enabled=True,
        mode="b",
        listen=HostPort("::1", 9000),
        folder=Path("/tmp/x"),
        tags=("a", "b", "c"),
    )
    assert str(sample.listen) == "[::1]:9000"


def test_defaults_apply_when_variables_are_absent() -> None:
    assert load(Sample, {"CARNET_NAME": "n"}) == Sample(name="n")


def test_missing_required_variable_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        load(Sample, {})
    assert info.value.variable == "CARNET_NAME"
    assert "required" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("CARNET_PORT", "eighty", "number"),
        ("CARNET_ENABLED", "maybe", "true or false"),
        ("CARNET_MODE", "c", "one of a, b"),
        ("CARNET_LISTEN", "nohost", "host:port"),
        ("CARNET_LISTEN", "h:99999", "out of range"),
    ],
)
def test_malformed_variable_is_named_with_the_problem(variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(Sample, {"CARNET_NAME": "n", variable: value})
    assert info.value.variable == variable
    assert words in info.value.problem


def test_service_settings_validate_urls() -> None:
    with pytest.raises(ConfigError) as info:
        load(ServiceSettings, {**BASE, "CARNET_DATABASE_URL": "mysql://x"})
    assert info.value.variable == "CARNET_DATABASE_URL"


def test_blob_store_needs_its_settings() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithBlobs(ServiceSettings, BlobStoreSettings):
        def validate(self) -> None:
            super().validate()
            self.validate_blob_store()

    with pytest.raises(ConfigError) as info:
        load(WithBlobs, {**BASE, "CARNET_BLOB_STORE": "s3", "CARNET_S3_ENDPOINT": "h:1"})
    assert info.value.variable == "CARNET_S3_BUCKET"
    with pytest.raises(ConfigError) as info:
        load(WithBlobs, BASE)
    assert info.value.variable == "CARNET_BLOB_DIR"


def test_load_or_exit_prints_the_variable_and_exits_78(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_or_exit(Sample, "carnet-sample", {"CARNET_NAME": "n", "CARNET_PORT": "x"})
    assert info.value.code == EX_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("carnet-sample: configuration error: CARNET_PORT")
