"""Readiness probes: the standard gRPC health check and an HTTP GET; each says why not."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

Probe = Callable[[], str | None]
"""Returns None when the target is ready, otherwise a short reason it is not."""

# Launcher probes talk to loopback only; a proxy from the environment must not get in the way.
_NO_PROXY_OPTIONS = [("grpc.enable_http_proxy", 0)]
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def grpc_health(address: str, service: str = "", timeout: float = 2.0) -> str | None:
    """Call ``grpc.health.v1.Health/Check``; None when SERVING, else the status or error."""
    with grpc.insecure_channel(address, options=_NO_PROXY_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            name = code.name if code is not None else "UNKNOWN"
            details = exc.details() or ""
            return f"{name}: {details}" if details else str(name)
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            return None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def http_ok(url: str, timeout: float = 2.0) -> str | None:
    """GET ``url``; None on 200, else the status or the connection error."""
    try:
        with _http.open(url, timeout=timeout) as response:
            status: int = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason)
    return None if status == 200 else f"HTTP {status}"


def grpc_probe(address: str) -> Probe:
    """A probe of the overall health (service "") of the gRPC server at ``address``."""
    return lambda: grpc_health(address)


def http_probe(url: str) -> Probe:
    """A probe that wants ``200`` from ``url``."""
    return lambda: http_ok(url)
