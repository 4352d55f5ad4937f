"""Bulk enrolment throughput: a generated registry CSV imported through identity's real path.

Creates a fresh database on the machine's PostgreSQL, starts identity as a process
(``python -m carnet_identity``) on a free port, registers an insurer-registry client
with the ``persons.import`` scope, writes ``--rows`` valid rows (valid INS keys, a
fifth of them without e-mail, hence letter notices) and runs the CLI
(``python -m carnet_identity import FILE``: gRPC client streaming). It reports rows/s,
the peak RSS of identity and of the CLI, how long the outbox relay took to publish the
``PersonCreatedEvent`` of every row, then imports the same file again (idempotence:
nothing created) and reports that speed too.

Notify is deliberately not running: notices are durable rows that the notice worker
sends later (it backs off on UNAVAILABLE), so the import is not bound by notify; the
result records how many notices are pending at the end.

    .venv/bin/python bench/identity_import.py [--rows 1000000]

Results go to ``bench/results/identity_import-<UTC date>.json``. Everything it starts it
stops (identity by SIGTERM, database dropped, Redis stream deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
import redis.asyncio as redis

from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.identity.v1 import identity_service_pb2_grpc as identity_grpc
from carnet_identity.domain.identifiers import ins_key
from carnet_identity.domain.model import SoftwareClient
from carnet_identity.hashing import SecretHasher
from carnet_identity.store import IdentityStore
from carnet_kit.testing import DEFAULT_ADMIN_URL, create_database, drop_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REDIS_URL = os.environ.get("CARNET_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
CLIENT_ID = "bench-registry"
CLIENT_SECRET = "bench-registry-secret-" + uuid.uuid4().hex
HEADER = "ins,birth_name,first_names,sex,birth_date,email,address_line1,postal_code,city,department_code\n"
NAMES = ["MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "DURAND", "LEROY", "MOREAU"]
FIRST = ["Camille", "Léa", "Louis", "Jade", "Gabriel", "Emma", "Raphaël", "Chloé", "Arthur", "Inès"]
DEPARTMENTS = ["75", "13", "69", "2A", "2B", "59", "33", "971", "974", "31"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def generate(path: Path, rows: int, seed: int = 20261123) -> None:
    """``rows`` valid, distinct registry rows (the last six digits of each NIR are the row number)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        lines = []
        for index in range(rows):
            department = rng.choice(DEPARTMENTS)
            birth_department = department if len(department) == 2 else "97"
            year = rng.randint(1930, 2020)
            month = rng.randint(1, 12)
            sex = rng.choice("12")
            nir = f"{sex}{year % 100:02d}{month:02d}{birth_department}{index:06d}"
            email = f"p{index}@registre.test" if index % 5 else ""
            lines.append(
                f"{nir}{ins_key(nir)},{rng.choice(NAMES)},{rng.choice(FIRST)},{'M' if sex == '1' else 'F'},"
                f"{year}-{month:02d}-{rng.randint(1, 28):02d},{email},{index} rue de la Paix,75002,Paris,{department}\n"
            )
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)


class PeakRss:
    """Samples the RSS of some processes every 100 ms; keeps the peaks."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self._watched: dict[str, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self._watched[name] = psutil.Process(pid)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for name, process in list(self._watched.items()):
                try:
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[name] = max(self.peaks.get(name, 0), rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def wait_serving(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = identity_grpc.IdentityServiceStub(channel)
        while True:
            try:
                await stub.GetJwks(identity_pb.GetJwksRequest(), timeout=2)
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)


async def register_client(database_url: str) -> None:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "identity"})
    try:
        now = dt.datetime.now(dt.UTC)
        await IdentityStore(conn).insert_client(
            SoftwareClient(
                client_id=CLIENT_ID,
                display_name="Registre de l'assurance maladie (bench)",
                kind="insurer_registry",
                organisation_id=None,
                scopes=("persons.import",),
                ae_titles=(),
                disabled=False,
                secret_hash=SecretHasher().hash_now(CLIENT_SECRET),
                secret_updated_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    finally:
        await conn.close()


def run_cli(csv_path: Path, port: int, rss: PeakRss, label: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "CARNET_IDENTITY_ADDR": f"127.0.0.1:{port}",
        "CARNET_IMPORT_CLIENT_ID": CLIENT_ID,
        "CARNET_IMPORT_CLIENT_SECRET": CLIENT_SECRET,
    }
    env.pop("CARNET_TOKEN", None)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "carnet_identity", "import", str(csv_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rss.watch(f"cli-{label}", process.pid)
    stdout, stderr = process.communicate(timeout=3600)
    seconds = time.monotonic() - started
    if process.returncode not in (0, 1):
        raise RuntimeError(f"import failed ({process.returncode}): {stderr[-2000:]}")
    counts = {name: int(value) for name, value in re.findall(r"^\s+(created|updated|unchanged|rejected)\s+(\d+)", stdout, re.M)}
    rows = int(re.search(r"(\d+) rows in", stdout).group(1))  # type: ignore[union-attr]
    print(stdout.strip())
    return {"seconds": round(seconds, 1), "rows": rows, "rows_per_second": round(rows / seconds), **counts}


async def database_facts(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "identity"})
    try:
        return {
            "persons": await conn.fetchval("SELECT count(*) FROM persons"),
            "activation_codes": await conn.fetchval("SELECT count(*) FROM activation_codes"),
            "notices_pending": await conn.fetchval("SELECT count(*) FROM activation_notices WHERE state = 'pending'"),
            "letter_notices": await conn.fetchval("SELECT count(*) FROM activation_notices WHERE channel = 'letter'"),
            "outbox_unpublished": await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"),
            "outbox_events": await conn.fetchval("SELECT count(*) FROM outbox"),
        }
    finally:
        await conn.close()


async def wait_outbox_drained(database_url: str, timeout: float) -> float | None:
    started = time.monotonic()
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "identity"})
    try:
        while time.monotonic() - started < timeout:
            if not await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
                return time.monotonic() - started
            await asyncio.sleep(0.5)
        return None
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    admin = os.environ.get("CARNET_BENCH_ADMIN_URL", DEFAULT_ADMIN_URL)
    database_url = await create_database(admin, f"carnet_bench_{uuid.uuid4().hex[:8]}")
    port = free_port()
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "rows": args.rows,
    }
    identity: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="carnet-bench-") as tmp:
        csv_path = Path(tmp) / "registre.csv"
        started = time.monotonic()
        generate(csv_path, args.rows)
        result["csv_bytes"] = csv_path.stat().st_size
        print(f"generated {args.rows} rows ({csv_path.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - started:.1f} s")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "CARNET_GRPC_LISTEN": f"127.0.0.1:{port}",
            "CARNET_DATABASE_URL": database_url,
            "CARNET_REDIS_URL": REDIS_URL,
            "CARNET_NOTIFY_ADDR": f"127.0.0.1:{free_port()}",
            "CARNET_PROFILE": "test",
            "CARNET_LOG_LEVEL": "WARNING",
            "OTEL_METRICS_EXPORTER": "none",
        }
        try:
            identity = await asyncio.to_thread(subprocess.Popen, [sys.executable, "-m", "carnet_identity"], env=env)
            await wait_serving(port)
            await register_client(database_url)
            with PeakRss() as rss:
                rss.watch("identity", identity.pid)
                first = await asyncio.to_thread(run_cli, csv_path, port, rss, "first")
                drained = await wait_outbox_drained(database_url, 600)
                first["outbox_drained_seconds_after_import"] = None if drained is None else round(drained, 1)
                result["first_import"] = first
                result["after_first_import"] = await database_facts(database_url)
                second = await asyncio.to_thread(run_cli, csv_path, port, rss, "again")
                result["re_import"] = second
                result["after_re_import"] = await database_facts(database_url)
            result["peak_rss_mib"] = {name: round(value / 2**20) for name, value in rss.peaks.items()}
        finally:
            if identity is not None:
                identity.send_signal(signal.SIGTERM)
                try:
                    identity.wait(30)
                except subprocess.TimeoutExpired:
                    identity.kill()
            await drop_database(admin, database_url.rsplit("/", 1)[1])
            client = redis.from_url(REDIS_URL)
            await client.delete("carnet:events:identity")
            await client.aclose()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"identity_import-{dt.datetime.now(dt.UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"results written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
