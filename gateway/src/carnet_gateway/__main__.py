"""``python -m carnet_gateway``: the HTTP edge on ``CARNET_HTTP_LISTEN``."""

from __future__ import annotations

import uvicorn

from carnet_gateway.app import create_app
from carnet_gateway.settings import GatewaySettings
from carnet_kit.config import load_or_exit
from carnet_kit.server import configure_logging
from carnet_kit.telemetry import setup_telemetry


def main() -> None:
    """Command-line entry point."""
    settings = load_or_exit(GatewaySettings, "carnet-gateway")
    configure_logging(settings.log_level)
    setup_telemetry("carnet-gateway")
    config = uvicorn.Config(
        create_app(settings),
        host=settings.http_listen.host,
        port=settings.http_listen.port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        access_log=True,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
