"""``carnet identity import FILE``: bulk enrolment from the insurer's CSV through identity's gRPC API.

The file is streamed to ``ImportPersons`` (header message, then 256 KiB chunks); a
progress bar on stderr follows what was sent (identity checks and stores rows as they
arrive), and the summary goes to stdout. Configuration, from the environment:

``CARNET_IDENTITY_ADDR``
    identity's gRPC address (default ``127.0.0.1:50051``).
``CARNET_TOKEN``
    a bearer access token of an operator or a service, used as is; or else
``CARNET_IMPORT_CLIENT_ID`` and ``CARNET_IMPORT_CLIENT_SECRET``
    a software client (kind ``insurer_registry``) granted the ``persons.import``
    scope; the CLI exchanges them for a token (client credentials) before importing.

Exit status: 0 every row went in (or was already there), 1 some rows were rejected,
2 the import could not run (file, address, credentials, refused request).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TextIO

import grpc

from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet_kit.status import parse_rpc_error

CHUNK_BYTES = 256 * 1024
DEFAULT_ADDR = "127.0.0.1:50051"
IMPORT_TIMEOUT_SECONDS = 6 * 3600.0
TOKEN_TIMEOUT_SECONDS = 10.0


class CliError(Exception):
    """The import could not run; the message says why."""


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a line every 10 % otherwise."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self._total = max(total, 1)
        self._stream = stream
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._last_step = -1

    def update(self, sent: int) -> None:
        """Show that ``sent`` bytes have gone."""
        fraction = min(sent / self._total, 1.0)
        elapsed = time.monotonic() - self._started
        rate = sent / elapsed / 1e6 if elapsed > 0 else 0.0
        bar = "#" * int(fraction * 30)
        text = f"importing [{bar:<30}] {fraction:4.0%}  {sent / 1e6:.1f}/{self._total / 1e6:.1f} MB  {rate:.1f} MB/s"
        if self._tty:
            self._stream.write("\r" + text)
        elif int(fraction * 10) > self._last_step:
            self._last_step = int(fraction * 10)
            self._stream.write(text + "\n")
        self._stream.flush()

    def done(self) -> None:
        """End the bar's line."""
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


async def _token(stub: identity_service_pb2_grpc.IdentityServiceAsyncStub) -> str:
    token = os.environ.get("CARNET_TOKEN", "").strip()
    if token:
        return token
    client_id = os.environ.get("CARNET_IMPORT_CLIENT_ID", "").strip()
    secret = os.environ.get("CARNET_IMPORT_CLIENT_SECRET", "")
    if not client_id or not secret:
        raise CliError("set CARNET_TOKEN, or CARNET_IMPORT_CLIENT_ID and CARNET_IMPORT_CLIENT_SECRET")
    granted = await stub.ExchangeClientCredentials(
        identity_service_pb2.ExchangeClientCredentialsRequest(
            client_id=client_id, client_secret=secret, scopes=["persons.import"]
        ),
        timeout=TOKEN_TIMEOUT_SECONDS,
    )
    return str(granted.access_token)


async def _requests(
    path: Path, dry_run: bool, progress: Progress
) -> AsyncIterator[identity_service_pb2.ImportPersonsRequest]:
    yield identity_service_pb2.ImportPersonsRequest(
        header=identity_service_pb2.ImportPersonsHeader(file_name=path.name, dry_run=dry_run)
    )
    sent = 0
    with path.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, CHUNK_BYTES):
            yield identity_service_pb2.ImportPersonsRequest(csv_chunk=chunk)
            sent += len(chunk)
            progress.update(sent)


def summary(path: Path, response: identity_service_pb2.ImportPersonsResponse, seconds: float, dry_run: bool) -> str:
    """What the import did, as printed on stdout."""
    rate = response.row_count / seconds if seconds > 0 else 0.0
    lines = [
        f"{'dry run of ' if dry_run else ''}import {response.import_id} of {path.name}:"
        f" {response.row_count} rows in {seconds:.1f} s ({rate:.0f} rows/s)",
        f"  created    {response.created_count}",
        f"  updated    {response.updated_count}",
        f"  unchanged  {response.unchanged_count}",
        f"  rejected   {response.rejected_count}",
    ]
    for error in response.errors:
        column = f" [{error.field}]" if error.field else ""
        lines.append(f"    line {error.line_number}{column} {error.reason}: {error.message}")
    if response.rejected_count > len(response.errors):
        lines.append(f"    … and {response.rejected_count - len(response.errors)} more rejected rows")
    return "\n".join(lines)


async def import_file(
    path: Path, size: int, *, addr: str, dry_run: bool, stdout: TextIO, stderr: TextIO
) -> int:
    """Stream ``path`` (``size`` bytes) to identity and print the summary; the exit status."""
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
        token = await _token(stub)
        progress = Progress(size, stderr)
        started = time.monotonic()
        response = await stub.ImportPersons(
            _requests(path, dry_run, progress),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=IMPORT_TIMEOUT_SECONDS,
        )
        progress.done()
    print(summary(path, response, time.monotonic() - started, dry_run), file=stdout)
    return 1 if response.rejected_count else 0


def run_import(argv: Sequence[str], prog: str) -> int:
    """Parse ``import FILE [--dry-run] [--addr HOST:PORT]`` and run it; the exit status."""
    parser = argparse.ArgumentParser(prog=prog, description="Enrol persons from the insurer's CSV file")
    parser.add_argument("file", type=Path, help="CSV file (UTF-8, header row; columns in the identity README)")
    parser.add_argument("--dry-run", action="store_true", help="check and count only; nothing is stored or sent")
    parser.add_argument(
        "--addr", default=os.environ.get("CARNET_IDENTITY_ADDR", DEFAULT_ADDR), help="identity's gRPC address"
    )
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"{prog}: {args.file}: no such file", file=sys.stderr)
        return 2
    size = args.file.stat().st_size
    try:
        return asyncio.run(
            import_file(args.file, size, addr=args.addr, dry_run=args.dry_run, stdout=sys.stdout, stderr=sys.stderr)
        )
    except CliError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
    except grpc.aio.AioRpcError as exc:
        remote = parse_rpc_error(exc)
        print(f"{prog}: {remote.code.name} {remote.reason}: {remote.message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> None:
    """The ``carnet`` command: ``carnet identity import FILE``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] != ["identity", "import"]:
        print("usage: carnet identity import FILE [--dry-run] [--addr HOST:PORT]", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(run_import(args[2:], "carnet identity import"))
