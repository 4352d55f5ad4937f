"""Loopback ports chosen once per data directory and remembered in ``ports.json``."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Collection
from pathlib import Path

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Tell whether a server could listen on ``host:port`` right now."""
    return address_is_free(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


def pick_free_port(host: str = LOOPBACK) -> int:
    """Return a port nobody listens on, chosen by the kernel."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class PortBook:
    """The ``ports.json`` of a data directory: name → port."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, int]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # A damaged file only costs new port numbers; never refuse to start over it.
            return {}
        if not isinstance(raw, dict):
            return {}
        return {str(k): v for k, v in raw.items() if isinstance(v, int) and 0 < v < 65536}

    def remembered(self, name: str) -> int | None:
        """The port remembered for ``name``, if any."""
        return self._load().get(name)

    def remember(self, name: str, port: int) -> None:
        """Record ``port`` for ``name`` (atomic replace of the file)."""
        ports = self._load()
        if ports.get(name) == port:
            return
        ports[name] = port
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def choose(self, name: str, host: str = LOOPBACK, avoid: Collection[int] = ()) -> int:
        """Return the remembered port for ``name`` if still free, else a new one (remembered).

        ``avoid`` lists ports promised to other processes that may not be listening yet.
        """
        port = self.remembered(name)
        if port is None or port in avoid or not port_is_free(port, host):
            port = pick_free_port(host)
            while port in avoid:
                port = pick_free_port(host)
            self.remember(name, port)
        return port


def split_host_port(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too) into its parts."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not a host:port address: {address!r}")
    return host.strip("[]"), int(port)


def dial_address(address: str) -> str:
    """Turn a listen address into one a local client can connect to (wildcards → loopback)."""
    host, port = split_host_port(address)
    if host in ("", "0.0.0.0"):  # noqa: S104 - recognising the wildcard, not binding it
        host = LOOPBACK
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def address_is_free(address: str) -> bool:
    """Tell whether the ``host:port`` listen address can be bound now."""
    host, port = split_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Servers set SO_REUSEADDR, so a port held only by TIME_WAIT sockets counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
