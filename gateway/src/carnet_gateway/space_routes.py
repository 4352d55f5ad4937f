"""The REST face of identity's accounts and consent's choices (issue 3).

Activation, password, logout, closure and reopening, representatives and helpers, the
treating physician; oppositions, blocks, care team, app consents, break-glass.
"""

from __future__ import annotations

from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from carnet.common.v1 import common_pb2
from carnet.consent.v1 import consent_service_pb2 as consent_pb
from carnet.consent.v1 import resources_pb2 as consent_res
from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet_gateway.protojson import to_json
from carnet_gateway.rpc_routes import CALLER_HOLDER, CALLER_SUBJECT, RpcRoute, router_for
from carnet_gateway.security import Caller, authenticate, bearer_scheme
from carnet_kit.errors import PermissionDenied

IDN, CNS = "identity", "consent"
PAGE = ("page_size", "page_token")

ROUTES: list[RpcRoute] = [
    # --- activation and account
    RpcRoute("POST", "/api/v1/activation", "activate_account", "Activate a space with its temporary code, NIR and birth date",
             "account", IDN, "ActivateAccount", identity_pb.ActivateAccountRequest, body_field="", public=True),
    RpcRoute("POST", "/api/v1/activation/password", "set_first_password", "Set the password after activation",
             "account", IDN, "SetPassword", identity_pb.SetPasswordRequest, body_field="", public=True),
    RpcRoute("POST", "/api/v1/me/password", "change_password", "Change one's password (current password required)",
             "account", IDN, "SetPassword", identity_pb.SetPasswordRequest, body_field="",
             caller_defaults={"subject": CALLER_SUBJECT}),
    RpcRoute("GET", "/api/v1/persons/{person_id}", "get_person", "A person's identity traits and account state",
             "account", IDN, "GetPerson", identity_pb.GetPersonRequest, path_fields={"person_id": "person_id"}),
    RpcRoute("GET", "/api/v1/person-lookup", "lookup_person", "Find a person by INS or e-mail (agents, services)",
             "account", IDN, "LookupPerson", identity_pb.LookupPersonRequest, query_fields=("ins", "email")),
    RpcRoute("POST", "/api/v1/persons/{person_id}/activation-code", "reissue_activation_code",
             "Issue a new activation code (the previous one stops working)", "account", IDN, "ReissueActivationCode",
             identity_pb.ReissueActivationCodeRequest, body_field="", path_fields={"person_id": "person_id"}),
    RpcRoute("POST", "/api/v1/persons/{person_id}/close", "close_account", "Close a space (archived 10 years)",
             "account", IDN, "CloseAccount", identity_pb.CloseAccountRequest, body_field="",
             path_fields={"person_id": "person_id"}),
    RpcRoute("POST", "/api/v1/persons/{person_id}/reopen", "reopen_account", "Reopen a closed space (restores it)",
             "account", IDN, "ReopenAccount", identity_pb.ReopenAccountRequest, path_fields={"person_id": "person_id"}),
    RpcRoute("POST", "/api/v1/persons/{person_id}/suspend", "suspend_account", "Suspend a space (operators)",
             "account", IDN, "SuspendAccount", identity_pb.SuspendAccountRequest, body_field="",
             path_fields={"person_id": "person_id"}),
    RpcRoute("POST", "/api/v1/persons/{person_id}/deletion", "request_account_deletion",
             "Ask for the space to be deleted (carried out within 3 months)", "account", IDN, "RequestAccountDeletion",
             identity_pb.RequestAccountDeletionRequest, body_field="", path_fields={"person_id": "person_id"}),
    # --- representation
    RpcRoute("POST", "/api/v1/legal-representatives", "create_legal_representative",
             "Record a minor's legal representative", "representation", IDN, "CreateLegalRepresentative",
             identity_pb.CreateLegalRepresentativeRequest, body_field="legal_representative", status=201),
    RpcRoute("GET", "/api/v1/legal-representatives", "list_legal_representatives", "List legal representatives",
             "representation", IDN, "ListLegalRepresentatives", identity_pb.ListLegalRepresentativesRequest,
             query_fields=(*PAGE, "holder_id", "representative_id", "include_ended")),
    RpcRoute("DELETE", "/api/v1/legal-representatives/{legal_representative_id}", "delete_legal_representative",
             "End a legal representation", "representation", IDN, "DeleteLegalRepresentative",
             identity_pb.DeleteLegalRepresentativeRequest,
             path_fields={"legal_representative_id": "legal_representative_id"}, status=204),
    RpcRoute("POST", "/api/v1/helpers", "create_helper", "Nominate a helper (read-only or full)", "representation", IDN,
             "CreateHelper", identity_pb.CreateHelperRequest, body_field="helper",
             caller_defaults={"helper.holder_id": CALLER_HOLDER}, status=201),
    RpcRoute("GET", "/api/v1/helpers", "list_helpers", "List a holder's helpers", "representation", IDN, "ListHelpers",
             identity_pb.ListHelpersRequest, query_fields=(*PAGE, "holder_id", "helper_person_id"),
             caller_defaults={"holder_id": CALLER_HOLDER}),
    RpcRoute("PATCH", "/api/v1/helpers/{helper_id}", "update_helper", "Change a helper's access", "representation", IDN,
             "UpdateHelper", identity_pb.UpdateHelperRequest, body_field="",
             path_fields={"helper_id": "helper.helper_id"}),
    RpcRoute("DELETE", "/api/v1/helpers/{helper_id}", "delete_helper", "Remove a helper", "representation", IDN,
             "DeleteHelper", identity_pb.DeleteHelperRequest, path_fields={"helper_id": "helper_id"}, status=204),
    RpcRoute("PUT", "/api/v1/persons/{holder_id}/treating-physician", "declare_treating_physician",
             "Declare one's treating physician", "representation", IDN, "DeclareTreatingPhysician",
             identity_pb.DeclareTreatingPhysicianRequest, body_field="", path_fields={"holder_id": "holder_id"}),
    RpcRoute("GET", "/api/v1/persons/{holder_id}/treating-physician", "get_treating_physician",
             "A holder's treating physician", "representation", IDN, "GetTreatingPhysician",
             identity_pb.GetTreatingPhysicianRequest, path_fields={"holder_id": "holder_id"}),
    RpcRoute("DELETE", "/api/v1/persons/{holder_id}/treating-physician", "delete_treating_physician",
             "Withdraw the treating physician declaration", "representation", IDN, "DeleteTreatingPhysician",
             identity_pb.DeleteTreatingPhysicianRequest, path_fields={"holder_id": "holder_id"}, status=204),
    # --- oppositions
    RpcRoute("POST", "/api/v1/oppositions", "create_opposition",
             "Object (to creation, break-glass, emergency regulation access, research use)", "consent", CNS,
             "CreateOpposition", consent_pb.CreateOppositionRequest, body_field="",
             caller_defaults={"opposition.holder_id": CALLER_HOLDER}, status=201),
    RpcRoute("GET", "/api/v1/oppositions", "list_oppositions", "A holder's oppositions", "consent", CNS,
             "ListOppositions", consent_pb.ListOppositionsRequest, query_fields=(*PAGE, "holder_id", "kind", "state"),
             caller_defaults={"holder_id": CALLER_HOLDER}),
    RpcRoute("GET", "/api/v1/oppositions/{opposition_id}", "get_opposition", "One opposition and its receipt",
             "consent", CNS, "GetOpposition", consent_pb.GetOppositionRequest,
             path_fields={"opposition_id": "opposition_id"}),
    RpcRoute("POST", "/api/v1/oppositions/{opposition_id}/withdraw", "withdraw_opposition", "Withdraw an opposition",
             "consent", CNS, "WithdrawOpposition", consent_pb.WithdrawOppositionRequest,
             path_fields={"opposition_id": "opposition_id"}),
    # --- blocks
    RpcRoute("POST", "/api/v1/blocks", "create_block", "Block a professional", "consent", CNS, "CreateBlock",
             consent_pb.CreateBlockRequest, body_field="block", caller_defaults={"block.holder_id": CALLER_HOLDER},
             status=201),
    RpcRoute("GET", "/api/v1/blocks", "list_blocks", "A holder's blocked professionals", "consent", CNS, "ListBlocks",
             consent_pb.ListBlocksRequest, query_fields=(*PAGE, "holder_id"),
             caller_defaults={"holder_id": CALLER_HOLDER}),
    RpcRoute("DELETE", "/api/v1/blocks/{block_id}", "delete_block", "Unblock a professional", "consent", CNS,
             "DeleteBlock", consent_pb.DeleteBlockRequest, path_fields={"block_id": "block_id"}, status=204),
    # --- care team
    RpcRoute("POST", "/api/v1/care-team", "create_care_team_authorisation",
             "Authorise a professional, or declare a care relationship", "consent", CNS, "CreateCareTeamAuthorisation",
             consent_pb.CreateCareTeamAuthorisationRequest, body_field="", status=201),
    RpcRoute("GET", "/api/v1/care-team", "list_care_team_authorisations", "A holder's care team", "consent", CNS,
             "ListCareTeamAuthorisations", consent_pb.ListCareTeamAuthorisationsRequest,
             query_fields=(*PAGE, "holder_id", "professional_id", "state"),
             caller_defaults={"holder_id": CALLER_HOLDER}),
    RpcRoute("GET", "/api/v1/care-team/{authorisation_id}", "get_care_team_authorisation", "One authorisation",
             "consent", CNS, "GetCareTeamAuthorisation", consent_pb.GetCareTeamAuthorisationRequest,
             path_fields={"authorisation_id": "authorisation_id"}),
    RpcRoute("POST", "/api/v1/care-team/{authorisation_id}/revoke", "revoke_care_team_authorisation",
             "Revoke an authorisation", "consent", CNS, "RevokeCareTeamAuthorisation",
             consent_pb.RevokeCareTeamAuthorisationRequest, path_fields={"authorisation_id": "authorisation_id"}),
    # --- app consents
    RpcRoute("POST", "/api/v1/app-consents", "create_app_consent", "Consent to an app's access to a data category",
             "consent", CNS, "CreateAppConsent", consent_pb.CreateAppConsentRequest, body_field="app_consent",
             caller_defaults={"app_consent.holder_id": CALLER_HOLDER}, status=201),
    RpcRoute("GET", "/api/v1/app-consents", "list_app_consents", "A holder's app consents", "consent", CNS,
             "ListAppConsents", consent_pb.ListAppConsentsRequest,
             query_fields=(*PAGE, "holder_id", "client_id", "state"), caller_defaults={"holder_id": CALLER_HOLDER}),
    RpcRoute("POST", "/api/v1/app-consents/{app_consent_id}/revoke", "revoke_app_consent", "Revoke an app consent",
             "consent", CNS, "RevokeAppConsent", consent_pb.RevokeAppConsentRequest,
             path_fields={"app_consent_id": "app_consent_id"}),
    RpcRoute("GET", "/api/v1/access-matrix", "get_access_matrix", "Which profession may read which document class",
             "consent", CNS, "GetAccessMatrix", consent_pb.GetAccessMatrixRequest, query_fields=("version",)),
]

router = APIRouter()


class LogoutRequest(BaseModel):
    """The refresh token to revoke with the access token."""

    refresh_token: str = Field(default="", max_length=4096)


@router.post("/api/v1/auth/logout", operation_id="logout", tags=["auth"], status_code=204,
             summary="Revoke the access token and its refresh token family")
async def logout(request: Request, body: LogoutRequest, credentials: Annotated[Any, Security(bearer_scheme)]) -> Response:
    caller: Caller = await authenticate(request, credentials)
    identity = request.app.state.backends.identity
    if body.refresh_token:
        await identity.RevokeToken(
            identity_pb.RevokeTokenRequest(token=body.refresh_token, token_type_hint="refresh_token"),
            metadata=caller.metadata,
        )
    try:
        await identity.RevokeToken(
            identity_pb.RevokeTokenRequest(token=caller.token, token_type_hint="access_token"), metadata=caller.metadata
        )
    except grpc.aio.AioRpcError as error:
        # Revoking the refresh token's family already revoked this access token.
        if error.code() != grpc.StatusCode.UNAUTHENTICATED or not body.refresh_token:
            raise
    return Response(status_code=204)


@router.get("/api/v1/me", operation_id="get_me", tags=["account"], summary="Who the caller is")
async def get_me(request: Request, credentials: Annotated[Any, Security(bearer_scheme)]) -> JSONResponse:
    caller: Caller = await authenticate(request, credentials)
    principal = caller.principal
    identity = request.app.state.backends.identity
    body: dict[str, Any] = {"actor": to_json(principal.to_actor())}
    if principal.role in ("holder", "representative", "helper"):
        body["person"] = to_json(
            await identity.GetPerson(identity_pb.GetPersonRequest(person_id=principal.subject), metadata=caller.metadata)
        )
    elif principal.role == "professional":
        body["professional"] = to_json(
            await identity.GetProfessional(
                identity_pb.GetProfessionalRequest(professional_id=principal.subject), metadata=caller.metadata
            )
        )
    return JSONResponse(body)


@router.get("/api/v1/auth/oidc/start", operation_id="start_oidc_login", tags=["auth"],
            summary="Professionals: start a login through the configured OpenID Connect provider")
async def start_oidc_login(request: Request, redirect: bool = False) -> Response:
    started = await request.app.state.backends.identity.StartOidcLogin(identity_pb.StartOidcLoginRequest())
    if redirect:
        return RedirectResponse(started.authorization_url, status_code=302)
    return JSONResponse(to_json(started))


@router.get("/api/v1/auth/oidc/callback", operation_id="complete_oidc_login", tags=["auth"],
            summary="Professionals: the provider's redirect with code and state, answered with Carnet tokens")
async def complete_oidc_login(request: Request, code: str = "", state: str = "") -> JSONResponse:
    tokens = await request.app.state.backends.identity.CompleteOidcLogin(
        identity_pb.CompleteOidcLoginRequest(code=code, state=state)
    )
    body: dict[str, Any] = {"access_token": tokens.access_token, "token_type": tokens.token_type or "Bearer",
                            "expires_in": tokens.expires_in}
    if tokens.refresh_token:
        body["refresh_token"] = tokens.refresh_token
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


class BreakGlassRequest(BaseModel):
    """Why the record must be opened without the holder's consent."""

    reason: str = Field(min_length=10, max_length=2000, description="The written reason, kept in the access log")
    emergency_regulation: bool = Field(default=False, description="Access by the emergency regulation doctor (centre 15)")


@router.post("/api/v1/persons/{holder_id}/break-glass", operation_id="request_break_glass", tags=["consent"],
             summary="Ask for emergency access to a record (logged; holder and treating physician are told)")
async def request_break_glass(
    request: Request, holder_id: str, body: BreakGlassRequest, credentials: Annotated[Any, Security(bearer_scheme)]
) -> JSONResponse:
    caller: Caller = await authenticate(request, credentials)
    action = consent_res.ACTION_EMERGENCY_REGULATION_READ if body.emergency_regulation else consent_res.ACTION_BREAK_GLASS_READ
    decision = await request.app.state.backends.consent.Decide(
        consent_pb.DecideRequest(
            actor=caller.principal.to_actor(),
            holder_id=holder_id,
            action=action,
            item=consent_res.ItemAttributes(kind=consent_res.ITEM_KIND_SPACE),
            break_glass_reason=body.reason,
        ),
        metadata=caller.metadata,
    )
    if decision.effect != consent_res.EFFECT_ALLOW:
        raise PermissionDenied("emergency access refused", reason=decision.reason_code or "ACCESS_DENIED", domain="consent.carnet")
    return JSONResponse(to_json(decision))


rpc_router = router_for(ROUTES)
_ = common_pb2  # Date and Actor travel inside the messages above
