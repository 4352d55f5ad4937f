"""Shared fixtures: a fresh data directory per test, and clean-up of what a test started."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from carnet_launcher.layout import DataDir
from carnet_launcher.ports import PortBook
from carnet_launcher.postgres import EmbeddedPostgres
from carnet_launcher.redis_server import EmbeddedRedis


@pytest.fixture
def data_parent(tmp_path: Path) -> Iterator[Path]:
    """Where a test's data directory lives.

    Run as root, the embedded PostgreSQL runs as an unprivileged user that must traverse
    every parent of its data. pytest keeps its temporary directories under a per-user
    directory that any pytest session starting meanwhile resets to mode 0700, which would
    lock that user out mid-test; so root's tests keep their data in a directory of their own.
    """
    if os.geteuid() != 0:
        yield tmp_path
        return
    parent = Path(tempfile.mkdtemp(prefix="carnet-launcher-test-"))
    try:
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def data(data_parent: Path) -> DataDir:
    layout = DataDir.at(data_parent / "carnet-data")
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
