"""The gRPC face of identity: protobuf requests → domain calls → protobuf responses, nothing else.

Methods of the contract not implemented yet answer UNIMPLEMENTED (see the end of
this module).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2

from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, resources_pb2
from carnet_identity import convert
from carnet_identity import convert_directory as dconvert
from carnet_identity import person_messages as pmessages
from carnet_identity.clients import ClientCredentialsService
from carnet_identity.directory import DirectoryServices
from carnet_identity.keys import KeyRing
from carnet_identity.lifecycle import PersonServices, parse_person_id
from carnet_identity.login import LoginService
from carnet_identity.oidc import OidcLogin
from carnet_identity.persons import PersonDirectory
from carnet_identity.sessions import SessionService
from carnet_kit.auth import TokenVerifier, current_principal, require_role
from carnet_kit.errors import FailedPrecondition, InvalidArgument, Unimplemented

SERVICE_NAME = "carnet.identity.v1.IdentityService"
# Methods that need no token: they are how one gets a token, or how tokens are checked.
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{method}"
    for method in (
        "ExchangeClientCredentials",
        "RefreshTokens",
        "StartLogin",
        "CompleteLogin",
        "StartOidcLogin",
        "CompleteOidcLogin",
        "GetJwks",
        # Activation proves itself with the code, INS and birth date; SetPassword with
        # the setup token it returns or the current password.
        "ActivateAccount",
        "SetPassword",
    )
)

Context = Any

# The gateway passes the address its HTTP caller came from; a direct gRPC caller is known by its peer.
CLIENT_ADDRESS_METADATA = "x-carnet-client-address"


def _client_address(context: Context) -> str:
    """The address a login attempt came from, for per-address throttling."""
    for key, value in context.invocation_metadata() or ():
        if key == CLIENT_ADDRESS_METADATA and isinstance(value, str) and value:
            return value[:200]
    peer = context.peer() or ""
    # "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555", "unix:/path": keep the host, drop the port.
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


class IdentityServicer(identity_service_pb2_grpc.IdentityServiceServicer):
    """Implements ``carnet.identity.v1.IdentityService``."""

    def __init__(
        self,
        *,
        clients: ClientCredentialsService,
        login: LoginService,
        sessions: SessionService,
        persons: PersonDirectory,
        keys: KeyRing,
        verifier: TokenVerifier,
        directory: DirectoryServices | None = None,
        person_services: PersonServices | None = None,
        oidc: OidcLogin | None = None,
    ) -> None:
        self._oidc = oidc
        self._person_services = person_services
        self._directory = directory
        self._clients = clients
        self._login = login
        self._sessions = sessions
        self._persons = persons
        self._keys = keys
        self._verifier = verifier

    # ---- tokens

    async def ExchangeClientCredentials(
        self, request: identity_service_pb2.ExchangeClientCredentialsRequest, context: Context
    ) -> identity_service_pb2.TokenSet:
        grant = await self._clients.exchange(request.client_id, request.client_secret, list(request.scopes))
        return convert.token_set(grant)

    async def RefreshTokens(
        self, request: identity_service_pb2.RefreshTokensRequest, context: Context
    ) -> identity_service_pb2.TokenSet:
        grant = await self._sessions.refresh(
            request.refresh_token, acting_for=request.acting_for, organisation_id=request.organisation_id
        )
        return convert.token_set(grant)

    async def RevokeToken(self, request: identity_service_pb2.RevokeTokenRequest, context: Context) -> empty_pb2.Empty:
        await self._sessions.revoke(request.token, request.token_type_hint, current_principal(), self._verifier)
        return empty_pb2.Empty()

    async def GetJwks(
        self, request: identity_service_pb2.GetJwksRequest, context: Context
    ) -> identity_service_pb2.GetJwksResponse:
        return convert.jwks(await self._keys.jwks())

    async def RotateSigningKey(
        self, request: identity_service_pb2.RotateSigningKeyRequest, context: Context
    ) -> resources_pb2.SigningKey:
        require_role(current_principal(), "operator")
        overlap = request.overlap.ToTimedelta() if request.HasField("overlap") else None
        return convert.signing_key(await self._keys.rotate(overlap))

    # ---- login

    async def StartLogin(
        self, request: identity_service_pb2.StartLoginRequest, context: Context
    ) -> identity_service_pb2.StartLoginResponse:
        return convert.start_login_response(
            await self._login.start_login(request.login, request.password, client_address=_client_address(context))
        )

    async def CompleteLogin(
        self, request: identity_service_pb2.CompleteLoginRequest, context: Context
    ) -> identity_service_pb2.TokenSet:
        return convert.token_set(await self._login.complete_login(request.challenge_id, request.code))

    # ---- professionals' login through an OpenID Connect provider

    def _oidc_login(self) -> OidcLogin:
        if self._oidc is None:
            raise FailedPrecondition(
                "no OpenID Connect provider is configured (CARNET_OIDC_ISSUER)", reason="OIDC_NOT_CONFIGURED"
            )
        return self._oidc

    async def StartOidcLogin(
        self, request: identity_service_pb2.StartOidcLoginRequest, context: Context
    ) -> identity_service_pb2.StartOidcLoginResponse:
        started = await self._oidc_login().start()
        response = identity_service_pb2.StartOidcLoginResponse(authorization_url=started.url, state=started.state)
        response.expire_time.FromDatetime(started.expires_at)
        return response

    async def CompleteOidcLogin(
        self, request: identity_service_pb2.CompleteOidcLoginRequest, context: Context
    ) -> identity_service_pb2.TokenSet:
        return convert.token_set(await self._oidc_login().complete(request.code, request.state))

    # ---- persons

    async def LookupPerson(
        self, request: identity_service_pb2.LookupPersonRequest, context: Context
    ) -> resources_pb2.Person:
        key = request.WhichOneof("key")
        value = str(getattr(request, key)) if key else ""
        return convert.person(await self._persons.lookup(current_principal(), key or "", value))

    async def GetPerson(self, request: identity_service_pb2.GetPersonRequest, context: Context) -> resources_pb2.Person:
        return convert.person(await self._persons.lookup(current_principal(), "person_id", request.person_id))

    # --- persons and lifecycle

    def _people(self) -> PersonServices:
        if self._person_services is None:
            raise Unimplemented("persons and lifecycle are not configured", reason="NOT_IMPLEMENTED")
        return self._person_services

    async def CreatePerson(
        self, request: identity_service_pb2.CreatePersonRequest, context: Context
    ) -> resources_pb2.Person:
        traits = pmessages.traits_from_message(request.person, dt.datetime.now(dt.UTC).date())
        person = await self._people().registry.create(current_principal(), traits, request.request_id)
        return convert.person(person)

    async def ImportPersons(
        self, request_iterator: AsyncIterator[identity_service_pb2.ImportPersonsRequest], context: Context
    ) -> identity_service_pb2.ImportPersonsResponse:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise InvalidArgument("the first message must be the header", field="header", reason="FIELD_INVALID")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.WhichOneof("payload") != "csv_chunk":
                    raise InvalidArgument("only CSV chunks follow the header", field="csv_chunk", reason="FIELD_INVALID")
                yield message.csv_chunk

        report = await self._people().registry.import_csv(
            current_principal(), first.header.file_name, first.header.dry_run, chunks()
        )
        return pmessages.import_response(report)

    async def ListPersons(
        self, request: identity_service_pb2.ListPersonsRequest, context: Context
    ) -> identity_service_pb2.ListPersonsResponse:
        persons, next_token, total = await self._people().registry.list(
            current_principal(), pmessages.person_filter(request), request.page_size, request.page_token
        )
        return identity_service_pb2.ListPersonsResponse(
            persons=[convert.person(person) for person in persons], next_page_token=next_token, total_size=total
        )

    async def UpdatePerson(
        self, request: identity_service_pb2.UpdatePersonRequest, context: Context
    ) -> resources_pb2.Person:
        mask = list(request.update_mask.paths)
        today = dt.datetime.now(dt.UTC).date()
        person = await self._people().registry.update(
            current_principal(),
            parse_person_id(request.person.person_id, "person.person_id"),
            mask,
            lambda stored: pmessages.updated_traits(stored, request.person, mask, today),
        )
        return convert.person(person)

    async def ActivateAccount(
        self, request: identity_service_pb2.ActivateAccountRequest, context: Context
    ) -> identity_service_pb2.ActivateAccountResponse:
        date = request.birth_date
        activation = await self._people().lifecycle.activate(
            request.activation_code, request.ins, (date.year, date.month, date.day)
        )
        return pmessages.activation_response(activation)

    async def SetPassword(
        self, request: identity_service_pb2.SetPasswordRequest, context: Context
    ) -> identity_service_pb2.SetPasswordResponse:
        updated = await self._people().lifecycle.set_password(
            request.subject,
            request.new_password,
            setup_token=request.password_setup_token,
            current_password=request.current_password,
        )
        return identity_service_pb2.SetPasswordResponse(update_time=convert.timestamp(updated))

    async def ReissueActivationCode(
        self, request: identity_service_pb2.ReissueActivationCodeRequest, context: Context
    ) -> identity_service_pb2.ReissueActivationCodeResponse:
        reissued = await self._people().lifecycle.reissue_code(
            current_principal(), parse_person_id(request.person_id), pmessages.notice_channel(request.channel)
        )
        return pmessages.reissue_response(reissued)

    async def CloseAccount(self, request: identity_service_pb2.CloseAccountRequest, context: Context) -> resources_pb2.Person:
        lifecycle = self._people().lifecycle
        person = await lifecycle.close(current_principal(), parse_person_id(request.person_id), request.reason)
        return convert.person(person)

    async def SuspendAccount(
        self, request: identity_service_pb2.SuspendAccountRequest, context: Context
    ) -> resources_pb2.Person:
        lifecycle = self._people().lifecycle
        person = await lifecycle.suspend(current_principal(), parse_person_id(request.person_id), request.reason)
        return convert.person(person)

    async def ReopenAccount(
        self, request: identity_service_pb2.ReopenAccountRequest, context: Context
    ) -> resources_pb2.Person:
        person = await self._people().lifecycle.reopen(current_principal(), parse_person_id(request.person_id))
        return convert.person(person)

    async def RequestAccountDeletion(
        self, request: identity_service_pb2.RequestAccountDeletionRequest, context: Context
    ) -> resources_pb2.Person:
        lifecycle = self._people().lifecycle
        person = await lifecycle.request_deletion(
            current_principal(), parse_person_id(request.person_id), request.reason
        )
        return convert.person(person)

    # --- directory and representation

    @property
    def _dir(self) -> DirectoryServices:
        if self._directory is None:
            raise Unimplemented("the directory is not configured", reason="NOT_IMPLEMENTED")
        return self._directory

    async def CreateProfessional(
        self, request: identity_service_pb2.CreateProfessionalRequest, context: Context
    ) -> resources_pb2.Professional:
        fields = dconvert.professional_fields(request.professional)
        created = await self._dir.professionals.create(current_principal(), fields, request.initial_password)
        return dconvert.professional(created)

    async def GetProfessional(
        self, request: identity_service_pb2.GetProfessionalRequest, context: Context
    ) -> resources_pb2.Professional:
        return dconvert.professional(await self._dir.professionals.get(current_principal(), request.professional_id))

    async def LookupProfessional(
        self, request: identity_service_pb2.LookupProfessionalRequest, context: Context
    ) -> resources_pb2.Professional:
        key = request.WhichOneof("key") or ""
        value = str(getattr(request, key)) if key else ""
        return dconvert.professional(await self._dir.professionals.lookup(current_principal(), key, value))

    async def ListProfessionals(
        self, request: identity_service_pb2.ListProfessionalsRequest, context: Context
    ) -> identity_service_pb2.ListProfessionalsResponse:
        listing = await self._dir.professionals.list(
            current_principal(),
            profession_code=request.profession_code,
            organisation_id=request.organisation_id,
            name_query=request.name_query,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return identity_service_pb2.ListProfessionalsResponse(
            professionals=[dconvert.professional(item) for item in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def UpdateProfessional(
        self, request: identity_service_pb2.UpdateProfessionalRequest, context: Context
    ) -> resources_pb2.Professional:
        updated = await self._dir.professionals.update(
            current_principal(),
            request.professional.professional_id,
            dconvert.professional_fields(request.professional),
            list(request.update_mask.paths),
        )
        return dconvert.professional(updated)

    async def CreateOrganisation(
        self, request: identity_service_pb2.CreateOrganisationRequest, context: Context
    ) -> resources_pb2.Organisation:
        fields = dconvert.organisation_fields(request.organisation)
        return dconvert.organisation(await self._dir.organisations.create(current_principal(), fields))

    async def GetOrganisation(
        self, request: identity_service_pb2.GetOrganisationRequest, context: Context
    ) -> resources_pb2.Organisation:
        return dconvert.organisation(await self._dir.organisations.get(current_principal(), request.organisation_id))

    async def ListOrganisations(
        self, request: identity_service_pb2.ListOrganisationsRequest, context: Context
    ) -> identity_service_pb2.ListOrganisationsResponse:
        listing = await self._dir.organisations.list(
            current_principal(),
            kind=dconvert.ORGANISATION_KIND_NAMES.get(request.kind, ""),
            finess=request.finess,
            name_query=request.name_query,
            department_code=request.department_code,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return identity_service_pb2.ListOrganisationsResponse(
            organisations=[dconvert.organisation(item) for item in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def UpdateOrganisation(
        self, request: identity_service_pb2.UpdateOrganisationRequest, context: Context
    ) -> resources_pb2.Organisation:
        updated = await self._dir.organisations.update(
            current_principal(),
            request.organisation.organisation_id,
            dconvert.organisation_fields(request.organisation),
            list(request.update_mask.paths),
        )
        return dconvert.organisation(updated)

    async def CreateSoftwareClient(
        self, request: identity_service_pb2.CreateSoftwareClientRequest, context: Context
    ) -> resources_pb2.SoftwareClient:
        created = await self._dir.clients.create(current_principal(), dconvert.client_fields(request.client))
        return dconvert.software_client(created)

    async def GetSoftwareClient(
        self, request: identity_service_pb2.GetSoftwareClientRequest, context: Context
    ) -> resources_pb2.SoftwareClient:
        return dconvert.software_client(await self._dir.clients.get(current_principal(), request.client_id))

    async def ListSoftwareClients(
        self, request: identity_service_pb2.ListSoftwareClientsRequest, context: Context
    ) -> identity_service_pb2.ListSoftwareClientsResponse:
        listing = await self._dir.clients.list(
            current_principal(),
            organisation_id=request.organisation_id,
            kind=dconvert.CLIENT_KIND_NAMES.get(request.kind, ""),
            ae_title=request.ae_title,
            scope=request.scope,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return identity_service_pb2.ListSoftwareClientsResponse(
            clients=[dconvert.software_client(item) for item in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def UpdateSoftwareClient(
        self, request: identity_service_pb2.UpdateSoftwareClientRequest, context: Context
    ) -> resources_pb2.SoftwareClient:
        updated = await self._dir.clients.update(
            current_principal(),
            request.client.client_id,
            dconvert.client_fields(request.client),
            list(request.update_mask.paths),
        )
        return dconvert.software_client(updated)

    async def RotateSoftwareClientSecret(
        self, request: identity_service_pb2.RotateSoftwareClientSecretRequest, context: Context
    ) -> resources_pb2.SoftwareClient:
        return dconvert.software_client(await self._dir.clients.rotate_secret(current_principal(), request.client_id))

    async def DeleteSoftwareClient(
        self, request: identity_service_pb2.DeleteSoftwareClientRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._dir.clients.delete(current_principal(), request.client_id)
        return empty_pb2.Empty()

    async def CreateLegalRepresentative(
        self, request: identity_service_pb2.CreateLegalRepresentativeRequest, context: Context
    ) -> resources_pb2.LegalRepresentative:
        given = request.legal_representative
        record = await self._dir.representation.create_legal_representative(
            current_principal(),
            holder_id=given.holder_id,
            representative_id=given.representative_id,
            relationship=dconvert.RELATIONSHIP_NAMES.get(given.relationship, ""),
            end_time=dconvert.optional_time(given, "end_time"),
        )
        return dconvert.legal_representative(record)

    async def ListLegalRepresentatives(
        self, request: identity_service_pb2.ListLegalRepresentativesRequest, context: Context
    ) -> identity_service_pb2.ListLegalRepresentativesResponse:
        listing = await self._dir.representation.list_legal_representatives(
            current_principal(),
            holder_id=request.holder_id,
            representative_id=request.representative_id,
            include_ended=request.include_ended,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return identity_service_pb2.ListLegalRepresentativesResponse(
            legal_representatives=[dconvert.legal_representative(item) for item in listing.items],
            next_page_token=listing.next_page_token,
        )

    async def DeleteLegalRepresentative(
        self, request: identity_service_pb2.DeleteLegalRepresentativeRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._dir.representation.delete_legal_representative(current_principal(), request.legal_representative_id)
        return empty_pb2.Empty()

    async def CreateHelper(
        self, request: identity_service_pb2.CreateHelperRequest, context: Context
    ) -> resources_pb2.Helper:
        given = request.helper
        record = await self._dir.representation.create_helper(
            current_principal(),
            holder_id=given.holder_id,
            helper_person_id=given.helper_person_id,
            access=dconvert.HELPER_ACCESS_NAMES.get(given.access, ""),
            start_time=dconvert.optional_time(given, "start_time"),
            end_time=dconvert.optional_time(given, "end_time"),
        )
        return dconvert.helper(record)

    async def ListHelpers(
        self, request: identity_service_pb2.ListHelpersRequest, context: Context
    ) -> identity_service_pb2.ListHelpersResponse:
        listing = await self._dir.representation.list_helpers(
            current_principal(),
            holder_id=request.holder_id,
            helper_person_id=request.helper_person_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return identity_service_pb2.ListHelpersResponse(
            helpers=[dconvert.helper(item) for item in listing.items], next_page_token=listing.next_page_token
        )

    async def UpdateHelper(
        self, request: identity_service_pb2.UpdateHelperRequest, context: Context
    ) -> resources_pb2.Helper:
        given = request.helper
        fields = {
            "access": dconvert.HELPER_ACCESS_NAMES.get(given.access, ""),
            "end_time": dconvert.optional_time(given, "end_time"),
        }
        record = await self._dir.representation.update_helper(
            current_principal(), given.helper_id, fields, list(request.update_mask.paths)
        )
        return dconvert.helper(record)

    async def DeleteHelper(
        self, request: identity_service_pb2.DeleteHelperRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._dir.representation.delete_helper(current_principal(), request.helper_id)
        return empty_pb2.Empty()

    async def DeclareTreatingPhysician(
        self, request: identity_service_pb2.DeclareTreatingPhysicianRequest, context: Context
    ) -> resources_pb2.TreatingPhysician:
        view = await self._dir.representation.declare_treating_physician(
            current_principal(), holder_id=request.holder_id, professional_id=request.professional_id, rpps=request.rpps
        )
        return dconvert.treating_physician(view)

    async def GetTreatingPhysician(
        self, request: identity_service_pb2.GetTreatingPhysicianRequest, context: Context
    ) -> resources_pb2.TreatingPhysician:
        view = await self._dir.representation.get_treating_physician(current_principal(), request.holder_id)
        return dconvert.treating_physician(view)

    async def DeleteTreatingPhysician(
        self, request: identity_service_pb2.DeleteTreatingPhysicianRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._dir.representation.delete_treating_physician(current_principal(), request.holder_id)
        return empty_pb2.Empty()
