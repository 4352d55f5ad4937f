"""``python -m carnet_identity seed-demo``: the demo population, inserted idempotently.

Running it again changes nothing: rows are keyed by deterministic ids and inserted
only when missing; Jean DUPONT's activation code is kept as long as the plain code
in ``<CARNET_SECRETS_DIR>/demo-activation-codes.json`` still matches the stored hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from pathlib import Path

from google.protobuf import timestamp_pb2

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import events_pb2
from carnet_identity import demo
from carnet_identity.domain.accounts import ACTIVATION_CODE_VALIDITY, OPPOSITION_WINDOW, AccountState, majority_date
from carnet_identity.domain.credentials import new_activation_code
from carnet_identity.domain.identifiers import InsType, ins_key, luhn_valid, normalise_finess
from carnet_identity.domain.model import (
    Organisation,
    Person,
    PersonName,
    Professional,
    Representation,
    SoftwareClient,
)
from carnet_identity.hashing import SecretHasher
from carnet_identity.keys import utcnow
from carnet_identity.store import IdentityStore
from carnet_identity.store_directory import DirectoryStore

log = logging.getLogger(__name__)

SEEDED_TABLES = (
    "persons",
    "professionals",
    "professional_organisations",
    "organisations",
    "software_clients",
    "client_ae_titles",
    "representatives",
    "treating_physicians",
    "activation_codes",
)


@dataclasses.dataclass(frozen=True)
class SeedReport:
    """What a seeding run did."""

    inserted: dict[str, int]
    activation_codes: dict[str, str]
    activation_codes_file: Path | None


def _check_population() -> None:
    """The fixed data must satisfy identity's own rules (INS keys, RPPS Luhn, FINESS)."""
    for holder in demo.HOLDERS:
        if ins_key(holder.nir) != holder.ins_key:
            raise ValueError(f"demo INS {holder.ins} has a wrong key")
    for professional in demo.PROFESSIONALS:
        if not luhn_valid(professional.rpps):
            raise ValueError(f"demo RPPS {professional.rpps} fails the Luhn check")
    for organisation in demo.ORGANISATIONS:
        normalise_finess(organisation.finess)


def _read_codes(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(key): str(value) for key, value in data.items()} if isinstance(data, dict) else {}


def _write_codes(path: Path, codes: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(codes, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.chmod(temporary, 0o600)
    temporary.replace(path)


def _holder_record(holder: demo.DemoHolder, password_hash: str | None, now: dt.datetime) -> Person:
    notified = holder.state == AccountState.NOTIFIED
    return Person(
        id=holder.id,
        ins_type=InsType.NIR,
        nir=holder.nir,
        ins_key=holder.ins_key,
        name=PersonName(birth_name=holder.birth_name, first_names=(holder.first_name,)),
        sex=holder.sex,
        birth_date=holder.birth_date,
        birth_date_precision="day",
        birth_place_code=holder.birth_place_code,
        email=holder.email,
        mobile_phone="",
        postal_address=None,
        department_code=holder.department_code,
        state=AccountState(holder.state),
        state_reason="",
        opposition_deadline=now + OPPOSITION_WINDOW if notified else None,
        notice_channel="email",
        one_time_code_channel="email",
        password_hash=password_hash,
        activated_at=None if notified else now,
        closed_at=None,
        scheduled_delete_at=None,
        activation_code_expires_at=None,
        created_at=now,
        updated_at=now,
    )


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def seed_demo(
    store: IdentityStore,
    *,
    secrets_dir: Path | None,
    hasher: SecretHasher | None = None,
    now: dt.datetime | None = None,
) -> SeedReport:
    """Insert the demo population where missing; return what was inserted and the activation codes."""
    _check_population()
    hasher = hasher or SecretHasher()
    now = now or utcnow()
    before = {table: await store.count(table) for table in SEEDED_TABLES}
    codes_file = secrets_dir / demo.ACTIVATION_CODES_FILE if secrets_dir else None
    known_codes = _read_codes(codes_file)
    activation_codes: dict[str, str] = {}

    async with store.transaction() as tx:
        await tx.advisory_lock("seed-demo")
        for organisation in demo.ORGANISATIONS:
            await tx.insert_organisation(
                Organisation(
                    id=organisation.id,
                    finess=organisation.finess,
                    name=organisation.name,
                    kind=organisation.kind,
                    address=None,
                    department_code=organisation.department_code,
                    created_at=now,
                    updated_at=now,
                )
            )
        for holder in demo.HOLDERS:
            if await tx.person_by_id(holder.id) is None:
                password_hash = await hasher.hash(demo.DEMO_PASSWORD) if holder.with_password else None
                await tx.insert_person(_holder_record(holder, password_hash, now))
        for professional in demo.PROFESSIONALS:
            if await tx.professional_by_id(professional.id) is None:
                organisations = (
                    (demo.demo_id(professional.organisation_finess),) if professional.organisation_finess else ()
                )
                await tx.insert_professional(
                    Professional(
                        id=professional.id,
                        rpps=professional.rpps,
                        name=PersonName(birth_name=professional.birth_name, first_names=(professional.first_name,)),
                        profession_code=professional.profession_code,
                        specialty_code=professional.specialty_code,
                        organisation_ids=organisations,
                        email=professional.email,
                        mobile_phone="",
                        one_time_code_channel="email",
                        disabled=False,
                        password_hash=await hasher.hash(demo.DEMO_PASSWORD),
                        created_at=now,
                        updated_at=now,
                    )
                )
        for client in demo.CLIENTS:
            if await tx.client_by_id(client.client_id) is None:
                await tx.insert_client(
                    SoftwareClient(
                        client_id=client.client_id,
                        display_name=client.display_name,
                        kind=client.kind,
                        organisation_id=demo.demo_id(client.organisation_finess),
                        scopes=client.scopes,
                        ae_titles=client.ae_titles,
                        disabled=False,
                        secret_hash=await hasher.hash(client.secret),
                        secret_updated_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
        for minor, representative, relationship in demo.LEGAL_REPRESENTATIONS:
            start = dt.datetime.combine(minor.birth_date, dt.time(), dt.UTC)
            end = dt.datetime.combine(majority_date(minor.birth_date), dt.time(), dt.UTC)
            inserted = await tx.insert_representation(
                Representation(
                    id=demo.representation_id(minor, representative),
                    kind="legal",
                    holder_id=minor.id,
                    representative_id=representative.id,
                    access="full",
                    valid_from=start,
                    valid_until=end,
                ),
                relationship,
                now,
            )
            if inserted:
                # Consent keeps its facts from identity's events: the seed announces what it sets.
                await DirectoryStore.sharing(tx).publish(
                    events_pb2.LegalRepresentativeChangedEvent(
                        legal_representative_id=str(demo.representation_id(minor, representative)),
                        holder_id=str(minor.id),
                        representative_id=str(representative.id),
                        change_type=common_pb2.CHANGE_TYPE_CREATED,
                        occur_time=_timestamp(now),
                    )
                )
        for holder, physician in demo.TREATING_PHYSICIANS:
            if await tx.declare_treating_physician_if_none(holder.id, physician.id, now):
                await DirectoryStore.sharing(tx).publish(
                    events_pb2.TreatingPhysicianChangedEvent(
                        holder_id=str(holder.id), professional_id=str(physician.id), occur_time=_timestamp(now)
                    )
                )
        for holder in demo.HOLDERS:
            if holder.state != AccountState.NOTIFIED:
                continue
            outstanding = await tx.outstanding_activation_code(holder.id)
            known = known_codes.get(holder.ins)
            if outstanding is not None and known is not None and await hasher.verify(outstanding[1], known):
                activation_codes[holder.ins] = known
                continue
            code = new_activation_code()
            await tx.replace_activation_code(
                holder.id, await hasher.hash(code), "email", now, now + ACTIVATION_CODE_VALIDITY
            )
            activation_codes[holder.ins] = code

    if codes_file is not None and any(known_codes.get(ins) != code for ins, code in activation_codes.items()):
        _write_codes(codes_file, {**known_codes, **activation_codes})
    after = {table: await store.count(table) for table in SEEDED_TABLES}
    return SeedReport({table: after[table] - before[table] for table in SEEDED_TABLES}, activation_codes, codes_file)


def describe(report: SeedReport) -> str:
    """The text seed-demo prints: what was inserted, the demo accounts and activation codes."""
    lines = ["identity demo population:"]
    inserted = ", ".join(f"{table} +{count}" for table, count in report.inserted.items() if count)
    lines.append(f"  inserted: {inserted or 'nothing (already seeded)'}")
    for holder in demo.HOLDERS:
        login = f"{holder.email} / {demo.DEMO_PASSWORD}" if holder.with_password else "(no password)"
        lines.append(f"  holder {holder.first_name} {holder.birth_name:<8} INS {holder.ins}  {holder.state:<9} {login}")
    for professional in demo.PROFESSIONALS:
        lines.append(
            f"  professional {professional.first_name} {professional.birth_name:<7} RPPS {professional.rpps}"
            f"  {professional.email} / {demo.DEMO_PASSWORD}"
        )
    for client in demo.CLIENTS:
        lines.append(f"  client {client.client_id} / {client.secret}  scopes {' '.join(client.scopes)}")
    for ins, code in report.activation_codes.items():
        lines.append(f"  activation code for INS {ins}: {code}")
    if report.activation_codes_file is not None:
        lines.append(f"  activation codes written to {report.activation_codes_file}")
    return "\n".join(lines)
