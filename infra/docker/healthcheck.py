#!/usr/bin/env python3
"""Container health check shipped in every Carnet image as ``carnet-healthcheck``.

``carnet-healthcheck grpc HOST:PORT [SERVICE]`` asks the standard ``grpc.health.v1``
service and succeeds only on SERVING; ``carnet-healthcheck http URL`` succeeds only on
a 2xx answer. Exit status 0 is healthy and 1 unhealthy, as Docker's and compose's
health checks expect; 2 is a usage error. The slim images have no curl and no
grpc_health_probe, so this uses what every image already carries: Python and grpcio.
Kubernetes does not need it: it probes gRPC and HTTP natively.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3.0
"""Deadline of one check; compose's own ``timeout`` should be a little longer."""

USAGE = "usage: carnet-healthcheck grpc HOST:PORT [SERVICE] | carnet-healthcheck http URL"


def check_grpc(target: str, service: str = "") -> tuple[bool, str]:
    """Whether the gRPC server at ``target`` reports SERVING for ``service`` ("" is the whole server)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            return False, f"{target}: {error.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    return answer.status == health_pb2.HealthCheckResponse.SERVING, f"{target}: {status}"


def check_http(url: str) -> tuple[bool, str]:
    """Whether ``url`` answers a GET with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        return False, f"{url}: HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return False, f"{url}: {error}"
    return 200 <= status < 300, f"{url}: HTTP {status}"


def main(argv: list[str]) -> int:
    """Run the check named on the command line; return the exit status."""
    if len(argv) >= 2 and argv[0] == "grpc" and len(argv) <= 3:
        healthy, detail = check_grpc(argv[1], argv[2] if len(argv) == 3 else "")
    elif len(argv) == 2 and argv[0] == "http":
        healthy, detail = check_http(argv[1])
    else:
        print(USAGE, file=sys.stderr)
        return 2
    print(("healthy " if healthy else "unhealthy ") + detail, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
