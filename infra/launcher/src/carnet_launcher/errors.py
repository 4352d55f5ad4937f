"""The launcher's exceptions: one hierarchy, each carrying what the user needs to act."""

from __future__ import annotations


class LauncherError(Exception):
    """Anything that stops the launcher; its message is shown to the user as is."""


class InfraError(LauncherError):
    """PostgreSQL, Redis or the SMTP sink could not be started, reached or stopped."""


class DataDirBusy(LauncherError):
    """Another launcher already holds the data directory."""


class PortInUse(LauncherError):
    """An address the platform must listen on is already taken."""


class Interrupted(LauncherError):
    """Ctrl-C or SIGTERM arrived while starting up."""

    def __init__(self) -> None:
        super().__init__("interrupted")


class ChildExited(LauncherError):
    """A supervised process ended on its own."""

    def __init__(self, name: str, returncode: int, log_path: str, log_tail: str) -> None:
        self.name = name
        self.returncode = returncode
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(f"{name} exited with status {returncode} (log: {log_path})")


class NotReady(LauncherError):
    """A supervised process did not become healthy in time."""

    def __init__(
        self, name: str, reason: str, timeout: float, log_path: str, log_tail: str = ""
    ) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(f"{name} is not ready after {timeout:g} s: {reason} (log: {log_path})")


class StepFailed(LauncherError):
    """A one-shot command (such as a seed) failed."""

    def __init__(self, name: str, returncode: int, output: str) -> None:
        self.name = name
        self.returncode = returncode
        self.output = output
        super().__init__(f"{name} failed with status {returncode}")
