"""Activation notices: made with the code, sent later by a worker through notify, with retries.

Enrolment writes the code's digest and a pending notice (holding the plain code) in
the same transaction as the person, so a notice is never lost and an import of a
million rows does not wait for notify. The worker sends due notices in batches
(``FOR UPDATE SKIP LOCKED``: several replicas share them), with ``request_id`` = the
code id, so that a retry after a lost answer creates no second notification. The plain
code is erased as soon as notify has accepted the notice (or has refused it for good).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable

import grpc

from carnet_identity.domain.accounts import is_minor
from carnet_identity.domain.credentials import activation_code_digest, new_activation_code
from carnet_identity.domain.model import Channel
from carnet_identity.keys import utcnow
from carnet_identity.notifier import Notifier
from carnet_identity.store_persons import DueNotice, NewActivationCode, PersonStore
from carnet_kit.status import parse_rpc_error

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
FIRST_RETRY = dt.timedelta(seconds=5)
MAX_RETRY = dt.timedelta(hours=1)
# Failures worth retrying; anything else (a refused notice) will not get better.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


def new_code(person_id: uuid.UUID, channel: str, email: str) -> NewActivationCode:
    """A fresh activation code for a person, with its digest and where its notice goes."""
    code_id = uuid.uuid4()
    code = new_activation_code()
    return NewActivationCode(code_id, person_id, activation_code_digest(code_id.bytes, code), code, channel, email)


def retry_delay(attempts: int) -> dt.timedelta:
    """Exponential backoff: 5 s, 10 s, 20 s… capped at an hour."""
    delay: dt.timedelta = FIRST_RETRY * (2 ** min(max(0, attempts), 20))
    return min(delay, MAX_RETRY)


def french_date(moment: dt.datetime) -> str:
    """A deadline as a French reader expects it (day/month/year, Paris is UTC+1/+2: the date is what matters)."""
    return moment.strftime("%d/%m/%Y")


def notice_parameters(notice: DueNotice) -> dict[str, str]:
    """The template parameters of an activation notice (the letter's address for a letter)."""
    parameters = {
        "activation_code": notice.code,
        "opposition_deadline": french_date(notice.opposition_deadline) if notice.opposition_deadline else "",
        "first_name": notice.first_name,
    }
    if notice.channel == Channel.LETTER.value and notice.postal_address:
        address = notice.postal_address
        lines = [*address.get("lines", []), f"{address.get('postal_code', '')} {address.get('city', '')}".strip()]
        parameters["postal_address"] = "\n".join(line for line in lines if line)
    return parameters


def notice_route(notice: DueNotice, today: dt.date) -> tuple[Channel, str]:
    """Channel and e-mail of a notice: a minor's goes by e-mail to the legal representative when one is known."""
    if notice.birth_date is not None and notice.representative_email and is_minor(notice.birth_date, today):
        return Channel.EMAIL, notice.representative_email
    return Channel(notice.channel), notice.email


class NoticeWorker:
    """Sends pending activation notices through notify until cancelled."""

    def __init__(
        self,
        store: PersonStore,
        notifier: Notifier,
        *,
        batch_size: int = 64,
        poll_interval: float = 1.0,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._clock = clock

    async def _send(self, notice: DueNotice) -> grpc.aio.AioRpcError | None:
        channel, email = notice_route(notice, self._clock().date())
        try:
            await self._notifier.send_activation_notice(
                request_id=str(notice.code_id),
                recipient_id=notice.person_id,
                channel=channel,
                email=email,
                parameters=notice_parameters(notice),
            )
        except grpc.aio.AioRpcError as exc:
            return exc
        return None

    async def run_once(self) -> int:
        """Send one batch of due notices; how many were due."""
        now = self._clock()
        async with self._store.transaction() as tx:
            due = await tx.due_notices(now, self._batch_size)
            if not due:
                return 0
            outcomes = await asyncio.gather(*(self._send(notice) for notice in due))
            sent = [notice.code_id for notice, error in zip(due, outcomes, strict=True) if error is None]
            await tx.notice_sent(sent, now)
            for notice, error in zip(due, outcomes, strict=True):
                if error is None:
                    continue
                remote = parse_rpc_error(error)
                detail = f"{remote.code.name} {remote.reason} {remote.message}".strip()
                if remote.code in TRANSIENT and notice.attempts + 1 < MAX_ATTEMPTS:
                    await tx.notice_retry(notice.code_id, now + retry_delay(notice.attempts), detail)
                else:
                    log.warning("activation notice %s given up: %s", notice.code_id, detail)
                    await tx.notice_failed(notice.code_id, detail)
        return len(due)

    async def run(self) -> None:
        """Send until cancelled; survives notify or database hiccups."""
        while True:
            try:
                while await self.run_once() == self._batch_size:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("activation notice worker failed; will retry")
            await asyncio.sleep(self._poll_interval)
