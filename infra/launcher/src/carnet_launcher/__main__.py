"""Command line: ``python -m carnet_launcher {run,infra,stop} [--data-dir .carnet]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import Settings
from .errors import LauncherError
from .launch import EXIT_FAILURE, run_infra, run_platform, say, stop_data_dir
from .layout import DataDir

DEFAULT_DATA_DIR = ".carnet"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carnet-launcher",
        description="Run the whole Carnet platform on this machine (embedded profile).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--data-dir",
            default=DEFAULT_DATA_DIR,
            metavar="DIR",
            help=f"where databases, mail, objects and logs live (default: {DEFAULT_DATA_DIR})",
        )
        return command

    run = add("run", "start PostgreSQL, Redis, the SMTP sink, the five services and the gateway")
    run.add_argument("--no-seed", action="store_true", help="do not seed the demo population")
    add("infra", "start only PostgreSQL, Redis and the SMTP sink, and print their variables")
    add("stop", "stop whatever a launcher left running on the data directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``carnet-launcher``; returns the process exit status."""
    args = _parser().parse_args(argv)
    data = DataDir.at(args.data_dir)
    try:
        if args.command == "stop":
            return stop_data_dir(data)
        settings = Settings.resolve(data)
        if args.command == "infra":
            return run_infra(settings)
        return run_platform(settings, seed=not args.no_seed)
    except LauncherError as exc:
        say(str(exc))
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
