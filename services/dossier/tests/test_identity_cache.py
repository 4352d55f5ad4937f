"""INS lookups are remembered briefly, bounded in size, and failures are not remembered."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from carnet.identity.v1 import resources_pb2
from carnet_dossier.peers import IdentityClient


class CountingStub:
    """Stands in for identity's stub: answers from a table and counts the calls."""

    def __init__(self, people: dict[str, str]) -> None:
        self.people = people
        self.calls = 0

    async def LookupPerson(self, request: Any) -> resources_pb2.Person:
        self.calls += 1
        if request.ins not in self.people:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")
        return resources_pb2.Person(person_id=self.people[request.ins])


def _client(stub: CountingStub, **options: Any) -> IdentityClient:
    client = IdentityClient(grpc.aio.insecure_channel("127.0.0.1:9"), **options)
    client._stub = stub  # type: ignore[assignment]
    return client


async def test_a_known_ins_is_asked_once_within_the_ttl() -> None:
    stub = CountingStub({"284057512000531": "p-1"})
    client = _client(stub)
    assert [await client.person_id_for_ins("284057512000531") for _ in range(5)] == ["p-1"] * 5
    assert stub.calls == 1


async def test_an_expired_entry_is_asked_again() -> None:
    stub = CountingStub({"284057512000531": "p-1"})
    client = _client(stub, ttl=0.0)
    await client.person_id_for_ins("284057512000531")
    await client.person_id_for_ins("284057512000531")
    assert stub.calls == 2


async def test_the_cache_keeps_only_the_most_recent_entries() -> None:
    stub = CountingStub({f"ins-{n}": f"p-{n}" for n in range(3)})
    client = _client(stub, capacity=2)
    for n in range(3):
        await client.person_id_for_ins(f"ins-{n}")
    await client.person_id_for_ins("ins-0")
    assert stub.calls == 4


async def test_failures_are_not_remembered() -> None:
    stub = CountingStub({})
    client = _client(stub)
    for _ in range(2):
        with pytest.raises(Exception, match="did not answer"):
            await client.person_id_for_ins("284057512000531")
    assert stub.calls == 2
