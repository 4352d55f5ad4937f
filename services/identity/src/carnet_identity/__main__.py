"""``python -m carnet_identity`` serves; ``seed-demo`` seeds the demo population; ``import FILE`` enrols a CSV;
``run-lifecycle-jobs`` applies the scheduled lifecycle transitions once."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
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


async def _run_lifecycle_jobs(settings: IdentitySettings, as_of: dt.datetime | None) -> None:
    from carnet_identity.hashing import SecretHasher
    from carnet_identity.jobs import LifecycleJobs
    from carnet_identity.lifecycle import Lifecycle
    from carnet_identity.sessions import RevocationList
    from carnet_identity.store_persons import PersonStore
    from carnet_identity.throttle import LoginThrottle
    from carnet_kit.redis_client import create_redis

    store = await prepare_database(settings)
    client = create_redis(settings.redis_url)
    try:
        people = PersonStore.sharing(store)
        throttle = LoginThrottle(
            client, max_failures=settings.login_max_failures, window_seconds=settings.login_failure_window_seconds
        )
        lifecycle = Lifecycle(people, store, SecretHasher(), throttle, RevocationList(client))
        done = await LifecycleJobs(people, lifecycle).run_once(as_of)
    finally:
        await client.aclose()
        await store.close()
    print(", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in done.items()))


def _lifecycle_jobs_command(arguments: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{PROGRAM} run-lifecycle-jobs",
        description="Run the scheduled lifecycle transitions once (every replica also runs them each minute).",
    )
    parser.add_argument(
        "--as-of",
        type=dt.date.fromisoformat,
        help="apply the transitions due at this date (embedded profile only: to rehearse the lifecycle in a demo)",
    )
    args = parser.parse_args(arguments)
    settings = load_or_exit(IdentitySettings, PROGRAM)
    if args.as_of is not None and settings.profile != "embedded":
        print(f"{PROGRAM}: --as-of is only for the embedded profile (CARNET_PROFILE=embedded)", file=sys.stderr)
        raise SystemExit(2)
    configure_logging(settings.log_level)
    as_of = dt.datetime.combine(args.as_of, dt.time(12), dt.UTC) if args.as_of else None
    asyncio.run(_run_lifecycle_jobs(settings, as_of))


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``serve`` (the default), ``seed-demo`` or ``import FILE``, configured by CARNET_* variables."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["run-lifecycle-jobs"]:
        _lifecycle_jobs_command(arguments[1:])
        return
    if arguments[:1] == ["import"]:
        # Bulk enrolment client (see carnet_identity.cli): python -m carnet_identity import FILE
        raise SystemExit(run_import(arguments[1:], f"{PROGRAM} import"))
    parser = argparse.ArgumentParser(prog=PROGRAM, description="Carnet identity service")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "seed-demo", "import", "run-lifecycle-jobs"])
    args = parser.parse_args(arguments)
    if args.command == "seed-demo":
        settings = load_or_exit(IdentitySettings, PROGRAM)
        configure_logging(settings.log_level)
        asyncio.run(_seed(settings))
        return
    run_service(PROGRAM, IdentitySettings, build)


if __name__ == "__main__":
    main()
