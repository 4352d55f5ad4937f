"""French templates per notification kind: e-mail (subject, text, HTML), SMS, push and inbox item.

E-mails, SMS and push messages never carry clinical content (a document's title stays
in the inbox, behind the login); one-time and activation codes are the only secrets
they carry. SMS and push texts are short, without names: they show on lock screens.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from carnet_notify.kinds import Kind

SIGNATURE = "Carnet — votre espace numérique de santé"


@dataclass(frozen=True)
class RenderedEmail:
    """An e-mail ready to send."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class RenderedPush:
    """A push notification ready to send: what the phone shows."""

    title: str
    body: str


@dataclass(frozen=True)
class RenderedInboxItem:
    """An inbox item ready to store."""

    title: str
    body: str


Params = Mapping[str, str]


@dataclass(frozen=True)
class Template:
    """The templates of one kind and the parameters they need."""

    required: tuple[str, ...]
    defaults: Mapping[str, str] = field(default_factory=dict)
    email: Callable[[Params], RenderedEmail] | None = None
    inbox: Callable[[Params], RenderedInboxItem] | None = None
    sms: Callable[[Params], str] | None = None
    push: Callable[[Params], RenderedPush] | None = None


def _html_page(title: str, paragraphs: list[str]) -> str:
    body = "\n".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    return (
        '<!DOCTYPE html>\n<html lang="fr">\n<head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n"
        f'<body style="font-family: sans-serif; line-height: 1.5">\n{body}\n'
        f'<p style="color: #555">{html.escape(SIGNATURE)}</p>\n</body>\n</html>\n'
    )


def _greeting(params: Params) -> str:
    first_name = params.get("first_name", "").strip()
    return f"Bonjour {first_name}," if first_name else "Bonjour,"


def _one_time_code_email(params: Params) -> RenderedEmail:
    code, minutes = params["code"], params["validity_minutes"]
    subject = "Votre code de connexion Carnet"
    line = f"Votre code de connexion Carnet : {code} (valable {minutes} minutes)"
    warning = "Ce code est personnel : ne le communiquez à personne, pas même à un agent de Carnet."
    unsolicited = "Si vous n'êtes pas à l'origine de cette demande, ignorez ce message et changez votre mot de passe."
    text = f"{_greeting(params)}\n\n{line}\n\n{warning}\n{unsolicited}\n\n{SIGNATURE}\n"
    page = _html_page(
        subject,
        [
            html.escape(_greeting(params)),
            f"Votre code de connexion Carnet : <strong>{html.escape(code)}</strong>"
            f" (valable {html.escape(minutes)} minutes)",
            html.escape(warning),
            html.escape(unsolicited),
        ],
    )
    return RenderedEmail(subject, text, page)


def _activation_notice_email(params: Params) -> RenderedEmail:
    code, deadline = params["activation_code"], params["opposition_deadline"]
    subject = "Votre espace numérique de santé Carnet va être créé"
    created = "Votre espace numérique de santé Carnet va être créé."
    how = (
        "Pour l'activer dès maintenant, connectez-vous à Carnet avec votre numéro de sécurité sociale,"
        " votre date de naissance et ce code d'activation provisoire :"
    )
    oppose = (
        f"Vous pouvez aussi vous opposer à la création de votre espace jusqu'au {deadline}."
        " Sans réponse de votre part, il sera créé automatiquement à cette date ; vous pourrez le fermer à tout moment."
    )
    text = f"{_greeting(params)}\n\n{created}\n\n{how}\n\n    {code}\n\n{oppose}\n\n{SIGNATURE}\n"
    page = _html_page(
        subject,
        [
            html.escape(_greeting(params)),
            html.escape(created),
            html.escape(how),
            f'<strong style="font-size: 1.3em; letter-spacing: 0.1em">{html.escape(code)}</strong>',
            html.escape(oppose),
        ],
    )
    return RenderedEmail(subject, text, page)


def _new_document_email(params: Params) -> RenderedEmail:
    subject = "Nouveau document dans votre espace Carnet"
    added = "Un nouveau document a été ajouté à votre dossier médical."
    how = "Pour le consulter, connectez-vous à votre espace Carnet."
    privacy = "Par confidentialité, ce message ne contient aucune information médicale."
    text = f"{_greeting(params)}\n\n{added}\n{how}\n\n{privacy}\n\n{SIGNATURE}\n"
    page = _html_page(subject, [html.escape(_greeting(params)), html.escape(added), html.escape(how), html.escape(privacy)])
    return RenderedEmail(subject, text, page)


def _one_time_code_sms(params: Params) -> str:
    return (
        f"Carnet : votre code de connexion est {params['code']} (valable {params['validity_minutes']} min)."
        " Ne le communiquez à personne."
    )


def _new_document_sms(params: Params) -> str:
    return "Carnet : un nouveau document a été ajouté à votre espace. Connectez-vous pour le consulter."


def _new_document_push(params: Params) -> RenderedPush:
    return RenderedPush(title="Carnet", body="Un nouveau document a été ajouté à votre espace.")


def _new_document_inbox(params: Params) -> RenderedInboxItem:
    return RenderedInboxItem(
        title="Nouveau document dans votre dossier",
        body=f"« {params['document_title']} » a été ajouté à votre dossier.",
    )


def _new_message_email(params: Params) -> RenderedEmail:
    subject = "Nouveau message dans votre espace Carnet"
    arrived = "Vous avez reçu un nouveau message dans votre messagerie sécurisée Carnet."
    how = "Pour le lire, connectez-vous à votre espace Carnet."
    privacy = "Par confidentialité, ce courriel ne contient ni le message, ni son objet, ni le nom de son auteur."
    text = f"{_greeting(params)}\n\n{arrived}\n{how}\n\n{privacy}\n\n{SIGNATURE}\n"
    page = _html_page(subject, [html.escape(_greeting(params)), html.escape(arrived), html.escape(how), html.escape(privacy)])
    return RenderedEmail(subject, text, page)


def _new_message_sms(params: Params) -> str:
    return "Carnet : vous avez reçu un nouveau message sécurisé. Connectez-vous pour le lire."


def _new_message_push(params: Params) -> RenderedPush:
    return RenderedPush(title="Carnet", body="Vous avez reçu un nouveau message sécurisé.")


def _new_message_inbox(params: Params) -> RenderedInboxItem:
    return RenderedInboxItem(
        title="Nouveau message",
        body=f"Nouveau message dans la conversation « {params['thread_subject']} ».",
    )


TEMPLATES: Mapping[Kind, Template] = {
    Kind.ONE_TIME_CODE: Template(
        required=("code",), defaults={"validity_minutes": "10"}, email=_one_time_code_email, sms=_one_time_code_sms
    ),
    Kind.ACTIVATION_NOTICE: Template(
        required=("activation_code", "opposition_deadline"), email=_activation_notice_email
    ),
    Kind.NEW_DOCUMENT: Template(
        required=("document_title",),
        email=_new_document_email,
        inbox=_new_document_inbox,
        sms=_new_document_sms,
        push=_new_document_push,
    ),
    # The conversation's subject stays in the inbox, behind the login; the message's text goes nowhere.
    Kind.NEW_MESSAGE: Template(
        required=("thread_subject",),
        email=_new_message_email,
        inbox=_new_message_inbox,
        sms=_new_message_sms,
        push=_new_message_push,
    ),
}
"""The kinds notify can send today; issue 4 adds the others of NotificationKind."""


def missing_parameters(kind: Kind, params: Params) -> list[str]:
    """Required parameters of ``kind`` absent or blank in ``params``."""
    template = TEMPLATES[kind]
    return [name for name in template.required if not params.get(name, "").strip()]


def _complete(template: Template, params: Params) -> dict[str, str]:
    return {**template.defaults, **{key: value for key, value in params.items() if value.strip()}}


def render_email(kind: Kind, params: Params) -> RenderedEmail:
    """The e-mail of a kind; KeyError if the kind has no e-mail template or a parameter is missing."""
    template = TEMPLATES[kind]
    if template.email is None:
        raise KeyError(f"{kind.value} has no e-mail template")
    return template.email(_complete(template, params))


def render_letter(kind: Kind, params: Params) -> RenderedEmail:
    """The printed letter of a kind: the e-mail's subject and plain text, for the print queue."""
    return render_email(kind, params)


def render_sms(kind: Kind, params: Params) -> str:
    """The SMS text of a kind; KeyError if the kind has no SMS template or a parameter is missing."""
    template = TEMPLATES[kind]
    if template.sms is None:
        raise KeyError(f"{kind.value} has no SMS template")
    return template.sms(_complete(template, params))


def render_push(kind: Kind, params: Params) -> RenderedPush:
    """The push notification of a kind; KeyError if the kind has no push template or a parameter is missing."""
    template = TEMPLATES[kind]
    if template.push is None:
        raise KeyError(f"{kind.value} has no push template")
    return template.push(_complete(template, params))


def render_inbox_item(kind: Kind, params: Params) -> RenderedInboxItem:
    """The inbox item of a kind; KeyError if the kind has no inbox template or a parameter is missing."""
    template = TEMPLATES[kind]
    if template.inbox is None:
        raise KeyError(f"{kind.value} has no inbox template")
    return template.inbox(_complete(template, params))
