"""Multipart uploads read whole into memory and split in one pass, for the deposit routes.

A deposit is a small multipart form (a metadata field and one file, 100 KiB typically).
Starlette's form parser feeds the body through python-multipart's byte-level state machine
and spools the file to a temporary file: several times the CPU of the deposit's own work
in the gateway. Here a body of a known, bounded length is read at once and cut at its
boundaries with ``bytes.find``. Anything this reader does not recognise (no length or a
large one, a header it does not know, a malformed part) is left to Starlette's parser,
so no request is answered differently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile  # what request.form() gives (FastAPI's is a subclass)

MAX_IN_MEMORY_BODY = 32 * 1024 * 1024
"""Bodies up to this length are read whole (a deposit is at most 20 MiB); longer ones are streamed."""

_KNOWN_PART_HEADERS = frozenset({b"content-disposition", b"content-type"})


@dataclass(frozen=True)
class FormPart:
    """One part of a multipart form."""

    data: bytes
    filename: str | None
    content_type: str


def split_multipart(body: bytes, boundary: bytes) -> dict[str, FormPart] | None:
    """The parts of a ``multipart/form-data`` body by name; None if it is not a plain, well-formed one."""
    delimiter = b"--" + boundary
    position = body.find(delimiter)
    if position < 0:
        return None
    parts: dict[str, FormPart] = {}
    while True:
        position += len(delimiter)
        if body.startswith(b"--", position):
            return parts
        if not body.startswith(b"\r\n", position):
            return None
        headers_end = body.find(b"\r\n\r\n", position + 2)
        if headers_end < 0:
            return None
        name, filename, content_type = _part_headers(body[position + 2 : headers_end])
        if name is None or name in parts:
            return None
        data_start = headers_end + 4
        data_end = body.find(b"\r\n" + delimiter, data_start)
        if data_end < 0:
            return None
        parts[name] = FormPart(body[data_start:data_end], filename, content_type)
        position = data_end + 2


def _part_headers(block: bytes) -> tuple[str | None, str | None, str]:
    name: str | None = None
    filename: str | None = None
    content_type = ""
    for line in block.split(b"\r\n"):
        key, sep, value = line.partition(b":")
        key = key.strip().lower()
        if not sep or key not in _KNOWN_PART_HEADERS:
            return None, None, ""
        if key == b"content-type":
            content_type = value.strip().decode("latin-1")
            continue
        disposition, options = parse_options_header(value.strip())
        if disposition != b"form-data" or b"name" not in options or any(b"*" in option for option in options):
            return None, None, ""
        name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            filename = options[b"filename"].decode("utf-8", "replace")
    return name, filename, content_type


@dataclass(frozen=True)
class DepositForm:
    """A deposit's two fields: the metadata JSON and the file (in memory, or spooled by Starlette)."""

    metadata: str
    content: bytes | UploadFile

    @property
    def size(self) -> int | None:
        """The file's size in bytes, when known."""
        if isinstance(self.content, bytes):
            return len(self.content)
        return self.content.size

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The file's bytes in pieces of at most ``size``."""
        if isinstance(self.content, bytes):
            if len(self.content) <= size:
                yield self.content  # no copy for the usual, small document
                return
            view = memoryview(self.content)
            for offset in range(0, len(view), size):
                yield bytes(view[offset : offset + size])
            return
        while chunk := await self.content.read(size):
            yield chunk


def _missing(field: str) -> RequestValidationError:
    return RequestValidationError([{"type": "missing", "loc": ("body", field), "msg": "Field required", "input": None}])


async def read_deposit_form(request: Request, *, metadata_field: str = "metadata", file_field: str = "file") -> DepositForm:
    """The metadata field (text) and the file field (bytes) of a multipart deposit.

    A missing or mistyped field is the same 400 problem as FastAPI's own form validation
    gives (``field`` = ``body.<name>``).
    """
    content_type = request.headers.get("content-type", "")
    mime, options = parse_options_header(content_type)
    length = request.headers.get("content-length", "")
    if mime == b"multipart/form-data" and options.get(b"boundary") and length.isdigit() and int(length) <= MAX_IN_MEMORY_BODY:
        parts = split_multipart(await request.body(), options[b"boundary"])
        if parts is not None:
            metadata, file = parts.get(metadata_field), parts.get(file_field)
            if metadata is None:
                raise _missing(metadata_field)
            if file is None:
                raise _missing(file_field)
            if metadata.filename is None and file.filename is not None:
                try:
                    return DepositForm(metadata.data.decode("utf-8"), file.data)
                except UnicodeDecodeError:
                    pass  # Starlette's parser decides what such a field is
    return await _read_with_starlette(request, metadata_field, file_field)


async def _read_with_starlette(request: Request, metadata_field: str, file_field: str) -> DepositForm:
    form = await request.form()
    metadata, file = form.get(metadata_field), form.get(file_field)
    if metadata is None:
        raise _missing(metadata_field)
    if not isinstance(metadata, str):
        raise RequestValidationError(
            [{"type": "string_type", "loc": ("body", metadata_field), "msg": "Input should be a valid string", "input": None}]
        )
    if file is None:
        raise _missing(file_field)
    if not isinstance(file, UploadFile):
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", file_field), "msg": "Expected UploadFile", "input": None}]
        )
    return DepositForm(metadata, file)
