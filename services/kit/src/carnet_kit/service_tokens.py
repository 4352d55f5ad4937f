"""A platform service's own token, for the work no caller's token covers.

A service handling an event or running a scheduled job has no caller: notify telling a
holder about a break-glass access, or computing the day's prevention reminders, still
has to ask identity for the holder's contact points and birth date. It then speaks for
itself, with a token identity issues to it (role ``service``, subject the service's
name) through the client-credentials grant, in exchange for the service's secret.

The secrets are configuration: identity reads every platform service's secret from one
directory (a file per service, named by the service, holding its secret), and each
service reads its own from a file. The same secret store feeds both (a Kubernetes Secret
with one key per service, mounted whole into identity and one item into each service).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc

from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet_kit.config import ConfigError
from carnet_kit.errors import Unavailable
from carnet_kit.status import parse_rpc_error

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32
"""A service secret is at least this many characters (``secrets.token_urlsafe(32)`` gives 43)."""
RENEW_MARGIN = dt.timedelta(seconds=60)
"""A token is renewed when it has less than this left to live."""
SERVICE_NAMES = ("identity", "consent", "dossier", "imaging", "notify")
"""The platform's services: the only names a service secret may be filed under."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_service_secret(path: Path, variable: str) -> str:
    """The secret held in ``path`` (surrounding white space ignored); ``ConfigError`` naming ``variable`` if unusable."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(variable, f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(variable, f"{path} is not UTF-8 text") from None
    if len(secret) < MIN_SECRET_LENGTH or any(ch.isspace() for ch in secret):
        raise ConfigError(variable, f"{path} must hold one secret of at least {MIN_SECRET_LENGTH} characters")
    return secret


def read_service_secrets(directory: Path, variable: str) -> dict[str, str]:
    """Every platform service's secret, by service name, from the files of ``directory``.

    Hidden entries (a mounted Kubernetes Secret's ``..data`` links) are skipped; a file
    named after no service is refused, so that a typo does not silently lock a service out.
    """
    if not directory.is_dir():
        raise ConfigError(variable, f"{directory} is not a directory")
    found: dict[str, str] = {}
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name not in SERVICE_NAMES:
            raise ConfigError(variable, f"{entry.name} in {directory} names no platform service ({', '.join(SERVICE_NAMES)})")
        found[entry.name] = read_service_secret(entry, variable)
    return found


class ServiceSecrets:
    """Identity's side: recognises a platform service by its name and secret (compared in constant time)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self._secrets = dict(secrets)

    def __contains__(self, name: object) -> bool:
        return name in self._secrets

    def matches(self, name: str, secret: str) -> bool:
        """Whether ``secret`` is the secret of service ``name``."""
        expected = self._secrets.get(name)
        if expected is None:
            return False
        return hmac.compare_digest(expected.encode(), secret.encode())


class ServiceTokens:
    """A service's own access token from identity, fetched when first needed and renewed before it expires."""

    def __init__(
        self,
        identity: grpc.aio.Channel,
        name: str,
        secret: str,
        *,
        timeout: float,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._stub = identity_service_pb2_grpc.IdentityServiceStub(identity)
        self._name = name
        self._secret = secret
        self._timeout = timeout
        self._clock = clock
        self._token = ""
        self._expires_at = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """A valid token; ``Unavailable`` (DEPENDENCY_UNAVAILABLE) when identity cannot give one."""
        if self._expires_at - self._clock() > RENEW_MARGIN:
            return self._token
        async with self._lock:  # one exchange for everyone waiting
            if self._expires_at - self._clock() > RENEW_MARGIN:
                return self._token
            try:
                granted = await self._stub.ExchangeClientCredentials(
                    identity_service_pb2.ExchangeClientCredentialsRequest(
                        client_id=self._name, client_secret=self._secret
                    ),
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as error:
                remote = parse_rpc_error(error)
                log.warning("identity refused %s's service token: %s %s", self._name, remote.code.name, remote.reason)
                raise Unavailable(
                    f"identity gave {self._name} no service token: {remote.message}", reason="DEPENDENCY_UNAVAILABLE"
                ) from None
            self._token = granted.access_token
            self._expires_at = self._clock() + dt.timedelta(seconds=granted.expires_in)
            return self._token

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata carrying the service's token (for a call made on the service's own behalf)."""
        return (("authorization", f"Bearer {await self.token()}"),)
