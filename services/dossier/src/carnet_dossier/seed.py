"""Deposits the demo documents into Camille MARTIN's record, through the running platform.

It logs in as the demo laboratory and the demo radiology centre (client credentials
at identity) and deposits over dossier's own gRPC API, so the demo data went through
consent, the access log and the outbox like any other deposit. Idempotent: the
documents have fixed unique ids.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import grpc

from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.identity.v1 import identity_service_pb2_grpc as identity_grpc

CAMILLE_INS = "284057512000531"


def make_pdf(title: str, lines: list[str]) -> bytes:
    """A small, valid one-page PDF showing ``title`` and ``lines`` (Helvetica, Latin-1)."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    body = ["BT", "/F1 16 Tf", "56 780 Td", f"({escape(title)}) Tj", "/F1 11 Tf"]
    for line in lines:
        body += ["0 -18 Td", f"({escape(line)}) Tj"]
    body.append("ET")
    stream = "\n".join(body).encode("latin-1", errors="replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >>"
        b" /Contents 4 0 R >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, content in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + content + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


DEMO_DOCUMENTS = (
    (
        "lab-demo",
        "lab-demo-secret",
        "demo-lab-2026-0001",
        "11502-2",
        "Bilan sanguin — numération formule sanguine",
        ["Laboratoire Demo", "Hémoglobine : 13,4 g/dL (12,0 – 16,0)", "Leucocytes : 6,2 G/L (4,0 – 10,0)"],
    ),
    (
        "lab-demo",
        "lab-demo-secret",
        "demo-lab-2026-0002",
        "11502-2",
        "Glycémie à jeun",
        ["Laboratoire Demo", "Glucose : 0,92 g/L (0,70 – 1,10)"],
    ),
    (
        "pacs-demo",
        "pacs-demo-secret",
        "demo-img-2026-0001",
        "18748-4",
        "Radiographie du thorax — compte rendu",
        ["Centre d'imagerie Demo — Dr Anne MOREAU", "Pas d'anomalie pleuro-parenchymateuse décelable."],
    ),
)


async def _deposit(
    stub: pb_grpc.DossierServiceAsyncStub, token: str, unique_id: str, type_code: str, title: str, content: bytes
) -> res.Document:
    async def requests() -> AsyncIterator[pb.DepositDocumentRequest]:
        yield pb.DepositDocumentRequest(
            metadata=res.DocumentMetadata(
                unique_id=unique_id,
                holder_ins=CAMILLE_INS,
                type_code=type_code,
                format=res.DOCUMENT_FORMAT_PDF,
                title=title,
            )
        )
        for start in range(0, len(content), 32 * 1024):
            yield pb.DepositDocumentRequest(chunk=content[start : start + 32 * 1024])

    response: res.Document = await stub.DepositDocument(
        requests(), metadata=(("authorization", f"Bearer {token}"),), timeout=30
    )
    return response


async def seed() -> int:
    """Deposit the demo documents; return how many the record holds now of them."""
    identity_addr = os.environ.get("CARNET_IDENTITY_ADDR", "127.0.0.1:50051")
    dossier_addr = os.environ.get("CARNET_DOSSIER_ADDR", os.environ.get("CARNET_GRPC_LISTEN", "127.0.0.1:50053"))
    async with grpc.aio.insecure_channel(identity_addr) as ich, grpc.aio.insecure_channel(dossier_addr) as dch:
        identity = identity_grpc.IdentityServiceStub(ich)
        dossier = pb_grpc.DossierServiceStub(dch)
        count = 0
        for client_id, secret, unique_id, type_code, title, lines in DEMO_DOCUMENTS:
            tokens = await identity.ExchangeClientCredentials(
                identity_pb.ExchangeClientCredentialsRequest(client_id=client_id, client_secret=secret), timeout=10
            )
            document = await _deposit(dossier, tokens.access_token, unique_id, type_code, title, make_pdf(title, lines))
            print(f"  {document.metadata.title} ({document.document_id})")
            count += 1
        return count


def main() -> None:
    """Entry point of ``python -m carnet_dossier seed-demo``."""
    try:
        count = asyncio.run(seed())
    except grpc.aio.AioRpcError as error:
        print(f"carnet-dossier seed-demo: {error.code().name}: {error.details()}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"carnet-dossier seed-demo: {count} demo documents in Camille MARTIN's record")
