"""``python -m carnet_identity`` serves; ``python -m carnet_identity seed-demo`` seeds the demo population."""

from __future__ import annotations

import argparse
import asyncio
import sys

from carnet_identity.app import build, prepare_database
from carnet_identity.seed import describe, seed_demo
from carnet_identity.settings import IdentitySettings
from carnet_kit.config import load_or_exit
from carnet_kit.server import configure_logging, run_service

PROGRAM = "carnet-identity"


async def _seed(settings: IdentitySettings) -> None:
    store = await prepare_database(settings)
    try:
        report = await seed_demo(store, secrets_dir=settings.secrets_dir)
    finally:
        await store.close()
    print(describe(report))


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``serve`` (the default) or ``seed-demo``, configured by CARNET_* variables."""
    parser = argparse.ArgumentParser(prog=PROGRAM, description="Carnet identity service")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "seed-demo"])
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "seed-demo":
        settings = load_or_exit(IdentitySettings, PROGRAM)
        configure_logging(settings.log_level)
        asyncio.run(_seed(settings))
        return
    run_service(PROGRAM, IdentitySettings, build)


if __name__ == "__main__":
    main()
