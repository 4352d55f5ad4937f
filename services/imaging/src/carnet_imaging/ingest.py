"""Storing one received instance: bytes as received, sealed, then indexed (or quarantined).

The path of an instance (C-STORE, later STOW-RS):

1. its index attributes are read from the header only (no pixel decoding; a malformed or
   truncated dataset is refused and nothing is written);
2. it is matched to a holder (``matching.py``) or sent to the quarantine;
3. its Part 10 bytes, exactly as received, are sealed (AES-256-GCM) under the holder's
   data key — the quarantine's for an unmatched one — and put in the object store at
   ``studies/<study>/<series>/<instance>`` (``quarantine/<instance>``);
4. the index rows (study, series, instance, and their counts) are written in one
   transaction. Only then is the instance acknowledged: nothing partial is indexed, and
   an object whose transaction failed is removed.

Duplicates (the same SOP Instance UID again): identical bytes are acknowledged and change
nothing; other bytes replace the stored instance (a PACS resending a corrected image) and
the counts follow. An instance whose study is already filed under another holder goes to
the quarantine (``IDENTITY_MISMATCH``): a study belongs to one person.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid

import asyncpg
from opentelemetry import metrics, trace

from carnet_imaging.dicomjson import IndexAttributes, index_attributes
from carnet_imaging.matching import Match, PatientMatcher, QuarantineReason, issuer_of
from carnet_imaging.registry import AeRecord
from carnet_kit.crypto import seal
from carnet_kit.data_keys import DataKeys, KeyOwner
from carnet_kit.errors import FailedPrecondition
from carnet_kit.objectstore import ObjectStore

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
_meter = metrics.get_meter("carnet_imaging")
_stored = _meter.create_counter("carnet.imaging.instances_stored", unit="{instance}",
                                description="Instances received, by outcome")

QUARANTINE_KEY = KeyOwner(uuid.UUID("0c7d8e1f-5a2b-4c3d-9e4f-a1b2c3d4e5f6"), "quarantine")
"""The data key sealing instances no holder has been found for."""


def holder_key(holder_id: uuid.UUID) -> KeyOwner:
    """The data key of a holder's DICOM objects."""
    return KeyOwner(holder_id, f"holder:{holder_id}")


def instance_blob_key(attributes: IndexAttributes) -> str:
    """Where a filed instance lives in the object store."""
    return f"studies/{attributes.study_instance_uid}/{attributes.series_instance_uid}/{attributes.sop_instance_uid}"


def quarantine_blob_key(sop_instance_uid: str) -> str:
    """Where a quarantined instance lives in the object store."""
    return f"quarantine/{sop_instance_uid}"


@dataclasses.dataclass(frozen=True)
class Stored:
    """What came of storing an instance."""

    sop_instance_uid: str
    study_instance_uid: str
    outcome: str
    """``filed``, ``duplicate`` (identical bytes seen before), ``replaced`` or ``quarantined``."""
    holder_id: uuid.UUID | None = None
    reason: QuarantineReason | None = None


class _StudyOfAnotherHolder(Exception):
    pass


class Ingest:
    """Stores instances from PACS."""

    def __init__(self, pool: asyncpg.Pool, blobs: ObjectStore, keys: DataKeys, matcher: PatientMatcher) -> None:
        self._pool = pool
        self._blobs = blobs
        self._keys = keys
        self._matcher = matcher

    async def store(self, part10: bytes, *, source: AeRecord, organisation_id: str = "") -> Stored:
        """Store one Part 10 instance received from ``source``; InvalidArgument DICOM_MALFORMED if unreadable."""
        with tracer.start_as_current_span("imaging.store_instance") as span:
            attributes = index_attributes(part10)
            span.set_attribute("dicom.sop_instance_uid", attributes.sop_instance_uid)
            digest = hashlib.sha256(part10).hexdigest()
            match = await self._matcher.match(
                attributes, client_id=source.client_id, local_issuer=source.local_issuer_of_patient_id
            )
            if match.holder_id is not None:
                try:
                    stored = await self._file(
                        part10, digest, attributes, match.holder_id, source.client_id, source.ae_title, organisation_id
                    )
                except _StudyOfAnotherHolder:
                    match = Match.quarantine(QuarantineReason.IDENTITY_MISMATCH)
                else:
                    _stored.add(1, {"outcome": stored.outcome})
                    return stored
            assert match.reason is not None
            stored = await self._quarantine(part10, digest, attributes, match.reason, source)
            _stored.add(1, {"outcome": stored.outcome})
            return stored

    async def file(self, part10: bytes, holder_id: uuid.UUID, *, client_id: str, ae_title: str) -> Stored:
        """File an instance under ``holder_id`` without matching (an operator's reassignment).

        FAILED_PRECONDITION ``STUDY_OF_ANOTHER_HOLDER`` when its study is filed under someone else.
        """
        attributes = index_attributes(part10)
        digest = hashlib.sha256(part10).hexdigest()
        try:
            return await self._file(part10, digest, attributes, holder_id, client_id, ae_title, "")
        except _StudyOfAnotherHolder:
            raise FailedPrecondition(
                f"study {attributes.study_instance_uid} is filed under another holder",
                reason="STUDY_OF_ANOTHER_HOLDER",
                metadata={"study_instance_uid": attributes.study_instance_uid},
            ) from None

    async def _file(
        self,
        part10: bytes,
        digest: str,
        attributes: IndexAttributes,
        holder_id: uuid.UUID,
        client_id: str,
        ae_title: str,
        organisation_id: str,
    ) -> Stored:
        sop = attributes.sop_instance_uid
        existing = await self._pool.fetchrow(
            "SELECT sha256, study_instance_uid FROM instances WHERE sop_instance_uid = $1", sop
        )
        if existing is not None and existing["sha256"] == digest:
            return Stored(sop, existing["study_instance_uid"], "duplicate", holder_id=holder_id)
        blob_key = instance_blob_key(attributes)
        key = await self._keys.data_key(holder_id, create_for=holder_key(holder_id))
        await self._blobs.put(blob_key, seal(key, blob_key, part10), "application/octet-stream")
        try:
            replaced = await self._index(
                part10, digest, attributes, holder_id, blob_key, client_id, ae_title, organisation_id
            )
        except BaseException:
            if existing is None:
                await self._blobs.delete(blob_key)
            raise
        return Stored(sop, attributes.study_instance_uid, "replaced" if replaced else "filed", holder_id=holder_id)

    async def _index(
        self,
        part10: bytes,
        digest: str,
        a: IndexAttributes,
        holder_id: uuid.UUID,
        blob_key: str,
        client_id: str,
        ae_title: str,
        organisation_id: str,
    ) -> bool:
        """Write the index rows; True when an instance of that UID was replaced."""
        modality = (a.modality or "").strip()
        async with self._pool.acquire() as conn, conn.transaction():
            owner = await conn.fetchval(
                "INSERT INTO studies (study_instance_uid, holder_id, patient_id, issuer_of_patient_id, patient_name,"
                " patient_birth_date, patient_sex, study_date, study_time, accession_number, study_description,"
                " study_id, referring_physician_name, modalities_in_study, source_client_id, source_ae_title,"
                " organisation_id)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
                " CASE WHEN $14 = '' THEN '{}'::text[] ELSE ARRAY[$14] END, $15, $16, $17)"
                " ON CONFLICT (study_instance_uid) DO UPDATE SET last_received_at = now(), updated_at = now(),"
                " state = 'RECEIVING', complete_at = NULL,"
                " modalities_in_study = CASE WHEN $14 = '' OR $14 = ANY(studies.modalities_in_study)"
                " THEN studies.modalities_in_study ELSE studies.modalities_in_study || $14 END"
                " RETURNING holder_id",
                a.study_instance_uid,
                holder_id,
                a.patient_id or "",
                issuer_of(a),
                a.patient_name or "",
                a.patient_birth_date or "",
                a.patient_sex or "",
                a.study_date or "",
                a.study_time or "",
                a.accession_number or "",
                a.study_description or "",
                a.study_id or "",
                a.referring_physician_name or "",
                modality,
                client_id,
                ae_title,
                organisation_id,
            )
            if owner != holder_id:
                raise _StudyOfAnotherHolder
            new_series = await conn.fetchval(
                "INSERT INTO series (series_instance_uid, study_instance_uid, modality, series_number,"
                " series_description, body_part_examined, series_date, series_time)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (series_instance_uid) DO NOTHING RETURNING true",
                a.series_instance_uid,
                a.study_instance_uid,
                modality,
                a.series_number,
                a.series_description or "",
                a.body_part_examined or "",
                a.series_date or "",
                a.series_time or "",
            )
            old = await conn.fetchrow(
                "DELETE FROM instances WHERE sop_instance_uid = $1"
                " RETURNING series_instance_uid, study_instance_uid, size_bytes",
                a.sop_instance_uid,
            )
            if old is not None:
                await conn.execute(
                    "UPDATE series SET number_of_instances = number_of_instances - 1 WHERE series_instance_uid = $1",
                    old["series_instance_uid"],
                )
                await conn.execute(
                    "UPDATE studies SET number_of_instances = number_of_instances - 1, size_bytes = size_bytes - $2"
                    " WHERE study_instance_uid = $1",
                    old["study_instance_uid"],
                    old["size_bytes"],
                )
            await conn.execute(
                "INSERT INTO instances (sop_instance_uid, series_instance_uid, study_instance_uid, sop_class_uid,"
                " transfer_syntax_uid, instance_number, rows, columns, number_of_frames, photometric_interpretation,"
                " size_bytes, sha256, blob_key, key_owner_id, source_client_id, source_ae_title)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                a.sop_instance_uid,
                a.series_instance_uid,
                a.study_instance_uid,
                a.sop_class_uid or "",
                a.transfer_syntax_uid,
                a.instance_number,
                a.rows,
                a.columns,
                a.number_of_frames,
                a.photometric_interpretation or "",
                len(part10),
                digest,
                blob_key,
                holder_id,
                client_id,
                ae_title,
            )
            await conn.execute(
                "UPDATE series SET number_of_instances = number_of_instances + 1 WHERE series_instance_uid = $1",
                a.series_instance_uid,
            )
            await conn.execute(
                "UPDATE studies SET number_of_instances = number_of_instances + 1, size_bytes = size_bytes + $2,"
                " number_of_series = number_of_series + $3 WHERE study_instance_uid = $1",
                a.study_instance_uid,
                len(part10),
                1 if new_series else 0,
            )
        return old is not None

    async def _quarantine(
        self, part10: bytes, digest: str, a: IndexAttributes, reason: QuarantineReason, source: AeRecord
    ) -> Stored:
        sop = a.sop_instance_uid
        blob_key = quarantine_blob_key(sop)
        key = await self._keys.data_key(QUARANTINE_KEY.owner_id, create_for=QUARANTINE_KEY)
        await self._blobs.put(blob_key, seal(key, blob_key, part10), "application/octet-stream")
        await self._pool.execute(
            "INSERT INTO quarantined_instances (sop_instance_uid, series_instance_uid, study_instance_uid,"
            " sop_class_uid, transfer_syntax_uid, patient_id, issuer_of_patient_id, patient_name, patient_birth_date,"
            " patient_sex, reason, client_id, calling_ae_title, size_bytes, sha256, blob_key, key_owner_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            " ON CONFLICT (sop_instance_uid) DO UPDATE SET reason = EXCLUDED.reason, size_bytes = EXCLUDED.size_bytes,"
            " sha256 = EXCLUDED.sha256, client_id = EXCLUDED.client_id, calling_ae_title = EXCLUDED.calling_ae_title,"
            " received_at = now()",
            sop,
            a.series_instance_uid,
            a.study_instance_uid,
            a.sop_class_uid or "",
            a.transfer_syntax_uid,
            a.patient_id or "",
            issuer_of(a),
            a.patient_name or "",
            a.patient_birth_date or "",
            a.patient_sex or "",
            reason.value,
            source.client_id,
            source.ae_title,
            len(part10),
            digest,
            blob_key,
            QUARANTINE_KEY.owner_id,
        )
        log.info("instance %s quarantined: %s", sop, reason.value)
        return Stored(sop, a.study_instance_uid, "quarantined", reason=reason)
