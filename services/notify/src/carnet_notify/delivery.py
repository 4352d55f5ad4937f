"""E-mail deliveries: building the message, sending it over SMTP, retrying with backoff.

The :class:`DeliveryWorker` runs in the background of every replica. It takes a lease
on due deliveries (so replicas share the work and a crashed one loses nothing), sends
each, records the attempt, and schedules the next one with exponential backoff until
the attempts run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal, Protocol

import aiosmtplib
import asyncpg
from opentelemetry import metrics, trace

from carnet_notify.domain import RetryPolicy
from carnet_notify.kinds import AttemptOutcome, DeliveryState
from carnet_notify.store import ClaimedDelivery, NotifyStore
from carnet_notify.templates import RenderedEmail, render_email

log = logging.getLogger(__name__)
tracer = trace.get_tracer("carnet_notify.delivery")
_meter = metrics.get_meter("carnet_notify")
_attempts = _meter.create_counter(
    "carnet.notify.delivery_attempts", unit="{attempt}", description="Delivery attempts, by channel and outcome"
)


class DeliveryError(Exception):
    """A send failed; ``permanent`` says whether trying again could help."""

    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent


class EmailTransport(Protocol):
    """Something that hands a message to a mail server."""

    async def send(self, message: EmailMessage, recipient: str) -> str:
        """Send; return the server's answer, or raise :class:`DeliveryError`."""
        ...


@dataclass(frozen=True)
class SmtpTransport:
    """Sends through an SMTP relay with ``aiosmtplib``, always from the platform's sender."""

    host: str
    port: int
    mail_from: str
    timeout: float
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password: str = ""

    async def send(self, message: EmailMessage, recipient: str) -> str:
        """Send ``message`` to ``recipient``; classify failures as transient or permanent."""
        try:
            _refused, answer = await aiosmtplib.send(
                message,
                sender=self.mail_from,
                recipients=[recipient],
                hostname=self.host,
                port=self.port,
                timeout=self.timeout,
                use_tls=self.security == "tls",
                start_tls=True if self.security == "starttls" else False,
                username=self.username or None,
                password=self.password or None,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            raise DeliveryError(f"recipient refused: {codes}", permanent=all(code >= 500 for code in codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}", permanent=500 <= exc.code < 600) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
        return answer


def build_message(rendered: RenderedEmail, *, mail_from: str, recipient: str, message_key: str) -> EmailMessage:
    """A multipart text + HTML message; its Message-ID is stable across retries of one delivery."""
    domain = mail_from.rpartition("@")[2]
    message = EmailMessage()
    message["From"] = email.utils.formataddr(("Carnet", mail_from))
    message["To"] = recipient
    message["Subject"] = rendered.subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = f"<{message_key}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    message["Content-Language"] = "fr"  # after the body: setting content drops Content-* headers
    return message


class DeliveryWorker:
    """Sends due e-mail deliveries; woken after new notifications, polling otherwise."""

    def __init__(
        self,
        store: NotifyStore,
        transport: EmailTransport,
        *,
        mail_from: str,
        retry: RetryPolicy,
        lease_seconds: float,
        poll_seconds: float,
        batch_size: int = 20,
    ) -> None:
        self._store = store
        self._transport = transport
        self._mail_from = mail_from
        self._retry = retry
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def _attempt(self, claimed: ClaimedDelivery) -> None:
        with tracer.start_as_current_span(
            "deliver email", attributes={"carnet.delivery_id": str(claimed.delivery_id), "carnet.attempt": claimed.attempt_number}
        ):
            try:
                rendered = render_email(claimed.kind, claimed.parameters)
            except KeyError as exc:
                outcome, detail = AttemptOutcome.PERMANENT_FAILURE, f"cannot render: {exc}"
            else:
                message = build_message(
                    rendered, mail_from=self._mail_from, recipient=claimed.destination, message_key=str(claimed.delivery_id)
                )
                try:
                    detail = await self._transport.send(message, claimed.destination)
                    outcome = AttemptOutcome.SUCCEEDED
                except DeliveryError as exc:
                    detail = exc.detail
                    outcome = AttemptOutcome.PERMANENT_FAILURE if exc.permanent else AttemptOutcome.TRANSIENT_FAILURE
                except Exception as exc:
                    # Unknown failures are retried like transient ones; the attempts stay bounded.
                    log.exception("unexpected failure sending e-mail delivery %s", claimed.delivery_id)
                    detail, outcome = f"{type(exc).__name__}: {exc}", AttemptOutcome.TRANSIENT_FAILURE
            state, retry_in = self._retry.after(outcome, claimed.attempt_number)
            await self._store.finish_attempt(claimed, outcome, detail, state, retry_in)
        _attempts.add(1, {"channel": "EMAIL", "outcome": outcome.value})
        if state is DeliveryState.FAILED:
            log.error(
                "e-mail delivery %s failed for good after attempt %d: %s", claimed.delivery_id, claimed.attempt_number, detail
            )
        elif state is DeliveryState.RETRYING:
            log.warning(
                "e-mail delivery %s attempt %d failed (%s); next in %.1fs",
                claimed.delivery_id,
                claimed.attempt_number,
                detail,
                retry_in,
            )

    async def run_once(self) -> int:
        """Attempt every delivery due now; return how many were attempted."""
        attempted = 0
        while True:
            claimed = await self._store.claim_due_emails(self._batch_size, self._lease_seconds)
            if not claimed:
                return attempted
            await asyncio.gather(*(self._attempt(delivery) for delivery in claimed))
            attempted += len(claimed)

    async def run(self) -> None:
        """Deliver until cancelled; survives database hiccups."""
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("delivery worker: %s; retrying", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._wake.wait()
