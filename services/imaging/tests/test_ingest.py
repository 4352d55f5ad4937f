"""C-STORE from dcmtk's storescu: instances filed under their holder (matched by INS through identity),
sealed as received, indexed with their counts; duplicates, quarantine reasons and malformed input."""

from __future__ import annotations

import asyncio
import io
import random
import struct
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from carnet.common.v1 import common_pb2
from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.identity.v1 import resources_pb2 as identity_res
from carnet.imaging.v1 import imaging_service_pb2 as pb
from carnet.imaging.v1 import resources_pb2 as res
from carnet_imaging.matching import INS_NIR_OID, ins_key_ok
from carnet_kit.auth import Principal
from carnet_kit.crypto import MasterKeyRing, open_blob
from carnet_kit.data_keys import DataKeys
from carnet_kit.db import create_pool
from carnet_kit.status import parse_rpc_error

pytestmark = pytest.mark.asyncio
OPERATOR = Principal(subject="op-imaging", role="operator")


def new_nir(sex: str = "2") -> str:
    while True:
        number = f"{sex}{random.randint(50, 99)}{random.randint(1, 12):02d}75{random.randint(1, 999):03d}{random.randint(1, 999):03d}"
        ins = f"{number}{97 - int(number) % 97:02d}"
        if ins_key_ok(ins):
            return ins


async def enrol(identity: Any, as_caller: Any, *, born: str = "19800101", sex: str = "F") -> tuple[str, str]:
    ins = new_nir("2" if sex == "F" else "1")
    person = await identity.CreatePerson(
        identity_pb.CreatePersonRequest(
            person=identity_res.Person(
                ins=ins,
                name=common_pb2.PersonName(birth_name="ESSAI", first_names=["Dominique"]),
                sex=common_pb2.SEX_FEMALE if sex == "F" else common_pb2.SEX_MALE,
                birth_date=common_pb2.Date(year=int(born[:4]), month=int(born[4:6]), day=int(born[6:])),
                email=f"img-{uuid.uuid4().hex[:10]}@test.carnet.test",
                department_code="75",
            )
        ),
        metadata=as_caller(OPERATOR),
    )
    return person.person_id, ins


def make_instance(
    directory: Path,
    *,
    patient_id: str,
    issuer: str = INS_NIR_OID,
    study: str | None = None,
    series: str | None = None,
    born: str = "19800101",
    sex: str = "F",
    source: str = "CT_small.dcm",
) -> tuple[Path, Any]:
    """A copy of a pydicom test file for this patient, with new UIDs (or the given study/series)."""
    dataset = dcmread(get_testdata_file(source))
    dataset.PatientID = patient_id
    dataset.IssuerOfPatientID = issuer
    dataset.PatientBirthDate = born
    dataset.PatientSex = sex
    dataset.StudyInstanceUID = study or generate_uid()
    dataset.SeriesInstanceUID = series or generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    path = directory / f"{dataset.SOPInstanceUID}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path, dataset


def dataset_bytes(path: Path) -> bytes:
    """The encoded dataset of a Part 10 file, after its file meta group."""
    data = path.read_bytes()
    (group_length,) = struct.unpack("<I", data[140:144])
    return data[144 + group_length :]


async def store(dcmtk: Any, imaging: Any, pacs: Any, *paths: Path) -> Any:
    # In a thread: imaging serves from this test's event loop.
    return await asyncio.to_thread(
        dcmtk,
        "storescu", "-aet", pacs.ae_title, "-aec", "CARNET", "127.0.0.1", str(imaging.dicom_port),
        *(str(p) for p in paths), timeout=120,
    )


@pytest.fixture
async def index(database_url: str) -> Any:
    pool = await create_pool(database_url, "imaging")
    yield pool
    await pool.close()


async def test_instances_are_filed_under_their_holder_sealed_as_received_and_counted(
    imaging: Any, register_pacs: Any, identity: Any, as_caller: Any, dcmtk: Any, tmp_path: Path, index: Any
) -> None:
    pacs = await register_pacs()
    holder, ins = await enrol(identity, as_caller)
    study, series = generate_uid(), generate_uid()
    first, dataset = make_instance(tmp_path, patient_id=ins, study=study, series=series)
    second, _ = make_instance(tmp_path, patient_id=ins, study=study, series=series)
    other_series, _ = make_instance(tmp_path, patient_id=ins, study=study, source="MR_small.dcm")
    sent = await store(dcmtk, imaging, pacs, first, second, other_series)
    assert sent.returncode == 0, sent.stderr

    row = await index.fetchrow("SELECT * FROM studies WHERE study_instance_uid = $1", study)
    assert str(row["holder_id"]) == holder
    assert (row["number_of_series"], row["number_of_instances"]) == (2, 3)
    assert sorted(row["modalities_in_study"]) == ["CT", "MR"]
    assert (row["patient_id"], row["issuer_of_patient_id"], row["state"]) == (ins, INS_NIR_OID, "RECEIVING")
    assert (row["source_client_id"], row["source_ae_title"]) == (pacs.client_id, pacs.ae_title)
    assert row["size_bytes"] == await index.fetchval(
        "SELECT sum(size_bytes) FROM instances WHERE study_instance_uid = $1", study
    )
    assert await index.fetchval("SELECT number_of_instances FROM series WHERE series_instance_uid = $1", series) == 2

    instance = await index.fetchrow("SELECT * FROM instances WHERE sop_instance_uid = $1", dataset.SOPInstanceUID)
    assert (instance["rows"], instance["columns"], instance["number_of_frames"]) == (128, 128, 1)
    assert instance["blob_key"] == f"studies/{study}/{series}/{dataset.SOPInstanceUID}"
    sealed = (Path(imaging.settings.blob_dir) / instance["blob_key"]).read_bytes()
    assert b"DICM" not in sealed[:200] and dataset_bytes(first)[:64] not in sealed
    assert dcmread(first).PixelData[:256] not in sealed
    keys = DataKeys(index, MasterKeyRing.from_file(imaging.settings.master_key_file, variable="k"))
    opened = await open_blob(await keys.data_key(uuid.UUID(holder)), instance["blob_key"], sealed)
    assert opened[128:132] == b"DICM"
    # What storescu sent, under the file meta of its association (dcmtk re-encodes datasets it sends, so the
    # comparison with the source file is by element; byte identity is checked on retrieval).
    received = dcmread(io.BytesIO(opened))
    source = dcmread(first)
    assert received.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    del source[0xFFFCFFFC]  # dataset trailing padding, which dcmtk does not send
    differing = [str(e.tag) for e in source if e.tag not in received or received[e.tag].value != e.value]
    assert differing == [] and len(received) == len(source)
    assert len(opened) == instance["size_bytes"]

    # The same instance again changes nothing.
    again = await store(dcmtk, imaging, pacs, first)
    assert again.returncode == 0, again.stderr
    assert await index.fetchval("SELECT number_of_instances FROM studies WHERE study_instance_uid = $1", study) == 3


async def test_unmatched_instances_go_to_the_quarantine_with_their_reason(
    imaging: Any, register_pacs: Any, identity: Any, as_caller: Any, dcmtk: Any, tmp_path: Path, index: Any
) -> None:
    pacs = await register_pacs()
    holder, ins = await enrol(identity, as_caller, born="19800101", sex="F")
    cases = {
        "UNKNOWN_PATIENT": make_instance(tmp_path, patient_id=new_nir())[1],
        "INVALID_INS": make_instance(tmp_path, patient_id=ins[:13] + "00")[1],
        "UNKNOWN_ISSUER": make_instance(tmp_path, patient_id="LOCAL-42", issuer="HOPITAL-X")[1],
        "IDENTITY_MISMATCH": make_instance(tmp_path, patient_id=ins, born="19790615")[1],
    }
    paths = [tmp_path / f"{dataset.SOPInstanceUID}.dcm" for dataset in cases.values()]
    sent = await store(dcmtk, imaging, pacs, *paths)
    assert sent.returncode == 0, sent.stderr
    for reason, dataset in cases.items():
        row = await index.fetchrow(
            "SELECT reason, client_id, calling_ae_title, patient_id FROM quarantined_instances"
            " WHERE sop_instance_uid = $1",
            dataset.SOPInstanceUID,
        )
        assert row is not None and row["reason"] == reason, reason
        assert (row["client_id"], row["calling_ae_title"]) == (pacs.client_id, pacs.ae_title)
        assert await index.fetchval(
            "SELECT count(*) FROM instances WHERE sop_instance_uid = $1", dataset.SOPInstanceUID
        ) == 0
    assert await index.fetchval("SELECT count(*) FROM studies WHERE holder_id = $1", uuid.UUID(holder)) == 0


async def test_malformed_input_is_refused_and_the_scp_keeps_serving(
    imaging: Any, register_pacs: Any, identity: Any, as_caller: Any, dcmtk: Any, tmp_path: Path, index: Any
) -> None:
    pacs = await register_pacs()
    _, ins = await enrol(identity, as_caller)
    good, dataset = make_instance(tmp_path, patient_id=ins)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) - 5000])
    sent = await store(dcmtk, imaging, pacs, truncated)
    output = sent.stdout + sent.stderr
    assert "0xc000" in output.lower() or sent.returncode != 0, output
    assert await index.fetchval(
        "SELECT count(*) FROM instances WHERE sop_instance_uid = $1", dataset.SOPInstanceUID
    ) == 0
    assert await index.fetchval(
        "SELECT count(*) FROM studies WHERE study_instance_uid = $1", dataset.StudyInstanceUID
    ) == 0
    # Still serving: the good copy goes in.
    assert (await store(dcmtk, imaging, pacs, good)).returncode == 0
    assert await index.fetchval(
        "SELECT count(*) FROM instances WHERE sop_instance_uid = $1", dataset.SOPInstanceUID
    ) == 1


async def test_an_operator_lists_assigns_and_rejects_quarantined_instances(
    imaging: Any, register_pacs: Any, identity: Any, as_caller: Any, dcmtk: Any, tmp_path: Path, index: Any
) -> None:
    pacs = await register_pacs(local_issuer_of_patient_id="HOPITAL-ESSAI")
    holder, _ = await enrol(identity, as_caller)
    study = generate_uid()
    local = [make_instance(tmp_path, patient_id="IPP-0042", issuer="HOPITAL-ESSAI", study=study)[1] for _ in range(2)]
    stray = make_instance(tmp_path, patient_id="X", issuer="AILLEURS")[1]
    paths = [tmp_path / f"{d.SOPInstanceUID}.dcm" for d in (*local, stray)]
    assert (await store(dcmtk, imaging, pacs, *paths)).returncode == 0

    listed = await imaging.stub.ListQuarantinedInstances(
        pb.ListQuarantinedInstancesRequest(study_instance_uid=study), metadata=as_caller(OPERATOR)
    )
    assert listed.total_size == 2
    assert {i.reason for i in listed.instances} == {res.QUARANTINE_REASON_UNKNOWN_PATIENT}
    assert {i.patient_id for i in listed.instances} == {"IPP-0042"}
    by_reason = await imaging.stub.ListQuarantinedInstances(
        pb.ListQuarantinedInstancesRequest(
            calling_ae_title=pacs.ae_title, reason=res.QUARANTINE_REASON_UNKNOWN_ISSUER
        ),
        metadata=as_caller(OPERATOR),
    )
    assert [i.sop_instance_uid for i in by_reason.instances] == [stray.SOPInstanceUID]

    for bad, reason in (
        (pb.ReassignQuarantinedInstancesRequest(study_instance_uid=study, holder_id=str(uuid.uuid4())),
         "HOLDER_NOT_FOUND"),
        (pb.ReassignQuarantinedInstancesRequest(study_instance_uid=generate_uid(), holder_id=holder),
         "QUARANTINED_INSTANCE_NOT_FOUND"),
        (pb.ReassignQuarantinedInstancesRequest(holder_id=holder), "FIELD_INVALID"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await imaging.stub.ReassignQuarantinedInstances(bad, metadata=as_caller(OPERATOR))
        assert parse_rpc_error(caught.value).reason == reason
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await imaging.stub.ReassignQuarantinedInstances(
            pb.ReassignQuarantinedInstancesRequest(study_instance_uid=study, holder_id=holder),
            metadata=as_caller(Principal(subject="dr", role="professional")),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    done = await imaging.stub.ReassignQuarantinedInstances(
        pb.ReassignQuarantinedInstancesRequest(study_instance_uid=study, holder_id=holder),
        metadata=as_caller(OPERATOR),
    )
    assert (done.reassigned_count, list(done.study_instance_uids)) == (2, [study])
    row = await index.fetchrow("SELECT holder_id, number_of_instances FROM studies WHERE study_instance_uid = $1", study)
    assert (str(row["holder_id"]), row["number_of_instances"]) == (holder, 2)
    assert await index.fetchval("SELECT count(*) FROM quarantined_instances WHERE study_instance_uid = $1", study) == 0
    assert not (Path(imaging.settings.blob_dir) / "quarantine" / local[0].SOPInstanceUID).exists()

    # The local id is now known: the next study of IPP-0042 from that PACS is filed at once.
    later = make_instance(tmp_path, patient_id="IPP-0042", issuer="HOPITAL-ESSAI")[1]
    assert (await store(dcmtk, imaging, pacs, tmp_path / f"{later.SOPInstanceUID}.dcm")).returncode == 0
    assert str(await index.fetchval(
        "SELECT holder_id FROM studies WHERE study_instance_uid = $1", later.StudyInstanceUID
    )) == holder

    rejected = await imaging.stub.RejectQuarantinedInstances(
        pb.RejectQuarantinedInstancesRequest(sop_instance_uids=[stray.SOPInstanceUID], reason="pas chez nous"),
        metadata=as_caller(OPERATOR),
    )
    assert rejected.rejected_count == 1
    assert await index.fetchval(
        "SELECT count(*) FROM quarantined_instances WHERE sop_instance_uid = $1", stray.SOPInstanceUID
    ) == 0
