"""seed-demo: the demo population of issue 2, inserted idempotently with deterministic ids."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid

from carnet.identity.v1 import identity_service_pb2
from carnet_identity import demo
from carnet_identity.hashing import SecretHasher
from carnet_identity.seed import SEEDED_TABLES, seed_demo
from carnet_kit.testing import free_port


async def counts(store) -> dict[str, int]:
    return {table: await store.count(table) for table in SEEDED_TABLES}


async def test_seed_demo_twice_changes_nothing_the_second_time(identity, store, tmp_path) -> None:
    first = await seed_demo(store, secrets_dir=tmp_path)
    after_first = await counts(store)
    second = await seed_demo(store, secrets_dir=tmp_path)
    assert await counts(store) == after_first
    assert set(second.inserted.values()) == {0}
    assert second.activation_codes == first.activation_codes
    written = json.loads((tmp_path / demo.ACTIVATION_CODES_FILE).read_text())
    assert written == {"156081305504244": first.activation_codes["156081305504244"]}


async def test_demo_ids_are_uuid5_of_the_national_numbers() -> None:
    assert demo.CAMILLE_ID == uuid.uuid5(uuid.NAMESPACE_URL, "carnet-demo:2840575120005")
    assert demo.PAUL_DUBOIS_ID == uuid.uuid5(uuid.NAMESPACE_URL, "carnet-demo:10000000017")
    assert demo.demo_id("pacs-demo") == uuid.uuid5(uuid.NAMESPACE_URL, "carnet-demo:pacs-demo")


async def test_demo_population_is_as_issue_2_describes(identity, store, tmp_path) -> None:
    report = await seed_demo(store, secrets_dir=tmp_path)
    now = dt.datetime.now(dt.UTC)

    camille = await store.person_by_id(demo.CAMILLE_ID)
    assert camille is not None
    assert (camille.ins, camille.email, camille.state.value, camille.sex) == (
        "284057512000531",
        "camille.martin@demo.carnet.test",
        "active",
        "F",
    )
    assert await SecretHasher().verify(camille.password_hash, demo.DEMO_PASSWORD)

    lea = await store.person_by_id(demo.LEA_ID)
    assert lea is not None and lea.ins == "215117505678985" and not lea.password_set
    assert lea.email == "lea.martin@demo.carnet.test"
    representation = await store.representation(demo.LEA_ID, demo.CAMILLE_ID, now)
    assert representation is not None and representation.kind == "legal"
    assert representation.valid_until == dt.datetime(2033, 11, 3, tzinfo=dt.UTC)

    jean = await store.person_by_id(demo.JEAN_ID)
    assert jean is not None and jean.state.value == "notified" and jean.ins == "156081305504244"
    assert jean.opposition_deadline is not None
    assert dt.timedelta(weeks=5) < jean.opposition_deadline - now <= dt.timedelta(weeks=6)
    outstanding = await store.outstanding_activation_code(demo.JEAN_ID)
    assert outstanding is not None
    code = report.activation_codes["156081305504244"]
    assert len(code) >= 8 and await SecretHasher().verify(outstanding[1], code)

    karim = await store.person_by_nir("1790369123456")
    assert karim is not None and karim.id == demo.KARIM_ID and karim.ins_key == "12"

    expected = {
        demo.PAUL_DUBOIS_ID: ("10000000017", "10", "SM26", "paul.dubois@demo.carnet.test", ()),
        demo.SOPHIE_LEROY_ID: ("10000000025", "60", "", "sophie.leroy@demo.carnet.test", ()),
        demo.ANNE_MOREAU_ID: ("10000000033", "10", "SM44", "anne.moreau@demo.carnet.test", (demo.IMAGING_CENTRE_ID,)),
        demo.MARC_GIRARD_ID: ("10000000041", "21", "", "marc.girard@demo.carnet.test", ()),
    }
    for professional_id, facts in expected.items():
        professional = await store.professional_by_id(professional_id)
        assert professional is not None
        assert (
            professional.rpps,
            professional.profession_code,
            professional.specialty_code,
            professional.email,
            professional.organisation_ids,
        ) == facts
    assert await store.treating_physician_of(demo.CAMILLE_ID) == demo.PAUL_DUBOIS_ID

    centre = await store.organisation_by_id(demo.IMAGING_CENTRE_ID)
    assert centre is not None and centre.name == "Centre d'imagerie Demo" and centre.kind == "imaging_centre"
    pacs = await store.client_by_id("pacs-demo")
    assert pacs is not None
    assert (pacs.scopes, pacs.ae_titles, pacs.organisation_id) == (
        ("imaging.push", "documents.deposit"),
        ("DEMOPACS",),
        demo.IMAGING_CENTRE_ID,
    )
    lab = await store.client_by_id("lab-demo")
    assert lab is not None and lab.scopes == ("documents.deposit",) and lab.organisation_id == demo.LABORATORY_ID


async def test_demo_accounts_log_in(identity, store, tmp_path, do_login) -> None:
    await seed_demo(store, secrets_dir=tmp_path)
    camille = await do_login(identity, "camille.martin@demo.carnet.test", demo.DEMO_PASSWORD)
    assert (await identity.verifier().verify(camille.access_token)).subject == str(demo.CAMILLE_ID)
    anne = await do_login(identity, "10000000033", demo.DEMO_PASSWORD)
    principal = await identity.verifier().verify(anne.access_token)
    assert (principal.role, principal.organisation_id) == ("professional", str(demo.IMAGING_CENTRE_ID))
    pacs = await identity.stub.ExchangeClientCredentials(
        identity_service_pb2.ExchangeClientCredentialsRequest(client_id="pacs-demo", client_secret="pacs-demo-secret")
    )
    assert pacs.scope == "imaging.push documents.deposit"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carnet_identity", *args],
        env={key: value for key, value in os.environ.items() if not key.startswith("CARNET_")} | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_seed_demo_command_prints_and_writes_the_activation_code(database_url, redis_url, tmp_path) -> None:
    env = {
        "CARNET_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
        "CARNET_DATABASE_URL": database_url,
        "CARNET_REDIS_URL": redis_url,
        "CARNET_SECRETS_DIR": str(tmp_path / "secrets"),
    }
    first = run_cli("seed-demo", env=env)
    assert first.returncode == 0, first.stderr
    code = json.loads((tmp_path / "secrets" / demo.ACTIVATION_CODES_FILE).read_text())["156081305504244"]
    assert f"activation code for INS 156081305504244: {code}" in first.stdout
    second = run_cli("seed-demo", env=env)
    assert second.returncode == 0, second.stderr
    assert "nothing (already seeded)" in second.stdout
    assert code in second.stdout


def test_a_missing_variable_stops_the_command_naming_it(tmp_path) -> None:
    result = run_cli("seed-demo", env={"CARNET_GRPC_LISTEN": "127.0.0.1:1", "CARNET_REDIS_URL": "redis://x"})
    assert result.returncode == 78
    assert "CARNET_DATABASE_URL" in result.stderr
