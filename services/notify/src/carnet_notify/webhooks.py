"""SMS and push deliveries through the providers' HTTP webhooks.

Each delivery attempt is one ``POST`` of a small JSON document to the channel's
webhook (see the README for its fields), with the delivery id as ``Idempotency-Key``
so that a provider can drop the duplicate of an attempt whose answer was lost. A 2xx
answer means delivered; 408, 429, 5xx, time-outs and connection failures are worth
another try (a ``Retry-After`` is honoured); any other answer is a permanent refusal.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from carnet_notify.delivery import DeliveryError
from carnet_notify.domain import MASKED_SECRET, SECRET_PARAMETERS
from carnet_notify.kinds import Channel
from carnet_notify.store import ClaimedDelivery
from carnet_notify.templates import render_push, render_sms

WEBHOOK_CHANNELS = frozenset({Channel.SMS, Channel.PUSH})
"""The channels sent through an HTTP webhook."""

TRANSIENT_STATUSES = frozenset({408, 425, 429})
"""4xx answers that mean "not now" rather than "never"; every 5xx is transient too."""

ANSWER_LIMIT = 300
"""Characters of the provider's answer kept in the attempt's detail."""

_READ_LIMIT = 4096


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay in seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _redacted(text: str, parameters: dict[str, str]) -> str:
    """The provider's answer without any secret it may echo back (a code must not land in the attempt log)."""
    for name in SECRET_PARAMETERS:
        secret = parameters.get(name, "")
        if secret:
            text = text.replace(secret, MASKED_SECRET)
    return re.sub(r"\s+", " ", text).strip()[:ANSWER_LIMIT]


@dataclass(frozen=True)
class WebhookSender:
    """Posts the deliveries of one channel (SMS or push) to its provider's webhook."""

    channel: Channel
    url: str
    client: httpx.AsyncClient
    secret: str = ""

    def __post_init__(self) -> None:
        if self.channel not in WEBHOOK_CHANNELS:
            raise ValueError(f"{self.channel.value} is not sent through a webhook")

    def payload(self, delivery: ClaimedDelivery) -> dict[str, Any]:
        """The JSON document posted for ``delivery``: who, and the short French text; never medical content."""
        try:
            if self.channel is Channel.SMS:
                content: dict[str, str] = {"text": render_sms(delivery.kind, delivery.parameters)}
            else:
                push = render_push(delivery.kind, delivery.parameters)
                content = {"title": push.title, "text": push.body}
        except KeyError as exc:
            raise DeliveryError(f"cannot render: {exc}", permanent=True) from exc
        return {
            "message_id": str(delivery.delivery_id),
            "channel": self.channel.value,
            "kind": delivery.kind.value,
            "to": delivery.destination,
            **content,
        }

    async def send(self, delivery: ClaimedDelivery) -> str:
        """POST one attempt; return ``HTTP <status> <reason>: <answer>`` or raise :class:`DeliveryError`."""
        body = self.payload(delivery)
        headers = {"Idempotency-Key": str(delivery.delivery_id), "User-Agent": "carnet-notify"}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        try:
            async with self.client.stream("POST", self.url, json=body, headers=headers) as response:
                received = b""
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if len(received) >= _READ_LIMIT:
                        break
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"timeout ({type(exc).__name__})", permanent=False) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
        text = received[:_READ_LIMIT].decode("utf-8", errors="replace")
        answer = _redacted(f"HTTP {response.status_code} {response.reason_phrase}: {text}", delivery.parameters)
        if response.is_success:
            return answer
        status = response.status_code
        if status in TRANSIENT_STATUSES or status >= 500:
            raise DeliveryError(answer, permanent=False, retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        raise DeliveryError(answer, permanent=True)
