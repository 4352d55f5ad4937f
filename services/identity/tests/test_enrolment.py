"""Enrolment through the service: CreatePerson, ImportPersons (gRPC and CLI), notices, List/Update."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import socket
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2, resources_pb2
from carnet.notify.v1 import notify_service_pb2_grpc
from carnet.notify.v1 import resources_pb2 as notify_resources_pb2
from carnet_identity import cli
from carnet_identity.domain.identifiers import ins_key
from carnet_identity.enrolment import PersonRegistry
from carnet_identity.keys import KeyRing
from carnet_identity.notices import NoticeWorker
from carnet_identity.notifier import Notifier
from carnet_identity.person_messages import traits_from_message
from carnet_identity.store_persons import PersonStore
from carnet_identity.tokens import ServiceTokenSource, TokenIssuer
from carnet_kit.auth import Principal
from carnet_kit.testing import wait_until

HEADER = "ins,ins_type,birth_name,used_name,first_names,sex,birth_date,email,address_line1,postal_code,city,department_code"
OPERATOR = Principal(subject="agent-1", role="operator")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def fresh_nir() -> str:
    """A well-formed NIR (sometimes Corsican) nobody else in the test database has, practically."""
    department = random.choice(["75", "13", "69", "2A", "2B", "971"[:2]])
    return f"{random.choice('12')}{random.randint(30, 99):02d}{random.randint(1, 12):02d}{department}{random.randint(1, 999):03d}{random.randint(1, 999):03d}"


def row(
    nir: str,
    *,
    email: str | None = None,
    birth_name: str = "ESSAI",
    sex: str = "F",
    birth_date: str = "1984-05-12",
    department: str = "75",
) -> str:
    address = "" if email else "12 rue des Lilas"
    mail = f"p-{nir.lower()}@test.carnet.test" if email is None else email
    return f"{nir}{ins_key(nir)},nir,{birth_name},,Alix Marie,{sex},{birth_date},{mail},{address},75011,Paris,{department}"


def person_message(nir: str, **changes: object) -> resources_pb2.Person:
    message = resources_pb2.Person(
        ins=nir + ins_key(nir),
        name=common_pb2.PersonName(birth_name="DURAND", first_names=["Inès"]),
        sex=common_pb2.SEX_FEMALE,
        birth_date=common_pb2.Date(year=1990, month=6, day=15),
        email=f"ines-{nir}@test.carnet.test",
        department_code="13",
    )
    for name, value in changes.items():
        if isinstance(value, common_pb2.Date):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


async def import_csv(identity, token: str, text: str, *, dry_run: bool = False, chunk: int = 97):
    data = text.encode()

    async def requests():
        yield identity_service_pb2.ImportPersonsRequest(
            header=identity_service_pb2.ImportPersonsHeader(file_name="registre.csv", dry_run=dry_run)
        )
        for start in range(0, len(data), chunk):
            yield identity_service_pb2.ImportPersonsRequest(csv_chunk=data[start : start + chunk])

    return await identity.stub.ImportPersons(requests(), metadata=bearer(token))


def notices_for(identity, person_id: str) -> list:
    return [request for request in identity.notify.requests if request.notification.recipient_id == person_id]


# ---- CreatePerson


async def test_create_person_enrols_a_notified_person_with_a_deadline_and_an_activation_notice(
    identity, issue_token
) -> None:
    token = await issue_token(OPERATOR)
    nir = fresh_nir()
    before = dt.datetime.now(dt.UTC)
    person = await identity.stub.CreatePerson(
        identity_service_pb2.CreatePersonRequest(person=person_message(nir)), metadata=bearer(token)
    )
    assert person.state == resources_pb2.ACCOUNT_STATE_NOTIFIED
    assert person.ins == nir + ins_key(nir)
    deadline = person.opposition_deadline.ToDatetime(dt.UTC)
    assert dt.timedelta(weeks=6) <= deadline - before < dt.timedelta(weeks=6, minutes=1)
    assert person.HasField("activation_code_expire_time")
    assert person.notice_channel == common_pb2.DELIVERY_CHANNEL_EMAIL
    sent = await wait_until(lambda: notices_for(identity, person.person_id))
    notification = sent[0].notification
    assert notification.kind == notify_resources_pb2.NOTIFICATION_KIND_ACTIVATION_NOTICE
    assert list(notification.channels) == [common_pb2.DELIVERY_CHANNEL_EMAIL]
    assert notification.email == person.email
    assert len(notification.parameters["activation_code"]) == 12
    assert notification.parameters["opposition_deadline"] == deadline.strftime("%d/%m/%Y")


async def test_create_person_refuses_bad_fields_naming_them(identity, issue_token, rpc_error) -> None:
    token = await issue_token(OPERATOR)
    nir = fresh_nir()
    cases = [
        (person_message(nir, ins=nir + f"{int(ins_key(nir)) % 97 + 1:02d}"), "INS_KEY_MISMATCH", "person.ins"),
        (person_message(nir, ins="123"), "INS_MALFORMED", "person.ins"),
        (person_message(nir, birth_date=common_pb2.Date(year=2001, month=2, day=29)), "BIRTH_DATE_INVALID", "person.birth_date"),
        (person_message(nir, sex=common_pb2.SEX_UNSPECIFIED), "FIELD_INVALID", "person.sex"),
        (person_message(nir, department_code="20"), "FIELD_INVALID", "person.department_code"),
    ]
    for message, reason, field in cases:
        error = await rpc_error(
            identity.stub.CreatePerson(identity_service_pb2.CreatePersonRequest(person=message), metadata=bearer(token))
        )
        assert (error.code, error.reason, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, reason, field)


async def test_create_person_is_idempotent_by_request_id_and_refuses_a_second_enrolment(
    identity, issue_token, rpc_error
) -> None:
    token = await issue_token(OPERATOR)
    nir = fresh_nir()
    request = identity_service_pb2.CreatePersonRequest(person=person_message(nir), request_id="req-" + nir)
    first = await identity.stub.CreatePerson(request, metadata=bearer(token))
    again = await identity.stub.CreatePerson(request, metadata=bearer(token))
    assert again.person_id == first.person_id
    error = await rpc_error(
        identity.stub.CreatePerson(
            identity_service_pb2.CreatePersonRequest(person=person_message(nir)), metadata=bearer(token)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "PERSON_ALREADY_EXISTS")


async def test_holders_may_not_enrol_persons(identity, accounts, issue_token, rpc_error) -> None:
    holder = await accounts.holder()
    token = await issue_token(Principal(subject=str(holder.id), role="holder"))
    error = await rpc_error(
        identity.stub.CreatePerson(
            identity_service_pb2.CreatePersonRequest(person=person_message(fresh_nir())), metadata=bearer(token)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")


# ---- Update and List


async def test_update_person_changes_only_masked_fields_and_checks_them(identity, issue_token, rpc_error) -> None:
    token = await issue_token(OPERATOR)
    person = await identity.stub.CreatePerson(
        identity_service_pb2.CreatePersonRequest(person=person_message(fresh_nir())), metadata=bearer(token)
    )
    change = resources_pb2.Person(person_id=person.person_id, mobile_phone="07 11 22 33 44", email="ignored@x.fr")
    updated = await identity.stub.UpdatePerson(
        identity_service_pb2.UpdatePersonRequest(
            person=change, update_mask=field_mask_pb2.FieldMask(paths=["mobile_phone"])
        ),
        metadata=bearer(token),
    )
    assert updated.mobile_phone == "+33711223344"
    assert updated.email == person.email
    bad = await rpc_error(
        identity.stub.UpdatePerson(
            identity_service_pb2.UpdatePersonRequest(
                person=resources_pb2.Person(person_id=person.person_id, department_code="99"),
                update_mask=field_mask_pb2.FieldMask(paths=["department_code"]),
            ),
            metadata=bearer(token),
        )
    )
    assert (bad.reason, bad.metadata["field"]) == ("FIELD_INVALID", "person.department_code")
    state = await rpc_error(
        identity.stub.UpdatePerson(
            identity_service_pb2.UpdatePersonRequest(
                person=resources_pb2.Person(person_id=person.person_id), update_mask=field_mask_pb2.FieldMask(paths=["state"])
            ),
            metadata=bearer(token),
        )
    )
    assert (state.code, state.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "update_mask")


async def test_list_persons_pages_and_filters(identity, issue_token) -> None:
    token = await issue_token(OPERATOR)
    marker = "LISTE" + uuid.uuid4().hex[:6].upper()
    for _ in range(5):
        message = person_message(fresh_nir())
        message.name.birth_name = marker
        message.department_code = "2B"
        await identity.stub.CreatePerson(identity_service_pb2.CreatePersonRequest(person=message), metadata=bearer(token))
    seen: list[str] = []
    page_token = ""
    while True:
        page = await identity.stub.ListPersons(
            identity_service_pb2.ListPersonsRequest(page_size=2, page_token=page_token, name_query=marker.lower()),
            metadata=bearer(token),
        )
        assert page.total_size == 5
        seen += [person.person_id for person in page.persons]
        page_token = page.next_page_token
        if not page_token:
            break
    assert len(seen) == len(set(seen)) == 5
    notified = await identity.stub.ListPersons(
        identity_service_pb2.ListPersonsRequest(
            state=resources_pb2.ACCOUNT_STATE_NOTIFIED, department_code="2B", name_query=marker
        ),
        metadata=bearer(token),
    )
    assert notified.total_size == 5
    active = await identity.stub.ListPersons(
        identity_service_pb2.ListPersonsRequest(state=resources_pb2.ACCOUNT_STATE_ACTIVE, name_query=marker),
        metadata=bearer(token),
    )
    assert active.total_size == 0


# ---- ImportPersons


async def test_import_reports_bad_rows_by_line_and_enrols_the_good_ones(identity, issue_token) -> None:
    token = await issue_token(OPERATOR)
    good = [fresh_nir() for _ in range(3)]
    bad_key = fresh_nir()
    lines = [
        HEADER,
        row(good[0]),
        row(bad_key).replace(f"{bad_key}{ins_key(bad_key)}", f"{bad_key}{int(ins_key(bad_key)) % 97 + 1:02d}"),
        row(good[1], email=""),
        row(fresh_nir(), birth_date="1984-02-30"),
        row(fresh_nir(), sex="Z"),
        row(fresh_nir(), department="20"),
        row(good[2]),
        row(good[2]),
        "too,few,fields",
    ]
    response = await import_csv(identity, token, "\n".join(lines) + "\n")
    assert (response.row_count, response.created_count, response.rejected_count) == (9, 3, 6)
    assert [(error.line_number, error.field, error.reason) for error in response.errors] == [
        (3, "ins", "INS_KEY_MISMATCH"),
        (5, "birth_date", "BIRTH_DATE_INVALID"),
        (6, "sex", "FIELD_INVALID"),
        (7, "department_code", "FIELD_INVALID"),
        (9, "ins", "FIELD_INVALID"),
        (10, "", "FIELD_INVALID"),
    ]
    store = PersonStore(identity.store._db)
    for nir in good:
        person = await store.person_by_nir(nir)
        assert person is not None and person.state.value == "notified"
    assert await store.person_by_nir(bad_key) is None


async def test_reimporting_the_same_file_changes_nothing_and_sends_no_second_notice(identity, issue_token) -> None:
    token = await issue_token(OPERATOR)
    nirs = [fresh_nir() for _ in range(4)]
    text = "\n".join([HEADER, row(nirs[0]), row(nirs[1], email=""), row(nirs[2]), row(nirs[3], email="")]) + "\n"
    first = await import_csv(identity, token, text)
    assert (first.created_count, first.unchanged_count) == (4, 0)
    store = PersonStore(identity.store._db)
    persons = [await store.person_by_nir(nir) for nir in nirs]
    ids = [str(person.id) for person in persons if person]
    await wait_until(lambda: all(notices_for(identity, person_id) for person_id in ids))
    second = await import_csv(identity, token, text, chunk=4096)
    assert (second.row_count, second.created_count, second.unchanged_count, second.updated_count) == (4, 0, 4, 0)
    # The notice worker polls every second: give it the chance to send anything twice.
    await asyncio.sleep(1.5)
    for person_id in ids:
        assert len(notices_for(identity, person_id)) == 1
    email_notice = notices_for(identity, ids[0])[0].notification
    letter_notice = notices_for(identity, ids[1])[0].notification
    assert list(email_notice.channels) == [common_pb2.DELIVERY_CHANNEL_EMAIL]
    assert list(letter_notice.channels) == [common_pb2.DELIVERY_CHANNEL_LETTER]
    assert letter_notice.email == ""
    assert letter_notice.parameters["postal_address"] == "12 rue des Lilas\n75011 Paris"
    assert notices_for(identity, ids[0])[0].request_id != notices_for(identity, ids[2])[0].request_id
    again = await store.person_by_nir(nirs[0])
    assert again is not None and again.updated_at == persons[0].updated_at  # type: ignore[union-attr]
    events = await store._db.fetch(
        "SELECT payload FROM outbox WHERE event_type = 'carnet.identity.v1.PersonCreatedEvent'"
        " AND payload->>'person_id' = ANY($1::text[])",
        ids,
    )
    assert sorted(event["payload"]["person_id"] for event in events) == sorted(ids)
    payload = next(event["payload"] for event in events if event["payload"]["person_id"] == ids[0])
    assert payload["ins"] == nirs[0] + ins_key(nirs[0])
    assert payload["state"] == "ACCOUNT_STATE_NOTIFIED"
    assert payload["opposition_deadline"].endswith("Z")


async def test_an_import_row_with_new_data_updates_the_person(identity, issue_token) -> None:
    token = await issue_token(OPERATOR)
    nir = fresh_nir()
    await import_csv(identity, token, f"{HEADER}\n{row(nir)}\n")
    changed = await import_csv(identity, token, f"{HEADER}\n{row(nir, birth_name='ESSAI-DURAND')}\n")
    assert (changed.created_count, changed.updated_count, changed.unchanged_count) == (0, 1, 0)
    person = await PersonStore(identity.store._db).person_by_nir(nir)
    assert person is not None and person.name.birth_name == "ESSAI-DURAND"


async def test_a_dry_run_counts_but_stores_nothing(identity, issue_token) -> None:
    token = await issue_token(OPERATOR)
    nir = fresh_nir()
    response = await import_csv(identity, token, f"{HEADER}\n{row(nir)}\n", dry_run=True)
    assert (response.row_count, response.created_count) == (1, 1)
    assert await PersonStore(identity.store._db).person_by_nir(nir) is None


async def test_an_import_without_the_required_columns_is_refused(identity, issue_token, rpc_error) -> None:
    token = await issue_token(OPERATOR)
    error = await rpc_error(import_csv(identity, token, "ins,birth_name\n"))
    assert (error.code, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "csv_chunk")


async def test_the_cli_imports_a_file_with_a_registry_client_and_prints_the_summary(
    identity, accounts, tmp_path: Path
) -> None:
    client = await accounts.client(secret="registre-secret-0123", scopes=("persons.import",))
    nirs = [fresh_nir() for _ in range(3)]
    csv_file = tmp_path / "registre.csv"
    csv_file.write_text("\n".join([HEADER, row(nirs[0]), row(nirs[1], email=""), row(nirs[2], sex="?")]) + "\n")
    env = {
        **os.environ,
        "CARNET_IDENTITY_ADDR": f"127.0.0.1:{identity.app.port}",
        "CARNET_IMPORT_CLIENT_ID": client.client_id,
        "CARNET_IMPORT_CLIENT_SECRET": "registre-secret-0123",
    }
    env.pop("CARNET_TOKEN", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "carnet_identity", "import", str(csv_file),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    text = stdout.decode()
    assert process.returncode == 1, stderr.decode()
    assert "3 rows" in text
    assert "created    2" in text and "rejected   1" in text
    assert "line 4 [sex] FIELD_INVALID" in text
    assert "importing [" in stderr.decode()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "carnet_identity", "import", str(csv_file),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert "unchanged  2" in stdout.decode() and "created    0" in stdout.decode()


async def test_a_client_without_the_import_scope_may_not_import(identity, accounts, rpc_error) -> None:
    client = await accounts.client(secret="other-secret-01234", scopes=("documents.deposit",))
    tokens = await identity.stub.ExchangeClientCredentials(
        identity_service_pb2.ExchangeClientCredentialsRequest(client_id=client.client_id, client_secret="other-secret-01234")
    )
    error = await rpc_error(import_csv(identity, tokens.access_token, f"{HEADER}\n{row(fresh_nir())}\n"))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED


class RefusingNotify(notify_service_pb2_grpc.NotifyServiceServicer):
    """Notify refusing every notice for good (as a notify without letters refuses a letter)."""

    async def CreateNotification(self, request, context):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ACTIVATION_NOTICE cannot be sent through LETTER")


async def worker_towards(identity, port: int) -> tuple[NoticeWorker, grpc.aio.Channel]:
    keys = KeyRing(identity.store, default_overlap=dt.timedelta(hours=1))
    await keys.reload()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    notifier = Notifier(channel, ServiceTokenSource(TokenIssuer(keys), ttl_seconds=300), timeout=2)
    return NoticeWorker(PersonStore(identity.store._db), notifier, batch_size=1000), channel


async def enrol_quietly(pool, at: dt.datetime) -> uuid.UUID:
    """A person enrolled as if at ``at`` (in the future), so that the service's own worker leaves the notice alone."""
    registry = PersonRegistry(PersonStore(pool), clock=lambda: at)
    traits = traits_from_message(person_message(fresh_nir()), at.date())
    return (await registry.create(OPERATOR, traits)).id


async def test_notices_are_retried_when_notify_is_down_and_given_up_when_refused(identity, pool) -> None:
    due_later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    person_id = await enrol_quietly(pool, due_later)
    store = PersonStore(pool)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        down_port = unused.getsockname()[1]
    worker, channel = await worker_towards(identity, down_port)
    try:
        worker._clock = lambda: due_later
        await worker.run_once()
    finally:
        await channel.close()
    [notice] = await store.notices_of(person_id)
    assert (notice["state"], notice["attempts"]) == ("pending", 1)
    assert notice["last_error"].startswith("UNAVAILABLE")
    code = await pool.fetchval("SELECT code FROM activation_notices WHERE person_id = $1", person_id)
    assert code  # kept for the next attempt

    server = grpc.aio.server()
    notify_service_pb2_grpc.add_NotifyServiceServicer_to_server(RefusingNotify(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    worker, channel = await worker_towards(identity, port)
    try:
        worker._clock = lambda: due_later + dt.timedelta(hours=2)
        await worker.run_once()
    finally:
        await channel.close()
        await server.stop(0)
    [notice] = await store.notices_of(person_id)
    assert (notice["state"], notice["attempts"]) == ("failed", 2)
    assert await pool.fetchval("SELECT code FROM activation_notices WHERE person_id = $1", person_id) is None


async def test_a_sent_notice_forgets_its_plain_code(identity, issue_token, pool) -> None:
    token = await issue_token(OPERATOR)
    person = await identity.stub.CreatePerson(
        identity_service_pb2.CreatePersonRequest(person=person_message(fresh_nir())), metadata=bearer(token)
    )
    await wait_until(lambda: notices_for(identity, person.person_id))
    store = PersonStore(pool)
    notices = await wait_until(
        lambda: _sent(store, uuid.UUID(person.person_id))
    )
    assert notices[0]["sent_at"] is not None
    assert await pool.fetchval("SELECT code FROM activation_notices WHERE person_id = $1", uuid.UUID(person.person_id)) is None


async def _sent(store: PersonStore, person_id: uuid.UUID):
    notices = await store.notices_of(person_id)
    return notices if notices and notices[0]["state"] == "sent" else None


async def test_the_carnet_command_imports_with_an_operator_token(identity, issue_token, tmp_path: Path, monkeypatch, capsys) -> None:
    nir = fresh_nir()
    csv_file = tmp_path / "un.csv"
    csv_file.write_text(f"{HEADER}\n{row(nir)}\n")
    monkeypatch.setenv("CARNET_TOKEN", await issue_token(OPERATOR))
    monkeypatch.setenv("CARNET_IDENTITY_ADDR", f"127.0.0.1:{identity.app.port}")
    with pytest.raises(SystemExit) as usage:
        cli.main(["identity", "export"])
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as done:
        await asyncio.to_thread(cli.main, ["identity", "import", str(csv_file)])
    assert done.value.code == 0
    assert "created    1" in capsys.readouterr().out
    assert await PersonStore(identity.store._db).person_by_nir(nir) is not None


async def test_updating_a_person_publishes_the_changed_fields(identity, issue_token, pool) -> None:
    token = await issue_token(OPERATOR)
    person = await identity.stub.CreatePerson(
        identity_service_pb2.CreatePersonRequest(person=person_message(fresh_nir())), metadata=bearer(token)
    )
    await identity.stub.UpdatePerson(
        identity_service_pb2.UpdatePersonRequest(
            person=resources_pb2.Person(
                person_id=person.person_id, name=common_pb2.PersonName(used_name="MARTIN"), department_code="2A"
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["name.used_name", "department_code"]),
        ),
        metadata=bearer(token),
    )
    payload = await pool.fetchval(
        "SELECT payload FROM outbox WHERE event_type = 'carnet.identity.v1.PersonUpdatedEvent'"
        " AND payload->>'person_id' = $1",
        person.person_id,
    )
    assert sorted(payload["changed_fields"]) == ["department_code", "name.used_name"]
