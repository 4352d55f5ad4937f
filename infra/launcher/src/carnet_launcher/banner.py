"""The text printed once the platform is up: where everything is, and who can log in."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from . import demo
from .config import SERVICES, Backends, Settings
from .ports import dial_address


def _table(rows: Sequence[Sequence[str]], indent: str = "    ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (
            indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def demo_accounts(activation_codes: Mapping[str, str], codes_file: str = "") -> list[str]:
    """The demo population as aligned text lines."""
    holders: list[list[str]] = [["NAME", "NIR", "LOGIN", "STATE"]]
    for holder in demo.HOLDERS:
        login = holder.email if holder.password else "-"
        state = holder.note or holder.status
        if holder.status == "notified":
            code = activation_codes.get(holder.nir)
            if code:
                state += f"; activation code {code}"
            elif codes_file:
                state += f"; activation code not found in {codes_file}"
        holders.append([holder.display_name, holder.nir, login, state])
    professionals: list[list[str]] = [["NAME", "PROFESSION", "RPPS", "LOGIN", "NOTE"]]
    for pro in demo.PROFESSIONALS:
        note = "; ".join(part for part in (pro.organisation, pro.note) if part)
        professionals.append([pro.display_name, pro.profession, pro.rpps, pro.email, note])
    clients: list[list[str]] = [["CLIENT ID", "SECRET", "SCOPES", "DICOM AE"]]
    for client in demo.CLIENTS:
        clients.append(
            [client.client_id, client.secret, " ".join(client.scopes), client.ae_title or "-"]
        )
    return [
        f"Demo accounts (password {demo.PASSWORD}; log in with e-mail, NIR or RPPS)",
        "  Holders",
        *_table(holders),
        "  Professionals",
        *_table(professionals),
        "  Software clients (OAuth2 client credentials at /oauth/token)",
        *_table(clients),
    ]


def _lines(pairs: Iterable[tuple[str, str]]) -> list[str]:
    pairs = list(pairs)
    width = max(len(label) for label, _ in pairs)
    return [f"  {label.ljust(width)}  {value}" for label, value in pairs]


def banner(
    settings: Settings,
    backends: Backends,
    activation_codes: Mapping[str, str],
    *,
    seeded: bool,
) -> str:
    """The full start-up banner."""
    url = settings.gateway_url
    mail = f"{backends.smtp_host}:{backends.smtp_port}"
    if settings.runs_smtp_sink:
        mail += f" (sink, files in {settings.mailbox_dir})"
    traces: list[tuple[str, str]] = []
    if backends.traces_endpoint:
        traces.append(("OTLP traces", f"{backends.traces_endpoint} (launcher, every process)"))
    elif settings.user_traces_endpoint:
        traces.append(("OTLP traces", f"{settings.user_traces_endpoint} (OTEL_EXPORTER_OTLP_*)"))
    lines = [
        f"Carnet is running (embedded profile, data in {settings.data.root})",
        "",
        *_lines(
            [
                ("Gateway", url),
                ("OpenAPI", f"{url}/api/v1/openapi.json"),
                ("API docs", f"{url}/api/v1/docs"),
                ("Mailbox", f"{url}/dev/mailbox"),
                ("Traces", f"{url}/debug/traces"),
                *traces,
                *(
                    (f"gRPC {s.name}", dial_address(settings.service_addrs[s.name]))
                    for s in SERVICES
                ),
                (
                    "DICOM",
                    f"{dial_address(settings.dicom_listen)}  AE title {settings.dicom_ae_title}",
                ),
                ("PostgreSQL", backends.database_url),
                ("Redis", backends.redis_url),
                ("SMTP", mail),
                ("Logs", os.fspath(settings.data.logs)),
            ]
        ),
        "",
    ]
    if seeded:
        lines += demo_accounts(activation_codes, os.fspath(settings.activation_codes_file))
    else:
        lines.append("Demo population not seeded (--no-seed).")
    lines += ["", "Ctrl-C stops everything; data stays in " + os.fspath(settings.data.root)]
    return "\n".join(lines)
