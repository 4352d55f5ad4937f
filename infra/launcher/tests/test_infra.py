"""The embedded infrastructure for real: PostgreSQL, Redis, the SMTP sink, remembered ports."""

from __future__ import annotations

import asyncio
import email
import re
import smtplib
import socket
from email.message import EmailMessage
from email.policy import default as default_policy

import asyncpg  # type: ignore[import-untyped]
import pytest
import redis

from carnet_launcher.errors import InfraError
from carnet_launcher.layout import DataDir
from carnet_launcher.ports import LOOPBACK, PortBook, pick_free_port, port_is_free
from carnet_launcher.postgres import EmbeddedPostgres
from carnet_launcher.redis_server import EmbeddedRedis, ping
from carnet_launcher.smtp_sink import SmtpSink

MAILBOX_NAME = re.compile(r"^\d{8}T\d{12}-[0-9a-f]{32}\.eml$")


async def _query(url: str, *statements: str) -> list[object]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        results: list[object] = []
        for statement in statements:
            results.append(await connection.fetchval(statement))
        return results
    finally:
        await connection.close()


def query(url: str, *statements: str) -> list[object]:
    return asyncio.run(_query(url, *statements))


def test_postgres_answers_over_loopback_tcp_and_keeps_data_across_a_restart(
    data: DataDir, ports: PortBook, postgres: EmbeddedPostgres
) -> None:
    url = postgres.start()
    port = ports.remembered("postgres")
    assert url == f"postgresql://postgres@127.0.0.1:{port}/carnet"
    assert query(url, "SELECT 1") == [1]
    query(url, "CREATE TABLE kept (note text)", "INSERT INTO kept VALUES ('still here')")

    postgres.stop()
    assert postgres.running_port() is None
    assert not (data.postgres / "postmaster.pid").exists()

    restarted = EmbeddedPostgres(data, PortBook(data.ports_file))
    try:
        assert restarted.start() == url, "the remembered port is reused"
        assert query(url, "SELECT note FROM kept") == ["still here"]
    finally:
        restarted.stop()


def test_postgres_database_is_utf8_with_unicode_case_mapping(postgres: EmbeddedPostgres) -> None:
    url = postgres.start()
    assert query(url, "SHOW server_encoding", "SELECT lower('LÉA')", "SELECT 'é' ILIKE 'É'") == [
        "UTF8",
        "léa",
        True,
    ]


def test_postgres_reuses_a_server_still_running_on_the_same_data_dir(
    data: DataDir, postgres: EmbeddedPostgres
) -> None:
    url = postgres.start()
    pid_file = (data.postgres / "postmaster.pid").read_text()

    second = EmbeddedPostgres(data, PortBook(data.ports_file))
    assert second.start() == url
    assert (data.postgres / "postmaster.pid").read_text() == pid_file, "no second server"
    assert query(url, "SELECT 1") == [1]


def test_postgres_moves_to_a_new_port_when_the_remembered_one_is_taken(
    data: DataDir, ports: PortBook, postgres: EmbeddedPostgres
) -> None:
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports.remember("postgres", taken)
        url = postgres.start()
    assert postgres.port != taken
    assert ports.remembered("postgres") == postgres.port
    assert query(url, "SELECT 1") == [1]


def test_redis_answers_and_keeps_data_across_a_restart_through_its_append_only_file(
    data: DataDir, ports: PortBook, redis_server: EmbeddedRedis
) -> None:
    url = redis_server.start()
    port = ports.remembered("redis")
    assert url == f"redis://127.0.0.1:{port}/0"
    with redis.Redis.from_url(url) as client:
        assert client.ping()
        client.set("carnet:kept", "still here")
        assert client.config_get("appendonly") == {"appendonly": "yes"}

    redis_server.stop()
    assert redis_server.running_pid() is None
    assert port is not None
    assert ping(port) is not None, "nothing answers any more"

    restarted = EmbeddedRedis(data, PortBook(data.ports_file))
    try:
        assert restarted.start() == url, "the remembered port is reused"
        with redis.Redis.from_url(url) as client:
            assert client.get("carnet:kept") == b"still here"
    finally:
        restarted.stop()


def test_redis_reuses_a_server_still_running_on_the_same_data_dir(
    data: DataDir, redis_server: EmbeddedRedis
) -> None:
    url = redis_server.start()
    pid = redis_server.running_pid()

    second = EmbeddedRedis(data, PortBook(data.ports_file))
    assert second.start() == url
    assert second.running_pid() == pid


def test_smtp_sink_files_each_message_as_an_eml_named_by_time_and_uuid(data: DataDir) -> None:
    sink = SmtpSink(data.mailbox, pick_free_port())
    sink.start()
    try:
        message = EmailMessage()
        message["From"] = "ne-pas-repondre@carnet.test"
        message["To"] = "camille.martin@demo.carnet.test"
        message["Subject"] = "Votre code à usage unique"
        message.set_content("Code : 123456\n")
        with smtplib.SMTP(LOOPBACK, sink.port, timeout=10) as client:
            client.send_message(
                message, to_addrs=["camille.martin@demo.carnet.test", "bcc@demo.carnet.test"]
            )
    finally:
        sink.stop()

    files = sorted(data.mailbox.iterdir())
    assert [MAILBOX_NAME.match(f.name) is not None for f in files] == [True], files
    received = email.message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert received["Subject"] == "Votre code à usage unique"
    assert received["Return-Path"] == "<ne-pas-repondre@carnet.test>"
    assert received.get_all("Delivered-To") == [
        "camille.martin@demo.carnet.test",
        "bcc@demo.carnet.test",
    ]
    body = received.get_body()
    assert body is not None
    assert "Code : 123456" in body.get_content()


def test_smtp_sink_reports_a_port_already_in_use(data: DataDir) -> None:
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        sink = SmtpSink(data.mailbox, squatter.getsockname()[1])
        with pytest.raises(InfraError, match="SMTP sink cannot listen"):
            sink.start()


def test_port_book_remembers_a_port_and_replaces_it_only_when_taken(data: DataDir) -> None:
    book = PortBook(data.ports_file)
    first = book.choose("redis")
    assert PortBook(data.ports_file).choose("redis") == first, "second start, same port"

    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, first))
        squatter.listen()
        assert not port_is_free(first)
        moved = PortBook(data.ports_file).choose("redis")
    assert moved != first
    assert PortBook(data.ports_file).remembered("redis") == moved


def test_port_book_never_hands_out_a_port_promised_to_a_service(data: DataDir) -> None:
    book = PortBook(data.ports_file)
    promised = book.choose("smtp")
    assert book.choose("smtp", avoid=[promised]) != promised
    assert book.choose("redis", avoid=[promised]) != promised


def test_port_book_survives_a_damaged_file(data: DataDir) -> None:
    data.ports_file.write_text("{not json")
    book = PortBook(data.ports_file)
    port = book.choose("postgres")
    assert book.remembered("postgres") == port
