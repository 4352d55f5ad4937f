"""Pure rules of notify: planning deliveries, templates, retries, paging, configuration."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from carnet_kit.config import ConfigError, load
from carnet_kit.errors import FailedPrecondition, InvalidArgument
from carnet_notify.domain import (
    Cursor,
    NotificationIntent,
    RetryPolicy,
    decode_page_token,
    encode_page_token,
    is_email_address,
    mask_email,
    new_document_intent,
    plan_deliveries,
    prepare_notification,
    visible_parameters,
)
from carnet_notify.kinds import AttemptOutcome, Channel, DeliveryState, Kind
from carnet_notify.settings import NotifySettings
from carnet_notify.templates import TEMPLATES, render_email


def test_backoff_doubles_up_to_its_ceiling_and_attempts_are_bounded() -> None:
    policy = RetryPolicy(max_attempts=5, initial_seconds=30, max_seconds=100)
    assert [policy.delay(n) for n in range(1, 5)] == [30, 60, 100, 100]
    assert policy.after(AttemptOutcome.TRANSIENT_FAILURE, 1) == (DeliveryState.RETRYING, 30)
    assert policy.after(AttemptOutcome.TRANSIENT_FAILURE, 5) == (DeliveryState.FAILED, None)
    assert policy.after(AttemptOutcome.PERMANENT_FAILURE, 1) == (DeliveryState.FAILED, None)
    assert policy.after(AttemptOutcome.SUCCEEDED, 3) == (DeliveryState.DELIVERED, None)


def test_one_time_code_email_says_the_code_and_its_validity() -> None:
    mail = render_email(Kind.ONE_TIME_CODE, {"code": "123456"})
    assert "Votre code de connexion Carnet : 123456 (valable 10 minutes)" in mail.text
    assert "<strong>123456</strong>" in mail.html
    assert '<html lang="fr">' in mail.html


def test_html_templates_escape_parameters() -> None:
    mail = render_email(Kind.ACTIVATION_NOTICE, {
        "activation_code": "<b>X</b>", "opposition_deadline": "1 mars", "first_name": "Zoé & <Léa>",
    })
    assert "<b>X</b>" not in mail.html and "&lt;b&gt;X&lt;/b&gt;" in mail.html
    assert "Zoé &amp; &lt;Léa&gt;" in mail.html
    assert mail.text.startswith("Bonjour Zoé & <Léa>,")


def test_every_template_renders_with_its_required_parameters() -> None:
    for kind, template in TEMPLATES.items():
        params = {name: f"valeur-{name}" for name in template.required}
        if template.email is not None:
            rendered = render_email(kind, params)
            assert rendered.subject and rendered.text.endswith("numérique de santé\n")


def test_new_document_without_email_goes_in_app_and_suppresses_email() -> None:
    planned = plan_deliveries(
        NotificationIntent(recipient_id="p1", kind=Kind.NEW_DOCUMENT, parameters={"document_title": "CR"})
    )
    assert [(d.channel, d.state) for d in planned] == [
        (Channel.IN_APP, DeliveryState.PENDING),
        (Channel.EMAIL, DeliveryState.SUPPRESSED),
    ]


def test_one_time_code_cannot_go_to_the_inbox() -> None:
    intent = NotificationIntent(recipient_id="p1", kind=Kind.ONE_TIME_CODE, channels=(Channel.IN_APP,),
                                parameters={"code": "1"}, email="a@b.fr")
    with pytest.raises(InvalidArgument) as raised:
        plan_deliveries(intent)
    assert raised.value.metadata["field"] == "notification.channels"


def test_kind_without_templates_yet_is_refused_naming_the_kind() -> None:
    with pytest.raises(InvalidArgument) as raised:
        plan_deliveries(NotificationIntent(recipient_id="p1", kind=Kind.NEW_IMAGING_STUDY, email="a@b.fr"))
    assert raised.value.metadata["field"] == "notification.kind"


def test_unspecified_kind_and_missing_recipient_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="kind"):
        plan_deliveries(NotificationIntent(recipient_id="p1", kind=None))
    with pytest.raises(InvalidArgument, match="recipient_id"):
        plan_deliveries(NotificationIntent(recipient_id=" ", kind=Kind.ONE_TIME_CODE))


def test_nowhere_to_send_is_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition) as raised:
        plan_deliveries(NotificationIntent(recipient_id="p1", kind=Kind.ONE_TIME_CODE, parameters={"code": "1"}))
    assert raised.value.reason == "NO_DELIVERY_CHANNEL"


def test_holder_is_not_told_of_documents_invisible_to_them_or_of_their_own() -> None:
    common = {"holder_id": "p1", "document_id": "d1", "title": "CR", "event_id": str(uuid.uuid4())}
    assert new_document_intent(**common, invisible_to_holder=True, holder_own=False) is None
    assert new_document_intent(**common, invisible_to_holder=False, holder_own=True) is None
    intent = new_document_intent(**common, invisible_to_holder=False, holder_own=False)
    assert intent is not None
    prepared = prepare_notification(intent)
    assert prepared.inbox_item is not None and prepared.inbox_item.title == "Nouveau document dans votre dossier"


def test_secret_parameters_are_masked_when_shown() -> None:
    assert visible_parameters({"code": "123456", "document_title": "CR"}) == {"code": "******", "document_title": "CR"}


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("camille.martin@demo.carnet.test", True),
        ("a+tag@example.org", True),
        ("no-at-sign.example.org", False),
        ("a@b", False),
        ("a@b.fr\r\nBcc: x@y.z", False),
        ("Camille <c@d.fr>", False),
    ],
)
def test_email_addresses_are_single_plain_mailboxes(address: str, valid: bool) -> None:
    assert is_email_address(address) is valid


def test_masked_email_keeps_the_first_letter_and_the_domain() -> None:
    assert mask_email("camille.martin@demo.carnet.test") == "c***@demo.carnet.test"


def test_page_token_round_trips_and_is_bound_to_its_query() -> None:
    cursor = Cursor(datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())
    token = encode_page_token(cursor, "inbox|p1|False")
    assert decode_page_token(token, "inbox|p1|False") == cursor
    assert decode_page_token("", "inbox|p1|False") is None
    with pytest.raises(InvalidArgument):
        decode_page_token(token, "inbox|p2|False")


BASE_ENV = {
    "CARNET_GRPC_LISTEN": "127.0.0.1:50055",
    "CARNET_DATABASE_URL": "postgresql://postgres@127.0.0.1/carnet",
    "CARNET_REDIS_URL": "redis://127.0.0.1:6379/0",
    "CARNET_SMTP_HOST": "127.0.0.1",
    "CARNET_SMTP_PORT": "2525",
    "CARNET_MAIL_FROM": "ne-pas-repondre@carnet.test",
    "CARNET_MASTER_KEY_FILE": "/run/secrets/master-keys",
    "CARNET_SERVICE_SECRET_FILE": "/run/secrets/service-secret",
    "CARNET_BLOB_DIR": "/var/lib/carnet/notify",
}


def test_settings_load_from_the_environment() -> None:
    settings = load(NotifySettings, BASE_ENV)
    assert settings.smtp_port == 2525 and settings.mail_from == "ne-pas-repondre@carnet.test"
    assert settings.dossier_events_stream == "carnet:events:dossier"
    assert settings.max_attachment_bytes == 10 * 1024 * 1024 and settings.blob_store == "fs"


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"CARNET_SMTP_HOST": None}, "CARNET_SMTP_HOST"),
        ({"CARNET_MAIL_FROM": "Carnet"}, "CARNET_MAIL_FROM"),
        ({"CARNET_SMTP_PORT": "70000"}, "CARNET_SMTP_PORT"),
        ({"CARNET_MAX_DELIVERY_ATTEMPTS": "0"}, "CARNET_MAX_DELIVERY_ATTEMPTS"),
        ({"CARNET_SMTP_USERNAME": "relay"}, "CARNET_SMTP_PASSWORD"),
        ({"CARNET_MASTER_KEY_FILE": None}, "CARNET_MASTER_KEY_FILE"),
        ({"CARNET_BLOB_DIR": None}, "CARNET_BLOB_DIR"),
        ({"CARNET_MAX_ATTACHMENT_BYTES": "10"}, "CARNET_MAX_ATTACHMENT_BYTES"),
        ({"CARNET_SERVICE_SECRET_FILE": None}, "CARNET_SERVICE_SECRET_FILE"),
        ({"CARNET_PREVENTION_RUN_HOUR": "24"}, "CARNET_PREVENTION_RUN_HOUR"),
        ({"CARNET_DELIVERY_LEASE_SECONDS": "5"}, "CARNET_DELIVERY_LEASE_SECONDS"),
        ({"CARNET_PREVENTION_CHECK_SECONDS": "0"}, "CARNET_PREVENTION_CHECK_SECONDS"),
    ],
)
def test_bad_settings_name_the_variable(change: dict[str, str | None], variable: str) -> None:
    env = {**BASE_ENV, **{k: v for k, v in change.items() if v is not None}}
    for key, value in change.items():
        if value is None:
            env.pop(key)
    with pytest.raises(ConfigError) as raised:
        load(NotifySettings, env)
    assert raised.value.variable == variable
