"""The supervisor with dummy children: health wait, ordered SIGTERM stop, crash reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from carnet_launcher.commands import pid_alive
from carnet_launcher.errors import ChildExited, Interrupted, NotReady, StepFailed
from carnet_launcher.health import grpc_health, grpc_probe, http_ok
from carnet_launcher.ports import pick_free_port
from carnet_launcher.supervisor import ChildSpec, StopFlag, Supervisor, stop_leftovers

# A stand-in for a Carnet service: standard gRPC health, NOT_SERVING for a while, then
# SERVING; on SIGTERM it says so, goes NOT_SERVING and stops gracefully.
HEALTH_SERVER = textwrap.dedent("""
    import signal, sys, threading
    from concurrent import futures
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    port, warm_up = int(sys.argv[1]), float(sys.argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    print("listening, warming up", flush=True)
    if warm_up >= 0 and not stop.wait(warm_up):
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        print("serving", flush=True)
    stop.wait()
    print("SIGTERM received, stopping gracefully", flush=True)
    servicer.enter_graceful_shutdown()
    server.stop(grace=1).wait()
    print("stopped", flush=True)
""")


def health_child(tmp_path: Path, name: str, warm_up: float = 0.5) -> ChildSpec:
    port = pick_free_port()
    return ChildSpec(
        name=name,
        argv=(sys.executable, "-c", HEALTH_SERVER, str(port), str(warm_up)),
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        log_path=tmp_path / "logs" / f"{name}.log",
        probe=grpc_probe(f"127.0.0.1:{port}"),
        marker=HEALTH_SERVER,
    )


def script_child(tmp_path: Path, name: str, code: str) -> ChildSpec:
    return ChildSpec(
        name=name,
        argv=(sys.executable, "-c", textwrap.dedent(code)),
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        log_path=tmp_path / "logs" / f"{name}.log",
        probe=lambda: "never ready",
    )


@pytest.fixture
def supervisor(tmp_path: Path) -> Supervisor:
    return Supervisor(StopFlag(), grace=5.0, registry=tmp_path / "run" / "children.json")


def test_waits_for_grpc_health_then_stops_children_with_sigterm_in_reverse_batches(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    services = supervisor.start([health_child(tmp_path, "alpha"), health_child(tmp_path, "beta")])
    try:
        started = time.monotonic()
        ready: list[str] = []
        supervisor.wait_ready(services, timeout=30, on_ready=lambda c: ready.append(c.name))
        assert sorted(ready) == ["alpha", "beta"]
        assert time.monotonic() - started >= 0.4, "NOT_SERVING was not taken for ready"
        edge = supervisor.start([health_child(tmp_path, "edge", warm_up=0)])
        supervisor.wait_ready(edge, timeout=30)
        registry = json.loads((tmp_path / "run" / "children.json").read_text())
        assert [entry["name"] for entry in registry] == ["alpha", "beta", "edge"]
    finally:
        stopped: list[str] = []
        supervisor.stop_all(on_stop=lambda c: stopped.append(c.name))

    assert stopped == ["edge", "alpha", "beta"], "last batch first"
    for child in [*services, *edge]:
        assert child.process.returncode == 0, child.log_tail()
        assert "SIGTERM received, stopping gracefully" in child.log_tail()
    assert not (tmp_path / "run" / "children.json").exists()
    assert supervisor.children == []


def test_a_child_exiting_during_start_up_is_reported_with_its_log_tail(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    healthy = health_child(tmp_path, "healthy", warm_up=60)
    broken = script_child(
        tmp_path,
        "broken",
        """
        import sys
        print("reading configuration")
        print("CARNET_DATABASE_URL is missing", file=sys.stderr)
        sys.exit(3)
    """,
    )
    children = supervisor.start([healthy, broken])
    try:
        with pytest.raises(ChildExited) as caught:
            supervisor.wait_ready(children, timeout=30)
    finally:
        supervisor.stop_all()
    assert caught.value.name == "broken"
    assert caught.value.returncode == 3
    assert caught.value.log_tail.splitlines() == [
        "reading configuration",
        "CARNET_DATABASE_URL is missing",
    ]
    assert "broken exited with status 3" in str(caught.value)
    # SIGTERM may land before the dummy installs its handler: either way, no SIGKILL needed.
    assert children[0].process.returncode in (0, -signal.SIGTERM), "stopped by SIGTERM"


def test_log_tail_shows_only_the_current_run(tmp_path: Path, supervisor: Supervisor) -> None:
    spec = script_child(tmp_path, "again", "print('this run'); raise SystemExit(1)")
    spec.log_path.parent.mkdir(parents=True)
    spec.log_path.write_text("output of an earlier run\n")
    children = supervisor.start([spec])
    with pytest.raises(ChildExited) as caught:
        supervisor.wait_ready(children, timeout=30)
    supervisor.stop_all()
    assert caught.value.log_tail == "this run"
    assert "output of an earlier run" in spec.log_path.read_text(), "logs are appended"


def test_a_child_that_never_serves_is_named_when_the_wait_times_out(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    children = supervisor.start([health_child(tmp_path, "stuck", warm_up=-1)])
    try:
        with pytest.raises(NotReady) as caught:
            supervisor.wait_ready(children, timeout=2)
    finally:
        supervisor.stop_all()
    assert caught.value.name == "stuck"
    assert "NOT_SERVING" in caught.value.reason
    assert "stuck is not ready after 2 s" in str(caught.value)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    supervisor = Supervisor(StopFlag(), grace=1.0)
    stubborn = script_child(
        tmp_path,
        "stubborn",
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(60)
    """,
    )
    (child,) = supervisor.start([stubborn])
    deadline = time.monotonic() + 10
    while "ignoring" not in child.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    supervisor.stop_all()
    assert child.process.returncode == -signal.SIGKILL
    assert 0.9 <= time.monotonic() - started < 5


def test_watch_returns_the_child_that_dies_while_running(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    children = supervisor.start(
        [
            health_child(tmp_path, "steady", warm_up=0),
            script_child(tmp_path, "fragile", "import time; time.sleep(1); raise SystemExit(7)"),
        ]
    )
    try:
        crashed = supervisor.watch()
    finally:
        supervisor.stop_all()
    assert crashed is children[1]
    assert crashed.process.returncode == 7


def test_watch_and_waits_end_when_a_stop_is_requested(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    children = supervisor.start([health_child(tmp_path, "slow", warm_up=60)])
    supervisor.stop_flag.request()
    try:
        assert supervisor.watch() is None
        with pytest.raises(Interrupted):
            supervisor.wait_ready(children, timeout=30)
    finally:
        supervisor.stop_all()


def test_run_step_returns_output_or_raises_with_it(supervisor: Supervisor) -> None:
    env = dict(os.environ)
    assert supervisor.run_step("ok", [sys.executable, "-c", "print('seeded')"], env) == "seeded\n"
    with pytest.raises(StepFailed) as caught:
        supervisor.run_step(
            "seed", [sys.executable, "-c", "import sys; print('no such table'); sys.exit(2)"], env
        )
    assert caught.value.returncode == 2
    assert "no such table" in caught.value.output


def test_leftover_children_of_a_crashed_launcher_are_stopped(tmp_path: Path) -> None:
    registry = tmp_path / "run" / "children.json"
    crashed_launcher = Supervisor(StopFlag(), registry=registry)
    (child,) = crashed_launcher.start([health_child(tmp_path, "orphan", warm_up=0)])
    crashed_launcher.wait_ready([child], timeout=30)

    assert stop_leftovers(registry, grace=5) == ["orphan"]
    child.process.wait(5)
    assert child.process.returncode == 0
    assert not registry.exists()


def test_leftover_cleanup_ignores_a_recycled_pid(tmp_path: Path) -> None:
    registry = tmp_path / "children.json"
    registry.write_text(json.dumps([{"name": "ghost", "pid": os.getpid(), "marker": "nope"}]))
    assert stop_leftovers(registry, grace=1) == []
    assert pid_alive(os.getpid())


def test_probes_explain_why_a_target_is_not_ready() -> None:
    port = pick_free_port()
    assert grpc_health(f"127.0.0.1:{port}", timeout=1).startswith("UNAVAILABLE")  # type: ignore[union-attr]
    assert http_ok(f"http://127.0.0.1:{port}/readyz", timeout=1) is not None


def test_stop_requests_from_signals_wake_the_waits_without_taking_a_lock() -> None:
    # A handler that takes the lock of threading.Event can deadlock against a wait
    # holding it; many signals in a row made that happen. Here they must all go through.
    script = (
        "import sys, time\n"
        "from carnet_launcher.supervisor import StopFlag\n"
        "flag = StopFlag()\n"
        "flag.install_signal_handlers()\n"
        "print('ready', flush=True)\n"
        "while not flag.hurry:\n"
        "    flag.wait(30)\n"
        "print('stopped', flag.requested, flag.hurry, flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        for _ in range(50):
            child.send_signal(signal.SIGTERM)
            time.sleep(0.002)
        out, _ = child.communicate(timeout=10)
        assert out.strip() == "stopped True True"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
