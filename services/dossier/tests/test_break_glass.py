"""Break-glass reads: a professional outside the care team opens a record in an emergency with a
written reason; consent decides each read as break-glass, every read is logged with the reason,
and the holder and the treating physician are told (once per emergency, not at every read)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

import asyncpg
import grpc
import pytest

from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier.seed import make_pdf
from carnet_kit.auth import Principal
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import TokenFactory

LAB = Principal(
    subject="lab-x", role="client", client_id="lab-x", organisation_id="org-lab", scopes=("documents.deposit",)
)
URGENTIST = Principal(
    subject="dr-urgences", role="professional", profession_code="10", rpps="10000000033", organisation_id="org-chu"
)
REASON = "Patient inconscient admis aux urgences, antécédents inconnus"
ALERT = "carnet.dossier.v1.AccessAlertEvent"
TIMEOUT = 15.0


async def failure(call: Awaitable[Any]) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


def metadata(tokens: TokenFactory, principal: Principal, reason: str | None = None) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [("authorization", f"Bearer {tokens.mint(principal)}")]
    if reason is not None:
        pairs.append(("x-carnet-break-glass-reason-bin", reason.encode()))
    return pairs


async def deposit(stub: pb_grpc.DossierServiceStub, tokens: TokenFactory, holder_id: str, title: str) -> res.Document:
    messages = [
        pb.DepositDocumentRequest(
            metadata=res.DocumentMetadata(
                unique_id=f"bg-{uuid.uuid4().hex}",
                holder_id=holder_id,
                type_code="11502-2",
                format=res.DOCUMENT_FORMAT_PDF,
                title=title,
            )
        ),
        pb.DepositDocumentRequest(chunk=make_pdf(title, ["x"])),
    ]
    document: res.Document = await stub.DepositDocument(iter(messages), metadata=metadata(tokens, LAB), timeout=TIMEOUT)
    return document


async def test_an_emergency_read_is_allowed_logged_with_its_reason_and_told_once(
    dossier_stub: pb_grpc.DossierServiceStub, token_factory: TokenFactory, dossier_pool: asyncpg.Pool
) -> None:
    holder_id = str(uuid.uuid4())
    document = await deposit(dossier_stub, token_factory, holder_id, "Bilan sanguin")

    refused = await failure(
        dossier_stub.GetDocument(
            pb.GetDocumentRequest(document_id=document.document_id),
            metadata=metadata(token_factory, URGENTIST),
            timeout=TIMEOUT,
        )
    )
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED

    listing = await dossier_stub.ListDocuments(
        pb.ListDocumentsRequest(holder_id=holder_id),
        metadata=metadata(token_factory, URGENTIST, REASON),
        timeout=TIMEOUT,
    )
    assert [d.document_id for d in listing.documents] == [document.document_id]
    read = await dossier_stub.GetDocument(
        pb.GetDocumentRequest(document_id=document.document_id),
        metadata=metadata(token_factory, URGENTIST, REASON),
        timeout=TIMEOUT,
    )
    assert read.metadata.title == "Bilan sanguin"

    rows = await dossier_pool.fetch(
        "SELECT operation, action, outcome, reason, break_glass_reason FROM dossier.access_log"
        " WHERE holder_id = $1 AND actor->>'subject' = $2 ORDER BY sequence",
        uuid.UUID(holder_id),
        URGENTIST.subject,
    )
    assert [(r["operation"], r["action"], r["outcome"]) for r in rows] == [
        ("GetDocument", "ACTION_READ", "denied"),
        ("ListDocuments", "ACTION_BREAK_GLASS_READ", "allowed"),
        ("GetDocument", "ACTION_BREAK_GLASS_READ", "allowed"),
    ]
    assert [r["break_glass_reason"] for r in rows[1:]] == [REASON, REASON]
    assert rows[1]["reason"] == "ALLOWED_BREAK_GLASS"
    alerts = [
        row["payload"]
        for row in await dossier_pool.fetch(
            "SELECT payload FROM dossier.outbox WHERE event_type = $1 AND payload->>'holder_id' = $2 ORDER BY id",
            ALERT,
            holder_id,
        )
    ]
    break_glass = [a for a in alerts if a["kind"] == "ACCESS_ALERT_KIND_BREAK_GLASS"]
    assert len(break_glass) == 1, "told once for the emergency, not at every read"
    assert (break_glass[0]["notify_holder"], break_glass[0]["notify_treating_physician"]) == (True, True)
    assert break_glass[0]["reason"] == REASON and break_glass[0]["actor"]["rpps"] == URGENTIST.rpps


async def test_without_a_written_reason_the_emergency_read_is_refused(
    dossier_stub: pb_grpc.DossierServiceStub, token_factory: TokenFactory
) -> None:
    holder_id = str(uuid.uuid4())
    await deposit(dossier_stub, token_factory, holder_id, "Compte rendu")
    refused = await failure(
        dossier_stub.ListDocuments(
            pb.ListDocumentsRequest(holder_id=holder_id),
            metadata=metadata(token_factory, URGENTIST, "  "),
            timeout=TIMEOUT,
        )
    )
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.reason == "ACCESS_DENIED_BREAK_GLASS_REASON_MISSING"
