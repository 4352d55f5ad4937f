"""Secure messaging: who starts, reads and writes threads, read state, pages, idempotency, the NEW_MESSAGE notice."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import pytest

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet.identity.v1 import resources_pb2 as identity_resources_pb2
from carnet.notify.v1 import notify_service_pb2, notify_service_pb2_grpc, resources_pb2
from carnet_identity.domain.identifiers import luhn_check_digit
from carnet_kit.auth import Principal
from carnet_kit.config import HostPort
from carnet_kit.server import ServiceApp
from carnet_kit.status import RemoteError, parse_rpc_error
from carnet_kit.testing import wait_until
from carnet_notify.kinds import Channel, Kind
from carnet_notify.messaging import (
    Participant,
    ThreadAccess,
    acts_for_holder,
    may_read_thread,
    may_start_threads,
    new_message_intents,
)
from carnet_notify.templates import render_email, render_inbox_item, render_push, render_sms

Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]
Stub = notify_service_pb2_grpc.NotifyServiceStub
OPERATOR = Principal(subject="op-support", role="operator")


def professional() -> Principal:
    return Principal(
        subject=str(uuid.uuid4()),
        role="professional",
        profession_code="10",
        rpps="10003456789",
        organisation_id=f"org-{uuid.uuid4().hex[:8]}",
    )


def holder() -> Principal:
    return Principal(subject=str(uuid.uuid4()), role="holder")


async def failure(call: Any) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return parse_rpc_error(raised.value)


async def start_thread(
    stub: Stub,
    as_caller: Metadata,
    starter: Principal,
    holder_id: str,
    *,
    subject: str = "Vos résultats",
    body: str = "Bonjour, vos résultats sont arrivés.",
    attachment_ids: Sequence[str] = (),
    request_id: str = "",
) -> resources_pb2.Thread:
    thread: resources_pb2.Thread = await stub.CreateThread(
        notify_service_pb2.CreateThreadRequest(
            thread=resources_pb2.Thread(holder_id=holder_id, subject=subject),
            first_message=resources_pb2.ThreadMessage(
                body=body, attachments=[resources_pb2.Attachment(attachment_id=a) for a in attachment_ids]
            ),
            request_id=request_id,
        ),
        metadata=as_caller(starter),
    )
    return thread


async def post(
    stub: Stub, as_caller: Metadata, sender: Principal, thread_id: str, body: str, *, request_id: str = ""
) -> resources_pb2.ThreadMessage:
    message: resources_pb2.ThreadMessage = await stub.PostMessage(
        notify_service_pb2.PostMessageRequest(
            thread_id=thread_id, message=resources_pb2.ThreadMessage(body=body), request_id=request_id
        ),
        metadata=as_caller(sender),
    )
    return message


async def get_thread(stub: Stub, as_caller: Metadata, reader: Principal, thread_id: str) -> resources_pb2.Thread:
    thread: resources_pb2.Thread = await stub.GetThread(
        notify_service_pb2.GetThreadRequest(thread_id=thread_id), metadata=as_caller(reader)
    )
    return thread


async def all_messages(stub: Stub, as_caller: Metadata, reader: Principal, thread_id: str, page_size: int) -> list[Any]:
    pages, token = [], ""
    while True:
        page = await stub.ListMessages(
            notify_service_pb2.ListMessagesRequest(thread_id=thread_id, page_size=page_size, page_token=token),
            metadata=as_caller(reader),
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


async def inbox(stub: Stub, as_caller: Metadata, recipient: Principal) -> list[resources_pb2.InboxItem]:
    response = await stub.ListInboxItems(
        notify_service_pb2.ListInboxItemsRequest(recipient_id=recipient.subject), metadata=as_caller(recipient)
    )
    return list(response.items)


async def test_a_professional_starts_a_thread_and_the_holder_replies(stub: Stub, as_caller: Metadata) -> None:
    doctor, me = professional(), holder()
    thread = await start_thread(stub, as_caller, doctor, me.subject, subject="Suivi de votre tension")
    assert thread.holder_id == me.subject and thread.subject == "Suivi de votre tension"
    assert thread.started_by.subject == doctor.subject and thread.started_by.role == common_pb2.ROLE_PROFESSIONAL
    assert thread.started_by.rpps == doctor.rpps and thread.organisation_id == doctor.organisation_id
    assert {(p.subject, p.role) for p in thread.participants} == {
        (doctor.subject, common_pb2.ROLE_PROFESSIONAL),
        (me.subject, common_pb2.ROLE_HOLDER),
    }
    assert (thread.message_count, thread.unread_count) == (1, 0)

    reply = await post(stub, as_caller, me, thread.thread_id, "Merci docteur, je passe demain.")
    assert reply.sender.subject == me.subject and reply.sender.role == common_pb2.ROLE_HOLDER
    assert reply.thread_id == thread.thread_id and reply.HasField("create_time")

    [page] = await all_messages(stub, as_caller, doctor, thread.thread_id, page_size=10)
    assert [m.body for m in page.messages] == [
        "Bonjour, vos résultats sont arrivés.",
        "Merci docteur, je passe demain.",
    ]
    assert [m.sender.subject for m in page.messages] == [doctor.subject, me.subject]
    seen_by_doctor = await get_thread(stub, as_caller, doctor, thread.thread_id)
    assert (seen_by_doctor.message_count, seen_by_doctor.unread_count) == (2, 1)
    assert seen_by_doctor.last_message_time == reply.create_time

    # The holder's reply is in the professional's inbox, without its text.
    [item] = await wait_until(lambda: inbox(stub, as_caller, doctor))
    assert item.kind == resources_pb2.NOTIFICATION_KIND_NEW_MESSAGE
    assert item.parameters["thread_id"] == thread.thread_id and item.parameters["message_id"] == reply.message_id
    assert "Merci docteur" not in item.title + item.body


@pytest.mark.parametrize(
    "starter",
    [
        Principal(subject=str(uuid.uuid4()), role="holder"),
        Principal(subject=str(uuid.uuid4()), role="representative", acting_for=str(uuid.uuid4())),
        Principal(subject=str(uuid.uuid4()), role="helper", acting_for=str(uuid.uuid4()), scopes=("space.write",)),
        Principal(subject="lab-without-owner", role="client", client_id="lab-without-owner"),
        OPERATOR,
    ],
    ids=["holder", "representative", "helper", "client-without-organisation", "operator"],
)
async def test_only_professionals_and_institutions_start_threads(
    stub: Stub, as_caller: Metadata, starter: Principal
) -> None:
    # Even about themself (or the holder they act for).
    target = starter.acting_for or (starter.subject if starter.role == "holder" else str(uuid.uuid4()))
    error = await failure(start_thread(stub, as_caller, starter, target))
    assert (error.code, error.reason, error.domain) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "THREAD_START_FORBIDDEN",
        "notify.carnet",
    )
    if starter.role != "operator":
        listed = await stub.ListThreads(notify_service_pb2.ListThreadsRequest(), metadata=as_caller(starter))
        assert listed.total_size == 0


async def test_an_institution_starts_a_thread_through_its_software(stub: Stub, as_caller: Metadata) -> None:
    hospital = Principal(
        subject=f"dpi-{uuid.uuid4().hex[:6]}",
        role="client",
        client_id="dpi",
        organisation_id=f"org-{uuid.uuid4().hex[:6]}",
    )
    me = holder()
    thread = await start_thread(stub, as_caller, hospital, me.subject, subject="Votre sortie d'hospitalisation")
    assert thread.started_by.role == common_pb2.ROLE_CLIENT and thread.organisation_id == hospital.organisation_id
    await post(stub, as_caller, me, thread.thread_id, "Bien reçu.")
    [page] = await all_messages(stub, as_caller, hospital, thread.thread_id, page_size=5)
    assert len(page.messages) == 2


async def test_strangers_may_not_read_write_or_mark_a_thread(stub: Stub, as_caller: Metadata) -> None:
    doctor, me = professional(), holder()
    thread = await start_thread(stub, as_caller, doctor, me.subject)
    strangers = [
        professional(),
        holder(),
        Principal(subject=doctor.subject, role="holder"),  # the same id under another role is someone else
        Principal(subject=str(uuid.uuid4()), role="representative", acting_for=str(uuid.uuid4())),
        OPERATOR,
    ]
    for stranger in strangers:
        calls = [
            stub.GetThread(
                notify_service_pb2.GetThreadRequest(thread_id=thread.thread_id), metadata=as_caller(stranger)
            ),
            stub.ListMessages(
                notify_service_pb2.ListMessagesRequest(thread_id=thread.thread_id), metadata=as_caller(stranger)
            ),
            stub.MarkThreadRead(
                notify_service_pb2.MarkThreadReadRequest(thread_id=thread.thread_id), metadata=as_caller(stranger)
            ),
            post(stub, as_caller, stranger, thread.thread_id, "Je m'invite."),
        ]
        for call in calls:
            error = await failure(call)
            assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_A_PARTICIPANT"), stranger
    missing = await failure(get_thread(stub, as_caller, doctor, str(uuid.uuid4())))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND")
    # Nothing was added by the refused posts.
    assert (await get_thread(stub, as_caller, me, thread.thread_id)).message_count == 1


async def test_people_acting_for_the_holder_read_and_a_read_only_helper_does_not_write(
    stub: Stub, as_caller: Metadata
) -> None:
    doctor, child = professional(), holder()
    parent = Principal(subject=str(uuid.uuid4()), role="representative", acting_for=child.subject)
    reader = Principal(subject=str(uuid.uuid4()), role="helper", acting_for=child.subject, scopes=("space.read",))
    thread = await start_thread(stub, as_caller, doctor, child.subject, subject="Vaccins")
    assert (await get_thread(stub, as_caller, reader, thread.thread_id)).message_count == 1
    denied = await failure(post(stub, as_caller, reader, thread.thread_id, "Je réponds pour elle."))
    assert (denied.code, denied.reason, denied.metadata["access"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_A_PARTICIPANT",
        "read_only",
    )
    answer = await post(stub, as_caller, parent, thread.thread_id, "Rendez-vous pris.")
    assert answer.sender.role == common_pb2.ROLE_REPRESENTATIVE and answer.sender.acting_for == child.subject
    participants = {
        (p.subject, p.role) for p in (await get_thread(stub, as_caller, doctor, thread.thread_id)).participants
    }
    assert (parent.subject, common_pb2.ROLE_REPRESENTATIVE) in participants
    listed = await stub.ListThreads(notify_service_pb2.ListThreadsRequest(), metadata=as_caller(parent))
    assert [t.thread_id for t in listed.threads] == [thread.thread_id]


async def test_read_state_is_kept_per_reader(stub: Stub, as_caller: Metadata) -> None:
    doctor, me = professional(), holder()
    thread = await start_thread(stub, as_caller, doctor, me.subject)
    await post(stub, as_caller, doctor, thread.thread_id, "Et n'oubliez pas la prise de sang.")
    mine = await get_thread(stub, as_caller, me, thread.thread_id)
    assert mine.unread_count == 2
    assert (await get_thread(stub, as_caller, doctor, thread.thread_id)).unread_count == 0
    unread = await stub.ListThreads(notify_service_pb2.ListThreadsRequest(unread_only=True), metadata=as_caller(me))
    assert [t.thread_id for t in unread.threads] == [thread.thread_id] and unread.threads[0].unread_count == 2

    marked = await stub.MarkThreadRead(
        notify_service_pb2.MarkThreadReadRequest(thread_id=thread.thread_id), metadata=as_caller(me)
    )
    assert marked.unread_count == 0
    [holder_side] = [p for p in marked.participants if p.subject == me.subject]
    assert holder_side.HasField("last_read_time")
    assert holder_side.last_read_time.ToDatetime() >= mine.last_message_time.ToDatetime()
    unread = await stub.ListThreads(notify_service_pb2.ListThreadsRequest(unread_only=True), metadata=as_caller(me))
    assert list(unread.threads) == [] and unread.total_size == 0

    await post(stub, as_caller, doctor, thread.thread_id, "Résultats reçus.")
    assert (await get_thread(stub, as_caller, me, thread.thread_id)).unread_count == 1
    # Replying is having read: the holder's own message does not count, nor what came before it.
    await post(stub, as_caller, me, thread.thread_id, "Merci.")
    assert (await get_thread(stub, as_caller, me, thread.thread_id)).unread_count == 0
    assert (await get_thread(stub, as_caller, doctor, thread.thread_id)).unread_count == 1


async def test_messages_page_oldest_first_and_threads_latest_first(stub: Stub, as_caller: Metadata) -> None:
    doctor, me = professional(), holder()
    thread = await start_thread(stub, as_caller, doctor, me.subject, body="message 0")
    for n in range(1, 5):
        await post(stub, as_caller, doctor if n % 2 else me, thread.thread_id, f"message {n}")
    pages = await all_messages(stub, as_caller, me, thread.thread_id, page_size=2)
    assert [len(page.messages) for page in pages] == [2, 2, 1]
    assert [m.body for page in pages for m in page.messages] == [f"message {n}" for n in range(5)]
    bad = await failure(
        stub.ListMessages(
            notify_service_pb2.ListMessagesRequest(thread_id=thread.thread_id, page_token="not-a-token"),
            metadata=as_caller(me),
        )
    )
    assert (bad.code, bad.reason, bad.metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_INVALID",
        "page_token",
    )

    others = [await start_thread(stub, as_caller, doctor, me.subject, subject=f"Sujet {n}") for n in range(2)]
    await post(stub, as_caller, me, others[0].thread_id, "Réponse")
    expected = [others[0].thread_id, others[1].thread_id, thread.thread_id]
    seen, token, totals = [], "", set()
    while True:
        page = await stub.ListThreads(
            notify_service_pb2.ListThreadsRequest(page_size=2, page_token=token), metadata=as_caller(me)
        )
        seen += [t.thread_id for t in page.threads]
        totals.add(page.total_size)
        token = page.next_page_token
        if not token:
            break
    assert seen == expected and totals == {3}
    by_doctor = await stub.ListThreads(
        notify_service_pb2.ListThreadsRequest(holder_id=me.subject), metadata=as_caller(doctor)
    )
    assert [t.thread_id for t in by_doctor.threads] == expected
    # A token belongs to its query.
    first = await stub.ListThreads(notify_service_pb2.ListThreadsRequest(page_size=1), metadata=as_caller(me))
    mixed = await failure(
        stub.ListThreads(
            notify_service_pb2.ListThreadsRequest(page_size=1, page_token=first.next_page_token, unread_only=True),
            metadata=as_caller(me),
        )
    )
    assert (mixed.code, mixed.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "page_token")
    # The holder side may not list another holder's threads.
    other = await failure(
        stub.ListThreads(notify_service_pb2.ListThreadsRequest(holder_id=holder().subject), metadata=as_caller(me))
    )
    assert (other.code, other.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_A_PARTICIPANT")
    # A professional sees only the threads they take part in.
    assert (
        list(
            (
                await stub.ListThreads(notify_service_pb2.ListThreadsRequest(), metadata=as_caller(professional()))
            ).threads
        )
        == []
    )


async def test_start_and_post_are_idempotent_on_request_id(stub: Stub, as_caller: Metadata) -> None:
    doctor, me = professional(), holder()
    first = await start_thread(stub, as_caller, doctor, me.subject, request_id="start-1")
    again = await start_thread(stub, as_caller, doctor, me.subject, request_id="start-1")
    assert again.thread_id == first.thread_id and again.message_count == 1
    reply = await post(stub, as_caller, me, first.thread_id, "Oui", request_id="reply-1")
    repeated = await post(stub, as_caller, me, first.thread_id, "Oui", request_id="reply-1")
    assert repeated.message_id == reply.message_id
    assert (await get_thread(stub, as_caller, me, first.thread_id)).message_count == 2
    threads = await stub.ListThreads(notify_service_pb2.ListThreadsRequest(), metadata=as_caller(me))
    assert threads.total_size == 1
    # Another professional's request id is theirs alone.
    someone_else = await start_thread(stub, as_caller, professional(), me.subject, request_id="start-1")
    assert someone_else.thread_id != first.thread_id


@pytest.mark.parametrize(
    ("thread", "body", "field"),
    [
        ({"subject": "Sujet"}, "Bonjour", "thread.holder_id"),
        ({"holder_id": "person-1", "subject": "Sujet"}, "Bonjour", "thread.holder_id"),
        ({"holder_id": str(uuid.uuid4()), "subject": "   "}, "Bonjour", "thread.subject"),
        ({"holder_id": str(uuid.uuid4()), "subject": "x" * 201}, "Bonjour", "thread.subject"),
        ({"holder_id": str(uuid.uuid4()), "subject": "Sujet"}, "  ", "first_message.body"),
        (
            {"holder_id": str(uuid.uuid4()), "subject": "Sujet", "organisation_id": "org-other"},
            "Bonjour",
            "thread.organisation_id",
        ),
    ],
)
async def test_a_bad_thread_is_invalid_argument_naming_the_field(
    stub: Stub, as_caller: Metadata, thread: dict[str, str], body: str, field: str
) -> None:
    error = await failure(
        stub.CreateThread(
            notify_service_pb2.CreateThreadRequest(
                thread=resources_pb2.Thread(**thread), first_message=resources_pb2.ThreadMessage(body=body)
            ),
            metadata=as_caller(professional()),
        )
    )
    assert (error.code, error.reason, error.metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_INVALID",
        field,
    )


async def test_bad_ids_and_unknown_attachments_are_refused_by_field(stub: Stub, as_caller: Metadata) -> None:
    doctor, me = professional(), holder()
    bad_id = await failure(get_thread(stub, as_caller, me, "not-an-id"))
    assert (bad_id.code, bad_id.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "thread_id")
    unknown = str(uuid.uuid4())
    error = await failure(start_thread(stub, as_caller, doctor, me.subject, attachment_ids=[unknown]))
    assert (error.code, error.reason, error.metadata["field"]) == (
        grpc.StatusCode.NOT_FOUND,
        "ATTACHMENT_NOT_FOUND",
        "first_message.attachments[0].attachment_id",
    )
    malformed = await failure(start_thread(stub, as_caller, doctor, me.subject, attachment_ids=["x"]))
    assert malformed.metadata["field"] == "first_message.attachments[0].attachment_id"
    assert (await stub.ListThreads(notify_service_pb2.ListThreadsRequest(), metadata=as_caller(me))).total_size == 0


# ------------------------------------------------------------------------- telling the holder


async def test_a_new_message_tells_the_holder_in_the_inbox_even_when_identity_is_down(
    stub: Stub, as_caller: Metadata
) -> None:
    doctor, me = professional(), holder()
    thread = await start_thread(stub, as_caller, doctor, me.subject, subject="Compte rendu", body="Tout va bien.")
    [item] = await inbox(stub, as_caller, me)
    assert item.kind == resources_pb2.NOTIFICATION_KIND_NEW_MESSAGE
    assert item.title == "Nouveau message"
    assert item.body == "Nouveau message dans la conversation « Compte rendu »."
    assert item.parameters["thread_id"] == thread.thread_id
    assert "Tout va bien" not in str(item)
    # No e-mail address could be had from identity: the e-mail is suppressed, the message went through.
    deliveries = await stub.ListDeliveries(
        notify_service_pb2.ListDeliveriesRequest(recipient_id=me.subject), metadata=as_caller(OPERATOR)
    )
    states = {d.channel: d.state for d in deliveries.deliveries}
    assert states == {
        common_pb2.DELIVERY_CHANNEL_IN_APP: resources_pb2.DELIVERY_STATE_DELIVERED,
        common_pb2.DELIVERY_CHANNEL_EMAIL: resources_pb2.DELIVERY_STATE_SUPPRESSED,
    }


def ins_for(nir: str) -> str:
    return f"{nir}{97 - int(nir) % 97:02d}"


async def test_a_new_message_e_mail_says_only_that_a_message_arrived(
    run_app: Any, smtp_sink: Any, identity_app: ServiceApp, as_caller: Metadata
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{identity_app.port}") as channel:
        identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
        nir = f"2{random.randint(50, 99)}{random.randint(1, 12):02d}75{random.randint(1, 999):03d}{random.randint(1, 999):03d}"
        email = f"ines-{nir}@test.carnet.test"
        person = await identity.CreatePerson(
            identity_service_pb2.CreatePersonRequest(
                person=identity_resources_pb2.Person(
                    ins=ins_for(nir),
                    name=common_pb2.PersonName(birth_name="DURAND", first_names=["Inès"]),
                    sex=common_pb2.SEX_FEMALE,
                    birth_date=common_pb2.Date(year=1990, month=6, day=15),
                    email=email,
                    department_code="75",
                )
            ),
            metadata=as_caller(OPERATOR),
        )
        stem = f"1{random.randint(0, 10**9 - 1):09d}"
        registered = await identity.CreateProfessional(
            identity_service_pb2.CreateProfessionalRequest(
                professional=identity_resources_pb2.Professional(
                    rpps=stem + luhn_check_digit(stem),
                    name=common_pb2.PersonName(birth_name="Lefèvre", first_names=["Noé"]),
                    profession_code="10",
                    email=f"noe-{stem}@test.carnet.test",
                )
            ),
            metadata=as_caller(OPERATOR),
        )
    me = Principal(subject=person.person_id, role="holder")
    doctor = Principal(subject=registered.professional_id, role="professional", rpps=registered.rpps)
    async with run_app(smtp_port=smtp_sink.port, identity_addr=HostPort("127.0.0.1", identity_app.port)) as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = notify_service_pb2_grpc.NotifyServiceStub(channel)
            secret_subject, secret_body = "Biopsie hépatique", "Votre biopsie ne montre aucune cellule suspecte."
            thread = await start_thread(stub, as_caller, doctor, me.subject, subject=secret_subject, body=secret_body)
            [mail] = await wait_until(lambda: [m for m in smtp_sink.received() if email in m.envelope_to])
            [item] = await inbox(stub, as_caller, me)
            # Who wrote, as identity names them: the doctor with their title, the holder by name.
            reply = await post(stub, as_caller, me, thread.thread_id, "Merci docteur.")
            assert reply.sender_display_name == "Inès DURAND"
            listed = await stub.ListMessages(
                notify_service_pb2.ListMessagesRequest(thread_id=thread.thread_id), metadata=as_caller(me)
            )
            assert [m.sender_display_name for m in listed.messages] == ["Dr Noé LEFÈVRE", "Inès DURAND"]
            seen = await get_thread(stub, as_caller, me, thread.thread_id)
            assert {p.subject: p.display_name for p in seen.participants} == {
                doctor.subject: "Dr Noé LEFÈVRE",
                me.subject: "Inès DURAND",
            }
    assert item.kind == resources_pb2.NOTIFICATION_KIND_NEW_MESSAGE and item.parameters["thread_id"] == thread.thread_id
    assert mail.message["Subject"] == "Nouveau message dans votre espace Carnet"
    assert "nouveau message" in mail.text()
    for secret in (secret_body, secret_subject, "biopsie", "Biopsie", "DURAND", "LEFÈVRE", doctor.rpps):
        for part in (mail.message["Subject"], mail.text(), mail.html()):
            assert secret not in part


# ------------------------------------------------------------------------- the rules, without a server


def test_who_starts_reads_and_writes_a_thread() -> None:
    child = str(uuid.uuid4())
    full = Principal(subject="h1", role="helper", acting_for=child, scopes=("space.read", "space.write"))
    read_only = Principal(subject="h2", role="helper", acting_for=child, scopes=("space.read",))
    parent = Principal(subject="r1", role="representative", acting_for=child)
    assert acts_for_holder(full, child, write=True) and acts_for_holder(parent, child, write=True)
    assert acts_for_holder(read_only, child, write=False) and not acts_for_holder(read_only, child, write=True)
    assert not acts_for_holder(Principal(subject="x", role="representative"), "", write=False)
    assert may_start_threads(professional())
    assert may_start_threads(Principal(subject="c", role="client", organisation_id="org"))
    assert not may_start_threads(Principal(subject="c", role="client"))
    assert not any(may_start_threads(p) for p in (holder(), parent, full, OPERATOR))
    doctor = professional()
    thread = ThreadAccess(uuid.uuid4(), child, frozenset({(doctor.subject, "professional"), (child, "holder")}))
    assert may_read_thread(doctor, thread) and may_read_thread(read_only, thread)
    assert not may_read_thread(professional(), thread)
    assert not may_read_thread(Principal(subject=doctor.subject, role="client"), thread)


def test_new_message_notices_never_carry_the_message() -> None:
    doctor, me = professional(), holder()
    participants = [Participant(doctor.subject, "professional"), Participant(me.subject, "holder")]
    common = {"participants": participants, "thread_id": uuid.uuid4(), "message_id": uuid.uuid4()}
    [to_holder] = new_message_intents(
        sender=doctor, holder_id=me.subject, thread_subject="Biopsie", holder_email="me@test.carnet.test", **common
    )
    assert (to_holder.recipient_id, to_holder.kind) == (me.subject, Kind.NEW_MESSAGE)
    assert to_holder.channels == (Channel.IN_APP, Channel.EMAIL) and to_holder.email == "me@test.carnet.test"
    [to_doctor] = new_message_intents(
        sender=me, holder_id=me.subject, thread_subject="Biopsie", holder_email="", **common
    )
    assert (to_doctor.recipient_id, to_doctor.channels) == (doctor.subject, (Channel.IN_APP,))
    assert to_holder.source_event_id == to_doctor.source_event_id == f"message:{common['message_id']}"
    params = dict(to_holder.parameters)
    email, sms, push = (
        render_email(Kind.NEW_MESSAGE, params),
        render_sms(Kind.NEW_MESSAGE, params),
        render_push(Kind.NEW_MESSAGE, params),
    )
    for text in (email.subject, email.text, email.html, sms, push.title, push.body):
        assert "Biopsie" not in text
    assert "Biopsie" in render_inbox_item(Kind.NEW_MESSAGE, params).body
