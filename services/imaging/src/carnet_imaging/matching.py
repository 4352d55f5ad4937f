"""Patient matching: whose space an incoming instance belongs to, or why it goes to the quarantine.

Rules, in order:

1. The issuer of the PatientID (IssuerOfPatientID, else the Universal Entity ID of the
   Issuer of Patient ID Qualifiers Sequence) is an INS authority — ``1.2.250.1.213.1.4.8``
   (NIR) or ``1.2.250.1.213.1.4.9`` (NIA): the PatientID must be an INS (13 characters, or
   15 with its key; Corsica's 2A/2B allowed) — otherwise ``INVALID_INS`` — that identity
   knows — otherwise ``UNKNOWN_PATIENT``. When the instance carries a birth date or a sex
   (M/F) that contradicts identity's, it is ``IDENTITY_MISMATCH``: an INS copied onto the
   wrong patient must not file images into someone else's space.
2. The issuer is the sending AE's PACS-local issuer (``local_issuer_of_patient_id`` of the
   AE registry; an empty issuer counts as the local one when the AE declares one): the
   PatientID matches when an operator already assigned that local id of that client to a
   holder (``patient_id_mappings``, learnt from the quarantine) — otherwise ``UNKNOWN_PATIENT``.
3. Anything else is ``UNKNOWN_ISSUER``.

Identity's answers are kept for ``CARNET_IDENTITY_CACHE_SECONDS``: a study of 500 instances
asks once.
"""

from __future__ import annotations

import enum
import re
import time
import uuid
from dataclasses import dataclass

import asyncpg

from carnet_imaging.dicomjson import IndexAttributes
from carnet_imaging.peers import IdentityDirectory, PersonFacts

INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_OIDS = frozenset({INS_NIR_OID, INS_NIA_OID})
_INS = re.compile(r"^[12378](\d{2})(\d{2})(\d{2}|2A|2B)(\d{6})(\d{2})?$")


class QuarantineReason(enum.Enum):
    """Why an instance was not filed (QuarantineReason without its prefix)."""

    UNKNOWN_PATIENT = "UNKNOWN_PATIENT"
    UNKNOWN_ISSUER = "UNKNOWN_ISSUER"
    INVALID_INS = "INVALID_INS"
    IDENTITY_MISMATCH = "IDENTITY_MISMATCH"


@dataclass(frozen=True)
class Match:
    """The holder an instance belongs to, or the quarantine reason."""

    holder_id: uuid.UUID | None
    reason: QuarantineReason | None

    @classmethod
    def holder(cls, holder_id: str | uuid.UUID) -> Match:
        return cls(uuid.UUID(str(holder_id)), None)

    @classmethod
    def quarantine(cls, reason: QuarantineReason) -> Match:
        return cls(None, reason)


def issuer_of(attributes: IndexAttributes) -> str:
    """The issuer of the PatientID as the instance states it."""
    return (attributes.issuer_of_patient_id or attributes.issuer_of_patient_id_universal_entity_id or "").strip()


def ins_key_ok(ins: str) -> bool:
    """Whether an INS of 15 characters carries the right key (97 − number mod 97; 2A → 19, 2B → 18)."""
    if len(ins) != 15:
        return True
    number = ins[:13].replace("2A", "19").replace("2B", "18")
    return 97 - int(number) % 97 == int(ins[13:])


def contradicts(attributes: IndexAttributes, person: PersonFacts) -> bool:
    """Whether the instance's birth date or sex contradicts identity's."""
    born = (attributes.patient_birth_date or "").strip()
    if born and person.birth_date and not born.startswith(person.birth_date):
        return True
    sex = (attributes.patient_sex or "").strip().upper()
    return sex in ("M", "F") and person.sex in ("M", "F") and sex != person.sex


class PatientMatcher:
    """Matches instances to holders with identity's help and the learnt local ids."""

    def __init__(self, pool: asyncpg.Pool, identity: IdentityDirectory, *, cache_seconds: float) -> None:
        self._pool = pool
        self._identity = identity
        self._cache_seconds = cache_seconds
        self._persons: dict[str, tuple[float, PersonFacts | None]] = {}

    async def _person(self, ins: str) -> PersonFacts | None:
        now = time.monotonic()
        cached = self._persons.get(ins)
        if cached is not None and cached[0] > now:
            return cached[1]
        person = await self._identity.person_by_ins(ins)
        if self._cache_seconds:
            if len(self._persons) > 10_000:
                self._persons.clear()
            self._persons[ins] = (now + self._cache_seconds, person)
        return person

    async def match(self, attributes: IndexAttributes, *, client_id: str, local_issuer: str) -> Match:
        """Whose instance this is."""
        patient_id = (attributes.patient_id or "").strip().upper()
        issuer = issuer_of(attributes)
        if issuer in INS_OIDS:
            if not _INS.match(patient_id) or not ins_key_ok(patient_id):
                return Match.quarantine(QuarantineReason.INVALID_INS)
            person = await self._person(patient_id)
            if person is None:
                return Match.quarantine(QuarantineReason.UNKNOWN_PATIENT)
            if contradicts(attributes, person):
                return Match.quarantine(QuarantineReason.IDENTITY_MISMATCH)
            return Match.holder(person.person_id)
        if local_issuer and issuer in (local_issuer, ""):
            holder = await self._pool.fetchval(
                "SELECT holder_id FROM patient_id_mappings"
                " WHERE client_id = $1 AND issuer_of_patient_id = $2 AND patient_id = $3",
                client_id,
                local_issuer,
                (attributes.patient_id or "").strip(),
            )
            return Match.holder(holder) if holder else Match.quarantine(QuarantineReason.UNKNOWN_PATIENT)
        return Match.quarantine(QuarantineReason.UNKNOWN_ISSUER)
