"""Blob storage behind one interface: a filesystem directory or an S3 bucket (``minio`` SDK).

Keys are relative, slash-separated paths of safe characters (``docs/<holder>/<id>``).
Writes are all-or-nothing: a reader sees the old object or the new one, never half.
The S3 SDK is blocking, so its calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from carnet_kit.errors import InvalidArgument, NotFound
from carnet_kit.settings import BlobStoreSettings

CHUNK_SIZE = 256 * 1024
_KEY = re.compile(r"^[A-Za-z0-9._=-]+(/[A-Za-z0-9._=-]+)*$")


def check_key(key: str) -> str:
    """Refuse keys that could escape the store or are not portable."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")) or len(key) > 512:
        raise InvalidArgument(f"bad object key {key!r}", field="key", reason="OBJECT_KEY_INVALID")
    return key


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows of an object."""

    key: str
    size: int
    sha256: str


class ObjectStore(Protocol):
    """The operations every store offers."""

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        """Store ``data`` under ``key``, replacing any object there."""
        ...

    async def get(self, key: str) -> bytes:
        """The whole object; NotFound if absent."""
        ...

    def stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The object in chunks; NotFound if absent."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; absent objects are ignored."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...


class FilesystemObjectStore:
    """Objects as files under a root directory (the embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, path: Path, data: bytes) -> str:
        """Write the object (in a worker thread) and return its SHA-256, hashed there too."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return hashlib.sha256(data).hexdigest()

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        path = self._path(key)
        return ObjectInfo(key, len(data), await asyncio.to_thread(self._write, path, data))

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"no object {key}", reason="OBJECT_NOT_FOUND") from None

    async def stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise NotFound(f"no object {key}", reason="OBJECT_NOT_FOUND") from None
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def close(self) -> None:
        return None


class S3ObjectStore:
    """Objects in an S3 bucket through the ``minio`` SDK (MinIO, or any S3 server)."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        *,
        region: str = "us-east-1",
        secure: bool = True,
    ) -> None:
        from minio import Minio

        self.bucket = bucket
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, region=region, secure=secure)
        self._bucket_ready = False

    async def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        if not await asyncio.to_thread(self._client.bucket_exists, bucket_name=self.bucket):
            await asyncio.to_thread(self._client.make_bucket, bucket_name=self.bucket)
        self._bucket_ready = True

    def _missing(self, error: Exception) -> bool:
        from minio.error import S3Error

        return isinstance(error, S3Error) and error.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket")

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        check_key(key)
        await self._ensure_bucket()
        await asyncio.to_thread(
            self._client.put_object,
            bucket_name=self.bucket,
            object_name=key,
            data=io.BytesIO(data),
            length=len(data),
            content_type=content_type,
        )
        return ObjectInfo(key, len(data), hashlib.sha256(data).hexdigest())

    def _read_all(self, key: str) -> bytes:
        response = self._client.get_object(bucket_name=self.bucket, object_name=key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    async def get(self, key: str) -> bytes:
        check_key(key)
        try:
            return await asyncio.to_thread(self._read_all, key)
        except Exception as error:
            if self._missing(error):
                raise NotFound(f"no object {key}", reason="OBJECT_NOT_FOUND") from None
            raise

    async def stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        check_key(key)
        try:
            response = await asyncio.to_thread(self._client.get_object, bucket_name=self.bucket, object_name=key)
        except Exception as error:
            if self._missing(error):
                raise NotFound(f"no object {key}", reason="OBJECT_NOT_FOUND") from None
            raise
        try:
            while chunk := await asyncio.to_thread(response.read, chunk_size):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def exists(self, key: str) -> bool:
        check_key(key)
        try:
            await asyncio.to_thread(self._client.stat_object, bucket_name=self.bucket, object_name=key)
        except Exception as error:
            if self._missing(error):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        check_key(key)
        await asyncio.to_thread(self._client.remove_object, bucket_name=self.bucket, object_name=key)

    async def close(self) -> None:
        return None


def object_store_from_settings(settings: BlobStoreSettings) -> ObjectStore:
    """The store a service's :class:`~carnet_kit.settings.BlobStoreSettings` describe."""
    kind = settings.blob_store
    if kind == "s3":
        return S3ObjectStore(
            settings.s3_endpoint,
            settings.s3_bucket,
            settings.s3_access_key,
            settings.s3_secret_key,
            region=settings.s3_region,
            secure=settings.s3_secure,
        )
    assert settings.blob_dir is not None, "validated by BlobStoreSettings.validate_blob_store"
    return FilesystemObjectStore(Path(settings.blob_dir))
