"""Where the launcher keeps things inside its data directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataDir:
    """The paths of one data directory (``.carnet`` by default); ``root`` is absolute."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> DataDir:
        """Return the layout rooted at ``path``, made absolute."""
        return cls(Path(path).expanduser().resolve())

    @property
    def postgres(self) -> Path:
        """PostgreSQL cluster directory (PGDATA)."""
        return self.root / "postgres"

    @property
    def redis(self) -> Path:
        """Redis working directory (append-only file)."""
        return self.root / "redis"

    @property
    def logs(self) -> Path:
        """One log file per process."""
        return self.root / "logs"

    @property
    def mailbox(self) -> Path:
        """Messages received by the SMTP sink, one ``.eml`` file each."""
        return self.root / "mailbox"

    @property
    def objects(self) -> Path:
        """Filesystem object store."""
        return self.root / "objects"

    @property
    def secrets(self) -> Path:
        """Secrets the services generate for local use (mode 0700)."""
        return self.root / "secrets"

    @property
    def run(self) -> Path:
        """Runtime state: process registry, sockets."""
        return self.root / "run"

    @property
    def ports_file(self) -> Path:
        """Ports chosen once for PostgreSQL, Redis and the SMTP sink."""
        return self.root / "ports.json"

    @property
    def seeded_marker(self) -> Path:
        """Present once the demo population has been seeded."""
        return self.root / "seeded"

    @property
    def lock_file(self) -> Path:
        """Held by the launcher that owns this data directory."""
        return self.root / "launcher.lock"

    def log(self, name: str) -> Path:
        """Log file of the process called ``name``."""
        return self.logs / f"{name}.log"

    def prepare(self) -> None:
        """Create the directories every command needs."""
        for directory in (self.root, self.logs, self.run):
            directory.mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(mode=0o700, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        self.secrets.chmod(0o700)
