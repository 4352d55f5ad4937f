"""Registers the demo PACS's AE title (``DEMOPACS`` of the software client ``pacs-demo``) in the running
platform's AE registry, as the demo insurer's agent desk (an operator), so that the demo PACS may associate.

Idempotent: an AE already registered is left as it is.
"""

from __future__ import annotations

import asyncio
import os
import sys

import grpc

from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.identity.v1 import identity_service_pb2_grpc as identity_grpc
from carnet.imaging.v1 import imaging_service_pb2 as pb
from carnet.imaging.v1 import imaging_service_pb2_grpc as pb_grpc
from carnet.imaging.v1 import resources_pb2 as res

DEMO_PACS = ("pacs-demo", "DEMOPACS", "PACS du Centre d'imagerie Demo")
OPERATOR_CLIENT = ("agent-desk-demo", "agent-desk-demo-secret")  # published demo credential, not a secret


async def seed() -> str:
    """Register the demo PACS; what was done."""
    identity_addr = os.environ.get("CARNET_IDENTITY_ADDR", "127.0.0.1:50051")
    imaging_addr = os.environ.get("CARNET_IMAGING_ADDR", "127.0.0.1:50054")
    async with grpc.aio.insecure_channel(identity_addr) as ich, grpc.aio.insecure_channel(imaging_addr) as mch:
        tokens = await identity_grpc.IdentityServiceStub(ich).ExchangeClientCredentials(
            identity_pb.ExchangeClientCredentialsRequest(
                client_id=OPERATOR_CLIENT[0], client_secret=OPERATOR_CLIENT[1]
            ),
            timeout=10,
        )
        client_id, title, description = DEMO_PACS
        try:
            await pb_grpc.ImagingServiceStub(mch).CreateApplicationEntity(
                pb.CreateApplicationEntityRequest(
                    application_entity=res.ApplicationEntity(
                        ae_title=title, client_id=client_id, description=description
                    )
                ),
                metadata=(("authorization", f"Bearer {tokens.access_token}"),),
                timeout=30,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            return f"{title} already registered"
        return f"{title} registered for {client_id}"


def main() -> None:
    """Entry point of ``python -m carnet_imaging seed-demo``."""
    try:
        done = asyncio.run(seed())
    except grpc.aio.AioRpcError as error:
        print(f"carnet-imaging seed-demo: {error.code().name}: {error.details()}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"carnet-imaging seed-demo: {done}")
