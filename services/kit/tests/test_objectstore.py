"""Both object stores keep bytes intact, refuse unsafe keys and report absent objects."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from carnet_kit.errors import InvalidArgument, NotFound
from carnet_kit.objectstore import FilesystemObjectStore, ObjectStore, S3ObjectStore
from carnet_kit.testing import free_port


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A real S3-protocol server (moto's standalone server) on a loopback port."""
    port = free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(params=["fs", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "fs":
        yield FilesystemObjectStore(tmp_path / "objects")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = f"carnet-test-{os.urandom(4).hex()}"
        yield S3ObjectStore(endpoint, bucket, "testing", "testing", secure=False)


async def test_put_then_get_and_stream_return_the_same_bytes(store: ObjectStore) -> None:
    data = os.urandom(700_000)
    info = await store.put("documents/holder/doc-1", data, "application/pdf")
    assert info.size == len(data)
    assert await store.get("documents/holder/doc-1") == data
    chunks = [chunk async for chunk in store.stream("documents/holder/doc-1", chunk_size=100_000)]
    assert len(chunks) >= 7
    assert b"".join(chunks) == data
    assert await store.exists("documents/holder/doc-1")


async def test_put_replaces_and_delete_removes(store: ObjectStore) -> None:
    await store.put("a/b", b"first")
    await store.put("a/b", b"second")
    assert await store.get("a/b") == b"second"
    await store.delete("a/b")
    assert not await store.exists("a/b")
    with pytest.raises(NotFound):
        await store.get("a/b")
    with pytest.raises(NotFound):
        async for _ in store.stream("a/b"):
            pass


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "", "sp ace"])
async def test_unsafe_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidArgument):
        await store.put(key, b"x")


async def test_filesystem_store_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FilesystemObjectStore(tmp_path)
    await store.put("x/y", b"data")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["y"]
