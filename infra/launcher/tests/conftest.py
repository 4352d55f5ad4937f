"""Shared fixtures: a fresh data directory per test, and clean-up of what a test started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from carnet_launcher.layout import DataDir
from carnet_launcher.ports import PortBook
from carnet_launcher.postgres import EmbeddedPostgres
from carnet_launcher.redis_server import EmbeddedRedis


@pytest.fixture
def data(tmp_path: Path) -> DataDir:
    layout = DataDir.at(tmp_path / "carnet-data")
    layout.prepare()
    return layout


@pytest.fixture
def ports(data: DataDir) -> PortBook:
    return PortBook(data.ports_file)


@pytest.fixture
def postgres(data: DataDir, ports: PortBook) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(data, ports)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(data: DataDir, ports: PortBook) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data, ports)
    try:
        yield server
    finally:
        server.stop()
