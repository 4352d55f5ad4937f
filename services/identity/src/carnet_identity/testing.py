"""Identity for other services' tests: started in-process, trusting a test token factory as well as its
own keys (the service tokens it issues), and knowing the platform services' secrets of a directory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from carnet_identity.app import build
from carnet_identity.settings import IdentitySettings
from carnet_kit.auth import TokenVerifier
from carnet_kit.config import load
from carnet_kit.peers import jwks_fetcher
from carnet_kit.server import ServiceApp
from carnet_kit.testing import TokenFactory, free_port


@contextlib.asynccontextmanager
async def running_identity(
    database_url: str, redis_url: str, trusted: TokenFactory, service_secrets_dir: Path
) -> AsyncIterator[ServiceApp]:
    """A running identity on a free port; its own notices (activation codes) go to a port nobody serves."""
    port = free_port()

    async def keys() -> dict[str, Any]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            own = await jwks_fetcher(channel)()
        return {"keys": [*trusted.jwks()["keys"], *own["keys"]]}

    settings = load(
        IdentitySettings,
        {
            "CARNET_GRPC_LISTEN": f"127.0.0.1:{port}",
            "CARNET_SERVICE_SECRETS_DIR": str(service_secrets_dir),
            "CARNET_DATABASE_URL": database_url,
            "CARNET_REDIS_URL": redis_url,
            "CARNET_NOTIFY_ADDR": f"127.0.0.1:{free_port()}",
            "CARNET_PROFILE": "test",
            "CARNET_CALL_TIMEOUT_SECONDS": "2",
            "CARNET_GRACE_SECONDS": "0",
        },
    )
    app = await build(settings, verifier=TokenVerifier(keys))
    await app.start()
    try:
        yield app
    finally:
        await app.stop(0)
