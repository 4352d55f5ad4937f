"""The lifecycle walk exactly as a person does it by hand from the README: the import CLI,
the local mailbox, and the gateway's REST API only (plus the lifecycle job's command).

Import → notice in the mailbox → activation → password → login with the one-time code →
an agent records another person's opposition → the deadline job creates a silent
person's space by default → the holder closes their space → an agent reopens it → login.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import subprocess
import sys
import time

import httpx

from carnet_identity.domain.identifiers import ins_key
from tests.conftest import Platform
from tests.people import login

PASSWORD = "Sentier-lavande-4821"
CODE = re.compile(r"\b([ACDEFGHJKMNPQRTUVWXY34679]{12})\b")


def _nir(sex: str = "2") -> str:
    return f"{sex}{random.randint(40, 99):02d}{random.randint(1, 12):02d}13{random.randint(1, 999):03d}{random.randint(1, 999):03d}"


def _activation_code(http: httpx.Client, recipient: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in http.get("/dev/mailbox", headers={"accept": "application/json"}).json()["messages"]:
            match = CODE.search(message["text"])
            if recipient in message["to"] and match:
                return match.group(1)
        time.sleep(0.3)
    raise AssertionError(f"no activation notice reached {recipient}")


def _client_token(http: httpx.Client, client_id: str, secret: str) -> dict[str, str]:
    response = http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


def test_the_readme_lifecycle_walk_through_the_gateway(platform: Platform, tmp_path: object) -> None:
    holder, opposer, silent = _nir(), _nir(), _nir("1")
    holder_email = f"lou.marche.{holder}@demo.carnet.test"
    registry = os.path.join(str(tmp_path), "registre.csv")
    with open(registry, "w", encoding="utf-8") as out:
        out.write("ins,birth_name,first_names,sex,birth_date,email,department_code\n")
        out.write(f"{holder}{ins_key(holder)},MARCHE,Lou,F,1991-04-02,{holder_email},13\n")
        out.write(f"{opposer}{ins_key(opposer)},REFUS,Zoé,F,1975-11-30,zoe.refus.{opposer}@demo.carnet.test,13\n")
        out.write(f"{silent}{ins_key(silent)},SILENCE,Noé,M,1960-01-15,,13\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CARNET_")},
        "CARNET_IDENTITY_ADDR": platform.grpc["identity"],
        "CARNET_IMPORT_CLIENT_ID": "registry-demo",
        "CARNET_IMPORT_CLIENT_SECRET": "registry-demo-secret",
    }
    imported = subprocess.run(
        [sys.executable, "-m", "carnet_identity", "import", registry], env=env, capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "created    3" in imported.stdout

    with httpx.Client(base_url=platform.base_url, timeout=30) as http:
        code = _activation_code(http, holder_email)
        activated = http.post(
            "/api/v1/activation",
            json={"activation_code": code, "ins": f"{holder}{ins_key(holder)}", "birth_date": "1991-04-02"},
        )
        assert activated.status_code == 200, activated.text
        person_id = activated.json()["person"]["person_id"]
        password = http.post(
            "/api/v1/activation/password",
            json={
                "subject": person_id,
                "new_password": PASSWORD,
                "password_setup_token": activated.json()["password_setup_token"],
            },
        )
        assert password.status_code == 200, password.text
        reused = http.post(
            "/api/v1/activation",
            json={"activation_code": code, "ins": f"{holder}{ins_key(holder)}", "birth_date": "1991-04-02"},
        )
        assert reused.status_code in (401, 409), reused.text
        holder_auth = {"authorization": f"Bearer {login(http, holder_email, PASSWORD)['access_token']}"}
        me = http.get("/api/v1/me", headers=holder_auth).json()
        assert me["person"]["state"] == "ACCOUNT_STATE_ACTIVE"

        agent = _client_token(http, "agent-desk-demo", "agent-desk-demo-secret")
        found = http.get("/api/v1/person-lookup", params={"ins": f"{opposer}{ins_key(opposer)}"}, headers=agent)
        assert found.status_code == 200, found.text
        opposer_id = found.json()["person_id"]
        opposition = http.post(
            "/api/v1/oppositions",
            json={"opposition": {"holder_id": opposer_id, "kind": "OPPOSITION_KIND_CREATION", "channel": "OPPOSITION_CHANNEL_AGENT"}},
            headers=agent,
        )
        assert opposition.status_code == 201, opposition.text
        assert opposition.json()["receipt_number"]
        deadline = time.monotonic() + 30
        while http.get(f"/api/v1/persons/{opposer_id}", headers=agent).json()["state"] != "ACCOUNT_STATE_OPPOSED":
            assert time.monotonic() < deadline, "identity did not follow the opposition"
            time.sleep(0.3)

        seven_weeks_on = (dt.date.today() + dt.timedelta(weeks=7)).isoformat()
        job_env = {
            **env,
            "CARNET_PROFILE": "embedded",
            "CARNET_GRPC_LISTEN": "127.0.0.1:0",
            "CARNET_DATABASE_URL": platform.env["CARNET_DATABASE_URL"],
            "CARNET_REDIS_URL": platform.env["CARNET_REDIS_URL"],
        }
        job = subprocess.run(
            [sys.executable, "-m", "carnet_identity", "run-lifecycle-jobs", "--as-of", seven_weeks_on],
            env=job_env, capture_output=True, text=True, timeout=60,
        )
        assert job.returncode == 0, job.stderr
        silent_person = http.get("/api/v1/person-lookup", params={"ins": f"{silent}{ins_key(silent)}"}, headers=agent).json()
        assert silent_person["state"] == "ACCOUNT_STATE_CREATED_BY_DEFAULT"
        assert http.get(f"/api/v1/persons/{opposer_id}", headers=agent).json()["state"] == "ACCOUNT_STATE_OPPOSED"

        closed = http.post(f"/api/v1/persons/{person_id}/close", json={"reason": "je ferme mon espace"}, headers=holder_auth)
        assert closed.status_code == 200, closed.text
        assert closed.json()["state"] == "ACCOUNT_STATE_CLOSED"
        forbidden = http.post(f"/api/v1/persons/{person_id}/close", json={}, headers=agent)
        assert forbidden.status_code == 409
        assert forbidden.json()["metadata"]["current_state"] == "closed" or "CLOSED" in forbidden.json()["metadata"]["current_state"].upper()
        reopened = http.post(f"/api/v1/persons/{person_id}/reopen", headers=agent)
        assert reopened.status_code == 200, reopened.text
        assert reopened.json()["state"] == "ACCOUNT_STATE_ACTIVE"
        assert login(http, holder_email, PASSWORD)["access_token"]
