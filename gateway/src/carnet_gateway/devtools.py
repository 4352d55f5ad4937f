"""Development-only pages: the local mailbox (embedded profile) and recent traces (not in production)."""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import grpc
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from opentelemetry import trace as otel_trace
from starlette.exceptions import HTTPException as StarletteHTTPException

from carnet_gateway.problems import problem
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


# --- /debug/traces -------------------------------------------------------------------------

TRACES_QUERY_METHOD = "/carnet_launcher.DevTraces/Query"
"""Served by the launcher's trace collector (``carnet_launcher.traces``): JSON in, JSON out."""
TRACES_QUERY_TIMEOUT = 3.0
TRACES_DEFAULT = 50
TRACES_MAX = 500
SELF_ROOT = "GET /debug/traces"
"""Root span of this page's own requests: left out of the list, or it would fill it."""
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_GRPC_OPTIONS = [
    ("grpc.enable_http_proxy", 0),  # loopback only; a proxy from the environment must not interfere
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


class TracesUnavailable(Exception):
    """The launcher's trace collector could not be asked."""


def _number(value: object) -> int:
    return value if isinstance(value, int) else 0


def _tree_order(spans: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Spans depth first, each with its depth; siblings by start time; orphans as roots."""
    ids = {span["span_id"] for span in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    roots: list[dict[str, Any]] = []
    for span in sorted(spans, key=lambda s: (_number(s.get("start_ns")), str(s.get("name", "")))):
        parent = span.get("parent_span_id") or ""
        if parent and parent in ids and parent != span["span_id"]:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    ordered: list[tuple[dict[str, Any], int]] = []
    seen: set[int] = set()
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        span, depth = stack.pop()
        if id(span) in seen:
            continue
        seen.add(id(span))
        ordered.append((span, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(span["span_id"], [])))
    # A parent cycle (malformed ids) leaves spans unreached: show them last, flat.
    ordered.extend((span, 0) for span in spans if id(span) not in seen)
    return ordered


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trace_view(trace_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """One trace: its root, services, start, duration, and its spans indented by parent."""
    ordered = _tree_order(spans)
    start = min((_number(s.get("start_ns")) for s in spans), default=0)
    end = max((_number(s.get("end_ns")) for s in spans), default=start)
    true_roots = [span for span, _ in ordered if not span.get("parent_span_id")]
    root = true_roots[0] if true_roots else ordered[0][0]
    return {
        "trace_id": trace_id,
        "root": root.get("name", ""),
        "root_service": root.get("service", ""),
        "services": sorted({str(s.get("service", "")) for s in spans}),
        "start": _iso(start),
        "start_ns": start,
        "duration_ms": round((end - start) / 1e6, 3),
        "span_count": len(spans),
        "error_count": sum(1 for s in spans if s.get("status") == "ERROR"),
        # No span without a parent yet: the root (often the gateway's, the last to end) is missing.
        "partial": not true_roots,
        "spans": [
            {
                **span,
                "depth": depth,
                "offset_ms": round((_number(span.get("start_ns")) - start) / 1e6, 3),
                "duration_ms": round((_number(span.get("end_ns")) - _number(span.get("start_ns"))) / 1e6, 3),
            }
            for span, depth in ordered
        ],
    }


def group_traces(
    spans: list[dict[str, Any]], *, limit: int = TRACES_DEFAULT, trace_id: str = "", exclude: str = ""
) -> list[dict[str, Any]]:
    """Spans grouped by trace, newest trace first; this page's own traces left out unless asked for.

    ``exclude`` is a trace to leave out too (the current request's, whose spans may have
    been exported before its root).
    """
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        if not trace_id or span.get("trace_id") == trace_id:
            by_trace.setdefault(str(span.get("trace_id", "")), []).append(span)
    traces = [trace_view(tid, group) for tid, group in by_trace.items()]
    if not trace_id:
        traces = [t for t in traces if t["root"] != SELF_ROOT and t["trace_id"] != exclude]
    traces.sort(key=lambda t: int(t["start_ns"]), reverse=True)
    return traces[:limit]


def _grpc_target(url: str) -> str:
    parts = urlsplit(url if "//" in url else f"//{url}")
    return parts.netloc or url


async def query_launcher(url: str, *, trace_id: str, limit: int, exclude: str = "") -> dict[str, Any]:
    """Ask the launcher's collector for the spans of the newest ``limit`` traces (or one trace)."""
    request = {"trace_id": trace_id, "limit": limit, "exclude_roots": [SELF_ROOT], "exclude_traces": [exclude] if exclude else []}
    try:
        async with grpc.aio.insecure_channel(_grpc_target(url), options=_GRPC_OPTIONS) as channel:
            query: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(TRACES_QUERY_METHOD)
            reply = await query(json.dumps(request).encode(), timeout=TRACES_QUERY_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        raise TracesUnavailable(f"the launcher's trace collector at {url} did not answer: {exc.code().name} {exc.details() or ''}".rstrip()) from None
    try:
        body = json.loads(reply)
    except (TypeError, ValueError):
        raise TracesUnavailable(f"the launcher's trace collector at {url} sent a malformed reply") from None
    if not isinstance(body, dict) or not isinstance(body.get("spans"), list):
        raise TracesUnavailable(f"the launcher's trace collector at {url} sent a malformed reply")
    return body


def _ms(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else ""


def _details(span: dict[str, Any]) -> str:
    extra = {
        key: span[key]
        for key in ("attributes", "events", "links", "status_message", "scope")
        if span.get(key)
    }
    if not extra:
        return ""
    text = html.escape(json.dumps(extra, indent=2, ensure_ascii=False, default=str))
    return f"<details><summary>détails</summary><pre>{text}</pre></details>"


def _trace_html(trace: dict[str, Any]) -> str:
    total = float(trace["duration_ms"]) or 1.0
    rows = []
    for span in trace["spans"]:
        left = min(max(float(span["offset_ms"]) / total * 100, 0.0), 100.0)
        width = min(max(float(span["duration_ms"]) / total * 100, 0.5), 100.0 - left)
        status = str(span.get("status", ""))
        rows.append(
            "<tr{cls}><td style='padding-left:{pad}em'>{name}{details}</td><td>{service}</td><td>{kind}</td>"
            "<td>{status}</td><td class=n>{offset}</td><td class=n>{duration}</td>"
            "<td class=t><div class=bar style='margin-left:{left:.2f}%;width:{width:.2f}%'></div></td></tr>".format(
                cls=" class=err" if status == "ERROR" else "",
                pad=0.4 + 1.25 * int(span["depth"]),
                name=html.escape(str(span.get("name", ""))),
                details=_details(span),
                service=html.escape(str(span.get("service", ""))),
                kind=html.escape(str(span.get("kind", ""))),
                status=html.escape(status),
                offset=_ms(span.get("offset_ms")),
                duration=_ms(span.get("duration_ms")),
                left=left,
                width=width,
            )
        )
    trace_id = html.escape(str(trace["trace_id"]))
    partial = " — incomplète (racine pas encore reçue)" if trace["partial"] else ""
    return (
        f"<section><h2><a href='?trace_id={trace_id}'>{html.escape(str(trace['root']))}</a></h2>"
        f"<p><code>{trace_id}</code> — {html.escape(', '.join(trace['services']))} — "
        f"{html.escape(str(trace['start']))} — {_ms(trace['duration_ms'])} ms — "
        f"{trace['span_count']} spans{partial}</p>"
        "<table><thead><tr><th>span</th><th>service</th><th>type</th><th>statut</th>"
        "<th>début (ms)</th><th>durée (ms)</th><th>chronologie</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _traces_html(body: dict[str, Any]) -> str:
    traces: list[dict[str, Any]] = body["traces"]
    source = {
        "launcher": "tous les processus (collecteur du lanceur)",
        "memory": "la passerelle seule (mémoire)",
        "otlp": "aucune : les spans partent vers le collecteur OTLP configuré",
    }.get(str(body["exporter"]), str(body["exporter"]))
    trace_id = html.escape(str(body.get("trace_id") or ""))
    empty = "<p>Aucune trace.</p>" if body["exporter"] != "otlp" else f"<p>{html.escape(str(body.get('detail', '')))}</p>"
    return (
        "<!doctype html><html lang=fr><meta charset=utf-8><title>Carnet — traces récentes</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse;width:100%}"
        "td,th{border-bottom:1px solid #ddd;padding:.15em .4em;text-align:left;vertical-align:top;font-size:90%}"
        "td.n{text-align:right;font-variant-numeric:tabular-nums}td.t{width:25%}"
        ".bar{background:#4a7bd0;height:.8em;min-width:1px}tr.err td{color:#b00}tr.err .bar{background:#b00}"
        "section{margin-bottom:2em}pre{font-size:85%;white-space:pre-wrap}</style>"
        f"<h1>Traces récentes ({len(traces)})</h1><p>Source : {html.escape(source)}</p>"
        f"<form><label>trace id <input name=trace_id size=34 value='{trace_id}'></label> "
        "<button>filtrer</button> <a href='?'>toutes</a></form>"
        f"{''.join(_trace_html(t) for t in traces) or empty}</html>"
    )


@router.get("/debug/traces")
async def traces(
    request: Request,
    trace_id: str = "",
    limit: Annotated[int, Query(ge=1, le=TRACES_MAX)] = TRACES_DEFAULT,
) -> Response:
    """Recent traces, newest first (not in production): every process's when run by the launcher.

    With ``CARNET_DEV_TRACES_URL`` (set by the launcher), spans come from the launcher's
    collector, which every process exports to; otherwise from this process's in-memory ring.
    JSON, or HTML when the client asks for ``text/html`` (``?format=json|html`` forces one).
    """
    settings = request.app.state.settings
    if settings.profile == "production":
        raise StarletteHTTPException(status_code=404)
    trace_id = trace_id.strip().lower()
    if trace_id and not _TRACE_ID.fullmatch(trace_id):
        return problem(400, "trace_id must be 32 hexadecimal digits", reason="INVALID_TRACE_ID", extra={"field": "trace_id"})
    # This very request is traced: its spans are not worth listing.
    current = otel_trace.get_current_span().get_span_context()
    own = format(current.trace_id, "032x") if current.is_valid else ""
    body: dict[str, Any]
    if settings.dev_traces_url:
        try:
            collected = await query_launcher(settings.dev_traces_url, trace_id=trace_id, limit=limit, exclude=own)
        except TracesUnavailable as exc:
            return problem(503, str(exc), reason="TRACES_UNAVAILABLE")
        body = {
            "exporter": "launcher",
            "collector": {key: collected.get(key) for key in ("capacity", "held", "received")},
            "traces": group_traces(collected["spans"], limit=limit, trace_id=trace_id, exclude=own),
        }
    elif (ring := span_ring()) is not None:
        spans = [span_to_dict(span) for span in ring.spans()]
        body = {"exporter": "memory", "traces": group_traces(spans, limit=limit, trace_id=trace_id, exclude=own)}
    else:
        body = {
            "exporter": "otlp",
            "detail": "spans are exported to the OTLP collector set by OTEL_EXPORTER_OTLP_*; look there (Jaeger, Tempo…)",
            "traces": [],
        }
    body["trace_id"] = trace_id or None
    wanted = request.query_params.get("format")
    if wanted == "html" or (wanted != "json" and "text/html" in request.headers.get("accept", "")):
        return HTMLResponse(_traces_html(body))
    return JSONResponse(body)
