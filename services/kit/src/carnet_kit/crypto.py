"""Encryption at rest: blobs under AES-256-GCM with a data key per holder (dossier's documents,
notify's attachments).

Each holder has one 256-bit data key, stored only wrapped (AES-256-GCM) by a master key
from configuration. Rotating the master key rewraps the data keys and never touches a
blob; deleting a holder's data key makes every blob of theirs unreadable for good
(crypto-shredding).

A blob is sealed in segments so that it can be decrypted and authenticated while it
streams back::

    b"CRB1" | nonce prefix (8 bytes) | segment 0 | segment 1 | ... | last segment

Segment ``i`` is ``AESGCM(data key).encrypt(prefix + i (4 bytes), plaintext_i, aad)``
with ``aad = context | i | last-flag``: every segment but the last holds exactly
:data:`SEGMENT_BYTES` of plaintext, the last one fewer (maybe none). The context (the
blob's key in the object store) binds a ciphertext to its place, the index forbids
reordering, the flag forbids cutting the blob short or extending it.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carnet_kit.config import ConfigError

MAGIC = b"CRB1"
PREFIX_BYTES = 8
SEGMENT_BYTES = 64 * 1024
TAG_BYTES = 16
KEY_BYTES = 32
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + PREFIX_BYTES


class SealedBlobError(Exception):
    """A sealed blob that does not open: wrong key, altered, truncated or not sealed at all."""


# ---------------------------------------------------------------- master keys


@dataclass(frozen=True)
class MasterKey:
    """A key-encryption key, known by its id (which the wrapped data keys record)."""

    key_id: str
    secret: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"MasterKey({self.key_id!r})"


@dataclass(frozen=True)
class MasterKeyRing:
    """The current master key (wraps new data keys) and retired ones (still unwrap until rewrapped)."""

    current: MasterKey
    retired: tuple[MasterKey, ...] = ()

    def by_id(self, key_id: str) -> MasterKey | None:
        """The key with this id, current or retired."""
        for key in (self.current, *self.retired):
            if key.key_id == key_id:
                return key
        return None

    @classmethod
    def parse(cls, text: str, *, source: str) -> MasterKeyRing:
        """Keys as ``<id>:<base64 of 32 bytes>``, one per line, the current one first; ``#`` comments."""
        keys: list[MasterKey] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key_id, sep, encoded = line.partition(":")
            key_id = key_id.strip()
            if not sep or not key_id or len(key_id) > 64:
                raise ConfigError(source, f"line {number}: expected <id>:<base64 key>")
            try:
                secret = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(source, f"line {number}: the key of {key_id!r} is not base64") from None
            if len(secret) != KEY_BYTES:
                raise ConfigError(source, f"line {number}: the key of {key_id!r} must be {KEY_BYTES} bytes, not {len(secret)}")
            if any(known.key_id == key_id for known in keys):
                raise ConfigError(source, f"line {number}: key id {key_id!r} appears twice")
            keys.append(MasterKey(key_id, secret))
        if not keys:
            raise ConfigError(source, "holds no master key")
        return cls(keys[0], tuple(keys[1:]))

    @classmethod
    def from_file(cls, path: Path, *, variable: str) -> MasterKeyRing:
        """Read the ring from a file (a mounted secret)."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(variable, f"cannot read {path}: {exc.strerror}") from None
        return cls.parse(text, source=variable)


def new_master_key_line(key_id: str) -> str:
    """A fresh master key in the file's format (for the launcher and operators)."""
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


# ---------------------------------------------------------------- data keys


def _wrap_aad(holder_id: uuid.UUID, key_id: str) -> bytes:
    return b"carnet-dek|" + holder_id.bytes + b"|" + key_id.encode()


def new_data_key() -> bytes:
    """A fresh 256-bit data key."""
    return AESGCM.generate_key(bit_length=256)


def wrap_data_key(master: MasterKey, holder_id: uuid.UUID, data_key: bytes) -> bytes:
    """``nonce | AES-256-GCM(master, data key)``, bound to the holder and the master key id."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master.secret).encrypt(nonce, data_key, _wrap_aad(holder_id, master.key_id))


def unwrap_data_key(master: MasterKey, holder_id: uuid.UUID, wrapped: bytes) -> bytes:
    """The data key inside ``wrapped``; :class:`SealedBlobError` if it does not open."""
    try:
        data_key = AESGCM(master.secret).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(holder_id, master.key_id)
        )
    except InvalidTag:
        raise SealedBlobError(f"the data key does not open with master key {master.key_id!r}") from None
    if len(data_key) != KEY_BYTES:
        raise SealedBlobError("the wrapped data key has the wrong length")
    return data_key


# ---------------------------------------------------------------- blobs


def _segment_aad(context: bytes, index: int, last: bool) -> bytes:
    return context + b"|" + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= 1 << 32:
        raise ValueError("blob too large to seal")
    return prefix + index.to_bytes(4, "big")


def sealed_size(plain_size: int) -> int:
    """How many bytes a plaintext of ``plain_size`` takes once sealed."""
    segments = plain_size // SEGMENT_BYTES + 1
    return HEADER_BYTES + plain_size + segments * TAG_BYTES


def seal(data_key: bytes, context: str, plaintext: bytes) -> bytes:
    """Encrypt a whole blob (as the deposit path has it in memory)."""
    aead = AESGCM(data_key)
    prefix = os.urandom(PREFIX_BYTES)
    aad_context = context.encode()
    view = memoryview(plaintext)
    count = len(plaintext) // SEGMENT_BYTES + 1
    pieces = [MAGIC + prefix]
    for index in range(count):
        piece = view[index * SEGMENT_BYTES : (index + 1) * SEGMENT_BYTES]
        pieces.append(aead.encrypt(_nonce(prefix, index), piece, _segment_aad(aad_context, index, index == count - 1)))
    return b"".join(pieces)


async def open_stream(data_key: bytes, context: str, sealed: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Decrypt a sealed blob as it streams in; each segment is authenticated before it is yielded.

    Raises :class:`SealedBlobError` on a wrong key, an altered, reordered, truncated or
    extended blob, or bytes that were never sealed.
    """
    aead = AESGCM(data_key)
    aad_context = context.encode()
    pending = bytearray()
    prefix: bytes | None = None
    index = 0
    whole = SEGMENT_BYTES + TAG_BYTES
    async for chunk in sealed:
        pending += chunk
        if prefix is None:
            if len(pending) < HEADER_BYTES:
                continue
            if bytes(pending[: len(MAGIC)]) != MAGIC:
                raise SealedBlobError("not a sealed blob")
            prefix = bytes(pending[len(MAGIC) : HEADER_BYTES])
            del pending[:HEADER_BYTES]
        # Keep at least one whole segment back: only at the end is it known which one is last.
        while len(pending) > whole:
            piece = bytes(pending[:whole])
            del pending[:whole]
            yield _open_segment(aead, prefix, aad_context, index, piece, last=False)
            index += 1
    if prefix is None:
        raise SealedBlobError("the sealed blob is cut short")
    if len(pending) < TAG_BYTES:
        raise SealedBlobError("the sealed blob is cut short")
    yield _open_segment(aead, prefix, aad_context, index, bytes(pending), last=True)


def _open_segment(aead: AESGCM, prefix: bytes, context: bytes, index: int, piece: bytes, *, last: bool) -> bytes:
    try:
        return aead.decrypt(_nonce(prefix, index), piece, _segment_aad(context, index, last))
    except InvalidTag:
        raise SealedBlobError(f"segment {index} does not authenticate") from None


async def open_blob(data_key: bytes, context: str, sealed: bytes) -> bytes:
    """Decrypt a whole sealed blob held in memory."""

    async def one() -> AsyncIterator[bytes]:
        yield sealed

    return b"".join([part async for part in open_stream(data_key, context, one())])


@dataclass(frozen=True)
class WrappedKeyTable:
    """Where a service keeps its wrapped data keys: table, id column, the column stamped on rewrap."""

    table: str
    id_column: str
    rewrapped_column: str
    live_condition: str = "TRUE"
    """Rows that still hold a key (e.g. not shredded)."""


async def rewrap_keys(pool: Any, ring: MasterKeyRing, keys: WrappedKeyTable, *, batch_size: int = 500) -> tuple[int, int]:
    """Rewrap every data key of ``keys`` wrapped by a retired master key under the current one.

    Only the wrapped keys change, never a blob. Replicas may run it together (rows are
    taken ``FOR UPDATE SKIP LOCKED``); a key that does not unwrap (its master key is not
    configured, or the row was altered) is left as it is, so one bad row never stops the
    others. Returns (rewrapped, left unreadable).
    """
    current = ring.current
    done = unreadable = 0
    after = uuid.UUID(int=0)
    select = (
        f"SELECT {keys.id_column} AS id, master_key_id, wrapped_key FROM {keys.table}"
        f" WHERE {keys.live_condition} AND master_key_id <> $1 AND {keys.id_column} > $2"
        f" ORDER BY {keys.id_column} LIMIT $3 FOR UPDATE SKIP LOCKED"
    )
    update = (
        f"UPDATE {keys.table} SET master_key_id = $2, wrapped_key = $3, {keys.rewrapped_column} = now()"
        f" WHERE {keys.id_column} = $1"
    )
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(select, current.key_id, after, batch_size)
            for row in rows:
                old = ring.by_id(row["master_key_id"])
                try:
                    if old is None:
                        raise SealedBlobError(f"master key {row['master_key_id']!r} is not configured")
                    data_key = unwrap_data_key(old, row["id"], bytes(row["wrapped_key"]))
                except SealedBlobError:
                    unreadable += 1
                    continue
                await conn.execute(update, row["id"], current.key_id, wrap_data_key(current, row["id"], data_key))
                done += 1
        if len(rows) < batch_size:
            return done, unreadable
        after = rows[-1]["id"]

