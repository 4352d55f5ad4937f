"""The quarantine: instances no holder was found for, listed, assigned or rejected by operators.

Assigning opens each instance with the quarantine's key and files it under the holder as
if it had just arrived (sealed under the holder's key, indexed, counted); its quarantine
row and object go. When the instance carried a PACS-local patient id (an issuer that is
not an INS authority), the assignment is remembered (``patient_id_mappings``): that
client's later instances with the same local id are filed under the same holder at once.
Rejecting deletes the rows and objects, with the operator's reason logged.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from carnet_imaging.ingest import QUARANTINE_KEY, Ingest
from carnet_imaging.matching import INS_OIDS
from carnet_imaging.peers import IdentityDirectory
from carnet_imaging.registry import require_operator
from carnet_kit.auth import Principal
from carnet_kit.crypto import open_blob
from carnet_kit.data_keys import DataKeys
from carnet_kit.errors import InvalidArgument, NotFound
from carnet_kit.objectstore import ObjectStore

log = logging.getLogger(__name__)

REASONS = ("UNKNOWN_PATIENT", "UNKNOWN_ISSUER", "INVALID_INS", "IDENTITY_MISMATCH")


@dataclasses.dataclass(frozen=True)
class QuarantinedRecord:
    """A quarantined instance as operators see it."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    reason: str
    client_id: str
    calling_ae_title: str
    received_at: datetime


_COLUMNS = ", ".join(field.name for field in dataclasses.fields(QuarantinedRecord))


def _selection(sop_instance_uids: Sequence[str], study_instance_uid: str) -> tuple[list[str], str]:
    uids = [uid.strip() for uid in sop_instance_uids if uid.strip()]
    study = study_instance_uid.strip()
    if not uids and not study:
        raise InvalidArgument(
            "name the instances (sop_instance_uids) or their study (study_instance_uid)",
            field="sop_instance_uids",
            reason="FIELD_INVALID",
        )
    return uids, study


class Quarantine:
    """Operators' work on unmatched instances."""

    def __init__(
        self, pool: asyncpg.Pool, blobs: ObjectStore, keys: DataKeys, ingest: Ingest, identity: IdentityDirectory
    ) -> None:
        self._pool = pool
        self._blobs = blobs
        self._keys = keys
        self._ingest = ingest
        self._identity = identity

    async def list_instances(
        self,
        caller: Principal,
        *,
        study_instance_uid: str,
        calling_ae_title: str,
        reason: str,
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[QuarantinedRecord], int]:
        """Newest first, narrowed by study, calling AE and reason; with the total count."""
        require_operator(caller)
        where = (
            "($1 = '' OR study_instance_uid = $1) AND ($2 = '' OR calling_ae_title = $2) AND ($3 = '' OR reason = $3)"
        )
        args = (study_instance_uid.strip(), calling_ae_title.strip(), reason)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM quarantined_instances WHERE {where}"
            " AND ($4::timestamptz IS NULL OR (received_at, sop_instance_uid) < ($4, $5))"
            " ORDER BY received_at DESC, sop_instance_uid DESC LIMIT $6",
            *args,
            datetime.fromisoformat(after[0]) if after else None,
            after[1] if after else "",
            limit,
        )
        total = await self._pool.fetchval(f"SELECT count(*) FROM quarantined_instances WHERE {where}", *args)
        return [QuarantinedRecord(**dict(row)) for row in rows], int(total)

    async def _rows(self, uids: list[str], study: str) -> list[asyncpg.Record]:
        return list(
            await self._pool.fetch(
                "SELECT sop_instance_uid, study_instance_uid, patient_id, issuer_of_patient_id, client_id,"
                " calling_ae_title, blob_key FROM quarantined_instances"
                " WHERE sop_instance_uid = ANY($1::text[]) OR ($2 <> '' AND study_instance_uid = $2)"
                " ORDER BY received_at, sop_instance_uid",
                uids,
                study,
            )
        )

    async def reassign(
        self, caller: Principal, *, sop_instance_uids: Sequence[str], study_instance_uid: str, holder_id: str
    ) -> tuple[int, list[str]]:
        """File the named quarantined instances under ``holder_id``: (how many, their studies)."""
        require_operator(caller)
        uids, study = _selection(sop_instance_uids, study_instance_uid)
        try:
            holder = uuid.UUID(holder_id)
        except ValueError:
            raise InvalidArgument("holder_id is not an id", field="holder_id", reason="FIELD_INVALID") from None
        if await self._identity.person(str(holder)) is None:
            raise NotFound("identity knows no such holder", reason="HOLDER_NOT_FOUND")
        rows = await self._rows(uids, study)
        if not rows:
            raise NotFound("no such quarantined instance", reason="QUARANTINED_INSTANCE_NOT_FOUND")
        key = await self._keys.data_key(QUARANTINE_KEY.owner_id)
        studies: dict[str, None] = {}
        for row in rows:
            part10 = await open_blob(key, row["blob_key"], await self._blobs.get(row["blob_key"]))
            stored = await self._ingest.file(
                part10, holder, client_id=row["client_id"], ae_title=row["calling_ae_title"]
            )
            studies[stored.study_instance_uid] = None
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "DELETE FROM quarantined_instances WHERE sop_instance_uid = $1", row["sop_instance_uid"]
                )
                issuer = row["issuer_of_patient_id"]
                if row["patient_id"] and issuer not in INS_OIDS:
                    await conn.execute(
                        "INSERT INTO patient_id_mappings (client_id, issuer_of_patient_id, patient_id, holder_id,"
                        " created_by) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                        row["client_id"],
                        issuer,
                        row["patient_id"],
                        holder,
                        f"{caller.role}:{caller.subject}",
                    )
            await self._blobs.delete(row["blob_key"])
        log.info("%d quarantined instances filed under %s by %s", len(rows), holder, caller.subject)
        return len(rows), list(studies)

    async def reject(
        self, caller: Principal, *, sop_instance_uids: Sequence[str], study_instance_uid: str, reason: str
    ) -> int:
        """Delete the named quarantined instances; how many."""
        require_operator(caller)
        uids, study = _selection(sop_instance_uids, study_instance_uid)
        rows = await self._rows(uids, study)
        if not rows:
            raise NotFound("no such quarantined instance", reason="QUARANTINED_INSTANCE_NOT_FOUND")
        await self._pool.execute(
            "DELETE FROM quarantined_instances WHERE sop_instance_uid = ANY($1::text[])",
            [row["sop_instance_uid"] for row in rows],
        )
        for row in rows:
            await self._blobs.delete(row["blob_key"])
        log.info("%d quarantined instances rejected by %s: %s", len(rows), caller.subject, reason.strip() or "-")
        return len(rows)
