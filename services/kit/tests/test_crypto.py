"""Sealing blobs and wrapping data keys (carnet_kit.crypto), without a database."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carnet_kit.config import ConfigError
from carnet_kit.crypto import (
    HEADER_BYTES,
    SEGMENT_BYTES,
    TAG_BYTES,
    MasterKey,
    MasterKeyRing,
    SealedBlobError,
    new_data_key,
    new_master_key_line,
    open_blob,
    open_stream,
    seal,
    sealed_size,
    unwrap_data_key,
    wrap_data_key,
)

CONTEXT = "documents/h/d"
SIZES = [0, 1, SEGMENT_BYTES - 1, SEGMENT_BYTES, SEGMENT_BYTES + 1, 3 * SEGMENT_BYTES + 17]


async def chunks_of(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for size in sizes:
        yield data[start : start + size]
        start += size
    yield data[start:]


@pytest.mark.parametrize("size", SIZES)
async def test_a_sealed_blob_opens_to_the_same_bytes_and_has_the_announced_size(size: int) -> None:
    key = new_data_key()
    plain = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sealed = seal(key, CONTEXT, plain)
    assert len(sealed) == sealed_size(size)
    assert await open_blob(key, CONTEXT, sealed) == plain
    # Two seals of the same bytes differ (fresh nonce prefix).
    assert seal(key, CONTEXT, plain) != sealed


@settings(max_examples=40, deadline=None)
@given(
    plain=st.binary(max_size=3 * SEGMENT_BYTES // 2),
    cuts=st.lists(st.integers(min_value=0, max_value=SEGMENT_BYTES + 40), max_size=8),
)
async def test_any_chunking_of_the_stream_opens_the_blob(plain: bytes, cuts: list[int]) -> None:
    key = new_data_key()
    sealed = seal(key, CONTEXT, plain)
    opened = [part async for part in open_stream(key, CONTEXT, chunks_of(sealed, cuts))]
    assert b"".join(opened) == plain


def _segments(sealed: bytes) -> tuple[bytes, list[bytes]]:
    body = sealed[HEADER_BYTES:]
    whole = SEGMENT_BYTES + TAG_BYTES
    return sealed[:HEADER_BYTES], [body[i : i + whole] for i in range(0, len(body), whole)]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda header, segments: header + b"".join(reversed(segments)), id="segments-reordered"),
        pytest.param(lambda header, segments: header + b"".join(segments[:-1]), id="last-segment-dropped"),
        pytest.param(lambda header, segments: header + b"".join([*segments, segments[-1]]), id="segment-repeated"),
        pytest.param(lambda header, segments: header[:-1] + b"\0" + b"".join(segments), id="nonce-prefix-changed"),
        pytest.param(lambda header, segments: b"XXXX" + header[4:] + b"".join(segments), id="not-sealed"),
        pytest.param(lambda header, segments: header[:5], id="cut-in-header"),
    ],
)
async def test_a_tampered_blob_does_not_open(tamper) -> None:  # type: ignore[no-untyped-def]
    key = new_data_key()
    sealed = seal(key, CONTEXT, b"x" * (2 * SEGMENT_BYTES + 5))
    header, segments = _segments(sealed)
    with pytest.raises(SealedBlobError):
        await open_blob(key, CONTEXT, tamper(header, segments))


async def test_a_blob_opens_only_with_its_key_and_at_its_place() -> None:
    key = new_data_key()
    sealed = seal(key, CONTEXT, b"compte rendu")
    with pytest.raises(SealedBlobError):
        await open_blob(new_data_key(), CONTEXT, sealed)
    # Copied under another document's key in the object store, it does not open either.
    with pytest.raises(SealedBlobError):
        await open_blob(key, "documents/h/other", sealed)


def test_a_wrapped_data_key_is_bound_to_its_holder_and_master_key() -> None:
    master = MasterKey("k1", bytes(range(32)))
    holder = uuid.uuid4()
    data_key = new_data_key()
    wrapped = wrap_data_key(master, holder, data_key)
    assert data_key not in wrapped
    assert unwrap_data_key(master, holder, wrapped) == data_key
    for other_master, other_holder in ((MasterKey("k2", master.secret), holder), (master, uuid.uuid4())):
        with pytest.raises(SealedBlobError):
            unwrap_data_key(other_master, other_holder, wrapped)


def test_the_ring_takes_the_first_key_as_current_and_keeps_the_others_for_unwrapping() -> None:
    text = f"# rotated 2026-11\n{new_master_key_line('k2')}\n\n{new_master_key_line('k1')}\n"
    ring = MasterKeyRing.parse(text, source="CARNET_MASTER_KEY_FILE")
    assert ring.current.key_id == "k2"
    assert [key.key_id for key in ring.retired] == ["k1"]
    assert ring.by_id("k1") is ring.retired[0] and ring.by_id("k3") is None
    assert "k2" in repr(ring.current) and base64.b64encode(ring.current.secret).decode() not in repr(ring)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no master key"),
        ("# only a comment\n", "holds no master key"),
        ("k1\n", "line 1: expected <id>:<base64 key>"),
        ("k1:not*base64\n", "line 1: the key of 'k1' is not base64"),
        (f"k1:{base64.b64encode(bytes(16)).decode()}\n", "must be 32 bytes, not 16"),
        (f"{new_master_key_line('k1')}\n{new_master_key_line('k1')}\n", "line 2: key id 'k1' appears twice"),
    ],
)
def test_a_bad_key_file_is_a_config_error_naming_the_variable_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        MasterKeyRing.parse(text, source="CARNET_MASTER_KEY_FILE")
    assert raised.value.variable == "CARNET_MASTER_KEY_FILE"
    assert message in str(raised.value)
