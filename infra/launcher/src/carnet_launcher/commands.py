"""Running helper programs (initdb, pg_ctl, redis-server…) to completion, maybe as another user."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InfraError


@dataclass(frozen=True)
class SystemUser:
    """An unprivileged account a helper program runs as."""

    name: str
    uid: int
    gid: int

    @classmethod
    def ensure(cls, name: str) -> SystemUser:
        """Return the system account ``name``, creating it (useradd) when missing."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            try:
                grp.getgrnam(name)
                group = ["--gid", name]  # left behind by a userdel
            except KeyError:
                group = ["--user-group"]
            completed = subprocess.run(
                [
                    "useradd",
                    "--system",
                    *group,
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            try:
                # Looked up even when useradd failed: a concurrent launcher may have won.
                entry = pwd.getpwnam(name)
            except KeyError:
                raise InfraError(
                    f"cannot create system user {name!r} (useradd: {completed.stderr.strip()})"
                ) from None
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def chown(self, path: Path) -> None:
        """Give ``path`` to this user."""
        os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def chown_tree(self, root: Path) -> None:
        """Give ``root`` and everything below it to this user."""
        self.chown(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for entry in (*dirnames, *filenames):
                self.chown(Path(dirpath) / entry)


def run_command(
    argv: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    user: SystemUser | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> tuple[int, str]:
    """Run ``argv`` and return its status and combined output; raise InfraError on failure."""
    # A temporary file, not a pipe: pg_ctl's daemonised postmaster could keep a pipe open.
    with tempfile.TemporaryFile("w+b") as output:
        try:
            completed = subprocess.run(
                [os.fspath(arg) for arg in argv],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd="/",  # the target user may not be allowed into the current directory
                user=user.uid if user else None,
                group=user.gid if user else None,
                extra_groups=[] if user else None,
                # Own process group: Ctrl-C goes to the launcher, which then stops things in order.
                process_group=0,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InfraError(f"{what} did not finish within {timeout:g} s") from None
        except OSError as exc:
            raise InfraError(f"{what}: cannot run {os.fspath(argv[0])}: {exc}") from None
        output.seek(0)
        text = output.read().decode("utf-8", errors="replace")
    if check and completed.returncode != 0:
        raise InfraError(f"{what} failed (status {completed.returncode}):\n{text.rstrip()}")
    return completed.returncode, text


def make_traversable(path: Path) -> None:
    """Let every user traverse ``path`` and each directory above it (adds o+x where missing)."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def make_readable_tree(roots: Iterable[Path]) -> None:
    """Let every user read (and run, where the owner may) everything under ``roots``."""
    for root in roots:
        make_traversable(root)
        for dirpath, _dirnames, filenames in os.walk(root):
            _add_mode(Path(dirpath), stat.S_IROTH | stat.S_IXOTH)
            for filename in filenames:
                file = Path(dirpath) / filename
                mode = file.lstat().st_mode
                if stat.S_ISLNK(mode):
                    continue
                extra = stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
                _add_mode(file, extra, mode)


def _add_mode(path: Path, bits: int, mode: int | None = None) -> None:
    current = path.stat().st_mode if mode is None else mode
    if current & bits != bits:
        path.chmod(stat.S_IMODE(current) | bits)


def tail(path: Path, lines: int = 40, start: int = 0) -> str:
    """The last ``lines`` lines of ``path`` from byte ``start`` on ("" if absent)."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            # Reading the last 64 KiB is plenty for a few dozen lines.
            file.seek(max(start, size - 65536))
            data = file.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """Tell whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    # A daemon is re-parented to pid 1, which in a container may never reap it: a zombie is gone.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
