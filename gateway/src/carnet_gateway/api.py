"""REST/JSON endpoints: OAuth2 token endpoint, JWKS, login, documents, inbox."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Form, Query, Request, Security
from fastapi.responses import JSONResponse, Response, StreamingResponse
from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import BaseModel, Field

from carnet.dossier.v1 import dossier_service_pb2 as dossier_pb
from carnet.dossier.v1 import resources_pb2 as dossier_res
from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.notify.v1 import notify_service_pb2 as notify_pb
from carnet_gateway.backends import Backends
from carnet_gateway.problems import problem
from carnet_gateway.rpc_routes import parse_timestamp
from carnet_gateway.security import Caller, authenticate, bearer_scheme
from carnet_gateway.uploads import read_deposit_form
from carnet_kit.errors import InvalidArgument

UPLOAD_CHUNK = 1024 * 1024
"""Content goes to dossier in messages of at most this size (under the 8 MiB gRPC limit): one
message for most documents, as each message costs both processes about as much as its bytes."""

router = APIRouter()


def _backends(request: Request) -> Backends:
    backends: Backends = request.app.state.backends
    return backends


async def require_caller(request: Request, credentials: Annotated[Any, Security(bearer_scheme)]) -> Caller:
    """Dependency: the authenticated caller."""
    return await authenticate(request, credentials)


CallerDep = Annotated[Caller, Depends(require_caller)]


def to_json(message: Message) -> dict[str, Any]:
    """A proto as JSON with its field names as declared (snake_case)."""
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


# --- OAuth2 (RFC 6749) -------------------------------------------------------------


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="carnet"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _token_response(tokens: identity_pb.TokenSet) -> JSONResponse:
    body: dict[str, Any] = {
        "access_token": tokens.access_token,
        "token_type": tokens.token_type or "Bearer",
        "expires_in": tokens.expires_in,
    }
    if tokens.refresh_token:
        body["refresh_token"] = tokens.refresh_token
    if tokens.scope:
        body["scope"] = tokens.scope
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


_OAUTH_ERRORS = {
    grpc.StatusCode.UNAUTHENTICATED: (401, "invalid_client"),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request"),
    grpc.StatusCode.PERMISSION_DENIED: (400, "invalid_scope"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_grant"),
}


@router.post(
    "/oauth/token",
    operation_id="create_token",
    tags=["auth"],
    summary="OAuth2 token endpoint (client_credentials and refresh_token grants)",
)
async def create_token(
    request: Request,
    grant_type: Annotated[str, Form()],
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
    refresh_token: Annotated[str | None, Form()] = None,
    acting_for: Annotated[
        str | None, Form(description="refresh_token grant: the holder (person id) to act for, as representative or helper")
    ] = None,
    organisation_id: Annotated[
        str | None, Form(description="refresh_token grant: the organisation a professional acts for")
    ] = None,
) -> Response:
    backends = _backends(request)
    try:
        if grant_type == "client_credentials":
            basic = _basic_credentials(request)
            cid, secret = basic if basic else (client_id or "", client_secret or "")
            if not cid or not secret:
                return _oauth_error(401, "invalid_client", "client authentication is required")
            tokens = await backends.identity.ExchangeClientCredentials(
                identity_pb.ExchangeClientCredentialsRequest(
                    client_id=cid, client_secret=secret, scopes=(scope or "").split()
                )
            )
        elif grant_type == "refresh_token":
            if not refresh_token:
                return _oauth_error(400, "invalid_request", "refresh_token is required")
            tokens = await backends.identity.RefreshTokens(
                identity_pb.RefreshTokensRequest(
                    refresh_token=refresh_token, acting_for=acting_for or "", organisation_id=organisation_id or ""
                )
            )
        else:
            return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    except grpc.aio.AioRpcError as error:
        mapped = _OAUTH_ERRORS.get(error.code())
        if mapped is None:
            raise
        status, code = mapped
        if grant_type == "refresh_token" and code == "invalid_client":
            status, code = 400, "invalid_grant"
        return _oauth_error(status, code, error.details() or "")
    return _token_response(tokens)


@router.get("/.well-known/jwks.json", operation_id="get_jwks", tags=["auth"], summary="Public keys of access tokens")
async def get_jwks(request: Request) -> JSONResponse:
    response = await _backends(request).identity.GetJwks(identity_pb.GetJwksRequest())
    keys = [json_format.MessageToDict(key, preserving_proto_field_name=True) for key in response.keys]
    return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=60"})


# --- Login with a one-time code -------------------------------------------------------


class LoginRequest(BaseModel):
    """First step of a login: who and the password."""

    login: str = Field(min_length=1, max_length=254, description="NIR/INS, e-mail or RPPS")
    password: str = Field(min_length=1, max_length=1024)


class OtpRequest(BaseModel):
    """Second step of a login: the one-time code received."""

    challenge_id: str = Field(min_length=1, max_length=128)
    code: str = Field(min_length=1, max_length=16)


@router.post("/api/v1/auth/login", operation_id="start_login", tags=["auth"], summary="Check the password, send a one-time code")
async def start_login(request: Request, body: LoginRequest) -> JSONResponse:
    # Identity throttles failed logins per client address as well as per account.
    address = request.client.host if request.client else ""
    response = await _backends(request).identity.StartLogin(
        identity_pb.StartLoginRequest(login=body.login, password=body.password),
        metadata=(("x-carnet-client-address", address),) if address else None,
    )
    return JSONResponse(to_json(response))


@router.post("/api/v1/auth/otp", operation_id="complete_login", tags=["auth"], summary="Exchange the one-time code for tokens")
async def complete_login(request: Request, body: OtpRequest) -> JSONResponse:
    tokens = await _backends(request).identity.CompleteLogin(
        identity_pb.CompleteLoginRequest(challenge_id=body.challenge_id, code=body.code)
    )
    return _token_response(tokens)


# --- Documents ---------------------------------------------------------------------------

_FORMATS = {
    "pdf": dossier_res.DOCUMENT_FORMAT_PDF,
    "cda_r2_structured": dossier_res.DOCUMENT_FORMAT_CDA_R2_STRUCTURED,
    "cda_r2_unstructured": dossier_res.DOCUMENT_FORMAT_CDA_R2_UNSTRUCTURED,
    "text": dossier_res.DOCUMENT_FORMAT_TEXT,
    "jpeg": dossier_res.DOCUMENT_FORMAT_JPEG,
}


def _parse_metadata(raw: str) -> dossier_res.DocumentMetadata:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"metadata is not JSON: {exc.msg}", field="metadata") from None
    if not isinstance(data, dict):
        raise InvalidArgument("metadata must be a JSON object", field="metadata")
    fmt = data.get("format")
    if isinstance(fmt, str) and fmt.lower() in _FORMATS:
        data["format"] = _FORMATS[fmt.lower()]
    try:
        return json_format.ParseDict(data, dossier_res.DocumentMetadata())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"metadata does not fit DocumentMetadata: {exc}", field="metadata") from None


_DEPOSIT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["metadata", "file"],
                "properties": {
                    "metadata": {
                        "type": "string",
                        "description": "DocumentMetadata as JSON (format: pdf, text, jpeg, cda_r2_…)",
                    },
                    "file": {"type": "string", "format": "binary", "description": "The document's content"},
                },
            }
        }
    },
}


@router.post(
    "/api/v1/documents",
    operation_id="deposit_document",
    tags=["documents"],
    status_code=201,
    summary="Deposit a document (multipart: metadata JSON + file)",
    openapi_extra={"requestBody": _DEPOSIT_BODY},
)
async def deposit_document(request: Request, caller: CallerDep) -> JSONResponse:
    form = await read_deposit_form(request)
    parsed = _parse_metadata(form.metadata)
    limit = request.app.state.settings.max_document_bytes
    if form.size is not None and form.size > limit:
        # Refused here rather than cut off by dossier mid-stream: the answer does not race the upload.
        return problem(
            413,
            f"the document exceeds the size limit of {limit} bytes",
            reason="DOCUMENT_TOO_LARGE",
            domain="gateway.carnet",
            extra={"metadata": {"limit_bytes": str(limit)}},
        )

    async def requests() -> AsyncIterator[dossier_pb.DepositDocumentRequest]:
        yield dossier_pb.DepositDocumentRequest(metadata=parsed)
        async for chunk in form.chunks(UPLOAD_CHUNK):
            yield dossier_pb.DepositDocumentRequest(chunk=chunk)

    settings = request.app.state.settings
    document = await _backends(request).dossier.DepositDocument(
        requests(), metadata=caller.metadata, timeout=settings.upload_timeout_seconds
    )
    return JSONResponse(to_json(document), status_code=201, headers={"Location": f"/api/v1/documents/{document.document_id}"})


BreakGlassReason = Annotated[
    str,
    Query(
        description="Emergency access (break-glass) by a professional outside the care team: the written reason, "
        "kept in the access log; the holder and the treating physician are told"
    ),
]
EmergencyRegulation = Annotated[bool, Query(description="With break_glass_reason: access by the emergency regulation doctor")]


def _with_break_glass(caller: Caller, reason: str, emergency_regulation: bool) -> Any:
    """The caller's metadata, plus the emergency reason for dossier when one is given."""
    if not reason:
        return caller.metadata
    extra: list[tuple[str, str | bytes]] = [("x-carnet-break-glass-reason-bin", reason.encode())]
    if emergency_regulation:
        extra.append(("x-carnet-emergency-regulation", "1"))
    return (*caller.metadata, *extra)


@router.get("/api/v1/documents", operation_id="list_documents", tags=["documents"], summary="List a holder's documents")
async def list_documents(
    request: Request,
    caller: CallerDep,
    holder_id: Annotated[str, Query(description="The holder; defaults to the caller when a holder")] = "",
    page_size: Annotated[int, Query(ge=0, le=100)] = 0,
    page_token: str = "",
    type_code: str = "",
    class_code: str = "",
    author_rpps: str = "",
    author_organisation_id: str = "",
    service_start_time: Annotated[str, Query(description="ISO 8601 date or date-time")] = "",
    service_end_time: Annotated[str, Query(description="ISO 8601 date or date-time")] = "",
    status: Annotated[str, Query(description="approved (default), deprecated, archived")] = "",
    title_query: Annotated[str, Query(description="Words of the title (accent- and case-insensitive)")] = "",
    accession_number: str = "",
    break_glass_reason: BreakGlassReason = "",
    emergency_regulation: EmergencyRegulation = False,
) -> JSONResponse:
    query = dossier_pb.ListDocumentsRequest(
        holder_id=holder_id,
        page_size=page_size,
        page_token=page_token,
        type_code=type_code,
        class_code=class_code,
        author_rpps=author_rpps,
        author_organisation_id=author_organisation_id,
        title_query=title_query,
        accession_number=accession_number,
    )
    if service_start_time:
        query.service_start_time.CopyFrom(parse_timestamp(service_start_time, "service_start_time"))
    if service_end_time:
        query.service_end_time.CopyFrom(parse_timestamp(service_end_time, "service_end_time"))
    if status:
        statuses = {"approved": dossier_res.DOCUMENT_STATUS_APPROVED, "deprecated": dossier_res.DOCUMENT_STATUS_DEPRECATED,
                    "archived": dossier_res.DOCUMENT_STATUS_ARCHIVED}
        if status.lower() not in statuses:
            raise InvalidArgument(f"status must be one of {sorted(statuses)}", field="status")
        query.status = statuses[status.lower()]
    response = await _backends(request).dossier.ListDocuments(
        query, metadata=_with_break_glass(caller, break_glass_reason, emergency_regulation)
    )
    body = to_json(response)
    body.setdefault("documents", [])
    return JSONResponse(body)


@router.get("/api/v1/documents/{document_id}", operation_id="get_document", tags=["documents"], summary="A document's metadata")
async def get_document(
    request: Request,
    caller: CallerDep,
    document_id: str,
    break_glass_reason: BreakGlassReason = "",
    emergency_regulation: EmergencyRegulation = False,
) -> JSONResponse:
    document = await _backends(request).dossier.GetDocument(
        dossier_pb.GetDocumentRequest(document_id=document_id),
        metadata=_with_break_glass(caller, break_glass_reason, emergency_regulation),
    )
    return JSONResponse(to_json(document))


@router.get(
    "/api/v1/documents/{document_id}/content",
    operation_id="download_document",
    tags=["documents"],
    summary="Download a document's content (integrity-checked)",
    response_class=StreamingResponse,
)
async def download_document(
    request: Request,
    caller: CallerDep,
    document_id: str,
    break_glass_reason: BreakGlassReason = "",
    emergency_regulation: EmergencyRegulation = False,
) -> StreamingResponse:
    settings = request.app.state.settings
    call = _backends(request).dossier.DownloadDocument(
        dossier_pb.DownloadDocumentRequest(document_id=document_id),
        metadata=_with_break_glass(caller, break_glass_reason, emergency_regulation),
        timeout=settings.upload_timeout_seconds,
    )
    stream: AsyncIterator[dossier_pb.DownloadDocumentResponse] = aiter(call)
    first = await anext(stream)
    document = first.document

    async def body() -> AsyncIterator[bytes]:
        async for message in stream:
            yield message.chunk

    filename = f"{document.document_id}{_extension(document.mime_type)}"
    return StreamingResponse(
        body(),
        media_type=document.mime_type or "application/octet-stream",
        headers={
            "Content-Length": str(document.size_bytes),
            "ETag": f'"{document.sha256}"',
            "Digest": f"sha-256={base64.b64encode(bytes.fromhex(document.sha256)).decode()}",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


def _extension(mime_type: str) -> str:
    return {
        "application/pdf": ".pdf",
        "image/jpeg": ".jpg",
        "text/plain; charset=utf-8": ".txt",
    }.get(mime_type, ".xml" if "xml" in mime_type else "")


# --- Inbox -----------------------------------------------------------------------------------


@router.get("/api/v1/inbox", operation_id="list_inbox_items", tags=["inbox"], summary="The caller's in-app notifications")
async def list_inbox_items(
    request: Request,
    caller: CallerDep,
    page_size: Annotated[int, Query(ge=0, le=100)] = 0,
    page_token: str = "",
    unread_only: bool = False,
) -> JSONResponse:
    response = await _backends(request).notify.ListInboxItems(
        notify_pb.ListInboxItemsRequest(
            recipient_id=caller.principal.subject, page_size=page_size, page_token=page_token, unread_only=unread_only
        ),
        metadata=caller.metadata,
    )
    body = to_json(response)
    body.setdefault("items", [])
    body.setdefault("unread_count", 0)
    return JSONResponse(body)
