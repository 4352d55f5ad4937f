"""Typed, frozen configuration read from ``CARNET_*`` environment variables.

Each service declares one frozen dataclass; every field ``foo_bar`` is read from
``CARNET_FOO_BAR``. A field without a default is required. Values are converted by
the field's annotation (str, int, float, bool, Path, :class:`HostPort`, Literal,
tuples of str, or ``X | None``) and a missing or malformed variable raises
:class:`ConfigError` naming it; :func:`load_or_exit` turns that into a clean exit.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, get_args, get_origin

PREFIX = "CARNET_"
EX_CONFIG = 78  # sysexits.h: configuration error

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration variable is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class HostPort:
    """A ``host:port`` pair, as used for listen addresses and gRPC targets."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """Parse ``host:port`` or ``[v6]:port``."""
        host, sep, port_text = text.strip().rpartition(":")
        if not sep or not host:
            raise ValueError("expected host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"port {port_text!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def env_name(field_name: str) -> str:
    """The environment variable that configures a field."""
    return PREFIX + field_name.upper()


def _convert(variable: str, raw: str, annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if raw == "":
            return None
        return _convert(variable, raw, inner[0])
    if origin is Literal:
        allowed = get_args(annotation)
        if raw not in allowed:
            raise ConfigError(variable, f"must be one of {', '.join(map(str, allowed))}; got {raw!r}")
        return raw
    if origin is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if annotation is str:
        return raw
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(variable, f"must be true or false; got {raw!r}")
    if annotation in (int, float):
        try:
            return annotation(raw)
        except ValueError:
            raise ConfigError(variable, f"must be a number; got {raw!r}") from None
    if annotation is Path:
        if not raw:
            raise ConfigError(variable, "must be a path; got an empty value")
        return Path(raw)
    if annotation is HostPort:
        try:
            return HostPort.parse(raw)
        except ValueError as exc:
            raise ConfigError(variable, f"{exc}; got {raw!r}") from None
    raise TypeError(f"unsupported config type {annotation!r} for {variable}")


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from the environment; raise :class:`ConfigError` on the first bad variable."""
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        variable = env_name(field.name)
        raw = env.get(variable)
        if raw is None:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(variable, "is required but not set")
            continue
        values[field.name] = _convert(variable, raw, hints[field.name])
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()
    return instance


def fail(program: str, error: ConfigError) -> NoReturn:
    """Print a one-line configuration error naming the variable and exit with EX_CONFIG."""
    print(f"{program}: configuration error: {error}", file=sys.stderr)
    raise SystemExit(EX_CONFIG)


def load_or_exit(cls: type[T], program: str, environ: Mapping[str, str] | None = None) -> T:
    """Load the configuration, or stop the process with a message naming the bad variable."""
    try:
        return load(cls, environ)
    except ConfigError as error:
        fail(program, error)
