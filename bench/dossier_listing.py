"""Listing a holder's documents: 10 000 documents among 5 000 000 (goal: p99 < 20 ms on this machine).

    .venv/bin/python bench/dossier_listing.py [--documents 5000000] [--holders 500000] [--heavy-documents 10000]
        [--calls 500] [--concurrency 1,4] [--pages 20] [--out FILE] [--max-minutes 60]

Creates a fresh database ``carnet_bench_<hex>``, starts consent and dossier as processes of
their own (``run_service``, the production entry points; only the token verifiers trust a key
made here instead of identity's JWKS, revocations still checked in Redis on every call), seeds
``--documents`` rows straight into ``dossier.documents`` with one ``INSERT … SELECT
generate_series`` per chunk (one "heavy" holder owns ``--heavy-documents`` of them, spread over
10 years among everybody else's), runs ``VACUUM (ANALYZE)``, and gives the heavy holder an
active space, a care-team doctor and a treating physician in consent's tables.

Then, for the heavy holder, over gRPC ``ListDocuments`` (page_size 50), ``--calls`` calls per
scenario at each concurrency: the first page as the holder, as the care-team doctor (default
window: the last 2 years), with a type filter, with a title query, ``--pages`` pages deep
following ``next_page_token``, and the doctor's last page of the window. Besides: the SQL of
each scenario alone (``EXPLAIN (ANALYZE, BUFFERS)``, custom and generic plan, and the statement
timed through asyncpg as dossier runs it), and the parts of one listing timed one by one
(consent Decide + BatchDecide, the access-log append, dossier's row → proto conversion, a
no-work gRPC call). Writes ``bench/results/dossier_listing-<UTC date>.json``
(``…-incomplete.json`` on failure or Ctrl-C) and always drops the database, stops both
processes and removes its temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import contextvars
import copy
import datetime as dt
import importlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ADMIN_URL = os.environ.get("CARNET_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CARNET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
GOAL_P99_MS = 20.0
PAGE_SIZE = 50

# How often each LOINC type is deposited (relative weights; every other type of the value set: 1).
TYPE_WEIGHTS = {
    "11502-2": 22,  # Compte rendu d'examens biologiques
    "57833-6": 15,  # Ordonnance de médicaments
    "11488-4": 12,  # Compte rendu de consultation
    "57832-8": 6,  # Prescription d'examens ou de soins
    "18748-4": 5,  # Compte rendu d'imagerie médicale
    "11490-0": 4,  # Lettre de liaison à la sortie
    "18842-5": 4,  # Compte rendu d'hospitalisation
    "18747-6": 3,  # Compte rendu de scanner
    "18760-9": 3,  # Compte rendu d'échographie
    "11506-3": 3,  # Note d'évolution
    "18755-9": 2,  # Compte rendu d'IRM
    "87273-9": 2,  # Note de vaccination
}
TYPE_FILTER = "18748-4"  # ≈ 5 % of the documents
RARE_TYPE = "59284-0"  # ≈ 1 % (EXPLAIN only)
TITLE_QUERY = "scanner"  # ≈ 3 % of the titles
NO_MATCH_TITLE = "zzzz"  # matches nothing: the worst case of a title search (EXPLAIN only)
DOCTOR = "bench-doctor-1"
TREATING_PHYSICIAN = "bench-tp-1"


# ---------------------------------------------------------------- service processes


def _bench_verifier(redis_url: str) -> Any:
    """A verifier trusting the JWKS in CARNET_BENCH_JWKS, checking revocations in Redis as the real one."""
    from carnet_kit.auth import TokenVerifier
    from carnet_kit.peers import redis_revocation_check
    from carnet_kit.redis_client import create_redis

    jwks = json.loads(Path(os.environ["CARNET_BENCH_JWKS"]).read_text())

    async def fetch() -> dict[str, Any]:
        return jwks

    return TokenVerifier(fetch, is_revoked=redis_revocation_check(create_redis(redis_url)))


def serve_consent() -> None:
    """Run consent like ``python -m carnet_consent``, trusting the bench's key."""
    from carnet_consent.app import build
    from carnet_consent.settings import ConsentSettings
    from carnet_kit.server import run_service

    def build_with_bench_keys(settings: ConsentSettings) -> Any:
        return build(settings, verifier=_bench_verifier(settings.redis_url))

    run_service("carnet-consent", ConsentSettings, build_with_bench_keys)


def serve_dossier() -> None:
    """Run dossier like ``python -m carnet_dossier``, trusting the bench's key."""
    from carnet_dossier.app import build
    from carnet_dossier.settings import DossierSettings
    from carnet_kit.server import run_service

    def build_with_bench_keys(settings: DossierSettings) -> Any:
        return build(settings, verifier=_bench_verifier(settings.redis_url))

    run_service("carnet-dossier", DossierSettings, build_with_bench_keys)


# ---------------------------------------------------------------- seeding

# One chunk of documents [$1, $2). Row n is deposited at t0 + (n + jitter) × step, so the
# table is in deposit order (as an append-only table is) and every holder's documents are
# spread over the 10 years and over the whole heap. Row n belongs to the heavy holder when
# n % $6 = $6 / 2; otherwise to one of $8 holders picked by a hash of n. ``r(k)`` are
# deterministic pseudo-random numbers in [0, 1) (hashint8 of n and k).
SEED_CHUNK_SQL = """
INSERT INTO documents (
    document_id, logical_id, version, holder_id, unique_id, type_code, class_code, format, mime_type, title,
    service_time, author_rpps, author_profession, author_organisation, author_name,
    hidden_from_professionals, invisible_to_holder, invisible_to_representatives, holder_own, status,
    size_bytes, sha256, blob_key, accession_number, deposited_by, created_at, sealed)
SELECT id, id, 1, holder, '1.2.250.1.999.' || $9 || '.' || n, ($3::text[])[t], ($4::text[])[t],
       CASE WHEN r2 < 0.7 THEN 'PDF' ELSE 'CDA_R2_STRUCTURED' END,
       CASE WHEN r2 < 0.7 THEN 'application/pdf' ELSE 'application/hl7-cda+xml' END,
       ($5::text[])[t],
       CASE WHEN r3 < 0.05 THEN NULL ELSE created - r4 * interval '60 days' END,
       '10' || lpad((h % 200000)::text, 9, '0'), '10', 'org-' || (h % 3000), 'Dr Auteur ' || (h % 200000),
       r5 < 0.02, r5 >= 0.02 AND r5 < 0.03, false, ($4::text[])[t] = 'HOLDER',
       CASE WHEN r6 < 0.94 THEN 'approved' WHEN r6 < 0.97 THEN 'deprecated' ELSE 'archived' END,
       20000 + (r7 * 480000)::bigint, md5(id::text) || md5(n::text), 'documents/' || holder || '/' || id,
       CASE WHEN t % 10 = 0 THEN 'ACC' || n ELSE '' END,
       '{"subject": "bench-lab", "role": "ROLE_CLIENT", "client_id": "bench-lab", "scopes": ["documents.deposit"]}'::jsonb,
       created, true
FROM (
    SELECT n, id, holder, h, r2, r3, r4, r5, r6, r7,
           1 + (h % array_length($3::text[], 1)) AS t,
           $10::timestamptz + (n + r1) * $11::interval AS created
    FROM (
        SELECT n, gen_random_uuid() AS id,
               CASE WHEN n % $6 = $6 / 2 THEN $7::uuid
                    ELSE md5('bench-holder-' || ((hashint8(n) & 2147483647) % $8))::uuid END AS holder,
               hashint8(n * 8 + 1) & 2147483647 AS h,
               (hashint8(n * 8 + 2) & 2147483647) / 2147483648.0 AS r1,
               (hashint8(n * 8 + 3) & 2147483647) / 2147483648.0 AS r2,
               (hashint8(n * 8 + 4) & 2147483647) / 2147483648.0 AS r3,
               (hashint8(n * 8 + 5) & 2147483647) / 2147483648.0 AS r4,
               (hashint8(n * 8 + 6) & 2147483647) / 2147483648.0 AS r5,
               (hashint8(n * 8 + 7) & 2147483647) / 2147483648.0 AS r6,
               (hashint8(n * 8 + 8) & 2147483647) / 2147483648.0 AS r7
        FROM generate_series($1::bigint, $2::bigint - 1) n
    ) g
) s
"""

# The heavy holder's facts in consent: active space, a care-team doctor, a treating physician.
CONSENT_SEED_SQL = [
    ("INSERT INTO persons (holder_id, state, occur_time) VALUES ($1, 'ACTIVE', now())", ()),
    ("""INSERT INTO care_team_authorisations (authorisation_id, holder_id, professional_id, rpps, origin, created_by)
        VALUES (gen_random_uuid(), $1, $2, '10100000001', 'HOLDER_GRANT', '{}'::jsonb)""", (DOCTOR,)),
    ("INSERT INTO treating_physicians (holder_id, professional_id, occur_time) VALUES ($1, $2, now())",
     (TREATING_PHYSICIAN,)),
]


def weighted_types() -> tuple[list[str], list[str], list[str]]:
    """Type codes, their default classes and labels, each repeated by its weight."""
    from carnet_dossier.valuesets import DOCUMENT_TYPES

    codes, classes, labels = [], [], []
    for code, entry in DOCUMENT_TYPES.items():
        for _ in range(TYPE_WEIGHTS.get(code, 1)):
            codes.append(code)
            classes.append(entry.default_class)
            labels.append(entry.label_fr)
    return codes, classes, labels


def _searchable() -> Callable[[str], str]:
    """How dossier turns a title into ``title_search`` (its own function when it has one)."""
    try:
        from carnet_dossier.domain import searchable  # type: ignore[attr-defined]
    except ImportError:
        import unicodedata

        def searchable(text: str) -> str:
            decomposed = unicodedata.normalize("NFKD", text.replace("œ", "oe").replace("æ", "ae").lower())
            return "".join(char for char in decomposed if not unicodedata.combining(char))

    return searchable  # type: ignore[no-any-return]


async def seed_documents(
    database_url: str, args: argparse.Namespace, heavy: uuid.UUID, progress: Callable[[str], None]
) -> dict[str, Any]:
    import asyncpg

    codes, classes, labels = weighted_types()
    searchable = _searchable()
    span = dt.timedelta(days=3652)
    t0 = dt.datetime.now(dt.UTC) - span
    step = span / args.documents
    every = args.documents // args.heavy_documents
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "dossier"})
    try:
        await conn.execute("SET statement_timeout = '15min'")
        columns = {row["column_name"] for row in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'dossier'"
            " AND table_name = 'documents'")}
        sql, extra = SEED_CHUNK_SQL, []
        if "title_search" in columns:  # migration 0007: the title as searched (lower case, no accents)
            sql = sql.replace("size_bytes, sha256,", "title_search, size_bytes, sha256,", 1)
            sql = sql.replace("20000 + (r7", "($12::text[])[t], 20000 + (r7", 1)
            extra.append([searchable(label) for label in labels])
        started = time.monotonic()
        chunk = args.chunk
        for low in range(0, args.documents, chunk):
            high = min(args.documents, low + chunk)
            await conn.execute(sql, low, high, codes, classes, labels, every, heavy, args.holders, "b", t0, step, *extra)
            elapsed = time.monotonic() - started
            progress(f"seeded {high:>9,} documents in {elapsed:6.1f} s ({high / elapsed:,.0f}/s)")
        insert_seconds = time.monotonic() - started
        await conn.execute("INSERT INTO spaces (holder_id, state) VALUES ($1, 'OPEN')", heavy)
        started = time.monotonic()
        await conn.execute("SET statement_timeout = '30min'")
        await conn.execute("VACUUM (ANALYZE) documents")
        vacuum_seconds = time.monotonic() - started
        progress(f"VACUUM (ANALYZE) documents: {vacuum_seconds:.1f} s")
        # The seeding wrote several GB of WAL: flush it now rather than during the measurements.
        started = time.monotonic()
        await conn.execute("CHECKPOINT")
        checkpoint_seconds = time.monotonic() - started
        sizes = await conn.fetchrow(
            """SELECT pg_relation_size('documents') AS heap, pg_indexes_size('documents') AS indexes,
                      (SELECT count(*) FROM documents) AS rows,
                      (SELECT count(*) FROM documents WHERE holder_id = $1) AS heavy_rows,
                      (SELECT count(*) FROM documents WHERE holder_id = $1 AND status = 'approved') AS heavy_approved,
                      (SELECT count(DISTINCT holder_id) FROM documents) AS holders""",
            heavy,
        )
        index_sizes = await conn.fetch(
            "SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid) AS bytes FROM pg_index"
            " WHERE indrelid = 'documents'::regclass ORDER BY 1"
        )
        mix = await conn.fetch(
            """SELECT type_code, count(*) AS n FROM documents WHERE holder_id = $1 AND status = 'approved'
               GROUP BY 1 ORDER BY 2 DESC""",
            heavy,
        )
        title_hits = await conn.fetchval(
            "SELECT count(*) FROM documents WHERE holder_id = $1 AND status = 'approved' AND title ILIKE $2",
            heavy,
            f"%{TITLE_QUERY}%",
        )
        window = await conn.fetchval(
            """SELECT count(*) FROM documents WHERE holder_id = $1 AND status = 'approved'
               AND coalesce(service_time, created_at) >= now() - interval '730 days'""",
            heavy,
        )
        stats = await conn.fetchrow(
            """SELECT n_distinct, array_position(most_common_vals::text::text[], $1::text) IS NOT NULL AS heavy_in_mcv
               FROM pg_stats WHERE schemaname = 'dossier' AND tablename = 'documents' AND attname = 'holder_id'""",
            str(heavy),
        )
    finally:
        await conn.close()
    mix_by_type = {row["type_code"]: row["n"] for row in mix}
    return {
        "documents": sizes["rows"],
        "holders": sizes["holders"],
        "heavy_documents": sizes["heavy_rows"],
        "heavy_approved": sizes["heavy_approved"],
        "heavy_type_filter_matches": mix_by_type.get(TYPE_FILTER, 0),
        "heavy_rare_type_matches": mix_by_type.get(RARE_TYPE, 0),
        "heavy_title_query_matches": title_hits,
        "heavy_in_professional_window": window,
        "insert_seconds": round(insert_seconds, 1),
        "insert_rows_per_s": round(args.documents / insert_seconds),
        "vacuum_analyze_seconds": round(vacuum_seconds, 1),
        "checkpoint_seconds": round(checkpoint_seconds, 1),
        "heap_mib": round(sizes["heap"] / 2**20),
        "indexes_mib": round(sizes["indexes"] / 2**20),
        "index_mib": {row["name"]: round(row["bytes"] / 2**20) for row in index_sizes},
        "pg_stats_holder_id": dict(stats) if stats else None,
    }


# ---------------------------------------------------------------- measuring helpers


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(seconds)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p95_ms": round(percentile(ordered, 0.95) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process (from /proc); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def machine_facts() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "",
    )
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(int(mem.split()[1]) / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def git_revision() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def source_fingerprint() -> dict[str, str]:
    """SHA-256 (12 hex) of the dossier and consent files measured: the tree may hold uncommitted work."""
    import hashlib

    files = sorted((ROOT / "services" / "dossier" / "src" / "carnet_dossier").rglob("*.[ps][yq]*"))
    files += sorted((ROOT / "services" / "consent" / "src" / "carnet_consent").rglob("*.py"))
    return {
        str(path.relative_to(ROOT)): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in files if path.suffix in (".py", ".sql")
    }


class Usage:
    """CPU used by dossier, consent, this database's PostgreSQL backends, the bench, and the machine."""

    def __init__(self, database: str, admin: Any, pids: dict[str, int]) -> None:
        self._database = database
        self._admin = admin
        self._pids = pids

    async def snapshot(self) -> dict[str, Any]:
        backends = await self._admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self._database
        )
        return {
            "at": time.monotonic(),
            "procs": {name: cpu_seconds(pid) for name, pid in self._pids.items()},
            "pg": {row["pid"]: cpu_seconds(row["pid"]) for row in backends},
            "bench": sum(os.times()[:2]),
            "machine": machine_jiffies(),
            "loadavg": os.getloadavg(),
        }

    @staticmethod
    def between(before: dict[str, Any], after: dict[str, Any], calls: int) -> dict[str, Any]:
        wall = after["at"] - before["at"]
        used = {name: after["procs"][name] - before["procs"][name] for name in after["procs"]}
        used["postgres"] = sum(cpu - before["pg"].get(pid, 0.0) for pid, cpu in after["pg"].items())
        used["bench_client"] = after["bench"] - before["bench"]
        busy = (after["machine"][0] - before["machine"][0]) / max(1, after["machine"][1] - before["machine"][1])
        cores = os.cpu_count() or 1
        box_cores = busy * cores
        return {
            "cpu_ms_per_call": {name: round(seconds / max(1, calls) * 1000, 2) for name, seconds in used.items()},
            "cores_used": {name: round(seconds / wall, 2) for name, seconds in used.items()},
            "box_busy_pct": round(busy * 100, 1),
            "others_cores": round(max(0.0, box_cores - sum(used.values()) / wall), 2),
            "loadavg_before": [round(x, 2) for x in before["loadavg"]],
            "loadavg_after": [round(x, 2) for x in after["loadavg"]],
        }


async def wait_serving(port: int, name: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode} while starting")
            with contextlib.suppress(grpc.aio.AioRpcError):
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not start within {timeout:.0f} s")
            await asyncio.sleep(0.2)


def start_process(role: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A service in a process and session of its own (a Ctrl-C reaches only the bench)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, __file__, role], env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )


async def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; how it ended."""
    if proc.poll() is not None:
        return f"already exited ({proc.returncode})"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
        return f"SIGTERM ({proc.returncode})"
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(asyncio.to_thread(proc.wait), 10)
        return "SIGKILL"


# ---------------------------------------------------------------- scenarios


class Scenario:
    """One kind of ListDocuments call; ``walk`` > 1 follows next_page_token that many pages."""

    def __init__(self, name: str, token: str, request: Any, *, walk: int = 1, page_token: str = "") -> None:
        self.name = name
        self.token = token
        self.request = request
        self.walk = walk
        self.page_token = page_token


async def run_level(stub: Any, scenario: Scenario, concurrency: int, calls: int, timeout: float) -> dict[str, Any]:
    """``calls`` calls by ``concurrency`` workers back to back; latencies (per page depth too) and errors."""
    import grpc

    metadata = (("authorization", f"Bearer {scenario.token}"),)
    latencies: list[float] = []
    by_page: dict[int, list[float]] = {}
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}
    visible: list[int] = []
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        page, token = 1, scenario.page_token
        while remaining > 0:
            remaining -= 1
            request = type(scenario.request)()
            request.CopyFrom(scenario.request)
            request.page_token = token
            started = time.perf_counter()
            try:
                response = await stub.ListDocuments(request, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                samples.setdefault(exc.code().name, exc.details() or "")
                page, token = 1, scenario.page_token
                continue
            elapsed = time.perf_counter() - started
            latencies.append(elapsed)
            visible.append(len(response.documents))
            by_page.setdefault(page, []).append(elapsed)
            if scenario.walk > 1 and response.next_page_token and page < scenario.walk:
                page, token = page + 1, response.next_page_token
            else:
                page, token = 1, scenario.page_token

    begin = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout)
    wall = time.perf_counter() - begin
    result = {
        "scenario": scenario.name,
        "concurrency": concurrency,
        "calls_per_s": round(len(latencies) / wall, 1),
        **latency_summary(latencies),
        "errors": errors,
        "error_samples": samples,
        "documents_per_page_mean": round(statistics.fmean(visible), 1) if visible else 0,
        "wall_s": round(wall, 2),
    }
    if scenario.walk > 1:
        result["p50_ms_by_page"] = {
            page: round(percentile(sorted(values), 0.5) * 1000, 2)
            for page, values in sorted(by_page.items())
            if page in (1, 2, 5, 10, 15, 20, scenario.walk)
        }
    return result


async def walk_tokens(stub: Any, token: str, request: Any, pages: int) -> list[str]:
    """The page tokens of the first ``pages`` pages ('' for the first); stops at the last page."""
    metadata = (("authorization", f"Bearer {token}"),)
    tokens = [""]
    while len(tokens) < pages:
        request.page_token = tokens[-1]
        response = await stub.ListDocuments(request, metadata=metadata, timeout=30)
        if not response.next_page_token:
            break
        tokens.append(response.next_page_token)
    request.page_token = ""
    return tokens


# ---------------------------------------------------------------- SQL alone


class RecordingDB:
    """Stands in for dossier's pool: real connections from ``pool``, and every statement sent recorded.

    A statement outside a transaction takes a connection of its own, as on dossier's pool, so
    statements the listing sends concurrently run concurrently here too.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.statements: list[tuple[str, str, tuple[Any, ...]]] = []
        self.recording = True
        self._bound: contextvars.ContextVar[Any] = contextvars.ContextVar("bench_bound_connection", default=None)

    async def _call(self, method: str, sql: str, *args: Any) -> Any:
        if self.recording:
            self.statements.append((method, sql, args))
        return await getattr(self._bound.get() or self.pool, method)(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        return await self._call("fetch", sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._call("fetchrow", sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._call("fetchval", sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        return await self._call("execute", sql, *args)

    def is_in_transaction(self) -> bool:
        conn = self._bound.get()
        return conn is not None and bool(conn.is_in_transaction())

    @contextlib.asynccontextmanager
    async def transaction(self) -> Any:
        conn = self._bound.get()
        if conn is not None:
            async with conn.transaction():
                yield
            return
        async with self.pool.acquire() as conn, conn.transaction():
            token = self._bound.set(conn)
            try:
                yield
            finally:
                self._bound.reset(token)

    @contextlib.asynccontextmanager
    async def acquire(self) -> Any:
        async with self.pool.acquire() as conn:
            token = self._bound.set(conn)
            try:
                yield self
            finally:
                self._bound.reset(token)


class AllowAll:
    """Consent stand-in for the in-process listing: every decision allows."""

    async def decide(self, *_args: Any, **_kwargs: Any) -> Any:
        from carnet_dossier.peers import Decision

        return Decision(True, "ALLOWED_BENCH", (), "bench")

    async def decide_each(self, _principal: Any, _holder: str, _action: int, items: list[Any], *_args: Any,
                          **_kwargs: Any) -> list[Any]:
        from carnet_dossier.peers import Decision

        return [Decision(True, "ALLOWED_BENCH", (), "bench")] * len(items)

    async def decide_page(self, _principal: Any, _holder: str, _list_action: int, _container: Any, _action: int,
                          items: list[Any], *_args: Any, **_kwargs: Any) -> tuple[Any, list[Any]]:
        from carnet_dossier.peers import Decision

        allowed = Decision(True, "ALLOWED_BENCH", (), "bench")
        return allowed, [allowed] * len(items)


def inprocess_service(db: RecordingDB) -> Any:
    """Dossier's DocumentService as in the working tree, on ``db``, with consent allowing everything."""
    from carnet_dossier.documents import DocumentService

    return DocumentService(
        db, None, None, AllowAll(), None, max_document_bytes=20 * 2**20  # type: ignore[arg-type]
    )


async def capture_listing(service: Any, db: RecordingDB, principal: Any, holder: uuid.UUID, filters: Any,
                          cursor: Any) -> list[tuple[str, str, tuple[Any, ...]]]:
    """Every statement one ``DocumentService.list`` sends (page_size 50), in order."""
    db.statements, db.recording = [], True
    try:
        await service.list(principal, holder, filters, cursor, PAGE_SIZE)
    finally:
        db.recording = False
    return db.statements


async def time_inprocess_listing(service: Any, principal: Any, holder: uuid.UUID, filters: Any, cursor: Any,
                                 runs: int) -> dict[str, Any]:
    """``DocumentService.list`` in this process (its SQL and Python; consent stubbed, no gRPC)."""
    seconds = []
    cpu = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        await service.list(principal, holder, filters, cursor, PAGE_SIZE)
        seconds.append(time.perf_counter() - started)
    return {**latency_summary(seconds), "cpu_ms_per_call": round((time.process_time() - cpu) / runs * 1000, 2)}


def _plan_facts(plan: dict[str, Any]) -> dict[str, Any]:
    """Top node, indexes used, rows read and removed by filters, buffers, from one EXPLAIN (FORMAT JSON)."""
    indexes: list[str] = []
    nodes: list[str] = []
    removed = 0
    index_rows = 0
    heap_fetches: list[int] = []

    def visit(node: dict[str, Any]) -> None:
        nonlocal removed, index_rows
        nodes.append(node["Node Type"])
        if "Index Name" in node:
            indexes.append(node["Index Name"])
            index_rows += int(node.get("Actual Rows", 0)) + int(node.get("Rows Removed by Filter", 0))
        removed += int(node.get("Rows Removed by Filter", 0))
        if "Heap Fetches" in node:
            heap_fetches.append(int(node["Heap Fetches"]))
        for child in node.get("Plans", []):
            visit(child)

    root = plan["Plan"]
    visit(root)
    return {
        "top_node": root["Node Type"],
        "nodes": nodes,
        "indexes": indexes,
        "uses_index": bool(indexes),
        "uses_holder_index": "documents_holder_recent" in indexes,
        "rows_returned": root.get("Actual Rows"),
        "rows_removed_by_filter": removed,
        "rows_read_from_index": index_rows,
        "heap_fetches": sum(heap_fetches) if heap_fetches else None,
        "shared_hit": root.get("Shared Hit Blocks"),
        "shared_read": root.get("Shared Read Blocks"),
        "planning_ms": round(plan.get("Planning Time", 0.0), 3),
        "execution_ms": round(plan.get("Execution Time", 0.0), 3),
    }


def _plan_text(plan: dict[str, Any]) -> list[str]:
    """A compact text form of the plan tree, for the JSON and the README."""
    lines: list[str] = []

    def visit(node: dict[str, Any], depth: int) -> None:
        label = node["Node Type"]
        if "Index Name" in node:
            label += f" using {node['Index Name']}"
        extra = []
        for key in ("Index Cond", "Filter", "Sort Key"):
            if key in node:
                extra.append(f"{key}: {node[key]}")
        timing = f"(actual rows={node.get('Actual Rows')} loops={node.get('Actual Loops')} time={node.get('Actual Total Time')} ms"
        if node.get("Rows Removed by Filter"):
            timing += f", removed by filter={node['Rows Removed by Filter']}"
        timing += f", buffers hit={node.get('Shared Hit Blocks')} read={node.get('Shared Read Blocks')})"
        lines.append("  " * depth + f"{label} {timing}")
        lines.extend("  " * depth + "    " + text for text in extra)
        for child in node.get("Plans", []):
            visit(child, depth + 1)

    visit(plan["Plan"], 0)
    return lines


def sql_literal(value: Any) -> str:
    """A statement argument as a SQL literal (EXECUTE of a prepared statement takes no protocol parameters)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "ARRAY[" + ", ".join(sql_literal(item) for item in value) + "]::text[]"
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, uuid.UUID):
        return f"'{value}'::uuid"
    return "'" + str(value).replace("'", "''") + "'"


async def explain(conn: Any, sql: str, args: tuple[Any, ...], repeats: int) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the custom plan (``repeats`` times, median) and of the generic plan."""
    runs = []
    for _ in range(repeats):
        out = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        runs.append((json.loads(out) if isinstance(out, str) else out)[0])
    runs.sort(key=lambda plan: plan["Execution Time"])
    median = runs[len(runs) // 2]
    custom = _plan_facts(median)
    custom["execution_ms_min"] = round(runs[0]["Execution Time"], 3)
    custom["execution_ms_max"] = round(runs[-1]["Execution Time"], 3)
    # The plan PostgreSQL may switch to after five executions of a prepared statement (as
    # asyncpg prepares dossier's statements): the generic one, forced here.
    literals = ", ".join(sql_literal(value) for value in args)
    await conn.execute(f"PREPARE bench_listing AS {sql}")
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        out = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE bench_listing({literals})")
        generic_plan = (json.loads(out) if isinstance(out, str) else out)[0]
    finally:
        await conn.execute("RESET plan_cache_mode")
        await conn.execute("DEALLOCATE bench_listing")
    generic = _plan_facts(generic_plan)
    return {
        "sql": " ".join(sql.split()),
        "custom": custom,
        "custom_plan": _plan_text(median),
        "generic": generic,
        "generic_plan": _plan_text(generic_plan),
    }


async def time_statement(pool: Any, sql: str, args: tuple[Any, ...], runs: int) -> dict[str, Any]:
    """The statement as dossier runs it (asyncpg prepared statement, rows decoded), ``runs`` times.

    asyncpg prepares it once per connection, so from the sixth run on PostgreSQL may use its
    generic plan, as it does in dossier's pool.
    """
    seconds = []
    async with pool.acquire() as conn:
        for _ in range(runs):
            started = time.perf_counter()
            await conn.fetch(sql, *args)
            seconds.append(time.perf_counter() - started)
    return latency_summary(seconds)


class _Held:
    """A single connection seen as a pool (``acquire`` yields it)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def acquire(self) -> Any:
        yield self.conn


WHAT_IF_INDEX = (
    "CREATE INDEX bench_whatif_holder_count ON documents (holder_id, status, invisible_to_holder, type_code)"
)


async def what_if(database_url: str, captured: dict[str, list[tuple[str, str, tuple[Any, ...]]]],
                  args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Candidate changes, tried on this benchmark's own database only (never on dossier's code or migrations).

    1. Each captured query timed through asyncpg with ``plan_cache_mode = force_custom_plan``.
    2. ``WHAT_IF_INDEX``, then each count query explained and timed again.
    """
    import asyncpg

    result: dict[str, Any] = {"force_custom_plan": {}, "index": WHAT_IF_INDEX, "with_index": {}}
    conn = await asyncpg.connect(
        database_url, server_settings={"search_path": "dossier,public", "plan_cache_mode": "force_custom_plan"}
    )
    try:
        for probe, queries in captured.items():
            for kind, sql, sql_args in queries:
                timed = await time_statement(_Held(conn), sql, sql_args, args.sql_runs)
                result["force_custom_plan"][f"{probe} / {kind}"] = timed
                progress(f"what-if force_custom_plan {probe} / {kind}: p50 {timed['p50_ms']} p99 {timed['p99_ms']} ms")
    finally:
        await conn.close()
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "dossier,public"})
    try:
        await conn.execute("SET statement_timeout = '10min'")
        await conn.execute("SET maintenance_work_mem = '256MB'")
        if "INCLUDE" in await conn.fetchval("SELECT pg_get_indexdef('documents_holder_by_date'::regclass)"):
            # Dossier's migration 0009 makes the date index cover the count: measure it, not a duplicate.
            result["index"] = "documents_holder_by_date with INCLUDE (dossier migration 0009), already in place"
            result["index_mib"] = round(
                await conn.fetchval("SELECT pg_relation_size('documents_holder_by_date')") / 2**20
            )
        else:
            started = time.monotonic()
            await conn.execute(WHAT_IF_INDEX)
            result["index_build_seconds"] = round(time.monotonic() - started, 1)
            result["index_mib"] = round(
                await conn.fetchval("SELECT pg_relation_size('bench_whatif_holder_count')") / 2**20
            )
        await conn.execute("RESET statement_timeout")
        for probe, queries in captured.items():
            for kind, sql, sql_args in queries:
                if kind != "count":
                    continue
                explained = await explain(conn, sql, sql_args, args.explain_repeats)
                explained["timed_through_asyncpg"] = await time_statement(_Held(conn), sql, sql_args, args.sql_runs)
                result["with_index"][f"{probe} / {kind}"] = explained
                c, t = explained["custom"], explained["timed_through_asyncpg"]
                progress(
                    f"what-if index {probe} / {kind}: {c['top_node']}/{','.join(c['nodes'])} {c['execution_ms']} ms,"
                    f" generic {explained['generic']['execution_ms']} ms, asyncpg p50 {t['p50_ms']} p99 {t['p99_ms']} ms"
                )
    finally:
        await conn.close()
    return result


# ---------------------------------------------------------------- the parts of one listing


async def time_parts(
    pool: Any, page_query: tuple[str, tuple[Any, ...]], count_query: tuple[str, tuple[Any, ...]] | None,
    consent_port: int, dossier_port: int, holder: uuid.UUID,
    tokens: dict[str, str], principals: dict[str, Any], runs: int,
) -> dict[str, Any]:
    """Each step of ``DocumentService.list`` for the holder's first page, alone, ``runs`` times in a row."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from carnet.consent.v1 import consent_service_pb2 as consent_pb
    from carnet.consent.v1 import consent_service_pb2_grpc
    from carnet.consent.v1 import resources_pb2 as consent_res
    from carnet.dossier.v1 import dossier_service_pb2 as pb
    from carnet_dossier import access_log
    from carnet_dossier.access_log import NewEntry
    from carnet_dossier.documents import actor_record, item_facts
    from carnet_dossier.domain import PageCursor, encode_page_token
    from carnet_dossier.peers import ItemFacts, _item_attributes
    from carnet_dossier.servicer import fill_document
    from carnet_dossier.store import DocumentRecord

    sql, args = page_query
    rows = await pool.fetch(sql, *args)
    parts: dict[str, Any] = {}

    async def timed(name: str, step: Callable[[], Awaitable[Any]]) -> None:
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            await step()
            seconds.append(time.perf_counter() - started)
        parts[name] = latency_summary(seconds)

    # Dossier's Python work on a page: rows → records → consent items, records → protos → bytes.
    def convert() -> bytes:
        records = [DocumentRecord.from_row(row) for row in rows]
        page = records[:PAGE_SIZE]
        [_item_attributes(item_facts(record)) for record in page]
        cursor = PageCursor(page[-1].service_time or page[-1].created_at, page[-1].document_id)
        response = pb.ListDocumentsResponse(next_page_token=encode_page_token(cursor))
        for record in page:
            fill_document(response.documents.add(), record)
        return response.SerializeToString()

    async def convert_async() -> None:
        convert()

    parts["response_bytes"] = len(convert())
    await timed("sql_page_query", lambda: pool.fetch(sql, *args))
    if count_query is not None:
        await timed("sql_count_query", lambda: pool.fetchval(count_query[0], *count_query[1]))
    await timed("python_rows_to_proto", convert_async)

    for who in ("holder", "doctor"):
        principal = principals[who]
        metadata = (("authorization", f"Bearer {tokens[who]}"),)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{consent_port}") as channel:
            stub = consent_service_pb2_grpc.ConsentServiceStub(channel)
            decide = consent_pb.DecideRequest(
                actor=principal.to_actor(), holder_id=str(holder), action=consent_res.ACTION_LIST,
                item=_item_attributes(ItemFacts(kind=consent_res.ITEM_KIND_SPACE)),
            )
            records = [DocumentRecord.from_row(row) for row in rows[:PAGE_SIZE]]
            batch = consent_pb.BatchDecideRequest(
                actor=principal.to_actor(), holder_id=str(holder), action=consent_res.ACTION_READ,
                items=[_item_attributes(item_facts(record)) for record in records],
            )
            gated = consent_pb.BatchDecideRequest()
            gated.CopyFrom(batch)
            gated.gate.action = consent_res.ACTION_LIST
            gated.gate.item.CopyFrom(decide.item)
            await timed(f"consent_decide_list_{who}", lambda s=stub, d=decide, m=metadata: s.Decide(d, metadata=m, timeout=10))
            await timed(
                f"consent_batch_decide_50_{who}",
                lambda s=stub, b=batch, m=metadata: s.BatchDecide(b, metadata=m, timeout=10),
            )
            # What dossier sends now: the list question and the page's 50 in one call.
            await timed(
                f"consent_batch_decide_50_with_list_gate_{who}",
                lambda s=stub, b=gated, m=metadata: s.BatchDecide(b, metadata=m, timeout=10),
            )

    entry = NewEntry(
        holder_id=holder, actor=actor_record(principals["holder"]), action="ACTION_LIST", operation="ListDocuments",
        item_kind="ITEM_KIND_SPACE", item_id=str(holder), outcome="allowed",
    )
    await timed("access_log_append", lambda: access_log.append(pool, entry))

    async with grpc.aio.insecure_channel(f"127.0.0.1:{dossier_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        await timed("grpc_health_check_dossier", lambda: health.Check(request, timeout=10))
    return parts


# ---------------------------------------------------------------- where dossier's CPU goes

# Where a sampled stack is counted: the frame nearest the leaf that matches one of these
# (file path fragments; for a frame matching several, the first group listed).
PROFILE_GROUPS = [
    ("asyncpg (PostgreSQL driver)", ("asyncpg/",)),
    ("protobuf json_format (deposited_by)", ("google/protobuf/json_format",)),
    ("protobuf other", ("google/protobuf/",)),
    ("OpenTelemetry (spans, metrics)", ("opentelemetry/",)),
    ("token verification (joserfc)", ("joserfc/", "carnet_kit/auth")),
    ("Redis client (revocation check)", ("redis/",)),
    ("gRPC runtime (grpc/aio)", ("grpc/", "grpc_status", "grpc_health")),
    ("access log (hash chain)", ("carnet_dossier/access_log",)),
    ("dossier documents/store/servicer", ("carnet_dossier/",)),
    ("kit interceptors and channels", ("carnet_kit/",)),
    ("asyncio event loop", ("asyncio/",)),
]


def summarise_profile(raw: str) -> dict[str, Any]:
    """Samples per group from py-spy's raw (collapsed) output, as percentages of all samples."""
    counts: dict[str, int] = {}
    leaves: dict[str, int] = {}
    carnet: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        total += samples
        frames = stack.split(";")
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + samples
        # The innermost Carnet frame: which of our functions the time is spent under.
        ours = next((frame for frame in reversed(frames) if "carnet_" in frame), "(no Carnet frame)")
        carnet[ours] = carnet.get(ours, 0) + samples
        group = "other"
        for frame in reversed(frames):
            matched = next((name for name, parts in PROFILE_GROUPS if any(part in frame for part in parts)), None)
            if matched:
                group = matched
                break
        counts[group] = counts.get(group, 0) + samples
    def share(table: dict[str, int], limit: int) -> dict[str, float]:
        ordered = sorted(table.items(), key=lambda item: -item[1])[:limit]
        return {name: round(count / max(1, total) * 100, 1) for name, count in ordered}

    return {
        "samples": total,
        "percent": share(counts, 50),
        "top_leaf_frames_percent": share(leaves, 20),
        "innermost_carnet_frame_percent": share(carnet, 20),
    }


def py_spy() -> str | None:
    """py-spy from the PATH or next to this Python (the venv)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


async def profile_dossier(stub: Any, scenario: Scenario, pid: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """py-spy on the dossier process (Python frames, active threads only) while ``scenario`` runs at 1."""
    out = workdir / "dossier-profile.txt"
    spy = await asyncio.create_subprocess_exec(
        py_spy() or "py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
        "--format", "raw", "--output", str(out), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    metadata = (("authorization", f"Bearer {scenario.token}"),)
    calls = 0
    cpu_before = cpu_seconds(pid)
    try:
        deadline = time.monotonic() + seconds + 30
        while spy.returncode is None and time.monotonic() < deadline:
            await stub.ListDocuments(scenario.request, metadata=metadata, timeout=10)
            calls += 1
    finally:
        if spy.returncode is None and time.monotonic() >= deadline:
            spy.terminate()
        _, err = await asyncio.wait_for(spy.communicate(), 60)
    cpu = cpu_seconds(pid) - cpu_before
    if spy.returncode != 0 or not out.exists():
        return {"error": f"py-spy exited with {spy.returncode}: {err.decode(errors='replace')[-500:]}"}
    return {"scenario": scenario.name, "calls": calls, "dossier_cpu_ms_per_call": round(cpu / max(1, calls) * 1000, 2),
            **summarise_profile(out.read_text())}


# ---------------------------------------------------------------- driver


async def run(args: argparse.Namespace, report: dict[str, Any], progress: Callable[[str], None]) -> None:
    import asyncpg
    import grpc
    import redis.asyncio as redis

    from carnet.dossier.v1 import dossier_service_pb2 as pb
    from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
    from carnet_dossier.domain import decode_page_token
    from carnet_dossier.store import DocumentFilter
    from carnet_kit.auth import Principal
    from carnet_kit.db import create_pool
    from carnet_kit.testing import TokenFactory, create_database, drop_database, free_port

    # Dossier's modules are loaded now, with the fingerprint, as the dossier process is about to
    # load them: the tree may be edited during the run, and the SQL captured in this process must
    # be that of the code the process runs.
    importlib.import_module("carnet_dossier.documents")
    importlib.import_module("carnet_dossier.servicer")

    name = f"carnet_bench_{uuid.uuid4().hex[:10]}"
    workdir = Path(tempfile.mkdtemp(prefix="dossier-listing-bench-"))
    prefix = f"carnet:bench:{uuid.uuid4().hex[:8]}"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    database_url = ""
    report.update({"database": name, "machine": machine_facts(), "loadavg_start": os.getloadavg(),
                   "source_sha256": source_fingerprint()})
    try:
        database_url = await asyncio.wait_for(create_database(ADMIN_URL, name), 30)
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            report["postgres"] = {
                "version": await admin.fetchval("SHOW server_version"),
                **{
                    row["name"]: row["value"]
                    for row in await admin.fetch(
                        "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1::text[])",
                        ["shared_buffers", "work_mem", "effective_cache_size", "random_page_cost", "autovacuum",
                         "jit", "plan_cache_mode", "synchronous_commit", "max_parallel_workers_per_gather"],
                    )
                },
            }
        finally:
            await admin.close()

        tokens_factory = TokenFactory()
        (workdir / "jwks.json").write_text(json.dumps(tokens_factory.jwks()))
        (workdir / "master.key").write_text(f"k1:{base64.b64encode(os.urandom(32)).decode()}\n")
        (workdir / "blobs").mkdir()
        consent_port, dossier_port, identity_port = free_port(), free_port(), free_port()
        base_env = {key: value for key, value in os.environ.items() if not key.startswith(("CARNET_", "OTEL_"))}
        common = {
            "CARNET_DATABASE_URL": database_url,
            "CARNET_REDIS_URL": REDIS_URL,
            "CARNET_LOG_LEVEL": "WARNING",
            "CARNET_IDENTITY_ADDR": f"127.0.0.1:{identity_port}",  # nothing listens there
            "CARNET_CONSENT_ADDR": f"127.0.0.1:{consent_port}",
            "CARNET_DOSSIER_ADDR": f"127.0.0.1:{dossier_port}",
            "CARNET_IDENTITY_EVENTS_STREAM": f"{prefix}:events:identity",
            "CARNET_BENCH_JWKS": str(workdir / "jwks.json"),
        }
        consent_env = {
            **base_env, **common,
            "CARNET_GRPC_LISTEN": f"127.0.0.1:{consent_port}",
            "CARNET_EVENTS_STREAM": f"{prefix}:events:consent",
            "CARNET_INVALIDATION_STREAM": f"{prefix}:invalidations:consent",
        }
        dossier_env = {
            **base_env, **common,
            "CARNET_GRPC_LISTEN": f"127.0.0.1:{dossier_port}",
            "CARNET_MASTER_KEY_FILE": str(workdir / "master.key"),
            "CARNET_BLOB_STORE": "fs",
            "CARNET_BLOB_DIR": str(workdir / "blobs"),
        }
        procs["consent"] = start_process("serve-consent", consent_env, workdir / "consent.log")
        procs["dossier"] = start_process("serve-dossier", dossier_env, workdir / "dossier.log")
        started = time.monotonic()
        await wait_serving(consent_port, "consent", procs["consent"])
        await wait_serving(dossier_port, "dossier", procs["dossier"])
        report["start_seconds"] = round(time.monotonic() - started, 1)
        progress(f"consent (pid {procs['consent'].pid}) and dossier (pid {procs['dossier'].pid}) serving")

        heavy = uuid.uuid4()
        report["heavy_holder"] = str(heavy)
        conn = await asyncpg.connect(database_url, server_settings={"search_path": "consent"})
        try:
            for statement, extra in CONSENT_SEED_SQL:
                await conn.execute(statement, str(heavy), *extra)
        finally:
            await conn.close()
        report["seed"] = await asyncio.wait_for(seed_documents(database_url, args, heavy, progress), args.seed_timeout)
        progress(f"seed: {json.dumps(report['seed'])}")

        principals = {
            "holder": Principal(subject=str(heavy), role="holder"),
            "doctor": Principal(subject=DOCTOR, role="professional", profession_code="10", rpps="10100000001"),
        }
        tokens = {who: tokens_factory.mint(p, ttl=4 * 3600) for who, p in principals.items()}
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{dossier_port}")
        pool = await create_pool(database_url, "dossier", min_size=1, max_size=3)
        sql_conn = await asyncpg.connect(database_url, server_settings={"search_path": "dossier,public"})
        try:
            stub = pb_grpc.DossierServiceStub(channel)
            first = pb.ListDocumentsRequest(holder_id=str(heavy), page_size=PAGE_SIZE)
            # Warm-up: consent's facts, the processes' code paths, and the holder's pages.
            deep_tokens = await walk_tokens(stub, tokens["holder"], copy.deepcopy(first), args.pages)
            window_tokens = await walk_tokens(stub, tokens["doctor"], copy.deepcopy(first), 10_000)
            report["professional_window_pages"] = len(window_tokens)
            progress(f"warm: {len(deep_tokens)} holder pages, {len(window_tokens)} doctor pages (whole window)")

            scenarios = [
                Scenario("holder-first-page", tokens["holder"], first),
                Scenario("professional-first-page", tokens["doctor"], first),
                Scenario("type-filter", tokens["holder"],
                         pb.ListDocumentsRequest(holder_id=str(heavy), page_size=PAGE_SIZE, type_code=TYPE_FILTER)),
                Scenario("title-query", tokens["holder"],
                         pb.ListDocumentsRequest(holder_id=str(heavy), page_size=PAGE_SIZE, title_query=TITLE_QUERY)),
                Scenario(f"deep-paging-{args.pages}", tokens["holder"], first, walk=args.pages),
                Scenario("professional-window-end", tokens["doctor"], first, page_token=window_tokens[-1]),
            ]

            # The SQL alone, for each scenario (and two worst cases that are not run over gRPC): the
            # statements the working tree's DocumentService.list sends, captured in this process.
            probes = {
                "holder-first-page": ("holder", DocumentFilter(), ""),
                "professional-first-page": ("doctor", DocumentFilter(), ""),
                "type-filter": ("holder", DocumentFilter(type_code=TYPE_FILTER), ""),
                "title-query": ("holder", DocumentFilter(title_query=TITLE_QUERY), ""),
                f"deep-paging-{args.pages}": ("holder", DocumentFilter(), deep_tokens[-1]),
                "professional-window-end": ("doctor", DocumentFilter(), window_tokens[-1]),
                "rare-type-filter (SQL only)": ("holder", DocumentFilter(type_code=RARE_TYPE), ""),
                "title-no-match (SQL only)": ("holder", DocumentFilter(title_query=NO_MATCH_TITLE), ""),
            }
            report["sql"] = {}
            captured: dict[str, list[tuple[str, str, tuple[Any, ...]]]] = {}
            page_query: tuple[str, tuple[Any, ...]] | None = None
            count_query: tuple[str, tuple[Any, ...]] | None = None
            db = RecordingDB(pool)
            service = inprocess_service(db)
            for probe, (who, filters, token) in probes.items():
                cursor = decode_page_token(token)
                statements = await capture_listing(service, db, principals[who], heavy, filters, cursor)
                entry: dict[str, Any] = {
                    "as": who,
                    "statements": [f"{method}: {' '.join(sql.split())}" for method, sql, _ in statements],
                    "queries": {},
                }
                for _method, sql, sql_args in statements:
                    if "from documents" not in sql.lower():
                        continue
                    kind = "count" if "count(" in sql.lower() else "page"
                    captured.setdefault(probe, []).append((kind, sql, sql_args))
                    if probe == "holder-first-page" and kind == "page":
                        page_query = (sql, sql_args)
                    if probe == "holder-first-page" and kind == "count":
                        count_query = (sql, sql_args)
                    explained = await asyncio.wait_for(explain(sql_conn, sql, sql_args, args.explain_repeats), 120)
                    explained["timed_through_asyncpg"] = await asyncio.wait_for(
                        time_statement(pool, sql, sql_args, args.sql_runs), 300
                    )
                    entry["queries"][kind] = explained
                    c, g, t = explained["custom"], explained["generic"], explained["timed_through_asyncpg"]
                    progress(
                        f"SQL {probe:<28} {kind:<5} custom {c['top_node']}/{','.join(c['indexes']) or '-'}"
                        f" {c['execution_ms']} ms (read {c['rows_read_from_index']} rows, buffers"
                        f" {c['shared_hit']}+{c['shared_read']}); generic {g['top_node']}/"
                        f"{','.join(g['indexes']) or '-'} {g['execution_ms']} ms; asyncpg p50 {t['p50_ms']}"
                        f" p99 {t['p99_ms']} ms"
                    )
                entry["inprocess_list"] = await asyncio.wait_for(
                    time_inprocess_listing(service, principals[who], heavy, filters, cursor, args.sql_runs), 300
                )
                progress(f"in-process DocumentService.list {probe}: {entry['inprocess_list']}")
                report["sql"][probe] = entry
            assert page_query is not None, "no page query captured"

            report["parts"] = await asyncio.wait_for(
                time_parts(pool, page_query, count_query, consent_port, dossier_port, heavy, tokens, principals,
                           args.part_runs),
                300,
            )
            progress(f"parts: {json.dumps(report['parts'])}")

            admin = await asyncpg.connect(ADMIN_URL)
            try:
                usage = Usage(name, admin, {role: proc.pid for role, proc in procs.items()})
                report["results"] = []
                for scenario in scenarios:
                    await run_level(stub, scenario, 2, args.warmup, 60)
                    for concurrency in args.concurrency:
                        before = await usage.snapshot()
                        row = await run_level(stub, scenario, concurrency, args.calls, args.level_timeout)
                        after = await usage.snapshot()
                        row.update(Usage.between(before, after, row["n"]))
                        report["results"].append(row)
                        progress(
                            f"{row['scenario']:<26} x{concurrency}: {row['calls_per_s']:>6}/s p50 {row['p50_ms']}"
                            f" p95 {row['p95_ms']} p99 {row['p99_ms']} max {row['max_ms']} ms, errors {row['errors']},"
                            f" load {after['loadavg'][0]:.2f}, others {row['others_cores']} cores"
                        )
                report["rss_mib"] = {role: rss_mib(proc.pid) for role, proc in procs.items()}
                if args.profile_seconds and py_spy():
                    report["dossier_profile"] = await asyncio.wait_for(
                        profile_dossier(stub, scenarios[0], procs["dossier"].pid, args.profile_seconds, workdir),
                        args.profile_seconds + 90,
                    )
                    progress(f"dossier profile: {json.dumps(report['dossier_profile'])}")
                if args.what_if:
                    report["what_if"] = await asyncio.wait_for(what_if(database_url, captured, args, progress), 900)
                    # The running dossier sees the new index too: the same calls again, marked what-if.
                    report["what_if"]["grpc"] = []
                    for scenario in scenarios[:4]:
                        await run_level(stub, scenario, 1, args.warmup, 60)
                        before = await usage.snapshot()
                        row = await run_level(stub, scenario, 1, args.calls, args.level_timeout)
                        after = await usage.snapshot()
                        row.update(Usage.between(before, after, row["n"]))
                        report["what_if"]["grpc"].append(row)
                        progress(f"what-if index, gRPC {row['scenario']} x1: p50 {row['p50_ms']} p99 {row['p99_ms']} ms,"
                                 f" others {row['others_cores']} cores")
            finally:
                await admin.close()
        finally:
            await sql_conn.close()
            await pool.close()
            await channel.close(None)
    finally:
        cleanup: dict[str, str] = {}
        for role, proc in procs.items():
            try:
                cleanup[role] = await stop_process(proc)
            except BaseException as exc:  # keep cleaning up
                cleanup[role] = f"failed: {exc!r}"
        if database_url:
            try:
                await asyncio.wait_for(drop_database(ADMIN_URL, name), 120)
                cleanup["database"] = "dropped"
            except BaseException as exc:
                cleanup["database"] = f"failed to drop {name}: {exc!r}"
        try:
            client = redis.Redis.from_url(REDIS_URL)
            await asyncio.wait_for(
                client.delete(f"{prefix}:events:consent", f"{prefix}:events:identity",
                              f"{prefix}:invalidations:consent"),
                10,
            )
            await client.aclose()
            cleanup["redis"] = "private streams deleted"
        except BaseException as exc:
            cleanup["redis"] = f"failed: {exc!r}"
        for role in procs:
            log = workdir / f"{role}.log"
            if log.exists() and log.stat().st_size:
                report.setdefault("service_logs_tail", {})[role] = log.read_text(errors="replace")[-3000:]
        shutil.rmtree(workdir, ignore_errors=True)
        cleanup["workdir"] = "removed"
        report["cleanup"] = cleanup
        report["loadavg_end"] = os.getloadavg()
        progress(f"cleanup: {cleanup}")


def print_table(report: dict[str, Any]) -> None:
    seed = report.get("seed", {})

    def count(key: str) -> str:
        return f"{seed[key]:,}" if key in seed else "?"

    print(
        f"\n{count('documents')} documents, {count('holders')} holders; heavy holder: "
        f"{count('heavy_documents')} documents ({count('heavy_approved')} approved). Goal p99 < {GOAL_P99_MS:.0f} ms."
    )
    print(f"{'scenario':<26}{'conc':>5}{'calls/s':>9}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'err':>5}"
          f"{'goal':>6}{'dossier':>9}{'consent':>9}{'pg':>7}{'others':>8}{'load':>6}")
    for row in report.get("results", []):
        cpu = row["cpu_ms_per_call"]
        print(
            f"{row['scenario']:<26}{row['concurrency']:>5}{row['calls_per_s']:>9}{row['p50_ms']:>8}{row['p95_ms']:>8}"
            f"{row['p99_ms']:>8}{row['max_ms']:>8}{sum(row['errors'].values()):>5}"
            f"{'met' if row['p99_ms'] < GOAL_P99_MS else 'MISS':>6}{cpu['dossier']:>9}{cpu['consent']:>9}"
            f"{cpu['postgres']:>7}{row['others_cores']:>8}{row['loadavg_after'][0]:>6.2f}"
        )
    print("(latencies in ms; dossier/consent/pg: CPU ms per call; others: cores busy with other work)")
    if report.get("sql"):
        print(f"\n{'SQL of':<30}{'query':<7}{'plan (custom)':<48}{'exec ms':>9}{'rows read':>10}{'generic ms':>11}"
              f"{'asyncpg p99':>12}{'list() p99':>11}")
        for probe, entry in report["sql"].items():
            for kind, sql in entry["queries"].items():
                custom = sql["custom"]
                plan = f"{custom['top_node']} / {','.join(custom['indexes']) or 'no index'}"
                print(f"{probe:<30}{kind:<7}{plan:<48}{custom['execution_ms']:>9}{custom['rows_read_from_index']:>10}"
                      f"{sql['generic']['execution_ms']:>11}{sql['timed_through_asyncpg']['p99_ms']:>12}"
                      f"{entry.get('inprocess_list', {}).get('p99_ms', ''):>11}")
    if report.get("parts"):
        print("\nparts of one listing, alone (p50 / p99 ms):")
        for part, values in report["parts"].items():
            if isinstance(values, dict):
                print(f"  {part:<36}{values['p50_ms']:>8}{values['p99_ms']:>8}")


def main() -> None:
    if sys.argv[1:2] == ["serve-consent"]:
        serve_consent()
        return
    if sys.argv[1:2] == ["serve-dossier"]:
        serve_dossier()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=5_000_000)
    parser.add_argument("--holders", type=int, default=500_000, help="holders sharing the other documents")
    parser.add_argument("--heavy-documents", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=250_000, help="documents per INSERT")
    parser.add_argument("--calls", type=int, default=500, help="calls per scenario and concurrency")
    parser.add_argument("--warmup", type=int, default=20, help="uncounted calls before each scenario")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--pages", type=int, default=20, help="pages followed by the deep-paging scenario")
    parser.add_argument("--explain-repeats", type=int, default=5)
    parser.add_argument("--sql-runs", type=int, default=200)
    parser.add_argument("--part-runs", type=int, default=200)
    parser.add_argument("--seed-timeout", type=float, default=2400.0, help="seconds for seeding and VACUUM")
    parser.add_argument("--level-timeout", type=float, default=300.0, help="seconds per measured level")
    parser.add_argument("--max-minutes", type=float, default=75.0, help="the whole run stops after this")
    parser.add_argument("--profile-seconds", type=float, default=20.0,
                        help="py-spy on dossier during an extra holder-first-page level (0: none; needs py-spy)")
    parser.add_argument("--no-what-if", dest="what_if", action="store_false",
                        help="skip the candidate changes tried on the bench database at the end")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.heavy_documents * 2 > args.documents:
        parser.error("--heavy-documents must be at most half of --documents")

    began = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - began:7.1f} s] {message}", flush=True)

    report: dict[str, Any] = {
        "benchmark": "dossier_listing",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": git_revision(),
        "goal": f"p99 < {GOAL_P99_MS:.0f} ms",
        "settings": {key: value for key, value in vars(args).items() if key != "out"},
        "filters": {"type_filter": TYPE_FILTER, "rare_type": RARE_TYPE, "title_query": TITLE_QUERY},
    }

    async def bounded() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        runner = asyncio.ensure_future(run(args, report, progress))
        try:
            await asyncio.wait_for(asyncio.shield(runner), args.max_minutes * 60)
        except (TimeoutError, asyncio.CancelledError):
            runner.cancel()  # its finally: blocks stop the processes and drop the database
            with contextlib.suppress(BaseException):
                await runner
            raise

    status, outcome = 0, "complete"
    try:
        asyncio.run(bounded())
    except KeyboardInterrupt:
        status, outcome = 130, "interrupted"
    except BaseException as exc:
        status, outcome = 1, f"failed: {exc!r}"
        report["traceback"] = traceback.format_exc()
        traceback.print_exc()
    report["outcome"] = outcome
    report["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print_table(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if status == 0 else "-incomplete"
    out = args.out or RESULTS / f"dossier_listing-{dt.datetime.now(dt.UTC).date().isoformat()}{suffix}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"{outcome}; written {out}")
    sys.exit(status)


if __name__ == "__main__":
    main()
