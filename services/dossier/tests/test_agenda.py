"""The holder's agenda over gRPC: who writes what, validation, listing, changes, and reminders falling due."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.dossier.v1 import dossier_service_pb2 as pb
from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet.dossier.v1 import resources_pb2 as res
from carnet_dossier.agenda import AgendaService
from carnet_kit.auth import Principal
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import TokenFactory

TIMEOUT = 15.0
REMINDER_DUE = "carnet.dossier.v1.AgendaReminderDueEvent"


def holder(holder_id: str) -> Principal:
    return Principal(subject=holder_id, role="holder")


def doctor() -> Principal:
    return Principal(
        subject=f"dr-{uuid.uuid4().hex[:8]}", role="professional", profession_code="10", rpps="10000000017"
    )


def stamp(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


def reminder(before: dt.timedelta, *channels: int) -> res.Reminder:
    offset = duration_pb2.Duration()
    offset.FromTimedelta(before)
    return res.Reminder(offset=offset, channels=list(channels))


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

    async def create(self, principal: Principal, event: res.AgendaEvent, request_id: str = "") -> res.AgendaEvent:
        created: res.AgendaEvent = await self.stub.CreateAgendaEvent(
            pb.CreateAgendaEventRequest(agenda_event=event, request_id=request_id),
            metadata=self.auth(principal),
            timeout=TIMEOUT,
        )
        return created

    async def listing(self, principal: Principal, **fields: Any) -> pb.ListAgendaEventsResponse:
        response: pb.ListAgendaEventsResponse = await self.stub.ListAgendaEvents(
            pb.ListAgendaEventsRequest(**fields), metadata=self.auth(principal), timeout=TIMEOUT
        )
        return response


@pytest.fixture
def calls(dossier_stub: pb_grpc.DossierServiceStub, token_factory: TokenFactory) -> Calls:
    return Calls(dossier_stub, token_factory)


def appointment(holder_id: str, start: dt.datetime, title: str = "Dentiste", **fields: Any) -> res.AgendaEvent:
    return res.AgendaEvent(
        holder_id=holder_id,
        kind=res.AGENDA_EVENT_KIND_APPOINTMENT,
        title=title,
        start_time=stamp(start),
        end_time=stamp(start + dt.timedelta(minutes=30)),
        location="Cabinet du Dr Martin",
        **fields,
    )


async def test_the_holder_keeps_an_agenda_with_reminders(calls: Calls) -> None:
    holder_id = str(uuid.uuid4())
    me = holder(holder_id)
    start = dt.datetime(2031, 3, 14, 9, 30, tzinfo=dt.UTC)
    event = appointment(
        holder_id,
        start,
        reminders=[reminder(dt.timedelta(days=1), common_pb2.DELIVERY_CHANNEL_EMAIL), reminder(dt.timedelta(hours=1))],
    )
    created = await calls.create(me, event, request_id="rdv-1")
    assert created.source == res.ENTRY_SOURCE_HOLDER and created.created_by.subject == holder_id
    assert [r.offset.ToTimedelta() for r in created.reminders] == [dt.timedelta(days=1), dt.timedelta(hours=1)]
    assert list(created.reminders[0].channels) == [common_pb2.DELIVERY_CHANNEL_EMAIL]
    assert (await calls.create(me, event, request_id="rdv-1")).agenda_event_id == created.agenda_event_id

    later = await calls.create(me, appointment(holder_id, start + dt.timedelta(days=30), "Kiné"))
    window = await calls.listing(
        me, start_time=stamp(start - dt.timedelta(days=1)), end_time=stamp(start + dt.timedelta(days=2))
    )
    assert [e.agenda_event_id for e in window.agenda_events] == [created.agenda_event_id]
    first = await calls.listing(me, page_size=1)
    assert [e.agenda_event_id for e in first.agenda_events] == [created.agenda_event_id] and first.next_page_token
    second = await calls.listing(me, page_size=1, page_token=first.next_page_token)
    assert [e.agenda_event_id for e in second.agenda_events] == [later.agenda_event_id]

    moved = await calls.stub.UpdateAgendaEvent(
        pb.UpdateAgendaEventRequest(
            agenda_event=res.AgendaEvent(
                agenda_event_id=created.agenda_event_id,
                title="Dentiste (contrôle)",
                start_time=stamp(start + dt.timedelta(hours=2)),
                end_time=stamp(start + dt.timedelta(hours=3)),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["title", "start_time", "end_time"]),
        ),
        metadata=calls.auth(me),
        timeout=TIMEOUT,
    )
    assert moved.title == "Dentiste (contrôle)" and moved.HasField("update_time")
    assert moved.start_time.ToDatetime(tzinfo=dt.UTC) == start + dt.timedelta(hours=2)
    assert len(moved.reminders) == 2 and moved.location == "Cabinet du Dr Martin"

    await calls.stub.DeleteAgendaEvent(
        pb.DeleteAgendaEventRequest(agenda_event_id=created.agenda_event_id), metadata=calls.auth(me), timeout=TIMEOUT
    )
    gone = await failure(
        calls.stub.GetAgendaEvent(
            pb.GetAgendaEventRequest(agenda_event_id=created.agenda_event_id), metadata=calls.auth(me), timeout=TIMEOUT
        )
    )
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "AGENDA_EVENT_NOT_FOUND")


async def test_professionals_add_events_and_change_only_their_own(calls: Calls) -> None:
    holder_id = str(uuid.uuid4())
    me, dr = holder(holder_id), doctor()
    start = dt.datetime(2031, 5, 2, 8, 0, tzinfo=dt.UTC)
    booked = await calls.create(dr, appointment(holder_id, start, "Consultation de suivi", professional_id=dr.subject))
    assert booked.source == res.ENTRY_SOURCE_PROFESSIONAL and booked.created_by.rpps == dr.rpps
    own = await calls.create(me, appointment(holder_id, start + dt.timedelta(days=1), "Pharmacie"))
    refused = await failure(
        calls.stub.DeleteAgendaEvent(
            pb.DeleteAgendaEventRequest(agenda_event_id=own.agenda_event_id), metadata=calls.auth(dr), timeout=TIMEOUT
        )
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_THE_AUTHOR")
    stranger = await failure(calls.listing(holder(str(uuid.uuid4())), holder_id=holder_id))
    assert stranger.code == grpc.StatusCode.PERMISSION_DENIED
    frozen = await failure(
        calls.stub.UpdateAgendaEvent(
            pb.UpdateAgendaEventRequest(
                agenda_event=res.AgendaEvent(agenda_event_id=booked.agenda_event_id),
                update_mask=field_mask_pb2.FieldMask(paths=["source"]),
            ),
            metadata=calls.auth(dr),
            timeout=TIMEOUT,
        )
    )
    assert (frozen.code, frozen.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_NOT_UPDATABLE")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda e: e.ClearField("kind"), "agenda_event.kind"),
        (lambda e: e.ClearField("start_time"), "agenda_event.start_time"),
        (lambda e: setattr(e, "title", "  "), "agenda_event.title"),
        (lambda e: e.end_time.FromDatetime(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)), "agenda_event.end_time"),
        (lambda e: e.reminders.extend([reminder(dt.timedelta(hours=n)) for n in range(6)]), "agenda_event.reminders"),
        (lambda e: e.reminders.append(reminder(dt.timedelta(days=400))), "agenda_event.reminders[0].offset"),
        (lambda e: e.reminders.append(reminder(dt.timedelta(hours=-1))), "agenda_event.reminders[0].offset"),
    ],
)
async def test_bad_events_are_invalid_argument_naming_the_field(calls: Calls, change: Any, field: str) -> None:
    holder_id = str(uuid.uuid4())
    event = appointment(holder_id, dt.datetime(2031, 1, 1, 10, tzinfo=dt.UTC))
    change(event)
    error = await failure(calls.create(holder(holder_id), event))
    assert (error.code, error.metadata.get("field")) == (grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_due_reminders_are_published_once_each(
    calls: Calls, dossier_pool: asyncpg.Pool, dossier_app: Any
) -> None:
    holder_id = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now + dt.timedelta(hours=2)
    created = await calls.create(
        holder(holder_id),
        appointment(
            holder_id,
            start,
            "Vaccin grippe",
            reminders=[
                reminder(dt.timedelta(hours=3), common_pb2.DELIVERY_CHANNEL_SMS),
                reminder(dt.timedelta(hours=1)),
            ],
        ),
    )
    service = AgendaService(dossier_pool, consent=None)  # type: ignore[arg-type]  # the job asks nobody

    async def due_events() -> list[dict[str, Any]]:
        rows = await dossier_pool.fetch(
            "SELECT payload FROM dossier.outbox WHERE event_type = $1 AND payload->>'agenda_event_id' = $2 ORDER BY id",
            REMINDER_DUE,
            created.agenda_event_id,
        )
        return [row["payload"] for row in rows]

    await service.send_due_reminders(now=now)
    [first] = await due_events()  # the 3-hours-before reminder is already due (the background job may have sent it)
    assert (first["holder_id"], first["title"], first["channels"]) == (
        holder_id,
        "Vaccin grippe",
        ["DELIVERY_CHANNEL_SMS"],
    )
    await service.send_due_reminders(now=now)
    assert len(await due_events()) == 1
    await service.send_due_reminders(now=now + dt.timedelta(minutes=61))
    assert len(await due_events()) == 2
    sent = await calls.stub.GetAgendaEvent(
        pb.GetAgendaEventRequest(agenda_event_id=created.agenda_event_id),
        metadata=calls.auth(holder(holder_id)),
        timeout=TIMEOUT,
    )
    assert all(r.HasField("send_time") for r in sent.reminders)
