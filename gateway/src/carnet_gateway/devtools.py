"""Development-only pages: the local mailbox (embedded profile) and recent traces."""

from __future__ import annotations

import email
import email.policy
import html
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from carnet_kit.telemetry import span_ring, span_to_dict

router = APIRouter(include_in_schema=False)

MAILBOX_LIMIT = 200


def read_mailbox(folder: Path, limit: int = MAILBOX_LIMIT) -> list[dict[str, Any]]:
    """The newest messages the local SMTP sink stored, newest first."""
    if not folder.is_dir():
        return []
    messages: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.eml"), reverse=True)[:limit]:
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        text = parsed.get_body(preferencelist=("plain",))
        messages.append(
            {
                "id": path.stem,
                "from": str(parsed.get("From", "")),
                "to": str(parsed.get("To", "")),
                "subject": str(parsed.get("Subject", "")),
                "date": str(parsed.get("Date", "")),
                "text": text.get_content() if text is not None else "",
            }
        )
    return messages


def _mailbox_html(messages: list[dict[str, Any]]) -> str:
    rows = "".join(
        "<article><h2>{subject}</h2><p><b>À :</b> {to} — <b>De :</b> {sender} — {date}</p><pre>{text}</pre></article>".format(
            subject=html.escape(m["subject"]),
            to=html.escape(m["to"]),
            sender=html.escape(m["from"]),
            date=html.escape(m["date"]),
            text=html.escape(m["text"]),
        )
        for m in messages
    )
    return (
        "<!doctype html><html lang=fr><meta charset=utf-8><title>Carnet — boîte mail locale</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}article{border-bottom:1px solid #ccc}</style>"
        f"<h1>Boîte mail locale ({len(messages)})</h1>{rows or '<p>Aucun message.</p>'}</html>"
    )


@router.get("/dev/mailbox")
async def mailbox(request: Request) -> Response:
    """Mails sent by the platform (embedded profile only): HTML, or JSON when asked."""
    settings = request.app.state.settings
    if not settings.mailbox_enabled:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    messages = read_mailbox(Path(settings.dev_mailbox_dir))
    wants_json = "application/json" in request.headers.get("accept", "") or request.query_params.get("format") == "json"
    if wants_json:
        return JSONResponse({"messages": messages})
    return HTMLResponse(_mailbox_html(messages))


@router.get("/debug/traces")
async def traces(request: Request, trace_id: str = "") -> JSONResponse:
    """Spans the gateway kept in memory (when no OTLP collector is configured)."""
    ring = span_ring()
    spans = [span_to_dict(span) for span in ring.spans()] if ring is not None else []
    if trace_id:
        spans = [span for span in spans if span["trace_id"] == trace_id]
    return JSONResponse({"exporter": "memory" if ring is not None else "otlp", "spans": spans[-500:]})
