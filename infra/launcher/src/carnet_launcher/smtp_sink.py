"""A local SMTP server that accepts every message and files it in the mailbox directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from .errors import InfraError
from .ports import LOOPBACK

READY_TIMEOUT = 10.0
SERVER_NAME = "smtp-sink.carnet.test"


def message_filename(now: datetime | None = None) -> str:
    """``<UTC YYYYmmddTHHMMSSffffff>-<uuid4 hex>.eml``: sorts by arrival, never collides."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{uuid.uuid4().hex}.eml"


def store_message(mailbox: Path, mail_from: str, rcpt_tos: list[str], content: bytes) -> Path:
    """Write one received message to ``mailbox`` as an RFC 5322 file and return its path."""
    newline = b"\r\n" if b"\r\n" in content[:4096] else b"\n"
    # Delivery trace headers, as a final MTA adds them: the envelope is otherwise lost
    # (Bcc recipients appear nowhere in the message itself).
    trace = [f"Return-Path: <{mail_from}>".encode()]
    trace += [f"Delivered-To: {rcpt}".encode() for rcpt in rcpt_tos]
    mailbox.mkdir(parents=True, exist_ok=True)
    final = mailbox / message_filename()
    # Written under a dot name then renamed, so a reader listing *.eml never sees half a mail.
    partial = mailbox / f".{final.name}.part"
    partial.write_bytes(newline.join(trace) + newline + content)
    os.replace(partial, final)
    return final


class MailboxHandler:
    """aiosmtpd handler filing each message with :func:`store_message`."""

    def __init__(self, mailbox: Path) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message and accept it."""
        content = envelope.original_content or b""
        await asyncio.to_thread(
            store_message,
            self.mailbox,
            envelope.mail_from or "",
            list(envelope.rcpt_tos),
            content,
        )
        return "250 Message accepted for delivery"


class SmtpSink:
    """The SMTP sink, serving on its own thread and event loop inside the launcher process."""

    def __init__(self, mailbox: Path, port: int, host: str = LOOPBACK) -> None:
        self.mailbox = mailbox
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen on ``host:port``; return once the server accepts connections."""
        self.mailbox.mkdir(parents=True, exist_ok=True)
        ready: Future[None] = Future()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._serve, args=(loop, ready), name="carnet-smtp-sink", daemon=True
        )
        thread.start()
        try:
            ready.result(timeout=READY_TIMEOUT)
        except OSError as exc:
            thread.join(READY_TIMEOUT)  # the thread closes its loop itself
            raise InfraError(f"SMTP sink cannot listen on {self.host}:{self.port}: {exc}") from None
        except TimeoutError:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(READY_TIMEOUT)
            raise InfraError(
                f"SMTP sink did not start listening on {self.host}:{self.port} "
                f"within {READY_TIMEOUT:g} s"
            ) from None
        self._loop, self._thread = loop, thread

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: Future[None]) -> None:
        asyncio.set_event_loop(loop)
        handler = MailboxHandler(self.mailbox)
        try:
            server = loop.run_until_complete(
                loop.create_server(
                    lambda: SMTP(handler, hostname=SERVER_NAME, enable_SMTPUTF8=True),
                    host=self.host,
                    port=self.port,
                )
            )
        except OSError as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            server.close()
            sessions = asyncio.all_tasks(loop)
            for session in sessions:
                session.cancel()
            loop.run_until_complete(asyncio.gather(*sessions, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def stop(self) -> None:
        """Stop listening (messages already filed stay)."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(READY_TIMEOUT)
        self._loop = self._thread = None
