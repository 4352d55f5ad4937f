"""Directory records ↔ protobuf messages (professionals, organisations, clients, representations)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import resources_pb2
from carnet_identity.convert import person_name, postal_address, timestamp
from carnet_identity.directory import ClientWithSecret
from carnet_identity.domain.directory import RepresentationRecord
from carnet_identity.domain.model import Organisation, PersonName, Professional, SoftwareClient
from carnet_identity.representation import TreatingPhysicianView
from carnet_kit.auth import Principal

ORGANISATION_KINDS = {
    "hospital": resources_pb2.ORGANISATION_KIND_HOSPITAL,
    "laboratory": resources_pb2.ORGANISATION_KIND_LABORATORY,
    "imaging_centre": resources_pb2.ORGANISATION_KIND_IMAGING_CENTRE,
    "practice": resources_pb2.ORGANISATION_KIND_PRACTICE,
    "pharmacy": resources_pb2.ORGANISATION_KIND_PHARMACY,
    "medico_social": resources_pb2.ORGANISATION_KIND_MEDICO_SOCIAL,
    "insurer": resources_pb2.ORGANISATION_KIND_INSURER,
    "app_publisher": resources_pb2.ORGANISATION_KIND_APP_PUBLISHER,
    "other": resources_pb2.ORGANISATION_KIND_OTHER,
}
ORGANISATION_KIND_NAMES = {value: key for key, value in ORGANISATION_KINDS.items()}
CLIENT_KINDS = {
    "pacs": resources_pb2.CLIENT_KIND_PACS,
    "practice_software": resources_pb2.CLIENT_KIND_PRACTICE_SOFTWARE,
    "hospital_system": resources_pb2.CLIENT_KIND_HOSPITAL_SYSTEM,
    "laboratory_system": resources_pb2.CLIENT_KIND_LABORATORY_SYSTEM,
    "catalogue_app": resources_pb2.CLIENT_KIND_CATALOGUE_APP,
    "insurer_registry": resources_pb2.CLIENT_KIND_INSURER_REGISTRY,
}
CLIENT_KIND_NAMES = {value: key for key, value in CLIENT_KINDS.items()}
RELATIONSHIPS = {
    "parent": resources_pb2.LEGAL_REPRESENTATIVE_RELATIONSHIP_PARENT,
    "guardian": resources_pb2.LEGAL_REPRESENTATIVE_RELATIONSHIP_GUARDIAN,
}
RELATIONSHIP_NAMES = {value: key for key, value in RELATIONSHIPS.items()}
HELPER_ACCESS = {"read_only": resources_pb2.HELPER_ACCESS_READ_ONLY, "full": resources_pb2.HELPER_ACCESS_FULL}
HELPER_ACCESS_NAMES = {value: key for key, value in HELPER_ACCESS.items()}


def optional_time(message: Any, field: str) -> dt.datetime | None:
    """A Timestamp field as an aware datetime, None when unset."""
    if not message.HasField(field):
        return None
    value: dt.datetime = getattr(message, field).ToDatetime(tzinfo=dt.UTC)
    return value


def name_of(message: common_pb2.PersonName) -> PersonName:
    """A PersonName record from its message."""
    return PersonName(
        birth_name=message.birth_name,
        first_names=tuple(message.first_names),
        used_name=message.used_name,
        used_first_name=message.used_first_name,
    )


def address_of(message: common_pb2.PostalAddress) -> dict[str, Any] | None:
    """The stored JSON form of a postal address."""
    if not (message.lines or message.postal_code or message.city):
        return None
    return {
        "lines": list(message.lines),
        "postal_code": message.postal_code,
        "city": message.city,
        "country_code": message.country_code,
    }


def professional_fields(message: resources_pb2.Professional) -> dict[str, Any]:
    """The fields of a Professional message, keyed by contract name."""
    return {
        "rpps": message.rpps,
        "name": name_of(message.name),
        "profession_code": message.profession_code,
        "specialty_code": message.specialty_code,
        "organisation_ids": list(message.organisation_ids),
        "email": message.email,
        "mobile_phone": message.mobile_phone,
        "disabled": message.disabled,
    }


def professional(record: Professional) -> resources_pb2.Professional:
    """A Professional message (the password hash never leaves identity)."""
    return resources_pb2.Professional(
        professional_id=str(record.id),
        rpps=record.rpps,
        name=person_name(record.name),
        profession_code=record.profession_code,
        specialty_code=record.specialty_code,
        organisation_ids=[str(value) for value in record.organisation_ids],
        email=record.email,
        mobile_phone=record.mobile_phone,
        disabled=record.disabled,
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )


def organisation_fields(message: resources_pb2.Organisation) -> dict[str, Any]:
    """The fields of an Organisation message, keyed by contract name."""
    return {
        "finess": message.finess,
        "name": message.name,
        "kind": ORGANISATION_KIND_NAMES.get(message.kind, ""),
        "address": address_of(message.address),
        "department_code": message.department_code,
    }


def organisation(record: Organisation) -> resources_pb2.Organisation:
    """An Organisation message."""
    message = resources_pb2.Organisation(
        organisation_id=str(record.id),
        finess=record.finess,
        name=record.name,
        kind=ORGANISATION_KINDS.get(record.kind, resources_pb2.ORGANISATION_KIND_UNSPECIFIED),
        department_code=record.department_code,
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )
    address = postal_address(record.address)
    if address is not None:
        message.address.CopyFrom(address)
    return message


def client_fields(message: resources_pb2.SoftwareClient) -> dict[str, Any]:
    """The fields of a SoftwareClient message, keyed by contract name."""
    return {
        "client_id": message.client_id,
        "display_name": message.display_name,
        "kind": CLIENT_KIND_NAMES.get(message.kind, ""),
        "organisation_id": message.organisation_id,
        "scopes": list(message.scopes),
        "ae_titles": list(message.ae_titles),
        "disabled": message.disabled,
        "client_secret": message.client_secret,
    }


def software_client(record: SoftwareClient | ClientWithSecret) -> resources_pb2.SoftwareClient:
    """A SoftwareClient message; the secret only right after it was set."""
    secret = ""
    if isinstance(record, ClientWithSecret):
        secret = record.secret
        record = record.client
    return resources_pb2.SoftwareClient(
        client_id=record.client_id,
        display_name=record.display_name,
        kind=CLIENT_KINDS.get(record.kind, resources_pb2.CLIENT_KIND_UNSPECIFIED),
        organisation_id=str(record.organisation_id) if record.organisation_id else "",
        scopes=list(record.scopes),
        ae_titles=list(record.ae_titles),
        disabled=record.disabled,
        client_secret=secret,
        secret_update_time=timestamp(record.secret_updated_at),
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )


def actor(stored: dict[str, str] | None) -> common_pb2.Actor | None:
    """The Actor stored with a change."""
    if not stored or stored.get("role") not in (
        "holder",
        "representative",
        "helper",
        "operator",
        "service",
        "professional",
        "client",
    ):
        return None
    return Principal(
        subject=stored.get("subject", ""), role=stored["role"], acting_for=stored.get("acting_for", "")
    ).to_actor()


def legal_representative(record: RepresentationRecord) -> resources_pb2.LegalRepresentative:
    """A LegalRepresentative message."""
    message = resources_pb2.LegalRepresentative(
        legal_representative_id=str(record.id),
        holder_id=str(record.holder_id),
        representative_id=str(record.representative_id),
        relationship=RELATIONSHIPS.get(
            record.relationship, resources_pb2.LEGAL_REPRESENTATIVE_RELATIONSHIP_UNSPECIFIED
        ),
        start_time=timestamp(record.valid_from),
        create_time=timestamp(record.created_at),
    )
    end = record.ended_at if record.ended_at is not None else record.valid_until
    if end is not None:
        message.end_time.CopyFrom(timestamp(end))
    created_by = actor(record.created_by)
    if created_by is not None:
        message.created_by.CopyFrom(created_by)
    return message


def helper(record: RepresentationRecord) -> resources_pb2.Helper:
    """A Helper message."""
    message = resources_pb2.Helper(
        helper_id=str(record.id),
        holder_id=str(record.holder_id),
        helper_person_id=str(record.representative_id),
        access=HELPER_ACCESS.get(record.access, resources_pb2.HELPER_ACCESS_UNSPECIFIED),
        start_time=timestamp(record.valid_from),
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )
    end = record.ended_at if record.ended_at is not None else record.valid_until
    if end is not None:
        message.end_time.CopyFrom(timestamp(end))
    return message


def treating_physician(view: TreatingPhysicianView) -> resources_pb2.TreatingPhysician:
    """A TreatingPhysician message."""
    message = resources_pb2.TreatingPhysician(
        holder_id=str(view.record.holder_id),
        professional_id=str(view.professional.id),
        rpps=view.professional.rpps,
        name=person_name(view.professional.name),
        declare_time=timestamp(view.record.declared_at),
    )
    declared_by = actor(view.record.declared_by)
    if declared_by is not None:
        message.declared_by.CopyFrom(declared_by)
    return message
