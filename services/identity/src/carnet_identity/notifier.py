"""Messages identity sends through notify (one-time codes today; activation notices with issue 3).

Calls carry identity's own service token, set explicitly as ``authorization``
metadata so that a caller's token is never forwarded. ``request_id`` makes each
call idempotent, which is what allows the channel to retry it on UNAVAILABLE.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import grpc

from carnet.common.v1 import common_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_identity.domain.model import Channel
from carnet_identity.settings import IdentitySettings
from carnet_identity.tokens import ServiceTokenSource
from carnet_kit.channels import create_channel
from carnet_kit.errors import Unavailable
from carnet_kit.status import parse_rpc_error

log = logging.getLogger(__name__)

NOTIFY_SERVICE = "carnet.notify.v1.NotifyService"
_PROTO_CHANNEL = {
    Channel.EMAIL: common_pb2.DELIVERY_CHANNEL_EMAIL,
    Channel.SMS: common_pb2.DELIVERY_CHANNEL_SMS,
    Channel.LETTER: common_pb2.DELIVERY_CHANNEL_LETTER,
}


def _no_forwarded_token() -> str:
    return ""


def notify_channel(settings: IdentitySettings) -> grpc.aio.Channel:
    """A channel to notify; CreateNotification is retried on UNAVAILABLE (idempotent by request_id)."""
    return create_channel(
        settings.notify_addr,
        idempotent={NOTIFY_SERVICE: ["CreateNotification"]},
        timeout=settings.call_timeout_seconds,
        token=_no_forwarded_token,
    )


class Notifier:
    """Sends identity's messages through notify."""

    def __init__(self, channel: grpc.aio.Channel, service_tokens: ServiceTokenSource, *, timeout: float) -> None:
        self._stub = notify_service_pb2_grpc.NotifyServiceStub(channel)
        self._service_tokens = service_tokens
        self._timeout = timeout

    async def send_one_time_code(
        self,
        *,
        challenge_id: uuid.UUID,
        recipient_id: uuid.UUID,
        channel: Channel,
        destination: str,
        code: str,
        expires_at: dt.datetime,
    ) -> None:
        """Send a login code; UNAVAILABLE if notify did not accept it (the code is then unusable)."""
        notification = resources_pb2.Notification(
            recipient_id=str(recipient_id),
            kind=resources_pb2.NOTIFICATION_KIND_ONE_TIME_CODE,
            channels=[_PROTO_CHANNEL[channel]],
            parameters={"code": code, "expire_time": expires_at.isoformat(timespec="seconds")},
        )
        if channel is Channel.SMS:
            notification.phone = destination
        else:
            notification.email = destination
        request = notify_service_pb2.CreateNotificationRequest(notification=notification, request_id=str(challenge_id))
        token = await self._service_tokens.token()
        try:
            await self._stub.CreateNotification(
                request, timeout=self._timeout, metadata=(("authorization", f"Bearer {token}"),)
            )
        except grpc.aio.AioRpcError as exc:
            remote = parse_rpc_error(exc)
            log.warning(
                "notify refused or missed a one-time code: %s %s %s", remote.code, remote.reason, remote.message
            )
            raise Unavailable(
                "the one-time code could not be sent; try again later",
                reason="NOTIFY_UNAVAILABLE",
                metadata={"notify_status": remote.code.name},
            ) from exc

    async def send_activation_notice(
        self,
        *,
        request_id: str,
        recipient_id: uuid.UUID,
        channel: Channel,
        email: str,
        parameters: dict[str, str],
    ) -> None:
        """Hand an activation notice (e-mail, or a letter record) to notify; raises the remote error as is.

        The caller (the notice worker) tells transient failures from permanent ones.
        """
        notification = resources_pb2.Notification(
            recipient_id=str(recipient_id),
            kind=resources_pb2.NOTIFICATION_KIND_ACTIVATION_NOTICE,
            channels=[_PROTO_CHANNEL[channel]],
            parameters=parameters,
            email=email if channel is Channel.EMAIL else "",
        )
        request = notify_service_pb2.CreateNotificationRequest(notification=notification, request_id=request_id)
        token = await self._service_tokens.token()
        await self._stub.CreateNotification(
            request, timeout=self._timeout, metadata=(("authorization", f"Bearer {token}"),)
        )
