"""Consent's Decide: decisions per second and latency, in process and over gRPC.

    .venv/bin/python bench/consent_decide.py [--holders 5000] [--seconds 10]
        [--concurrency 1,8,32] [--client-processes 1] [--batches 10x1,10x2,50x8] [--out FILE]

Starts consent as its own process (``run_service``, the production entry point; only
the token verifier trusts a key made here instead of identity's JWKS) on a fresh
database, seeds the facts of N holders straight into its tables, then measures:

1. ``inproc-decide``: the pure ``decide()`` on cached facts, in this process;
2. ``inproc-cache+decide``: the facts cache lookup plus ``decide()``, as the servicer does;
3. ``grpc-decide``: ``Decide`` over gRPC (loopback), at each concurrency level, from
   ``--client-processes`` client processes;
4. ``grpc-batch``: ``BatchDecide`` over gRPC, for each ``SIZExCONCURRENCY`` of ``--batches``;
5. ``grpc-health``: the standard ``Health/Check`` on the same server at concurrency 8: the
   floor of one unary call through grpc.aio and the kit's interceptors on this machine.

Each gRPC level runs ``--seconds`` after a warm-up that loads every holder's facts into
consent's cache. Writes ``bench/results/consent_decide-<UTC date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ADMIN_URL = os.environ.get("CARNET_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CARNET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLASSES = ["SYNTH", "PSY_SYNTHESIS", "REPORT", "PRESCRIPTION", "DISPENSATION", "LAB", "IMAGING", "CERTIFICATE",
           "VACCINATION", "PREVENTION", "CARE_PLAN", "ADMIN", "HOLDER"]


# ---------------------------------------------------------------- server process


def serve() -> None:
    """Run consent like ``python -m carnet_consent``, trusting the JWKS in CARNET_BENCH_JWKS."""
    from carnet_consent.app import build
    from carnet_consent.settings import ConsentSettings
    from carnet_kit.auth import TokenVerifier
    from carnet_kit.peers import redis_revocation_check
    from carnet_kit.redis_client import create_redis
    from carnet_kit.server import run_service

    jwks = json.loads(Path(os.environ["CARNET_BENCH_JWKS"]).read_text())

    async def fetch() -> dict[str, Any]:
        return jwks

    def build_with_bench_keys(settings: ConsentSettings) -> Any:
        # As remote_verifier does, revocations are checked in Redis on every call.
        revoked = redis_revocation_check(create_redis(settings.redis_url))
        return build(settings, verifier=TokenVerifier(fetch, is_revoked=revoked))

    run_service("carnet-consent", ConsentSettings, build_with_bench_keys)


# ---------------------------------------------------------------- workload


def holder(i: int) -> str:
    return f"bench-holder-{i}"


SEED_SQL = [
    """INSERT INTO persons (holder_id, state, occur_time)
       SELECT 'bench-holder-' || i, 'ACTIVE', now() FROM generate_series(0, $1 - 1) i""",
    """INSERT INTO care_team_authorisations (authorisation_id, holder_id, professional_id, origin, created_by)
       SELECT gen_random_uuid(), 'bench-holder-' || i, 'bench-doctor-' || (i % 200), 'HOLDER_GRANT', '{}'::jsonb
       FROM generate_series(0, $1 - 1) i""",
    """INSERT INTO care_team_authorisations (authorisation_id, holder_id, professional_id, origin, created_by)
       SELECT gen_random_uuid(), 'bench-holder-' || i, 'bench-nurse-' || (i % 50), 'PROFESSIONAL_DECLARATION',
              '{}'::jsonb
       FROM generate_series(0, $1 - 1) i""",
    """INSERT INTO treating_physicians (holder_id, professional_id, occur_time)
       SELECT 'bench-holder-' || i, 'bench-tp-' || (i % 100), now() FROM generate_series(0, $1 - 1) i""",
    """INSERT INTO blocks (block_id, holder_id, professional_id, created_by)
       SELECT gen_random_uuid(), 'bench-holder-' || i, 'bench-blocked-' || (i % 20), '{}'::jsonb
       FROM generate_series(0, $1 - 1) i""",
    """INSERT INTO oppositions (opposition_id, holder_id, kind, channel, receipt_number, recorded_by)
       SELECT gen_random_uuid(), 'bench-holder-' || i, 'BREAK_GLASS', 'ONLINE', 'OPP-BENCH' || i, '{}'::jsonb
       FROM generate_series(0, $1 - 1) i WHERE i % 10 = 0""",
    """INSERT INTO helpers (holder_id, helper_person_id, access, occur_time)
       SELECT 'bench-holder-' || i, 'bench-helper-' || i, 'READ_ONLY', now() FROM generate_series(0, $1 - 1) i""",
]


def workload(holders: int, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """A mix of questions dossier asks: care team, treating physician, blocked, break-glass, helpers."""
    rng = random.Random(seed)
    questions = []
    for _ in range(count):
        i = rng.randrange(holders)
        draw = rng.random()
        document_class = rng.choice(CLASSES)
        hidden = False
        action, reason = "ACTION_READ", ""
        if draw < 0.55:
            actor = {"subject": f"bench-doctor-{i % 200}", "role": "ROLE_PROFESSIONAL", "profession_code": "10"}
        elif draw < 0.70:
            actor = {"subject": f"bench-nurse-{i % 50}", "role": "ROLE_PROFESSIONAL", "profession_code": "60"}
        elif draw < 0.80:
            actor = {"subject": f"bench-tp-{i % 100}", "role": "ROLE_PROFESSIONAL", "profession_code": "10"}
            hidden = True
        elif draw < 0.88:
            actor = {"subject": f"bench-blocked-{i % 20}", "role": "ROLE_PROFESSIONAL", "profession_code": "10"}
        elif draw < 0.93:
            actor = {"subject": "bench-urgentist", "role": "ROLE_PROFESSIONAL", "profession_code": "10"}
            action, reason = "ACTION_BREAK_GLASS_READ", "Patient inconscient aux urgences"
        else:
            actor = {"subject": f"bench-helper-{i}", "role": "ROLE_HELPER", "acting_for": holder(i)}
            action = "ACTION_LIST"
        questions.append({
            "actor": actor,
            "holder_id": holder(i),
            "action": action,
            "item": {"kind": "ITEM_KIND_DOCUMENT", "document_class": document_class,
                     "hidden_from_professionals": hidden},
            "break_glass_reason": reason,
        })
    return questions


# ---------------------------------------------------------------- client process


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def _client(spec: dict[str, Any]) -> dict[str, Any]:
    import grpc
    from google.protobuf import json_format
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from carnet.consent.v1 import consent_service_pb2 as pb
    from carnet.consent.v1 import consent_service_pb2_grpc

    metadata = (("authorization", f"Bearer {spec['token']}"),)
    questions = [json_format.ParseDict(q, pb.DecideRequest()) for q in spec["questions"]]
    batch_size = spec["batch_size"]
    batches = []
    if batch_size:
        for start in range(0, len(questions) - batch_size, batch_size):
            first = questions[start]
            batches.append(pb.BatchDecideRequest(
                actor=first.actor, holder_id=first.holder_id, action=first.action,
                items=[q.item for q in questions[start:start + batch_size]],
                break_glass_reason=first.break_glass_reason,
            ))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    allowed = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{spec['port']}") as channel:
        stub = consent_service_pb2_grpc.ConsentServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        health_request = health_pb2.HealthCheckRequest()
        deadline = time.monotonic() + spec["seconds"]
        begin = time.monotonic()
        # A warm-up asks each question once; a measured level cycles until its deadline.
        once = spec.get("once", False)

        async def worker(offset: int) -> None:
            nonlocal allowed
            n = offset
            while time.monotonic() < deadline and not (once and n >= len(questions)):
                started = time.perf_counter()
                try:
                    if spec.get("health"):
                        await health.Check(health_request, timeout=10)
                    elif batch_size:
                        response = await stub.BatchDecide(batches[n % len(batches)], metadata=metadata, timeout=10)
                        allowed += sum(1 for d in response.decisions if d.effect == 1)
                    else:
                        answer = await stub.Decide(questions[n % len(questions)], metadata=metadata, timeout=10)
                        allowed += answer.effect == 1
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    continue
                latencies.append(time.perf_counter() - started)
                n += spec["concurrency"] * spec["processes"]

        await asyncio.gather(*(worker(spec["offset"] + k * spec["processes"]) for k in range(spec["concurrency"])))
        wall = time.monotonic() - begin
    return {"latencies": latencies, "errors": errors, "wall": wall, "allowed": allowed}


def h2load_level(port: int, token: str, question: dict[str, Any], requests: int, concurrency: int,
                 workdir: Path) -> dict[str, Any]:
    """``Decide`` driven by nghttp2's ``h2load`` (a C client, so nearly all the CPU is consent's).

    h2load repeats one framed request; its per-request log gives the latencies. It cannot
    read gRPC trailers, so every response body is checked to be as long as a Decide answer.
    """
    import grpc
    from google.protobuf import json_format

    from carnet.consent.v1 import consent_service_pb2 as pb
    from carnet.consent.v1 import consent_service_pb2_grpc

    request = json_format.ParseDict(question, pb.DecideRequest())
    body = request.SerializeToString()
    framed = workdir / "decide.bin"
    framed.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)
    # The same request once through grpc: the answer h2load must get each time.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = consent_service_pb2_grpc.ConsentServiceStub(channel).Decide(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=10
        )
    expected = 5 + answer.ByteSize()
    connections = min(concurrency, 4)
    log = workdir / "h2load.log"
    out = subprocess.run(
        ["h2load", "-n", str(requests), "-c", str(connections), "-m", str(max(1, concurrency // connections)),
         "-d", str(framed), "-H", "content-type: application/grpc", "-H", "te: trailers",
         "-H", f"authorization: Bearer {token}", "--log-file", str(log),
         f"http://127.0.0.1:{port}/carnet.consent.v1.ConsentService/Decide"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    finished = next(line for line in out.splitlines() if line.startswith("finished in"))
    wall = float(finished.split()[2].rstrip("s,"))
    traffic = next(line for line in out.splitlines() if line.startswith("traffic:"))
    data_bytes = int(re.search(r"\((\d+)\) data", traffic).group(1))  # type: ignore[union-attr]
    latencies = [int(line.split("\t")[2]) / 1e6 for line in log.read_text().splitlines() if line.strip()]
    ok = sum(1 for line in log.read_text().splitlines() if line.split("\t")[1] == "200")
    errors = {} if data_bytes == expected * ok == expected * len(latencies) else {
        "WRONG_BODIES": len(latencies) - data_bytes // max(1, expected)}
    return {"latencies": latencies, "errors": errors, "wall": wall, "allowed": answer.effect == 1}


def client_main(spec_file: str) -> None:
    """A load-generating process: reads its spec, prints its measurements as JSON."""
    spec = json.loads(Path(spec_file).read_text())
    print(json.dumps(asyncio.run(_client(spec))))


# ---------------------------------------------------------------- driver


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Consent in a process (and session) of its own."""
    return subprocess.Popen([sys.executable, __file__, "serve"], env=env, start_new_session=True)


def git_revision() -> str:
    """The repository's short revision."""
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


async def wait_serving(port: int, timeout: float = 60.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("consent did not start")
            await asyncio.sleep(0.2)


def run_clients(spec: dict[str, Any], processes: int, workdir: Path) -> dict[str, Any]:
    """Run ``processes`` client processes in parallel; merge what they measured."""
    procs = []
    for k in range(processes):
        path = workdir / f"client-{k}.json"
        path.write_text(json.dumps({**spec, "offset": k, "processes": processes}))
        procs.append(subprocess.Popen([sys.executable, __file__, "client", str(path)], stdout=subprocess.PIPE))
    merged: dict[str, Any] = {"latencies": [], "errors": {}, "wall": 0.0, "allowed": 0}
    for proc in procs:
        out, _ = proc.communicate(timeout=spec["seconds"] + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"client process failed ({proc.returncode})")
        part = json.loads(out)
        merged["latencies"] += part["latencies"]
        merged["allowed"] += part["allowed"]
        merged["wall"] = max(merged["wall"], part["wall"])
        for name, count in part["errors"].items():
            merged["errors"][name] = merged["errors"].get(name, 0) + count
    return merged


def summarise(name: str, concurrency: int, calls: list[float], wall: float, per_call: int, **extra: Any) -> dict[str, Any]:
    ordered = sorted(calls)
    return {
        "scenario": name,
        "concurrency": concurrency,
        "calls": len(ordered),
        "decisions_per_s": round(len(ordered) * per_call / wall, 1) if wall else 0.0,
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3) if ordered else None,
        **extra,
    }


async def measure_in_process(database_url: str, holders: int, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """decide() alone, and the cache lookup + decide(), on the same facts consent would cache."""
    from google.protobuf import json_format

    from carnet.consent.v1 import consent_service_pb2 as pb
    from carnet_consent.access_matrix import load_access_matrices
    from carnet_consent.domain import DecisionRequest, decide
    from carnet_consent.facts import FactsCache
    from carnet_consent.servicer import _action, _item
    from carnet_consent.store import SCHEMA, ConsentStore
    from carnet_kit.auth import Principal
    from carnet_kit.db import create_pool

    matrix = load_access_matrices()[-1]
    pool = await create_pool(database_url, SCHEMA)
    try:
        cache = FactsCache(ConsentStore(pool).load_facts, ttl_seconds=3600)
        for i in range(holders):
            await cache.get(holder(i))
        protos = [json_format.ParseDict(q, pb.DecideRequest()) for q in questions]
        requests = [
            DecisionRequest(
                actor=Principal.from_actor(p.actor), holder_id=p.holder_id, action=_action(p.action),
                item=_item(p.item), break_glass_reason=p.break_glass_reason, at=time.time(),
            )
            for p in protos
        ]
        results = []
        for name, with_cache in (("inproc-decide", False), ("inproc-cache+decide", True)):
            latencies: list[float] = []
            begin = time.perf_counter()
            for request in requests:
                started = time.perf_counter()
                if with_cache:
                    facts = cache.peek(request.holder_id) or await cache.get(request.holder_id)
                else:
                    facts = cache.peek(request.holder_id)
                    assert facts is not None
                decide(request, facts, matrix)
                latencies.append(time.perf_counter() - started)
            wall = time.perf_counter() - begin
            results.append(summarise(name, 1, latencies, wall, 1))
        return results
    finally:
        await pool.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    from carnet_kit.auth import Principal
    from carnet_kit.testing import TokenFactory, create_database, drop_database, free_port

    name = f"carnet_bench_{uuid.uuid4().hex[:10]}"
    database_url = await create_database(ADMIN_URL, name)
    workdir = Path(tempfile.mkdtemp(prefix="consent-bench-"))
    tokens = TokenFactory()
    (workdir / "jwks.json").write_text(json.dumps(tokens.jwks()))
    port = free_port()
    prefix = f"carnet:bench:{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CARNET_", "OTEL_"))}
    env.update({
        "CARNET_GRPC_LISTEN": f"127.0.0.1:{port}",
        "CARNET_DATABASE_URL": database_url,
        "CARNET_REDIS_URL": REDIS_URL,
        "CARNET_PROFILE": "test",
        "CARNET_LOG_LEVEL": "WARNING",
        "CARNET_EVENTS_STREAM": f"{prefix}:events:consent",
        "CARNET_IDENTITY_EVENTS_STREAM": f"{prefix}:events:identity",
        "CARNET_INVALIDATION_STREAM": f"{prefix}:invalidations:consent",
        "CARNET_FACTS_TTL_SECONDS": "3600",
        "CARNET_BENCH_JWKS": str(workdir / "jwks.json"),
    })
    server = await asyncio.to_thread(start_server, env)
    report: dict[str, Any] = {}
    try:
        await wait_serving(port)
        conn = await asyncpg.connect(database_url, server_settings={"search_path": "consent"})
        try:
            started = time.monotonic()
            for statement in SEED_SQL:
                await conn.execute(statement, args.holders)
            seed_seconds = time.monotonic() - started
        finally:
            await conn.close()
        questions = workload(args.holders, max(20_000, args.holders * 4))
        token = tokens.mint(Principal(subject="dossier", role="service"), ttl=3600)
        base_spec = {"port": port, "token": token, "questions": questions, "batch_size": 0}

        results = await measure_in_process(database_url, args.holders, questions)
        # Warm consent's cache: one decision per holder.
        warm = workload(args.holders, args.holders, seed=1)
        for i, question in enumerate(warm):
            question["holder_id"] = holder(i)
            question["actor"] = {"subject": f"bench-doctor-{i % 200}", "role": "ROLE_PROFESSIONAL",
                                 "profession_code": "10"}
            question["action"], question["break_glass_reason"] = "ACTION_READ", ""
        await asyncio.to_thread(
            run_clients, {**base_spec, "questions": warm, "seconds": 300, "concurrency": 16, "once": True}, 1, workdir
        )

        levels = [("grpc-decide", c, 0) for c in args.concurrency]
        levels += [("grpc-batch", concurrency, size) for size, concurrency in args.batches]
        levels.append(("grpc-health", 8, 0))
        for scenario, concurrency, batch_size in levels:
            cpu_before = cpu_seconds(server.pid)
            measured = await asyncio.to_thread(
                run_clients,
                {**base_spec, "seconds": args.seconds, "concurrency": concurrency, "batch_size": batch_size,
                 "health": scenario == "grpc-health"},
                args.client_processes,
                workdir,
            )
            cpu = cpu_seconds(server.pid) - cpu_before
            per_call = batch_size or 1
            row = summarise(
                scenario, concurrency * args.client_processes, measured["latencies"], measured["wall"], per_call,
                errors=measured["errors"], batch_size=batch_size or None,
                consent_cpu_cores=round(cpu / measured["wall"], 2),
                consent_cpu_us_per_decision=round(cpu / max(1, len(measured["latencies"]) * per_call) * 1e6, 1),
            )
            results.append(row)
            print(json.dumps(row), flush=True)
        if args.h2load and shutil.which("h2load"):
            care_team_read = {
                "actor": {"subject": "bench-doctor-7", "role": "ROLE_PROFESSIONAL", "profession_code": "10"},
                "holder_id": holder(7), "action": "ACTION_READ",
                "item": {"kind": "ITEM_KIND_DOCUMENT", "document_class": "REPORT"},
            }
            for concurrency in args.h2load:
                cpu_before = cpu_seconds(server.pid)
                measured = await asyncio.to_thread(
                    h2load_level, port, token, care_team_read, int(3000 * args.seconds), concurrency, workdir
                )
                cpu = cpu_seconds(server.pid) - cpu_before
                row = summarise(
                    "h2load-decide", concurrency, measured["latencies"], measured["wall"], 1,
                    errors=measured["errors"], batch_size=None,
                    consent_cpu_cores=round(cpu / measured["wall"], 2),
                    consent_cpu_us_per_decision=round(cpu / max(1, len(measured["latencies"])) * 1e6, 1),
                )
                results.append(row)
                print(json.dumps(row), flush=True)
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "holders": args.holders,
            "seed_seconds": round(seed_seconds, 2),
            "seconds_per_level": args.seconds,
            "client_processes": args.client_processes,
            "consent_rss_mib": round(rss_mib(server.pid), 1),
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "kernel": platform.release(),
                "loadavg": os.getloadavg(),
            },
            "git": await asyncio.to_thread(git_revision),
            "results": results,
        }
        return report
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(server.wait, 30)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            await asyncio.to_thread(server.wait)
        await drop_database(ADMIN_URL, name)
        import redis.asyncio as redis

        client = redis.Redis.from_url(REDIS_URL)
        await client.delete(f"{prefix}:events:consent", f"{prefix}:events:identity", f"{prefix}:invalidations:consent")
        await client.aclose()


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{report['holders']} holders, {report['seconds_per_level']} s per gRPC level, "
          f"{report['client_processes']} client process(es), consent RSS {report['consent_rss_mib']} MiB")
    print(f"{'scenario':<22}{'conc':>6}{'decisions/s':>14}{'p50 ms':>10}{'p99 ms':>10}{'consent cores':>15}")
    for row in report["results"]:
        print(f"{row['scenario']:<22}{row['concurrency']:>6}{row['decisions_per_s']:>14}{row['p50_ms']:>10}"
              f"{row['p99_ms']:>10}{row.get('consent_cpu_cores', ''):>15}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve()
        return
    if len(sys.argv) > 2 and sys.argv[1] == "client":
        client_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holders", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument(
        "--batches", type=lambda s: [tuple(int(n) for n in level.split("x")) for level in s.split(",")],
        default=[(10, 1), (10, 2), (50, 8)], help="BatchDecide levels as SIZExCONCURRENCY, comma-separated",
    )
    parser.add_argument(
        "--h2load", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 8],
        help="calls in flight of the h2load levels (skipped when h2load is not installed; '' for none)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print_table(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"consent_decide-{datetime.now(UTC).date().isoformat()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
