"""Child processes: start with their own log, wait until healthy, watch, stop in order."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from .commands import pid_alive, tail
from .errors import ChildExited, Interrupted, NotReady, StepFailed
from .health import Probe

STOP_GRACE = 15.0
"""Seconds a child gets between SIGTERM and SIGKILL."""

READY_TIMEOUT = 90.0
POLL_INTERVAL = 0.2


class StopFlag:
    """Raised by Ctrl-C or SIGTERM; every wait of the launcher gives up when it is set.

    A signal handler runs in the main thread between two bytecodes, possibly while that
    thread holds a lock inside ``threading.Event.wait``; so the flag takes no lock: the
    request is a plain counter plus one byte written to a pipe the waits select on.
    """

    def __init__(self) -> None:
        self._count = 0
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def request(self) -> None:
        """Ask everything to stop; a second request asks to hurry (no grace period)."""
        self._count += 1
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_fd, b"!")

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self._count > 0

    @property
    def hurry(self) -> bool:
        """Whether the stop was asked for twice."""
        return self._count >= 2

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on a stop request."""
        if self.requested:
            return True
        with contextlib.suppress(InterruptedError):
            select.select([self._read_fd], [], [], max(timeout, 0.0))
        return self.requested

    def install_signal_handlers(self, on_signal: Callable[[int], None] | None = None) -> None:
        """Turn SIGINT and SIGTERM into stop requests (main thread only)."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.request()
            if on_signal is not None:
                on_signal(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handler)


@dataclass(frozen=True)
class ChildSpec:
    """What to run for one long-lived child and how to tell it is ready."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    probe: Probe | None = None
    marker: str = ""
    """A word of the command line identifying the process when cleaning up leftovers."""


@dataclass
class Child:
    """A running child process and where its output goes."""

    spec: ChildSpec
    process: subprocess.Popen[bytes]
    log_offset: int
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False

    @property
    def name(self) -> str:
        """The child's name, as in logs and messages."""
        return self.spec.name

    @property
    def pid(self) -> int:
        """The child's process id (also its process group id)."""
        return self.process.pid

    def exited(self) -> int | None:
        """The exit status if the child has ended, else None."""
        return self.process.poll()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines this run of the child wrote to its log."""
        return tail(self.spec.log_path, lines, self.log_offset)

    def exit_error(self) -> ChildExited:
        """The error describing this child's (unexpected) end."""
        status = self.process.returncode
        return ChildExited(self.name, status, os.fspath(self.spec.log_path), self.log_tail())


class Supervisor:
    """Runs children in batches; stops them last batch first, SIGTERM then SIGKILL."""

    def __init__(
        self,
        stop: StopFlag | None = None,
        *,
        grace: float = STOP_GRACE,
        registry: Path | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.stop_flag = stop or StopFlag()
        self.grace = grace
        self.registry = registry
        self.poll_interval = poll_interval
        self._batches: list[list[Child]] = []

    @property
    def children(self) -> list[Child]:
        """Every child started and not yet stopped, in start order."""
        return [child for batch in self._batches for child in batch]

    def start(self, specs: Iterable[ChildSpec]) -> list[Child]:
        """Start ``specs`` together as one batch (they are stopped together too)."""
        batch: list[Child] = []
        self._batches.append(batch)
        for spec in specs:
            batch.append(self._spawn(spec))
            self._save_registry()
        return batch

    def _spawn(self, spec: ChildSpec) -> Child:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"--- carnet-launcher: {spec.name} starting at {stamp} ---\n".encode())
            log.flush()
            offset = log.tell()
            process = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(spec.env),
                # Own process group: Ctrl-C reaches only the launcher, which stops children
                # in order (gateway first) instead of all at once.
                process_group=0,
            )
        return Child(spec, process, offset)

    def check_alive(self) -> None:
        """Raise ChildExited for the first child that has ended."""
        for child in self.children:
            if child.exited() is not None:
                raise child.exit_error()

    def wait_ready(
        self,
        children: Sequence[Child],
        timeout: float = READY_TIMEOUT,
        on_ready: Callable[[Child], None] | None = None,
    ) -> None:
        """Wait until every probe of ``children`` passes; fail fast if any child ends."""
        deadline = time.monotonic() + timeout
        pending = [child for child in children if not child.ready]
        reasons = {child.name: "not answering yet" for child in pending}
        while pending:
            if self.stop_flag.requested:
                raise Interrupted
            self.check_alive()
            for child in list(pending):
                reason = child.spec.probe() if child.spec.probe else None
                if reason is None:
                    child.ready = True
                    pending.remove(child)
                    if on_ready is not None:
                        on_ready(child)
                else:
                    reasons[child.name] = reason
            if pending and time.monotonic() > deadline:
                first, *others = pending
                reason = reasons[first.name]
                if others:
                    reason += f"; also not ready: {', '.join(c.name for c in others)}"
                raise NotReady(
                    first.name, reason, timeout, os.fspath(first.spec.log_path), first.log_tail()
                )
            if pending:
                self.stop_flag.wait(self.poll_interval)

    def watch(self) -> Child | None:
        """Block until a stop is requested (None) or a child ends (that child)."""
        while not self.stop_flag.requested:
            for child in self.children:
                if child.exited() is not None:
                    return child
            self.stop_flag.wait(self.poll_interval)
        return None

    def stop_all(self, on_stop: Callable[[Child], None] | None = None) -> None:
        """Stop every child, latest batch first: SIGTERM, up to ``grace`` seconds, SIGKILL."""
        while self._batches:
            batch = self._batches[-1]
            for child in batch:
                if child.exited() is None:
                    if on_stop is not None:
                        on_stop(child)
                    with contextlib.suppress(ProcessLookupError):
                        child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            for child in batch:
                self._reap(child, deadline)
            self._batches.pop()
            self._save_registry()

    def _reap(self, child: Child, deadline: float) -> None:
        while child.exited() is None:
            if self.stop_flag.hurry or time.monotonic() > deadline:
                # The whole group: a child's own helpers must not outlive it.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.process.wait()
                return
            time.sleep(0.05)

    def run_step(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], timeout: float = 300.0
    ) -> str:
        """Run a one-shot command to completion; return its output or raise StepFailed."""
        with tempfile.TemporaryFile("w+b") as output:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(env),
                process_group=0,
            )
            deadline = time.monotonic() + timeout
            interrupted = timed_out = False
            while process.poll() is None:
                interrupted = self.stop_flag.requested
                timed_out = not interrupted and time.monotonic() > deadline
                if interrupted or timed_out:
                    process.terminate()
                    try:
                        process.wait(5.0)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                    break
                self.stop_flag.wait(self.poll_interval)
            output.seek(0)
            text = output.read().decode("utf-8", errors="replace")
        if interrupted:
            raise Interrupted
        if timed_out:
            raise StepFailed(name, -1, f"{text}\n(timed out after {timeout:g} s)")
        if process.returncode != 0:
            raise StepFailed(name, process.returncode, text)
        return text

    def _save_registry(self) -> None:
        if self.registry is None:
            return
        entries = [
            {"name": child.name, "pid": child.pid, "marker": child.spec.marker}
            for child in self.children
            if child.exited() is None
        ]
        if not entries:
            self.registry.unlink(missing_ok=True)
            return
        self.registry.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.registry.with_name(f".{self.registry.name}.tmp")
        tmp.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.registry)


def stop_leftovers(registry: Path, grace: float = STOP_GRACE) -> list[str]:
    """Stop children a crashed launcher left running (from its registry); return their names."""
    try:
        entries = json.loads(registry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    stopped: list[str] = []
    targets: list[tuple[str, int]] = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            name, pid, marker = str(entry["name"]), int(entry["pid"]), str(entry["marker"])
        except (KeyError, TypeError, ValueError):
            continue
        if pid_alive(pid) and _command_line_has(pid, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            targets.append((name, pid))
    deadline = time.monotonic() + grace
    for name, pid in targets:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        stopped.append(name)
    registry.unlink(missing_ok=True)
    return stopped


def _command_line_has(pid: int, marker: str) -> bool:
    # A recycled pid must not get a signal meant for a Carnet service.
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(marker) and marker.encode() in words
