"""Domain records → protobuf messages (and the few enums back)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2, resources_pb2
from carnet_identity.domain.accounts import AccountState
from carnet_identity.domain.identifiers import InsType
from carnet_identity.domain.model import Channel, Person, PersonName
from carnet_identity.login import StartedLogin
from carnet_identity.sessions import TokenGrant
from carnet_identity.store import StoredSigningKey

ACCOUNT_STATES = {
    AccountState.NOTIFIED: resources_pb2.ACCOUNT_STATE_NOTIFIED,
    AccountState.ACTIVE: resources_pb2.ACCOUNT_STATE_ACTIVE,
    AccountState.OPPOSED: resources_pb2.ACCOUNT_STATE_OPPOSED,
    AccountState.CREATED_BY_DEFAULT: resources_pb2.ACCOUNT_STATE_CREATED_BY_DEFAULT,
    AccountState.SUSPENDED: resources_pb2.ACCOUNT_STATE_SUSPENDED,
    AccountState.CLOSED: resources_pb2.ACCOUNT_STATE_CLOSED,
    AccountState.DELETED: resources_pb2.ACCOUNT_STATE_DELETED,
}
INS_TYPES = {InsType.NIR: resources_pb2.INS_TYPE_NIR, InsType.NIA: resources_pb2.INS_TYPE_NIA}
SEXES = {"F": common_pb2.SEX_FEMALE, "M": common_pb2.SEX_MALE, "I": common_pb2.SEX_UNDETERMINED}
CHANNELS = {
    Channel.EMAIL.value: common_pb2.DELIVERY_CHANNEL_EMAIL,
    Channel.SMS.value: common_pb2.DELIVERY_CHANNEL_SMS,
    Channel.LETTER.value: common_pb2.DELIVERY_CHANNEL_LETTER,
}
SIGNING_KEY_STATES = {
    "pending": resources_pb2.SIGNING_KEY_STATE_PENDING,
    "active": resources_pb2.SIGNING_KEY_STATE_ACTIVE,
    "retiring": resources_pb2.SIGNING_KEY_STATE_RETIRING,
    "retired": resources_pb2.SIGNING_KEY_STATE_RETIRED,
}


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp."""
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def date(value: dt.date, precision: str = "day") -> common_pb2.Date:
    """A protobuf Date; a partial date leaves its unknown parts at 0."""
    return common_pb2.Date(
        year=value.year,
        month=value.month if precision in ("day", "month") else 0,
        day=value.day if precision == "day" else 0,
    )


def person_name(name: PersonName) -> common_pb2.PersonName:
    """A protobuf PersonName."""
    return common_pb2.PersonName(
        birth_name=name.birth_name,
        used_name=name.used_name,
        first_names=list(name.first_names),
        used_first_name=name.used_first_name,
    )


def postal_address(value: dict[str, Any] | None) -> common_pb2.PostalAddress | None:
    """A protobuf PostalAddress from its stored JSON form."""
    if not value:
        return None
    return common_pb2.PostalAddress(
        lines=list(value.get("lines", [])),
        postal_code=str(value.get("postal_code", "")),
        city=str(value.get("city", "")),
        country_code=str(value.get("country_code", "")),
    )


def person(record: Person) -> resources_pb2.Person:
    """A protobuf Person (the password hash never leaves identity)."""
    message = resources_pb2.Person(
        person_id=str(record.id),
        ins=record.ins,
        ins_type=INS_TYPES[record.ins_type],
        name=person_name(record.name),
        sex=SEXES.get(record.sex, common_pb2.SEX_UNSPECIFIED),
        birth_date=date(record.birth_date, record.birth_date_precision),
        birth_place_code=record.birth_place_code,
        email=record.email,
        mobile_phone=record.mobile_phone,
        department_code=record.department_code,
        state=ACCOUNT_STATES[record.state],
        notice_channel=CHANNELS.get(record.notice_channel, common_pb2.DELIVERY_CHANNEL_UNSPECIFIED),
        one_time_code_channel=CHANNELS.get(record.one_time_code_channel, common_pb2.DELIVERY_CHANNEL_UNSPECIFIED),
        password_set=record.password_set,
        state_reason=record.state_reason,
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )
    address = postal_address(record.postal_address)
    if address is not None:
        message.postal_address.CopyFrom(address)
    for field, value in (
        ("opposition_deadline", record.opposition_deadline),
        ("activation_code_expire_time", record.activation_code_expires_at),
        ("activate_time", record.activated_at),
        ("close_time", record.closed_at),
        ("scheduled_delete_time", record.scheduled_delete_at),
    ):
        if value is not None:
            getattr(message, field).CopyFrom(timestamp(value))
    return message


def token_set(grant: TokenGrant) -> identity_service_pb2.TokenSet:
    """The OAuth2-shaped answer of the token methods."""
    return identity_service_pb2.TokenSet(
        access_token=grant.access.token,
        token_type="Bearer",
        expires_in=grant.access.ttl_seconds,
        refresh_token=grant.refresh_token,
        scope=grant.scope,
        actor=grant.access.principal.to_actor(),
    )


def start_login_response(started: StartedLogin) -> identity_service_pb2.StartLoginResponse:
    """Where the one-time code went."""
    return identity_service_pb2.StartLoginResponse(
        challenge_id=str(started.challenge_id),
        channel=CHANNELS[started.channel.value],
        masked_destination=started.masked_destination,
        expire_time=timestamp(started.expires_at),
    )


def jwks(keys: dict[str, Any]) -> identity_service_pb2.GetJwksResponse:
    """The JWKS as its protobuf message."""
    return identity_service_pb2.GetJwksResponse(
        keys=[
            identity_service_pb2.JsonWebKey(
                kty=str(key["kty"]),
                crv=str(key["crv"]),
                kid=str(key["kid"]),
                x=str(key["x"]),
                use=str(key.get("use", "sig")),
                alg=str(key.get("alg", "")),
            )
            for key in keys["keys"]
        ]
    )


def signing_key(key: StoredSigningKey) -> resources_pb2.SigningKey:
    """A signing key's public facts."""
    message = resources_pb2.SigningKey(
        kid=key.kid,
        alg=key.algorithm,
        crv=key.curve,
        state=SIGNING_KEY_STATES[key.state],
        create_time=timestamp(key.created_at),
    )
    if key.activated_at is not None:
        message.activate_time.CopyFrom(timestamp(key.activated_at))
    if key.retire_at is not None:
        message.retire_time.CopyFrom(timestamp(key.retire_at))
    return message
