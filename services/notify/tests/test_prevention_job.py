"""The prevention-reminder job against the real identity service: who is reminded of what, once per period.

Persons are enrolled through identity's CreatePerson; their spaces are then opened (state
``active``) directly in identity's table, as activation would, since the activation code
goes to a notify nobody runs here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet.identity.v1 import resources_pb2 as identity_resources_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_kit.auth import Principal
from carnet_kit.channels import create_channel
from carnet_kit.config import HostPort
from carnet_kit.db import create_pool
from carnet_kit.server import ServiceApp
from carnet_kit.service_tokens import ServiceTokens
from carnet_kit.status import parse_rpc_error
from carnet_kit.testing import wait_until
from carnet_notify.peers import IdentityPersons
from carnet_notify.prevention_job import PARIS, PreventionJob
from carnet_notify.store import SCHEMA, NotifyStore

pytestmark = pytest.mark.asyncio

OPERATOR = Principal(subject="op-prevention", role="operator")
DAY = dt.date(2026, 11, 23)
Metadata = Any


def _nir(sex: str, born: dt.date) -> str:
    nir = f"{sex}{born.year % 100:02d}{born.month:02d}75{random.randint(1, 999):03d}{random.randint(1, 999):03d}"
    return f"{nir}{97 - int(nir) % 97:02d}"


@pytest.fixture
async def enrol(identity_app: ServiceApp, as_caller: Metadata, database_url: str) -> AsyncIterator[Any]:
    """``await enrol(sex, birth_date, state=...)``: a person in identity, their space in ``state``; their id."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{identity_app.port}")
    identity = identity_service_pb2_grpc.IdentityServiceStub(channel)

    async def make(sex: str, born: dt.date, *, state: str = "active") -> tuple[str, str]:
        email = f"prevention-{uuid.uuid4().hex[:10]}@test.carnet.test"
        person = await identity.CreatePerson(
            identity_service_pb2.CreatePersonRequest(
                person=identity_resources_pb2.Person(
                    ins=_nir("2" if sex == "F" else "1", born),
                    name=common_pb2.PersonName(birth_name="ESSAI", first_names=["Dominique"]),
                    sex=common_pb2.SEX_FEMALE if sex == "F" else common_pb2.SEX_MALE,
                    birth_date=common_pb2.Date(year=born.year, month=born.month, day=born.day),
                    email=email,
                    department_code="75",
                )
            ),
            metadata=as_caller(OPERATOR),
        )
        await pool.execute("UPDATE identity.persons SET state = $2 WHERE id = $1", uuid.UUID(person.person_id), state)
        return person.person_id, email

    yield make
    await channel.close()
    await pool.close()


async def _run(stub: Any, as_caller: Metadata, recipient: str = "", *, dry_run: bool = False) -> tuple[int, int]:
    answer = await stub.RunPreventionReminders(
        notify_service_pb2.RunPreventionRemindersRequest(
            as_of_date=common_pb2.Date(year=DAY.year, month=DAY.month, day=DAY.day),
            recipient_id=recipient,
            dry_run=dry_run,
        ),
        metadata=as_caller(OPERATOR),
        timeout=60,
    )
    return answer.due_count, answer.sent_count


async def _reminders(stub: Any, as_caller: Metadata, holder: str) -> list[resources_pb2.PreventionReminder]:
    answer = await stub.ListPreventionReminders(
        notify_service_pb2.ListPreventionRemindersRequest(recipient_id=holder),
        metadata=as_caller(Principal(subject=holder, role="holder")),
    )
    return list(answer.reminders)


@pytest.fixture
async def prevention(
    run_app: Any, smtp_sink: Any, identity_app: ServiceApp
) -> AsyncIterator[notify_service_pb2_grpc.NotifyServiceStub]:
    async with run_app(smtp_port=smtp_sink.port, identity_addr=HostPort("127.0.0.1", identity_app.port)) as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            yield notify_service_pb2_grpc.NotifyServiceStub(channel)


async def test_a_woman_of_51_is_reminded_of_her_three_screenings_once_each(
    prevention: Any, enrol: Any, as_caller: Metadata, smtp_sink: Any
) -> None:
    holder, email = await enrol("F", dt.date(1975, 3, 10))
    assert await _run(prevention, as_caller, holder, dry_run=True) == (3, 0)
    assert await _reminders(prevention, as_caller, holder) == []  # a dry run records nothing

    assert await _run(prevention, as_caller, holder) == (3, 3)
    assert await _run(prevention, as_caller, holder) == (0, 0)  # once per period

    reminders = await _reminders(prevention, as_caller, holder)
    assert {(r.program, r.period) for r in reminders} == {
        (resources_pb2.PREVENTION_PROGRAM_CERVICAL_SCREENING, "2024-03-10/2027-03-10"),
        (resources_pb2.PREVENTION_PROGRAM_BREAST_SCREENING, "2025-03-10/2027-03-10"),
        (resources_pb2.PREVENTION_PROGRAM_COLORECTAL_SCREENING, "2025-03-10/2027-03-10"),
    }
    assert all(r.notification_id and r.send_time.seconds for r in reminders)

    inbox = await prevention.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=holder),
        metadata=as_caller(Principal(subject=holder, role="holder")),
    )
    assert {item.kind for item in inbox.items} == {resources_pb2.NOTIFICATION_KIND_PREVENTION_REMINDER}
    assert sorted(item.body.split(" (")[0] for item in inbox.items) == [
        "Dépistage du cancer colorectal",
        "Dépistage du cancer du col de l'utérus",
        "Dépistage du cancer du sein",
    ]
    # The e-mails reach the address identity holds, and say nothing of which screening (age and sex).
    mails = await wait_until(lambda: [m for m in smtp_sink.received() if email in m.envelope_to] or None, timeout=15)
    await wait_until(lambda: len([m for m in smtp_sink.received() if email in m.envelope_to]) == 3, timeout=15)
    for mail in mails:
        assert "prévention" in mail.text()
        words = set(mail.text().lower().replace(",", " ").replace(".", " ").split())
        assert not words & {"sein", "utérus", "colorectal", "dépistage du cancer"}


async def test_each_age_and_sex_gets_its_programmes(prevention: Any, enrol: Any, as_caller: Metadata) -> None:
    young_man, _ = await enrol("M", dt.date(2005, 1, 5))  # 21: the 18-25 check-up
    woman_of_25, _ = await enrol("F", dt.date(2001, 2, 1))  # 25: check-up, cervical, booster at 25
    man_of_70, _ = await enrol("M", dt.date(1956, 6, 1))  # 70: check-up, colorectal, influenza
    by_default, _ = await enrol("M", dt.date(2004, 6, 1), state="created_by_default")
    not_open, _ = await enrol("F", dt.date(1970, 1, 1), state="notified")
    closed, _ = await enrol("F", dt.date(1970, 1, 1), state="closed")
    for holder in (young_man, woman_of_25, man_of_70, by_default, not_open, closed):
        await _run(prevention, as_caller, holder)

    async def programmes(holder: str) -> set[str]:
        return {
            resources_pb2.PreventionProgram.Name(r.program).removeprefix("PREVENTION_PROGRAM_") + f" {r.period}"
            for r in await _reminders(prevention, as_caller, holder)
        }

    assert await programmes(young_man) == {"CHECKUP_18_25 18-25"}
    assert await programmes(woman_of_25) == {
        "CHECKUP_18_25 18-25",
        "CERVICAL_SCREENING 2026-02-01/2029-02-01",
        "VACCINATION rappel-25-ans",
    }
    assert await programmes(man_of_70) == {
        "CHECKUP_70_75 70-75",
        "COLORECTAL_SCREENING 2026-06-01/2028-06-01",
        "VACCINATION grippe-2026-2027",
    }
    assert await programmes(by_default) == {"CHECKUP_18_25 18-25"}
    assert await programmes(not_open) == set()  # no space yet: nobody to remind
    assert await programmes(closed) == set()


async def test_the_run_for_everyone_reaches_every_open_space(prevention: Any, enrol: Any, as_caller: Metadata) -> None:
    # 65: check-up 60-65, cervical, breast, colorectal, booster at 65, influenza
    first, _ = await enrol("F", dt.date(1960, 12, 1))
    second, _ = await enrol("M", dt.date(1976, 1, 1))  # 50: check-up 45-50 and colorectal
    due, sent = await _run(prevention, as_caller)
    assert sent == due >= 8
    assert len(await _reminders(prevention, as_caller, first)) == 6
    assert len(await _reminders(prevention, as_caller, second)) == 2
    assert await _run(prevention, as_caller) == (0, 0)


async def test_two_runs_at_once_send_each_reminder_once(prevention: Any, enrol: Any, as_caller: Metadata) -> None:
    holder, _ = await enrol("F", dt.date(1975, 3, 10))
    answers = await asyncio.gather(*(_run(prevention, as_caller, holder) for _ in range(4)))
    assert sum(sent for _, sent in answers) == 3
    assert len(await _reminders(prevention, as_caller, holder)) == 3


async def test_who_may_run_and_read_reminders(prevention: Any, enrol: Any, as_caller: Metadata) -> None:
    holder, _ = await enrol("M", dt.date(2005, 1, 5))
    for caller in (Principal(subject=holder, role="holder"), Principal(subject="dr", role="professional")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await prevention.RunPreventionReminders(
                notify_service_pb2.RunPreventionRemindersRequest(recipient_id=holder), metadata=as_caller(caller)
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await prevention.ListPreventionReminders(
            notify_service_pb2.ListPreventionRemindersRequest(recipient_id=holder),
            metadata=as_caller(Principal(subject=str(uuid.uuid4()), role="holder")),
        )
    assert parse_rpc_error(caught.value).reason == "NOT_RECIPIENT"
    for request, field in (
        (notify_service_pb2.RunPreventionRemindersRequest(as_of_date=common_pb2.Date(year=2026, month=2, day=30)), "as_of_date"),
        (notify_service_pb2.RunPreventionRemindersRequest(recipient_id="not-an-id"), "recipient_id"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await prevention.RunPreventionReminders(request, metadata=as_caller(OPERATOR))
        remote = parse_rpc_error(caught.value)
        assert (remote.code, remote.metadata.get("field")) == (grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_the_daily_job_runs_once_a_day_after_its_hour_on_one_replica(
    identity_app: ServiceApp, enrol: Any, database_url: str, service_secrets_dir: Any, run_app: Any, smtp_sink: Any
) -> None:
    holder, _ = await enrol("M", dt.date(2010, 1, 5))  # 21 on the day below
    async with run_app(smtp_port=smtp_sink.port, identity_addr=HostPort("127.0.0.1", identity_app.port)):
        pass  # notify's schema, migrated
    pool = await create_pool(database_url, SCHEMA)
    channel = create_channel(HostPort("127.0.0.1", identity_app.port), timeout=10)
    secret = (service_secrets_dir / "notify").read_text().strip()
    # A day no other test runs on, in Paris: 8:59 then 9:00.
    day = dt.date(2031, 5, 20)
    now = [dt.datetime(2031, 5, 20, 8, 59, tzinfo=PARIS)]
    try:
        replicas = [
            PreventionJob(
                pool,
                NotifyStore(pool),
                IdentityPersons(channel, ServiceTokens(channel, "notify", secret, timeout=10), timeout=10),
                unavailable={},
                on_new_deliveries=lambda: None,
                run_hour=9,
                check_seconds=1,
                clock=lambda: now[0].astimezone(dt.UTC),
            )
            for _ in range(2)
        ]
        assert await replicas[0].run_if_due() is None  # before its hour
        now[0] = dt.datetime(2031, 5, 20, 9, 0, tzinfo=PARIS)
        results = await asyncio.gather(*(replica.run_if_due() for replica in replicas))
        done = [result for result in results if result is not None]
        assert len(done) == 1 and done[0].sent >= 1  # one replica ran it, the other stood aside
        assert await replicas[1].run_if_due() is None  # the day is done
        assert await pool.fetchval("SELECT count(*) FROM prevention_runs WHERE run_date = $1", day) == 1
        periods = await pool.fetch("SELECT program, period FROM prevention_reminders WHERE recipient_id = $1", holder)
        assert [(row["program"], row["period"]) for row in periods] == [("CHECKUP_18_25", "18-25")]
    finally:
        await channel.close(None)
        await pool.close()
