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
    if params.get("announced") == "true":
        return RenderedInboxItem(
            title="Nouveau document dans votre dossier",
            body="Un document de votre dossier vous est désormais accessible, après son annonce.",
        )
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


def _plain_email(subject: str, params: Params, lines: list[str]) -> RenderedEmail:
    """An e-mail of a greeting, some lines (each its own paragraph) and the signature; parameters escaped in HTML."""
    text = f"{_greeting(params)}\n\n" + "\n".join(lines) + f"\n\n{SIGNATURE}\n"
    page = _html_page(subject, [html.escape(_greeting(params)), *(html.escape(line) for line in lines)])
    return RenderedEmail(subject, text, page)


_PRIVACY = "Par confidentialité, ce message ne contient aucune information médicale."


def _access_line(params: Params, how: str) -> str:
    """Who accessed (role and organisation, never a name) and when; never what was read."""
    organisation = params.get("organisation", "").strip()
    where = f" ({organisation})" if organisation else ""
    return f"{how} par un {params['actor_role']}{where} le {params['access_time']}."


def _break_glass_email(params: Params) -> RenderedEmail:
    return _plain_email(
        "Accès en urgence à votre espace Carnet",
        params,
        [
            _access_line(params, "Votre dossier médical a été consulté en urgence (accès « bris de glace »)"),
            "Le détail de cet accès figure dans l'historique des accès de votre espace Carnet.",
            "Si cet accès vous semble injustifié, vous pouvez le signaler depuis votre espace.",
            _PRIVACY,
        ],
    )


def _break_glass_sms(params: Params) -> str:
    return "Carnet : votre dossier a été consulté en urgence. Connectez-vous pour voir le détail de cet accès."


def _break_glass_push(params: Params) -> RenderedPush:
    return RenderedPush(title="Carnet", body="Votre dossier a été consulté en urgence.")


def _break_glass_inbox(params: Params) -> RenderedInboxItem:
    holder = params.get("holder_id", "")
    if params.get("audience") == "treating_physician":
        return RenderedInboxItem(
            title="Accès en urgence au dossier d'un de vos patients",
            body=_access_line(params, f"Le dossier de votre patient ({holder}) a été consulté en urgence"),
        )
    return RenderedInboxItem(
        title="Accès en urgence à votre dossier",
        body=_access_line(params, "Votre dossier a été consulté en urgence"),
    )


def _new_organisation_email(params: Params) -> RenderedEmail:
    return _plain_email(
        "Nouvel accès à votre espace Carnet",
        params,
        [
            _access_line(params, "Un établissement ou cabinet a accédé pour la première fois à votre dossier médical"),
            "Vous pouvez consulter l'historique des accès et bloquer un professionnel depuis votre espace Carnet.",
            _PRIVACY,
        ],
    )


def _new_organisation_sms(params: Params) -> str:
    return "Carnet : un nouvel établissement a accédé à votre dossier. Connectez-vous pour voir le détail."


def _new_organisation_push(params: Params) -> RenderedPush:
    return RenderedPush(title="Carnet", body="Un nouvel établissement a accédé à votre dossier.")


def _new_organisation_inbox(params: Params) -> RenderedInboxItem:
    return RenderedInboxItem(
        title="Nouvel accès à votre dossier",
        body=_access_line(params, "Un établissement a accédé pour la première fois à votre dossier"),
    )


def _agenda_reminder_email(params: Params) -> RenderedEmail:
    return _plain_email(
        "Rappel de votre agenda Carnet",
        params,
        [
            f"Vous avez un événement prévu dans votre agenda le {params['start_time']}.",
            "Pour en voir le détail, connectez-vous à votre espace Carnet.",
            _PRIVACY,
        ],
    )


def _agenda_reminder_sms(params: Params) -> str:
    return f"Carnet : rappel, un événement de votre agenda est prévu le {params['start_time']}."


def _agenda_reminder_push(params: Params) -> RenderedPush:
    return RenderedPush(title="Carnet", body=f"Rappel : un événement de votre agenda le {params['start_time']}.")


def _agenda_reminder_inbox(params: Params) -> RenderedInboxItem:
    title = params.get("agenda_title", "").strip()
    what = f"« {title} »" if title else "Un événement de votre agenda"
    return RenderedInboxItem(title="Rappel de votre agenda", body=f"{what} est prévu le {params['start_time']}.")


def _prevention_email(params: Params) -> RenderedEmail:
    return _plain_email(
        "Un rappel de prévention vous attend sur Carnet",
        params,
        [
            "Un rappel de prévention adapté à votre âge vous attend dans votre espace Carnet"
            " (bilan de prévention, dépistage ou vaccination, selon le calendrier national).",
            "Pour en voir le détail, connectez-vous à votre espace Carnet.",
            _PRIVACY,
        ],
    )


def _prevention_sms(params: Params) -> str:
    return "Carnet : un rappel de prévention vous attend dans votre espace."


def _prevention_push(params: Params) -> RenderedPush:
    return RenderedPush(title="Carnet", body="Un rappel de prévention vous attend dans votre espace.")


def _prevention_inbox(params: Params) -> RenderedInboxItem:
    return RenderedInboxItem(
        title="Rappel de prévention",
        body=f"{params['detail']}. Parlez-en à votre médecin traitant.",
    )


def _closure_email(params: Params) -> RenderedEmail:
    return _plain_email(
        "Fermeture de votre espace Carnet",
        params,
        [
            f"Nous vous confirmons la fermeture de votre espace numérique de santé Carnet le {params['closure_time']}.",
            "Vos données sont archivées et conservées pendant dix ans, sauf demande de suppression de votre part.",
            "Si vous n'êtes pas à l'origine de cette fermeture, contactez sans attendre le service d'assistance Carnet.",
        ],
    )


def _closure_inbox(params: Params) -> RenderedInboxItem:
    return RenderedInboxItem(
        title="Fermeture de votre espace",
        body=f"Votre espace Carnet a été fermé le {params['closure_time']}.",
    )


def _opposition_receipt_email(params: Params) -> RenderedEmail:
    return _plain_email(
        "Accusé de réception de votre opposition",
        params,
        [
            "Votre opposition a bien été enregistrée.",
            f"Numéro d'accusé de réception : {params['receipt_number']}",
            "Conservez ce numéro : il vous sera demandé pour toute réclamation.",
        ],
    )


def _opposition_receipt_inbox(params: Params) -> RenderedInboxItem:
    return RenderedInboxItem(
        title="Opposition enregistrée",
        body=f"Votre opposition a été enregistrée (accusé de réception n° {params['receipt_number']}).",
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
    # Break-glass and new-organisation texts say who (role, organisation) and when; never what was read.
    Kind.BREAK_GLASS_ACCESS: Template(
        required=("actor_role", "access_time"),
        email=_break_glass_email,
        inbox=_break_glass_inbox,
        sms=_break_glass_sms,
        push=_break_glass_push,
    ),
    Kind.NEW_ORGANISATION_ACCESS: Template(
        required=("actor_role", "access_time"),
        email=_new_organisation_email,
        inbox=_new_organisation_inbox,
        sms=_new_organisation_sms,
        push=_new_organisation_push,
    ),
    # The agenda event's title stays in the inbox: it may say what the appointment is for.
    Kind.AGENDA_REMINDER: Template(
        required=("start_time",),
        email=_agenda_reminder_email,
        inbox=_agenda_reminder_inbox,
        sms=_agenda_reminder_sms,
        push=_agenda_reminder_push,
    ),
    # Which screening or vaccination is due (it tells age and sex) stays in the inbox.
    Kind.PREVENTION_REMINDER: Template(
        required=("detail",),
        email=_prevention_email,
        inbox=_prevention_inbox,
        sms=_prevention_sms,
        push=_prevention_push,
    ),
    Kind.CLOSURE_CONFIRMATION: Template(required=("closure_time",), email=_closure_email, inbox=_closure_inbox),
    Kind.OPPOSITION_RECEIPT: Template(
        required=("receipt_number",), email=_opposition_receipt_email, inbox=_opposition_receipt_inbox
    ),
}
"""The kinds notify can send today; the others of NotificationKind come later."""


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
