"""``python -m carnet_identity`` serves; ``seed-demo`` seeds the demo population; ``import FILE`` enrols a CSV."""

from __future__ import annotations

import argparse
import asyncio
import sys

from carnet_identity.app import build, prepare_database
from carnet_identity.cli import run_import
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
    """Entry point: ``serve`` (the default), ``seed-demo`` or ``import FILE``, configured by CARNET_* variables."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["import"]:
        # Bulk enrolment client (see carnet_identity.cli): python -m carnet_identity import FILE
        raise SystemExit(run_import(arguments[1:], f"{PROGRAM} import"))
    parser = argparse.ArgumentParser(prog=PROGRAM, description="Carnet identity service")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "seed-demo", "import"])
    args = parser.parse_args(arguments)
    if args.command == "seed-demo":
        settings = load_or_exit(IdentitySettings, PROGRAM)
        configure_logging(settings.log_level)
        asyncio.run(_seed(settings))
        return
    run_service(PROGRAM, IdentitySettings, build)


if __name__ == "__main__":
    main()
