"""Searching a record: the four orders with their page tokens, titles without accents or case,
counts for the holder's side, and the holder's own documents marked as such."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

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
TIMEOUT = 15.0


async def failure(call: Awaitable[Any]) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


class Calls:
    def __init__(self, stub: pb_grpc.DossierServiceStub, tokens: TokenFactory) -> None:
        self.stub = stub
        self.tokens = tokens

    def auth(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens.mint(principal)}"),)

    async def deposit(
        self, principal: Principal, holder_id: str, title: str, service: dt.datetime | None = None, **fields: Any
    ) -> res.Document:
        metadata = res.DocumentMetadata(
            unique_id=f"search-{uuid.uuid4().hex}",
            holder_id=holder_id,
            type_code="11502-2",
            format=res.DOCUMENT_FORMAT_PDF,
            title=title,
            **fields,
        )
        if service is not None:
            metadata.service_time.FromDatetime(service)
        messages = [
            pb.DepositDocumentRequest(metadata=metadata),
            pb.DepositDocumentRequest(chunk=make_pdf(title, [uuid.uuid4().hex])),
        ]
        document: res.Document = await self.stub.DepositDocument(
            iter(messages), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return document

    async def titles(self, principal: Principal, **fields: Any) -> tuple[list[str], pb.ListDocumentsResponse]:
        response: pb.ListDocumentsResponse = await self.stub.ListDocuments(
            pb.ListDocumentsRequest(**fields), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return [d.metadata.title for d in response.documents], response


@pytest.fixture
def calls(dossier_stub: pb_grpc.DossierServiceStub, token_factory: TokenFactory) -> Calls:
    return Calls(dossier_stub, token_factory)


async def test_the_four_orders_and_their_page_tokens(calls: Calls) -> None:
    holder_id = str(uuid.uuid4())
    me = Principal(subject=holder_id, role="holder")
    # Deposited in this order, about documents of these dates (the third has none: its deposit time counts).
    dated = [
        ("B 2019", dt.datetime(2019, 6, 1, tzinfo=dt.UTC)),
        ("A 2024", dt.datetime(2024, 1, 5, tzinfo=dt.UTC)),
        ("C sans date", None),
        ("D 2021", dt.datetime(2021, 3, 3, tzinfo=dt.UTC)),
    ]
    for title, service in dated:
        await calls.deposit(LAB, holder_id, title, service)
    by_date, response = await calls.titles(me)
    assert by_date == ["C sans date", "A 2024", "D 2021", "B 2019"] and response.total_size == 4
    assert (await calls.titles(me, order=pb.DOCUMENT_ORDER_SERVICE_TIME_ASC))[0] == list(reversed(by_date))
    assert (await calls.titles(me, order=pb.DOCUMENT_ORDER_CREATE_TIME_ASC))[0] == [t for t, _ in dated]
    assert (await calls.titles(me, order=pb.DOCUMENT_ORDER_CREATE_TIME_DESC))[0] == [t for t, _ in reversed(dated)]
    seen: list[str] = []
    token = ""
    for _ in range(4):  # bounded
        page, response = await calls.titles(me, order=pb.DOCUMENT_ORDER_SERVICE_TIME_ASC, page_size=3, page_token=token)
        seen += page
        token = response.next_page_token
        if not token:
            break
    assert seen == list(reversed(by_date))
    _, second_page = await calls.titles(me, page_size=3)
    _, rest = await calls.titles(me, page_size=3, page_token=second_page.next_page_token)
    assert rest.total_size == second_page.total_size == 4  # carried by the token, not counted again
    _, response = await calls.titles(me, page_size=1)
    mixed = await failure(
        calls.titles(me, page_size=1, page_token=response.next_page_token, order=pb.DOCUMENT_ORDER_CREATE_TIME_ASC)
    )
    assert (mixed.reason, mixed.metadata["field"]) == ("PAGE_TOKEN_INVALID", "page_token")
    window, _ = await calls.titles(
        me,
        service_start_time=timestamp_pb2.Timestamp(seconds=1577836800),  # 2020-01-01
        service_end_time=timestamp_pb2.Timestamp(seconds=1704067200),
    )  # 2024-01-01
    assert window == ["D 2021"]


async def test_titles_match_without_accents_or_case_word_by_word(calls: Calls) -> None:
    holder_id = str(uuid.uuid4())
    me = Principal(subject=holder_id, role="holder")
    for title in ("Échographie cardiaque", "Électrocardiogramme d'effort", "Cœur : bilan lipidique", "Radio du genou"):
        await calls.deposit(LAB, holder_id, title)
    assert sorted((await calls.titles(me, title_query="echographie"))[0]) == ["Échographie cardiaque"]
    assert sorted((await calls.titles(me, title_query="CARDI"))[0]) == [
        "Échographie cardiaque",
        "Électrocardiogramme d'effort",
    ]
    assert (await calls.titles(me, title_query="coeur lipid"))[0] == ["Cœur : bilan lipidique"]
    assert (await calls.titles(me, title_query="cardiaque genou"))[0] == []
    assert (await calls.titles(me, title_query="100%_"))[0] == []


async def test_counts_leave_out_what_the_holder_may_not_see_and_own_documents_are_marked(calls: Calls) -> None:
    holder_id = str(uuid.uuid4())
    me = Principal(subject=holder_id, role="holder")
    await calls.deposit(LAB, holder_id, "Visible")
    await calls.deposit(LAB, holder_id, "À annoncer", invisible_to_holder=True)
    own = await calls.deposit(me, holder_id, "Mon carnet de vaccination")
    assert own.holder_own is True and own.deposited_by.subject == holder_id
    titles, response = await calls.titles(me)
    assert sorted(titles) == ["Mon carnet de vaccination", "Visible"] and response.total_size == 2
    by_lab = [d for d in response.documents if d.metadata.title == "Visible"]
    assert by_lab[0].holder_own is False
