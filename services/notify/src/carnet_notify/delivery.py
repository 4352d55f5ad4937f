"""Deliveries through providers: the worker, its retries, and the e-mail channel over SMTP.

The :class:`DeliveryWorker` runs in the background of every replica. It takes a lease
on due deliveries (so replicas share the work and a crashed one loses nothing), holds
back those over their recipient's rate limit until the next window, hands each other
one to the sender of its channel (e-mail here, SMS and push in ``webhooks.py``),
records the attempt, and schedules the next one with exponential backoff until the
attempts run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Literal, Protocol

import aiosmtplib
import asyncpg
from opentelemetry import metrics, trace

from carnet_notify.domain import RecipientRateLimit, RetryPolicy
from carnet_notify.kinds import AttemptOutcome, Channel, DeliveryState
from carnet_notify.store import ClaimedDelivery, NotifyStore
from carnet_notify.templates import RenderedEmail, render_email

log = logging.getLogger(__name__)
tracer = trace.get_tracer("carnet_notify.delivery")
_meter = metrics.get_meter("carnet_notify")
_attempts = _meter.create_counter(
    "carnet.notify.delivery_attempts", unit="{attempt}", description="Delivery attempts, by channel and outcome"
)
_postponed = _meter.create_counter(
    "carnet.notify.deliveries_postponed",
    unit="{delivery}",
    description="Deliveries held back to the next window by the recipient's rate limit, by channel",
)


class DeliveryError(Exception):
    """A send failed; ``permanent`` says whether trying again could help.

    ``retry_after`` is the provider's own wait before a new try, in seconds, if it gave one.
    """

    def __init__(self, detail: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.retry_after = retry_after


class ChannelSender(Protocol):
    """Hands the deliveries of one channel to its provider."""

    async def send(self, delivery: ClaimedDelivery) -> str:
        """Send one attempt of ``delivery``; return the provider's answer, or raise :class:`DeliveryError`."""
        ...


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


@dataclass(frozen=True)
class EmailSender:
    """The e-mail channel: the kind's French e-mail, from the platform's one sender, through SMTP."""

    transport: EmailTransport
    mail_from: str

    async def send(self, delivery: ClaimedDelivery) -> str:
        """Render and send one e-mail delivery; return the SMTP server's answer."""
        try:
            rendered = render_email(delivery.kind, delivery.parameters)
        except KeyError as exc:
            raise DeliveryError(f"cannot render: {exc}", permanent=True) from exc
        message = build_message(
            rendered, mail_from=self.mail_from, recipient=delivery.destination, message_key=str(delivery.delivery_id)
        )
        return await self.transport.send(message, delivery.destination)


class DeliveryWorker:
    """Sends due deliveries of the channels it has a sender for; woken after new notifications, polling otherwise.

    A channel without a sender in this replica (its provider not configured here) is left
    for a replica that has one.
    """

    def __init__(
        self,
        store: NotifyStore,
        senders: Mapping[Channel, ChannelSender],
        *,
        retry: RetryPolicy,
        rate_limit: RecipientRateLimit,
        lease_seconds: float,
        poll_seconds: float,
        batch_size: int = 20,
    ) -> None:
        self._store = store
        self._senders = dict(senders)
        self._retry = retry
        self._rate_limit = rate_limit
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._next_cleanup = datetime.min.replace(tzinfo=UTC)

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def _attempt(self, claimed: ClaimedDelivery) -> None:
        channel = claimed.channel.value
        with tracer.start_as_current_span(
            f"deliver {channel.lower()}",
            attributes={"carnet.delivery_id": str(claimed.delivery_id), "carnet.attempt": claimed.attempt_number},
        ):
            retry_after: float | None = None
            try:
                detail = await self._senders[claimed.channel].send(claimed)
                outcome = AttemptOutcome.SUCCEEDED
            except DeliveryError as exc:
                detail, retry_after = exc.detail, exc.retry_after
                outcome = AttemptOutcome.PERMANENT_FAILURE if exc.permanent else AttemptOutcome.TRANSIENT_FAILURE
            except Exception as exc:
                # Unknown failures are retried like transient ones; the attempts stay bounded.
                log.exception("unexpected failure sending %s delivery %s", channel, claimed.delivery_id)
                detail, outcome = f"{type(exc).__name__}: {exc}", AttemptOutcome.TRANSIENT_FAILURE
            state, retry_in = self._retry.after(outcome, claimed.attempt_number, retry_after)
            await self._store.finish_attempt(claimed, outcome, detail, state, retry_in)
        _attempts.add(1, {"channel": channel, "outcome": outcome.value})
        if state is DeliveryState.FAILED:
            log.error(
                "%s delivery %s failed for good after attempt %d: %s",
                channel,
                claimed.delivery_id,
                claimed.attempt_number,
                detail,
            )
        elif state is DeliveryState.RETRYING:
            log.warning(
                "%s delivery %s attempt %d failed (%s); next in %.1fs",
                channel,
                claimed.delivery_id,
                claimed.attempt_number,
                detail,
                retry_in,
            )

    async def _forget_old_counts(self) -> None:
        """Once per window, drop the rate-limit counters of windows before the previous one."""
        now = datetime.now(UTC)
        if now < self._next_cleanup:
            return
        window = timedelta(seconds=self._rate_limit.window_seconds)
        await self._store.forget_send_counts(now - 2 * window)
        self._next_cleanup = now + window

    async def run_once(self) -> int:
        """Attempt every delivery due now (postponing those over their rate limit); return how many were attempted."""
        if not self._senders:
            return 0
        await self._forget_old_counts()
        attempted = 0
        while True:
            batch = await self._store.claim_due(
                self._senders, self._batch_size, self._lease_seconds, self._rate_limit
            )
            for held in batch.postponed:
                _postponed.add(1, {"channel": held.channel.value})
                log.info(
                    "%s delivery %s over its recipient's rate limit; postponed to %s",
                    held.channel.value,
                    held.delivery_id,
                    held.until.isoformat(),
                )
            if not batch.claimed and not batch.postponed:
                return attempted
            await asyncio.gather(*(self._attempt(delivery) for delivery in batch.claimed))
            attempted += len(batch.claimed)

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
