"""Protobuf ↔ domain for enrolment and lifecycle methods (the Person message itself is in :mod:`convert`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2, resources_pb2
from carnet_identity import convert
from carnet_identity.domain.enrolment import PersonTraits, check_person
from carnet_identity.domain.model import Person
from carnet_identity.enrolment import ImportReport
from carnet_identity.lifecycle import Activation, ReissuedCode
from carnet_identity.store_persons import PersonFilter
from carnet_kit.errors import InvalidArgument

_SEX = {common_pb2.SEX_FEMALE: "F", common_pb2.SEX_MALE: "M", common_pb2.SEX_UNDETERMINED: "I"}
_INS_TYPE = {resources_pb2.INS_TYPE_NIR: "nir", resources_pb2.INS_TYPE_NIA: "nia", resources_pb2.INS_TYPE_UNSPECIFIED: ""}
_OTP_CHANNEL = {
    common_pb2.DELIVERY_CHANNEL_UNSPECIFIED: "email",
    common_pb2.DELIVERY_CHANNEL_EMAIL: "email",
    common_pb2.DELIVERY_CHANNEL_SMS: "sms",
}
_NOTICE_CHANNEL = {
    common_pb2.DELIVERY_CHANNEL_UNSPECIFIED: "",
    common_pb2.DELIVERY_CHANNEL_EMAIL: "email",
    common_pb2.DELIVERY_CHANNEL_LETTER: "letter",
}
_STATES = {value: state.value for state, value in convert.ACCOUNT_STATES.items()}
# Names of Person fields as a caller writes them (the "person." prefix of request fields).
_FIELDS = {
    name: f"person.{name}"
    for name in (
        "ins",
        "ins_type",
        "sex",
        "birth_date",
        "birth_place_code",
        "email",
        "mobile_phone",
        "department_code",
    )
} | {name: f"person.name.{name}" for name in ("birth_name", "used_name", "first_names", "used_first_name")}


def _sex(value: int) -> str:
    return str(_SEX.get(value, ""))  # type: ignore[call-overload]


def _address(message: resources_pb2.Person) -> dict[str, Any] | None:
    if not message.HasField("postal_address"):
        return None
    address = message.postal_address
    return {
        "lines": list(address.lines),
        "postal_code": address.postal_code,
        "city": address.city,
        "country_code": address.country_code,
    }


def _otp_channel(value: int, mobile: str) -> str:
    channel = _OTP_CHANNEL.get(value)  # type: ignore[call-overload]
    if channel is None:
        raise InvalidArgument(
            "one_time_code_channel is e-mail or SMS", field="person.one_time_code_channel", reason="FIELD_INVALID"
        )
    if channel == "sms" and not mobile:
        raise InvalidArgument(
            "SMS codes need a mobile phone", field="person.one_time_code_channel", reason="FIELD_INVALID"
        )
    return str(channel)


def traits_from_message(message: resources_pb2.Person, today: dt.date) -> PersonTraits:
    """Check a Person given to CreatePerson (errors name ``person.<field>``)."""
    date = message.birth_date
    traits = check_person(
        ins=message.ins,
        ins_type=_INS_TYPE.get(message.ins_type, "?"),
        birth_name=message.name.birth_name,
        used_name=message.name.used_name,
        first_names=list(message.name.first_names),
        used_first_name=message.name.used_first_name,
        sex=_sex(message.sex),
        birth_date=(date.year, date.month, date.day),
        birth_place_code=message.birth_place_code,
        email=message.email,
        mobile_phone=message.mobile_phone,
        postal_address=_address(message),
        department_code=message.department_code,
        today=today,
        fields=_FIELDS,
    )
    return dataclasses.replace(
        traits, one_time_code_channel=_otp_channel(message.one_time_code_channel, traits.mobile_phone)
    )


def updated_traits(person: Person, message: resources_pb2.Person, mask: Sequence[str], today: dt.date) -> PersonTraits:
    """The person's traits with the masked fields taken from ``message``, checked as a whole."""
    paths = set(mask)

    def pick(path: str, new: Any, old: Any) -> Any:
        parent = path.rpartition(".")[0]
        return new if path in paths or (parent and parent in paths) else old

    name = message.name
    born = person.birth_date
    precision = person.birth_date_precision
    old_date = (born.year, born.month if precision != "year" else 0, born.day if precision == "day" else 0)
    new_date = (message.birth_date.year, message.birth_date.month, message.birth_date.day)
    traits = check_person(
        ins=person.ins,
        ins_type=person.ins_type.value,
        birth_name=pick("name.birth_name", name.birth_name, person.name.birth_name),
        used_name=pick("name.used_name", name.used_name, person.name.used_name),
        first_names=pick("name.first_names", list(name.first_names), list(person.name.first_names)),
        used_first_name=pick("name.used_first_name", name.used_first_name, person.name.used_first_name),
        sex=pick("sex", _sex(message.sex), person.sex),
        birth_date=pick("birth_date", new_date, old_date),
        birth_place_code=pick("birth_place_code", message.birth_place_code, person.birth_place_code),
        email=pick("email", message.email, person.email),
        mobile_phone=pick("mobile_phone", message.mobile_phone, person.mobile_phone),
        postal_address=pick("postal_address", _address(message), person.postal_address),
        department_code=pick("department_code", message.department_code, person.department_code),
        today=today,
        fields=_FIELDS,
    )
    if "one_time_code_channel" in paths:
        channel = _otp_channel(message.one_time_code_channel, traits.mobile_phone)
    else:
        channel = person.one_time_code_channel
        if channel == "sms" and not traits.mobile_phone:
            channel = "email"
    return dataclasses.replace(traits, one_time_code_channel=channel)


def person_filter(request: identity_service_pb2.ListPersonsRequest) -> PersonFilter:
    """ListPersons filters."""
    state = _STATES.get(request.state, "") if request.state else ""
    if request.state and not state:
        raise InvalidArgument("unknown state", field="state", reason="FIELD_INVALID")
    return PersonFilter(
        state=state,
        department_code=request.department_code.strip().upper(),
        name_query=request.name_query.strip(),
        opposition_deadline_before=(
            request.opposition_deadline_before.ToDatetime(dt.UTC) if request.HasField("opposition_deadline_before") else None
        ),
    )


def notice_channel(value: int) -> str:
    """The channel asked for a re-issued code ("" = the person's notice channel)."""
    channel = _NOTICE_CHANNEL.get(value)  # type: ignore[call-overload]
    if channel is None:
        raise InvalidArgument("an activation code goes by e-mail or letter", field="channel", reason="FIELD_INVALID")
    return str(channel)


def import_response(report: ImportReport) -> identity_service_pb2.ImportPersonsResponse:
    """The summary of an import."""
    return identity_service_pb2.ImportPersonsResponse(
        import_id=str(report.import_id),
        row_count=report.row_count,
        created_count=report.created_count,
        unchanged_count=report.unchanged_count,
        updated_count=report.updated_count,
        rejected_count=report.rejected_count,
        errors=[
            identity_service_pb2.ImportRowError(
                line_number=error.line_number, field=error.field, reason=error.reason, message=error.message
            )
            for error in sorted(report.errors, key=lambda error: error.line_number)
        ],
    )


def activation_response(activation: Activation) -> identity_service_pb2.ActivateAccountResponse:
    """The activated person and the password setup token."""
    return identity_service_pb2.ActivateAccountResponse(
        person=convert.person(activation.person),
        password_setup_token=activation.password_setup_token,
        password_setup_expire_time=convert.timestamp(activation.expires_at),
    )


def reissue_response(reissued: ReissuedCode) -> identity_service_pb2.ReissueActivationCodeResponse:
    """Where the new code went."""
    return identity_service_pb2.ReissueActivationCodeResponse(
        expire_time=convert.timestamp(reissued.expires_at),
        channel=convert.CHANNELS[reissued.channel],
        masked_destination=reissued.masked_destination,
    )
